"""The shared learner: quantiser, replay memory, and Algorithm 1 on DROO's binary problem."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from offload.agents.droo import DROOActor, DROOConfig
from offload.agents.learner import ActorInput, Learner, LearnerConfig, ReplayMemory, quantise


def droo_reference(p: np.ndarray, k: int) -> list[np.ndarray]:
    """DROO's order-preserving quantisation as published (REFERENCES.md), for K = 2 options."""
    out = [(p > 0.5).astype(int)]
    for idx in np.argsort(np.abs(p - 0.5))[: k - 1]:
        out.append((p - p[idx] > 0).astype(int) if p[idx] > 0.5 else (p - p[idx] >= 0).astype(int))
    return out


def test_quantise_binary_hand_trace_equals_droo():
    p = np.array([0.9, 0.6, 0.3, 0.45])
    cands = quantise(np.stack([1 - p, p], axis=1), np.ones((4, 2), bool), num_candidates=5)
    expected = [[1, 1, 0, 0], [1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert cands.tolist() == expected
    assert [c.tolist() for c in droo_reference(p, 5)] == expected


def test_quantise_binary_matches_droo_on_random_vectors():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        p = rng.random(n)
        cands = quantise(np.stack([1 - p, p], axis=1), np.ones((n, 2), bool), num_candidates=n + 1)
        np.testing.assert_array_equal(cands, np.array(droo_reference(p, n + 1)))


def test_quantise_candidates_are_feasible_and_start_with_the_argmax():
    rng = np.random.default_rng(1)
    for _ in range(300):
        m, k = int(rng.integers(1, 15)), int(rng.integers(1, 11))
        mask = rng.random((m, k)) < 0.6
        mask[np.arange(m), rng.integers(0, k, m)] = True  # every device has one option at least
        x = rng.random((m, k))
        cands = quantise(x, mask)
        assert cands.shape[1] == m and 1 <= cands.shape[0] <= m * k
        assert mask[np.arange(m)[None, :], cands].all(), "a candidate uses a masked option"
        np.testing.assert_array_equal(cands[0], np.where(mask, x, -np.inf).argmax(axis=1))


def first_occurrences_of(rows: np.ndarray) -> list[list[int]]:
    """The rows in order, each decision kept at its first occurrence only (written plainly)."""
    out: list[list[int]] = []
    for row in rows.tolist():
        if row not in out:
            out.append(row)
    return out


def test_quantise_default_count_is_m_times_k_with_all_links_up():
    x = np.random.default_rng(2).random((14, 10))
    full = quantise(x, np.ones((14, 10), bool), distinct=False)
    assert full.shape == (140, 14)
    # 1 argmax + 14*9 threshold candidates + 13 single moves; the first single move changes one
    # device and repeats the first threshold candidate (the smallest gap moves m* alone)
    assert (full[127] != full[0]).sum() == 1
    np.testing.assert_array_equal(full[127], full[1])
    cands = quantise(x, np.ones((14, 10), bool))
    assert cands.tolist() == first_occurrences_of(full)
    assert len(cands) == 129  # 11 of the 13 single moves repeat a threshold candidate here


def test_quantise_saturated_actor_output_hand_trace():
    # float32 sigmoids saturate at exactly 0 and 1: every gap is 1, so whole groups move at once
    p = np.array([1.0, 1.0, 0.0], dtype=np.float32)
    x = np.stack([1 - p, p], axis=1)
    full = quantise(x, np.ones((3, 2), bool), distinct=False)
    # S = M*K = 6: argmax, thresholds of (0, 0), (1, 0), (2, 1), then single moves of (0, 0), (1, 0)
    expected_full = [[1, 1, 0], [0, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 0]]
    assert full.tolist() == expected_full
    assert [c.tolist() for c in droo_reference(p.astype(np.float64), 4)] == expected_full[:4]
    cands = quantise(x, np.ones((3, 2), bool))
    assert cands.tolist() == [[1, 1, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize("num_devices", [6, 20])  # 20 devices x 10 options: no int64 key
def test_quantise_distinct_keeps_first_occurrences_and_every_decision(num_devices):
    rng = np.random.default_rng(3)
    for trial in range(150):
        m, k = int(rng.integers(1, num_devices + 1)), int(rng.integers(2, 11))
        x = rng.random((m, k))
        if trial % 3 == 0:
            x = np.round(x, 1)  # ties
        elif trial % 3 == 1:
            x = (x > 0.7).astype(np.float32)  # saturated
        mask = rng.random((m, k)) < 0.7
        mask[np.arange(m), rng.integers(0, k, m)] = True
        s = [None, 2, 7, 400][trial % 4]
        full = quantise(x, mask, s, distinct=False)
        cands = quantise(x, mask, s)
        assert cands.tolist() == first_occurrences_of(full)
        # a critic with many exact ties picks the same decision from both lists (np.argmax takes
        # the first best), with the same score
        table = np.round(rng.random((m, k)), 1)
        critic = lambda c, t=table: t[np.arange(c.shape[1]), c].sum(axis=1)  # noqa: E731
        q_full, q = critic(full), critic(cands)
        np.testing.assert_array_equal(cands[np.argmax(q)], full[np.argmax(q_full)])
        assert q.max() == q_full.max()


def test_quantise_rejects_device_without_option():
    mask = np.ones((3, 4), bool)
    mask[1] = False
    with pytest.raises(ValueError, match="device 1 has no valid option"):
        quantise(np.full((3, 4), 0.5), mask)


def _entry(value: float, num_devices: int = 2) -> ActorInput:
    """One run's replay entry whose tensor and decision carry ``value``."""
    x = torch.full((1, num_devices, 3), value)
    return ActorInput((x,), np.ones((1, num_devices, 2), bool), (0,))


def test_replay_memory_is_a_ring_buffer_per_run():
    mem = ReplayMemory(2, 3, [0, 1])
    with pytest.raises(ValueError, match="empty"):
        mem.sample(1)
    for i in range(5):  # entries 0..4; the ring keeps 3, 4, 2 at positions 0, 1, 2
        obs = _entry(float(i))
        mem.add(obs._replace(tensors=(obs.tensors[0].repeat(2, 1, 1),), mask=np.ones((2, 2, 2), bool)),
                np.array([[i, i], [10 + i, 10 + i]]))  # fmt: skip
    assert len(mem) == 3 and mem.added == 5
    index = mem.sample(2)
    assert index.shape == (2, 2) and all(len(set(row.tolist())) == 2 for row in index)
    (x,), mask, decision = mem.entries(slice(0, 2), torch.tensor([[0, 1, 2], [2, 1, 0]]))
    assert x[0, :, 0, 0].tolist() == [3.0, 4.0, 2.0] and x[1, :, 0, 0].tolist() == [2.0, 4.0, 3.0]
    assert decision[:, :, 0].tolist() == [[3, 4, 2], [12, 14, 13]]
    assert sorted(mem.sample(10)[0].tolist()) == [0, 1, 2]  # all of them when asked for more


def test_replay_memory_pads_entries_of_fewer_devices():
    mem = ReplayMemory(1, 4, [0])
    mem.add(_entry(1.0, num_devices=2), np.array([[1, 1]]))
    mem.add(_entry(2.0, num_devices=3), np.array([[0, 1, 0]]))  # wider: the store grows
    mem.add(_entry(3.0, num_devices=1), np.array([[1]]))  # narrower: the entry is padded
    (x,), mask, decision = mem.entries(slice(0, 1), torch.tensor([[0, 1, 2]]))
    assert x.shape == (1, 3, 3, 3)
    assert x[0, :, :, 0].tolist() == [[1.0, 1.0, 0.0], [2.0, 2.0, 2.0], [3.0, 0.0, 0.0]]
    assert mask[0, :, :, 0].tolist() == [[True, True, False], [True] * 3, [True, False, False]]
    assert decision[0].tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="may differ only in M"):
        mem.add(
            ActorInput((torch.zeros(1, 3, 4),), np.ones((1, 3, 2), bool), (0,)),
            np.zeros((1, 3), int),
        )


def binary_offloading_q(gain: np.ndarray, decisions: np.ndarray) -> np.ndarray:
    """A small DROO-like binary problem: local devices earn a fixed rate, offloading devices
    share the uplink frame equally and earn log2(1 + SNR) / (number offloading). (S, M) -> (S,)."""
    local = 1.0
    off = decisions == 1
    share = np.maximum(off.sum(axis=1, keepdims=True), 1)
    return np.where(off, np.log2(1 + 30 * gain) / share, local).sum(axis=1)


def test_learner_solves_droo_binary_problem():
    torch.manual_seed(0)
    n = 6
    cfg = DROOConfig(num_devices=n, num_servers=1, num_exits=2, rate_scale_mbps=1.0)
    learner = Learner([DROOActor(cfg)], LearnerConfig(lr=1e-2), [0])
    rng = np.random.default_rng(0)
    every = np.array(list(itertools.product([0, 1], repeat=n)))
    mask = np.ones((n, 2), bool)
    ratios = []
    for _ in range(1500):
        gain = rng.exponential(1.0, n)
        obs = ActorInput((torch.tensor(gain, dtype=torch.float32)[None],), mask[None], (None,))
        res = learner.step(obs, lambda c, g=gain: binary_offloading_q(g, c[0])[None])
        ratios.append(res.q[0] / binary_offloading_q(gain, every).max())
    # DROO's lr (0.01) and the default S = M·K = 12 of the 64 decisions
    assert np.mean(ratios[:300]) < 0.9  # an untrained actor is clearly worse
    assert np.mean(ratios[-300:]) > 0.98
