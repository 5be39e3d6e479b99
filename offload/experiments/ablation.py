"""Ablation policies: what the actor, the critic's search and the graph each contribute.

Every policy is a plain ``policy(slot_state) -> (M,) int`` decision, so all of them run through
the same evaluation loop (:func:`offload.experiments.runner.evaluate`) on the same slots:

===========================  ======================================================================
name                         decision
===========================  ======================================================================
``actor``                    the trained actor's own argmax per device, no critic
``random+critic``            the critic (predicted Q of eq. 9) over S uniformly random feasible
                             decisions (S = M·N·L): search without an actor
``<agent> S=1|M|MNL``        Algorithm 1's acting rule (actor + quantiser + critic, eq. 15) with
                             S = 1 (the actor's argmax, scored), M or M·N·L candidates
``mlp S=MNL``                the same learner with the MLP actor on GRLE+'s features (actor kind
                             ``edge_mlp``): does the graph help?
``optimum``                  the exact per-slot maximiser of the predicted Q
                             (:func:`~offload.sim.optimal_decision`), M ≤ 10
``greedy``, ``greedy-main``  one-pass best response with all exits / the main branch only
                             (:mod:`offload.sim.baselines`)
===========================  ======================================================================

:func:`run_ablation` is the ``ablation`` experiment's job (``python -m offload.experiments
ablation``): it trains the agents (``runner.train``) and evaluates every policy; nothing here
writes files.
Because the environment carries backlogs from slot to slot, two policies evaluated through
:func:`evaluate_policies` see the same exogenous draws (tasks, rates, capacities) but their own
backlogs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from offload.agents.agent import LearningAgent, make_agent
from offload.exit_table import ExitTable, load_exit_table
from offload.experiments.pool import Job
from offload.experiments.rows import result_row
from offload.experiments.runner import (
    EVAL_SEED_OFFSET,
    evaluate,
    mec_config,
    train,
)
from offload.sim import MECConfig, OffloadEnv, SlotState, optimal_decision, score_decisions
from offload.sim.baselines import greedy_decision, main_branch_greedy_decision
from offload.sim.metrics import Metrics

Policy = Callable[[SlotState], np.ndarray]
CandidateCount = int | str  # an int, or "M" / "MNL" (resolved per slot)

OPTIMUM_MAX_DEVICES = 10  # the exact optimum as a policy: up to this M (its cost grows fast)


def num_candidates(spec: CandidateCount, state: SlotState) -> int:
    """S for one slot: an int as given, "M" = M, "MNL" = M·N·L.

    Raises:
        ValueError: an unknown spec or S < 1.
    """
    if isinstance(spec, str):
        sizes = {"M": state.num_devices, "MNL": state.num_devices * state.num_options}
        if spec not in sizes:
            raise ValueError(f"candidate count {spec!r} unknown; use an int, 'M' or 'MNL'.")
        spec = sizes[spec]
    if spec < 1:
        raise ValueError(f"the number of candidates must be >= 1, got {spec}.")
    return int(spec)


def actor_policy(agent: LearningAgent) -> Policy:
    """The actor alone: its own argmax over each device's valid options, no critic."""
    return agent.greedy_action


def agent_policy(agent: LearningAgent, candidates: CandidateCount) -> Policy:
    """Actor + quantiser + critic (eq. 15) with S = ``candidates`` quantised candidates."""

    def policy(state: SlotState) -> np.ndarray:
        s = num_candidates(candidates, state)
        return agent.act(state, lambda c: score_decisions(state, c), num_candidates=s).decision

    return policy


def counting_policy(agent: LearningAgent, candidates: CandidateCount, kept: list[bool]) -> Policy:
    """:func:`agent_policy`, appending to ``kept`` whether the critic chose the actor's own
    candidate (``best_index == 0``, the actor's argmax) in each slot."""

    def policy(state: SlotState) -> np.ndarray:
        s = num_candidates(candidates, state)
        result = agent.act(state, lambda c: score_decisions(state, c), num_candidates=s)
        kept.append(result.best_index == 0)
        return result.decision

    return policy


def random_critic_policy(candidates: CandidateCount, seed: int) -> Policy:
    """The critic over S uniformly random feasible decisions (each device: a uniformly random
    valid option, i.e. an up link and any exit); no actor. Seeded."""
    rng = np.random.default_rng(seed)

    def policy(state: SlotState) -> np.ndarray:
        s = num_candidates(candidates, state)
        valid = np.repeat(state.link, state.num_exits, axis=1)  # (M, N·L)
        keys = np.where(valid[None], rng.random((s, *valid.shape)), -1.0)
        cands = keys.argmax(axis=2)  # (S, M): uniform over each device's valid options
        return cands[int(np.argmax(score_decisions(state, cands)))]

    return policy


def optimum_policy(max_devices: int = OPTIMUM_MAX_DEVICES) -> Policy:
    """The exact per-slot maximiser of the predicted Q, for M ≤ ``max_devices``."""

    def policy(state: SlotState) -> np.ndarray:
        if state.num_devices > max_devices:
            raise ValueError(
                f"the optimum policy runs up to M = {max_devices} devices (its cost grows "
                f"steeply); this slot has {state.num_devices}: drop it from the ablation here."
            )
        return optimal_decision(state).decision

    return policy


def ablation_policies(
    agent: LearningAgent,
    *,
    mlp_agent: LearningAgent | None = None,
    seed: int = 0,
    with_optimum: bool = True,
) -> dict[str, Policy]:
    """The ablation set of the module docstring for a trained ``agent`` (and, if given, a
    trained MLP-actor agent ``mlp_agent``), in report order."""
    name = agent.name
    policies: dict[str, Policy] = {
        "actor": actor_policy(agent),
        "random+critic": random_critic_policy("MNL", seed),
        f"{name} S=1": agent_policy(agent, 1),
        f"{name} S=M": agent_policy(agent, "M"),
        f"{name} S=MNL": agent_policy(agent, "MNL"),
    }
    if mlp_agent is not None:
        policies["mlp S=MNL"] = agent_policy(mlp_agent, "MNL")
    if with_optimum:
        policies["optimum"] = optimum_policy()
    policies["greedy"] = greedy_decision
    policies["greedy-main"] = main_branch_greedy_decision
    return policies


def evaluate_policies(
    table: ExitTable,
    config: MECConfig,
    policies: Mapping[str, Policy],
    slots: int,
    seed: int,
) -> dict[str, Metrics]:
    """Each policy through :func:`~offload.experiments.runner.evaluate` on its own environment,
    all reset with ``seed`` (the same tasks, rates and capacities); Section VI-D metrics."""
    return {
        name: evaluate(OffloadEnv(table, config), policy, slots, seed)
        for name, policy in policies.items()
    }


@dataclass(frozen=True)
class AblationRun(Job, kind="ablation"):
    """The ablation experiment at one (scenario, M, τ, seed): every policy on the same slots."""

    experiment: str  # scenario name (runner.SCENARIOS)
    num_devices: int  # M
    slot_ms: float  # τ, ms
    seed: int
    train_slots: int  # Algorithm 1 slots for each trained agent
    eval_slots: int  # evaluation slots per policy
    exits_path: str
    base: MECConfig = MECConfig()  # the simulator apart from the run's scenario, M and τ

    def run(self) -> pd.DataFrame:
        """One row per policy (:func:`run_ablation`)."""
        return pd.DataFrame(run_ablation(self))


#: the trained agents of the ablation: the paper's GRLE, GRLE+ and the MLP actor on GRLE+'s features
ABLATION_AGENTS = ("GRLE", "GRLE+", "GRLE-MLP")


def run_ablation(run: AblationRun) -> list[dict]:
    """Train GRLE, GRLE+ and GRLE-MLP (Algorithm 1, seed ``run.seed``), then evaluate every
    ablation policy, plus the *untrained* GRLE with the critic (learning lift = trained −
    untrained), on the evaluation slots of seed ``seed + EVAL_SEED_OFFSET``; one row per policy.
    ``wall_s`` of a trained policy includes its agent's training time."""
    torch.set_num_threads(1)
    table = load_exit_table(run.exits_path, main_exit=None)
    cfg = mec_config(run.base, run.experiment, run.num_devices, run.slot_ms)
    agents, train_wall = {}, {}
    for name in ABLATION_AGENTS:
        t0 = time.perf_counter()
        agents[name] = make_agent(
            name=name,
            num_exits=table.num_exits,
            num_devices=run.num_devices,
            num_servers=cfg.num_servers,
            seed=run.seed,
        )
        train(agents[name], OffloadEnv(table, cfg), run.train_slots, run.seed)
        train_wall[name] = time.perf_counter() - t0
    untrained = make_agent(name="GRLE", num_exits=table.num_exits, seed=run.seed)
    policies = ablation_policies(
        agents["GRLE"],
        mlp_agent=agents["GRLE-MLP"],
        seed=run.seed,
        with_optimum=run.num_devices <= OPTIMUM_MAX_DEVICES,
    )
    trained_by = {name: "GRLE" for name in policies if name.startswith(("actor", "GRLE S="))}
    trained_by["mlp S=MNL"] = "GRLE-MLP"
    extra = {
        "GRLE+ actor": (actor_policy(agents["GRLE+"]), "GRLE+"),
        "GRLE+ S=MNL": (agent_policy(agents["GRLE+"], "MNL"), "GRLE+"),
        "untrained S=MNL": (agent_policy(untrained, "MNL"), None),
    }
    for name, (policy, by) in extra.items():
        policies[name] = policy
        if by is not None:
            trained_by[name] = by
    # the full method's variants again, counting how often the critic keeps the actor's own
    # candidate (index 0): the same decisions, plus that share
    picks: dict[str, list[bool]] = {}
    for name, agent in (
        ("GRLE S=MNL", agents["GRLE"]),
        ("mlp S=MNL", agents["GRLE-MLP"]),
        ("GRLE+ S=MNL", agents["GRLE+"]),
        ("untrained S=MNL", untrained),
    ):
        picks[name] = []
        policies[name] = counting_policy(agent, "MNL", picks[name])
    rows = []
    eval_seed = run.seed + EVAL_SEED_OFFSET
    for name, policy in policies.items():
        t0 = time.perf_counter()
        m = evaluate(OffloadEnv(table, cfg), policy, run.eval_slots, eval_seed)
        by = trained_by.get(name)
        kept = picks.get(name)
        setting = {"M": run.num_devices, "tau_ms": run.slot_ms, "seed": run.seed}
        tail = {
            "train_slots": run.train_slots if by else 0,
            "eval_slots": run.eval_slots,
            "actor_pick_share": float(np.mean(kept)) if kept else float("nan"),
            "wall_s": time.perf_counter() - t0 + (train_wall[by] if by else 0.0),
        }
        rows.append(result_row("ablation", name, cfg, setting, m, table, tail))
    return rows
