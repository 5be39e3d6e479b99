"""GRLE, GRL, DROOE and DROO actors: shapes, masks, batching, saving, and learning on a tiny MEC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from offload.agents import load_agent, make_agent
from offload.agents.grle import GRLEActor, encode_slot
from offload.exit_table import load_exit_table
from offload.experiments.runner import default_exits, train
from offload.sim import MECConfig, OffloadEnv, SlotState, optimal_decision, score_decisions

TABLE_MS = np.array([[0.36, 0.46, 0.54, 0.71, 1.26], [0.73, 0.89, 1.06, 1.4, 2.42]])
TABLE_ACC = np.array([0.8, 0.85, 0.885, 0.905, 0.935])


def random_state(
    rng: np.random.Generator, m: int, n: int, l_: int, p_link: float = 0.7
) -> SlotState:
    link = rng.random((m, n)) < p_link
    link[np.arange(m), rng.integers(0, n, m)] = True  # every device reaches one ES at least
    return SlotState(
        device_ids=np.arange(m),
        task_bits=rng.uniform(4e5, 8e5, m),
        deadline_ms=np.full(m, 30.0),
        rate_mbps=rng.uniform(20, 100, (m, n)),
        link=link,
        device_backlog_ms=rng.uniform(0, 10, m),
        server_backlog_ms=rng.uniform(0, 10, n),
        capacity=rng.uniform(0.25, 1.0, n),
        exit_ms=np.resize(TABLE_MS[:, :l_], (n, l_)),
        exit_accuracy=TABLE_ACC[:l_],
    )


@pytest.mark.parametrize("name", ["GRLE", "GRL"])
def test_graph_agents_run_on_any_size_and_never_use_a_missing_link(name):
    rng = np.random.default_rng(0)
    agent = make_agent(name=name, num_exits=5, seed=0)  # one actor for every size
    for m, n in [(1, 1), (2, 3), (7, 2), (20, 2), (33, 4)]:
        state = random_state(rng, m, n, 5)
        res = agent.act(state, lambda c, s=state: score_decisions(s, c))
        server, exit_ = np.divmod(res.decision, 5)
        assert res.decision.shape == (m,)
        assert state.link[np.arange(m), server].all()
        if name == "GRL":
            assert (exit_ == 4).all()  # main branch only
        greedy = agent.greedy_action(state)
        assert state.link[np.arange(m), greedy // 5].all()


@pytest.mark.parametrize("sizes", [(3, 9, 1, 14), (6, 6, 6)])  # sparse (PyG) and dense batching
def test_grle_relaxed_is_zero_off_edges_and_batch_equals_single(sizes):
    rng = np.random.default_rng(1)
    actor = GRLEActor()
    graphs = [encode_slot(random_state(rng, m, 2, 5, p_link=0.5)) for m in sizes]
    with torch.no_grad():
        singles = [actor.relaxed(g) for g in graphs]
        batch = actor.relaxed_batch(graphs)
        sparse = actor._sparse_batch(graphs)
    torch.testing.assert_close(sparse, torch.cat(singles), atol=1e-5, rtol=1e-5)
    for g, x in zip(graphs, singles, strict=True):
        assert x.shape == g.mask.shape
        assert (x[~torch.from_numpy(g.mask)] == 0).all()
        assert ((x[torch.from_numpy(g.mask)] > 0) & (x[torch.from_numpy(g.mask)] < 1)).all()
    torch.testing.assert_close(batch, torch.cat(singles), atol=1e-5, rtol=1e-5)


def test_droo_actors_have_fixed_size_and_main_branch_option_set():
    rng = np.random.default_rng(2)
    state = random_state(rng, 6, 2, 5)
    droo = make_agent(name="DROO", num_exits=5, num_devices=6, num_servers=2, seed=0)
    res = droo.act(state, lambda c: score_decisions(state, c))
    assert (res.decision % 5 == 4).all()
    droo_e = make_agent(name="DROOE", num_exits=5, num_devices=6, num_servers=2, seed=0)
    assert droo_e.learner.relaxed(droo_e.encode(state)).shape == (6, 10)
    with pytest.raises(ValueError, match="built for 6 devices"):
        droo_e.act(random_state(rng, 7, 2, 5), lambda c: np.zeros(len(c)))
    with pytest.raises(ValueError, match="fixed input size"):
        make_agent(name="DROOE", num_exits=5)


@pytest.mark.parametrize("name", ["GRLE", "DROOE"])
def test_saved_actor_reloads_with_identical_outputs(tmp_path, name):
    state = random_state(np.random.default_rng(3), 5, 2, 5)
    agent = make_agent(name=name, num_exits=5, num_devices=5, num_servers=2, seed=4)
    for _ in range(20):  # a few updates so the weights differ from a fresh seed-4 actor
        agent.learn(state, lambda c: score_decisions(state, c))
    path = agent.save(tmp_path / "actor")
    again = load_agent(path)
    np.testing.assert_array_equal(
        agent.learner.relaxed(agent.encode(state)), again.learner.relaxed(again.encode(state))
    )
    with pytest.raises(FileNotFoundError, match="no saved actor"):
        load_agent(tmp_path / "missing")


def test_grle_learns_tiny_instance_within_two_percent_of_the_optimum():
    table = load_exit_table(default_exits())
    cfg = MECConfig(num_devices=3, slot_ms=10.0, scenario=2)
    agent = make_agent(name="GRLE", num_exits=table.num_exits, seed=0)

    def ratios(slots: int = 150) -> tuple[float, float]:
        env = OffloadEnv(table, cfg)
        env.reset(seed=123)
        got = actor_only = best = 0.0
        for _ in range(slots):
            s = env.slot_state
            res = agent.act(s, lambda c, s=s: score_decisions(s, c))
            got += res.q
            actor_only += float(score_decisions(s, agent.greedy_action(s))[0])
            best += optimal_decision(s).q
            env.step(res.decision)
        return got / best, actor_only / best

    before, before_actor = ratios()
    train(agent, OffloadEnv(table, cfg), 1000, 0)
    after, after_actor = ratios()
    assert before < 0.95 and before_actor < 0.6  # untrained: clearly below the optimum
    assert after >= 0.98  # GRLE (actor + critic) within 2% of the exact optimum's reward
    assert after_actor > 0.8  # the actor itself has learned most of it
