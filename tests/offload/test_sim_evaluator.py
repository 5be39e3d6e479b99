"""Slot evaluator: ψ values, a hand-computed FCFS schedule with backlog and capacity scaling,
vectorised scoring, missing links and malformed decisions."""

import math

import numpy as np
import pytest

from offload.sim import psi, score_decisions
from offload.sim.evaluator import task_rewards
from offload.sim.state import ScoringRules


def test_psi_values():
    assert psi(0.0, 30.0) == 0.5  # the formula as written: ψ(0) = 1 - sigmoid(0)
    assert psi(0.0, 30.0, 2.0) == 1.0
    assert psi(30.0, 30.0) == pytest.approx(1.0 / (1.0 + math.exp(5.0)), abs=1e-15)
    assert psi(30.0, 30.0) == pytest.approx(0.0066928509242848554, abs=1e-15)
    assert psi(np.inf, 30.0) == 0.0
    assert psi(6.0, 30.0) == pytest.approx(1.0 / (1.0 + math.e), abs=1e-15)


def test_hand_computed_fcfs_schedule_with_backlog_and_capacity(hand_state):
    # Transmissions (eq. (1)): d0 400 kbit @ 20 Mbit/s = 20 ms, d1 200 kbit @ 50 = 4 ms,
    # d2 300 kbit @ 30 = 10 ms after its 5 ms uplink backlog -> arrivals 20, 4, 15 ms.
    # ES 0 is busy until 18 ms and at capacity 0.5 the exits take 2 ms and 4 ms.
    # FCFS: d1 waits 4 -> 18, runs to 20 (exit 0); d2 arrives 15, starts 20, ends 24
    # (exit 1); d0 arrives 20, starts 24, ends 28 (exit 1).
    state = hand_state()
    decision = np.array([1, 0, 1])  # all on ES 0: exits 1, 0, 1
    q = task_rewards(state, decision)[0]
    expected = [0.9 * psi(28.0, 30.0), 0.8 * psi(20.0, 30.0), 0.9 * psi(24.0, 30.0)]
    assert q == pytest.approx(expected, abs=1e-15)
    assert score_decisions(state, decision)[0] == pytest.approx(sum(expected), abs=1e-15)


def test_completion_from_transmission_start_and_drop_rule(hand_state):
    # eq. (8) literally: device 2's clock starts when its transmission starts (5 ms)
    state = hand_state(ScoringRules(1.0, False, True))
    q = task_rewards(state, np.array([1, 0, 1]))[0]
    assert q[2] == pytest.approx(0.9 * psi(19.0, 30.0), abs=1e-15)
    # drop: ES 0 busy until 27 ms; d1 starts 27 ends 29 (ok); d2 starts 29, would end 33 > 30:
    # aborted at 30; d0 arrives 20, starts 30 = deadline: never computed.
    state = hand_state(ScoringRules(1.0, True, False), server_backlog=27.0)
    q = task_rewards(state, np.array([1, 0, 1]))[0]
    assert q.tolist() == [0.0, pytest.approx(0.8 * psi(29.0, 30.0), abs=1e-15), 0.0]
    # send: the same tasks are computed late and earn a little
    state = hand_state(ScoringRules(1.0, False, False), server_backlog=27.0)
    q = task_rewards(state, np.array([1, 0, 1]))[0]
    assert q == pytest.approx(
        [0.9 * psi(37.0, 30.0), 0.8 * psi(29.0, 30.0), 0.9 * psi(33.0, 30.0)], abs=1e-15
    )


def test_vectorised_scores_match_one_by_one(hand_state):
    rng = np.random.default_rng(0)
    state = hand_state()
    candidates = rng.integers(0, state.num_options, (50, 3))
    batch = score_decisions(state, candidates)
    single = [score_decisions(state, c)[0] for c in candidates]
    assert batch.shape == (50,)
    assert batch == pytest.approx(single, abs=1e-15)


def test_missing_link_scores_minus_inf(hand_state):
    link = np.ones((3, 2), dtype=bool)
    link[1, 1] = False
    state = hand_state(link=link)
    scores = score_decisions(state, np.array([[0, 2, 0], [0, 0, 0]]))
    assert scores[0] == -np.inf
    assert np.isfinite(scores[1])


@pytest.mark.parametrize(
    ("decisions", "pattern"),
    [
        (np.array([0, 1]), r"shape \(2,\).*\(S, 3\)"),
        (np.array([0, 1, 4]), r"\[0, 4\)"),
        (np.array([0, -1, 1]), r"\[0, 4\)"),
        (np.array([0.5, 1, 1]), "integer option"),
    ],
)
def test_malformed_decisions_are_rejected(decisions, pattern, hand_state):
    with pytest.raises(ValueError, match=pattern):
        score_decisions(hand_state(), decisions)
