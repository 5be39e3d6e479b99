"""The critic's quantiser of Algorithm 1 (eq. 15): relaxed decisions x̂ into one-option-per-device
candidates, for one run or K runs at once.

One implementation, two forms: :func:`quantise_edges` reads x̂ on a list of (device, option)
edges (the sparse graph at city scale, where M·O is too large to hold), and :func:`quantise` is
its dense view, every pair of an (M, O) array an edge and the mask saying which exist.

Quantisation (our generalisation of DROO's order-preserving method)
------------------------------------------------------------------
DROO has one sigmoid per device (offload or not). Its candidate 1 thresholds x̂ at 0.5; candidate
k + 1 thresholds the whole vector at the entry that is the k-th closest to 0.5, so that entry and
every entry on the *same side* of 0.5 that is *at least as close* to 0.5 flip.

Here each device must pick exactly one of O = N·L options. Let a_m = argmax_o x̂[m, o] over the
valid options of device m (candidate 0, the actor's own choice) and, for every other valid pair
(m, o), the *gap* g[m, o] = x̂[m, a_m] − x̂[m, o] ≥ 0: how much confidence device m gives up by
moving to option o. Pairs are ranked by gap, smallest first. The candidate of pair (m*, o*) moves
to o* every device m that (i) currently picks the same option as m* (a_m = a_{m*}, "the same
side"), (ii) can reach o* (valid link) and (iii) has g[m, o*] ≤ g[m*, o*] ("at least as close").
For O = 2 with x̂[m] = (1 − p_m, p_m) the gap is |2 p_m − 1| and this is exactly DROO's rule.
That yields 1 + (#valid pairs − M) candidates (1 + M·(N·L − 1) with all links up); when S asks
for more, single-pair moves (only m* moves to o*) in the same order fill the list, and when S asks
for fewer the list is cut. By construction every candidate gives each device exactly one valid
option, and candidate 0 is the actor's argmax.

Duplicates: two entries of that list can be the same decision -- the single move of a pair whose
threshold candidate moves only m* (always the case for the smallest gap without ties), and, when
the actor saturates (x̂ exactly 0 or 1 in float32, so every gap is 1), every threshold candidate
of the same (option, side). The critic would score each copy again, so the quantiser keeps only
the *first occurrence* of each decision among the first S entries (``distinct=True``, the
default). That changes no decision: the list is cut to S first, so the same distinct candidates
are scored, and the first best candidate of the full list is a first occurrence, so it is still
the first best one (only ``best_index``, its position, can move down). It is not refilled with
later candidates, which would change what the critic sees.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

__all__ = ["first_occurrences", "quantise", "quantise_edges"]


def first_occurrences(cands: np.ndarray) -> np.ndarray:
    """(K, S) bool: True where row s of ``cands[k]`` (K, S, M) int is the first occurrence of
    that decision among the rows of run k."""
    num_runs, num_cands, num_devices = cands.shape
    if num_cands <= 1 or num_devices == 0:
        return np.ones((num_runs, num_cands), dtype=bool)
    base = int(cands.max()) + 1
    if base**num_devices < 2**62:
        # one exact int64 key per decision (its options as digits in base N·L); a stable sort
        # puts equal decisions next to each other, earliest first
        key = cands @ base ** np.arange(num_devices, dtype=np.int64)  # (K, S)
        order = np.argsort(key, axis=1, kind="stable")
        ranked = np.take_along_axis(key, order, axis=1)
        repeat = np.zeros(key.shape, dtype=bool)
        repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
        keep = np.empty(key.shape, dtype=bool)
        np.put_along_axis(keep, order, ~repeat, axis=1)
        return keep
    # too many digits for one key: each decision (after its run) as one opaque row of bytes;
    # np.unique's stable sort gives the first occurrence of each
    rows = np.concatenate(
        [np.repeat(np.arange(num_runs), num_cands)[:, None], cands.reshape(-1, num_devices)],
        axis=1,
    ).astype(np.int64)
    _, first = np.unique(
        rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))), return_index=True
    )
    keep = np.zeros(num_runs * num_cands, dtype=bool)
    keep[first] = True
    return keep.reshape(num_runs, num_cands)


def quantise(
    relaxed: np.ndarray,
    mask: np.ndarray,
    num_candidates: int | None = None,
    *,
    distinct: bool = True,
) -> np.ndarray:
    """Order-preserving quantisation of relaxed decisions into one-option-per-device candidates
    (the module docstring gives the rule), for one run or K runs at once: the dense view of
    :func:`quantise_edges`, every (device, option) pair an edge and ``mask`` saying which exist.

    Args:
        relaxed: (M, O) float, the actor's x̂ in (0, 1) (values at masked pairs are ignored),
            or (K, M, O) for K runs.
        mask: the same shape, bool: True where device m may take option o.
        num_candidates: S, the length of the ordered candidate list before duplicates are
            removed; default M·O (the paper's S = M·N·L).
        distinct: keep only the first occurrence of each decision among the first S entries
            (the module docstring explains why no decision changes); False returns the list
            with its duplicates.

    Returns:
        (S', M) int64 options per device for one run, S' <= min(S, 1 + 2·(#valid pairs − M))
        (equal with ``distinct=False``); row 0 is the actor's argmax; every entry is a valid
        option of its device; with ``distinct`` no two rows are equal. For K runs (K, S', M),
        S' the longest run's list; a shorter list is padded with copies of its candidate 0,
        which change neither the best score nor the index of the first best candidate.

    Raises:
        ValueError: if shapes differ or a device has no valid option.
    """
    relaxed = np.asarray(relaxed, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if relaxed.shape != mask.shape or relaxed.ndim not in (2, 3):
        raise ValueError(
            f"relaxed {relaxed.shape} and mask {mask.shape} must both be (M, O), or (K, M, O) "
            "for K runs; pass one row per device."
        )
    num_runs = relaxed.shape[0] if relaxed.ndim == 3 else 1
    num_devices, num_options = relaxed.shape[-2:]
    if num_candidates is None:
        num_candidates = num_devices * num_options
    return _quantise(
        relaxed.reshape(num_runs, -1),
        mask.reshape(num_runs, -1),
        _dense_edges(num_devices, num_options),
        num_candidates,
        distinct,
    )[0 if relaxed.ndim == 2 else slice(None)]


class _Edges(NamedTuple):
    """An edge list (device m, option o), sorted by (m, o), as the quantiser reads it."""

    device: np.ndarray  # (E,) int, device of each edge
    option: np.ndarray  # (E,) int, option of each edge
    start: np.ndarray  # (M,) int, first edge of each device
    edge_of: np.ndarray  # (O', M) int, the edge (m, o) at [o, m]; E where there is none


def _edges(device: np.ndarray, option: np.ndarray, num_devices: int) -> _Edges:
    """The `_Edges` of edges sorted by (m, o); every device must have one."""
    count = np.bincount(device, minlength=num_devices)
    if (count == 0).any():
        raise ValueError(
            f"device {int(np.argmin(count))} has no valid option; drop it from the slot "
            "before deciding."
        )
    edge_of = np.full((int(option.max(initial=-1)) + 1, num_devices), device.size)
    edge_of[option, device] = np.arange(device.size)
    return _Edges(device, option, np.cumsum(count) - count, edge_of)


@functools.lru_cache(maxsize=64)
def _dense_edges(num_devices: int, num_options: int) -> _Edges:
    """Every (device, option) pair of an (M, O) array as an edge (edge m·O + o)."""
    edges = _edges(*np.divmod(np.arange(num_devices * num_options), num_options), num_devices)
    for array in edges:
        array.flags.writeable = False  # shared by every call of this shape
    return edges


def quantise_edges(
    relaxed: np.ndarray,
    device: np.ndarray,
    option: np.ndarray,
    num_devices: int,
    num_candidates: int,
    *,
    valid: np.ndarray | None = None,
    distinct: bool = True,
) -> np.ndarray:
    """The order-preserving quantiser (module docstring) on a list of E edges (device m,
    option o), for one run or K runs that share the edges: the first ``num_candidates``
    entries of the candidate list. Only the S − 1 smallest gaps are ranked (a partial sort
    when they are few), and each threshold candidate reads one gap per device, so the cost is
    O(E + O·M + S·M) rather than the dense list's O(M·O·P).

    Args:
        relaxed: (E,) x̂ of each edge, or (K, E) for K runs.
        device, option: (E,) int, the edges, sorted by (m, o) as
            :func:`~offload.agents.sparse.reachable_edges` gives them.
        num_devices: M; every device must have at least one valid edge.
        num_candidates: S >= 1.
        valid: the shape of ``relaxed``, bool: which edges exist in each run (None: all).
        distinct: keep only the first occurrence of each decision (as :func:`quantise`).

    Returns:
        (S', M) int64, S' <= S, row 0 the actor's argmax; for K runs (K, S', M), a shorter
        list padded with copies of its candidate 0 (as :func:`quantise`).

    Raises:
        ValueError: a device without a valid edge, S < 1 or shapes that differ.
    """
    r = np.asarray(relaxed, dtype=np.float64)
    device, option = np.asarray(device), np.asarray(option)
    if r.ndim not in (1, 2) or device.shape != r.shape[-1:] or option.shape != r.shape[-1:]:
        raise ValueError(
            f"relaxed {r.shape}, device {device.shape} and option {option.shape} must be "
            "(E,) or (K, E) and (E,) and (E,); pass one value per edge."
        )
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}.")
    num_runs = r.shape[0] if r.ndim == 2 else 1
    if valid is not None:
        valid = np.asarray(valid, dtype=bool).reshape(num_runs, -1)
    edges = _edges(device, option, num_devices)
    cands = _quantise(r.reshape(num_runs, -1), valid, edges, num_candidates, distinct)
    return cands[0] if r.ndim == 1 else cands


def _quantise(
    r: np.ndarray, valid: np.ndarray | None, edges: _Edges, num_candidates: int, distinct: bool
) -> np.ndarray:
    """`quantise_edges` of K runs: (K, E) x̂ and valid edges (None: all) -> (K, S', M)."""
    num_runs, num_edges = r.shape
    num_devices = edges.start.size
    if num_devices == 0:
        return np.zeros((num_runs, 1, 0), dtype=np.int64)
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}.")
    device, option = edges.device, edges.option
    if valid is None:
        scores = r
        num_pairs = np.full(num_runs, num_edges - num_devices)  # (K,) P_k
    else:
        per_device = np.add.reduceat(valid, edges.start, axis=1, dtype=np.int64)  # (K, M)
        if not per_device.all():
            k, m = np.argwhere(per_device == 0)[0]
            run = f" of run {k}" if num_runs > 1 else ""
            raise ValueError(
                f"device {m}{run} has no valid option; drop it from the slot before deciding."
            )
        scores = np.where(valid, r, -np.inf)
        num_pairs = per_device.sum(axis=1) - num_devices  # (K,) P_k: every valid edge but 0's
    runs = np.arange(num_runs)[:, None]
    best = np.maximum.reduceat(scores, edges.start, axis=1)[:, device]  # (K, E) per edge
    # candidate 0: each device's first best option (argmax over its options in order)
    at_best = np.where(scores == best, np.arange(num_edges), num_edges)
    first = np.minimum.reduceat(at_best, edges.start, axis=1)  # (K, M) edge of the choice
    choice = option[first]
    # gap of every valid edge but the choices, inf elsewhere and at the padding edge E
    gap = np.full((num_runs, num_edges + 1), np.inf)
    np.subtract(best, r, out=gap[:, :-1], where=True if valid is None else valid)
    gap[runs, first] = np.inf
    need = np.minimum(num_pairs, num_candidates - 1)  # threshold candidates per run
    singles = np.minimum(num_pairs, num_candidates - 1 - need)  # more asked than pairs
    most = int(need.max())
    # the `most` smallest gaps of each run, ties in edge order (a stable sort)
    if 8 * most < num_edges:  # a few of many: a partial sort
        kth = np.partition(gap, most - 1, axis=1)[:, most - 1 : most] if most else -np.inf
        row, edge = np.nonzero(gap <= kth)
        order = np.lexsort((gap[row, edge], row))
        row, edge = row[order], edge[order]
        rank = np.arange(row.size) - np.searchsorted(row, row)
        top = rank < most
        ranked = np.zeros((num_runs, most), dtype=np.int64)
        ranked[row[top], rank[top]] = edge[top]
    else:
        ranked = np.argsort(gap, axis=1, kind="stable")[:, :most]
    g_star = gap[runs, ranked]
    if not (need == most).all():
        g_star[np.arange(most)[None, :] >= need[:, None]] = -np.inf  # no such pair: no move
    m_star, o_star = device[ranked], option[ranked]
    # threshold family: the devices on the same option as m* that reach o* at a gap <= g*
    same_side = choice[:, None, :] == choice[runs, m_star][:, :, None]
    if most > edges.edge_of.shape[0]:  # more pairs than options: gather by option first
        reach = gap[:, edges.edge_of][runs, o_star]  # (K, P, M) gap of (m, o*)
    else:
        reach = gap[runs[:, :, None], edges.edge_of[o_star]]
    closer = reach <= g_star[:, :, None]
    thresh = np.where(same_side & closer, o_star[:, :, None], choice[:, None, :])
    # single-move family: only m* moves to o*, in the same order
    few = int(singles.max())
    single = np.repeat(choice[:, None, :], few, axis=1)
    single[runs, np.arange(few)[None, :], m_star[:, :few]] = o_star[:, :few]
    pool = np.concatenate([choice[:, None, :], thresh, single], axis=1)
    # the list of run k: 0, thresh[:need_k], single[:singles_k], then copies of 0
    if (need == most).all() and (singles == few).all():  # no padding
        cands = pool.astype(np.int64, copy=False)
    else:
        pos = np.arange(int((1 + need + singles).max()))[None, :]
        n_k, s_k = need[:, None], singles[:, None]
        index = np.where(pos <= n_k, pos, np.where(pos <= n_k + s_k, pos - n_k + most, 0))
        cands = pool[runs, index].astype(np.int64, copy=False)
    if not distinct:
        return cands
    keep = first_occurrences(cands)  # the padding copies of candidate 0 go too
    count = keep.sum(axis=1)
    if (count == count[0]).all():  # the same number of distinct candidates in every run
        return cands[keep].reshape(num_runs, int(count[0]), num_devices)
    out = np.repeat(cands[:, :1], int(count.max()), axis=1)  # pad with candidate 0
    run_of, _ = np.nonzero(keep)
    out[run_of, (np.cumsum(keep, axis=1) - 1)[keep]] = cands[keep]
    return out
