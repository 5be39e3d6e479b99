"""The regime map: where do learning and early exits pay off?

One job per (reward variant, method): the runs of every (compute scale, τ, seed) step together
(the lockstep engine, :mod:`offload.experiments.lockstep`). A reward variant is ψ's steepness k
(``MECConfig.psi_steepness``, the 5 in ψ(t) = 1 − sigmoid(5t/δ)) or the on-time reward
(``MECConfig.reward_form="on_time"``: φ_l for a task done by its deadline, else 0). Every
learner is trained (Algorithm 1) and evaluated under its variant's reward; the references are
the greedy with and without exits and the exact per-slot optimum (M ≤ 10). Rows are the
runner's plus ``psi_steepness`` and ``reward_form``; the exit-1 share is ``exit_share_<first
exit>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from offload.exit_table import load_exit_table
from offload.experiments.ablation import OPTIMUM_MAX_DEVICES
from offload.experiments.lockstep import (
    batch_critic_policy,
    batch_reference_policy,
    evaluate_lockstep,
    train_lockstep,
)
from offload.experiments.pool import Job
from offload.experiments.rows import result_row
from offload.experiments.runner import EVAL_SEED_OFFSET, mec_config
from offload.sim import MECConfig, optimal_decision

#: learners and references of the regime map
REGIME_LEARNERS = ("GRLE", "GRLE+", "GRL")
REGIME_REFERENCES = ("greedy", "greedy-main", "optimum")
#: reward variants: (ψ steepness k, reward form); on-time ignores k
REGIME_VARIANTS = ((2.0, "psi"), (5.0, "psi"), (20.0, "psi"), (5.0, "on_time"))


#: The on-time reward is flat in time, so the exact optimum's bound prunes little: measured at
#: M = 10, compute scale 6, τ = 30 ms, it takes a median 0.94 s per slot (max 2.8 s; 2 ms under
#: ψ with k = 5), which alone would exceed the regime map's 30-minute budget. Above this M the
#: on-time optimum is left out (the report says so).
ON_TIME_OPTIMUM_MAX_DEVICES = 6


def optimum_max_devices(reward_form: str) -> int:
    """The largest M at which the regime map runs the exact optimum under ``reward_form``."""
    return ON_TIME_OPTIMUM_MAX_DEVICES if reward_form == "on_time" else OPTIMUM_MAX_DEVICES


@dataclass(frozen=True)
class RegimeRun(Job, kind="regime"):
    """One method under one reward variant at every (compute scale, τ, seed)."""

    method: str  # REGIME_LEARNERS or REGIME_REFERENCES
    psi_steepness: float
    reward_form: str
    num_devices: int  # M
    scales: tuple[float, ...]  # compute scales (ES load)
    taus: tuple[float, ...]  # τ, ms
    seeds: tuple[int, ...]
    train_slots: int
    eval_slots: int
    exits_path: str
    experiment: str = "devices"  # scenario (runner.SCENARIOS): 1, fixed capacity
    base: MECConfig = MECConfig()  # the simulator but the per-run scenario, M, τ, scale and reward

    def run(self) -> pd.DataFrame:
        """One row per (compute scale, τ, seed) (:func:`run_regime`)."""
        return pd.DataFrame(run_regime(self))

    @property
    def cost(self) -> float:
        """Relative cost, to schedule the longest jobs first."""
        per_slot = {"optimum": 2.0, "greedy": 0.3, "greedy-main": 0.3}.get(self.method, 3.0)
        train = 3 * self.train_slots if self.method in REGIME_LEARNERS else 0
        return per_slot * (self.eval_slots + train) * len(self.scales) * len(self.taus)


def regime_runs(
    plan_devices: int,
    scales: tuple[float, ...],
    taus: tuple[float, ...],
    seeds: tuple[int, ...],
    **common: Any,
) -> list[RegimeRun]:
    """Every (variant, method) job, longest first; the optimum only for M ≤ 10, and under the
    on-time reward only for M ≤ ``ON_TIME_OPTIMUM_MAX_DEVICES`` (see there)."""
    runs = [
        RegimeRun(m, k, form, plan_devices, scales, taus, seeds, **common)
        for k, form in REGIME_VARIANTS
        for m in REGIME_LEARNERS + REGIME_REFERENCES
        if m != "optimum" or plan_devices <= optimum_max_devices(form)
    ]
    return sorted(runs, key=lambda r: -r.cost)


def _optimum_policy(state: Any) -> np.ndarray:
    return np.stack([optimal_decision(state.slot(k)).decision for k in range(state.num_envs)])


def run_regime(run: RegimeRun) -> list[dict]:
    """Train (learners) and evaluate ``run.method`` at every (scale, τ, seed); one row each."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    table = load_exit_table(run.exits_path, main_exit=None)
    points = [(s, tau, seed) for s in run.scales for tau in run.taus for seed in run.seeds]
    shape = {"psi_steepness": run.psi_steepness, "reward_form": run.reward_form}
    configs = [
        mec_config(run.base, run.experiment, run.num_devices, tau, compute_scale=s, **shape)
        for s, tau, _ in points
    ]
    seeds = [seed for _, _, seed in points]
    learning = run.method in REGIME_LEARNERS
    if learning:
        agents, learner, _ = train_lockstep(run.method, table, configs, seeds, run.train_slots)
        policy = batch_critic_policy(learner, agents[0].actor)
    elif run.method == "optimum":
        policy = _optimum_policy
    else:
        policy = batch_reference_policy(run.method, seeds)
    eval_seeds = [seed + EVAL_SEED_OFFSET for seed in seeds]
    results = evaluate_lockstep(table, configs, policy, run.eval_slots, eval_seeds)
    wall = (time.perf_counter() - t0) / len(points)
    steepness = run.psi_steepness if run.reward_form == "psi" else np.nan
    tail = {
        "train_slots": run.train_slots if learning else 0,
        "eval_slots": run.eval_slots,
        "wall_s": wall,
    }
    rows = []
    for (_, tau, seed), cfg, m in zip(points, configs, results, strict=True):
        setting = {
            "M": run.num_devices,
            "tau_ms": tau,
            "psi_steepness": steepness,
            "reward_form": run.reward_form,
            "seed": seed,
        }
        rows.append(result_row("regime", run.method, cfg, setting, m, table, tail))
    return rows
