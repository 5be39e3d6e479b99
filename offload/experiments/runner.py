"""The protocol of every experiment, for one run (the Figs. 5-8 runs step K at a time through
the same learner and simulator: :mod:`offload.experiments.lockstep`).

A run is (scenario, M, τ, seed). Each learning agent (GRLE, GRLE+, GRL, DROOE, DROO) runs
Algorithm 1 for ``train_slots`` slots on a training environment (seed ``seed``) and is then
evaluated frozen (actor + critic, no more updates) for ``eval_slots`` slots on an evaluation
environment (seed ``seed + EVAL_SEED_OFFSET``, the same slots for every method). The reference
policies (greedy best response with and without exits, random) run on the same evaluation
slots. Metrics follow Section VI-D:

- average accuracy = Σ accuracy of successful tasks / number of tasks;
- service success probability (SSP) = successful tasks / tasks;
- throughput = successful tasks / (slots · τ), tasks per second;
- mean Q = Σ Q of eq. (9) (true values) / slots.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from offload.agents import LearningAgent
from offload.sim import MECConfig, OffloadEnv, score_decisions
from offload.sim.baselines import greedy_decision, main_branch_greedy_decision, random_decision
from offload.sim.metrics import BatchMetrics, Metrics

EVAL_SEED_OFFSET = 10_000
#: greedy: one-pass best response over every exit; greedy-main: the same over the main branch
#: only (the main-branch greedy of offload.sim.baselines); random: a uniformly random option
REFERENCE_METHODS = ("greedy", "greedy-main", "random")
#: experiment name -> simulator scenario (Figs. 5-8)
SCENARIOS = {"devices": 1, "capacity": 2, "fluctuation": 3, "csi": 4}


def mec_config(
    base: MECConfig, experiment: str, num_devices: int, slot_ms: float, **extra: Any
) -> MECConfig:
    """The simulator configuration of one run: ``base`` (the run's other settings) with the
    experiment's scenario, M, τ (ms) and the fields in ``extra`` replaced."""
    return base.replace(
        num_devices=num_devices, slot_ms=slot_ms, scenario=SCENARIOS[experiment], **extra
    )


Policy = Callable[[Any], np.ndarray]


def evaluate(env: OffloadEnv, policy: Policy, slots: int, seed: int) -> Metrics:
    """Run ``policy(slot_state) -> decision`` for ``slots`` slots from ``env.reset(seed=seed)``."""
    env.reset(seed=seed)
    acc = BatchMetrics(1, env.table.num_exits, env.config.num_servers)
    for _ in range(slots):
        acc.add(env.step(policy(env.slot_state))[-1])
    return acc.result()[0]


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


def default_exits() -> str:
    """The paper's Table I, shipped with the repository."""
    return str(Path(__file__).resolve().parents[2] / "checkpoints" / "paper_table1.csv")
