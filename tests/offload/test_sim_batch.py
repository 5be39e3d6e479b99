"""K environments at once: BatchEnv gives each run what OffloadEnv gives it alone (states,
carried tasks, step numbers, metrics; both under free_at and fcfs queues), the greedy's two
engines decide alike, random draws per run, the FCFS schedule with per-row backlogs and
deadlines, and errors."""

import copy
import itertools
import math

import numpy as np
import pytest

from offload.sim import (
    BatchEnv,
    BatchMetrics,
    BatchState,
    MECConfig,
    OffloadEnv,
    SlotState,
    batch_greedy,
    batch_random,
    batch_score,
    batch_task_rewards,
    fcfs,
)
from offload.sim.baselines import greedy_decision, random_decision
from offload.sim.fcfs import schedule_slot
from offload.sim.state import ScoringRules

STATE_FIELDS = (
    "device_ids",
    "task_bits",
    "deadline_ms",
    "rate_mbps",
    "link",
    "device_backlog_ms",
    "server_backlog_ms",
    "capacity",
    "exit_ms",
    "exit_accuracy",
)
READINGS = (
    {},  # as written, drop, from generation
    {"late_policy": "send"},
    {"psi_form": "doubled", "completion_origin": "transmission"},
    {"cross_slot_queue": "fcfs"},
    {"cross_slot_queue": "fcfs", "late_policy": "send", "completion_origin": "transmission"},
)
RULES = (
    ScoringRules(1.0, True, False),
    ScoringRules(1.0, False, False),
    ScoringRules(2.0, True, True),
    ScoringRules(2.0, False, True),
)


def mixed_configs(num_devices=5, **readings):
    """16 configs: scenarios 1-4 x τ 10, 30 ms x compute_scale 1, 4 (rate models alternate)."""
    return [
        MECConfig(
            num_devices=num_devices,
            max_devices=num_devices + 1,
            scenario=scenario,
            slot_ms=slot_ms,
            compute_scale=scale,
            rate_model=("iid", "markov")[i % 2],
            **readings,
        )
        for i, (scenario, slot_ms, scale) in enumerate(
            itertools.product((1, 2, 3, 4), (10.0, 30.0), (1.0, 4.0))
        )
    ]


def assert_same_state(state: SlotState, expected: SlotState):
    for name in STATE_FIELDS:
        assert np.array_equal(getattr(state, name), getattr(expected, name)), name
    assert state.rules == expected.rules


@pytest.fixture
def rand(paper_table, random_state):
    """``rand(rng, rules, num_dev=6, num_srv=3, ties=False)``: a slot state with links down,
    device and ES backlogs (late and dropped tasks) and, with ``ties``, identical servers and
    devices (exactly tied options); Table I's exits at compute x4."""

    def make(rng, rules, num_dev=6, num_srv=3, ties=False):
        exit_ms = 4.0 * np.stack(
            [paper_table.latency_of(paper_table.devices[n % 2]) for n in range(num_srv)]
        )
        state = random_state(
            rng,
            num_devices=num_dev,
            exit_ms=exit_ms,
            exit_accuracy=paper_table.accuracy,
            rules=rules,
            device_backlog_ms=rng.choice([0.0, 0.0, 5.0, 20.0, 29.0, 40.0], num_dev)
            * rng.uniform(0.5, 1.5),
            server_backlog_ms=rng.choice([0.0, 10.0, 25.0, 35.0], num_srv),
        )
        if ties:
            rate, bits = state.rate_mbps, state.task_bits
            backlog, capacity = state.device_backlog_ms, state.capacity
            server_backlog = state.server_backlog_ms
            rate[:] = rate[:, :1]
            capacity[:] = capacity[0]
            exit_ms[:] = exit_ms[0]
            server_backlog[:] = server_backlog[0]
            half = num_dev // 2
            bits[:half], backlog[:half], rate[:half] = bits[0], backlog[0], rate[0]
        return state

    return make


@pytest.mark.parametrize("readings", READINGS)
def test_batch_env_reproduces_offload_envs(readings, paper_table):
    configs = mixed_configs(**readings)
    seeds = [100 + k for k in range(len(configs))]
    batch = BatchEnv(paper_table, configs)
    state = batch.reset(seeds)
    envs = [OffloadEnv(paper_table, cfg) for cfg in configs]
    for env, seed in zip(envs, seeds, strict=True):
        env.reset(seed=seed)
    metrics = BatchMetrics(len(configs))
    accumulators = [BatchMetrics(1) for _ in envs]
    rng = np.random.default_rng(1)
    tasks, most_carried = np.zeros(len(envs), dtype=np.int64), 0
    for step in range(30):
        greedy = batch_greedy(state)  # 16 slots of M = 5: the vectorised engine (K >= 2M)
        for k, env in enumerate(envs):
            assert_same_state(state.slot(k), env.slot_state)
            assert np.array_equal(greedy[k], greedy_decision(env.slot_state))  # scalar engine
            if env.slot_state.carried is not None:
                mine, theirs = env.slot_state.carried, state.slot(k).carried
                assert all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))
                most_carried = max(most_carried, mine.count)
        random = rng.integers(0, state.num_options, (state.num_envs, state.num_devices))
        decisions = greedy if step % 2 else random
        info = batch.step(decisions)
        metrics.add(info)
        tasks += info.num_tasks
        for k, env in enumerate(envs):
            expected = env.step(decisions[k])[4]
            accumulators[k].add(expected)
            assert info.num_tasks[k] == expected["num_tasks"]
            assert info.num_success[k] == expected["num_success"]
            assert info.accuracy_sum[k] == pytest.approx(expected["accuracy_sum"], rel=1e-12)
            assert info.q_sum[k] == pytest.approx(expected["q_sum"], rel=1e-12, abs=1e-15)
            assert info.slot_ms[k] == expected["slot_ms"]
        state = batch.state
    for got, acc in zip(metrics.result(), accumulators, strict=True):
        (want,) = acc.result()
        assert (got.slots, got.tasks) == (want.slots, want.tasks)
        for name in ("avg_accuracy", "ssp", "throughput_per_s", "mean_q"):
            assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-12), name
        assert math.isnan(got.mean_normalised_reward) and math.isnan(want.mean_normalised_reward)
    if readings.get("cross_slot_queue") == "fcfs":
        assert most_carried >= 2  # tasks do cross slot ends at τ = 10 ms, compute x4
        # every task is counted once: fixed ones in the infos, the rest still in transit
        still = state.carried.present.sum(axis=1)
        assert (tasks + still).tolist() == [30 * 5] * len(envs)


def test_stack_is_the_inverse_of_slot(paper_table, rand):
    rng = np.random.default_rng(2)
    states = [rand(rng, RULES[0]) for _ in range(4)]
    batch = BatchState.stack(states)
    assert (batch.num_envs, batch.num_devices, batch.num_servers) == (4, 6, 3)
    assert batch.num_options == 3 * paper_table.num_exits
    for k, state in enumerate(states):
        assert_same_state(batch.slot(k), state)


@pytest.mark.parametrize("python_below", [0, 100])  # numpy path, Python fast path
@pytest.mark.parametrize("drop_late", [True, False])
def test_schedule_slot_per_row_backlog_and_deadlines(monkeypatch, python_below, drop_late):
    rng = np.random.default_rng(4)
    num_cand, num_dev, num_srv = 20, 7, 3
    arrival = rng.choice([0.0, 5.0, 12.0], (num_cand, num_dev)) + rng.uniform(0, 30, num_dev)
    arrival[rng.random(arrival.shape) < 0.1] = np.inf  # dropped at the uplink
    arrival[:, 1] = arrival[:, 0]  # equal arrivals: served in device order
    exec_ms = rng.uniform(1.0, 15.0, (num_cand, num_dev))
    server = rng.integers(0, num_srv, (num_cand, num_dev))
    present = rng.random((num_cand, num_dev)) < 0.8
    backlog = rng.choice([0.0, 10.0, 40.0], (num_cand, num_srv))
    deadline = rng.uniform(20.0, 45.0, (num_cand, num_dev))
    rows = [
        schedule_slot(
            arrival[[s]],
            exec_ms[[s]],
            server[[s]],
            present[[s]],
            backlog[s],
            deadline[s],
            drop_late,
        )
        for s in range(num_cand)
    ]  # one candidate: the Python path
    monkeypatch.setattr(fcfs, "_PYTHON_BELOW", python_below)
    finish, free = schedule_slot(arrival, exec_ms, server, present, backlog, deadline, drop_late)
    assert np.array_equal(finish, np.concatenate([f for f, _ in rows]))
    assert np.array_equal(free, np.concatenate([f for _, f in rows]))
    # shared (N,) backlog and (M,) deadlines still give the single-slot results
    shared = schedule_slot(arrival, exec_ms, server, present, backlog[0], deadline[0], drop_late)
    tiled = schedule_slot(
        arrival,
        exec_ms,
        server,
        present,
        np.tile(backlog[0], (num_cand, 1)),
        np.tile(deadline[0], (num_cand, 1)),
        drop_late,
    )
    assert np.array_equal(shared[0], tiled[0]) and np.array_equal(shared[1], tiled[1])


@pytest.mark.parametrize("rules", RULES)
def test_batch_greedy_equals_greedy_decision(rules, rand):
    rng = np.random.default_rng(5)
    states = [rand(rng, rules, ties=k % 2 == 1) for k in range(24)]
    batch = BatchState.stack(states)
    decision = batch_greedy(batch)
    for k, state in enumerate(states):
        assert np.array_equal(decision[k], greedy_decision(state)), k


def test_batch_random_equals_random_decision(paper_table, rand):
    rng = np.random.default_rng(6)
    states = [rand(rng, RULES[0]) for _ in range(6)]
    batch = BatchState.stack(states)
    rngs = [np.random.default_rng(k) for k in range(6)]
    clones = copy.deepcopy(rngs)
    decision = batch_random(batch, rngs)
    for k, state in enumerate(states):
        assert np.array_equal(decision[k], random_decision(state, clones[k]))
        assert rngs[k].uniform() == clones[k].uniform()  # the same draws were consumed
        assert batch.link[k, np.arange(6), decision[k] // paper_table.num_exits].all()


def test_clear_errors(paper_table, rand):
    cfg = MECConfig(num_devices=4)
    with pytest.raises(ValueError, match="num_devices"):
        BatchEnv(paper_table, [cfg, cfg.replace(num_devices=5)])
    with pytest.raises(ValueError, match="late_policy"):
        BatchEnv(paper_table, [cfg, cfg.replace(late_policy="send")])
    with pytest.raises(ValueError, match="use OffloadEnv for dynamic topology"):
        BatchEnv(paper_table, [cfg, cfg.replace(dynamic_topology=True)])
    with pytest.raises(ValueError, match="no configs"):
        BatchEnv(paper_table, [])
    batch = BatchEnv(paper_table, [cfg, cfg.replace(scenario=3)])
    with pytest.raises(ValueError, match="one per environment"):
        batch.reset([0])
    state = batch.reset([0, 1])
    for bad in (np.zeros(4, dtype=int), np.zeros((2, 5), dtype=int), np.zeros((2, 1, 4), int)):
        with pytest.raises(ValueError, match=r"pass an int array of shape \(2, 4\)"):
            batch.step(bad)
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\)"):
        batch.step(np.full((2, 4), 10))
    with pytest.raises(ValueError, match="integer option indices"):
        batch.step(np.full((2, 4), 0.5))
    with pytest.raises(ValueError, match=r"shape \(2, S, 4\)"):
        batch_score(state, np.zeros((2, 4), dtype=int))
    with pytest.raises(ValueError, match="present has shape"):
        batch_task_rewards(state, np.zeros((2, 3, 4), int), np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="one per environment"):
        batch_random(state, [np.random.default_rng(0)])
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match=r"\(M, N, L\)"):
        BatchState.stack([rand(rng, RULES[0]), rand(rng, RULES[0], num_dev=5)])
    with pytest.raises(ValueError, match="same reward readings"):
        BatchState.stack([rand(rng, RULES[0]), rand(rng, RULES[1])])
    # a device without links is no error for the greedy (dynamic topology): its task is lost,
    # it takes option 0, and the other devices are placed as if it were not there
    orphan = rand(rng, RULES[0])
    orphan.link[2] = False
    alone = rand(rng, RULES[0])
    dec = batch_greedy(BatchState.stack([alone, orphan]))
    assert dec[1, 2] == 0
    devices = np.arange(orphan.num_devices)
    assert (orphan.link[devices, dec[1] // orphan.num_exits] | (devices == 2)).all()
    # a missing link is not an error in scoring: the candidate gets -inf, as in score_decisions
    down = rand(rng, RULES[0])
    down.link[0] = [False, True, True]
    assert batch_score(BatchState.stack([down]), np.zeros((1, 1, 6), int))[0, 0] == -np.inf
