"""Topology generalisation: train at one M, evaluate at other M and under a changing topology.

GRLE and GRL are trained (Algorithm 1) at ``train_devices`` and evaluated frozen, without
retraining, at every M of ``eval_devices`` and in a dynamic network where devices join and leave
and links go down and up (``MECConfig.dynamic_topology``, up to ``max_devices`` devices). DROOE and
DROO have a fixed input size: they are evaluated where M equals the training M and get a row
that says they cannot run everywhere else. The greedy policy is the reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offload.agents import AGENT_NAMES, make_agent
from offload.exit_table import load_exit_table
from offload.experiments.runner import (
    EVAL_SEED_OFFSET,
    SCENARIOS,
    critic_policy,
    evaluate,
    mec_config,
    metric_columns,
    reference_policy,
    train,
)
from offload.sim import OffloadEnv

CANNOT_RUN = "cannot run: DROO's input size is fixed at the training M"


@dataclass(frozen=True)
class TopologyRun:
    """One seed of the topology experiment."""

    seed: int
    train_devices: int  # M during training
    eval_devices: tuple[int, ...]  # M values for evaluation
    max_devices: int  # device slots of the dynamic network (M varies up to this)
    slot_ms: float  # τ, ms
    train_slots: int
    eval_slots: int
    exits_path: str
    experiment: str = "capacity"  # scenario (see runner.SCENARIOS)
    actors_dir: str | None = None
    sim: tuple[tuple[str, Any], ...] = ()  # MECConfig overrides


def run_topology(run: TopologyRun) -> list[dict]:
    """One row per (method, evaluation network)."""
    torch.set_num_threads(1)
    table = load_exit_table(run.exits_path)
    sim = dict(run.sim)
    train_cfg = mec_config(run.experiment, run.train_devices, run.slot_ms, **sim)
    networks = {
        f"M={m}": mec_config(run.experiment, m, run.slot_ms, **sim) for m in run.eval_devices
    }
    networks["dynamic"] = mec_config(
        run.experiment,
        run.train_devices,
        run.slot_ms,
        max_devices=run.max_devices,
        dynamic_topology=True,
        **sim,
    )
    rows = []
    for method in AGENT_NAMES + ("greedy",):
        policy = None
        if method in AGENT_NAMES:
            agent = make_agent(
                name=method,
                num_exits=table.num_exits,
                num_devices=run.train_devices,
                num_servers=train_cfg.num_servers,
                seed=run.seed,
            )
            train(agent, OffloadEnv(table, train_cfg), run.train_slots, run.seed)
            if run.actors_dir is not None:
                agent.save(
                    Path(run.actors_dir) / f"topology_M{run.train_devices}_seed{run.seed}_{method}"
                )
            policy = critic_policy(agent)
        else:
            policy = reference_policy(method, run.seed)
        for network, cfg in networks.items():
            fixed_size = method in ("DROOE", "DROO")
            runs = not fixed_size or (network != "dynamic" and cfg.num_devices == run.train_devices)
            t0 = time.perf_counter()
            m = (
                evaluate(
                    OffloadEnv(table, cfg), policy, run.eval_slots, run.seed + EVAL_SEED_OFFSET
                )
                if runs
                else None
            )
            values = metric_columns(m)
            rows.append(
                {
                    "experiment": "topology",
                    "method": method,
                    "scenario": SCENARIOS[run.experiment],
                    "compute_scale": cfg.compute_scale,
                    "network": network,
                    "M": cfg.num_devices if network != "dynamic" else np.nan,
                    "train_M": run.train_devices,
                    "tau_ms": run.slot_ms,
                    "seed": run.seed,
                    **values,
                    "train_slots": run.train_slots if method in AGENT_NAMES else 0,
                    "eval_slots": run.eval_slots if runs else 0,
                    "note": "" if runs else CANNOT_RUN,
                    "wall_s": time.perf_counter() - t0,
                }
            )
    return rows
