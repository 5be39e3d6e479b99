"""Performance measures of Section VI-D and the normalised reward of eq. (17).

* average accuracy: sum of the accuracy of successful tasks / number of all tasks;
* service success probability (SSP): successful tasks / all tasks;
* throughput: successful tasks per second of simulated time (slots x τ);
* mean Q: average per-slot reward of eq. (9) (true values), the objective of eq. (10);
* normalised reward (eq. (17)): predicted Q of the decision / predicted Q of the exact optimum.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .evaluator import score_decisions
from .optimum import optimal_decision
from .state import SlotState

__all__ = ["Metrics", "MetricsAccumulator", "normalised_reward"]


class Metrics(NamedTuple):
    """Measures over a run of slots."""

    slots: int  # number of slots K
    tasks: int  # number of tasks generated
    avg_accuracy: float  # Σ accuracy of successful tasks / tasks
    ssp: float  # service success probability
    throughput_per_s: float  # successful tasks per second
    mean_q: float  # mean Q per slot, eq. (10)
    mean_normalised_reward: (
        float  # mean of eq. (17) over the slots it was computed for (nan if none)
    )


def normalised_reward(state: SlotState, decision: np.ndarray) -> float:
    """Eq. (17): predicted Q of `decision` over the predicted Q of the exact optimum (1 when
    both are 0)."""
    best = optimal_decision(state).q
    q = float(score_decisions(state, decision)[0])
    if best <= 0.0:
        return 1.0 if q >= best else 0.0
    return q / best


class MetricsAccumulator:
    """Adds up `env.step` infos; `result()` gives the Section VI-D measures."""

    def __init__(self) -> None:
        self.slots = 0
        self.tasks = 0
        self.successes = 0
        self.accuracy_sum = 0.0
        self.q_sum = 0.0
        self.elapsed_ms = 0.0
        self.normalised: list[float] = []

    def add(self, info: dict[str, Any], normalised: float | None = None) -> None:
        """Count one slot from the `info` of `env.step` (and its eq. (17) value, if known)."""
        self.slots += 1
        self.tasks += info["num_tasks"]
        self.successes += info["num_success"]
        self.accuracy_sum += info["accuracy_sum"]
        self.q_sum += info["q_sum"]
        self.elapsed_ms += info["slot_ms"]
        if normalised is not None:
            self.normalised.append(normalised)

    def result(self) -> Metrics:
        tasks = max(self.tasks, 1)
        return Metrics(
            slots=self.slots,
            tasks=self.tasks,
            avg_accuracy=self.accuracy_sum / tasks,
            ssp=self.successes / tasks,
            throughput_per_s=self.successes / (self.elapsed_ms / 1e3) if self.elapsed_ms else 0.0,
            mean_q=self.q_sum / max(self.slots, 1),
            mean_normalised_reward=float(np.mean(self.normalised)) if self.normalised else math.nan,
        )
