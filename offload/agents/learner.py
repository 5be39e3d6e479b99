"""The learner shared by GRLE, GRL, DROOE and DROO: Algorithm 1 of the paper, for K runs at
once (one run is K = 1).

Each time slot an *actor* maps an observation to a relaxed decision x̂ ∈ (0, 1)^(M×O), one
value per (device, option) pair (eq. 14). The *critic* quantises x̂ into S one-option-per-device
candidates (:func:`~offload.agents.quantise.quantise`), scores them with a plain function
supplied by the caller and acts with the best one (eq. 15). The pair (observation, best
decision) goes into a :class:`ReplayMemory` and every ω slots a mini-batch trains the actor with
the cross-entropy of eq. (16).

K independent runs (scenario, τ, seed) of one actor architecture step together: the K actors'
weights are stacked along a leading axis and evaluated in one pass (the actor's ``forward(...,
params=stacked)``: each linear layer is one batched matmul), the K relaxed decisions are
quantised at once, the caller scores all candidates of all runs in one call, and one backward
pass trains the K actors: the runs share no parameter, so the gradient of the summed losses is
each run's own gradient, and Adam (element-wise) on the stacked tensors is K independent Adams.
Per run stay the replay sampling generator and the loss. With one actor the stacked weights are
views of the actor's own parameters (training updates the module in place); with K they are
copies, written back by :meth:`Learner.unstack`.

The learner knows nothing about the MEC simulator: it sees an :class:`ActorInput` (the actor's
input tensors with a leading run axis and the option mask (K, M, O)) and a scoring function
``score(candidates (K, S, M) int) -> (K, S)``. It therefore runs unchanged on DROO's binary
offloading problem (O = 2: local or offload), which the tests use as a cross-check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import torch
from torch import nn

from offload.agents.quantise import first_occurrences, quantise

__all__ = [
    "Actor",
    "ActorInput",
    "DROO_PUBLISHED",
    "Learner",
    "LearnerConfig",
    "ReplayMemory",
    "ScoreFn",
    "Step",
    "first_occurrences",
    "quantise",
]

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Scores the candidates of K runs: int (K, S, M) -> float (K, S) (higher is better, -inf
infeasible)."""


class Actor(Protocol):
    """What the learner needs from an actor network (an ``nn.Module``): x̂ (K, M, O) of K
    runs from its encoder's tensors, with the runs' weights stacked in ``params`` (names as in
    ``named_parameters``), or with its own weights when ``params`` is None."""

    def __call__(
        self, *tensors: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor: ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...


class ActorInput(NamedTuple):
    """What an actor reads for K slots: its ``forward``'s input tensors (leading axis K), the
    option mask, and where each tensor's device axis lies (for replay entries of different M)."""

    tensors: tuple[torch.Tensor, ...]  # the forward's positional inputs, each (K, ...)
    mask: np.ndarray  # (K, M, O) bool: device m may take option o
    device_axes: tuple[int | None, ...]  # per tensor, its device axis after K (None: none)


@dataclass(frozen=True, kw_only=True)
class LearnerConfig:
    """Hyper-parameters of Algorithm 1 (defaults: Section VI-A of the paper)."""

    memory_size: int = 128  # replay memory capacity, entries
    batch_size: int = 64  # mini-batch size |Δ_k|
    train_interval: int = 10  # ω: train every ω slots
    lr: float = 1e-3  # Adam learning rate
    num_candidates: int | None = None  # S; None = M·O (the paper's M·N·L)
    # Stability options (docs/offload-agents.md, "DROO's hyper-parameters"); the defaults are
    # the learner of the committed results: one Adam whose moments carry over all steps.
    fresh_optimiser: bool = False  # True: a new Adam every training step, as DROO's code does
    grad_clip_norm: float | None = None  # clip each run's gradient to this L2 norm (None: off)


#: DROO's published hyper-parameters (Huang, Bi, Zhang 2020; /work/shared/REFERENCES.md):
#: lr 0.01, replay memory 1024, mini-batch 128, training every 10 frames
DROO_PUBLISHED = LearnerConfig(memory_size=1024, batch_size=128, train_interval=10, lr=0.01)


class Step(NamedTuple):
    """What one slot of Algorithm 1 produced, one entry per run."""

    decisions: np.ndarray  # (K, M) int, the actions taken (best candidates)
    q: np.ndarray  # (K,) their scores
    best_index: np.ndarray  # (K,) index of the winning candidate (0 = actor's argmax)
    loss: np.ndarray | None  # (K,) eq. (16) losses if the actors trained this slot


class ReplayMemory:
    """A ring buffer of (observation, option mask, best decision) per run, the oldest entry
    overwritten first: tensors (K, capacity, ...). Entries of fewer devices than the widest
    stored are zero-padded along their device axes (mask False: padding never trains).

    Args:
        num_runs: K.
        capacity: entries kept per run (the paper: 128).
        seeds: one per run, seeds the generator that draws that run's mini-batches.
    """

    def __init__(self, num_runs: int, capacity: int, seeds: Sequence[int]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}.")
        if len(seeds) != num_runs:
            raise ValueError(f"pass one seed per run; got {len(seeds)} for {num_runs} runs.")
        self.capacity = capacity
        self.added = 0  # entries added per run so far
        self._rngs = [np.random.default_rng(s) for s in seeds]
        self._store: list[torch.Tensor] = []  # (K, capacity, ...) per input tensor
        self._axes: tuple[int | None, ...] = ()
        self._mask = torch.zeros(0, dtype=torch.bool)  # (K, capacity, M, O)
        self._decision = torch.zeros(0, dtype=torch.int64)  # (K, capacity, M)

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    def add(self, obs: ActorInput, decisions: np.ndarray) -> None:
        """Store one entry per run (``decisions`` (K, M) int), overwriting the oldest."""
        tensors = [*obs.tensors, torch.from_numpy(obs.mask), torch.from_numpy(decisions)]
        axes = (*obs.device_axes, 0, 0)
        if not self._store:
            num_runs = obs.mask.shape[0]
            self._axes = axes
            self._store = [
                torch.zeros((num_runs, self.capacity, *t.shape[1:]), dtype=t.dtype) for t in tensors
            ]
        for i, (t, axis) in enumerate(zip(tensors, axes, strict=True)):
            have = self._store[i]
            if axis is not None and t.shape[1 + axis] != have.shape[2 + axis]:
                width = max(t.shape[1 + axis], have.shape[2 + axis])
                self._store[i] = have = _padded(have, 2 + axis, width)
                t = _padded(t, 1 + axis, width)
            if have.shape[2:] != t.shape[1:]:
                raise ValueError(
                    f"replay entry {i} has shape {tuple(t.shape[1:])} but the memory holds "
                    f"{tuple(have.shape[2:])}; entries may differ only in M."
                )
            have[:, self.added % self.capacity] = t
        self.added += 1

    def sample(self, batch_size: int) -> torch.Tensor:
        """(K, B) int64 positions, B = min(batch_size, len), drawn per run uniformly without
        replacement from that run's generator."""
        stored = len(self)
        if stored == 0:
            raise ValueError("the replay memory is empty; add() entries before sample().")
        size = min(batch_size, stored)
        return torch.from_numpy(
            np.stack([rng.choice(stored, size=size, replace=False) for rng in self._rngs])
        )

    def entries(self, runs: slice, index: torch.Tensor) -> tuple[list[torch.Tensor], ...]:
        """(input tensors, mask, decisions) of runs ``runs`` at positions ``index`` (k, B)."""
        rows = torch.arange(runs.start, runs.stop)[:, None]
        picked = [s[rows, index] for s in self._store]
        return picked[:-2], picked[-2], picked[-1]


def _padded(t: torch.Tensor, axis: int, width: int) -> torch.Tensor:
    """``t`` zero-padded (False for bool) along ``axis`` to ``width``."""
    extra = width - t.shape[axis]
    if extra <= 0:
        return t
    pad = torch.zeros((*t.shape[:axis], extra, *t.shape[axis + 1 :]), dtype=t.dtype)
    return torch.cat([t, pad], dim=axis)


class Learner:
    """Algorithm 1 for K runs: relax → quantise → score → act → remember → train every ω slots.

    Args:
        actors: K actors of one architecture (their ``forward`` takes the input tensors with a
            leading run axis and ``params``, and returns x̂ of shape (K, M, O)).
        config: hyper-parameters, shared by the runs.
        seeds: one per run, seeds the run's replay sampling.
        train_chunk: runs per forward/backward pass in :meth:`train_step` (speed only: all K
            runs' mini-batches at once outgrow the caches).
    """

    def __init__(
        self,
        actors: Sequence[Actor],
        config: LearnerConfig = LearnerConfig(),
        seeds: Sequence[int] = (0,),
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
        if len(actors) == 1:  # views: the module trains in place
            stacked = {n: p.detach().unsqueeze(0) for n, p in named[0].items()}
        else:
            stacked = {n: torch.stack([m[n].detach() for m in named]) for n in named[0]}
        self.params = {n: p.requires_grad_(True) for n, p in stacked.items()}
        self.actors = list(actors)
        self.optimizer = torch.optim.Adam(self.params.values(), lr=config.lr)
        self.memory = ReplayMemory(self.num_runs, config.memory_size, seeds)
        self.train_chunk = train_chunk
        self.slot = 0  # slots seen while learning
        self.train_steps = 0  # Adam steps taken

    # ----------------------------------------------------------------------------- acting
    def relaxed(self, obs: ActorInput) -> np.ndarray:
        """The K actors' x̂, (K, M, O) float64. One actor is evaluated with its own parameters
        (the stacked weights are views of them): the same bits, less per-call overhead."""
        with torch.inference_mode():
            actor = self.actors[0]  # .forward: no module hooks are used, skip their overhead
            if self.num_runs == 1:
                return actor.forward(*(t[0] for t in obs.tensors))[None].double().numpy()
            return actor.forward(*obs.tensors, params=self.params).double().numpy()

    def decide(self, obs: ActorInput, score: ScoreFn, *, num_candidates: int | None = None) -> Step:
        """Best of each run's quantised candidates (eq. 15), without learning;
        ``num_candidates`` overrides the configured S for this call (the ablations' S)."""
        s = self.config.num_candidates if num_candidates is None else num_candidates
        cands = quantise(self.relaxed(obs), obs.mask, s)
        q = np.asarray(score(cands), dtype=np.float64)
        best = q.argmax(axis=1)
        runs = np.arange(self.num_runs)
        return Step(cands[runs, best], q[runs, best], best, None)

    def step(self, obs: ActorInput, score: ScoreFn) -> Step:
        """One slot of Algorithm 1 with learning."""
        result = self.decide(obs, score)
        self.memory.add(obs, np.asarray(result.decisions, dtype=np.int64))
        self.slot += 1
        if self.slot % self.config.train_interval == 0:
            return result._replace(loss=self.train_step())
        return result

    # ----------------------------------------------------------------------------- training
    def train_step(self) -> np.ndarray:
        """One Adam step of every run on its own mini-batch (eq. 16); returns the (K,) losses."""
        index = self.memory.sample(self.config.batch_size)
        if self.config.fresh_optimiser:  # DROO's remedy: no moment estimates carry over
            self.optimizer = torch.optim.Adam(self.params.values(), lr=self.config.lr)
        self.optimizer.zero_grad(set_to_none=True)
        losses = np.empty(self.num_runs)
        for lo in range(0, self.num_runs, self.train_chunk):
            hi = min(lo + self.train_chunk, self.num_runs)
            tensors, mask, decision = self.memory.entries(slice(lo, hi), index[lo:hi])
            params = {n: p[lo:hi] for n, p in self.params.items()}
            probs = self.actors[0](*tensors, params=params)  # (k, B, M, O)
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
        self.train_steps += 1
        return losses

    def _clip_per_run(self, max_norm: float) -> None:
        """Scale each run's gradient to at most ``max_norm`` (L2 over all its weights)."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (K,)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.reshape(-1, *([1] * (g.ndim - 1))))

    def unstack(self) -> None:
        """Copy the trained weights back into the K actor modules (a no-op for one actor,
        whose parameters the stacked weights are views of)."""
        if self.num_runs == 1:
            return
        with torch.no_grad():
            for k, actor in enumerate(self.actors):
                for name, param in actor.named_parameters():
                    param.copy_(self.params[name][k])
