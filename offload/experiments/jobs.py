"""The jobs of an experiment, in the order they are run and saved (their execution:
:mod:`offload.experiments.pool`)."""

from __future__ import annotations

from offload.agents import AGENT_NAMES
from offload.experiments.ablation import AblationRun
from offload.experiments.convergence import ConvergenceRun
from offload.experiments.lockstep import groups_for
from offload.experiments.pool import Job
from offload.experiments.presets import Plan
from offload.experiments.regime import regime_runs
from offload.experiments.runner import REFERENCE_METHODS, SCENARIOS
from offload.experiments.scale import scale_runs
from offload.experiments.topology import TOPOLOGY_METHODS, TopologyRun
from offload.sim import MECConfig


def build_jobs(
    experiment: str,
    plan: Plan,
    exits: str,
    actors_dir: str,
    base: MECConfig,
    save_cell_actors: bool = False,
) -> list[Job]:
    """The jobs of ``experiment``, longest first; ``base``: the simulator of every run (each job
    sets the scenario, M and τ of its runs, the regime map also the compute scale and reward).
    The order is part of the results: a lockstep group's runs step together (float rounding of
    the batched kernels), and the files list rows in job order."""
    names = (
        list(SCENARIOS)
        if experiment == "paper"
        else [experiment]
        if experiment in SCENARIOS
        else []
    )
    jobs: list[Job] = []
    if experiment == "ablation":
        return [
            AblationRun(e, m, tau, seed, plan.train_slots, plan.eval_slots, exits, base)
            for m in sorted(plan.devices, reverse=True)
            for e in plan.ablation_experiments
            for tau in plan.taus
            for seed in plan.seeds
        ]
    if experiment == "scale":
        return list(scale_runs(plan, exits, base))
    if experiment == "regime":
        runs = regime_runs(
            plan.regime_devices,
            tuple(plan.regime_scales),
            tuple(plan.taus),
            tuple(plan.seeds),
            train_slots=plan.train_slots,
            eval_slots=plan.eval_slots,
            exits_path=exits,
            base=base,
        )
        return list(runs)
    if experiment in ("convergence", "paper"):
        for method in ("GRLE", "DROOE"):
            for seed in plan.seeds:
                run = ConvergenceRun(
                    method,
                    plan.convergence_devices,
                    plan.convergence_tau,
                    seed,
                    plan.convergence_slots,
                    exits,
                    actors_dir=actors_dir,
                    base=base,
                )
                jobs.append(run)
    if experiment in ("topology", "paper"):
        for method in TOPOLOGY_METHODS:  # one job per method: no single job dominates the wall
            run = TopologyRun(
                tuple(plan.seeds),
                plan.topology_train_devices,
                plan.topology_eval_devices,
                plan.topology_max_devices,
                30.0,
                plan.train_slots,
                plan.eval_slots,
                exits,
                actors_dir=actors_dir,
                base=base,
                methods=(method,),
            )
            jobs.append(run)
    groups = groups_for(
        names,
        tuple(sorted(plan.devices, reverse=True)),
        plan.taus,
        plan.seeds,
        AGENT_NAMES + REFERENCE_METHODS,
        train_slots=plan.train_slots,
        eval_slots=plan.eval_slots,
        exits_path=exits,
        actors_dir=actors_dir if save_cell_actors else None,
        base=base,
    )
    return jobs + [g for g in groups if g.runs]
