"""The one engine of Figs. 5–8: all runs of one method at one M step together.

The runs are independent; most of a slot's cost is Python and framework overhead, not
arithmetic. A :class:`Group` gathers every (scenario, τ, seed)
run of one method at one M, K runs in all, and steps them together: one ``BatchEnv`` step, one
batched actor call (:class:`~offload.agents.learner.Learner`), one quantiser call and one
scoring call for all K. The protocol is :mod:`offload.experiments.runner`'s — train ``train_slots`` slots on the
training environment (seed), then evaluate frozen for ``eval_slots`` slots on the evaluation
environment (seed + ``EVAL_SEED_OFFSET``) — and every run keeps its own random streams and its own
actor, so a run's result does not depend on which other runs share its group, up to float
rounding of the batched kernels (tested: a group of three runs against each run alone). One run
is a group of one.

Rows are the runner's, one per (method, scenario, M, τ, seed); ``wall_s`` is the group's wall time
divided by its K runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from offload.agents import AGENT_NAMES, Learner, LearningAgent, make_agent
from offload.agents.agent import input_encoder
from offload.exit_table import ExitTable, load_exit_table
from offload.experiments.pool import Job
from offload.experiments.rows import actor_tag, result_row
from offload.experiments.runner import EVAL_SEED_OFFSET, REFERENCE_METHODS, mec_config
from offload.sim import MECConfig
from offload.sim.batch import BatchEnv, BatchMetrics, batch_greedy, batch_random, batch_score
from offload.sim.metrics import Metrics

BatchPolicy = Callable[[Any], np.ndarray]
"""Decides for K runs at once: ``BatchState`` -> (K, M) int options."""


@dataclass(frozen=True)
class Group(Job, kind="group", result_kind="cell"):
    """The runs of one method at one M that step together."""

    method: str  # a learning agent (AGENT_NAMES) or a reference method (REFERENCE_METHODS)
    num_devices: int  # M
    runs: tuple[tuple[str, float, int], ...]  # (experiment, τ ms, seed) of each run
    train_slots: int  # slots of online training per run (learning agents)
    eval_slots: int  # slots of frozen evaluation per run
    exits_path: str  # exit table CSV
    actors_dir: str | None = None  # save the trained actors here (None = do not save)
    base: MECConfig = MECConfig()  # the simulator apart from each run's scenario, M and τ

    def run(self) -> pd.DataFrame:
        """The runner's rows, one per run (:func:`run_group`)."""
        return pd.DataFrame(run_group(self))

    @property
    def cost(self) -> float:
        """Relative cost, for scheduling the longest groups first."""
        per_slot = {"GRLE": 4.0, "GRLE+": 3.0, "GRL": 3.5, "DROOE": 1.5, "DROO": 1.2}
        per_slot = per_slot.get(self.method, 0.5)
        slots = self.eval_slots + (3 * self.train_slots if self.method in AGENT_NAMES else 0)
        return per_slot * slots * len(self.runs) * self.num_devices


def groups_for(
    experiments: list[str],
    devices: tuple[int, ...],
    taus: tuple[float, ...],
    seeds: tuple[int, ...],
    methods: tuple[str, ...],
    **common: Any,
) -> list[Group]:
    """One group per (method, M) over every (experiment, τ, seed); longest first."""
    runs = tuple((e, tau, seed) for e in experiments for tau in taus for seed in seeds)
    groups = [Group(method, m, runs, **common) for method in methods for m in devices]
    return sorted(groups, key=lambda g: -g.cost)


def train_lockstep(
    method: str,
    table: ExitTable,
    configs: list[MECConfig],
    seeds: list[int],
    slots: int,
    actor_options: dict[str, Any] | None = None,
) -> tuple[list[LearningAgent], Learner, np.ndarray]:
    """Algorithm 1 for the K runs (configs[k], seeds[k]) of one learning agent in lockstep.

    Each run's actor is initialised as ``make_agent(seed=seeds[k])`` and its environment is
    reset with ``seeds[k]``, as in :func:`~offload.experiments.runner.train` (``actor_options``:
    see :func:`~offload.agents.make_agent`, e.g. DROO's padded ``max_devices``). Returns the
    agents (trained weights written back), the learner (to act with) and the (K,) mean loss of
    the last 10 trainings (NaN if none).
    """
    agents = [
        make_agent(
            name=method,
            num_exits=table.num_exits,
            num_devices=cfg.num_devices,
            num_servers=cfg.num_servers,
            seed=seed,
            actor_options=actor_options,
        )
        for cfg, seed in zip(configs, seeds, strict=True)
    ]
    learner = Learner([a.actor for a in agents], agents[0].learner.config, seeds)
    encode = input_encoder(agents[0].actor)
    env = BatchEnv(table, configs)
    state = env.reset(seeds)
    losses = []
    for _ in range(slots):
        result = learner.step(encode(state), lambda c, s=state: batch_score(s, c))
        if result.loss is not None:
            losses.append(result.loss)
        env.step(result.decisions)
        state = env.state
    learner.unstack()
    final = np.mean(losses[-10:], axis=0) if losses else np.full(len(seeds), np.nan)
    return agents, learner, final


def batch_critic_policy(learner: Learner, actor: torch.nn.Module) -> BatchPolicy:
    """The frozen actors' decision rule for K runs: actor + quantiser + critic (eq. 15)."""
    encode = input_encoder(actor)
    return lambda s: learner.decide(encode(s), lambda c: batch_score(s, c)).decisions


def batch_reference_policy(name: str, seeds: list[int]) -> BatchPolicy:
    """greedy, greedy-main (the greedy over the deepest exit only), or random with one
    generator per run seeded as ``reference_policy`` seeds it."""
    if name == "greedy":
        return batch_greedy
    if name == "greedy-main":
        return lambda s: batch_greedy(s, exits=[s.num_exits - 1])
    rngs = [np.random.default_rng(seed) for seed in seeds]
    return lambda s: batch_random(s, rngs)


def evaluate_lockstep(
    table: ExitTable, configs: list[MECConfig], policy: BatchPolicy, slots: int, seeds: list[int]
) -> list[Metrics]:
    """:func:`~offload.experiments.runner.evaluate` for K runs at once."""
    env = BatchEnv(table, configs)
    state = env.reset(seeds)
    metrics = BatchMetrics(len(configs))
    for _ in range(slots):
        metrics.add(env.step(policy(state)))
        state = env.state
    return metrics.result()


def run_group(group: Group) -> list[dict]:
    """Train (learning agents) and evaluate every run of ``group``; one row per run."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    table = load_exit_table(group.exits_path, main_exit=None)
    configs = [mec_config(group.base, e, group.num_devices, tau) for e, tau, _ in group.runs]
    seeds = [seed for _, _, seed in group.runs]
    learning = group.method in AGENT_NAMES
    if learning:
        agents, learner, final_loss = train_lockstep(
            group.method, table, configs, seeds, group.train_slots
        )
        if group.actors_dir is not None:
            for (e, tau, seed), agent in zip(group.runs, agents, strict=True):
                tag = actor_tag(e, group.num_devices, seed, group.method, slot_ms=tau)
                agent.save(Path(group.actors_dir) / tag)
        policy = batch_critic_policy(learner, agents[0].actor)
    elif group.method in REFERENCE_METHODS:
        final_loss = np.full(len(seeds), np.nan)
        policy = batch_reference_policy(group.method, seeds)
    else:
        raise ValueError(
            f"unknown method {group.method!r}; choose one of "
            f"{', '.join(AGENT_NAMES + REFERENCE_METHODS)}."
        )
    eval_seeds = [seed + EVAL_SEED_OFFSET for seed in seeds]
    results = evaluate_lockstep(table, configs, policy, group.eval_slots, eval_seeds)
    wall = (time.perf_counter() - t0) / len(group.runs)
    rows = []
    for (e, tau, seed), cfg, m, loss in zip(group.runs, configs, results, final_loss, strict=True):
        setting = {"M": group.num_devices, "tau_ms": tau, "seed": seed}
        tail = {
            "train_slots": group.train_slots if learning else 0,
            "eval_slots": group.eval_slots,
            "final_train_loss": float(loss),
            "wall_s": wall,
        }
        rows.append(result_row(e, group.method, cfg, setting, m, table, tail))
    return rows
