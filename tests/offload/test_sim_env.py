"""The environment: hand-computed multi-slot traces (device and ES backlog, FCFS, capacity
scaling, send vs drop), determinism, the Gymnasium contract (with links down: the action mask
and lost tasks) and invalid actions."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from offload.exit_table import ExitTable
from offload.sim import MECConfig, OffloadEnv, psi

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


def test_same_seed_same_trajectory(paper_table):
    table = paper_table
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


@pytest.mark.parametrize("link_down_prob", [None, 0.0, 0.5, 1.0])
def test_gymnasium_env_checker_passes(paper_table, link_down_prob):
    # None: static topology; otherwise dynamic, and the checker's unmasked sampled actions
    # pick down links (accepted: those tasks are lost)
    cfg = MECConfig(
        num_devices=4,
        max_devices=6,
        scenario=3,
        dynamic_topology=link_down_prob is not None,
        link_down_prob=link_down_prob or 0.0,
        link_up_prob=0.0 if link_down_prob == 1.0 else 0.5,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checker warning either
        check_env(OffloadEnv(paper_table, cfg), skip_render_check=True)


def lossy_env(**changes) -> OffloadEnv:
    # two identical ES; after every slot all links go down and one per device comes back;
    # 400 kbit at 20 Mbit/s = 20 ms on the uplink; capacity 0.5: exits take 2 ms and 8 ms
    settings = {
        "num_devices": 3,
        "max_devices": 4,
        "server_devices": ("ES_A", "ES_A"),
        "slot_ms": 10.0,
        "task_kb": (50.0, 50.0),
        "rate_mbps": (20.0, 20.0),
        "scenario": 2,
        "capacity_range": (0.5, 0.5),
        "late_policy": "send",
        "dynamic_topology": True,
        "leave_prob": 0.0,
        "join_prob": 0.0,
        "link_down_prob": 1.0,
        "link_up_prob": 0.0,
    }
    return OffloadEnv(TABLE, MECConfig(**{**settings, **changes}))


def test_action_mask_marks_the_options_over_links_that_are_up():
    env = lossy_env()
    _, info = env.reset(seed=0)
    mask = info["action_mask"]
    assert mask.dtype == np.int8 and mask.shape == (4, 4)
    assert (mask == 1).all()  # reset: every link up; row 3 (inactive) allows everything
    _, _, _, _, info = env.step(np.array([0, 2, 2]))
    link = env.slot_state.link
    mask = info["action_mask"]
    assert link.sum(axis=1).tolist() == [1, 1, 1]
    assert mask[:3].tolist() == np.repeat(link, 2, axis=1).astype(int).tolist()
    assert mask[3].tolist() == [1, 1, 1, 1]
    # masked sampling (the Gymnasium way) never loses a task; unmasked sampling does
    env.action_space.seed(0)
    lost_masked = lost_free = 0
    for _ in range(30):
        _, _, _, _, info = env.step(env.action_space.sample(mask=tuple(info["action_mask"])))
        lost_masked += info["num_lost"]
    for _ in range(30):
        _, _, _, _, info = env.step(env.action_space.sample())
        lost_free += info["num_lost"]
    assert lost_masked == 0
    assert lost_free > 10  # each device has one link of two: about half the tasks are lost


def test_option_over_a_down_link_loses_the_task_and_leaves_the_queues_alone():
    env = lossy_env()
    env.reset(seed=2)
    # slot 0, all links up: d0 -> ES 0 early exit, d1 and d2 -> ES 1 early exit; all arrive at
    # 20 ms: ES 0 busy 20 -> 22, ES 1 busy 20 -> 22 -> 24; uplinks busy until 20 ms
    env.step(np.array([0, 2, 2]))
    state = env.slot_state
    assert state.device_backlog_ms.tolist() == [10.0, 10.0, 10.0]
    assert state.server_backlog_ms.tolist() == [12.0, 14.0]
    assert state.link.tolist() == [[True, False], [False, True], [True, False]]  # seed 2
    # slot 1: d1 picks ES 0, whose link is down: lost. d0 and d2 -> ES 0 main branch (8 ms):
    # both arrive at 10 + 20 = 30 ms; FCFS in device order 30 -> 38 -> 46 (late, still computed)
    _, reward, _, _, info = env.step(np.array([1, 1, 1]))
    out = info["outcome"]
    assert info["num_lost"] == 1 and info["num_tasks"] == 3 and info["num_success"] == 0
    assert out.arrival_ms.tolist() == [30.0, np.inf, 30.0]
    assert out.completion_ms.tolist() == [38.0, np.inf, 46.0]
    assert out.success.tolist() == [False, False, False]
    assert out.q[1] == 0.0 and out.accuracy[1] == 0.0
    assert reward == pytest.approx(0.9 * (psi(38.0, 30.0) + psi(46.0, 30.0)), abs=1e-15)
    # the predicted Q scores the lost task 0 (not -inf); nothing is hidden in scenario 2
    assert info["predicted_q"] == pytest.approx(reward, abs=1e-15)
    # the lost task never used d1's uplink (10 ms of backlog drain to 0) nor ES 0's queue
    # (busy until 46 ms -> 36 ms into slot 2); ES 1 drains 14 -> 4 ms
    state = env.slot_state
    assert state.device_backlog_ms.tolist() == [20.0, 0.0, 20.0]
    assert state.server_backlog_ms.tolist() == [36.0, 4.0]


def test_lost_task_under_the_drop_policy_is_neither_sent_nor_computed():
    env = lossy_env(late_policy="drop", rate_mbps=(40.0, 40.0))  # 10 ms on the uplink
    env.reset(seed=2)
    env.step(np.array([0, 2, 2]))  # arrivals 10 ms; ES 0 free at 12, ES 1 at 14 ms
    state = env.slot_state
    assert state.link.tolist() == [[True, False], [False, True], [True, False]]  # seed 2
    assert state.server_backlog_ms.tolist() == [2.0, 4.0]
    _, reward, _, _, info = env.step(np.array([1, 1, 1]))  # d1 lost; d0, d2: 10 -> 18 -> 26 ms
    out = info["outcome"]
    assert out.completion_ms.tolist() == [18.0, np.inf, 26.0]
    assert out.success.tolist() == [True, False, True]
    assert info["num_lost"] == 1
    assert reward == pytest.approx(0.9 * (psi(18.0, 30.0) + psi(26.0, 30.0)), abs=1e-15)
    assert env.slot_state.server_backlog_ms.tolist() == [16.0, 0.0]


def test_invalid_actions_are_rejected():
    # actions outside the space; every link goes down after each slot, one per device returns
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
    _, _, _, _, info = env.step(np.argmax(link, axis=1) * 2 + 1)
    assert info["num_tasks"] == 3 and info["num_lost"] == 0


def test_policies_see_the_same_tasks_channels_and_topology(paper_table):
    table = paper_table
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


def test_config_scales_the_table_and_reads_the_rules(paper_table):
    cfg = MECConfig(compute_scale=4.0, psi_form="doubled", late_policy="send")
    expected = 4.0 * np.stack([paper_table.latency_of(d) for d in cfg.server_devices])
    np.testing.assert_array_equal(cfg.server_exit_ms(paper_table), expected)
    np.testing.assert_array_equal(cfg.server_exit_ms(paper_table, ["GTX_1080TI"]), expected[1:])
    assert cfg.scoring_rules == (2.0, False, False)
    env = OffloadEnv(paper_table, cfg)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.slot_state.exit_ms, expected)
    assert env.slot_state.rules == cfg.scoring_rules
