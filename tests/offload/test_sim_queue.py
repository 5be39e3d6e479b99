"""The event-exact ES queue across slots (``cross_slot_queue="fcfs"``): a hand-traced
overtaking case against today's "free_at" reading, every task counted once, the lockstep
`BatchEnv` equal to `OffloadEnv`, the batched scorers equal to the scalar ones with carried
tasks, the exact optimum still equal to brute force when carried tasks are fixed, and the
`calibration --queue-effect` table."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import offload.sim.dynamics as dynamics_module
from offload.exit_table import ExitTable
from offload.sim import (
    BatchState,
    MECConfig,
    OffloadEnv,
    SlotState,
    batch_greedy,
    batch_score,
    brute_force_decision,
    optimal_decision,
    psi,
    score_decisions,
)
from offload.sim.baselines import BASELINES, greedy_decision
from offload.sim.calibration import queue_effect
from offload.sim.dynamics import SlotDraw
from offload.sim.run_baselines import run_policy
from offload.sim.state import CarriedTasks, ScoringRules

# one ES type, two exits: 1 ms (accuracy 0.8) and 4 ms (accuracy 0.9) at full capacity
TABLE = ExitTable(
    exits=np.array([1, 17]),
    layers=("conv1_1", "conv5_3"),
    accuracy=np.array([0.8, 0.9]),
    devices=("ES_A",),
    latency_ms=np.array([[1.0, 4.0]]),
)


def scripted(bits_kbit: list[list[float]], rate: list[list[float]]):
    """A draw_slot replacement that returns slot s's task sizes (kbit) and rates (Mbit/s)."""
    calls = iter(range(len(bits_kbit)))

    def draw(cfg, rng, fading):
        s = next(calls)
        rates = np.array(rate[s], dtype=float)[:, None]
        return SlotDraw(
            np.array(bits_kbit[s]) * 1e3, rates, rates.copy(), np.ones(1), np.ones(2), fading
        )

    return draw


def trace_env(monkeypatch, queue: str) -> OffloadEnv:
    # slot 0: device 0 sends 300 kbit at 20 Mbit/s (15 ms), device 1 100 kbit at 100 Mbit/s
    # (1 ms); slot 1: device 0 400 kbit, device 1 200 kbit, both at 100 Mbit/s (4 ms, 2 ms)
    monkeypatch.setattr(
        dynamics_module,
        "draw_slot",
        scripted([[300, 100], [400, 200], [100, 100]], [[20, 100], [100, 100], [100, 100]]),
    )
    cfg = MECConfig(
        num_devices=2,
        server_devices=("ES_A",),
        slot_ms=10.0,
        deadline_ms=30.0,
        cross_slot_queue=queue,
    )
    env = OffloadEnv(TABLE, cfg)
    env.reset(seed=0)
    return env


def test_overtaking_trace_fcfs(monkeypatch):
    """Absolute times (ms since the start of slot 0), τ = 10, δ = 30, one ES, scenario 1:

    slot 0 (0-10), both devices take the main exit (4 ms):
        device 1's task arrives at 1, served 1 -> 5: completion 5.
        device 0's task arrives at 15 -- after the slot's end: carried into slot 1.
    slot 1 (10-20), device 0 takes exit 1 (1 ms), device 1 the main exit (4 ms):
        device 1's new task: uplink free, arrives at 10 + 2 = 12 and is served first,
            12 -> 16: completion 16 - 10 = 6;
        device 0's slot-0 task arrives at 15, waits behind it: 16 -> 20, completion 20;
        device 0's new task: uplink busy until 15, arrives 15 + 4 = 19, waits: 20 -> 21,
            completion 21 - 10 = 11.
    The ES passes 21 = 1 ms into slot 2 on; nothing is in transit at 20.
    """
    env = trace_env(monkeypatch, "fcfs")
    assert env.slot_state.carried.count == 0
    _, reward, _, _, info = env.step(np.array([1, 1]))
    out = info["outcome"]  # only device 1's task is fixed in slot 0
    assert out.device_ids.tolist() == [1]
    assert out.arrival_ms.tolist() == [1.0] and out.completion_ms.tolist() == [5.0]
    assert info["num_tasks"] == 1 and info["num_success"] == 1
    assert reward == 0.9 * psi(5.0, 30.0)
    # predicted Q counts device 0's task as if nothing overtook it: 15 -> 19
    assert info["predicted_q"] == pytest.approx(0.9 * (psi(19.0, 30.0) + psi(5.0, 30.0)))
    state = env.slot_state
    assert state.device_backlog_ms.tolist() == [5.0, 0.0]
    assert state.server_backlog_ms.tolist() == [0.0]  # busy until 5 only
    carried = state.carried
    assert carried.device_ids.tolist() == [0] and carried.server.tolist() == [0]
    assert carried.exit_index.tolist() == [1] and carried.arrival_ms.tolist() == [5.0]
    assert carried.exec_ms.tolist() == [4.0] and carried.origin_ms.tolist() == [-10.0]
    expected = 0.9 * psi(20.0, 30.0) + 0.8 * psi(11.0, 30.0) + 0.9 * psi(6.0, 30.0)
    # the critic's score of slot 1 holds the carried task's term, delayed by the overtaking
    assert score_decisions(state, np.array([0, 1]))[0] == pytest.approx(expected, abs=1e-15)
    _, reward, _, _, info = env.step(np.array([0, 1]))
    out = info["outcome"]  # the carried task first, then slot 1's tasks in device order
    assert out.device_ids.tolist() == [0, 0, 1]
    assert out.exit_index.tolist() == [1, 0, 1]
    assert out.arrival_ms.tolist() == [5.0, 9.0, 2.0]
    assert out.completion_ms.tolist() == [20.0, 11.0, 6.0]
    assert out.success.tolist() == [True, True, True]
    assert reward == pytest.approx(expected, abs=1e-15)
    assert info["predicted_q"] == pytest.approx(expected, abs=1e-15)
    assert env.slot_state.server_backlog_ms.tolist() == [1.0]
    assert env.slot_state.carried.count == 0


def test_same_timeline_free_at(monkeypatch):
    """Today's reading on the same draws and decisions: slot 0 serves device 0's task at
    15 -> 19 (completion 19) and passes "ES free at 19" = 9 ms into slot 1; slot 1's task of
    device 1 arrives at 12 but waits until 19: 19 -> 23 (completion 13); device 0's arrives
    at 19: 23 -> 24 (completion 14)."""
    env = trace_env(monkeypatch, "free_at")
    assert env.slot_state.carried is None
    _, _, _, _, info = env.step(np.array([1, 1]))
    assert info["outcome"].completion_ms.tolist() == [19.0, 5.0]
    assert env.slot_state.server_backlog_ms.tolist() == [9.0]
    _, _, _, _, info = env.step(np.array([0, 1]))
    assert info["outcome"].completion_ms.tolist() == [14.0, 13.0]


def test_equal_arrivals_serve_the_carried_task_first():
    # a carried task and a new one both reach the ES 2 ms into the slot: the older goes first
    state = SlotState(
        device_ids=np.array([0]),
        task_bits=np.array([200e3]),
        deadline_ms=np.array([30.0]),
        rate_mbps=np.array([[100.0]]),
        link=np.array([[True]]),
        device_backlog_ms=np.array([0.0]),
        server_backlog_ms=np.array([0.0]),
        capacity=np.array([1.0]),
        exit_ms=np.array([[1.0, 4.0]]),
        exit_accuracy=np.array([0.8, 0.9]),
        rules=ScoringRules(1.0, True, False),
        carried=CarriedTasks(
            *(np.array([v]) for v in (1, 0, 1, 2.0, 4.0, -10.0, 30.0)), np.array([True])
        ),
    )
    # carried 2 -> 6 (completion 16), then the new task 6 -> 7 (exit 1, completion 7)
    want = 0.9 * psi(16.0, 30.0) + 0.8 * psi(7.0, 30.0)
    assert score_decisions(state, np.array([0]))[0] == pytest.approx(want, abs=1e-15)
    assert optimal_decision(state).q == pytest.approx(
        max(want, 0.9 * psi(16.0, 30.0) + 0.9 * psi(10.0, 30.0)), abs=1e-15
    )


def random_carried_state(rng: np.random.Generator) -> SlotState:
    num_srv, num_exits = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    num_dev = int(rng.integers(1, 5))
    while (num_srv * num_exits) ** num_dev > 2048:
        num_dev -= 1
    num_car = int(rng.integers(0, 4))
    link = rng.uniform(size=(num_dev, num_srv)) < 0.75
    link[np.arange(num_dev), rng.integers(0, num_srv, num_dev)] = True
    rules = ScoringRules(
        float(rng.choice([1.0, 2.0])), bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
    )
    arrival = rng.uniform(0.0, 12.0, num_car)
    arrival[: num_car // 2] = np.round(arrival[: num_car // 2])  # some ties with each other
    return SlotState(
        device_ids=np.arange(num_dev),
        task_bits=rng.uniform(50, 100, num_dev) * 8000,
        deadline_ms=np.full(num_dev, 30.0),
        rate_mbps=rng.uniform(20, 100, (num_dev, num_srv)),
        link=link,
        device_backlog_ms=rng.uniform(0, 10, num_dev) * (rng.uniform(size=num_dev) < 0.5),
        server_backlog_ms=rng.uniform(0, 8, num_srv) * (rng.uniform(size=num_srv) < 0.6),
        capacity=rng.uniform(0.2, 1.0, num_srv),
        exit_ms=np.sort(rng.uniform(0.3, 12.0, (num_srv, num_exits)), axis=1),
        exit_accuracy=np.sort(rng.uniform(0.5, 0.95, num_exits)),
        rules=rules,
        carried=CarriedTasks(
            device_ids=rng.integers(0, 8, num_car),
            server=rng.integers(0, num_srv, num_car),
            exit_index=rng.integers(0, num_exits, num_car),
            arrival_ms=arrival,
            exec_ms=rng.uniform(0.5, 12.0, num_car),
            origin_ms=-rng.choice([10.0, 20.0], num_car),
            deadline_ms=np.full(num_car, 30.0),
            present=np.ones(num_car, dtype=bool),
        ),
    )


def test_optimum_equals_brute_force_with_carried_tasks():
    rng = np.random.default_rng(11)
    worse_greedy = with_carried = 0
    for _ in range(150):
        state = random_carried_state(rng)
        with_carried += state.carried.count > 0
        exact = optimal_decision(state)
        brute = brute_force_decision(state)
        assert exact.q == pytest.approx(brute.q, rel=1e-12, abs=1e-12)
        assert score_decisions(state, exact.decision)[0] == pytest.approx(exact.q, abs=1e-12)
        greedy = greedy_decision(state)
        assert np.array_equal(batch_greedy(BatchState.of(state))[0], greedy)
        worse_greedy += score_decisions(state, greedy)[0] < exact.q - 1e-9
    assert with_carried > 90 and worse_greedy > 5


def test_stacked_states_keep_their_carried_tasks():
    rng = np.random.default_rng(5)
    base = random_carried_state(rng)
    while base.carried.count < 3:
        base = random_carried_state(rng)
    # the same slot with 3, none (None) and 1 carried tasks, stacked with padding
    states = [
        replace(base, carried=base.carried.take(np.arange(3))),
        replace(base, carried=None),
        replace(base, carried=base.carried.take(np.arange(1))),
    ]
    batch = BatchState.stack(states)
    assert batch.carried.count == 3
    assert batch.carried.present.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    cands = rng.integers(0, batch.num_options, (3, 4, batch.num_devices))
    scores = batch_score(batch, cands)
    for k, state in enumerate(states):
        back = batch.slot(k).carried
        assert back.count == (0 if state.carried is None else state.carried.count)
        if state.carried is not None:
            assert all(np.array_equal(a, b) for a, b in zip(back, state.carried, strict=True))
        assert np.allclose(scores[k], score_decisions(state, cands[k]), rtol=1e-13)
    # carried tasks change the score (else this test could not fail)
    assert not np.allclose(scores[0], scores[1])


def test_dynamic_topology_counts_every_task_once_under_fcfs(paper_table):
    table = paper_table
    cfg = MECConfig(
        num_devices=6,
        max_devices=8,
        slot_ms=10.0,
        compute_scale=4.0,
        dynamic_topology=True,
        link_down_prob=0.3,
        cross_slot_queue="fcfs",
    )
    env = OffloadEnv(table, cfg)
    env.reset(seed=4)
    generated = fixed = 0
    for _ in range(30):
        state = env.slot_state
        generated += state.num_devices
        fixed += env.step(greedy_decision(state))[-1]["num_tasks"]
    assert fixed + env.slot_state.carried.count == generated


def test_queue_effect_table_recomputes_from_the_environment(paper_table):
    table = paper_table
    rows = queue_effect(
        table, slots=20, seed=3, num_devices=4, compute_scales=(4.0,), scenarios=(2,)
    )
    assert len(rows) == 1 and rows[0]["compute_scale"] == 4.0 and rows[0]["scenario"] == 2
    for queue in ("free_at", "fcfs"):
        cfg = MECConfig(
            num_devices=4, slot_ms=10.0, scenario=2, compute_scale=4.0, cross_slot_queue=queue
        )
        m = run_policy(OffloadEnv(table, cfg), BASELINES["greedy"], slots=20, seed=3)
        assert rows[0][f"acc_{queue}"] == m.avg_accuracy and rows[0][f"ssp_{queue}"] == m.ssp
    assert rows[0]["carried_free_at"] == 0.0 and rows[0]["carried_fcfs"] > 0.5


def test_unknown_queue_reading_is_one_clear_error():
    with pytest.raises(ValueError, match=r"cross_slot_queue='fifo': choose one of"):
        MECConfig(cross_slot_queue="fifo")


def test_predicted_q_keeps_the_carried_task_when_another_link_is_down(monkeypatch):
    """Slot 0 as in the overtaking trace (device 0's task is carried, arriving at 15 ms);
    in slot 1 device 1's only link is down, so its task is lost. Absolute times:
        device 0's slot-0 task arrives at 15, served 15 -> 19: completion 19 ms after its
            generation at 0;
        device 0's new task (exit 1, 1 ms): uplink busy until 15, arrives 15 + 4 = 19, served
            19 -> 20: completion 20 - 10 = 10 ms;
        device 1's task is lost: Q term 0, no resources.
    The predicted Q must hold the carried task's term 0.9 ψ(19) beside 0.8 ψ(10)."""
    env = trace_env(monkeypatch, "fcfs")
    env.step(np.array([1, 1]))
    state = env.slot_state
    assert state.carried.count == 1
    env._stepper.state = replace(state, link=np.array([[True], [False]]))
    _, reward, _, _, info = env.step(np.array([0, 1]))
    out = info["outcome"]
    assert info["num_lost"] == 1
    assert out.device_ids.tolist() == [0, 0, 1]
    assert out.completion_ms.tolist() == [19.0, 10.0, np.inf]
    expected = 0.9 * psi(19.0, 30.0) + 0.8 * psi(10.0, 30.0)
    assert reward == pytest.approx(expected, abs=1e-15)
    assert info["predicted_q"] == pytest.approx(expected, abs=1e-15)
    # the same prediction from the scorer: the lost task as absent, not as -inf
    present = np.array([True, False])
    assert score_decisions(replace(state, link=np.array([[True], [False]])), np.array([0, 1]),
                           present)[0] == pytest.approx(expected, abs=1e-15)  # fmt: skip
