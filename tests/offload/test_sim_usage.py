"""Exit and ES usage statistics on a hand-made three-slot run: exact counts from
`BatchMetrics` of one run (K = 1, info dicts) and of K runs (lockstep), and the result-row columns."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from offload.exit_table import ExitTable
from offload.sim import BatchEnv, BatchMetrics, MECConfig, OffloadEnv
from offload.sim.metrics import Usage

# one ES type, two exits (exit numbers 1 and 17): 1 ms (accuracy 0.8) and 4 ms (0.9)
TABLE = ExitTable(
    exits=np.array([1, 17]),
    layers=("conv1_1", "conv5_3"),
    accuracy=np.array([0.8, 0.9]),
    devices=("ES_A",),
    latency_ms=np.array([[1.0, 4.0]]),
)


def config(queue: str = "free_at") -> MECConfig:
    # 400 kbit at 100 Mbit/s: every task reaches its ES 4 ms into the slot; capacity 0.25
    # makes the exits 4 ms and 16 ms; τ = δ = 30 ms, two ESs of the same type
    return MECConfig(
        num_devices=3,
        server_devices=("ES_A", "ES_A"),
        slot_ms=30.0,
        deadline_ms=30.0,
        task_kb=(50.0, 50.0),
        rate_mbps=(100.0, 100.0),
        scenario=2,
        capacity_range=(0.25, 0.25),
        cross_slot_queue=queue,
    )


# option o = n*L + l with L = 2: 0 = (ES 1, exit 1), 1 = (ES 1, main), 2 = (ES 2, exit 1),
# 3 = (ES 2, main). Timelines (ms after the slot start, arrival 4 ms):
#   slot 0 [0, 1, 2]: ES 1: d0 exit 1 4-8 ok, d1 main 8-24 ok; ES 2: d2 exit 1 4-8 ok
#   slot 1 [1, 1, 3]: ES 1: d0 main 4-20 ok, d1 main 20-36 > 30 fails; ES 2: d2 main 4-20 ok
#   slot 2 [0, 3, 3]: ES 1: d0 exit 1 4-8 ok; ES 2: d1 main 4-20 ok, d2 main 20-36 fails
DECISIONS = [[0, 1, 2], [1, 1, 3], [0, 3, 3]]
# exit 1: 3 tasks, 3 successful; main: 6 tasks, 4 successful; ES 1: 5 tasks, ES 2: 4
EXPECTED = {
    "exit_share_1": 3 / 9,
    "exit_share_17": 6 / 9,
    "es_share_1": 5 / 9,
    "es_share_2": 4 / 9,
    "success_exit_1": 1.0,
    "success_exit_17": 4 / 6,
}


def test_usage_of_a_hand_made_run():
    env = OffloadEnv(TABLE, config())
    env.reset(seed=0)
    acc = BatchMetrics(1)
    for decision in DECISIONS:
        acc.add(env.step(np.array(decision))[-1])
    (usage,) = acc.usage()
    assert usage.exit_tasks.tolist() == [3, 6]
    assert usage.exit_success.tolist() == [3, 4]
    assert usage.server_tasks.tolist() == [5, 4]
    assert acc.result()[0].ssp == pytest.approx(7 / 9)
    assert usage.columns(TABLE.exits) == pytest.approx(EXPECTED)


@pytest.mark.parametrize("queue", ["free_at", "fcfs"])
def test_batch_usage_equals_one_run_counts(queue):
    batch = BatchEnv(TABLE, [config(queue), config(queue)])
    batch.reset([0, 1])
    metrics = BatchMetrics(2)
    for decision in DECISIONS:
        # environment 1: everything on ES 1, exit 1 (4 ms each): 4-8, 8-12, 12-16, all ok
        metrics.add(batch.step(np.array([decision, [0, 0, 0]])))
    first, second = metrics.usage()
    assert first.exit_tasks.tolist() == [3, 6] and first.exit_success.tolist() == [3, 4]
    assert first.server_tasks.tolist() == [5, 4]
    assert second.exit_tasks.tolist() == [9, 0] and second.exit_success.tolist() == [9, 0]
    assert second.server_tasks.tolist() == [9, 0]
    cols = second.columns(TABLE.exits)
    assert cols["exit_share_1"] == 1.0 and cols["es_share_2"] == 0.0
    assert math.isnan(cols["success_exit_17"])  # no task went to the main branch


def test_usage_sizes_and_errors():
    acc = BatchMetrics(1, num_exits=5, num_servers=2)
    outcome = SimpleNamespace(exit_index=[1, 1], server=[0, 0], success=[True, False])
    step = {"num_tasks": 2, "num_success": 1, "accuracy_sum": 0.5, "q_sum": 0.25, "slot_ms": 10.0}
    acc.add({**step, "outcome": outcome})
    (usage,) = acc.usage()
    assert usage.exit_tasks.tolist() == [0, 2, 0, 0, 0]
    assert usage.exit_success.tolist() == [0, 1, 0, 0, 0]
    assert usage.server_tasks.tolist() == [2, 0]
    with pytest.raises(ValueError, match="exit numbers"):
        usage.columns([1, 17])
    empty = Usage(np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64), np.zeros(1, int))
    assert all(math.isnan(v) for v in empty.columns([1, 17]).values())
    with pytest.raises(ValueError, match="before any add"):
        BatchMetrics(1).usage()
