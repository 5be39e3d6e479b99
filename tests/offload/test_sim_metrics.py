"""Section VI-D metrics and eq. (17) from hand-made slot infos, and the baseline command."""

import numpy as np
import pytest

from offload.sim import SlotState, optimal_decision
from offload.sim.metrics import MetricsAccumulator, normalised_reward
from offload.sim.run_baselines import main as run_baselines


def make_state() -> SlotState:
    # three devices, two ES, two exits, ES 0 busy for 18 ms (as in test_sim_evaluator.py)
    return SlotState(
        device_ids=np.array([0, 1, 2]),
        task_bits=np.array([400_000.0, 200_000.0, 300_000.0]),
        deadline_ms=np.full(3, 30.0),
        rate_mbps=np.array([[20.0, 40.0], [50.0, 50.0], [30.0, 10.0]]),
        link=np.ones((3, 2), dtype=bool),
        device_backlog_ms=np.array([0.0, 0.0, 5.0]),
        server_backlog_ms=np.array([18.0, 0.0]),
        capacity=np.array([0.5, 1.0]),
        exit_ms=np.array([[1.0, 2.0], [3.0, 5.0]]),
        exit_accuracy=np.array([0.8, 0.9]),
    )


def test_metrics_from_two_slots():
    acc = MetricsAccumulator()
    acc.add(
        {
            "num_tasks": 4,
            "num_success": 3,
            "accuracy_sum": 0.8 + 0.9 + 0.9,
            "q_sum": 1.0,
            "slot_ms": 30.0,
        },
        1.0,
    )
    acc.add(
        {"num_tasks": 2, "num_success": 0, "accuracy_sum": 0.0, "q_sum": 0.2, "slot_ms": 30.0}, 0.5
    )
    m = acc.result()
    assert (m.slots, m.tasks) == (2, 6)
    assert m.avg_accuracy == pytest.approx(2.6 / 6)
    assert m.ssp == pytest.approx(0.5)
    assert m.throughput_per_s == pytest.approx(3 / 0.06)  # 3 successes in 60 ms
    assert m.mean_q == pytest.approx(0.6)
    assert m.mean_normalised_reward == pytest.approx(0.75)


def test_normalised_reward_of_optimum_is_one():
    state = make_state()
    best = optimal_decision(state)
    assert normalised_reward(state, best.decision) == pytest.approx(1.0)
    worse = normalised_reward(state, np.array([1, 1, 1]))
    assert 0.0 < worse < 1.0


def test_baseline_command_counts_every_task(capsys):
    rows = run_baselines(
        [
            "--slots",
            "20",
            "--scenarios",
            "1",
            "2",
            "--policies",
            "random",
            "greedy",
            "--optimum-every",
            "10",
            "--num-devices",
            "6",
        ]
    )
    out = capsys.readouterr().out
    assert "main_branch_greedy" not in out and out.count("greedy") == 2
    assert [(r["scenario"], r["policy"]) for r in rows] == [
        (1, "random"),
        (1, "greedy"),
        (2, "random"),
        (2, "greedy"),
    ]
    for r in rows:
        assert r["tasks"] == 120 and 0.0 <= r["avg_accuracy"] <= r["ssp"] <= 1.0
        assert 0.0 < r["mean_normalised_reward"] <= 1.0 + 1e-12
    by = {(r["scenario"], r["policy"]): r for r in rows}
    assert by[(1, "greedy")]["mean_q"] > by[(1, "random")]["mean_q"]
