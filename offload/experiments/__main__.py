"""Command line: ``python -m offload.experiments <experiment> [options]``.

Experiments: ``convergence`` (Fig. 4), ``devices`` (Fig. 5), ``capacity`` (Fig. 6),
``fluctuation`` (Fig. 7), ``csi`` (Fig. 8), ``topology`` and ``paper`` (all of them). Each writes
``<out>/<experiment>.csv`` (one row per method, scenario, M, τ, seed), ``<out>/<experiment>.png``
and a Markdown report (``<out>/report.md`` for ``paper``, ``<out>/<experiment>.md`` otherwise).
Independent runs go to ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from offload.agents import AGENT_NAMES
from offload.exit_table import load_exit_table
from offload.experiments import report
from offload.experiments.convergence import ConvergenceRun, run_convergence
from offload.experiments.lockstep import groups_for, run_group
from offload.experiments.runner import (
    REFERENCE_METHODS,
    SCENARIOS,
    Cell,
    default_exits,
    run_cell,
)
from offload.experiments.topology import TopologyRun, run_topology
from offload.sim import MECConfig

READINGS = (
    "server_devices",
    "kb_reading",
    "psi_form",
    "late_policy",
    "completion_origin",
    "rate_model",
    "compute_scale",
    "deadline_ms",
)
EXPERIMENTS = ("convergence", *SCENARIOS, "topology", "paper")


@dataclass(frozen=True)
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


FULL = Plan(
    devices=(4, 6, 8, 10, 12, 14),
    taus=(10.0, 30.0),
    seeds=(0, 1, 2),
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
)
PAPER_PROTOCOL = {"eval_slots": 10_000}  # what Section VI-D states; anything less is "reduced"


def _display_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (reports stay portable)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m offload.experiments", description=__doc__.split("\n")[0]
    )
    p.add_argument("experiment", choices=EXPERIMENTS)
    p.add_argument(
        "--quick", action="store_true", help="tiny smoke-test sizes (seconds, not minutes)"
    )
    p.add_argument(
        "--exits", default=default_exits(), help="exit table CSV (default: the paper's Table I)"
    )
    p.add_argument(
        "--out",
        help="output folder (default: results; --quick: results/_scratch/quick, so a smoke run "
        "never overwrites the committed report)",
    )
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2; --quick: 0)")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default: 2)")
    p.add_argument("--devices", type=int, nargs="+", help="M values of Figs. 5-8")
    p.add_argument("--train-slots", type=int, help="training slots per learning agent")
    p.add_argument("--eval-slots", type=int, help="evaluation slots per method (paper: 10000)")
    p.add_argument("--convergence-slots", type=int, help="slots of the convergence curves")
    p.add_argument(
        "--save-actors",
        action="store_true",
        help="also save the actors of every Figs. 5-8 cell (convergence and topology actors "
        "are always saved) to <out>/actors",
    )
    p.add_argument(
        "--engine",
        choices=("lockstep", "loop"),
        default="lockstep",
        help="lockstep (default): the runs of one method at one M step together, batched "
        "(offload/experiments/lockstep.py); loop: one run at a time (the reference "
        "implementation, same protocol)",
    )
    p.add_argument(
        "--rebuild-report",
        action="store_true",
        help="run nothing: redraw the figures and rewrite the report from the CSVs in --out "
        "(keeping the report's header: command, machine, plan, wall time)",
    )
    p.add_argument(
        "--server-devices",
        nargs="+",
        metavar="DEVICE",
        help="device type of each edge server, one exit-table latency column per ES (default: "
        "the paper's RTX_2080TI GTX_1080TI; a CPU table: e.g. --server-devices cpu_1t cpu_1t)",
    )
    p.add_argument(
        "--compute-scale",
        type=float,
        help="MECConfig.compute_scale: multiplies every exit latency (docs/calibration.md: 4 = the "
        "paper's regime); default: the simulator's default",
    )
    args = p.parse_args(argv)
    if args.out is None:
        args.out = "results/_scratch/quick" if args.quick else "results"
    return args


def sim_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `MECConfig` fields set on the command line (the rest keep the simulator's defaults)."""
    overrides: dict[str, Any] = {}
    if args.server_devices:
        overrides["server_devices"] = tuple(args.server_devices)
    if args.compute_scale is not None:
        overrides["compute_scale"] = args.compute_scale
    return overrides


def make_plan(args: argparse.Namespace) -> Plan:
    """The preset (full or --quick) with the command-line overrides applied."""
    plan = QUICK if args.quick else FULL
    overrides = {
        "seeds": tuple(args.seeds) if args.seeds else None,
        "devices": tuple(args.devices) if args.devices else None,
        "train_slots": args.train_slots,
        "eval_slots": args.eval_slots,
        "convergence_slots": args.convergence_slots,
    }
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


def build_jobs(
    experiment: str,
    plan: Plan,
    exits: str,
    actors_dir: str,
    sim: tuple = (),
    save_cell_actors: bool = False,
    engine: str = "lockstep",
) -> list[tuple[str, object]]:
    """(kind, run) pairs, longest first; ``sim`` = MECConfig overrides for every run."""
    names = (
        list(SCENARIOS)
        if experiment == "paper"
        else [experiment]
        if experiment in SCENARIOS
        else []
    )
    jobs: list[tuple[str, object]] = []
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
                    sim=sim,
                )
                jobs.append(("convergence", run))
    if experiment in ("topology", "paper"):
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
            sim=sim,
        )
        jobs.append(("topology", run))
    if engine == "lockstep":
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
            sim=sim,
        )
        return jobs + [("group", g) for g in groups if g.runs]
    cells = [
        Cell(
            name,
            m,
            tau,
            seed,
            plan.train_slots,
            plan.eval_slots,
            exits,
            actors_dir=actors_dir if save_cell_actors else None,
            sim=sim,
        )
        for name in names
        for m in sorted(plan.devices, reverse=True)
        for tau in plan.taus
        for seed in plan.seeds
    ]
    return jobs + [("cell", c) for c in cells]


def _run(job: tuple[str, object]):
    kind, run = job
    if kind == "convergence":
        return kind, run_convergence(run)
    if kind == "topology":
        return kind, pd.DataFrame(run_topology(run))
    if kind == "group":
        return "cell", pd.DataFrame(run_group(run))
    return kind, pd.DataFrame(run_cell(run))


def run_jobs(jobs: list[tuple[str, object]], workers: int) -> dict[str, list[pd.DataFrame]]:
    """Run every job (in ``workers`` processes when > 1), with a progress bar."""
    out: dict[str, list[pd.DataFrame]] = {}
    bar = tqdm(total=len(jobs), desc="runs", unit="run")
    if workers <= 1:
        for job in jobs:
            kind, frame = _run(job)
            out.setdefault(kind, []).append(frame)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for fut in as_completed([pool.submit(_run, j) for j in jobs]):
                kind, frame = fut.result()
                out.setdefault(kind, []).append(frame)
                bar.update()
    bar.close()
    return out


def header(
    experiment: str, plan: Plan, args: argparse.Namespace, argv: list[str], wall_s: float
) -> list[str]:
    reduced = [
        f"{k} = {getattr(plan, k)} (paper: {v})"
        for k, v in PAPER_PROTOCOL.items()
        if getattr(plan, k) < v
    ]
    title = "paper experiments" if experiment == "paper" else f"experiment `{experiment}`"
    sim_config = MECConfig(**sim_overrides(args))
    lines = [
        f"# GRLE reproduction: {title}",
        "",
        f"Command: `python -m offload.experiments {shlex.join(argv)}`",
        "",
        f"Made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node() or 'unknown host'} "
        f"({platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores "
        f"available, {args.workers} worker processes, torch {torch.__version__}, "
        f"{'CUDA available but unused' if torch.cuda.is_available() else 'CPU only'}); wall time "
        f"{wall_s / 60:.1f} min. Exit table: `{_display_path(args.exits)}`.",
        "",
        "Plan: " + ", ".join(f"{k} = {v}" for k, v in asdict(plan).items()) + ".",
        "",
        f"Engine: {args.engine} (`--engine`; lockstep steps the runs of one "
        "method at one M together, loop runs them one by one; same protocol).",
        "",
        "Simulator readings (`MECConfig` as run, docs/calibration.md): "
        + ", ".join(f"{k} = {getattr(sim_config, k, None)!r}" for k in READINGS)
        + ".",
        "",
    ]
    if args.compute_scale not in (None, 1.0):
        lines += [
            f"**Calibrated regime**: every exit latency of the table × {args.compute_scale:g} "
            "(`MECConfig.compute_scale`, docs/calibration.md finding 4); with the paper's stated "
            "numbers (× 1) almost every task meets its deadline and the methods barely differ.",
            "",
        ]
    if args.quick or reduced:
        why = "--quick smoke run" if args.quick else "; ".join(reduced)
        lines += [
            f"**REDUCED configuration** ({why}): the numbers are indicative, not the paper's protocol.",
            "",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.rebuild_report:
        return rebuild_report(args.experiment, Path(args.out))
    try:
        table = load_exit_table(args.exits)
    except (OSError, ValueError) as err:
        print(f"error: cannot use exit table {args.exits}: {err}", file=sys.stderr)
        return 2
    servers = MECConfig(**sim_overrides(args)).server_devices
    missing = [d for d in servers if d not in table.devices]
    if missing:
        print(
            f"error: the exit table {args.exits} has no latency column for the edge server "
            f"type(s) {missing}; pass --server-devices with one of {list(table.devices)} per "
            f"edge server (e.g. --server-devices {table.devices[0]} {table.devices[0]}).",
            file=sys.stderr,
        )
        return 2
    plan = make_plan(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sim = tuple(sim_overrides(args).items())
    jobs = build_jobs(
        args.experiment,
        plan,
        args.exits,
        str(out / "actors"),
        sim,
        args.save_actors,
        args.engine,
    )
    results = run_jobs(jobs, args.workers)
    wall = time.perf_counter() - t0

    sections = write_outputs(results, out)
    md = out / ("report.md" if args.experiment == "paper" else f"{args.experiment}.md")
    report.write_text(
        md, "\n".join(header(args.experiment, plan, args, argv, wall) + sections) + "\n"
    )
    print(f"wrote {md} ({wall / 60:.1f} min)")
    return 0


def rebuild_report(experiment: str, out: Path) -> int:
    """Figures and report again from ``out``'s CSVs; the old report's header is kept."""
    md = out / ("report.md" if experiment == "paper" else f"{experiment}.md")
    if not md.exists():
        print(f"error: no report at {md} to rebuild; run the experiment first.", file=sys.stderr)
        return 2
    old = md.read_text().splitlines()
    first = next((i for i, line in enumerate(old) if line.startswith("#" * 2)), len(old))
    results: dict[str, list[pd.DataFrame]] = {}
    for kind, names in (
        ("convergence", ["convergence"]),
        ("cell", list(SCENARIOS)),
        ("topology", ["topology"]),
    ):
        for name in names:
            if (out / f"{name}.csv").exists():
                results.setdefault(kind, []).append(
                    pd.read_csv(out / f"{name}.csv", keep_default_na=kind != "topology")
                )
    if "topology" in results:
        for frame in results["topology"]:
            for col in ("avg_accuracy", "ssp", "throughput", "mean_q", "M"):
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
    report.write_text(md, "\n".join(old[:first] + write_outputs(results, out)) + "\n")
    print(f"rebuilt {md}")
    return 0


def write_outputs(results: dict[str, list[pd.DataFrame]], out: Path) -> list[str]:
    """CSV files, figures and the report's sections for whatever ran."""
    sections: list[str] = []
    if "convergence" in results:
        curves = pd.concat(results["convergence"]).sort_values(["method", "seed", "slot"])
        report.write_csv(curves, out / "convergence.csv")
        report.plot_convergence(curves, out / "convergence.png")
        sections += report.convergence_section(curves)
    if "cell" in results:
        rows = pd.concat(results["cell"]).sort_values(
            ["experiment", "method", "M", "tau_ms", "seed"]
        )
        for name, grp in rows.groupby("experiment", sort=False):
            report.write_csv(grp, out / f"{name}.csv")
            report.plot_scenario(grp, name, out / f"{name}.png")
        for name in SCENARIOS:
            grp = rows[rows["experiment"] == name]
            if len(grp):
                sections += report.scenario_section(grp, name)
    if "topology" in results:
        topo = pd.concat(results["topology"]).sort_values(["method", "network", "seed"])
        report.write_csv(topo, out / "topology.csv")
        report.plot_topology(topo, out / "topology.png")
        sections += report.topology_section(topo)
    sections += report.differences_section(
        pd.concat(results["cell"]) if "cell" in results else None,
        pd.concat(results["convergence"]) if "convergence" in results else None,
    )
    return sections


if __name__ == "__main__":
    raise SystemExit(main())
