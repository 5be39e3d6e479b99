"""How big each experiment runs: the full and ``--quick`` presets, and what the paper states.

:class:`Plan` sizes a run (M values, τ values, seeds, training and evaluation slots); the command
line picks a preset with :func:`preset` and overrides single fields (``--seeds``,
``--train-slots``, …).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from offload.experiments.runner import SCENARIOS

SEED_MAX = 2**32 - 1  # the largest seed (numpy's legacy range; + EVAL_SEED_OFFSET fits int64)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How big an experiment run is."""

    devices: tuple[int, ...]  # M values of Figs. 5–8
    taus: tuple[float, ...]  # slot lengths τ, ms
    seeds: tuple[int, ...]  # independent runs per setting
    train_slots: int  # online training slots per learning agent (Algorithm 1)
    eval_slots: int  # frozen evaluation slots per method (the paper: 10,000)
    convergence_slots: int  # training slots of the convergence curves
    convergence_devices: int = 14  # M of Fig. 4 (Section VI-A: 14; the full preset uses 10, the
    # paper's reference M, because the exact optimum of every slot is ~15x slower at 14 when loaded)
    convergence_tau: float = 30.0  # τ of Fig. 4, ms
    topology_train_devices: int = 10  # M the topology agents are trained at
    topology_eval_devices: tuple[int, ...] = (4, 6, 8, 10, 12, 14, 20)  # M values at evaluation
    topology_max_devices: int = 20  # device slots of the dynamic network
    ablation_experiments: tuple[str, ...] = ("devices", "capacity")  # scenarios of the ablation
    regime_devices: int = 10  # M of the regime map
    regime_scales: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # compute scales (ES load)
    scale_devices: tuple[int, ...] = (50, 100, 200, 500, 1000)  # city M values at evaluation
    scale_servers: tuple[int, ...] = (5, 10, 20, 50)  # city N values at evaluation
    scale_k: int = 5  # each evaluation device reaches its k nearest ES
    scale_train_devices: int = 20  # M of the small training city
    scale_train_servers: int = 4  # N of the small training city
    scale_train_k: int = 2  # each training device reaches its k nearest ES (partial links)
    scale_candidates: int = 16  # S of the scaled critic (offload.agents.scale_critic)
    scale_repair_passes: int = 1  # local-search passes of the "<learner> +repair" rows (0: none)
    scale_repair_below: float = 0.25  # the repair visits devices earning < this × their bound


FULL = Plan(
    devices=(4, 6, 8, 10, 12, 14),
    taus=(10.0, 30.0),
    seeds=(0, 1, 2, 3, 4),
    train_slots=2000,
    eval_slots=10_000,
    convergence_slots=3000,
    convergence_devices=10,
)
QUICK = Plan(
    devices=(4, 10),
    taus=(10.0, 30.0),
    seeds=(0,),
    train_slots=30,
    eval_slots=30,
    convergence_slots=60,
    convergence_devices=6,
    topology_eval_devices=(4, 10, 12),
    topology_max_devices=12,
    ablation_experiments=("devices",),
    regime_devices=4,
    regime_scales=(1.0, 4.0),
)
#: full presets of the studies that differ from FULL (sized to the issue's cost targets; see
#: docs/offload-agents.md "Ablation and regime map" for the measured wall times)
FULL_BY_EXPERIMENT = {
    "ablation": replace(FULL, devices=(4, 10), eval_slots=2000),
    "regime": replace(FULL, seeds=(0, 1, 2), train_slots=1000, eval_slots=1000),
    "scale": replace(FULL, seeds=(0, 1, 2), train_slots=2000, eval_slots=40),
}
QUICK_BY_EXPERIMENT = {
    "ablation": replace(QUICK, devices=(4,), taus=(30.0,)),
    "scale": replace(
        QUICK, train_slots=200, eval_slots=8, scale_devices=(50, 200), scale_servers=(5, 10)
    ),
}
#: how the studies group their runs (the report header says it)
ENGINE_NOTE = {
    "ablation": "Engine: one job per (scenario, M, τ, seed), every policy run by run "
    "(offload/experiments/ablation.py).",
    "scale": "Engine: one job per (method, seed), trained on the small city, then every city "
    "of the grid slot by slot: sparse graph + scaled critic (offload/experiments/scale.py).",
    "regime": "Engine: lockstep, one job per (reward variant, method) over every (compute scale, "
    "τ, seed); the compute scale of each run is in the CSV, not the `MECConfig` line below "
    "(offload/experiments/regime.py).",
}
PAPER_PROTOCOL = {"eval_slots": 10_000}  # what Section VI-D states; anything less is "reduced"


def preset(experiment: str, quick: bool) -> Plan:
    """The plan of ``experiment`` before command-line overrides (``quick``: the smoke-test one)."""
    if quick:
        return QUICK_BY_EXPERIMENT.get(experiment, QUICK)
    return FULL_BY_EXPERIMENT.get(experiment, FULL)


# Peak memory of one job, measured with ru_maxrss on single jobs (docs/offload-agents.md,
# "Memory"). A lockstep group of K runs at M devices, O = N·L options per device, holds the
# quantiser's candidate arrays (K, 1 + 2·M·(O−1), M) and their scores: ≈ 90–160 bytes per
# K·M²·O for GRLE and DROOE at M = 400–800 (the M-linear terms fade above M ≈ 400).
GROUP_BYTES = 170  # per K·M²·O, a lockstep group (Figs. 4–8, topology, regime)
ABLATION_BYTES = 300  # per M²·O, one ablation run (S = M·N·L random candidates too): 290 at M = 400
CITY_BYTES = 150  # per M·N·L of one city of the scale grid (sparse path): 110–140 at M = 2000–4000
PROCESS_BYTES = 1 << 29  # a process with torch and the toolkit imported (0.7 GiB RSS, part shared)
CURVE_ROW_BYTES = 400  # one slot of a convergence curve, held until the files are written


class MemoryEstimate(NamedTuple):
    """The peak memory of a run's largest job, what that job is, and what shrinks it."""

    job_bytes: int  # the largest job's peak, bytes (without its process's PROCESS_BYTES)
    largest: str  # the largest job in words ("2 runs at M = 100000 with N·L = 10 options ...")
    lower: tuple[str, ...]  # the flags that shrink the estimate, the strongest first
    results_bytes: int = 0  # what the main process keeps of the jobs' rows until the end, bytes
    results: str = ""  # those rows in words ("2 convergence curves of 60 slots")


def memory_estimate(experiment: str, plan: Plan, *, servers: int, exits: int) -> MemoryEstimate:
    """The peak memory of ``experiment``'s largest job under ``plan`` with ``servers`` edge
    servers (N) and an exit table of ``exits`` exits (L), in bytes (see :data:`GROUP_BYTES`).

    The slots do not change a job's peak (its metrics are running sums, its replay memory has a
    fixed capacity) except the convergence curves, which keep one row per slot."""
    options = servers * exits  # O = N·L

    def group(runs: int, m: int, lower: tuple[str, ...]) -> MemoryEstimate:
        what = f"{runs} run{'s' * (runs > 1)} at M = {m} with N·L = {options} options per device"
        return MemoryEstimate(GROUP_BYTES * runs * m * m * options, what, lower)

    jobs: list[MemoryEstimate] = []
    curves = 0
    if experiment in ("convergence", "paper"):
        curves = CURVE_ROW_BYTES * 2 * len(plan.seeds) * plan.convergence_slots  # GRLE, DROOE
        jobs.append(group(1, plan.convergence_devices, ("--seeds", "--workers")))
    if experiment in ("topology", "paper"):
        m = max(*plan.topology_eval_devices, plan.topology_max_devices)
        jobs.append(group(len(plan.seeds), m, ("--seeds", "--workers")))
    if experiment in (*SCENARIOS, "paper"):
        scenarios = len(SCENARIOS) if experiment == "paper" else 1  # every (scenario, τ, seed)
        runs = scenarios * len(plan.taus) * len(plan.seeds)
        jobs.append(group(runs, max(plan.devices), ("--devices", "--seeds", "--workers")))
    if experiment == "regime":  # a job: every (compute scale, τ, seed) of one method
        runs = len(plan.regime_scales) * len(plan.taus) * len(plan.seeds)
        lower = ("--regime-devices", "--regime-scales", "--seeds", "--workers")
        jobs.append(group(runs, plan.regime_devices, lower))
    if experiment == "ablation":  # run by run
        m = max(plan.devices)
        what = f"1 run at M = {m} with N·L = {options} options per device"
        jobs.append(
            MemoryEstimate(ABLATION_BYTES * m * m * options, what, ("--devices", "--workers"))
        )
    if experiment == "scale":  # one city of the grid at a time
        m, n = max(plan.scale_devices), max(plan.scale_servers)
        what = f"a city of M = {m} devices and N = {n} edge servers"
        lower = ("--scale-devices", "--scale-servers", "--workers")
        jobs.append(MemoryEstimate(CITY_BYTES * m * n * exits, what, lower))
    largest = max(jobs, key=lambda job: job.job_bytes)
    if not curves:
        return largest
    lower = ("--convergence-slots", "--seeds") if curves > largest.job_bytes else largest.lower
    n = 2 * len(plan.seeds)
    what = f"{n} convergence curves of {plan.convergence_slots} slots"
    return largest._replace(results_bytes=curves, results=what, lower=lower)
