"""The critic at city scale: a fixed number S of quantised candidates on the sparse
graph's edges, scored in one batch, plus an optional local repair.

At M = 1,000 devices, N = 50 ES and L = 5 exits the paper's S = M·N·L would be 250,000
candidate decisions of 1,000 tasks each; scoring one costs about 1 ms, so the critic cannot
score them all. The scaled critic (docs/offload-agents.md, "The critic at scale"):

1. *Candidates.* The first S entries of the order-preserving quantiser's list
   (:func:`~offload.agents.quantise.quantise`, its rule unchanged: candidate 0 is the actor's
   argmax over each device's reachable options, then the threshold candidates of the pairs
   with the smallest confidence gaps, then single moves), computed on the E edges
   (:func:`~offload.agents.quantise.quantise_edges`, of which ``quantise`` is the dense view:
   only the S − 1 smallest gaps are ranked, so the cost is O(E + S·E)); every candidate
   gives each device exactly one reachable option.
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

from offload.agents.quantise import quantise_edges
from offload.agents.sparse import encode_sparse, sparse_relaxed
from offload.sim.evaluator import score_decisions, task_rewards
from offload.sim.scale_refs import alone_rewards, local_search

__all__ = ["ScaleCriticConfig", "ScaledDecision", "decide_at_scale", "score_candidates"]


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
