"""Topology generalisation: train at one M, evaluate at other M and under a changing topology.

GRLE and GRL are trained (Algorithm 1) at ``train_devices`` and evaluated frozen, without
retraining, at every M of ``eval_devices`` and in a dynamic network where devices join and leave
and links go down and up (``MECConfig.dynamic_topology``, up to ``max_devices`` devices). DROOE and
DROO have a fixed input size, so they are built padded (``actor_options={"max_devices": D}``, D =
the largest M met; offload.agents.droo): trained at ``train_devices`` like the others, their input
rows of absent devices are zero, and they run at every M ≤ D and in the dynamic network — the
natural counter-baseline to the paper's claim that only a graph actor generalises. The greedy
policies (with and without exits) are the references.

The seeds of a run step together (the lockstep engine of :mod:`offload.experiments.lockstep`):
training and the fixed-M evaluations are batched over the seeds; the dynamic network, whose
size changes from slot to slot, is evaluated seed by seed with the one-run agents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from offload.agents import AGENT_NAMES
from offload.exit_table import load_exit_table
from offload.experiments.lockstep import (
    batch_critic_policy,
    batch_reference_policy,
    evaluate_lockstep,
    train_lockstep,
)
from offload.experiments.pool import Job
from offload.experiments.rows import actor_tag, result_row
from offload.experiments.runner import (
    EVAL_SEED_OFFSET,
    critic_policy,
    evaluate,
    mec_config,
    reference_policy,
)
from offload.sim import MECConfig, OffloadEnv

#: the methods of the topology experiment: every learner and the greedy with and without exits
TOPOLOGY_METHODS = AGENT_NAMES + ("greedy", "greedy-main")


@dataclass(frozen=True)
class TopologyRun(Job, kind="topology"):
    """The topology experiment over a set of seeds (stepped together)."""

    seeds: tuple[int, ...]
    train_devices: int  # M during training
    eval_devices: tuple[int, ...]  # M values for evaluation
    max_devices: int  # device slots of the dynamic network (M varies up to this)
    slot_ms: float  # τ, ms
    train_slots: int
    eval_slots: int
    exits_path: str
    experiment: str = "capacity"  # scenario (see runner.SCENARIOS)
    actors_dir: str | None = None
    base: MECConfig = MECConfig()  # the simulator apart from scenario, M, τ and the topology
    methods: tuple[str, ...] = TOPOLOGY_METHODS  # one job per method keeps the jobs short

    def run(self) -> pd.DataFrame:
        """One row per (method, network, seed) (:func:`run_topology`)."""
        return pd.DataFrame(run_topology(self))


def run_topology(run: TopologyRun) -> list[dict]:
    """One row per (method, evaluation network, seed)."""
    torch.set_num_threads(1)
    table = load_exit_table(run.exits_path, main_exit=None)
    seeds = list(run.seeds)
    eval_seeds = [s + EVAL_SEED_OFFSET for s in seeds]
    train_cfg = mec_config(run.base, run.experiment, run.train_devices, run.slot_ms)
    networks = {
        f"M={m}": mec_config(run.base, run.experiment, m, run.slot_ms) for m in run.eval_devices
    }
    networks["dynamic"] = mec_config(
        run.base,
        run.experiment,
        run.train_devices,
        run.slot_ms,
        max_devices=run.max_devices,
        dynamic_topology=True,
    )
    padded = {"max_devices": max(run.max_devices, *run.eval_devices, run.train_devices)}
    rows = []
    for method in run.methods:
        t0 = time.perf_counter()
        if method in AGENT_NAMES:
            options = padded if method in ("DROOE", "DROO") else None
            agents, learner, _ = train_lockstep(
                method, table, [train_cfg] * len(seeds), seeds, run.train_slots, options
            )
            if run.actors_dir is not None:
                for seed, agent in zip(seeds, agents, strict=True):
                    agent.save(
                        Path(run.actors_dir)
                        / actor_tag("topology", run.train_devices, seed, method)
                    )
            batch_policy = batch_critic_policy(learner, agents[0].actor)
            policies = [critic_policy(a) for a in agents]
        else:
            batch_policy = batch_reference_policy(method, seeds)
            policies = [reference_policy(method, seed) for seed in seeds]
        train_wall = time.perf_counter() - t0
        for network, cfg in networks.items():
            t0 = time.perf_counter()
            if network == "dynamic":  # M changes from slot to slot: one run at a time
                results = [
                    evaluate(OffloadEnv(table, cfg), policy, run.eval_slots, seed)
                    for policy, seed in zip(policies, eval_seeds, strict=True)
                ]
            else:
                configs = [cfg] * len(seeds)
                results = evaluate_lockstep(
                    table, configs, batch_policy, run.eval_slots, eval_seeds
                )
            wall = (time.perf_counter() - t0 + train_wall / len(networks)) / len(seeds)
            m_eval = cfg.num_devices if network != "dynamic" else np.nan
            where = {"network": network, "M": m_eval, "train_M": run.train_devices}
            tail = {
                "train_slots": run.train_slots if method in AGENT_NAMES else 0,
                "eval_slots": run.eval_slots,
                "note": "padded input" if method in ("DROOE", "DROO") else "",
                "wall_s": wall,
            }
            for seed, m in zip(seeds, results, strict=True):
                setting = {**where, "tau_ms": run.slot_ms, "seed": seed}
                rows.append(result_row("topology", method, cfg, setting, m, table, tail))
    return rows
