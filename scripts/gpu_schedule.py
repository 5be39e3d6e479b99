#!/usr/bin/env python3
"""The epochs of the GPU reference run: ``scripts/gpu_reference_run.sh`` asks this before training.

    python3 scripts/gpu_schedule.py SMOKE_REPORT ELAPSED_S SCHEDULE_FILE

Prints ``E_MAIN E_EXITS NOTE`` and saves that line in ``SCHEDULE_FILE`` (in the run's WORK
folder). First rule that applies:

1. ``EPOCHS_MAIN`` / ``EPOCHS_EXITS`` set: those (60 / 25 for the one not set);
2. ``SCHEDULE_FILE`` exists: the epochs an earlier call on this machine started the run with,
   so that a retry continues that run (``multiexit.train`` resumes a stage only with the epochs
   it started with) even though the retry has no smoke report;
3. the paper recipe, 60 + 25, if it fits the time left, or if ``FULL_RECIPE=1``;
4. fewer epochs in the recipe's 60 : 25 ratio, said as ``REDUCED`` in the note.

The time a schedule takes is ``scale x (1.5 x P + 85 x EPOCH_FIXED_S)`` for ``scale`` = the
fraction of the recipe's 85 epochs: ``P`` is the smoke's projection of the recipe
(``throughput`` step, ``projected_recipe_s``; x 1.5 for Lightning's per-step work, validation,
test and start-up), ``EPOCH_FIXED_S`` each epoch's fixed costs that the projection leaves out
(two checkpoint writes, the validation loop's start). Without a projection (the step failed,
timed out or never ran) ``P`` is ``FALLBACK_RECIPE_S``, a pessimistic guess. The time left is
``CALL_LIMIT_S - ELAPSED_S - MEASURE_RESERVE_S - MARGIN_S``: the measurement after training
and a margin below the call's hard limit stay free.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grle_common.cli import UserError, check_range, run_cli  # noqa: E402
from grle_common.fileio import write_text_atomic  # noqa: E402

RECIPE = (60, 25)  # the paper's epochs of stage main and stage exits
DEFAULTS = {  # environment variable: default (seconds)
    "CALL_LIMIT_S": 600.0,  # the device call's hard limit
    "MEASURE_RESERVE_S": 90.0,  # evaluate, two latency tables, the bundles
    "MARGIN_S": 30.0,  # kept free below CALL_LIMIT_S
    "EPOCH_FIXED_S": 1.0,  # per epoch, not in the projection (about 45-85 s over 85 epochs)
    "FALLBACK_RECIPE_S": 600.0,  # 60 + 25 epochs assumed to take this without a projection
}


def _number(env: dict[str, str], name: str, default: float, *, low: float, kind: type = float):
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise UserError(f"{name} must be a number (got {text!r}).") from None
    check_range(name, value, low, kind=kind)
    return value


def projection(report: Path) -> float | None:
    """The smoke's projected seconds of 60 + 25 epochs, or None when it has none."""
    try:
        steps = {s["step"]: s for s in json.loads(report.read_text())["steps"]}
        return float(steps["throughput"]["details"]["projected_recipe_s"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def plan(report: Path, elapsed: float, saved: Path, env: dict[str, str]) -> tuple[int, int, str]:
    """``(epochs_main, epochs_exits, note)`` by the rules of the module docstring."""
    if env.get("EPOCHS_MAIN") or env.get("EPOCHS_EXITS"):
        main = _number(env, "EPOCHS_MAIN", RECIPE[0], low=1, kind=int)
        exits = _number(env, "EPOCHS_EXITS", RECIPE[1], low=1, kind=int)
        return main, exits, "set by EPOCHS_MAIN / EPOCHS_EXITS"
    if saved.is_file():
        main, exits, note = saved.read_text().strip().split(" ", 2)
        note = note.removeprefix("continued, ")
        return int(main), int(exits), f"continued, {note}"
    limit, reserve, margin, fixed, fallback = (
        _number(env, name, default, low=0) for name, default in DEFAULTS.items()
    )
    projected = projection(report)
    source = f"projected {projected:.0f} s" if projected is not None else (
        f"no projection, assumed {fallback:.0f} s"
    )  # fmt: skip
    epochs = sum(RECIPE)
    need = 1.5 * (projected if projected is not None else fallback) + epochs * fixed
    budget = limit - elapsed - reserve - margin
    what = (
        f"{source} x 1.5 + {epochs} x {fixed:g} s per epoch = {need:.0f} s for 60 + 25; "
        f"{budget:.0f} s left = {limit:g} - {elapsed:.0f} spent - {reserve:g} measure - "
        f"{margin:g} margin"
    )
    if need <= budget or env.get("FULL_RECIPE") == "1":
        return *RECIPE, f"recipe ({what})"
    scale = max(budget, 0.0) / need
    main, exits = (max(1, math.floor(e * scale)) for e in RECIPE)
    return main, exits, f"REDUCED ({what})"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        raise UserError("usage: gpu_schedule.py SMOKE_REPORT ELAPSED_S SCHEDULE_FILE.")
    report, elapsed, saved = Path(args[0]), float(args[1]), Path(args[2])
    main_epochs, exits_epochs, note = plan(report, elapsed, saved, dict(os.environ))
    line = f"{main_epochs} {exits_epochs} {note}"
    write_text_atomic(saved, line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
