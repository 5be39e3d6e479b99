"""Command line: ``python -m offload.experiments <experiment> [options]``.

Experiments: ``convergence`` (Fig. 4), ``devices`` (Fig. 5), ``capacity`` (Fig. 6),
``fluctuation`` (Fig. 7), ``csi`` (Fig. 8), ``topology`` and ``paper`` (all of them), and two
studies of issue 10: ``ablation`` (what the actor, the critic's search and the graph each
contribute) and ``regime`` (compute scale × τ × ψ's steepness / on-time reward). Each writes
``<experiment>.csv`` (one row per method, scenario, M, τ, seed), ``<experiment>.png``, a Markdown
report (``report.md`` for ``paper``, ``<experiment>.md`` otherwise) and ``manifest.json`` into a
new run folder ``runs/offload/<experiment>-<UTC time>/``, or into ``--out``. Finished jobs are
saved as they finish: after a Ctrl-C, the same command with the same ``--out`` resumes.
Independent jobs go to ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from grle_common.cli import UserError, run_cli
from grle_common.fileio import write_text_atomic
from offload.exit_table import load_exit_table
from offload.experiments import store
from offload.experiments.jobs import build_jobs, run_jobs
from offload.experiments.outputs import rebuild_report, report_name, write_outputs
from offload.experiments.runner import SCENARIOS, default_exits
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
EXPERIMENTS = ("convergence", *SCENARIOS, "topology", "paper", "ablation", "regime")


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
}
QUICK_BY_EXPERIMENT = {"ablation": replace(QUICK, devices=(4,), taus=(30.0,))}
#: the studies run their own way whatever --engine says
ENGINE_NOTE = {
    "ablation": "Engine: one job per (scenario, M, τ, seed), every policy run by run "
    "(offload/experiments/ablation.py).",
    "regime": "Engine: lockstep, one job per (reward variant, method) over every (compute scale, "
    "τ, seed); the compute scale of each run is in the CSV, not the `MECConfig` line below "
    "(offload/experiments/regime.py).",
}
PAPER_PROTOCOL = {"eval_slots": 10_000}  # what Section VI-D states; anything less is "reduced"


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
        help="output folder (default: a new runs/offload/<experiment>-<UTC time>; the committed "
        "report is replaced only with --out results); the same --out resumes an interrupted run",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", help="seeds (default: 0 1 2 3 4, regime 0 1 2; --quick: 0)"
    )
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default: 2)")
    p.add_argument("--devices", type=int, nargs="+", help="M values of Figs. 5-8 and the ablation")
    p.add_argument("--regime-devices", type=int, help="M of the regime map (default: 10)")
    p.add_argument(
        "--regime-scales", type=float, nargs="+", help="compute scales of the regime map"
    )
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
    if args.rebuild_report and args.out is None:
        p.error("--rebuild-report needs --out, the folder that holds the CSVs")
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
    presets = QUICK_BY_EXPERIMENT if args.quick else FULL_BY_EXPERIMENT
    plan = presets.get(args.experiment, QUICK if args.quick else FULL)
    overrides = {
        "seeds": tuple(args.seeds) if args.seeds else None,
        "devices": tuple(args.devices) if args.devices else None,
        "regime_devices": args.regime_devices,
        "regime_scales": tuple(args.regime_scales) if args.regime_scales else None,
        "train_slots": args.train_slots,
        "eval_slots": args.eval_slots,
        "convergence_slots": args.convergence_slots,
    }
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


def header(
    experiment: str,
    plan: Plan,
    args: argparse.Namespace,
    argv: list[str],
    wall_s: float,
    resumed: str = "",
) -> list[str]:
    """The report's opening: command, machine, plan, simulator readings (``resumed``: a note)."""
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
        f"{wall_s / 60:.1f} min{resumed}. Exit table: `{store.display_path(args.exits)}`; run "
        "manifest: `manifest.json`.",
        "",
        "Plan: "
        + ", ".join(
            f"{k} = {v}" for k, v in asdict(plan).items() if _plan_field_used(k, experiment)
        )
        + ".",
        "",
        ENGINE_NOTE.get(
            experiment,
            f"Engine: {args.engine} (`--engine`; lockstep steps the runs of one "
            "method at one M together, loop runs them one by one; same protocol).",
        ),
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


def _plan_field_used(field: str, experiment: str) -> bool:
    """Whether a plan field sizes ``experiment`` (the studies' fields only their own runs)."""
    for study in ("ablation", "regime"):
        if field.startswith(study + "_"):
            return experiment == study
    return True


def run_config(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    """What decides the numbers of a run, as JSON-ready data: not --workers, --out or the exit
    table's path (its sha256 stands for it, so a run resumes from another working directory)."""
    config = {
        "experiment": args.experiment,
        "quick": args.quick,
        "plan": asdict(plan),
        "exits_sha256": store.file_sha256(args.exits),  # the content, wherever the file lies
        "sim": sim_overrides(args),
        "engine": args.engine,
        "save_actors": args.save_actors,
    }
    return json.loads(json.dumps(config))


class InputError(UserError):
    """Flags or an exit table that an experiment cannot run with; one sentence says what to do."""


def _check_inputs(args: argparse.Namespace) -> None:
    """Check the inputs (flags, exit table, server devices) before any work.

    Raises:
        InputError: flags that contradict each other, or a table without the servers' devices.
        ExitTableError: the exit table is missing or breaks the schema.
    """
    if args.experiment == "regime" and args.compute_scale is not None:
        raise InputError(
            "the regime map sweeps the compute scale itself; drop --compute-scale and pass "
            "the scales with --regime-scales (e.g. --regime-scales 1 2 4)."
        )
    table = load_exit_table(args.exits)
    servers = MECConfig(**sim_overrides(args)).server_devices
    missing = [d for d in servers if d not in table.devices]
    if missing:
        raise InputError(
            f"the exit table {args.exits} has no latency column for the edge server "
            f"type(s) {missing}; pass --server-devices with one of {list(table.devices)} per "
            f"edge server (e.g. --server-devices {table.devices[0]} {table.devices[0]})."
        )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 130 after a Ctrl-C, which says how
    to resume).

    Raises:
        UserError: bad inputs or an unusable output folder (``run_cli`` prints it as one line);
            nothing has been written then.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        return _main(args, argv)
    except KeyboardInterrupt:  # outside the job loop, which says more (see _main)
        print("\ninterrupted; run the same command again to resume.", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    if args.rebuild_report:
        return rebuild_report(args.experiment, Path(args.out))
    _check_inputs(args)
    plan = make_plan(args)
    out = Path(args.out) if args.out else store.default_out(args.experiment)
    resume_cmd = "python -m offload.experiments " + shlex.join(
        argv if args.out else [*argv, "--out", str(out)]
    )
    config = run_config(args, plan)
    md = out / report_name(args.experiment)
    manifest = out / store.MANIFEST
    if manifest.exists() and not (out / store.PROGRESS).exists() and md.exists():
        try:
            finished_config = json.loads(manifest.read_text()).get("config")
        except (OSError, ValueError, AttributeError):
            finished_config = None  # unreadable: run again, the new set replaces it
        if finished_config == config:
            print(f"nothing to do: {out} already holds this finished run ({md}).")
            return 0
    progress = store.Progress(out, config)
    store.check_writable(out)
    progress.open()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    sim = tuple(sim_overrides(args).items())
    # actors are saved beside the job results and moved into <out>/actors with the other files,
    # so an interrupted run never leaves a half-replaced actor set in <out>
    actors = progress.root / "actors"
    jobs = build_jobs(
        args.experiment, plan, args.exits, str(actors), sim, args.save_actors, args.engine
    )
    keys = [store.job_key(i, job) for i, job in enumerate(jobs)]
    finished = {i: r for i, k in enumerate(keys) if (r := progress.load(k)) is not None}
    if finished:
        print(f"resuming: {len(finished)} of {len(jobs)} jobs already finished in {out}")

    def done(index: int, result: tuple[str, pd.DataFrame]) -> None:
        progress.save(keys[index], result)
        finished[index] = result

    todo = {i: job for i, job in enumerate(jobs) if i not in finished}
    try:
        run_jobs(todo, args.workers, done, total=len(jobs))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {len(finished)} of {len(jobs)} jobs are saved in "
            f"{progress.root}; resume with: {resume_cmd}",
            file=sys.stderr,
        )
        return 130
    wall = time.perf_counter() - t0
    results: dict[str, list[pd.DataFrame]] = {}
    for i in range(len(jobs)):  # job order, not finishing order: the same files every time
        kind, frame = finished[i]
        results.setdefault(kind, []).append(frame)
    n_resumed = len(jobs) - len(todo)
    note = f"; {n_resumed} of {len(jobs)} jobs from an earlier invocation" if n_resumed else ""
    try:
        with store.staging(out) as staged:
            sections = write_outputs(
                results,
                staged,
                exit_table=store.display_path(args.exits),
                run=store.display_path(str(out)),
            )
            text = header(args.experiment, plan, args, argv, wall, note) + sections
            write_text_atomic(staged / md.name, "\n".join(text) + "\n")
            meta = store.manifest(
                argv,
                config,
                started=started,
                wall_s=wall,
                jobs_total=len(jobs),
                jobs_resumed=n_resumed,
                workers=args.workers,
                exits=store.display_path(args.exits),
            )
            write_text_atomic(staged / store.MANIFEST, meta)
            if actors.is_dir():
                os.replace(actors, staged / "actors")
            store.commit(staged, out)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted while writing: every job is saved in {progress.root}; "
            f"rerun to write the files: {resume_cmd}",
            file=sys.stderr,
        )
        return 130
    progress.remove()
    print(f"wrote {md} and the files beside it ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
