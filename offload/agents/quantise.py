"""The critic's quantiser of Algorithm 1 (eq. 15): relaxed decisions x̂ into one-option-per-device
candidates, for one run or K runs at once.

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

import numpy as np

__all__ = ["quantise", "first_occurrences"]


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
    flat = cands.reshape(num_runs * num_cands, num_devices)
    run = np.repeat(np.arange(num_runs), num_cands)
    pos = np.arange(num_runs * num_cands)
    # too many digits for one key: sort by run, then the decision, then position (np.lexsort's
    # primary key is the last one)
    order = np.lexsort((pos, *flat.T[::-1], run))
    rows, runs = flat[order], run[order]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (runs[1:] == runs[:-1]) & (rows[1:] == rows[:-1]).all(axis=1)
    keep = np.empty(len(order), dtype=bool)
    keep[order] = ~repeat
    return keep.reshape(num_runs, num_cands)


def quantise(
    relaxed: np.ndarray,
    mask: np.ndarray,
    num_candidates: int | None = None,
    *,
    distinct: bool = True,
) -> np.ndarray:
    """Order-preserving quantisation of relaxed decisions into one-option-per-device candidates
    (the module docstring gives the rule), for one run or K runs at once.

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
    if relaxed.ndim == 2:  # one run: a batch of one
        return quantise(relaxed[None], mask[None], num_candidates, distinct=distinct)[0]
    num_runs, num_devices, num_options = relaxed.shape
    if num_devices == 0:
        return np.zeros((num_runs, 1, 0), dtype=np.int64)
    if not mask.any(axis=2).all():
        k, m = np.argwhere(~mask.any(axis=2))[0]
        run = f" of run {k}" if num_runs > 1 else ""
        raise ValueError(
            f"device {m}{run} has no valid option; drop it from the slot before deciding."
        )
    if num_candidates is None:
        num_candidates = num_devices * num_options
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}.")

    runs = np.arange(num_runs)[:, None]
    devs = np.arange(num_devices)[None, :]
    scores = np.where(mask, relaxed, -np.inf)
    choice = scores.argmax(axis=2)  # (K, M) candidate 0
    best = scores[runs, devs, choice]
    gap = np.where(mask, best[:, :, None] - relaxed, np.inf)
    gap[runs, devs, choice] = np.inf
    flat = gap.reshape(num_runs, -1)
    # finite gaps first, in the same stable order as quantise's np.nonzero + argsort
    order = np.argsort(flat, axis=1, kind="stable")
    num_pairs = np.isfinite(flat).sum(axis=1)  # (K,) P_k
    most = int(num_pairs.max())
    order = order[:, :most]
    pair_dev, pair_opt = np.divmod(order, num_options)  # (K, P)
    pair_gap = np.take_along_axis(flat, order, axis=1)  # (K, P)
    # threshold family: same side as m* and at least as close to o* (DROO's rule)
    same_side = choice[:, None, :] == np.take_along_axis(choice, pair_dev, axis=1)[:, :, None]
    gap_t = gap.transpose(0, 2, 1)  # (K, O, M)
    closer = gap_t[runs, pair_opt] <= pair_gap[:, :, None]  # (K, P, M)
    thresh = np.where(same_side & closer, pair_opt[:, :, None], choice[:, None, :])
    # single-move family: only m* moves to o*
    single = np.repeat(choice[:, None, :], most, axis=1)
    single[runs, np.arange(most)[None, :], pair_dev] = pair_opt
    pool = np.concatenate([choice[:, None, :], thresh, single], axis=1)  # (K, 1 + 2P, M)
    # the candidate list of run k: 0, thresh[:P_k], single[:P_k], then copies of 0
    size = min(num_candidates, 1 + 2 * most)
    if (num_pairs == most).all():  # every run has P pairs (e.g. all links up): no padding
        cands = pool[:, :size].astype(np.int64, copy=False)
    else:
        pos = np.arange(size)[None, :]
        p_k = num_pairs[:, None]
        index = np.where(
            pos == 0,
            0,
            np.where(pos <= p_k, pos, np.where(pos <= 2 * p_k, pos - p_k + most, 0)),
        )
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
