"""The reward of eq. (9) and the normalised reward of eq. (17), each written once.

ψ(t) = scale * (1 - sigmoid(k t / δ)) turns a completion time into the share of a task's
accuracy φ that the reward pays (eq. (9): Φ ψ(t)); eq. (17) divides a decision's predicted Q
by the exact optimum's. Every caller -- the vectorised evaluator, the scalar search model of
the greedy and the optimum, the true slot outcome, eq. (17) in metrics and in the convergence
study -- goes through these two functions.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PsiScale", "psi", "psi_scale", "normalised"]


class PsiScale(float):
    """The ψ scale of a configuration that also carries ψ's shape (``MECConfig.psi_steepness``,
    ``MECConfig.reward_form``), so that every ``psi(t, δ, rules.psi_scale)`` call follows them.
    The default shape is a plain float (see :func:`psi_scale`)."""

    steepness: float
    on_time: bool

    def __new__(cls, value: float, steepness: float = 5.0, on_time: bool = False) -> PsiScale:
        obj = super().__new__(cls, value)
        obj.steepness, obj.on_time = float(steepness), bool(on_time)
        return obj

    def __reduce__(self):  # noqa: ANN204 - pickling (worker processes) keeps the shape
        return (PsiScale, (float(self), self.steepness, self.on_time))


def psi_scale(psi_form: str, steepness: float = 5.0, reward_form: str = "psi") -> float:
    """``ScoringRules.psi_scale`` of the readings: 1 as written, 2 "doubled"; a :class:`PsiScale`
    when ψ's steepness is not 5 or the reward is paid on time only."""
    value = 2.0 if psi_form == "doubled" else 1.0
    if steepness == 5.0 and reward_form == "psi":
        return value
    return PsiScale(value, steepness, reward_form == "on_time")


def psi(t_ms, deadline_ms, scale: float = 1.0):  # noqa: ANN001, ANN201 - float or array
    """ψ(t) = scale * (1 - sigmoid(k t / δ)) of eq. (9), k = 5 as written; exactly 0 for t = inf.

    `scale` = 1 is the formula as written (ψ(0) = 0.5), 2 the "doubled" reading (ψ(0) = 1).
    Written as scale * e / (1 + e) with e = exp(-k t / δ), which cannot overflow. A
    :class:`PsiScale` sets k (``psi_steepness``) or, with ``on_time``, ψ = scale for t ≤ δ and
    0 after (``reward_form="on_time"``: φ for an on-time task).

    Takes Python floats (the scalar search model: a float back, through ``math.exp``) or
    arrays that broadcast together (an array back, through ``np.exp``); the expression is the
    same, so changing ψ means changing this function only.
    """
    shaped = type(scale) is PsiScale  # a plain float scale: k = 5 and the φ·ψ reward
    on_time, steepness = (scale.on_time, scale.steepness) if shaped else (False, 5.0)
    if isinstance(t_ms, float) and isinstance(deadline_ms, float):  # one task: math.exp
        if on_time:
            return float(scale) if t_ms <= deadline_ms else 0.0
        e = math.exp(-steepness * t_ms / deadline_ms)
    else:
        if on_time:
            return np.where(np.asarray(t_ms) <= deadline_ms, float(scale), 0.0)
        e = np.exp(-steepness * np.asarray(t_ms) / deadline_ms)
    return scale * e / (1.0 + e)


def normalised(q: float, best: float) -> float:
    """Eq. (17): a decision's predicted Q over the exact optimum's `best` (when the optimum
    earns nothing, 1 for a decision as good and 0 otherwise)."""
    if best <= 0.0:
        return 1.0 if q >= best else 0.0
    return q / best
