"""The city network: placement, reach, rates from distance, mobility, joins and
leaves, heterogeneous servers, determinism, and the environment on the one slot step."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from exit_tables.schema import ExitTableError
from offload.sim import MECConfig
from offload.sim.city import CityConfig, mean_rate_mbps
from offload.sim.city_env import CityEnv, CityGymEnv
from offload.sim.scale_refs import greedy_decision, local_search, random_decision

SMALL = dict(num_devices=60, num_servers=8)


def _env(paper_table, **changes) -> CityEnv:
    return CityEnv(paper_table, CityConfig(**{**SMALL, **changes}))


def _distances(env: CityEnv) -> np.ndarray:
    net = env.network
    return np.array(
        [[math.dist(d, s) for s in net.server_xy.tolist()] for d in net.device_xy.tolist()]
    )


def test_region_defaults_to_the_server_density():
    # N = 50 at 25 ES / km^2: 2 km^2, a square of side sqrt(2) km
    assert CityConfig().region == pytest.approx((1414.2135623730951, 1414.2135623730951))
    assert CityConfig(region_m=(300.0, 200.0)).region == (300.0, 200.0)


@pytest.mark.parametrize("placement", ["uniform", "grid"])
def test_servers_and_devices_stay_inside_the_region(paper_table, placement):
    env = _env(
        paper_table,
        region_m=(500.0, 300.0),
        server_placement=placement,
        speed_mps=(100.0, 300.0),
        pause_s=(0.0, 0.0),
    )
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        for xy in (env.network.server_xy, env.network.device_xy):
            assert (xy >= 0).all() and (xy[:, 0] <= 500.0).all() and (xy[:, 1] <= 300.0).all()
        env.step(random_decision(env.slot_state, rng))
    if placement == "grid":  # 8 ES in a 500 x 300 m region: 4 columns x 2 rows of 125 x 150 m cells
        cell = np.floor(env.network.server_xy / [125.0, 150.0]).astype(int)
        assert sorted(map(tuple, cell.tolist())) == [(c, r) for c in range(4) for r in range(2)]


@pytest.mark.parametrize(("k", "range_m"), [(3, None), (None, 250.0), (2, 200.0), (8, None)])
def test_each_device_reaches_its_k_nearest_and_in_range_servers(paper_table, k, range_m):
    env = _env(paper_table, region_m=(600.0, 600.0), k_nearest=k, range_m=range_m)
    env.reset(seed=1)
    dist = _distances(env)
    state = env.slot_state
    for row, dev in enumerate(state.device_ids.tolist()):
        ranked = sorted(range(8), key=lambda n: (dist[dev, n], n))
        expect = set(ranked[: k if k is not None else 8])
        if range_m is not None:
            expect = {n for n in expect if dist[dev, n] <= range_m}
        assert set(np.flatnonzero(state.link[row]).tolist()) == expect
    # devices out of range of every ES generate no task (range-limited cities only)
    covered = set(state.device_ids.tolist())
    for dev in range(60):
        reach = (dist[dev] <= range_m).any() if range_m is not None else True
        assert (dev in covered) == reach


def test_rates_from_distance_by_hand():
    cfg = CityConfig()
    # SNR_dB(d) = 23 - 40 - 30 log10(d) - (-174 + 10 log10(10e6) + 5) = 82 - 30 log10(d)
    for d in (54.0, 108.0, 216.0, 373.0):
        hand = 10.0 * math.log2(1.0 + 10.0 ** ((82.0 - 30.0 * math.log10(d)) / 10.0))
        assert float(mean_rate_mbps(cfg, d)) == pytest.approx(hand, rel=1e-12)
    # the paper's 20-100 Mbit/s between 54 and 373 m
    assert float(mean_rate_mbps(cfg, 54.0)) == pytest.approx(99.77, abs=0.01)
    assert float(mean_rate_mbps(cfg, 373.0)) == pytest.approx(20.19, abs=0.01)
    assert float(mean_rate_mbps(cfg, 5.0)) == float(mean_rate_mbps(cfg, 10.0))  # d_min = 10 m
    assert float(mean_rate_mbps(cfg, 200.0, shadow_db=3.0)) == pytest.approx(
        10.0 * math.log2(1.0 + 10.0 ** ((82.0 - 30.0 * math.log10(200.0) + 3.0) / 10.0))
    )


def test_link_rate_is_shannon_over_the_devices_distance(paper_table):
    env = _env(paper_table, shadowing_db=0.0, rayleigh=False)
    state, _ = env.reset(seed=2)
    dist = _distances(env)
    row = 0
    dev, n = int(state.device_ids[row]), int(np.flatnonzero(state.link[row])[0])
    hand = 10.0 * math.log2(
        1.0 + 10.0 ** ((82.0 - 30.0 * math.log10(max(dist[dev, n], 10.0))) / 10.0)
    )
    assert state.rate_mbps[row, n] == pytest.approx(hand, rel=1e-12)
    assert np.array_equal(env.slot_draw.rate_true_mbps, env.slot_draw.rate_est_mbps)


def test_default_city_rates_span_the_papers_range_at_typical_ranges(paper_table):
    env = CityEnv(paper_table, CityConfig(num_devices=400, shadowing_db=0.0, rayleigh=False))
    state, _ = env.reset(seed=0)
    rates = state.rate_mbps[state.link]
    lo, hi = np.percentile(rates, [10, 90])
    assert 20.0 <= lo < 40.0 and 70.0 < hi <= 100.0 + 40.0
    assert 20.0 <= np.median(rates) <= 100.0
    # with Rayleigh fading the slot's rates scatter around the mean channel's
    faded, _ = CityEnv(paper_table, CityConfig(num_devices=400)).reset(seed=0)
    assert np.std(np.log(faded.rate_mbps[faded.link])) > np.std(np.log(rates))


def test_servers_are_heterogeneous_table_columns(paper_table):
    env = _env(paper_table, task=MECConfig(compute_scale=2.0))
    state, _ = env.reset(seed=0)
    for n in range(8):
        kind = ("RTX_2080TI", "GTX_1080TI")[n % 2]
        assert np.array_equal(state.exit_ms[n], 2.0 * paper_table.latency_of(kind))
    with pytest.raises(ExitTableError, match="unknown server device name"):
        CityEnv(paper_table, CityConfig(server_devices=("RTX_2080TI", "cpu_1t")))


def test_capacity_processes_per_server(paper_table):
    env = _env(paper_table, task=MECConfig(scenario=2))
    env.reset(seed=4)
    rng = np.random.default_rng(0)
    caps = []
    for _ in range(40):
        caps.append(env.slot_state.capacity)
        env.step(random_decision(env.slot_state, rng))
    caps = np.array(caps)
    assert (caps >= 0.1).all() and (caps <= 1.0).all()
    assert np.ptp(caps.mean(axis=0)) > 0.05  # servers differ
    assert (np.abs(np.diff(caps, axis=0)) > 0).any()  # and move in time
    full, _ = _env(paper_table, task=MECConfig(scenario=1)).reset(seed=4)
    assert np.array_equal(full.capacity, np.ones(8))


def test_mobility_moves_at_most_speed_times_slot(paper_table):
    env = _env(paper_table, speed_mps=(50.0, 200.0), pause_s=(0.0, 0.05), leave_prob=0.0)
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(40):
        before = env.network.device_xy.copy()
        env.step(random_decision(env.slot_state, rng))
        step_m = np.hypot(*(env.network.device_xy - before).T)
        assert (step_m <= 200.0 * 0.030 + 1e-9).all()  # 200 m/s for one 30 ms slot
        moved += int((step_m > 0).sum())
    assert moved > 40 * 60 // 2


def test_joins_and_leaves(paper_table):
    env = _env(paper_table, join_prob=0.3, leave_prob=0.2, num_devices=40)
    state, _ = env.reset(seed=6)
    assert state.num_devices == 40  # all active at reset (k_nearest: every device is covered)
    rng = np.random.default_rng(0)
    sizes = set()
    for _ in range(15):
        env.step(random_decision(env.slot_state, rng))
        draw, state = env.slot_draw, env.slot_state
        assert np.array_equal(state.device_ids, np.flatnonzero(draw.active))
        assert (state.device_backlog_ms[draw.joined[state.device_ids]] == 0.0).all()
        sizes.add(state.num_devices)
    assert len(sizes) > 3


def test_same_seed_same_network_and_trace_different_seed_differs(paper_table):
    cfg = dict(task=MECConfig(scenario=4), speed_mps=(20.0, 40.0), join_prob=0.3, leave_prob=0.1)

    def trace(seed):
        env = _env(paper_table, **cfg)
        env.reset(seed=seed)
        rng = np.random.default_rng(9)
        out = [env.network.server_xy.copy()]
        for _ in range(8):
            st = env.slot_state
            out += [
                st.device_ids,
                st.link,
                st.rate_mbps,
                st.task_bits,
                st.capacity,
                st.device_backlog_ms,
                st.server_backlog_ms,
                env.slot_draw.rate_true_mbps,
                env.network.device_xy.copy(),
            ]
            _, reward, *_ = env.step(
                local_search(st, random_decision(st, rng), max_passes=1).decision
            )
            out.append(np.array([reward]))
        return out

    first, again, other = trace(11), trace(11), trace(12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_predicted_equals_true_reward_with_full_knowledge_only(paper_table):
    env = _env(paper_table, task=MECConfig(scenario=1))
    state, _ = env.reset(seed=7)
    _, reward, *_, info = env.step(greedy_decision(state))
    assert reward == pytest.approx(info["predicted_q"], rel=1e-12)
    env4 = _env(paper_table, task=MECConfig(scenario=4))
    state, _ = env4.reset(seed=7)
    draw = env4.slot_draw
    assert not np.array_equal(draw.rate_est_mbps, draw.rate_true_mbps)
    _, reward, *_, info = env4.step(greedy_decision(state))
    assert reward != pytest.approx(info["predicted_q"], rel=1e-6)


def test_links_appear_and_vanish_and_down_links_are_never_chosen(paper_table):
    env = _env(
        paper_table,
        k_nearest=2,
        speed_mps=(100.0, 300.0),
        pause_s=(0.0, 0.0),
        region_m=(400.0, 400.0),
    )
    state, info = env.reset(seed=8)
    rng = np.random.default_rng(0)
    appeared = vanished = 0
    prev = dict(zip(state.device_ids.tolist(), state.link.tolist(), strict=True))
    for _ in range(25):
        state = env.slot_state
        assert np.array_equal(info["action_mask"], np.repeat(state.link, 5, axis=1).astype(np.int8))
        for row, dev in enumerate(state.device_ids.tolist()):
            if dev in prev:
                was, now = np.array(prev[dev]), state.link[row]
                appeared += int((now & ~was).sum())
                vanished += int((was & ~now).sum())
        rows = np.arange(state.num_devices)
        for decision in (
            greedy_decision(state),
            random_decision(state, rng),
            local_search(state).decision,
        ):
            assert state.link[rows, decision // 5].all()
        prev = dict(zip(state.device_ids.tolist(), state.link.tolist(), strict=True))
        _, _, _, _, info = env.step(greedy_decision(state))
        assert info["num_lost"] == 0
    assert appeared > 5 and vanished > 5
    # a task sent over a link that is down is lost: Q 0, not served
    state = env.slot_state
    decision = greedy_decision(state)
    down = int(np.flatnonzero(~state.link[0])[0])
    decision[0] = down * 5
    _, _, _, _, info = env.step(decision)
    assert info["num_lost"] == 1
    assert info["outcome"].q[0] == 0.0 and not info["outcome"].success[0]


def test_bad_input_raises_one_clear_error(paper_table):
    with pytest.raises(ValueError, match="set k_nearest, range_m or both"):
        CityConfig(k_nearest=None)
    with pytest.raises(ValueError, match="cross_slot_queue='free_at'"):
        CityConfig(task=MECConfig(cross_slot_queue="fcfs"))
    with pytest.raises(ValueError, match="speed_mps"):
        CityConfig(speed_mps=(0.0, 1.0))
    env = _env(paper_table)
    with pytest.raises(AssertionError, match="reset"):
        env.step(np.zeros(60, dtype=int))
    state, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(state.num_devices + 1, dtype=int))


def test_city_gym_adapter_passes_the_gymnasium_env_checker(paper_table):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checker warning either
        check_env(CityGymEnv(paper_table, CityConfig(**SMALL)), skip_render_check=True)


def test_city_gym_adapter_pads_the_city_trace(paper_table):
    # the same seed gives CityEnv's trace; the observation is its slot state padded to D rows
    city, gym_city = (
        _env(paper_table, leave_prob=0.05),
        CityGymEnv(paper_table, CityConfig(**SMALL, leave_prob=0.05)),
    )
    state, _ = city.reset(seed=4)
    obs, info = gym_city.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(12):
        ids = state.device_ids
        assert obs["active"].tolist() == np.isin(np.arange(60), ids).astype(int).tolist()
        np.testing.assert_array_equal(obs["task_bits"][ids], state.task_bits.astype(np.float32))
        np.testing.assert_array_equal(obs["link"][ids], state.link)
        np.testing.assert_array_equal(info["action_mask"][ids], city.action_mask())
        decision = random_decision(state, rng)
        padded = np.zeros(60, dtype=np.int64)
        padded[ids] = decision
        state, reward, _, _, step = city.step(decision)
        obs, gym_reward, _, _, info = gym_city.step(padded)
        assert gym_reward == reward and info["num_tasks"] == step["num_tasks"]
