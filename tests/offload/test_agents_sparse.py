"""The GRLE actors on sparse city graphs: the sparse encoder + forward is the dense
actor's function on every edge, for the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from offload.agents import make_agent
from offload.agents.sparse import encode_sparse, reachable_edges, sparse_relaxed, to_dense
from offload.sim.scale_refs import greedy_decision, random_decision

#: sparse vs dense x̂ on an edge, absolute: float32 neighbour sums added in another order
TOLERANCE = 1e-5


def _city_slots(loaded_city, count, num_devices=12, num_servers=4, k=2):
    env = loaded_city(seed=3, num_devices=num_devices, num_servers=num_servers, k_nearest=k)
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        out.append(env.slot_state)
        policy = greedy_decision if i % 2 else (lambda s: random_decision(s, rng))
        env.step(policy(env.slot_state))
    return out


@pytest.mark.parametrize("name", ["GRLE", "GRLE+", "GRLE-MLP", "GRL"])
def test_sparse_forward_equals_dense_on_every_edge(paper_table, name, loaded_city):
    agent = make_agent(name=name, num_exits=paper_table.num_exits, seed=1)
    with torch.no_grad():  # a few trained-looking weights: not just the initialisation
        for p in agent.actor.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for state in _city_slots(loaded_city, 6):
        obs = agent.encode(state)
        dense = agent.learner.relaxed(obs)[0]  # (M, O), zero off the mask
        graph = encode_sparse(state, agent.actor.config)
        sparse = sparse_relaxed(agent.actor, graph).numpy()
        dev, opt = graph.edge_index.numpy()
        assert np.array_equal(obs.mask[0], to_dense(np.ones(dev.size), graph) > 0)
        np.testing.assert_allclose(sparse, dense[dev, opt], rtol=0, atol=TOLERANCE)


def test_reachable_edges_follow_the_links(paper_table, loaded_city):
    state = _city_slots(loaded_city, 1, num_devices=30, num_servers=6, k=3)[0]
    dev, srv, ex, opt = reachable_edges(state)
    num_exits = paper_table.num_exits
    assert dev.size == state.link.sum() * num_exits
    assert state.link[dev, srv].all() and (opt == srv * num_exits + ex).all()
    assert (np.diff(dev * state.num_options + opt) > 0).all()  # sorted by (m, o)
    dev, _, ex, _ = reachable_edges(state, main_branch_only=True)
    assert dev.size == state.link.sum() and (ex == num_exits - 1).all()
