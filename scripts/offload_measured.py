"""Figs. 5-8 cells on a measured exit table, beside the same cells on the paper's Table I.

``python -m offload.experiments <name> --exits TABLE --server-devices DEV DEV`` runs one table;
this script runs the same cells on two tables side by side and writes one comparison. The edge
servers are N = 2 servers of each table's device types (the table's first two latency columns,
or two servers of the same type when it has one column); everything else is the experiments'
own protocol (:func:`offload.experiments.lockstep.run_group`: same agents, training and
evaluation, simulator defaults, the runs of one method at one M stepped together).

    python scripts/offload_measured.py \
        --exits checkpoints/vgg16_cpu_ref/latency_cpu_1t/candidates.csv \
        --compare checkpoints/paper_table1.csv --out results/measured_cpu_ref

Writes ``<out>/cells.csv`` (one row per table, method, scenario, M, τ, seed; the columns of the
experiments' CSVs plus ``table`` and ``server_devices``) and ``<out>/summary.md``. The groups run
in ``--workers`` processes or, with ``--backend ray [--address ADDRESS]``, as Ray tasks (see
docs/offload-agents.md, "Grids on a Ray cluster").
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from grle_common.cli import bounded, run_cli
from grle_common.fileio import write_text_atomic
from offload.agents import AGENT_NAMES
from offload.exit_table import load_exit_table
from offload.experiments import ray_backend
from offload.experiments.lockstep import Group, groups_for, run_group
from offload.experiments.pool import BACKENDS, Job, run_jobs
from offload.experiments.presets import SEED_MAX
from offload.experiments.report import write_csv
from offload.experiments.runner import REFERENCE_METHODS, SCENARIOS
from offload.experiments.store import check_writable
from offload.sim import MECConfig

FIGURE = {"devices": "Fig. 5", "capacity": "Fig. 6", "fluctuation": "Fig. 7", "csi": "Fig. 8"}


def server_devices(path: str) -> tuple[str, str]:
    """N = 2 edge servers on the table's device types (one column: two of the same type)."""
    devices = list(load_exit_table(path).devices)
    return (devices[0], devices[1]) if len(devices) >= 2 else (devices[0], devices[0])


def groups_of(path: str, args: argparse.Namespace) -> list[Group]:
    """The experiments' groups (one per method and M over every scenario, τ and seed)."""
    return groups_for(
        list(SCENARIOS),
        tuple(args.devices),
        tuple(args.taus),
        tuple(args.seeds),
        AGENT_NAMES + REFERENCE_METHODS,
        train_slots=args.train_slots,
        eval_slots=args.eval_slots,
        exits_path=path,
        base=MECConfig(server_devices=server_devices(path)),
    )


@dataclass(frozen=True)
class TableGroup(Job, kind="measured"):
    """One group of the experiments run on one of the tables, its rows labelled with the table."""

    label: str  # "measured" or "paper"
    group: Group
    exits_path: str  # the group's table (a field of its own: the Ray backend ships `*_path` files)

    def run(self) -> pd.DataFrame:
        frame = pd.DataFrame(run_group(replace(self.group, exits_path=self.exits_path)))
        frame.insert(0, "table", self.label)
        frame.insert(1, "server_devices", "+".join(self.group.base.server_devices))
        return frame


def _cell_order(frame: pd.DataFrame, tables: list[str]) -> pd.DataFrame:
    """Rows by table, scenario, M, τ, seed, then method (the groups run longest first)."""
    keys = {
        "table": {t: i for i, t in enumerate(tables)},
        "experiment": {e: i for i, e in enumerate(SCENARIOS)},
        "method": {m: i for i, m in enumerate(AGENT_NAMES + REFERENCE_METHODS)},
    }
    order = ["table", "experiment", "M", "tau_ms", "seed", "method"]
    ranked = frame.sort_values(
        order, key=lambda col: col.map(keys[col.name]) if col.name in keys else col, kind="stable"
    )
    return ranked.reset_index(drop=True)


def summary(frame: pd.DataFrame, m: int, tau: float) -> list[str]:
    """Markdown: average accuracy and SSP per method, one column pair per table."""
    sel = frame[(frame["M"] == m) & (frame["tau_ms"] == tau)]
    tables = list(dict.fromkeys(sel["table"]))
    head = "| scenario | method | " + " | ".join(f"acc ({t}) | SSP ({t})" for t in tables) + " |"
    lines = [
        f"M = {m}, τ = {tau:g} ms (mean over seeds):",
        "",
        head,
        "| --- | --- |" + " ---: | ---: |" * len(tables),
    ]
    means = sel.groupby(["experiment", "method", "table"])[["avg_accuracy", "ssp"]].mean()
    for name in SCENARIOS:
        for method in dict.fromkeys(sel["method"]):
            cells = []
            for t in tables:
                key = (name, method, t)
                if key in means.index:
                    row = means.loc[key]
                    cells += [f"{row['avg_accuracy']:.3f}", f"{row['ssp']:.3f}"]
                else:
                    cells += ["–", "–"]
            label = f"{SCENARIOS[name]} ({FIGURE[name]})"
            lines.append(f"| {label} | {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python scripts/offload_measured.py", description=__doc__)
    p.add_argument("--exits", required=True, help="measured exit table CSV (candidate table)")
    p.add_argument("--compare", default=None, help="second table run with the same cells")
    p.add_argument("--out", required=True, help="output folder")
    count = bounded(int, 1)
    p.add_argument("--devices", type=count, nargs="+", default=[4, 10], help="M values")
    p.add_argument(
        "--taus",
        type=bounded(float, 0, low_open=True),
        nargs="+",
        default=[10.0, 30.0],
        help="τ values, ms",
    )
    p.add_argument("--seeds", type=bounded(int, 0, SEED_MAX), nargs="+", default=[0], help="seeds")
    p.add_argument(
        "--train-slots", type=bounded(int, 0), default=300, help="training slots per learner"
    )
    p.add_argument("--eval-slots", type=count, default=300, help="evaluation slots per method")
    p.add_argument("--workers", type=count, default=1, help="processes")
    p.add_argument("--backend", choices=BACKENDS, default="local", help="local processes or Ray")
    p.add_argument("--address", help="with --backend ray: the Ray cluster (default: a local one)")
    args = p.parse_args(argv)
    if args.address is not None and args.backend != "ray":
        p.error("--address names a Ray cluster; add --backend ray")
    if args.backend == "ray":
        ray_backend.require_ray()  # BackendError: run_cli prints its one sentence
        ray_backend.check_address(args.address)
    tables = {"measured": args.exits} | ({"paper": args.compare} if args.compare else {})
    for path in tables.values():
        server_devices(path)  # ExitTableError: run_cli prints its one sentence
    check_writable(Path(args.out))  # before the work, not after it (OutputError)
    jobs = [
        TableGroup(label, g, path) for label, path in tables.items() for g in groups_of(path, args)
    ]
    t0 = time.perf_counter()
    frames: dict[int, pd.DataFrame] = {}
    run_jobs(
        dict(enumerate(jobs)),
        args.workers,
        frames.__setitem__,
        backend=args.backend,
        address=args.address,
    )
    ordered = [frames[i] for i in range(len(jobs))]
    frame = _cell_order(pd.concat(ordered, ignore_index=True), list(tables))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(frame, out / "cells.csv")
    wall = time.perf_counter() - t0
    devices = {label: "+".join(server_devices(path)) for label, path in tables.items()}
    lines = [
        "# Figs. 5-8 cells on a measured exit table",
        "",
        f"Command: `python scripts/offload_measured.py {shlex.join(argv)}`",
        "",
        f"Made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, wall time {wall / 60:.1f} min, "
        f"CPU only. Tables: "
        + "; ".join(f"{label} = `{tables[label]}` (servers {devices[label]})" for label in tables)
        + f". Train {args.train_slots} slots per learner, evaluate {args.eval_slots} slots "
        "(REDUCED: the paper evaluates 10,000); simulator defaults otherwise (compute_scale 1).",
        "",
    ]
    for m in args.devices:
        for tau in args.taus:
            lines += summary(frame, m, tau)
    text = "\n".join(lines)
    write_text_atomic(out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
