"""The paper's GRLE actor (eqs. 12–14 as written): one layer against a hand computation, any M and
topology, batching paths, the lockstep learner, and the GRLE / GRLE+ naming."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from offload.agents import load_agent, make_agent
from offload.agents.agent import input_encoder
from offload.agents.edge_mlp import EdgeMLPActor
from offload.agents.grle import GRLEActor, encode_slot_batch
from offload.agents.grle_paper import GRLEPaperActor, GRLEPaperConfig, encode_paper_batch
from offload.agents.learner import Learner, LearnerConfig
from offload.sim import SlotState, score_decisions
from offload.sim.batch import BatchState

TABLE_MS = np.array([[0.36, 0.46, 0.54, 0.71, 1.26], [0.73, 0.89, 1.06, 1.4, 2.42]])
TABLE_ACC = np.array([0.8, 0.85, 0.885, 0.905, 0.935])


def random_state(rng, m: int, n: int, l_: int = 5, p_link: float = 0.7) -> SlotState:
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


def test_one_layer_of_eq_12_equals_a_hand_computation():
    """h_v' = ReLU(W_r h_v + W_l mean_{u ∈ N(v)} h_u + b) for both node types, weights by hand."""
    actor = GRLEPaperActor(GRLEPaperConfig(hidden_channels=(2, 2)))
    w = {  # small integers / halves, so every product is exact in float32
        "conv1_exit.lin_l.weight": [[1, 0, 0, 0, 0.5], [0, -1, 0, 1, 0]],  # (2, 5) devices
        "conv1_exit.lin_l.bias": [0.5, -1.0],
        "conv1_exit.lin_r.weight": [[1, 1, 0], [0, 0, 2]],  # (2, 3) the exit itself
        "conv1_device.lin_l.weight": [[0, 1, 0], [-1, 0, 1]],  # (2, 3) exits
        "conv1_device.lin_l.bias": [0.0, 0.25],
        "conv1_device.lin_r.weight": [[1, 0, 0, 0, 0], [0, 0, 0, 0, -1]],  # (2, 5) the device
    }
    with torch.no_grad():
        params = dict(actor.named_parameters())
        for name, value in w.items():
            params[name].copy_(torch.tensor(value))
    x_dev = np.array([[1.0, 2.0, 0.0, 1.0, 2.0], [3.0, 0.0, 1.0, 0.0, -2.0]])
    x_exit = np.array([[1.0, 0.0, 1.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    edges = [(0, 0), (0, 1), (1, 1)]  # device -> exit; exit 2 has no neighbour
    edge_index = torch.tensor(edges).T
    with torch.no_grad():
        h_dev, h_exit = actor.layer(  # one run: K = 1 stacked weights, as the learner passes
            1,
            torch.tensor(x_dev, dtype=torch.float32)[None],
            torch.tensor(x_exit, dtype=torch.float32)[None],
            edge_index,
            {n: p[None] for n, p in actor.named_parameters()},
        )
        h_dev, h_exit = h_dev[0], h_exit[0]

    def relu(v):
        return np.maximum(v, 0.0)

    a = {k: np.array(v, dtype=np.float64) for k, v in w.items()}
    expect_exit = np.zeros((3, 2))
    for o in range(3):
        nbrs = [m for m, oo in edges if oo == o]
        mean = x_dev[nbrs].mean(axis=0) if nbrs else np.zeros(5)  # empty mean = 0 (PyG's)
        expect_exit[o] = relu(
            a["conv1_exit.lin_r.weight"] @ x_exit[o]
            + a["conv1_exit.lin_l.weight"] @ mean
            + a["conv1_exit.lin_l.bias"]
        )
    expect_dev = np.zeros((2, 2))
    for m in range(2):
        nbrs = [o for mm, o in edges if mm == m]
        mean = x_exit[nbrs].mean(axis=0)
        expect_dev[m] = relu(
            a["conv1_device.lin_r.weight"] @ x_dev[m]
            + a["conv1_device.lin_l.weight"] @ mean
            + a["conv1_device.lin_l.bias"]
        )
    # one entry traced by hand: exit 1 hears devices 0 and 1, mean = (2, 1, 0.5, 0.5, 0);
    # unit 0: W_r x = 2 + 1 = 3, W_l mean = 2 + 0 = 2, + 0.5 -> 5.5
    assert expect_exit[1, 0] == 5.5
    # exit 2 has no neighbour: unit 1 = ReLU(2·1 + 0 − 1) = 1
    assert expect_exit[2, 1] == 1.0
    np.testing.assert_allclose(h_exit.numpy(), expect_exit, rtol=0, atol=1e-6)
    np.testing.assert_allclose(h_dev.numpy(), expect_dev, rtol=0, atol=1e-6)
    # the same layer on the sparse form (one graph, adjacency in CSR, one run's weights)
    adjacency = (_csr_of(edges, 2, 3), _csr_of([(o, m) for m, o in edges], 3, 2))
    with torch.no_grad():
        sparse_dev, sparse_exit = actor.layer(
            1,
            torch.tensor(x_dev, dtype=torch.float32),
            torch.tensor(x_exit, dtype=torch.float32),
            adjacency,
            dict(actor.named_parameters()),
        )
    np.testing.assert_allclose(sparse_exit.numpy(), expect_exit, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sparse_dev.numpy(), expect_dev, rtol=0, atol=1e-6)


def _csr_of(pairs, rows: int, cols: int) -> torch.Tensor:
    """(rows, cols) sparse CSR with ones at ``pairs``."""
    dense = torch.zeros(rows, cols)
    for r, c in pairs:
        dense[r, c] = 1.0
    return dense.to_sparse_csr()


@pytest.mark.parametrize("name", ["GRLE", "GRL"])
def test_paper_actor_runs_on_any_size_and_topology_and_never_uses_a_missing_link(name):
    rng = np.random.default_rng(0)
    agent = make_agent(name=name, num_exits=5, seed=0)
    assert isinstance(agent.actor, GRLEPaperActor)
    for m in range(1, 34, 4):
        for n in (1, 2, 3):
            state = random_state(rng, m, n, p_link=0.5)  # many links down
            res = agent.act(state, lambda c, s=state: score_decisions(s, c))
            greedy = agent.greedy_action(state)
            for decision in (res.decision, greedy):
                server, exit_ = np.divmod(decision, 5)
                assert decision.shape == (m,)
                assert state.link[np.arange(m), server].all()
                if name == "GRL":
                    assert (exit_ == 4).all()
            x = agent.learner.relaxed(agent.encode(state))
            assert (x[~agent.encode(state).mask] == 0).all()


@pytest.mark.parametrize("name", ["GRLE", "GRLE-MLP"])
@pytest.mark.parametrize(
    "options",
    [{}, {"fresh_optimiser": True}, {"grad_clip_norm": 0.05}],
    ids=["adam", "fresh", "clip"],
)
def test_runs_of_the_new_actors_and_options_learn_together_as_alone(name, options):
    """K = 3 runs in one learner: the same decisions and losses as each run alone over 12 slots
    (2 trainings), for every optimiser option."""
    rng = np.random.default_rng(5)
    states = [random_state(rng, 6, 2, p_link=0.7) for _ in range(3)]
    cfg = LearnerConfig(batch_size=8, train_interval=5, **options)
    seeds = [10, 11, 12]
    agents = [make_agent(name=name, num_exits=5, seed=s, learner=cfg) for s in seeds]
    together = [make_agent(name=name, num_exits=5, seed=s).actor for s in seeds]
    batched = Learner(together, cfg, seeds, train_chunk=2)
    obs = input_encoder(together[0])(BatchState.stack(states))
    trained = 0
    for _ in range(12):
        res = batched.step(
            obs, lambda c: np.stack([score_decisions(s, c[k]) for k, s in enumerate(states)])
        )
        for k, (a, s) in enumerate(zip(agents, states, strict=True)):
            ref = a.learn(s, lambda c, s=s: score_decisions(s, c))
            np.testing.assert_array_equal(res.decisions[k], ref.decision)
            if ref.loss is not None:
                assert res.loss[k] == pytest.approx(ref.loss, abs=1e-5)
                trained += 1
    assert trained == 2 * len(seeds)
    batched.unstack()
    for a, actor in zip(agents, together, strict=True):
        for (name, p), q in zip(a.actor.named_parameters(), actor.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)


def test_method_names_pick_the_actor_kinds_and_the_saved_kind_reloads(tmp_path):
    assert isinstance(make_agent(name="GRLE+", num_exits=5).actor, GRLEActor)
    assert isinstance(make_agent(name="GRLE-MLP", num_exits=5).actor, EdgeMLPActor)
    assert isinstance(make_agent(name="GRL", num_exits=5).actor, GRLEPaperActor)
    state = random_state(np.random.default_rng(4), 5, 2)
    for name, cls in (("GRLE", GRLEPaperActor), ("GRLE+", GRLEActor)):
        agent = make_agent(name=name, num_exits=5, seed=3)
        again = load_agent(agent.save(tmp_path / name))
        assert type(agent.actor) is cls and type(again.actor) is cls
        np.testing.assert_array_equal(
            agent.learner.relaxed(agent.encode(state)), again.learner.relaxed(again.encode(state))
        )
    with pytest.raises(ValueError, match="unknown agent 'GRL[+]'"):
        make_agent(name="GRL+", num_exits=5)
    with pytest.raises(ValueError, match="do not exist for a grle_paper actor"):
        make_agent(name="GRLE", num_exits=5, actor_options={"depth": 3})


def test_paper_features_hold_theta_and_exit_information_only():
    """Device: d, δ, backlog, mean and max rate over up links; exit: φ, t_cmp, ES backlog."""
    state = random_state(np.random.default_rng(6), 2, 2)
    state = replace(state, link=np.array([[True, False], [True, True]]))
    (x_device, x_exit, _), mask = encode_paper_batch(BatchState.of(state))
    rate = state.rate_mbps / 100.0
    expect_dev = np.array(
        [
            [
                state.task_bits[0] / 1e6,
                1.0,
                state.device_backlog_ms[0] / 30,
                rate[0, 0],
                rate[0, 0],
            ],
            [
                state.task_bits[1] / 1e6,
                1.0,
                state.device_backlog_ms[1] / 30,
                rate[1].mean(),
                rate[1].max(),
            ],
        ]
    )
    np.testing.assert_allclose(x_device[0].numpy(), expect_dev, rtol=1e-6)
    o = 7  # ES 1, exit 2
    expect_exit = [
        TABLE_ACC[2],
        TABLE_MS[1, 2] / state.capacity[1] / 30,
        state.server_backlog_ms[1] / 30,
    ]
    np.testing.assert_allclose(x_exit[0, o].numpy(), expect_exit, rtol=1e-6)
    assert mask.sum() == 5 + 10  # device 0 reaches ES 0 only
    assert encode_slot_batch(BatchState.of(state))[0][0].shape[-1] == 4  # GRLE+'s own encoder
