"""The critic at city scale: a fixed number S of quantised candidates on the sparse
graph's edges, scored in one batch, plus an optional local repair.

At M = 1,000 devices, N = 50 ES and L = 5 exits the paper's S = M·N·L would be 250,000
candidate decisions of 1,000 tasks each; scoring one costs about 1 ms, so the critic cannot
score them all. The scaled critic (docs/offload-agents.md, "The critic at scale"):

1. *Candidates.* The first S entries of the order-preserving quantiser's list
   (:func:`~offload.agents.quantise.quantise`, its rule unchanged: candidate 0 is the actor's
   argmax over each device's reachable options, then the threshold candidates of the pairs
   with the smallest confidence gaps, then single moves), computed on the E edges only
   (:func:`quantise_edges`): only the S − 1 smallest gaps are ranked (a partial sort), and
   each candidate is built over the edges, so the cost is O(E + S·E) instead of quantise's
   O(M·O·P). The list equals ``quantise(dense x̂, mask, S)`` (tested); every candidate gives
   each device exactly one reachable option.
2. *Scoring.* All candidates in one ``score_decisions`` call (eq. 9, predicted Q); the best
   one (the first best) is the decision (eq. 15).
3. *Repair* (``repair_passes`` > 0). A local search from the best candidate
   (:func:`~offload.sim.scale_refs.local_search`, that many passes of single-device moves over
   each device's reachable options) that visits only the devices whose task earns less than
   ``repair_below`` × its best reward alone (:func:`~offload.sim.scale_refs.alone_rewards`, the
   bound's per-device term): the tasks the contention hurts. Its result joins the candidates,
   so the decision is still the best scored candidate. It never lowers the predicted Q but a
   pass over every device costs about 130 ms at M = 1,000 (Python), so it is off by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from offload.agents.sparse import encode_sparse, sparse_relaxed
from offload.sim.evaluator import score_decisions, task_rewards
from offload.sim.scale_refs import alone_rewards, local_search

__all__ = ["ScaleCriticConfig", "ScaledDecision", "decide_at_scale", "quantise_edges"]


@dataclass(frozen=True)
class ScaleCriticConfig:
    """The scaled critic's candidate set (module docstring)."""

    num_candidates: int = 16  # S, quantised candidates scored per slot (before duplicates go)
    repair_passes: int = 0  # local-search passes from the best candidate (0: no repair)
    # the repair moves only the devices whose task earns less than this fraction of its best
    # reward alone (alone_rewards); 1.0: every device below its own bound, smaller: fewer
    # devices visited, faster (the visits are what a pass costs)
    repair_below: float = 1.0

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates={self.num_candidates}: score at least one.")
        if self.repair_passes < 0:
            raise ValueError(f"repair_passes={self.repair_passes}: use 0 (off) or more.")
        if not 0.0 < self.repair_below <= 1.0:
            raise ValueError(f"repair_below={self.repair_below}: use a fraction in (0, 1].")


class ScaledDecision(NamedTuple):
    """What the scaled critic decided for one slot."""

    decision: np.ndarray  # (M,) int, option n·L + l per device: the best candidate
    q: float  # its predicted Q (eq. 9)
    candidates: np.ndarray  # (C, M) int, every scored candidate (the repair's last)
    scores: np.ndarray  # (C,) their predicted Q
    best_index: int  # row of the decision in ``candidates`` (0 = the actor's argmax)


def quantise_edges(
    relaxed: np.ndarray,
    device: np.ndarray,
    option: np.ndarray,
    num_devices: int,
    num_candidates: int,
) -> np.ndarray:
    """The first ``num_candidates`` distinct entries of the order-preserving quantiser's list
    (``quantise(dense x̂, mask, S)``), from x̂ on the edges.

    Args:
        relaxed: (E,) x̂ of each edge.
        device, option: (E,) int, the edges (device m, option o), sorted by (m, o) as
            :func:`~offload.agents.sparse.reachable_edges` gives them.
        num_devices: M; every device must have at least one edge.
        num_candidates: S >= 1.

    Returns:
        (S', M) int64, S' <= S: distinct candidates, row 0 the actor's argmax.

    Raises:
        ValueError: a device without an edge, or S < 1.
    """
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}.")
    r = np.asarray(relaxed, dtype=np.float64)
    if num_devices == 0:  # nobody in coverage this slot: the one empty decision
        return np.zeros((1, 0), dtype=np.int64)
    count = np.bincount(device, minlength=num_devices)
    if (count == 0).any():
        raise ValueError(
            f"device {int(np.argmin(count))} has no valid option; drop it from the slot first."
        )
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    best = np.maximum.reduceat(r, start)  # (M,)
    # candidate 0: each device's first best option (argmax over its options in order)
    top = np.flatnonzero(r == best[device])
    first = top[np.unique(device[top], return_index=True)[1]]  # (M,) edge of the choice
    choice = option[first]
    gap = best[device] - r
    gap[first] = np.inf
    num_pairs = r.size - num_devices  # P: every edge but the choices
    need = min(num_pairs, num_candidates - 1)
    ranked = np.empty(0, dtype=np.int64)
    if need > 0:  # the `need` smallest gaps, ties in edge order (= quantise's stable sort)
        kth = np.partition(gap, need - 1)[need - 1]
        pool = np.flatnonzero(gap <= kth)
        ranked = pool[np.argsort(gap[pool], kind="stable")][:need]
    cands = [choice]
    if ranked.size:
        # threshold family: devices on the same option as m* that reach o* at a gap <= g*
        m_star, o_star, g_star = device[ranked], option[ranked], gap[ranked]
        side = choice[device][None, :] == choice[m_star][:, None]  # (need, E)
        moves = side & (option[None, :] == o_star[:, None]) & (gap[None, :] <= g_star[:, None])
        thresh = np.repeat(choice[None], ranked.size, axis=0)
        row, edge = np.nonzero(moves)
        thresh[row, device[edge]] = option[edge]
        cands.append(thresh)
    singles = min(num_pairs, num_candidates - 1 - need)
    if singles > 0:  # more asked than pairs: single moves in the same order
        rest = np.flatnonzero(np.isfinite(gap))
        order = rest[np.argsort(gap[rest], kind="stable")][:singles]
        single = np.repeat(choice[None], order.size, axis=0)
        single[np.arange(order.size), device[order]] = option[order]
        cands.append(single)
    out = np.vstack([np.atleast_2d(c) for c in cands]).astype(np.int64, copy=False)
    # first occurrences only (quantise's ``distinct``); S is small, so compare all pairs
    same = (out[:, None, :] == out[None, :, :]).all(axis=2)
    keep = ~np.tril(same, k=-1).any(axis=1)
    return out[keep]


def decide_at_scale(
    actor: torch.nn.Module, state: Any, config: ScaleCriticConfig = ScaleCriticConfig()
) -> ScaledDecision:
    """One slot's decision by a graph actor and the scaled critic (module docstring) on a
    ``SlotState`` of any size; the actor's weights are used as they are (no learning)."""
    graph = encode_sparse(state, actor.config)
    relaxed = sparse_relaxed(actor, graph).numpy()
    dev, opt = graph.edge_index.numpy()
    cands = quantise_edges(relaxed, dev, opt, state.num_devices, config.num_candidates)
    return score_candidates(state, cands, config.repair_passes, config.repair_below)


def score_candidates(
    state: Any, cands: np.ndarray, repair_passes: int = 0, repair_below: float = 1.0
) -> ScaledDecision:
    """Score ``cands`` (C, M) in one batch, repair the best with ``repair_passes`` passes of
    local search over the devices earning less than ``repair_below`` × their best reward alone
    (0 passes: no repair) and return the best scored candidate."""
    scores = np.asarray(score_decisions(state, cands), dtype=np.float64)
    best = int(np.argmax(scores))
    if repair_passes > 0:
        earned = task_rewards(state, cands[best][None])[0]
        movers = np.flatnonzero(earned < repair_below * alone_rewards(state).max(axis=1))
        repaired = local_search(state, cands[best], max_passes=repair_passes, devices=movers)
        cands = np.vstack([cands, repaired.decision[None]])
        scores = np.append(scores, repaired.q)
        best = int(np.argmax(scores))
    return ScaledDecision(cands[best], float(scores[best]), cands, scores, best)
