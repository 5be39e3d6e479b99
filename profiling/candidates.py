"""Deterministic selection of the L candidate exits that the offloading problem uses
(paper Section V-A: "we select the five meaningful early-exits"; Section VI-B, Fig. 3, Table I).

Algorithm (all steps deterministic; ties go to the lower exit number):

1. **Reference latency.** With one device, ``r_i = t_i / t_main``; with several, the mean over
   devices of ``t_{i,d} / t_{main,d}`` (latency relative to the main branch, so that each
   device weighs the same whatever its speed).
2. **Drop dominated exits.** Exit ``j`` dominates exit ``i`` when it is no slower
   (``r_j <= r_i``) and no less accurate (``a_j >= a_i``) and better in one of the two; of two
   identical exits the lower number is kept. The remaining exits form the Pareto front, sorted
   by latency; along it accuracy strictly increases.
3. **Always keep the main branch** (the highest exit number), even when it is dominated.
4. **Cover the trade-off.** An edge server with a computation budget of ``T`` runs the most
   accurate candidate that fits, so a candidate set ``S`` yields accuracy
   ``A_S(T) = max{a_j : j in S, r_j <= T}`` (0 when nothing fits): a step curve. The selection
   maximises the area under that curve on ``[0, H]``, ``H`` = the largest reference latency among
   the front and the main branch::

       area(S) = sum_j a_(j) * (r_(j+1) - r_(j)),   r_(|S|+1) = H,

   for ``S`` sorted by latency, i.e. ``H`` times the expected accuracy when the budget is
   uniform on ``[0, H]``. Dynamic programming over the front finds the exact optimum in
   ``O(k n^2)``: ``V[c][j]`` = best area between the first and the ``j``-th front exit using
   ``c`` exits that end at ``j``; ``V[c][j] = max_i V[c-1][i] + a_i (r_j - r_i)``, with
   transitions that skip the main branch forbidden.

Adding a front exit never lowers the area, so ``min(k, front size)`` exits are chosen; a
table whose front is smaller than ``k`` gives fewer candidates (a dominated exit is never a
useful choice for the server) and the result says so in ``notes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiling.errors import ProfilingError
from profiling.table import ExitTableFile


@dataclass(frozen=True)
class Selection:
    """The chosen candidate exits and how they were chosen."""

    exits: tuple[int, ...]  # candidate exit numbers, ascending
    k: int  # number of candidates asked for
    main_exit: int  # exit number of the main branch (always selected)
    devices: tuple[str, ...]  # devices whose latencies formed the reference latency
    dominated: tuple[int, ...]  # exits dropped because another exit dominates them
    area: float  # area under the accuracy step curve, (fraction of main-branch latency) x accuracy
    horizon: float  # H, the right end of the integration range, fraction of main-branch latency
    notes: tuple[str, ...] = ()  # remarks (fewer candidates than asked, dominated main branch)

    @property
    def mean_accuracy(self) -> float:
        """Expected accuracy of the best fitting candidate for a budget uniform on [0, H]."""
        return self.area / self.horizon

    def as_dict(self) -> dict[str, Any]:
        return {
            "algorithm": "pareto_front+max_area_step_curve_dp",
            "k": self.k,
            "exits": list(self.exits),
            "main_exit": self.main_exit,
            "devices": list(self.devices),
            "reference_latency": "mean over devices of latency / main-branch latency",
            "dominated": list(self.dominated),
            "area": round(self.area, 9),
            "horizon": round(self.horizon, 9),
            "mean_accuracy_uniform_budget": round(self.mean_accuracy, 9),
            "notes": list(self.notes),
        }


def step_area(accuracy: Sequence[float], latency: Sequence[float], horizon: float) -> float:
    """Area under ``A(T) = max{a_j : r_j <= T}`` for ``T`` in ``[0, horizon]`` (0 before the
    fastest exit). Works for any set of points (dominated ones add nothing)."""
    order = np.argsort(np.asarray(latency, dtype=np.float64), kind="stable")
    a = np.asarray(accuracy, dtype=np.float64)[order]
    r = np.asarray(latency, dtype=np.float64)[order]
    best = np.maximum.accumulate(a)
    right = np.append(r[1:], horizon)
    return float(np.sum(best * np.clip(np.minimum(right, horizon) - r, 0.0, None)))


def dominated_exits(
    exits: Sequence[int], accuracy: Sequence[float], latency: Sequence[float]
) -> list[int]:
    """Exits that another exit dominates (no slower, no less accurate, better in one; of
    identical exits the lower number is kept)."""
    e = np.asarray(exits)
    a = np.asarray(accuracy, dtype=np.float64)
    r = np.asarray(latency, dtype=np.float64)
    out = []
    for i in range(len(e)):
        no_worse = (r <= r[i]) & (a >= a[i])
        better = (r < r[i]) | (a > a[i]) | (e < e[i])
        no_worse[i] = False
        if np.any(no_worse & better):
            out.append(int(e[i]))
    return out


def _dp_select(
    a: np.ndarray, r: np.ndarray, m: int, forced: int | None, horizon: float
) -> list[int]:
    """Indices (into the latency-sorted front) of the ``m`` points maximising the step area,
    keeping index ``forced`` if given; ties go to earlier points."""
    n = len(a)
    value = np.full((m + 1, n), -np.inf)
    parent = np.full((m + 1, n), -1, dtype=np.int64)
    for j in range(n):
        if forced is None or j <= forced:  # the first chosen point may not lie past the forced one
            value[1, j] = 0.0
    for c in range(2, m + 1):
        for j in range(n):
            for i in range(j):
                if value[c - 1, i] == -np.inf or (forced is not None and i < forced < j):
                    continue
                candidate = value[c - 1, i] + a[i] * (r[j] - r[i])
                if candidate > value[c, j]:
                    value[c, j], parent[c, j] = candidate, i
    best, last = -np.inf, -1
    for j in range(n):
        if forced is not None and j < forced:
            continue
        total = value[m, j] + a[j] * (horizon - r[j])
        if value[m, j] > -np.inf and total > best:
            best, last = total, j
    chosen = [last]
    for c in range(m, 1, -1):
        chosen.append(int(parent[c, chosen[-1]]))
    return sorted(chosen)


def select_exits(
    exits: Sequence[int],
    accuracy: Sequence[float],
    latency: Sequence[float],
    *,
    k: int = 5,
    main_exit: int | None = None,
) -> tuple[list[int], list[int], float, float, list[str]]:
    """Core of the selection on plain arrays (see the module docstring).

    Args:
        exits: exit numbers.
        accuracy: accuracy per exit in [0, 1].
        latency: reference latency per exit (any positive unit; the choice is scale-free).
        k: number of candidates, >= 1.
        main_exit: the exit always kept (default: the highest exit number).

    Returns:
        (selected exits ascending, dominated exits, area, horizon H, notes).
    """
    e = np.asarray(exits, dtype=np.int64)
    a = np.asarray(accuracy, dtype=np.float64)
    r = np.asarray(latency, dtype=np.float64)
    if not (len(e) == len(a) == len(r)) or len(e) == 0:
        raise ProfilingError("exits, accuracy and latency must be non-empty and of equal length.")
    if k < 1:
        raise ProfilingError(f"the number of candidate exits must be >= 1 (got {k}).")
    main = int(e.max()) if main_exit is None else int(main_exit)
    if main not in e:
        raise ProfilingError(f"the main branch exit {main} is not in the table.")
    notes: list[str] = []
    dominated = dominated_exits(e, a, r)
    keep = np.array([x not in dominated for x in e])
    order = np.lexsort((e[keep], r[keep]))  # by latency, then exit number
    fe, fa, fr = e[keep][order], a[keep][order], r[keep][order]
    main_idx = int(np.flatnonzero(e == main)[0])
    horizon = float(max(fr.max(), r[main_idx]))
    if main in fe:
        forced: int | None = int(np.flatnonzero(fe == main)[0])
        slots = k
    else:
        forced, slots = None, k - 1
        notes.append(f"the main branch (exit {main}) is dominated but kept as required.")
    m = min(slots, len(fe))
    chosen = [int(fe[i]) for i in _dp_select(fa, fr, m, forced, horizon)] if m > 0 else []
    if main not in chosen:
        chosen.append(main)
    chosen.sort()
    if len(chosen) < k:
        notes.append(
            f"only {len(chosen)} exits are worth keeping (the others are dominated); "
            f"{k} were asked for."
        )
    idx = [int(np.flatnonzero(e == x)[0]) for x in chosen]
    area = step_area(a[idx], r[idx], horizon)
    return chosen, dominated, area, horizon, notes


def select_candidates(
    table: ExitTableFile,
    *,
    k: int = 5,
    devices: Sequence[str] | None = None,
    main_exit: int | None = None,
) -> Selection:
    """Pick ``k`` candidate exits from an exit table with accuracies (module docstring).

    Args:
        table: a validated exit table with an accuracy column.
        k: number of candidates (the paper uses 5).
        devices: latency columns to use (default: all of them).
        main_exit: the exit always kept (default: the highest exit number, 17 for VGG-16).

    Raises:
        ProfilingError: if the table has no accuracies, a device is unknown or k < 1.
    """
    accuracy = table.accuracy
    devices = list(devices) if devices else table.devices
    exits = table.exits
    main = int(exits.max()) if main_exit is None else int(main_exit)
    if main not in exits:
        raise ProfilingError(f"the main branch exit {main} is not in the table.")
    main_row = int(np.flatnonzero(exits == main)[0])
    relative = np.mean(
        [table.latency_ms(d) / table.latency_ms(d)[main_row] for d in devices], axis=0
    )
    chosen, dominated, area, horizon, notes = select_exits(
        exits, accuracy, relative, k=k, main_exit=main
    )
    return Selection(
        exits=tuple(chosen),
        k=k,
        main_exit=main,
        devices=tuple(devices),
        dominated=tuple(dominated),
        area=area,
        horizon=horizon,
        notes=tuple(notes),
    )


def candidate_table(
    table: ExitTableFile, selection: Selection, *, source_path: str = ""
) -> ExitTableFile:
    """The candidate table: the selected rows in the same schema, with the selection recorded
    in the sidecar (``candidates``) next to the full table's metadata."""
    metadata = dict(table.metadata)
    metadata["candidates"] = {**selection.as_dict(), "selected_from": source_path}
    return table.subset(selection.exits, metadata=metadata)
