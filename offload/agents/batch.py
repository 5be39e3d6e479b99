"""Algorithm 1 for K independent runs in lockstep: K actors, one batched call per slot.

The experiments of Figs. 5–8 are many independent runs (scenario, τ, seed) of the same agent type
at the same M. Run one by one, each slot costs ~1 ms of Python and framework overhead for a few
microseconds of arithmetic. :class:`BatchLearner` holds the K actors' weights stacked along a
leading axis and evaluates them in one pass (the actor's ``forward(..., params=stacked)``: each
layer is one batched matmul), quantises the K relaxed decisions at once (:func:`~offload.agents.learner.quantise`), lets the caller score all candidates of all runs in one call, and trains the K actors
with one backward pass: the runs share no parameter, so the gradient of the summed loss is each
run's own gradient, and Adam (element-wise) on the stacked tensors is K independent Adams.

What stays per run: the replay sampling generator (seeded as :class:`~offload.agents.learner.
ReplayMemory` is, so each run draws the same mini-batch indices as it would alone) and the loss.
Results equal the one-run :class:`~offload.agents.learner.Learner` up to float rounding of the
batched kernels (tested).

Observations are *dense batches*: a tuple of tensors with leading axes (K, ...) that the actor's
``forward`` accepts (GRLE: the dense slot graph of :func:`encode_slot_batch`; DROO: the flattened
channel state of :func:`encode_channel_batch`), plus the option mask (K, M, O).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from offload.agents.droo import encode_channel_batch
from offload.agents.grle import GRLEConfig, encode_slot_batch
from offload.agents.grle_paper import GRLEPaperConfig, encode_paper_batch
from offload.agents.learner import LearnerConfig, quantise

BatchScoreFn = Callable[[np.ndarray], np.ndarray]
"""Scores candidates of K runs: int (K, S, M) -> float (K, S) (higher is better, -inf infeasible)."""


class DenseBatch(NamedTuple):
    """K observations: the actor's input tensors (leading axis K) and the option mask."""

    tensors: tuple[torch.Tensor, ...]
    mask: np.ndarray  # (K, M, O) bool


# ---------------------------------------------------------------------------------------------
# Encoders (the batched counterparts of encode_slot and encode_channel)
# ---------------------------------------------------------------------------------------------
def encode_paper_slot_batch(state: Any, config: GRLEPaperConfig = GRLEPaperConfig()) -> DenseBatch:
    """The paper GRLE actor's input for K runs (:func:`~offload.agents.grle_paper.encode_paper_batch`)."""
    tensors, mask = encode_paper_batch(state, config)
    return DenseBatch(tensors, mask)


def batch_encoder(actor: nn.Module) -> Callable[[Any], DenseBatch]:
    """The batched encoder (``BatchState`` -> :class:`DenseBatch`) of an actor's kind."""
    cfg = actor.config
    if isinstance(cfg, GRLEPaperConfig):
        return lambda s: encode_paper_slot_batch(s, cfg)
    if isinstance(cfg, GRLEConfig):  # GRLE+ and the edge MLP share GRLE+'s encoder
        return lambda s: DenseBatch(*encode_slot_batch(s, cfg))
    return lambda s: DenseBatch(*encode_channel_batch(s, cfg))


# ---------------------------------------------------------------------------------------------
# The lockstep learner
# ---------------------------------------------------------------------------------------------
class BatchStep(NamedTuple):
    """What one lockstep slot produced, one entry per run."""

    decisions: np.ndarray  # (K, M) int, the actions taken (best candidates)
    q: np.ndarray  # (K,) their scores
    best_index: np.ndarray  # (K,) index of the winning candidate (0 = actor's argmax)
    loss: np.ndarray | None  # (K,) eq. (16) losses if the actors trained this slot


class BatchLearner:
    """Algorithm 1 for K runs in lockstep (see the module docstring).

    Args:
        actors: K actors of one architecture (their ``forward`` takes the dense tensors with
            leading axes and returns x̂ of shape (..., M, O)); their weights are copied, stacked
            and trained here (:meth:`unstack` writes them back).
        config: hyper-parameters, shared by the runs.
        seeds: one per run, seeds the run's replay sampling exactly as ``Learner(seed=)`` does.
        train_chunk: runs per forward/backward pass in :meth:`train_step` (speed only).
    """

    def __init__(
        self,
        actors: Sequence[nn.Module],
        config: LearnerConfig,
        seeds: Sequence[int],
        *,
        train_chunk: int = 4,
    ) -> None:
        if len(actors) != len(seeds) or not actors:
            raise ValueError(
                f"pass one seed per actor; got {len(actors)} actors, {len(seeds)} seeds."
            )
        self.config = config
        self.num_runs = len(actors)
        named = [dict(a.named_parameters()) for a in actors]
        self.params = {
            name: torch.stack([n[name].detach() for n in named]).requires_grad_(True)
            for name in named[0]
        }
        self._actor = actors[0]  # evaluates the stacked weights (its own are not used)
        self.optimizer = torch.optim.Adam(self.params.values(), lr=config.lr)
        self._rngs = [np.random.default_rng(s) for s in seeds]
        self._store: list[torch.Tensor] | None = None  # observation tensors (K, capacity, ...)
        self._mask: torch.Tensor | None = None  # (K, capacity, M, O) bool
        self._decision: torch.Tensor | None = None  # (K, capacity, M) int64
        self.slot = 0
        self.train_chunk = train_chunk

    # ----------------------------------------------------------------------------- acting
    def relaxed(self, obs: DenseBatch) -> np.ndarray:
        """The K actors' x̂, (K, M, O) float64."""
        with torch.inference_mode():
            return self._actor(*obs.tensors, params=self.params).double().numpy()

    def decide(self, obs: DenseBatch, score: BatchScoreFn) -> BatchStep:
        """Best of each run's quantised candidates (eq. 15), without learning."""
        cands = quantise(self.relaxed(obs), obs.mask, self.config.num_candidates)
        q = np.asarray(score(cands), dtype=np.float64)
        best = q.argmax(axis=1)
        runs = np.arange(self.num_runs)
        return BatchStep(cands[runs, best], q[runs, best], best, None)

    def step(self, obs: DenseBatch, score: BatchScoreFn) -> BatchStep:
        """One lockstep slot of Algorithm 1 with learning."""
        result = self.decide(obs, score)
        self._remember(obs, result.decisions)
        self.slot += 1
        if self.slot % self.config.train_interval == 0:
            return result._replace(loss=self.train_step())
        return result

    # ----------------------------------------------------------------------------- memory
    def _remember(self, obs: DenseBatch, decisions: np.ndarray) -> None:
        cap = self.config.memory_size
        if self._store is None:
            k = self.num_runs
            self._store = [torch.zeros((k, cap, *t.shape[1:]), dtype=t.dtype) for t in obs.tensors]
            self._mask = torch.zeros((k, cap, *obs.mask.shape[1:]), dtype=torch.bool)
            self._decision = torch.zeros((k, cap, decisions.shape[1]), dtype=torch.int64)
        pos = self.slot % cap  # the ring buffer writes where ReplayMemory would
        for store, t in zip(self._store, obs.tensors, strict=True):
            if store.shape[2:] != t.shape[1:]:
                raise ValueError(
                    "observation shapes changed between slots; lockstep runs need a fixed M "
                    "(use the one-run Learner for a dynamic topology)."
                )
            store[:, pos] = t
        self._mask[:, pos] = torch.from_numpy(obs.mask)
        self._decision[:, pos] = torch.from_numpy(np.asarray(decisions, dtype=np.int64))

    def train_step(self) -> np.ndarray:
        """One Adam step of every run on its own mini-batch (eq. 16); returns the (K,) losses."""
        stored = min(self.slot, self.config.memory_size)  # entries in every replay memory
        if stored == 0:
            raise ValueError("the replay memory is empty; step() before train_step().")
        size = min(self.config.batch_size, stored)
        idx = torch.from_numpy(
            np.stack([rng.choice(stored, size=size, replace=False) for rng in self._rngs])
        )
        if self.config.fresh_optimiser:  # K fresh Adams, as the one-run Learner's option
            self.optimizer = torch.optim.Adam(self.params.values(), lr=self.config.lr)
        self.optimizer.zero_grad(set_to_none=True)
        losses = np.empty(self.num_runs)
        # a few runs at a time: the activations of all K runs' mini-batches at once outgrow the
        # caches and make the step memory-bound; the gradients accumulate into the stacked weights
        for lo in range(0, self.num_runs, self.train_chunk):
            hi = min(lo + self.train_chunk, self.num_runs)
            runs = torch.arange(lo, hi)[:, None]
            tensors = [s[runs, idx[lo:hi]] for s in self._store]  # (k, B, ...)
            mask = self._mask[runs, idx[lo:hi]]  # (k, B, M, O)
            decision = self._decision[runs, idx[lo:hi]]  # (k, B, M)
            params = {n: p[lo:hi] for n, p in self.params.items()}
            probs = self._actor(*tensors, params=params)
            target = torch.zeros(mask.shape, dtype=probs.dtype)
            target.scatter_(3, decision.unsqueeze(3), 1.0)
            weight = mask.to(probs.dtype)
            bce = nn.functional.binary_cross_entropy(probs, target, weight=weight, reduction="none")
            # eq. (16) per run: mean over the valid (device, option) pairs of its mini-batch
            chunk = bce.sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3))
            chunk.sum().backward()
            losses[lo:hi] = chunk.detach().double().numpy()
        if self.config.grad_clip_norm is not None:
            self._clip_per_run(self.config.grad_clip_norm)
        self.optimizer.step()
        return losses

    def _clip_per_run(self, max_norm: float) -> None:
        """Scale each run's gradient to at most ``max_norm`` (L2 over all its weights), as
        ``clip_grad_norm_`` does for one run."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (K,)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.reshape(-1, *([1] * (g.ndim - 1))))

    def unstack(self, actors: Sequence[nn.Module]) -> None:
        """Copy the trained weights back into the K actor modules (to save or reuse them)."""
        with torch.no_grad():
            for k, actor in enumerate(actors):
                for name, param in actor.named_parameters():
                    param.copy_(self.params[name][k])
