"""The scale experiment: GRLE actors trained on small city graphs, evaluated without
retraining on city networks of up to M = 1,000 devices and N = 50 edge servers.

Each learner (the paper's GRLE, GRLE+ and the edge MLP GRLE-MLP) runs Algorithm 1 for
``train_slots`` slots on a small city (``train_devices`` ≤ 20 devices, ``train_servers`` ≤ 4
ES, each device reaching its ``train_k`` nearest; the dense path and the paper's S = M·N·L
candidates, as at paper sizes), seed ``seed``. Then, frozen, it decides on every city of the
grid ``eval_devices`` × ``eval_servers`` (each device reaching its ``k`` nearest ES) for
``eval_slots`` slots from seed ``seed + EVAL_SEED_OFFSET``: sparse graph
(:mod:`offload.agents.sparse`) and the scaled critic (:mod:`offload.agents.scale_critic`:
``candidates`` quantised candidates, no repair), and, with ``repair_passes`` > 0, the same actor
and candidates with the repair (method ``<learner> +repair``: that many local-search passes over
the devices earning less than ``repair_below`` × their best reward alone). The references on
the same cities and seeds: the greedy, the local search from the greedy (2 passes) and random
decisions; the upper bound of every slot (:func:`~offload.sim.scale_refs.upper_bound`) gives
each method's predicted Q over the bound.

One job per (method, seed); one row per (method, M, N, seed): the Section VI-D metrics (true
values), ``pred_q`` (mean predicted Q per slot of the decisions taken), ``q_over_bound``
(Σ predicted Q / Σ bound over the method's slots), ``decision_ms`` (median wall time of one
slot's decision: encoder, actor, quantiser, scoring and repair for a learner) and
``actor_ms`` (median of the encoder + actor alone; NaN for a reference).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from offload.agents import LearningAgent, make_agent
from offload.agents.quantise import quantise_edges
from offload.agents.scale_critic import ScaleCriticConfig, score_candidates
from offload.agents.sparse import encode_sparse, sparse_relaxed
from offload.exit_table import ExitTable, load_exit_table
from offload.experiments.pool import Job
from offload.experiments.rows import result_row
from offload.experiments.runner import EVAL_SEED_OFFSET
from offload.sim import MECConfig, score_decisions
from offload.sim.city import CityConfig
from offload.sim.city_env import CityEnv
from offload.sim.metrics import BatchMetrics, Metrics
from offload.sim.scale_refs import greedy_decision, local_search, random_decision, upper_bound

#: the learners of the scale experiment and the references beside them
SCALE_LEARNERS = ("GRLE", "GRLE+", "GRLE-MLP")
SCALE_REFERENCES = ("greedy", "local search", "random")
SCALE_METHODS = SCALE_LEARNERS + SCALE_REFERENCES
#: the name of a learner's rows with the critic's repair
REPAIR_SUFFIX = " +repair"
#: the city scenario: 2 = every ES's capacity follows its own process (offload.sim.city)
SCALE_SCENARIO = 2
#: local-search passes of the "local search" reference
REFERENCE_PASSES = 2

Decide = Callable[[Any], np.ndarray]


def city_config(base: MECConfig, num_devices: int, num_servers: int, k: int) -> CityConfig:
    """The city of one cell: ``base``'s tasks, readings and server types, M devices, N ES,
    each device reaching its min(k, N) nearest."""
    return CityConfig(
        num_devices=num_devices,
        num_servers=num_servers,
        k_nearest=min(k, num_servers),
        server_devices=tuple(base.server_devices),
        task=base.replace(scenario=SCALE_SCENARIO),
    )


def train_on_city(
    method: str, table: ExitTable, config: CityConfig, seed: int, slots: int
) -> LearningAgent:
    """Algorithm 1 for ``slots`` slots on a (small) city from ``reset(seed=seed)``: the dense
    path and the learner's S (default M·N·L), as at paper sizes."""
    agent = make_agent(name=method, num_exits=table.num_exits, seed=seed)
    env = CityEnv(table, config)
    env.reset(seed=seed)
    for _ in range(slots):
        state = env.slot_state
        result = agent.learn(state, lambda c, s=state: score_decisions(s, c))
        env.step(result.decision)
    return agent


class _Timed:
    """A decision rule that records its wall time per slot (and, for a learner, the encoder +
    actor's), ms."""

    def __init__(self, decide: Decide) -> None:
        self.decide = decide
        self.decision_ms: list[float] = []
        self.actor_ms: list[float] = []

    def __call__(self, state: Any) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.decide(state)
        self.decision_ms.append(1e3 * (time.perf_counter() - t0))
        return out


def learner_policy(actor: torch.nn.Module, critic: ScaleCriticConfig) -> _Timed:
    """The frozen actor on the sparse graph + the scaled critic, timed."""

    def decide(state: Any) -> np.ndarray:
        t0 = time.perf_counter()
        graph = encode_sparse(state, actor.config)
        relaxed = sparse_relaxed(actor, graph).numpy()
        timed.actor_ms.append(1e3 * (time.perf_counter() - t0))
        dev, opt = graph.edge_index.numpy()
        cands = quantise_edges(relaxed, dev, opt, state.num_devices, critic.num_candidates)
        return score_candidates(state, cands, critic.repair_passes).decision

    timed = _Timed(decide)
    return timed


def reference_policy(method: str, seed: int) -> _Timed:
    """greedy, local search (from the greedy, ``REFERENCE_PASSES`` passes) or random (seeded)."""
    if method == "greedy":
        return _Timed(greedy_decision)
    if method == "local search":
        return _Timed(lambda s: local_search(s, max_passes=REFERENCE_PASSES).decision)
    rng = np.random.default_rng(seed)
    return _Timed(lambda s: random_decision(s, rng))


def evaluate_city(
    table: ExitTable, config: CityConfig, policy: _Timed, slots: int, seed: int
) -> tuple[Metrics, dict[str, float]]:
    """``policy`` for ``slots`` slots from ``reset(seed=seed)``: the Section VI-D metrics and
    the predicted-Q columns (``pred_q``, ``q_over_bound``, ``decision_ms``, ``actor_ms``)."""
    env = CityEnv(table, config)
    env.reset(seed=seed)
    acc = BatchMetrics(1, table.num_exits, config.num_servers)
    pred = bound = 0.0
    tasks = []
    for _ in range(slots):
        state = env.slot_state
        decision = policy(state)
        pred += float(score_decisions(state, decision)[0])
        bound += upper_bound(state)
        tasks.append(state.num_devices)
        acc.add(env.step(decision)[-1])
    extra = {
        "tasks_per_slot": float(np.mean(tasks)),
        "pred_q": pred / max(slots, 1),
        "bound_q": bound / max(slots, 1),
        "q_over_bound": pred / bound if bound > 0 else np.nan,
        "decision_ms": float(np.median(policy.decision_ms)),
        "actor_ms": float(np.median(policy.actor_ms)) if policy.actor_ms else np.nan,
    }
    return acc.result()[0], extra


@dataclass(frozen=True)
class ScaleRun(Job, kind="scale"):
    """One method at one seed: trained on the small city (learners), evaluated on the grid."""

    method: str  # SCALE_METHODS
    seed: int
    train_devices: int  # M of the training city
    train_servers: int  # N of the training city
    train_k: int  # each training device reaches its train_k nearest ES
    eval_devices: tuple[int, ...]  # M values of the evaluation grid
    eval_servers: tuple[int, ...]  # N values of the evaluation grid
    k: int  # each evaluation device reaches its k nearest ES
    train_slots: int
    eval_slots: int
    exits_path: str
    candidates: int = 16  # S of the scaled critic
    repair_passes: int = 1  # local-search passes of the "+repair" rows (0: no such rows)
    repair_below: float = 0.25  # the repair visits devices earning < this × their bound
    base: MECConfig = MECConfig()  # tasks, readings and server types (the scenario is 2)

    def run(self) -> pd.DataFrame:
        """One row per (M, N) of the grid (:func:`run_scale`)."""
        return pd.DataFrame(run_scale(self))

    @property
    def cost(self) -> float:
        """Relative cost, to schedule the longest jobs first."""
        per_slot = {"local search": 5.0, "greedy": 2.0, "random": 0.2}.get(self.method, 2.0)
        return per_slot * self.eval_slots * sum(self.eval_devices) * len(self.eval_servers)


def scale_runs(plan: Any, exits_path: str, base: MECConfig) -> list[ScaleRun]:
    """Every (method, seed) job of ``plan`` (a :class:`~offload.experiments.presets.Plan`),
    longest first."""
    runs = [
        ScaleRun(
            method,
            seed,
            plan.scale_train_devices,
            plan.scale_train_servers,
            plan.scale_train_k,
            tuple(plan.scale_devices),
            tuple(plan.scale_servers),
            plan.scale_k,
            plan.train_slots,
            plan.eval_slots,
            exits_path,
            plan.scale_candidates,
            plan.scale_repair_passes,
            plan.scale_repair_below,
            base,
        )
        for method in SCALE_METHODS
        for seed in plan.seeds
    ]
    return sorted(runs, key=lambda r: -r.cost)


def run_scale(run: ScaleRun) -> list[dict]:
    """Train (learners) and evaluate ``run.method`` on every city of the grid; one row each."""
    torch.set_num_threads(1)
    table = load_exit_table(run.exits_path, main_exit=None)
    learning = run.method in SCALE_LEARNERS
    t0 = time.perf_counter()
    actor = None
    if learning:
        small = city_config(run.base, run.train_devices, run.train_servers, run.train_k)
        actor = train_on_city(run.method, table, small, run.seed, run.train_slots).actor
    train_s = time.perf_counter() - t0
    variants = [(run.method, ScaleCriticConfig(run.candidates))]
    if learning and run.repair_passes > 0:
        repair = ScaleCriticConfig(run.candidates, run.repair_passes, run.repair_below)
        variants.append((run.method + REPAIR_SUFFIX, repair))
    rows = []
    for (m, n), (method, critic) in itertools.product(
        itertools.product(run.eval_devices, run.eval_servers), variants
    ):
        t1 = time.perf_counter()
        cfg = city_config(run.base, m, n, run.k)
        if actor is not None:
            policy = learner_policy(actor, critic)
        else:
            policy = reference_policy(run.method, run.seed + EVAL_SEED_OFFSET)
        metrics, extra = evaluate_city(
            table, cfg, policy, run.eval_slots, run.seed + EVAL_SEED_OFFSET
        )
        setting = {
            "M": m,
            "N": n,
            "k": min(run.k, n),
            "train_M": run.train_devices if learning else np.nan,
            "train_N": run.train_servers if learning else np.nan,
            "seed": run.seed,
        }
        tail = {
            **extra,
            "candidates": critic.num_candidates if learning else np.nan,
            "repair_passes": critic.repair_passes if learning else np.nan,
            "repair_below": critic.repair_below if critic.repair_passes else np.nan,
            "train_slots": run.train_slots if learning else 0,
            "eval_slots": run.eval_slots,
            "train_s": train_s if learning else 0.0,
            "wall_s": time.perf_counter() - t1,
        }
        rows.append(result_row("scale", method, cfg.task, setting, metrics, table, tail))

    return rows
