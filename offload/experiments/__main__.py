"""Command line: ``python -m offload.experiments <experiment> [options]``.

Experiments: ``convergence`` (Fig. 4), ``devices`` (Fig. 5), ``capacity`` (Fig. 6),
``fluctuation`` (Fig. 7), ``csi`` (Fig. 8), ``topology`` and ``paper`` (all of them), two
studies of the paper's actor: ``ablation`` (what the actor, the critic's search and the graph
each contribute) and ``regime`` (compute scale × τ × ψ's steepness / on-time reward), and
``scale`` (actors trained on small city graphs, evaluated at up to 1,000 devices and 50 edge
servers). Each writes
``<experiment>.csv`` (one row per method, scenario, M, τ, seed), ``<experiment>.png``, a Markdown
report (``report.md`` for ``paper``, ``<experiment>.md`` otherwise) and ``manifest.json`` into a
new run folder ``runs/offload/<experiment>-<UTC time>/``, or into ``--out``. Finished jobs are
saved as they finish: after a Ctrl-C or a lost Ray cluster, the same command with the same
``--out`` resumes. A folder that holds another run is refused unless ``--overwrite``
(:func:`offload.experiments.store.claim`). Independent jobs go to ``--workers`` processes, or with
``--backend ray`` to Ray tasks on a local Ray instance or on the cluster at ``--address`` (the
same files either way). Every number is checked, and the run's memory estimated, before any
folder is made.

Exit status: 0 done (or nothing to do); 2 bad input or an unusable folder (``error:`` line,
nothing written); 1 Ray lost a node or the connection (``error:`` line with the jobs saved and
the command that resumes); 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from exit_tables.schema import add_main_exit_flag
from grle_common.cli import UserError, bounded, run_cli
from grle_common.fileio import created_root, write_text_atomic
from offload.exit_table import load_exit_table
from offload.experiments import ray_backend, store
from offload.experiments.header import header
from offload.experiments.jobs import build_jobs
from offload.experiments.outputs import rebuild_report, report_name, write_outputs
from offload.experiments.pool import BACKENDS, run_jobs
from offload.experiments.presets import PROCESS_BYTES, SEED_MAX, Plan, memory_estimate, preset
from offload.experiments.runner import SCENARIOS, default_exits
from offload.sim import MECConfig

#: the list flags that must not name a value twice (each value is a cell of the grid)
LIST_FLAGS = ("seeds", "devices", "regime_scales", "scale_devices", "scale_servers")

EXPERIMENTS = ("convergence", *SCENARIOS, "topology", "paper", "ablation", "regime", "scale")


def parser() -> argparse.ArgumentParser:
    """The command line's options; every number has its valid range (`bounded`)."""
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
    add_main_exit_flag(p)
    p.add_argument(
        "--out",
        help="output folder (default: a new runs/offload/<experiment>-<UTC time>; the committed "
        "report is replaced only with --out results); the same --out resumes an interrupted run",
    )
    p.add_argument(
        "--seeds",
        type=bounded(int, 0, SEED_MAX),
        nargs="+",
        help="seeds (default: 0 1 2 3 4, regime 0 1 2; --quick: 0)",
    )
    p.add_argument(
        "--workers",
        type=bounded(int, 1),
        default=2,
        help="parallel processes; with --backend ray and no --address, the CPUs of the local Ray "
        "instance (default: 2)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="where the jobs run: local processes, or Ray tasks (needs pip install -e "
        "'.[cluster]'); the files are the same (default: local)",
    )
    p.add_argument(
        "--address",
        help="with --backend ray: the running Ray cluster to use (auto, HOST:6379 or "
        "ray://HOST:10001; default: start a local Ray instance of --workers CPUs)",
    )
    count, positive = bounded(int, 1), bounded(float, 0, low_open=True)
    p.add_argument(
        "--devices", type=count, nargs="+", help="M values of Figs. 5-8 and the ablation"
    )
    p.add_argument("--regime-devices", type=count, help="M of the regime map (default: 10)")
    p.add_argument(
        "--regime-scales", type=positive, nargs="+", help="compute scales of the regime map"
    )
    p.add_argument(
        "--scale-devices", type=count, nargs="+", help="city M values of the scale experiment"
    )
    p.add_argument(
        "--scale-servers", type=count, nargs="+", help="city N values of the scale experiment"
    )
    p.add_argument(
        "--scale-candidates", type=count, help="S of the scaled critic (scale; default 16)"
    )
    p.add_argument(
        "--train-slots",
        type=bounded(int, 0),
        help="training slots per learning agent (0: evaluate untrained actors)",
    )
    p.add_argument("--eval-slots", type=count, help="evaluation slots per method (paper: 10000)")
    p.add_argument("--convergence-slots", type=count, help="slots of the convergence curves")
    p.add_argument(
        "--save-actors",
        action="store_true",
        help="also save the actors of every Figs. 5-8 cell (convergence and topology actors "
        "are always saved) to <out>/actors",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="let this run replace a folder that holds another run: an unfinished one is "
        "discarded at the start, a finished one's files are replaced whole when this run "
        "finishes (without it such a folder is refused)",
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
        type=positive,
        help="MECConfig.compute_scale: multiplies every exit latency (docs/calibration.md: 4 = the "
        "paper's regime); default: the simulator's default",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    if args.rebuild_report and args.out is None:
        p.error("--rebuild-report needs --out, the folder that holds the CSVs")
    if args.address is not None and args.backend != "ray":
        p.error("--address names a Ray cluster; add --backend ray")
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
    overrides = {
        "seeds": tuple(args.seeds) if args.seeds else None,
        "devices": tuple(args.devices) if args.devices else None,
        "regime_devices": args.regime_devices,
        "regime_scales": tuple(args.regime_scales) if args.regime_scales else None,
        "train_slots": args.train_slots,
        "eval_slots": args.eval_slots,
        "convergence_slots": args.convergence_slots,
        "scale_devices": tuple(args.scale_devices) if args.scale_devices else None,
        "scale_servers": tuple(args.scale_servers) if args.scale_servers else None,
        "scale_candidates": args.scale_candidates,
    }
    plan = preset(args.experiment, args.quick)
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


def run_config(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    """What decides the numbers of a run, as JSON-ready data: not --workers, --backend,
    --address, --out or the exit table's path (its sha256 stands for it, so a run resumes from
    another working directory, or on another backend)."""
    config = {
        "experiment": args.experiment,
        "quick": args.quick,
        "plan": plan_config(args.experiment, plan),
        "exits_sha256": store.file_sha256(args.exits),  # the content, wherever the file lies
        "sim": sim_overrides(args),
        "save_actors": args.save_actors,
    }
    return json.loads(json.dumps(config))


def plan_config(experiment: str, plan: Plan) -> dict[str, Any]:
    """The plan's fields as recorded in the run's configuration: the ``scale_`` fields only for
    the ``scale`` experiment, so that the runs of every other experiment keep the
    configuration they had before the scale study (and resume or finish as before)."""
    fields = asdict(plan)
    if experiment == "scale":
        return fields
    return {k: v for k, v in fields.items() if not k.startswith("scale_")}


class InputError(UserError):
    """Flags or an exit table that an experiment cannot run with; one sentence says what to do."""


def _check_inputs(args: argparse.Namespace) -> tuple[MECConfig, Plan]:
    """Check the inputs (flags, exit table, server devices, the run's memory) before any work or
    folder; returns the simulator of every run (`MECConfig` with the flags' overrides; each job
    sets its cells) and the plan. The ranges of single numbers are argparse's (`bounded`).

    Raises:
        InputError: flags that contradict each other, a value given twice, a table without the
            servers' devices, or a run that needs more memory than the machine has.
        ExitTableError: the exit table is missing or breaks the schema.
        BackendError: ``--backend ray`` without Ray installed, or an address Ray cannot read.
    """
    if args.backend == "ray":
        ray_backend.require_ray()
        ray_backend.check_address(args.address)
    if args.experiment == "regime" and args.compute_scale is not None:
        raise InputError(
            "the regime map sweeps the compute scale itself; drop --compute-scale and pass "
            "the scales with --regime-scales (e.g. --regime-scales 1 2 4)."
        )
    for name in ("compute_scale", "regime_scales"):
        values = getattr(args, name) or []
        for x in values if isinstance(values, list) else [values]:
            if not math.isfinite(x):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number (got {x}).")
    for name in LIST_FLAGS:
        values = getattr(args, name) or []
        twice = sorted({x for x in values if values.count(x) > 1})
        if twice:
            raise InputError(
                f"--{name.replace('_', '-')} names {', '.join(map(str, twice))} more than once; "
                "give each value once."
            )
    table = load_exit_table(args.exits, main_exit=args.main_exit)
    try:
        base = MECConfig(**sim_overrides(args))
    except ValueError as exc:  # a simulator flag out of range: MECConfig says which and why
        raise InputError(f"{exc} Fix the flag and run again.") from None
    missing = [d for d in base.server_devices if d not in table.devices]
    if missing:
        raise InputError(
            f"the exit table {args.exits} has no latency column for the edge server "
            f"type(s) {missing}; pass --server-devices with one of {list(table.devices)} per "
            f"edge server (e.g. --server-devices {table.devices[0]} {table.devices[0]})."
        )
    plan = make_plan(args)
    _check_memory(args, plan, base, table.num_exits)
    return base, plan


def _check_memory(args: argparse.Namespace, plan: Plan, base: MECConfig, exits: int) -> None:
    """Refuse a run whose processes together would need more memory than this machine has
    (`presets.memory_estimate`); a run on a Ray cluster (``--address``) is left to its nodes.

    Raises:
        InputError: the estimate exceeds the machine's memory; the sentence says what to lower.
    """
    have = store.memory_bytes()
    if args.address is not None or have is None:
        return
    est = memory_estimate(args.experiment, plan, servers=base.num_servers, exits=exits)
    jobs = len(build_jobs(args.experiment, plan, args.exits, "", base, args.save_actors))
    local = args.backend == "local" and (args.workers <= 1 or jobs <= 1)
    processes = 1 if local else min(args.workers, jobs)
    need = processes * (PROCESS_BYTES + est.job_bytes) + est.results_bytes
    if need > have:
        each = f"{processes} processes, each" if processes > 1 else "1 process"
        lower = est.lower if processes > 1 else tuple(f for f in est.lower if f != "--workers")
        kept = f", and {est.results}" if est.results_bytes else ""
        flags = " or ".join([", ".join(lower[:-1]), lower[-1]] if len(lower) > 1 else lower)
        raise InputError(
            f"this run needs about {_size(need)} of memory ({each} with a job of {est.largest}"
            f"{kept}) but this machine has {_size(have)}; lower {flags}."
        )


def _size(n: float) -> str:
    """Bytes in GiB, or TiB from 1024 GiB, one decimal."""
    gib = n / 2**30
    return f"{gib / 1024:.1f} TiB" if gib >= 1024 else f"{gib:.1f} GiB"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0; 1 after a lost Ray cluster and 130
    after a Ctrl-C, each with the command that resumes).

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
    base, plan = _check_inputs(args)
    out = Path(args.out) if args.out else store.default_out(args.experiment)
    resume_cmd = "python -m offload.experiments " + shlex.join(
        argv if args.out else [*argv, "--out", str(out)]
    )
    config = run_config(args, plan)
    md = out / report_name(args.experiment)
    claim = store.claim(out, config, report=md.name, overwrite=args.overwrite)
    if claim.done:
        print(f"nothing to do: {out} already holds this finished run ({md}).")
        return 0
    with _connected(args):  # a Ray cluster that does not answer fails here, before any write
        return _run(
            args, argv, base=base, plan=plan, out=out, config=config, claim=claim, resume=resume_cmd
        )


def _connected(args: argparse.Namespace) -> AbstractContextManager[object]:
    """The Ray connection of ``--backend ray`` (its jobs run on it), or nothing to do."""
    if args.backend != "ray":
        return nullcontext()
    return ray_backend.session(args.address, args.workers)


def _run(
    args: argparse.Namespace,
    argv: list[str],
    *,
    base: MECConfig,
    plan: Plan,
    out: Path,
    config: dict[str, Any],
    claim: store.Claim,
    resume: str,
) -> int:
    """Run the experiment's jobs (those saved before are loaded) and write its files to ``out``;
    a run that ends before any job finished leaves nothing behind."""
    progress = store.Progress(out, config)
    # actors are saved beside the job results and moved into <out>/actors with the other files,
    # so an interrupted run never leaves a half-replaced actor set in <out>
    actors = progress.root / "actors"
    jobs = build_jobs(args.experiment, plan, args.exits, str(actors), base, args.save_actors)
    keys = [store.job_key(i, job) for i, job in enumerate(jobs)]
    finished: dict[int, pd.DataFrame] = {}

    def done(index: int, rows: pd.DataFrame) -> None:
        progress.save(keys[index], rows)
        finished[index] = rows

    created = created_root(out)
    store.check_writable(out)
    if claim.discard:
        print(f"discarding the unfinished run of other settings in {out}")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        progress.open(discard=claim.discard)
        # the rows of each finished job (anything else under its key, e.g. an unreadable file,
        # and the job runs again)
        for i, key in enumerate(keys):
            if isinstance(rows := progress.load(key), pd.DataFrame):
                finished[i] = rows
        if finished:
            print(f"resuming: {len(finished)} of {len(jobs)} jobs already finished in {out}")
        todo = {i: job for i, job in enumerate(jobs) if i not in finished}
        run_jobs(
            todo, args.workers, done, total=len(jobs), backend=args.backend, address=args.address
        )
    except BaseException as exc:
        if finished:
            saved = (
                f"{len(finished)} of {len(jobs)} jobs are saved in {progress.root}; resume with: "
                f"{resume}"
            )
        else:  # nothing worth keeping: no .progress, no folder that this run made
            store.abandon(progress, created)
            saved = "no job had finished, so nothing was saved"
        if isinstance(exc, KeyboardInterrupt):
            print(f"\ninterrupted: {saved}", file=sys.stderr)
            return 130
        if isinstance(exc, ray_backend.ClusterLost):
            print(f"error: {exc}; {saved}", file=sys.stderr)
            return 1
        raise
    wall = time.perf_counter() - t0
    md = out / report_name(args.experiment)
    results: dict[str, list[pd.DataFrame]] = {}
    for i in range(len(jobs)):  # job order, not finishing order: the same files every time
        results.setdefault(jobs[i].result_kind, []).append(finished[i])
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
            text = header(args, plan, argv, base=base, wall_s=wall, resumed=note)
            text += sections
            write_text_atomic(staged / md.name, "\n".join(text) + "\n")
            if actors.is_dir():
                os.replace(actors, staged / "actors")
            meta = store.manifest(
                argv,
                config,
                started=started,
                wall_s=wall,
                jobs_total=len(jobs),
                jobs_resumed=n_resumed,
                workers=args.workers,
                exits=store.display_path(args.exits),
                backend=args.backend,
                address=args.address,
                files=[str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()],
            )
            write_text_atomic(staged / store.MANIFEST, meta)
            store.commit(staged, out, claim.replaces)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted while writing: every job is saved in {progress.root}; "
            f"rerun to write the files: {resume}",
            file=sys.stderr,
        )
        return 130
    progress.remove()
    print(f"wrote {md} and the files beside it ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
