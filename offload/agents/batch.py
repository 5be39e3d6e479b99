"""Algorithm 1 for K independent runs in lockstep: K actors, one batched call per slot.

The experiments of Figs. 5–8 are many independent runs (scenario, τ, seed) of the same agent type
at the same M. Run one by one, each slot costs ~1 ms of Python and framework overhead for a few
microseconds of arithmetic. :class:`BatchLearner` holds the K actors' weights stacked along a
leading axis and evaluates them in one pass (the actor's ``forward(..., params=stacked)``: each
layer is one batched matmul), quantises the K relaxed decisions at once (:func:`quantise_batch`,
equal to :func:`~offload.agents.learner.quantise` row by row), lets the caller score all candidates of all runs in one call, and trains the K actors
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

from offload.agents.droo import DROOConfig, device_rows
from offload.agents.grle import EDGE_FEATURES, GRLEConfig, psi
from offload.agents.grle_paper import GRLEPaperConfig, encode_paper_batch
from offload.agents.learner import LearnerConfig, first_occurrences

BatchScoreFn = Callable[[np.ndarray], np.ndarray]
"""Scores candidates of K runs: int (K, S, M) -> float (K, S) (higher is better, -inf infeasible)."""


class DenseBatch(NamedTuple):
    """K observations: the actor's input tensors (leading axis K) and the option mask."""

    tensors: tuple[torch.Tensor, ...]
    mask: np.ndarray  # (K, M, O) bool


# ---------------------------------------------------------------------------------------------
# Quantiser
# ---------------------------------------------------------------------------------------------
def quantise_batch(
    relaxed: np.ndarray,
    mask: np.ndarray,
    num_candidates: int | None = None,
    *,
    distinct: bool = True,
) -> np.ndarray:
    """:func:`~offload.agents.learner.quantise` for K runs at once.

    Args:
        relaxed: (K, M, O) float, the actors' x̂.
        mask: (K, M, O) bool, valid (device, option) pairs.
        num_candidates: S; default M·O.
        distinct: as in :func:`~offload.agents.learner.quantise`: each run keeps the first
            occurrence of each decision among its first S entries.

    Returns:
        (K, S', M) int64, S' the longest run's list (at most min(S, 1 + 2·P), P the largest
        number of non-argmax valid pairs of a run). Row k starts with
        ``quantise(relaxed[k], mask[k], S, distinct=distinct)``; a shorter list is padded with
        copies of its candidate 0, which change neither the best score nor the index of the
        first best candidate.

    Raises:
        ValueError: if shapes differ or a device has no valid option.
    """
    relaxed = np.asarray(relaxed, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if relaxed.shape != mask.shape or relaxed.ndim != 3:
        raise ValueError(
            f"relaxed {relaxed.shape} and mask {mask.shape} must both be (K, M, O); pass one "
            "(M, O) block per run."
        )
    num_runs, num_devices, num_options = relaxed.shape
    if num_devices == 0:
        return np.zeros((num_runs, 1, 0), dtype=np.int64)
    if not mask.any(axis=2).all():
        k, m = np.argwhere(~mask.any(axis=2))[0]
        raise ValueError(
            f"device {m} of run {k} has no valid option; drop it from the slot before deciding."
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
    out = np.repeat(cands[:, :1], int(count.max()), axis=1)  # pad with candidate 0
    run_of, _ = np.nonzero(keep)
    out[run_of, (np.cumsum(keep, axis=1) - 1)[keep]] = cands[keep]
    return out


# ---------------------------------------------------------------------------------------------
# Encoders (the batched counterparts of encode_slot and encode_channel)
# ---------------------------------------------------------------------------------------------
def option_mask_batch(state: Any, *, main_branch_only: bool = False) -> np.ndarray:
    """(K, M, N·L) bool: run k's device m may take option o = n·L + l."""
    num_exits = state.exit_accuracy.shape[0]
    mask = np.repeat(np.asarray(state.link, dtype=bool), num_exits, axis=2)
    if main_branch_only:
        mask[:, :, np.arange(mask.shape[2]) % num_exits != num_exits - 1] = False
    return mask


def encode_slot_batch(state: Any, config: GRLEConfig = GRLEConfig()) -> DenseBatch:
    """The dense slot graphs of K runs (``BatchState`` fields with a leading K axis); run k's
    tensors equal those :func:`~offload.agents.grle.encode_slot` builds for ``state.slot(k)``."""
    mask = option_mask_batch(state, main_branch_only=config.main_branch_only)
    num_runs, num_devices, num_options = mask.shape
    num_exits = state.exit_accuracy.shape[0]
    ts = config.time_scale_ms
    n_of_o = np.arange(num_options) // num_exits
    l_of_o = np.arange(num_options) % num_exits

    bits = np.asarray(state.task_bits, dtype=np.float64)  # (K, M)
    deadline = np.asarray(state.deadline_ms, dtype=np.float64)
    dev_backlog = np.asarray(state.device_backlog_ms, dtype=np.float64)
    capacity = np.asarray(state.capacity, dtype=np.float64)  # (K, N)
    exit_ms = np.asarray(state.exit_ms, dtype=np.float64)  # (K, N, L)
    t_cmp = exit_ms / capacity[:, :, None]  # eq. (4)
    srv_backlog = np.asarray(state.server_backlog_ms, dtype=np.float64)  # (K, N)
    acc = np.asarray(state.exit_accuracy, dtype=np.float64)  # (L,)
    adj = mask.astype(np.float64)
    deg_dev = adj.sum(axis=2)  # (K, M)
    deg_exit = adj.sum(axis=1)  # (K, O)

    x_device = np.stack(
        [bits / 1e6, deadline / ts, dev_backlog / deadline, deg_dev / max(num_options, 1)],
        axis=2,
    )
    x_exit = np.stack(
        [
            np.broadcast_to(acc[l_of_o], (num_runs, num_options)),
            t_cmp[:, n_of_o, l_of_o] / ts,
            exit_ms[:, n_of_o, l_of_o] / ts,
            srv_backlog[:, n_of_o] / ts,
            capacity[:, n_of_o],
            deg_exit / max(num_devices, 1),
            np.full((num_runs, num_options), num_devices / 10.0),
        ],
        axis=2,
    )
    # edge features for every (m, o) pair, zeroed off the edges
    rate = np.asarray(state.rate_mbps, dtype=np.float64)[:, :, n_of_o]  # (K, M, O)
    dl = deadline[:, :, None]
    t_com = bits[:, :, None] / (rate * 1e3)  # eq. (1)
    t_arr = dev_backlog[:, :, None] + t_com  # eq. (6)
    t_done = np.maximum(t_arr, srv_backlog[:, None, n_of_o]) + t_cmp[:, None, n_of_o, l_of_o]
    dense_attr = np.stack(
        [
            rate / config.rate_scale_mbps,
            t_com / dl,
            np.minimum(t_arr / dl, 5.0),
            np.minimum(t_done / dl, 5.0),
            acc[l_of_o] * psi(t_done, dl),
            (t_done <= dl).astype(np.float64),
        ],
        axis=3,
    )
    dense_attr = np.where(mask[..., None], dense_attr, 0.0)
    deg_dev1 = np.maximum(deg_dev, 1.0)[:, :, None]
    deg_exit1 = np.maximum(deg_exit, 1.0)[:, :, None]
    f32 = np.float32

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=f32))

    tensors = (
        t(x_device),
        t(x_exit),
        t(adj / deg_dev1),  # adj_device (K, M, O)
        t((adj / deg_exit1.transpose(0, 2, 1)).transpose(0, 2, 1)),  # adj_exit (K, O, M)
        t(dense_attr.sum(axis=2) / deg_dev1),  # edge_mean_device (K, M, F)
        t(dense_attr.sum(axis=1) / deg_exit1),  # edge_mean_exit (K, O, F)
        t(dense_attr),  # edge_attr_dense (K, M, O, F)
        t(adj),  # edge_mask (K, M, O)
    )
    assert tensors[6].shape[-1] == EDGE_FEATURES
    return DenseBatch(tensors, mask)


def encode_channel_batch(state: Any, config: DROOConfig) -> DenseBatch:
    """The DROO input of K runs: scaled rates (K, M·N), 0 where a link is down."""
    rate = np.asarray(state.rate_mbps, dtype=np.float64)
    link = np.asarray(state.link, dtype=bool)
    mask = option_mask_batch(state, main_branch_only=config.main_branch_only)
    num_runs, num_devices, num_servers = rate.shape
    if config.max_devices is not None and num_servers == config.num_servers:
        # padded actor: the runs' devices 0..M-1 fill input rows 0..M-1, the rest stay 0
        rows = device_rows(np.arange(num_devices), config)
        x = np.zeros((num_runs, config.max_devices, num_servers))
        x[:, :num_devices] = np.where(link, rate, 0.0) / config.rate_scale_mbps
        rows_t = torch.from_numpy(np.broadcast_to(rows, (num_runs, num_devices)).copy())
        x_t = torch.from_numpy(x.reshape(num_runs, -1).astype(np.float32))
        return DenseBatch((x_t, rows_t), mask)
    if rate.shape[1:] != (config.num_devices, config.num_servers):
        raise ValueError(
            f"this DROO actor was built for {config.num_devices} devices and {config.num_servers} "
            f"servers but the slots have {rate.shape[1]} and {rate.shape[2]}; DROO's input size "
            "is fixed, so build and train a new actor for this size (or use GRLE)."
        )
    x = np.where(link, rate, 0.0).reshape(rate.shape[0], -1) / config.rate_scale_mbps
    return DenseBatch((torch.from_numpy(x.astype(np.float32)),), mask)


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
        return lambda s: encode_slot_batch(s, cfg)
    return lambda s: encode_channel_batch(s, cfg)


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
        cands = quantise_batch(self.relaxed(obs), obs.mask, self.config.num_candidates)
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
