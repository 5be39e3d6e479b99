"""Fig. 4: convergence of GRLE and DROOE during online training.

Each slot of Algorithm 1 the predicted Q of the agent's decision is divided by the exact per-slot
optimum of the same predicted Q (eq. 17; ``offload.sim.optimal_decision``, the paper's
"exhaustive search"), and the curve is the moving average over the last 50 slots. The training
loss of eq. (16) is logged every ω slots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from offload.agents import make_agent
from offload.exit_table import load_exit_table
from offload.experiments.pool import Job
from offload.experiments.rows import actor_tag
from offload.experiments.runner import mec_config
from offload.sim import MECConfig, OffloadEnv, optimal_decision, score_decisions
from offload.sim.reward import normalised

WINDOW = 50  # slots of the moving average in Fig. 4


@dataclass(frozen=True)
class ConvergenceRun(Job, kind="convergence"):
    """One training curve."""

    method: str  # "GRLE" or "DROOE" (any agent name works)
    num_devices: int  # M
    slot_ms: float  # τ, ms
    seed: int  # seeds the environment and the agent
    slots: int  # slots of online training
    exits_path: str  # exit table CSV
    experiment: str = "devices"  # scenario of the environment (see runner.SCENARIOS)
    actors_dir: str | None = None  # save the trained actor here
    base: MECConfig = MECConfig()  # the simulator apart from the run's scenario, M and τ

    def run(self) -> pd.DataFrame:
        """The curve, one row per slot (:func:`run_convergence`)."""
        return run_convergence(self)


def run_convergence(run: ConvergenceRun) -> pd.DataFrame:
    """Per-slot normalised reward (eq. 17), its 50-slot moving average, and the losses."""
    torch.set_num_threads(1)
    table = load_exit_table(run.exits_path, main_exit=None)
    cfg = mec_config(run.base, run.experiment, run.num_devices, run.slot_ms)
    env = OffloadEnv(table, cfg)
    env.reset(seed=run.seed)
    agent = make_agent(
        name=run.method,
        num_exits=table.num_exits,
        num_devices=run.num_devices,
        num_servers=cfg.num_servers,
        seed=run.seed,
    )
    ratio = np.empty(run.slots)
    loss = np.full(run.slots, np.nan)
    t0 = time.perf_counter()
    for k in range(run.slots):
        state = env.slot_state
        result = agent.learn(state, lambda c, s=state: score_decisions(s, c))
        best = optimal_decision(state).q
        ratio[k] = normalised(result.q, best)  # eq. (17)
        if result.loss is not None:
            loss[k] = result.loss
        env.step(result.decision)
    if run.actors_dir is not None:
        tag = actor_tag("convergence", run.num_devices, run.seed, run.method, slot_ms=run.slot_ms)
        agent.save(Path(run.actors_dir) / tag)
    moving = pd.Series(ratio).rolling(WINDOW, min_periods=1).mean().to_numpy()
    return pd.DataFrame(
        {
            "method": run.method,
            "compute_scale": cfg.compute_scale,
            "M": run.num_devices,
            "tau_ms": run.slot_ms,
            "seed": run.seed,
            "slot": np.arange(1, run.slots + 1),
            "normalised_reward": ratio,
            "moving_average": moving,
            "train_loss": loss,
            "wall_s": time.perf_counter() - t0,
        }
    )
