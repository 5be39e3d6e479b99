"""Scenario randomness stays within the paper's bounds, decisions see estimates while outcomes
use true values, and under a dynamic topology every task is accounted for exactly once."""

from pathlib import Path

import numpy as np
import pytest

from offload.exit_table import load_exit_table
from offload.sim import MECConfig, OffloadEnv
from offload.sim.baselines import greedy_decision

REPO = Path(__file__).resolve().parents[2]
TABLE = load_exit_table(REPO / "checkpoints" / "paper_table1.csv")


def collect(cfg: MECConfig, slots: int, seed: int = 0):
    env = OffloadEnv(TABLE, cfg)
    env.reset(seed=seed)
    draws, infos = [], []
    for _ in range(slots):
        draws.append(env.slot_draw)
        _, reward, _, _, info = env.step(greedy_decision(env.slot_state))
        infos.append((reward, info))
    return draws, infos


@pytest.mark.parametrize("scenario", [1, 2, 3, 4])
def test_scenario_randomness_is_bounded(scenario):
    draws, infos = collect(MECConfig(num_devices=10, scenario=scenario), 150, seed=scenario)
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


def test_markov_rates_are_correlated_with_uniform_marginals():
    cfg = MECConfig(num_devices=4, rate_model="markov", rate_correlation=0.9)
    draws, _ = collect(cfg, 400)
    rates = np.stack([d.rate_est_mbps for d in draws])  # (K, D, N)
    assert rates.min() >= 20 and rates.max() <= 100
    assert abs(rates.mean() - 60) < 6
    lag1 = np.corrcoef(rates[1:].ravel(), rates[:-1].ravel())[0, 1]
    assert lag1 > 0.7
    draws_iid, _ = collect(cfg.replace(rate_model="iid"), 400)
    rates_iid = np.stack([d.rate_est_mbps for d in draws_iid])
    assert abs(np.corrcoef(rates_iid[1:].ravel(), rates_iid[:-1].ravel())[0, 1]) < 0.1


def test_dynamic_topology_accounts_for_every_task_once():
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
    env = OffloadEnv(TABLE, cfg)
    obs, _ = env.reset(seed=7)
    seen: set[tuple[int, int]] = set()
    generated = counted = 0
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
        generated += ids.size
        obs, _, _, _, info = env.step(greedy_decision(state))
        out = info["outcome"]
        assert out.device_ids.tolist() == ids.tolist()
        for dev in ids.tolist():
            assert (slot, dev) not in seen
            seen.add((slot, dev))
        counted += info["num_tasks"]
        assert info["num_success"] == int(out.success.sum()) <= info["num_tasks"]
        assert np.all(out.completion_ms[out.success] <= 30.0)
        assert info["accuracy_sum"] == pytest.approx(out.accuracy.sum())
    assert counted == generated == len(seen)
    assert joins > 10 and len(sizes) >= 4 and len(links) > 50  # the topology really changed
