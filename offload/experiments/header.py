"""The opening of every experiment report: command, machine, plan, engine and simulator readings,
and the warnings a reader must see first (calibrated regime, reduced configuration)."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
from dataclasses import asdict
from datetime import datetime, timezone

import torch

from offload.exit_table import load_exit_table
from offload.experiments import store
from offload.experiments.presets import ENGINE_NOTE, PAPER_PROTOCOL, Plan
from offload.sim import MECConfig

#: the `MECConfig` fields the header states (docs/calibration.md: the readings of the paper)
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


def _main_branch(exits_path: str) -> str:
    """Which exit the report's main-branch policies (greedy-main, GRL) used."""
    table = load_exit_table(exits_path, main_exit=None)  # checked by the command line
    return f"main branch: exit {table.main_exit}, after `{table.layers[-1]}`"


def _execution(args: argparse.Namespace) -> str:
    """Where the jobs ran, as the header's phrase."""
    if getattr(args, "backend", "local") != "ray":
        return f"{args.workers} worker processes"
    if args.address is None:
        return f"a local Ray instance of {args.workers} CPUs"
    return f"the Ray cluster at {args.address}"


def header(
    args: argparse.Namespace,
    plan: Plan,
    argv: list[str],
    *,
    base: MECConfig,
    wall_s: float,
    resumed: str = "",
) -> list[str]:
    """The report's opening lines for the command line ``argv`` (parsed: ``args``) run with
    ``plan`` on the simulator ``base``; ``wall_s``: seconds; ``resumed``: a note."""
    experiment = args.experiment
    reduced = [
        f"{k} = {getattr(plan, k)} (paper: {v})"
        for k, v in PAPER_PROTOCOL.items()
        if getattr(plan, k) < v
    ]
    title = "paper experiments" if experiment == "paper" else f"experiment `{experiment}`"
    lines = [
        f"# GRLE reproduction: {title}",
        "",
        f"Command: `python -m offload.experiments {shlex.join(argv)}`",
        "",
        f"Made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node() or 'unknown host'} "
        f"({platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores "
        f"available, {_execution(args)}, torch {torch.__version__}, "
        f"{'CUDA available but unused' if torch.cuda.is_available() else 'CPU only'}); wall time "
        f"{wall_s / 60:.1f} min{resumed}. Exit table: `{store.display_path(args.exits)}` "
        f"({_main_branch(args.exits)}); run manifest: `manifest.json`.",
        "",
        "Plan: "
        + ", ".join(
            f"{k} = {v}" for k, v in asdict(plan).items() if _plan_field_used(k, experiment)
        )
        + ".",
        "",
        ENGINE_NOTE.get(
            experiment,
            "Engine: the runs of one method at one M step together, K runs in one batch "
            "(offload/experiments/lockstep.py).",
        ),
        "",
        "Simulator readings (`MECConfig` as run, docs/calibration.md): "
        + ", ".join(f"{k} = {getattr(base, k, None)!r}" for k in READINGS)
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
    if experiment == "scale":  # the city grid: none of the paper-size fields
        return field.startswith("scale_") or field in ("seeds", "train_slots", "eval_slots")
    for study in ("ablation", "regime", "scale"):
        if field.startswith(study + "_"):
            return experiment == study
    return True
