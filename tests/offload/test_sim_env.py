"""The environment: hand-computed multi-slot traces (device and ES backlog, FCFS, capacity
scaling, send vs drop), determinism, the Gymnasium contract and invalid actions."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from offload.exit_table import ExitTable, load_exit_table
from offload.sim import MECConfig, OffloadEnv, psi

REPO = Path(__file__).resolve().parents[2]
# one ES type, two exits: 1 ms (accuracy 0.8) and 4 ms (accuracy 0.9) at full capacity
TABLE = ExitTable(
    exits=np.array([1, 17]),
    layers=("conv1_1", "conv5_3"),
    accuracy=np.array([0.8, 0.9]),
    devices=("ES_A",),
    latency_ms=np.array([[1.0, 4.0]]),
)


def trace_env(late_policy: str) -> OffloadEnv:
    # 400 kbit tasks at 20 Mbit/s: every transmission takes 20 ms, twice the 10 ms slot;
    # scenario 2 with capacity fixed at 0.5 doubles the exit times to 2 ms and 8 ms.
    cfg = MECConfig(
        num_devices=2,
        server_devices=("ES_A",),
        slot_ms=10.0,
        deadline_ms=30.0,
        task_kb=(50.0, 50.0),
        rate_mbps=(20.0, 20.0),
        scenario=2,
        capacity_range=(0.5, 0.5),
        late_policy=late_policy,
    )
    env = OffloadEnv(TABLE, cfg)
    env.reset(seed=0)
    return env


def test_three_slot_trace_send_late_tasks():
    env = trace_env("send")
    # slot 0: both arrive at 20 ms (tie: device 0 first); d0 main 20 -> 28, d1 early 28 -> 30
    _, reward, _, _, info = env.step(np.array([1, 0]))
    out = info["outcome"]
    assert out.arrival_ms.tolist() == [20.0, 20.0]
    assert out.completion_ms.tolist() == [28.0, 30.0]
    assert out.success.tolist() == [True, True]
    assert reward == pytest.approx(0.9 * psi(28.0, 30.0) + 0.8 * psi(30.0, 30.0), abs=1e-15)
    # uplinks busy until 20 ms -> 10 ms into slot 1; ES busy until 30 ms -> 20 ms into slot 1
    assert env.slot_state.device_backlog_ms.tolist() == [10.0, 10.0]
    assert env.slot_state.server_backlog_ms.tolist() == [20.0]
    # slot 1: transmissions 10 -> 30 ms; both main: 30 -> 38, 38 -> 46, both late but computed
    _, reward, _, _, info = env.step(np.array([1, 1]))
    out = info["outcome"]
    assert out.arrival_ms.tolist() == [30.0, 30.0]
    assert out.completion_ms.tolist() == [38.0, 46.0]
    assert out.success.tolist() == [False, False]
    assert out.accuracy.tolist() == [0.0, 0.0]
    assert reward == pytest.approx(0.9 * (psi(38.0, 30.0) + psi(46.0, 30.0)), abs=1e-15)
    assert env.slot_state.device_backlog_ms.tolist() == [20.0, 20.0]  # eq. (6) backlog grows
    assert env.slot_state.server_backlog_ms.tolist() == [36.0]
    # slot 2: arrivals 40 ms, ES free at 36; early exits 40 -> 42 -> 44
    _, _, _, _, info = env.step(np.array([0, 0]))
    assert info["outcome"].completion_ms.tolist() == [42.0, 44.0]
    assert env.slot_state.device_backlog_ms.tolist() == [30.0, 30.0]
    assert env.slot_state.server_backlog_ms.tolist() == [34.0]


def test_three_slot_trace_drop_late_tasks():
    env = trace_env("drop")
    _, _, _, _, info = env.step(np.array([1, 0]))
    assert info["outcome"].completion_ms.tolist() == [28.0, 30.0]
    # slot 1: transmissions 10 -> 30 ms reach the ES at the deadline: dropped, ES untouched;
    # the uplink is released at the deadline (30 ms -> 20 ms into slot 2)
    _, reward, _, _, info = env.step(np.array([1, 1]))
    out = info["outcome"]
    assert out.arrival_ms.tolist() == [np.inf, np.inf]
    assert out.completion_ms.tolist() == [np.inf, np.inf]
    assert out.success.tolist() == [False, False]
    assert reward == 0.0
    assert env.slot_state.device_backlog_ms.tolist() == [20.0, 20.0]
    assert env.slot_state.server_backlog_ms.tolist() == [10.0]
    # slot 2: the backlog stays at 20 ms (bounded by the deadline), the ES drains
    env.step(np.array([0, 0]))
    assert env.slot_state.device_backlog_ms.tolist() == [20.0, 20.0]
    assert env.slot_state.server_backlog_ms.tolist() == [0.0]


def run(env: OffloadEnv, seed: int, slots: int) -> list:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trace = []
    for _ in range(slots):
        state = env.slot_state
        keys = np.where(state.link, rng.uniform(size=state.link.shape), -1.0)
        decision = np.argmax(keys, axis=1) * state.num_exits + rng.integers(
            0, state.num_exits, state.num_devices
        )
        obs, reward, _, _, info = env.step(decision)
        trace.append(
            (
                state.device_ids.tolist(),
                reward,
                info["outcome"].completion_ms.tolist(),
                {k: v.tolist() for k, v in obs.items()},
            )
        )
    return trace


def test_same_seed_same_trajectory():
    table = load_exit_table(REPO / "checkpoints" / "paper_table1.csv")
    cfg = MECConfig(
        num_devices=6,
        max_devices=9,
        scenario=4,
        dynamic_topology=True,
        join_prob=0.3,
        leave_prob=0.1,
        link_down_prob=0.2,
    )
    first = run(OffloadEnv(table, cfg), 3, 40)
    assert first == run(OffloadEnv(table, cfg), 3, 40)
    assert first != run(OffloadEnv(table, cfg), 4, 40)


@pytest.mark.parametrize("dynamic", [False, True])
def test_gymnasium_env_checker_passes(dynamic):
    table = load_exit_table(REPO / "checkpoints" / "paper_table1.csv")
    cfg = MECConfig(
        num_devices=4, max_devices=6, scenario=3, dynamic_topology=dynamic, link_down_prob=0.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checker warning either
        check_env(OffloadEnv(table, cfg), skip_render_check=True)


def test_invalid_actions_are_rejected():
    # every link goes down after each slot and one random link per device is restored
    cfg = MECConfig(
        num_devices=3,
        max_devices=5,
        server_devices=("ES_A", "ES_A"),
        dynamic_topology=True,
        leave_prob=0.0,
        join_prob=0.0,
        link_down_prob=1.0,
        link_up_prob=0.0,
    )
    env = OffloadEnv(TABLE, cfg)
    with pytest.raises(AssertionError, match="call reset"):
        env.step(np.zeros(3, dtype=np.int64))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"pass 3 options .* or 5"):
        env.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        env.step(np.array([0, 4, 0]))
    with pytest.raises(ValueError, match="integer"):
        env.step(np.array([0.0, 0.5, 1.0]))
    env.step(np.array([0, 0, 0, 3, 3]))  # padded action: inactive entries are ignored
    link = env.slot_state.link
    assert link.sum(axis=1).tolist() == [1, 1, 1]
    down = int(np.argmin(link[1]))
    action = np.argmax(link, axis=1) * 2
    action[1] = down * 2
    with pytest.raises(ValueError, match="device 1 .*link is down"):
        env.step(action)
    _, _, _, _, info = env.step(np.argmax(link, axis=1) * 2 + 1)
    assert info["num_tasks"] == 3


def test_policies_see_the_same_tasks_channels_and_topology():
    table = load_exit_table(REPO / "checkpoints" / "paper_table1.csv")
    cfg = MECConfig(
        num_devices=5,
        max_devices=8,
        scenario=4,
        dynamic_topology=True,
        join_prob=0.3,
        leave_prob=0.1,
    )
    seen = []
    for option in (0, 9):  # everything on ES 0's shallowest exit vs ES 1's main branch
        env = OffloadEnv(table, cfg)
        env.reset(seed=11)
        trace = []
        for _ in range(30):
            state, draw = env.slot_state, env.slot_draw
            trace.append(
                (
                    state.device_ids.tolist(),
                    state.link.tolist(),
                    draw.task_bits.tolist(),
                    draw.rate_true_mbps.tolist(),
                    draw.capacity.tolist(),
                    draw.jitter.tolist(),
                )
            )
            linked = np.where(state.link[:, option // 5], option, np.argmax(state.link, axis=1) * 5)
            env.step(linked)
        seen.append(trace)
    assert seen[0] == seen[1]


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"scenario": 5}, "choose 1, 2, 3 or 4"),
        ({"kb_reading": "KB"}, "kb_reading='KB'"),
        ({"late_policy": "queue"}, "late_policy='queue'"),
        ({"max_devices": 3}, "below num_devices"),
        ({"capacity_range": (0.0, 1.0)}, "0 < low <= high <= 1"),
        ({"leave_prob": 1.5}, "leave_prob=1.5"),
    ],
)
def test_invalid_config_is_rejected(changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        MECConfig(**{"num_devices": 4, **changes})
