"""Performance measures of Section VI-D and the normalised reward of eq. (17).

* average accuracy: sum of the accuracy of successful tasks / number of all tasks;
* service success probability (SSP): successful tasks / all tasks;
* throughput: successful tasks per second of simulated time (slots x τ);
* mean Q: average per-slot reward of eq. (9) (true values), the objective of eq. (10);
* normalised reward (eq. (17)): predicted Q of the decision / predicted Q of the exact optimum;
* usage (`Usage`): the share of tasks per candidate exit and per ES, and the success
  probability per exit -- which exits and servers a method really uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .evaluator import score_decisions
from .optimum import optimal_decision
from .reward import normalised
from .state import SlotState

__all__ = [
    "BatchMetrics",
    "BatchStepInfo",
    "Metrics",
    "Usage",
    "normalised_reward",
    "step_info",
    "usage_counts",
]


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
    usage: Usage | None = None  # tasks per exit and ES (None where not counted)


class Usage(NamedTuple):
    """Task counts per candidate exit and per ES over a run (every task, successful or not)."""

    exit_tasks: np.ndarray  # (L,) int, tasks given candidate exit l (0-based row of the table)
    exit_success: np.ndarray  # (L,) int, of those, tasks completed within the deadline
    server_tasks: np.ndarray  # (N,) int, tasks sent to ES n

    def columns(self, exit_numbers: np.ndarray | list[int]) -> dict[str, float]:
        """Result-row columns: ``exit_share_<e>`` (share of all tasks at exit number e of the
        table), ``es_share_<n>`` (share at ES n, 1-based), ``success_exit_<e>`` (success
        probability of the tasks at exit e; nan if none went there). Shares are nan for an
        empty run.

        Raises:
            ValueError: `exit_numbers` does not name one exit per counted exit.
        """
        numbers = [int(e) for e in exit_numbers]
        if len(numbers) != len(self.exit_tasks):
            raise ValueError(
                f"got {len(numbers)} exit numbers for {len(self.exit_tasks)} counted exits; "
                "pass the exit table's `exits` (one number per candidate exit)."
            )
        total = int(self.exit_tasks.sum())
        cols: dict[str, float] = {}
        for e, count in zip(numbers, self.exit_tasks.tolist(), strict=True):
            cols[f"exit_share_{e}"] = count / total if total else math.nan
        for n, count in enumerate(self.server_tasks.tolist(), start=1):
            cols[f"es_share_{n}"] = count / total if total else math.nan
        for e, count, ok in zip(
            numbers, self.exit_tasks.tolist(), self.exit_success.tolist(), strict=True
        ):
            cols[f"success_exit_{e}"] = ok / count if count else math.nan
        return cols


def normalised_reward(state: SlotState, decision: np.ndarray) -> float:
    """Eq. (17): predicted Q of `decision` over the predicted Q of the exact optimum (1 when
    both are 0)."""
    return normalised(float(score_decisions(state, decision)[0]), optimal_decision(state).q)


def usage_counts(
    exit_index: np.ndarray,
    server: np.ndarray,
    success: np.ndarray,
    counted: np.ndarray | None,
    num_exits: int,
    num_servers: int,
) -> dict[str, np.ndarray]:
    """`BatchStepInfo` fields exit_tasks, exit_success (K, L) and server_tasks (K, N) of
    (K, C) task columns (only the `counted` ones; None: all)."""
    rows = np.arange(exit_index.shape[0])[:, None]
    by_exit = rows * num_exits + exit_index
    by_server = rows * num_servers + server
    if counted is not None:
        success = success & counted
        by_exit_all, by_server = by_exit[counted], by_server[counted]
    else:
        by_exit_all = by_exit
    size_e, size_s = rows.size * num_exits, rows.size * num_servers
    return {
        "exit_tasks": np.bincount(by_exit_all.ravel(), minlength=size_e).reshape(-1, num_exits),
        "exit_success": np.bincount(by_exit[success], minlength=size_e).reshape(-1, num_exits),
        "server_tasks": np.bincount(by_server.ravel(), minlength=size_s).reshape(-1, num_servers),
    }


class BatchStepInfo(NamedTuple):
    """Per-environment numbers of one `BatchEnv.step`, (K,) arrays; entry k equals the
    like-named entry of `OffloadEnv.step`'s info (`step_info` turns that info into one)."""

    num_tasks: np.ndarray  # (K,) int, tasks generated
    num_success: np.ndarray  # (K,) int, tasks completed within the deadline (eq. (11))
    accuracy_sum: np.ndarray  # (K,) Σ accuracy of the successful tasks
    q_sum: np.ndarray  # (K,) Q of eq. (9), true values
    slot_ms: np.ndarray  # (K,) slot length τ, ms
    exit_tasks: np.ndarray  # (K, L) int, tasks per candidate exit (0-based row of the table)
    exit_success: np.ndarray  # (K, L) int, of those, successful tasks
    server_tasks: np.ndarray  # (K, N) int, tasks per ES


def step_info(info: dict[str, Any], num_exits: int = 0, num_servers: int = 0) -> BatchStepInfo:
    """One run's ``env.step`` info (`OffloadEnv`, `CityEnv`) as the `BatchStepInfo` of K = 1;
    the usage counts are those of ``info["outcome"]`` (none without one), at least
    `num_exits` and `num_servers` wide."""
    counts = {
        name: np.zeros((1, 0), dtype=np.int64)
        for name in ("exit_tasks", "exit_success", "server_tasks")
    }
    outcome = info.get("outcome")
    if outcome is not None:
        exit_index = np.asarray(outcome.exit_index, dtype=np.int64)[None]
        server = np.asarray(outcome.server, dtype=np.int64)[None]
        counts = usage_counts(
            exit_index,
            server,
            np.asarray(outcome.success, dtype=bool)[None],
            None,
            max(num_exits, int(exit_index.max(initial=-1)) + 1),
            max(num_servers, int(server.max(initial=-1)) + 1),
        )
    fields = ("num_tasks", "num_success", "accuracy_sum", "q_sum", "slot_ms")
    return BatchStepInfo(**{name: np.array([info[name]]) for name in fields}, **counts)


def _widened(counts: np.ndarray, size: int) -> np.ndarray:
    """(K, W) `counts` padded with zero columns to at least `size`."""
    extra = size - counts.shape[1]
    return counts if extra <= 0 else np.pad(counts, ((0, 0), (0, extra)))


class BatchMetrics:
    """Adds up the steps of K runs (`BatchEnv.step` infos, or one run's `env.step` info dicts
    with K = 1) and their eq. (17) values; `result()` gives the Section VI-D measures of every
    run.

    Args:
        num_envs: K, runs.
        num_exits: L, candidate exits (None: as many as the steps show, so an exit above every
            one chosen is missing from `usage`; pass L to count it as 0).
        num_servers: N, edge servers (None: likewise).
    """

    def __init__(
        self, num_envs: int, num_exits: int | None = None, num_servers: int | None = None
    ) -> None:
        self.slots = 0
        self.tasks = np.zeros(num_envs, dtype=np.int64)
        self.successes = np.zeros(num_envs, dtype=np.int64)
        self.accuracy_sum = np.zeros(num_envs)
        self.q_sum = np.zeros(num_envs)
        self.elapsed_ms = np.zeros(num_envs)
        self.exit_tasks = np.zeros((num_envs, num_exits or 0), dtype=np.int64)
        self.exit_success = np.zeros((num_envs, num_exits or 0), dtype=np.int64)
        self.server_tasks = np.zeros((num_envs, num_servers or 0), dtype=np.int64)
        self.normalised: list[list[float]] = [[] for _ in range(num_envs)]

    def add(
        self, info: BatchStepInfo | dict[str, Any], normalised: Sequence[float] | None = None
    ) -> None:
        """Count one slot of every run, and its eq. (17) value of every run if known; a dict is
        one run's ``env.step`` info (`step_info`)."""
        if isinstance(info, dict):
            info = step_info(info, self.exit_tasks.shape[1], self.server_tasks.shape[1])
        if normalised is not None:
            for values, value in zip(self.normalised, normalised, strict=True):
                values.append(value)
        self.slots += 1
        self.tasks += info.num_tasks
        self.successes += info.num_success
        self.accuracy_sum += info.accuracy_sum
        self.q_sum += info.q_sum
        self.elapsed_ms += info.slot_ms
        self.add_usage(info.exit_tasks, info.exit_success, info.server_tasks)

    def add_usage(
        self, exit_tasks: np.ndarray, exit_success: np.ndarray, server_tasks: np.ndarray
    ) -> None:
        """Add (K, L') task and success counts per exit and (K, N') per ES (widening to them)."""
        width = max(self.exit_tasks.shape[1], exit_tasks.shape[1])
        self.exit_tasks = _widened(self.exit_tasks, width)
        self.exit_success = _widened(self.exit_success, width)
        self.server_tasks = _widened(self.server_tasks, server_tasks.shape[1])
        self.exit_tasks[:, : exit_tasks.shape[1]] += exit_tasks
        self.exit_success[:, : exit_success.shape[1]] += exit_success
        self.server_tasks[:, : server_tasks.shape[1]] += server_tasks

    def usage(self) -> list[Usage]:
        """One `Usage` per run.

        Raises:
            ValueError: no step was added yet.
        """
        if self.slots == 0:
            raise ValueError("BatchMetrics.usage() before any add(); step the environments first.")
        return [
            Usage(
                self.exit_tasks[k].copy(), self.exit_success[k].copy(), self.server_tasks[k].copy()
            )
            for k in range(len(self.tasks))
        ]

    def result(self) -> list[Metrics]:
        """One `Metrics` per run (the mean eq. (17) value nan where none was added)."""
        results = []
        for k in range(len(self.tasks)):
            ratios = self.normalised[k]
            tasks, successes = int(self.tasks[k]), int(self.successes[k])
            elapsed_ms = float(self.elapsed_ms[k])
            results.append(
                Metrics(
                    slots=self.slots,
                    tasks=tasks,
                    avg_accuracy=float(self.accuracy_sum[k]) / max(tasks, 1),
                    ssp=successes / max(tasks, 1),
                    throughput_per_s=successes / (elapsed_ms / 1e3) if elapsed_ms else 0.0,
                    mean_q=float(self.q_sum[k]) / max(self.slots, 1),
                    mean_normalised_reward=float(np.mean(ratios)) if ratios else math.nan,
                    usage=Usage(
                        self.exit_tasks[k].copy(),
                        self.exit_success[k].copy(),
                        self.server_tasks[k].copy(),
                    ),
                )
            )
        return results
