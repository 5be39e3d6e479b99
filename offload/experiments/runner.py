"""One experiment cell: train the learning agents online, then evaluate every method.

A *cell* is (scenario, M, τ, seed). Each learning agent (GRLE, GRLE+, GRL, DROOE, DROO) runs Algorithm 1
for ``train_slots`` slots on a training environment (seed ``seed``) and is then evaluated frozen
(actor + critic, no more updates) for ``eval_slots`` slots on an evaluation environment (seed
``seed + EVAL_SEED_OFFSET``, the same slots for every method). The reference policies (greedy
best response with and without exits, random) run on the same evaluation slots. Metrics follow Section VI-D:

- average accuracy = Σ accuracy of successful tasks / number of tasks;
- service success probability (SSP) = successful tasks / tasks;
- throughput = successful tasks / (slots · τ), tasks per second;
- mean Q = Σ Q of eq. (9) (true values) / slots.
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

from offload.agents import AGENT_NAMES, LearningAgent, make_agent
from offload.exit_table import ExitTable, load_exit_table
from offload.experiments.pool import Job
from offload.experiments.rows import actor_tag, result_row
from offload.sim import MECConfig, OffloadEnv, score_decisions
from offload.sim.baselines import greedy_decision, main_branch_greedy_decision, random_decision
from offload.sim.metrics import Metrics, MetricsAccumulator

EVAL_SEED_OFFSET = 10_000
#: greedy: one-pass best response over every exit; greedy-main: the same over the main branch
#: only (the main-branch greedy of offload.sim.baselines); random: a uniformly random option
REFERENCE_METHODS = ("greedy", "greedy-main", "random")
#: experiment name -> simulator scenario (Figs. 5-8)
SCENARIOS = {"devices": 1, "capacity": 2, "fluctuation": 3, "csi": 4}


@dataclass(frozen=True)
class Cell(Job, kind="cell"):
    """One independent run: every method at one (scenario, M, τ, seed)."""

    experiment: str  # "devices", "capacity", "fluctuation" or "csi"
    num_devices: int  # M
    slot_ms: float  # τ, ms
    seed: int  # seeds the environments and the agents
    train_slots: int  # slots of online training (Algorithm 1) per learning agent
    eval_slots: int  # slots of frozen evaluation per method
    exits_path: str  # exit table CSV
    methods: tuple[str, ...] = AGENT_NAMES + REFERENCE_METHODS  # methods to run
    actors_dir: str | None = None  # save trained actors here (None = do not save)
    sim: tuple[tuple[str, Any], ...] = ()  # MECConfig overrides, e.g. (("compute_scale", 4.0),)

    def run(self) -> pd.DataFrame:
        """One row per method (:func:`run_cell`)."""
        return pd.DataFrame(run_cell(self))


def mec_config(experiment: str, num_devices: int, slot_ms: float, **extra: Any) -> MECConfig:
    """The simulator configuration of an experiment (simulator defaults otherwise)."""
    return MECConfig(
        num_devices=num_devices, slot_ms=slot_ms, scenario=SCENARIOS[experiment], **extra
    )


Policy = Callable[[Any], np.ndarray]


def evaluate(env: OffloadEnv, policy: Policy, slots: int, seed: int) -> Metrics:
    """Run ``policy(slot_state) -> decision`` for ``slots`` slots from ``env.reset(seed=seed)``."""
    env.reset(seed=seed)
    acc = MetricsAccumulator(env.table.num_exits, env.config.num_servers)
    for _ in range(slots):
        acc.add(env.step(policy(env.slot_state))[-1])
    return acc.result()


def train(agent: LearningAgent, env: OffloadEnv, slots: int, seed: int) -> list[float]:
    """Algorithm 1 online for ``slots`` slots; returns the training losses."""
    env.reset(seed=seed)
    losses = []
    for _ in range(slots):
        state = env.slot_state
        result = agent.learn(state, lambda c, s=state: score_decisions(s, c))
        if result.loss is not None:
            losses.append(result.loss)
        env.step(result.decision)
    return losses


def critic_policy(agent: LearningAgent) -> Policy:
    """The frozen agent's decision rule: actor + quantiser + critic (eq. 15)."""
    return lambda s: agent.act(s, lambda c: score_decisions(s, c)).decision


def reference_policy(name: str, seed: int) -> Policy:
    """greedy (best response device by device), greedy-main (the same, main branch only) or
    random (seeded)."""
    if name == "greedy":
        return greedy_decision
    if name == "greedy-main":
        return main_branch_greedy_decision
    rng = np.random.default_rng(seed)
    return lambda s: random_decision(s, rng)


def run_cell(cell: Cell) -> list[dict]:
    """Train and evaluate every method of ``cell``; one CSV row (dict) per method."""
    torch.set_num_threads(1)
    table: ExitTable = load_exit_table(cell.exits_path)
    cfg = mec_config(cell.experiment, cell.num_devices, cell.slot_ms, **dict(cell.sim))
    eval_seed = cell.seed + EVAL_SEED_OFFSET
    rows = []
    for method in cell.methods:
        t0 = time.perf_counter()
        if method in AGENT_NAMES:
            agent = make_agent(
                name=method,
                num_exits=table.num_exits,
                num_devices=cell.num_devices,
                num_servers=cfg.num_servers,
                seed=cell.seed,
            )
            losses = train(agent, OffloadEnv(table, cfg), cell.train_slots, cell.seed)
            if cell.actors_dir is not None:
                tag = actor_tag(
                    cell.experiment, cell.num_devices, cell.seed, method, slot_ms=cell.slot_ms
                )
                agent.save(Path(cell.actors_dir) / tag)
            policy = critic_policy(agent)
            final_loss = float(np.mean(losses[-10:])) if losses else float("nan")
        else:
            policy, final_loss = reference_policy(method, cell.seed), float("nan")
        m = evaluate(OffloadEnv(table, cfg), policy, cell.eval_slots, eval_seed)
        setting = {"M": cell.num_devices, "tau_ms": cell.slot_ms, "seed": cell.seed}
        tail = {
            "train_slots": cell.train_slots if method in AGENT_NAMES else 0,
            "eval_slots": cell.eval_slots,
            "final_train_loss": final_loss,
            "wall_s": time.perf_counter() - t0,
        }
        rows.append(result_row(cell.experiment, method, cfg, setting, m, table, tail))
    return rows


def default_exits() -> str:
    """The paper's Table I, shipped with the repository."""
    return str(Path(__file__).resolve().parents[2] / "checkpoints" / "paper_table1.csv")
