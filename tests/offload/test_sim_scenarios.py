"""Scenario randomness stays within the paper's bounds, decisions see estimates while outcomes
use true values (one slot computed by hand), and under a dynamic topology every task is
accounted for exactly once."""

import numpy as np
import pytest

from offload.exit_table import ExitTable
from offload.sim import MECConfig, OffloadEnv, psi
from offload.sim.baselines import greedy_decision


def collect(table: ExitTable, cfg: MECConfig, slots: int, seed: int = 0):
    env = OffloadEnv(table, cfg)
    env.reset(seed=seed)
    draws, infos = [], []
    for _ in range(slots):
        draws.append(env.slot_draw)
        _, reward, _, _, info = env.step(greedy_decision(env.slot_state))
        infos.append((reward, info))
    return draws, infos


@pytest.mark.parametrize("scenario", [1, 2, 3, 4])
def test_scenario_randomness_is_bounded(scenario, paper_table):
    draws, infos = collect(
        paper_table, MECConfig(num_devices=10, scenario=scenario), 150, seed=scenario
    )
    bits = np.concatenate([d.task_bits for d in draws])
    est = np.concatenate([d.rate_est_mbps for d in draws])
    true = np.concatenate([d.rate_true_mbps for d in draws])
    cap = np.concatenate([d.capacity for d in draws])
    jitter = np.concatenate([d.jitter for d in draws])
    assert bits.min() >= 50 * 8000 and bits.max() <= 100 * 8000 and bits.std() > 0
    assert est.min() >= 20 and est.max() <= 100 and est.std() > 0
    ratio = true / est
    if scenario >= 2:
        assert cap.min() >= 0.25 and cap.max() <= 1.0 and cap.max() - cap.min() > 0.5
    else:
        assert np.all(cap == 1.0)
    if scenario >= 3:
        assert jitter.min() >= 0.75 and jitter.max() <= 1.25 and jitter.max() - jitter.min() > 0.4
    else:
        assert np.all(jitter == 1.0)
    if scenario >= 4:
        assert ratio.min() >= 0.8 and ratio.max() <= 1.2 and ratio.max() - ratio.min() > 0.3
    else:
        assert np.all(ratio == 1.0)
    # what the policy could predict equals the outcome exactly when nothing is hidden
    gaps = np.array([abs(reward - info["predicted_q"]) for reward, info in infos])
    if scenario <= 2:
        assert gaps.max() < 1e-12
    else:
        assert gaps.max() > 1e-3


def test_markov_rates_are_correlated_with_uniform_marginals(paper_table):
    cfg = MECConfig(num_devices=4, rate_model="markov", rate_correlation=0.9)
    draws, _ = collect(paper_table, cfg, 400)
    rates = np.stack([d.rate_est_mbps for d in draws])  # (K, D, N)
    assert rates.min() >= 20 and rates.max() <= 100
    assert abs(rates.mean() - 60) < 6
    lag1 = np.corrcoef(rates[1:].ravel(), rates[:-1].ravel())[0, 1]
    assert lag1 > 0.7
    draws_iid, _ = collect(paper_table, cfg.replace(rate_model="iid"), 400)
    rates_iid = np.stack([d.rate_est_mbps for d in draws_iid])
    assert abs(np.corrcoef(rates_iid[1:].ravel(), rates_iid[:-1].ravel())[0, 1]) < 0.1


def two_task_q(
    bits: np.ndarray, rate_mbps: np.ndarray, exec_ms: np.ndarray, accuracy: np.ndarray
) -> tuple[float, np.ndarray, bool]:
    """Q of eq. (9) for two tasks sent at the slot start to one idle ES, by hand: eq. (1)
    arrivals, FCFS service (eq. (7)), completion from generation (eq. (8)); and the
    completions, and whether the later task waited for the earlier one. (The caller checks
    that both finish before the deadline.)"""
    arrival = bits / (rate_mbps * 1e3)  # kbit/ms = Mbit/s
    first, second = (0, 1) if arrival[0] <= arrival[1] else (1, 0)
    finish = np.empty(2)
    finish[first] = arrival[first] + exec_ms[first]
    finish[second] = max(arrival[second], finish[first]) + exec_ms[second]
    q = float(sum(accuracy[m] * psi(finish[m], 30.0) for m in (0, 1)))
    return q, finish, bool(finish[first] > arrival[second])


def test_decisions_see_estimates_and_outcomes_use_true_values(paper_table):
    # scenario 4: capacity (known), inference-time factor (hidden) and CSI error (hidden)
    env = OffloadEnv(paper_table, MECConfig(num_devices=2, scenario=4))
    env.reset(seed=10)  # a slot where the second task waits for the first (true and estimated)
    state, draw = env.slot_state, env.slot_draw
    decision = np.array([4, 1])  # both on ES 0: device 0 main branch, device 1 exit 2 (l = 1)
    nominal = paper_table.latency_of(paper_table.devices[0])[[4, 1]] / state.capacity[0]
    accuracy = paper_table.accuracy[[4, 1]]
    true_q, true_finish, true_waited = two_task_q(
        draw.task_bits[:2], draw.rate_true_mbps[:2, 0], nominal * draw.jitter[:2], accuracy
    )
    est_q, est_finish, est_waited = two_task_q(
        state.task_bits, state.rate_mbps[:, 0], nominal, accuracy
    )
    assert true_waited and est_waited  # the FCFS queue matters in both readings
    assert max(true_finish.max(), est_finish.max()) < 30.0  # no deadline logic involved
    # the draws differ from what the policy sees, so the two readings give different numbers
    assert abs(draw.jitter[:2] - 1).min() > 0.1
    assert abs(draw.rate_true_mbps[:2, 0] / state.rate_mbps[:, 0] - 1).min() > 0.1
    assert abs(true_q - est_q) > 1e-3
    _, reward, _, _, info = env.step(decision)
    assert reward == pytest.approx(true_q, rel=1e-12)  # the outcome: true values
    assert info["predicted_q"] == pytest.approx(est_q, rel=1e-12)  # the decision's view
    assert info["outcome"].completion_ms.tolist() == pytest.approx(true_finish.tolist(), 1e-12)


def test_dynamic_topology_accounts_for_every_task_once(paper_table):
    cfg = MECConfig(
        num_devices=6,
        max_devices=10,
        min_devices=2,
        scenario=4,
        dynamic_topology=True,
        join_prob=0.4,
        leave_prob=0.08,
        link_down_prob=0.2,
        link_up_prob=0.3,
    )
    env = OffloadEnv(paper_table, cfg)
    obs, _ = env.reset(seed=7)
    # tasks generated (from the observation's active rows) vs tasks in the outcomes, as lists
    # of (slot, device): a task lost, duplicated or invented by step() makes them differ
    generated: list[tuple[int, int]] = []
    accounted: list[tuple[int, int]] = []
    counted = 0
    sizes, links = set(), set()
    previous: set[int] = set()
    joins = 0
    for slot in range(300):
        state = env.slot_state
        ids = state.device_ids
        for m, dev in enumerate(ids.tolist()):
            if slot and dev not in previous:  # a device that joins starts with an empty uplink
                joins += 1
                assert state.device_backlog_ms[m] == 0.0
        previous = set(ids.tolist())
        assert obs["active"].nonzero()[0].tolist() == ids.tolist()
        assert np.all(obs["task_bits"][obs["active"] == 0] == 0)
        assert ids.size >= cfg.min_devices and np.all(state.link.any(axis=1))
        sizes.add(ids.size)
        links.add(state.link.tobytes())
        generated += [(slot, int(d)) for d in np.flatnonzero(obs["active"])]
        obs, _, _, _, info = env.step(greedy_decision(state))
        out = info["outcome"]
        accounted += [(slot, int(d)) for d in out.device_ids]
        assert len(out.completion_ms) == len(out.success) == len(out.q) == len(out.device_ids)
        counted += info["num_tasks"]
        assert info["num_success"] == int(out.success.sum()) <= info["num_tasks"]
        assert np.all(out.completion_ms[out.success] <= 30.0)
        assert info["accuracy_sum"] == pytest.approx(out.accuracy.sum())
    assert accounted == generated  # every generated task once, in device order, nothing else
    assert counted == len(generated)
    assert joins > 10 and len(sizes) >= 4 and len(links) > 50  # the topology really changed
