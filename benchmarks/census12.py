"""Census for issue 12: do the one-run and the K-run learners compute the same float32 numbers?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/census12.py

Issue 12 wants one learner for one run or K runs stepped together. Today the one-run engine
(``offload.agents.learner``: ``Learner``, ``ReplayMemory``, ``quantise``; the one-slot encoders
``grle.encode_slot``, ``droo.encode_channel``) and the lockstep engine (``offload.agents.batch``:
``BatchLearner``, ``quantise_batch``, ``encode_slot_batch``, ``encode_channel_batch``) are separate
code. Whether the K-run code can replace the one-run code without moving any committed number
depends on whether it computes the same bits, so this script measures, bit for bit (float32 and
float64 compared by their bytes, max |Δ| in float64):

- C1: one linear layer, ``F.linear(x, W, b)`` (one run: ``nn.Linear`` / ``stacked_linear`` with a
  2-D weight) against the stacked form of ``grle.stacked_linear`` (``baddbmm``/``bmm`` with a
  leading K axis) at K = 1 and for every item k of K = 8/24/40 stacks of different weights and
  inputs, for every Linear layer of the GRLE+, GRLE-MLP and DROO(E) actors (the real weight
  shapes, read off the actors; inputs laid out as the actors lay them out: GRLE+'s MLP₁ is applied
  by column blocks of its weight, a non-contiguous slice) at M = 4, 10, 14 (N = 2, L = 5), for a
  decision (batch 1) and a training mini-batch (B = 64). Inputs are random (the arithmetic path,
  not the values, decides bitwise equality).
- C2: ``Learner.train_step`` against ``BatchLearner.train_step`` with K = 1, both built as the
  experiments build them (``make_agent(seed=...)``; the runner's ``Learner``, the lockstep's
  ``BatchLearner([actor], config, [seed])``) and filled with the *same* 100 replay entries (the
  one-run encoding and the one-run learner's decisions on recorded slots, pushed into both
  memories): the loss and every ``.grad`` after one step, the parameters after 20 steps, for
  GRLE+, DROO and GRLE (the paper actor).
- C3: the one-slot encoders against the batched ones on 300 recorded slot states (M = 10,
  scenario 4, compute_scale 4.0) stacked as one ``BatchState`` of K = 300 and one by one
  (``BatchState.of``), and on 100 states of a dynamic topology (devices leave and rejoin, links go
  down) one by one; the paper actor's encoders are compared too.
- C4: GRLE+'s edge feature φ·ψ(t) is built with ``grle.psi`` = 1 − 1/(1 + exp(−5t/δ)); the
  simulator's ψ of eq. (9) is ``offload.sim.reward.psi`` = e/(1 + e), e = exp(−5t/δ). On the C3
  states: the share of edges whose float32 feature differs between the two forms, and the max |Δ|.
- C5: the decisions of the learning decision path, one run (``agent.learn`` / ``agent.act``, as
  ``runner.train`` / ``runner.critic_policy`` call them) against ``BatchLearner`` with K = 1
  (``step`` / ``decide`` with the batched encoder and ``batch_score``, as ``lockstep`` calls them)
  on 300 recorded slots: frozen decisions for the same weights (fresh and after the one-run
  learning pass), and the online learning pass (training every ω = 10 slots) where the weights
  are the same only as long as the training steps are.

Recorded slots come from ``OffloadEnv`` driven by a seeded random valid decision per device
(open loop: the learners see the same slots whatever they decide). One CPU thread.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from offload.agents import make_agent
from offload.agents.batch import (
    BatchLearner,
    DenseBatch,
    batch_encoder,
    encode_channel_batch,
    encode_paper_slot_batch,
    encode_slot_batch,
)
from offload.agents.droo import ChannelObs, DROOActor, DROOConfig, encode_channel
from offload.agents.edge_mlp import EdgeMLPActor
from offload.agents.grle import (
    _DENSE_FIELDS,
    GRLEActor,
    GRLEConfig,
    SlotGraph,
    encode_slot,
    option_mask,
    stacked_linear,
)
from offload.agents.grle import psi as grle_psi
from offload.agents.grle_paper import PaperGraph, encode_paper_slot
from offload.agents.learner import Experience
from offload.exit_table import load_exit_table
from offload.sim import BatchState, MECConfig, OffloadEnv, score_decisions
from offload.sim.batch import batch_score
from offload.sim.reward import psi as sim_psi

TABLE = "checkpoints/paper_table1.csv"
NUM_SERVERS = 2
DEVICES = (4, 10, 14)  # M of C1
STACKS = (8, 24, 40)  # K of C1's multi-run stacks
TRAIN_BATCH = 64  # B, LearnerConfig.batch_size
CENSUS_M = 10  # M of C2, C3, C5
PAPER_FIELDS = ("x_device", "x_exit", "edge_mask")


# ---------------------------------------------------------------------------------- helpers
def compare(a: Any, b: Any) -> tuple[bool, float]:
    """(bitwise equal, max |a − b|) of two tensors or arrays (shape, dtype and bytes)."""
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    if a.shape != b.shape:
        return False, float("inf")
    same = a.dtype == b.dtype and np.ascontiguousarray(a).tobytes() == (
        np.ascontiguousarray(b).tobytes()
    )
    if a.size == 0:
        return same, 0.0
    delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return same, float(np.nanmax(delta)) if not np.all(np.isnan(delta)) else 0.0


class Tally:
    """Accumulates comparisons: all equal, max |Δ|, and counts per label."""

    def __init__(self) -> None:
        self.equal = True
        self.max_abs = 0.0
        self.total: Counter[str] = Counter()
        self.same: Counter[str] = Counter()

    def add(self, label: str, a: Any, b: Any) -> bool:
        same, delta = compare(a, b)
        self.equal &= same
        self.max_abs = max(self.max_abs, delta)
        self.total[label] += 1
        self.same[label] += same
        return same

    def count(self, label: str) -> str:
        return f"{self.same[label]}/{self.total[label]}"

    def differing(self) -> list[str]:
        return [k for k in self.total if self.same[k] < self.total[k]]


def fmt(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def report(n: int, what: str, equal: bool, max_abs: float, extra: str) -> None:
    print(
        f"C{n} {what}: bitwise equal: {'yes' if equal else 'no'}; max |Δ| = {fmt(max_abs)}; {extra}"
    )


def record_states(table: Any, cfg: MECConfig, slots: int, seed: int) -> list[Any]:
    """``slots`` consecutive slot states under a seeded random valid decision per device."""
    env = OffloadEnv(table, cfg)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(slots):
        state = env.slot_state
        states.append(state)
        mask = option_mask(state)
        env.step(np.array([rng.choice(np.flatnonzero(row)) for row in mask], dtype=np.int64))
    return states


# ---------------------------------------------------------------------------------- C1
def linear_layers(family: str, m: int, num_exits: int) -> list[tuple[str, Any]]:
    """(name, (weight (out, in_full), column slice, bias?, input trailing shape, DROO?)) of
    every linear map the actor applies, read off a freshly built actor."""
    o = NUM_SERVERS * num_exits
    if family == "GRLE+":
        p = dict(GRLEActor(GRLEConfig()).named_parameters())
        h2 = p["conv2.lin_device.weight"].shape[0]
        edge = p["mlp1.weight"].shape[1] - 2 * h2
        out = []
        for conv in ("conv1", "conv2"):
            for node, rows in (("device", m), ("exit", o)):
                w = p[f"{conv}.lin_{node}.weight"]
                out.append((f"{conv}.lin_{node}", (w.shape, slice(None), True, (rows, w.shape[1]))))
        w1 = p["mlp1.weight"].shape
        out += [
            ("mlp1[:, :h2]", (w1, slice(0, h2), False, (m, h2))),
            ("mlp1[:, h2:2h2]", (w1, slice(h2, 2 * h2), False, (o, h2))),
            ("mlp1[:, 2h2:]+b", (w1, slice(2 * h2, None), True, (m, o, edge))),
            ("mlp2", (p["mlp2.weight"].shape, slice(None), True, (m, o, w1[0]))),
        ]
        return out
    if family == "GRLE-MLP":
        p = dict(EdgeMLPActor(GRLEConfig()).named_parameters())
        return [
            (
                f"lin{i}",
                (
                    p[f"lin{i}.weight"].shape,
                    slice(None),
                    True,
                    (m, o, p[f"lin{i}.weight"].shape[1]),
                ),
            )
            for i in (1, 2, 3)
        ]
    out = []
    for label, main in (("DROOE", False), ("DROO", True)):
        actor = DROOActor(DROOConfig(m, NUM_SERVERS, num_exits, main_branch_only=main))
        for i, layer in enumerate(actor.net):
            if isinstance(layer, nn.Linear) and (label == "DROOE" or i == 4):
                w = layer.weight.shape
                out.append((f"{label} net.{i}", (w, slice(None), True, (w[1],))))
    return out


def c1_family(family: str, num_exits: int, gen: torch.Generator) -> None:
    tally = Tally()
    layers = Tally()  # per (layer, K=1 or K>1)
    bad: set[str] = set()
    for m in DEVICES:
        for name, (wshape, cols, has_bias, trailing) in linear_layers(family, m, num_exits):
            out_f, in_f = wshape
            bound = in_f**-0.5
            for phase in ("decide", "train"):
                # one run's leading axes: GRLE+/MLP decide one slot without a batch axis, DROO
                # with a batch of one; training stacks B slots (Learner.relaxed_batch)
                if phase == "train":
                    lead: tuple[int, ...] = (TRAIN_BATCH,)
                else:
                    lead = (1,) if family == "DROO" else ()
                for k_runs in (1, *STACKS):
                    w = (torch.rand((k_runs, out_f, in_f), generator=gen) * 2 - 1) * bound
                    b = (torch.rand((k_runs, out_f), generator=gen) * 2 - 1) * bound
                    x = torch.relu(torch.randn((k_runs, *lead, *trailing), generator=gen))
                    stacked = stacked_linear(x, w[..., cols], b if has_bias else None)
                    label = "K=1" if k_runs == 1 else "K>1"
                    for k in range(k_runs):
                        one = nn.functional.linear(x[k], w[k][:, cols], b[k] if has_bias else None)
                        same = tally.add(label, one, stacked[k])
                        layers.add(f"{name} {label}", one, stacked[k])
                        if not same:
                            bad.add(f"{phase} M={m}")
    shown = ", ".join(f"{key} {layers.count(key)} equal" for key in layers.differing())
    report(
        1,
        f"{family} actor, every Linear (F.linear vs stacked_linear bmm)",
        tally.equal,
        tally.max_abs,
        f"K=1 items equal {tally.count('K=1')}, K=8/24/40 items equal {tally.count('K>1')}"
        + (f"; differing layers: {shown} (in: {', '.join(sorted(bad))})" if bad else ""),
    )


# ---------------------------------------------------------------------------------- C2, C5
METHODS = (("GRLE+", None), ("DROO", None), ("GRLE", "grle_paper"))


def build(name: str, kind: str | None, seed: int, num_exits: int):
    return make_agent(
        name=name,
        actor=kind,
        num_exits=num_exits,
        num_devices=CENSUS_M,
        num_servers=NUM_SERVERS,
        seed=seed,
    )


def as_dense(obs: Any) -> DenseBatch:
    """A one-run observation as the lockstep learner's batch of one (same tensors)."""
    if isinstance(obs, SlotGraph):
        fields: Sequence[str] = _DENSE_FIELDS
    elif isinstance(obs, PaperGraph):
        fields = PAPER_FIELDS
    elif isinstance(obs, ChannelObs):
        fields = ("x",) if obs.rows is None else ("x", "rows")
    else:
        raise TypeError(type(obs))
    return DenseBatch(tuple(getattr(obs, f)[None] for f in fields), obs.mask[None])


def eq16_reductions(actor: nn.Module, items: list[Experience]) -> str:
    """The two engines' eq. (16) on the same x̂ (all stored entries): Learner's mean over the
    masked pairs vs BatchLearner's weighted sum / weight sum; loss and dL/dx̂ compared."""
    with torch.no_grad():
        probs = actor.relaxed_batch([e.obs for e in items])  # (ΣM, O)
    num_options = probs.shape[1]
    mask = torch.from_numpy(np.concatenate([e.mask for e in items]))
    decisions = torch.from_numpy(np.concatenate([e.decision for e in items]))
    target = torch.zeros(mask.shape, dtype=probs.dtype)
    target[torch.arange(len(decisions)), decisions] = 1.0
    p_one = probs.clone().requires_grad_(True)
    loss_one = nn.functional.binary_cross_entropy(p_one[mask], target[mask])
    loss_one.backward()
    shape = (1, len(items), -1, num_options)
    p_lock = probs.reshape(shape).clone().requires_grad_(True)
    weight = mask.reshape(shape).to(probs.dtype)
    bce = nn.functional.binary_cross_entropy(
        p_lock, target.reshape(shape), weight=weight, reduction="none"
    )
    loss_lock = (bce.sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3))).sum()
    loss_lock.backward()
    loss_same, _ = compare(loss_one.detach(), loss_lock.detach())
    grad_one, grad_lock = p_one.grad, p_lock.grad.reshape(probs.shape)
    grad_same, grad_delta = compare(grad_one, grad_lock)
    share = float((grad_one != grad_lock)[mask].double().mean())
    return (
        f"same x̂ of the {len(items)} stored slots through both eq. (16) reductions: loss equal "
        f"{'yes' if loss_same else 'no'}, dL/dx̂ equal {'yes' if grad_same else 'no'} "
        f"({100 * share:.1f}% of valid pairs differ, max |Δ| {fmt(grad_delta)})"
    )


def c2_method(name: str, kind: str | None, states: list[Any], num_exits: int) -> None:
    seed = 3
    one = build(name, kind, seed, num_exits)
    twin = build(name, kind, seed, num_exits)  # the lockstep's copy of the same initial actor
    learner = one.learner
    lock = BatchLearner([twin.actor], twin.learner.config, [seed])
    init = Tally()
    for pname, p in one.actor.named_parameters():
        init.add("init", p, lock.params[pname][0])
    assert init.equal, "make_agent(seed) built different initial weights"
    # the same 100 replay entries in both memories: the one-run encoding and decision
    for state in states:
        obs = one.encode(state)
        decision = learner.decide(obs, obs.mask, lambda c, s=state: score_decisions(s, c)).decision
        learner.memory.add(Experience(obs, np.asarray(obs.mask, dtype=bool), decision))
        lock._remember(as_dense(obs), decision[None])  # BatchLearner.step's memory write
        lock.slot += 1
    reduction = eq16_reductions(one.actor, learner.memory.items())
    losses = Tally()
    first_loss = (False, 0.0)
    grads = Tally()
    params = Tally()
    first_param_diff = None
    for step in range(1, 21):
        loss_one = np.float32(learner.train_step())
        loss_lock = np.float32(lock.train_step()[0])
        losses.add("loss" if step == 1 else "later", loss_one, loss_lock)
        if step == 1:
            first_loss = compare(loss_one, loss_lock)
            for pname, p in one.actor.named_parameters():
                grads.add(pname, p.grad, lock.params[pname].grad[0])
        step_params = Tally()
        for pname, p in one.actor.named_parameters():
            step_params.add(pname, p, lock.params[pname][0])
        if first_param_diff is None and not step_params.equal:
            first_param_diff = step
        if step == 20:
            params = step_params
    report(
        2,
        f"{name} loss, step 1 (Learner vs BatchLearner K=1)",
        *first_loss,
        f"steps 2-20 losses equal {losses.count('later')} (max |Δ| over 20 steps "
        f"{fmt(losses.max_abs)})",
    )
    report(
        2,
        f"{name} every .grad, step 1",
        grads.equal,
        grads.max_abs,
        f"{sum(grads.same.values())}/{len(grads.total)} parameter grads equal"
        + (
            f" ({', '.join(k for k in grads.total if k not in grads.differing())})"
            if len(grads.differing()) < len(grads.total)
            else ""
        )
        + f"; {reduction}",
    )
    report(
        2,
        f"{name} parameters after 20 steps",
        params.equal,
        params.max_abs,
        f"{sum(params.same.values())}/{len(params.total)} tensors equal; params first differ "
        f"after step {first_param_diff if first_param_diff else '- (never)'}",
    )


def c5_method(name: str, kind: str | None, states: list[Any], num_exits: int) -> None:
    seed = 5

    def frozen(one_agent: Any, lock: BatchLearner) -> tuple[int, float]:
        encode = batch_encoder(lock._actor)
        differ, relax = 0, 0.0
        for state in states:
            a = one_agent.act(state, lambda c, s=state: score_decisions(s, c)).decision
            bs = BatchState.of(state)
            obs = encode(bs)
            b = lock.decide(obs, lambda c, s=bs: batch_score(s, c)).decisions[0]
            differ += not np.array_equal(a, b)
            x_one = one_agent.learner.relaxed(one_agent.encode(state))
            relax = max(relax, compare(x_one, lock.relaxed(obs)[0])[1])
        return differ, relax

    one = build(name, kind, seed, num_exits)
    twin = build(name, kind, seed, num_exits)
    fresh_diff, fresh_relax = frozen(one, BatchLearner([twin.actor], twin.learner.config, [seed]))
    # the online pass: learn (one run) vs step (lockstep), training every ω slots
    lock = BatchLearner([twin.actor], twin.learner.config, [seed])
    encode = batch_encoder(twin.actor)
    differ, first = 0, None
    for i, state in enumerate(states):
        a = one.learn(state, lambda c, s=state: score_decisions(s, c)).decision
        bs = BatchState.of(state)
        b = lock.step(encode(bs), lambda c, s=bs: batch_score(s, c)).decisions[0]
        if not np.array_equal(a, b):
            differ += 1
            first = i if first is None else first
    weights = Tally()
    for pname, p in one.actor.named_parameters():
        weights.add(pname, p, lock.params[pname][0])
    # frozen decisions again with the one-run learner's trained weights in both engines
    trained_diff, trained_relax = frozen(one, BatchLearner([one.actor], one.learner.config, [seed]))
    total = len(states)
    report(
        5,
        f"{name} decisions, act/decide same weights (one run vs BatchLearner K=1)",
        fresh_diff == 0 and trained_diff == 0,
        max(fresh_relax, trained_relax),
        f"slots differing: {fresh_diff}/{total} fresh weights, {trained_diff}/{total} trained "
        f"weights (max |Δ| is of the relaxed x̂); learn/step online pass: {differ}/{total} "
        f"differ (first at slot {first if first is not None else '-'}), weights after "
        f"{one.learner.train_steps} trainings equal: {'yes' if weights.equal else 'no'} "
        f"(max |Δ| {fmt(weights.max_abs)})",
    )


# ---------------------------------------------------------------------------------- C3, C4
def c3_grle(static: list[Any], dynamic: list[Any]) -> None:
    configs = (GRLEConfig(), GRLEConfig(main_branch_only=True))
    for label, states, stack in (
        ("300 static states, one BatchState of K=300", static, True),
        ("300 static states, BatchState.of each", static, False),
        ("100 dynamic-topology states, BatchState.of each", dynamic, False),
    ):
        tally = Tally()
        for cfg in configs:
            batches = [encode_slot_batch(BatchState.stack(states), cfg)] if stack else None
            for k, state in enumerate(states):
                one = encode_slot(state, cfg)
                if stack:
                    batch, j = batches[0], k
                else:
                    batch, j = encode_slot_batch(BatchState.of(state), cfg), 0
                for f, t in zip(_DENSE_FIELDS, batch.tensors, strict=True):
                    tally.add(f, getattr(one, f), t[j])
                tally.add("mask", one.mask, batch.mask[j])
        bad = tally.differing()
        report(
            3,
            f"encode_slot vs encode_slot_batch (GRLE+ and GRL+), {label}",
            tally.equal,
            tally.max_abs,
            f"{sum(tally.same.values())}/{sum(tally.total.values())} tensors equal"
            + (
                "; differing fields: " + ", ".join(f"{f} {tally.count(f)} equal" for f in bad)
                if bad
                else ""
            ),
        )


def c3_droo(static: list[Any], dynamic: list[Any], num_exits: int, padded_rows: int) -> None:
    for label, states, stack in (
        ("300 static states, one BatchState of K=300", static, True),
        ("300 static states, BatchState.of each", static, False),
        ("100 dynamic-topology states (padded actor), BatchState.of each", dynamic, False),
    ):
        tally = Tally()
        moved = 0
        for main in (False, True):
            cfg = DROOConfig(CENSUS_M, NUM_SERVERS, num_exits, main_branch_only=main)
            if states is dynamic:
                cfg = DROOConfig(
                    CENSUS_M, NUM_SERVERS, num_exits, main_branch_only=main, max_devices=padded_rows
                )
            batches = [encode_channel_batch(BatchState.stack(states), cfg)] if stack else None
            for k, state in enumerate(states):
                one = encode_channel(state, cfg)
                if stack:
                    batch, j = batches[0], k
                else:
                    batch, j = encode_channel_batch(BatchState.of(state), cfg), 0
                tally.add("x", one.x, batch.tensors[0][j])
                tally.add("mask", one.mask, batch.mask[j])
                if one.rows is not None:
                    tally.add("rows", one.rows, batch.tensors[1][j])
                    moved += not np.array_equal(state.device_ids, np.arange(state.num_devices))
        bad = tally.differing()
        extra = (
            f"{sum(tally.same.values())}/{sum(tally.total.values())} tensors equal (DROOE, DROO)"
        )
        if bad:
            extra += "; differing: " + ", ".join(f"{f} {tally.count(f)} equal" for f in bad)
        if states is dynamic:
            extra += (
                f"; states whose device ids are not 0..M-1: {moved // 2}/{len(states)} "
                "(the batched encoder places device m in row m, the one-run one in row device_ids[m])"
            )
        report(
            3, f"encode_channel vs encode_channel_batch, {label}", tally.equal, tally.max_abs, extra
        )


def c3_paper(static: list[Any], dynamic: list[Any]) -> None:
    tally = Tally()
    for states, stack in ((static, True), (static, False), (dynamic, False)):
        batches = [encode_paper_slot_batch(BatchState.stack(states))] if stack else None
        for k, state in enumerate(states):
            one = encode_paper_slot(state)
            if stack:
                batch, j = batches[0], k
            else:
                batch, j = encode_paper_slot_batch(BatchState.of(state)), 0
            for f, t in zip(PAPER_FIELDS, batch.tensors, strict=True):
                tally.add(f, getattr(one, f), t[j])
            tally.add("mask", one.mask, batch.mask[j])
    bad = tally.differing()
    report(
        3,
        "(extra) encode_paper_slot vs encode_paper_slot_batch, all three state sets",
        tally.equal,
        tally.max_abs,
        f"{sum(tally.same.values())}/{sum(tally.total.values())} tensors equal"
        + ("; differing: " + ", ".join(bad) if bad else ""),
    )


def edge_feature(state: Any, psi: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    """GRLE+'s edge feature 4, φ_l·ψ(t_done), on the edges, float64, as encode_slot computes it."""
    num_exits = state.exit_accuracy.shape[0]
    m_idx, o_idx = np.nonzero(option_mask(state))
    n_idx, l_idx = o_idx // num_exits, o_idx % num_exits
    deadline = np.asarray(state.deadline_ms, dtype=np.float64)
    dev_backlog = np.asarray(state.device_backlog_ms, dtype=np.float64)
    capacity = np.asarray(state.capacity, dtype=np.float64)
    t_cmp = np.asarray(state.exit_ms, dtype=np.float64) / capacity[:, None]
    srv_backlog = np.asarray(state.server_backlog_ms, dtype=np.float64)
    acc = np.asarray(state.exit_accuracy, dtype=np.float64)
    rate = np.asarray(state.rate_mbps, dtype=np.float64)[m_idx, n_idx]
    dl = deadline[m_idx]
    t_com = np.asarray(state.task_bits, dtype=np.float64)[m_idx] / (rate * 1e3)
    t_arr = dev_backlog[m_idx] + t_com
    t_done = np.maximum(t_arr, srv_backlog[n_idx]) + t_cmp[n_idx, l_idx]
    return acc[l_idx] * psi(t_done, dl), psi(t_done, dl)


def c4(static: list[Any], dynamic: list[Any]) -> None:
    replica = Tally()
    edges = differ = psi_differ = psi_differ64 = 0
    x_max = 0.0
    max_abs = max_rel = 0.0
    for state in static + dynamic:
        feat_g, psi_g = edge_feature(state, grle_psi)
        feat_s, psi_s = edge_feature(state, sim_psi)
        replica.add("col4", encode_slot(state).edge_attr[:, 4], feat_g.astype(np.float32))
        a, b = feat_g.astype(np.float32), feat_s.astype(np.float32)
        edges += a.size
        differ += int((a != b).sum())
        psi_differ += int((psi_g.astype(np.float32) != psi_s.astype(np.float32)).sum())
        psi_differ64 += int((psi_g != psi_s).sum())
        if psi_s.size:  # ψ = e/(1+e) -> x = log(1/ψ - 1)
            x_max = max(x_max, float(np.log(1.0 / psi_s.min() - 1.0)))
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if d.size:
            max_abs = max(max_abs, float(d.max()))
            big = np.maximum(np.abs(b.astype(np.float64)), np.finfo(np.float32).tiny)
            max_rel = max(max_rel, float((d / big).max()))
    # where the two forms part in float32: x = 5 t / δ on a fine grid
    grid = np.linspace(0.0, 40.0, 400_001)
    part = grle_psi(grid, 5.0).astype(np.float32) != sim_psi(grid, 5.0).astype(np.float32)
    onset = float(grid[np.argmax(part)]) if part.any() else float("nan")
    report(
        4,
        "GRLE+ edge feature φ·ψ, grle.psi 1-1/(1+e^-x) vs sim.reward.psi e/(1+e), float32",
        differ == 0,
        max_abs,
        f"edges differing: {differ}/{edges} ({100 * differ / max(edges, 1):.2f}%), max relative "
        f"|Δ| {fmt(max_rel)}; ψ alone differs on {psi_differ}/{edges} edges in float32, on "
        f"{psi_differ64}/{edges} in float64; largest x = 5t/δ seen {x_max:.2f}, the float32 "
        f"values first part at x = {onset:.2f} (ψ = {fmt(float(sim_psi(onset / 5.0, 1.0)))}); "
        f"this replica equals encode_slot's column bitwise: {'yes' if replica.equal else 'no'}",
    )


# ---------------------------------------------------------------------------------- main
def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    table = load_exit_table(TABLE)
    num_exits = table.num_exits
    base = MECConfig(num_devices=CENSUS_M, scenario=4, compute_scale=4.0)
    static = record_states(table, base, 300, seed=12)
    dyn_cfg = base.replace(dynamic_topology=True)
    dynamic = record_states(table, dyn_cfg, 100, seed=13)

    gen = torch.Generator().manual_seed(12)
    for family in ("GRLE+", "GRLE-MLP", "DROO"):
        c1_family(family, num_exits, gen)
    for name, kind in METHODS:
        c2_method(name, kind, static[:100], num_exits)
    c3_grle(static, dynamic)
    c3_droo(static, dynamic, num_exits, dyn_cfg.padded_devices)
    c3_paper(static, dynamic)
    c4(static, dynamic)
    for name, kind in METHODS:
        c5_method(name, kind, static, num_exits)
    sizes = Counter(s.num_devices for s in dynamic)
    print(
        f"# {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, "
        f"{torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}, "
        f"{platform.machine()}; dynamic states' M: {dict(sorted(sizes.items()))}"
    )


if __name__ == "__main__":
    main()
