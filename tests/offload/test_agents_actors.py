"""GRLE, GRL, DROOE and DROO actors: shapes, masks, batching, saving, and learning: GRLE with
its critic on a tiny MEC, and the GRLE actor alone on a loaded one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from offload.agents import ACTOR_KIND, load_agent, make_agent
from offload.agents.agent import input_encoder
from offload.agents.graph import to_dense
from offload.agents.grle import (
    DENSE_FIELDS,
    GRLEActor,
    GRLEConfig,
    encode_plus_sparse,
    encode_slot_batch,
    option_mask,
)
from offload.agents.learner import ReplayMemory
from offload.experiments.runner import train
from offload.sim import (
    MECConfig,
    OffloadEnv,
    SlotState,
    optimal_decision,
    score_decisions,
)
from offload.sim.batch import BatchState
from offload.sim.reward import psi


@pytest.fixture
def slot(paper_table, random_state):
    """``slot(rng, m, n, p_link=0.7)``: a random slot of M devices and N ES with Table I's
    exits (ES types alternate between its two devices)."""
    latency = np.stack([paper_table.latency_of(d) for d in paper_table.devices])

    def make(rng: np.random.Generator, m: int, n: int, p_link: float = 0.7) -> SlotState:
        return random_state(
            rng,
            num_devices=m,
            exit_ms=np.resize(latency, (n, paper_table.num_exits)),
            exit_accuracy=paper_table.accuracy,
            p_link=p_link,
        )

    return make


@pytest.mark.parametrize("name", ["GRLE", "GRL"])
def test_graph_agents_run_on_any_size_and_never_use_a_missing_link(name, slot):
    rng = np.random.default_rng(0)
    agent = make_agent(name=name, num_exits=5, seed=0)  # one actor for every size
    for m, n in [(1, 1), (2, 3), (7, 2), (20, 2), (33, 4)]:
        state = slot(rng, m, n)
        res = agent.act(state, lambda c, s=state: score_decisions(s, c))
        server, exit_ = np.divmod(res.decision, 5)
        assert res.decision.shape == (m,)
        assert state.link[np.arange(m), server].all()
        if name == "GRL":
            assert (exit_ == 4).all()  # main branch only
        greedy = agent.greedy_action(state)
        assert state.link[np.arange(m), greedy // 5].all()


def test_grle_relaxed_is_zero_off_edges_and_padded_replay_entries_change_nothing(slot):
    """x̂ is in (0, 1) on the edges and exactly 0 off them; a slot zero-padded to more devices
    (how the replay memory stores entries of a dynamic topology) gives its devices the same x̂
    up to float rounding: a padded device has no edge, so it enters no mean."""
    rng = np.random.default_rng(1)
    actor = GRLEActor()
    encode = input_encoder(actor)
    params = {n: p.detach()[None] for n, p in actor.named_parameters()}
    memory = ReplayMemory(1, 4, [0])
    inputs = [encode(slot(rng, m, 2, p_link=0.5)) for m in (3, 9, 1, 14)]
    with torch.no_grad():
        alone = [actor(*obs.tensors, params=params)[0] for obs in inputs]
        for obs in inputs:
            memory.add(obs, np.zeros(obs.mask.shape[:2], dtype=np.int64))
        tensors, mask, _ = memory.entries(slice(0, 1), torch.arange(4)[None])
        padded = actor(*tensors, params=params)[0]  # (4 entries, 14 devices, O)
    assert padded.shape == (4, 14, 10)
    for i, (obs, x) in enumerate(zip(inputs, alone, strict=True)):
        edges = torch.from_numpy(obs.mask[0])
        assert (x[~edges] == 0).all() and ((x[edges] > 0) & (x[edges] < 1)).all()
        m = x.shape[0]
        assert torch.equal(mask[0, i, :m], edges) and not mask[0, i, m:].any()
        torch.testing.assert_close(padded[i, :m], x, atol=1e-6, rtol=1e-5)
        assert (padded[i, m:] == 0).all()


def test_droo_actors_have_fixed_size_and_main_branch_option_set(slot):
    rng = np.random.default_rng(2)
    state = slot(rng, 6, 2)
    droo = make_agent(name="DROO", num_exits=5, num_devices=6, num_servers=2, seed=0)
    res = droo.act(state, lambda c: score_decisions(state, c))
    assert (res.decision % 5 == 4).all()
    droo_e = make_agent(name="DROOE", num_exits=5, num_devices=6, num_servers=2, seed=0)
    assert droo_e.learner.relaxed(droo_e.encode(state)).shape == (1, 6, 10)
    with pytest.raises(ValueError, match="built for 6 devices"):
        droo_e.act(slot(rng, 7, 2), lambda c: np.zeros(len(c)))
    with pytest.raises(ValueError, match="fixed input size"):
        make_agent(name="DROOE", num_exits=5)


@pytest.mark.parametrize("name", ["GRLE", "DROOE"])
def test_saved_actor_reloads_with_identical_outputs(tmp_path, name, slot):
    state = slot(np.random.default_rng(3), 5, 2)
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


RESULTS = Path(__file__).resolve().parents[2] / "results"


def test_every_committed_actor_loads_as_its_method_and_decides(slot):
    """Every actor under results/ rebuilds (strict weights: every tensor name and shape) as the
    kind its method name builds today, and decides a slot over up links only."""
    paths = sorted(RESULTS.glob("**/actors/*.safetensors"))
    assert {p.parent.relative_to(RESULTS).as_posix() for p in paths} == {
        "actors",
        "stated_numbers/actors",
    }
    rng = np.random.default_rng(5)
    for path in paths:
        agent = load_agent(path)
        assert agent.meta["actor"] == ACTOR_KIND[agent.name], path.name
        cfg = agent.actor.config
        m, n = (cfg.num_devices, cfg.num_servers) if agent.name.startswith("DROO") else (6, 2)
        state = slot(rng, m, n)
        decision = agent.act(state, lambda c, s=state: score_decisions(s, c)).decision
        assert state.link[np.arange(m), decision // agent.meta["num_exits"]].all(), path.name


# The learning tests below were measured with the engineered graph actor, GRLE+ ("GRLE" is the
# paper's actor as written). The paper's actor, measured the same way (seeds 0-7, M = 8, τ = 30 ms,
# compute x4, 1,000 slots), ends at exactly 0.801 of the optimum for every seed, from 0.249-0.801
# untrained: a collapsed rule, so it is not held to these thresholds.
LEARNED_ACTOR = "GRLE+"


def test_grle_learns_tiny_instance_within_two_percent_of_the_optimum(paper_table):
    table = paper_table
    cfg = MECConfig(num_devices=3, slot_ms=10.0, scenario=2)
    agent = make_agent(name=LEARNED_ACTOR, num_exits=table.num_exits, seed=0)

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


# Measured with exactly the test below for agent seeds 0-7 (ACTOR_SEEDS = range(8); development
# machine, 2026-11-29): actor-alone ratio before -> after 1,000 training slots: 0.124->0.942,
# 0.678->0.916, 0.693->0.947, 0.715->0.918, 0.213->0.933, 0.110->0.853, 0.120->0.909,
# 0.111->0.942. Smallest gain 0.20, smallest trained ratio 0.853. Seeds 1 and 3 start best
# (an untrained actor that already scores 0.68-0.72), so they are the hardest to improve on.
ACTOR_SEEDS = (1, 3)
MIN_GAIN = 0.10  # half the smallest measured gain
MIN_TRAINED = 0.80  # below the smallest measured trained ratio (0.853) by 0.05


def test_grle_actor_alone_improves_on_a_loaded_instance(paper_table, greedy_slots):
    # loaded: M = 8, τ = 30 ms, ES compute x4 (the calibrated regime), scenario 1. The actor's
    # own argmax decides, no critic; its predicted Q over 100 fixed slots (states of a greedy
    # run) is divided by the exact optimum's on the same slots.
    cfg = MECConfig(num_devices=8, slot_ms=30.0, scenario=1, compute_scale=4.0)
    states = greedy_slots(paper_table, cfg, 100, seed=123)
    best = sum(optimal_decision(s).q for s in states)

    def actor_ratio(agent) -> float:
        return sum(float(score_decisions(s, agent.greedy_action(s))[0]) for s in states) / best

    for seed in ACTOR_SEEDS:
        agent = make_agent(name=LEARNED_ACTOR, num_exits=paper_table.num_exits, seed=seed)
        before = actor_ratio(agent)
        train(agent, OffloadEnv(paper_table, cfg), 1000, seed)
        after = actor_ratio(agent)
        assert after >= before + MIN_GAIN, f"seed {seed}: {before:.3f} -> {after:.3f}"
        assert after >= MIN_TRAINED, f"seed {seed}: {after:.3f}"


def _broadcast_encoding(state, config):
    """GRLE+'s dense tensors computed the former way, every formula broadcast over all M×O
    pairs and zeroed off the edges: the reference for :func:`encode_slot_batch`, which
    scatters the edge-list features (:func:`plus_edge_features`) instead."""
    mask = option_mask(state, main_branch_only=config.main_branch_only)
    num_runs, num_devices, num_options = mask.shape
    num_exits = state.exit_accuracy.shape[0]
    ts = config.time_scale_ms
    n_of_o, l_of_o = np.divmod(np.arange(num_options), num_exits)
    bits, deadline = state.task_bits, state.deadline_ms
    dev_backlog, capacity, exit_ms = state.device_backlog_ms, state.capacity, state.exit_ms
    t_cmp = exit_ms / capacity[:, :, None]
    srv_backlog, acc = state.server_backlog_ms, state.exit_accuracy
    adj = mask.astype(np.float64)
    deg_dev, deg_exit = adj.sum(axis=2), adj.sum(axis=1)
    x_device = np.stack(
        [bits / 1e6, deadline / ts, dev_backlog / deadline, deg_dev / max(num_options, 1)], -1
    )
    columns = [
        np.broadcast_to(acc[l_of_o], deg_exit.shape),
        t_cmp[:, n_of_o, l_of_o] / ts,
        exit_ms[:, n_of_o, l_of_o] / ts,
        srv_backlog[:, n_of_o] / ts,
        capacity[:, n_of_o],
        deg_exit / max(num_devices, 1),
        np.full(deg_exit.shape, num_devices / 10.0),
    ]
    x_exit = np.stack(columns, -1)
    rate = state.rate_mbps[:, :, n_of_o]
    dl = deadline[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # rate 0 off the links
        t_com = bits[:, :, None] / (rate * 1e3)
        t_arr = dev_backlog[:, :, None] + t_com
        t_done = np.maximum(t_arr, srv_backlog[:, None, n_of_o]) + t_cmp[:, None, n_of_o, l_of_o]
        attr = np.stack(
            [
                rate / config.rate_scale_mbps,
                t_com / dl,
                np.minimum(t_arr / dl, 5.0),
                np.minimum(t_done / dl, 5.0),
                acc[l_of_o] * psi(t_done, dl),
                t_done <= dl,
            ],
            -1,
        )
    attr[~mask] = 0.0
    deg_dev1 = np.maximum(deg_dev, 1.0)[:, :, None]
    deg_exit1 = np.maximum(deg_exit, 1.0)[:, :, None]
    arrays = (
        x_device,
        x_exit,
        adj / deg_dev1,
        (adj / deg_exit1.transpose(0, 2, 1)).transpose(0, 2, 1),
        attr.sum(axis=2) / deg_dev1,
        attr.sum(axis=1) / deg_exit1,
        attr,
        adj,
    )
    return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays)


@pytest.mark.parametrize("main_branch_only", [False, True])
def test_edge_list_features_scattered_to_dense_equal_the_broadcast_encoding(slot, main_branch_only):
    """Each GRLE+ feature is written once, on the edge list: scattered into the dense layout
    it gives bit for bit the tensors of the broadcast formulas, on 300 random slots of 1 to 12
    devices and 1 to 4 ES (devices that lose every link, as in a dynamic topology) run alone and
    stacked K = 1 to 4 at once; and the sparse graph carries the same bits on its edges."""
    config = GRLEConfig(main_branch_only=main_branch_only)
    rng = np.random.default_rng(7)
    for _ in range(100):
        m, n = int(rng.integers(1, 13)), int(rng.integers(1, 5))
        states = []
        for _ in range(int(rng.integers(1, 5))):
            state = slot(rng, m, n, p_link=rng.uniform(0.1, 1.0))
            link = state.link & (rng.random((m, 1)) > 0.2)  # some devices have no link
            # short deadlines and long queues: the clipped times and late tasks occur too
            deadline, backlog = rng.uniform(2.0, 60.0, m), rng.uniform(0.0, 100.0, m)
            state = replace(state, link=link, deadline_ms=deadline, device_backlog_ms=backlog)
            states.append(replace(state, server_backlog_ms=rng.uniform(0.0, 100.0, n)))
        tensors, mask = encode_slot_batch(BatchState.stack(states), config)
        expected = _broadcast_encoding(BatchState.stack(states), config)
        for name, got, want in zip(DENSE_FIELDS, tensors, expected, strict=True):
            assert torch.equal(got, want), name
        graph = encode_plus_sparse(states[0], config)
        dev, opt = graph.edge_index
        assert np.array_equal(mask[0], to_dense(np.ones(dev.numel()), graph) > 0)
        assert torch.equal(graph.x_device, tensors[0][0])
        assert torch.equal(graph.x_exit, tensors[1][0])
        assert torch.equal(graph.edge_attr, tensors[6][0][dev, opt])
