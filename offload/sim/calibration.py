"""Calibration study: which readings of the paper's numbers bring the simulator into the
paper's regime (docs/calibration.md).

    python -m offload.sim.calibration --slots 1000 --seed 0
    python -m offload.sim.calibration --queue-effect --slots 2000 --seed 0   # cross_slot_queue

The paper (Figs. 5-8, M = 10, τ = 30 ms) reports average accuracy 0.60 / 0.20 / 0.21 / 0.17
(scenarios 1-4) for GRL, which has no early exits, and 0.77 / 0.56 / 0.60 / 0.58 for GRLE.
Here the main-branch-only greedy plays GRL's part and the greedy with all exits GRLE's (both
are myopic heuristics, not the paper's learners). Every reading runs with the same seed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exit_tables.schema import add_main_exit_flag
from grle_common.cli import bounded, run_cli

from ..exit_table import ExitTable, load_exit_table
from .baselines import BASELINES
from .config import MECConfig
from .env import OffloadEnv
from .run_baselines import run_policy

__all__ = ["READINGS", "main", "queue_effect"]

PAPER_GRL = (0.60, 0.20, 0.21, 0.17)
PAPER_GRLE = (0.77, 0.56, 0.60, 0.58)

#: (name, MECConfig overrides) of each reading; the first is the default configuration
READINGS: list[tuple[str, dict[str, object]]] = [
    ("default (KB=8000 bit, psi as written, drop, from generation, iid)", {}),
    ("KB = 8192 bit", {"kb_reading": "KiB8192"}),
    ("KB read as kbit", {"kb_reading": "kbit1000"}),
    ("psi doubled (psi(0) = 1)", {"psi_form": "doubled"}),
    ("late tasks sent and computed (eqs. 6-7 as written)", {"late_policy": "send"}),
    ("completion from transmission start (eq. 8 literally)", {"completion_origin": "transmission"}),
    ("correlated (Gauss-Markov) rates, rho = 0.9", {"rate_model": "markov"}),
    ("compute x2", {"compute_scale": 2.0}),
    ("compute x3", {"compute_scale": 3.0}),
    ("compute x4", {"compute_scale": 4.0}),
    ("compute x4, late tasks sent", {"compute_scale": 4.0, "late_policy": "send"}),
    ("compute x6", {"compute_scale": 6.0}),
    ("tasks x2 (100-200 KB)", {"task_kb": (100.0, 200.0)}),
    ("tasks x2, compute x3", {"task_kb": (100.0, 200.0), "compute_scale": 3.0}),
]


def queue_effect(
    table: ExitTable,
    *,
    slots: int,
    seed: int,
    num_devices: int = 10,
    slot_ms: float = 10.0,
    compute_scales: Sequence[float] = (1.0, 4.0),
    scenarios: Sequence[int] = (1, 2, 3, 4),
) -> list[dict[str, float]]:
    """The greedy with exits under both ``cross_slot_queue`` readings on the same slots: one
    row per (compute scale, scenario) with average accuracy and SSP of each, and the mean
    number of tasks carried into a slot under "fcfs" (tasks still in transit at its start)."""
    rows = []
    for scale in compute_scales:
        for scenario in scenarios:
            row: dict[str, float] = {"compute_scale": scale, "scenario": scenario}
            for queue in ("free_at", "fcfs"):
                cfg = MECConfig(
                    num_devices=num_devices,
                    slot_ms=slot_ms,
                    scenario=scenario,
                    compute_scale=scale,
                    cross_slot_queue=queue,
                )
                env = OffloadEnv(table, cfg)
                carried = []

                def greedy(state, rng, carried=carried):
                    carried.append(0 if state.carried is None else state.carried.count)
                    return BASELINES["greedy"](state, rng)

                m = run_policy(env, greedy, slots=slots, seed=seed)
                row[f"acc_{queue}"], row[f"ssp_{queue}"] = m.avg_accuracy, m.ssp
                row[f"carried_{queue}"] = sum(carried) / max(len(carried), 1)
            rows.append(row)
    return rows


def print_queue_effect(args: argparse.Namespace, table: ExitTable) -> None:
    rows = queue_effect(
        table, slots=args.slots, seed=args.seed, num_devices=args.num_devices, slot_ms=10.0
    )
    print(
        f"greedy with exits, M={args.num_devices}, tau = 10 ms, delta = 30 ms, {args.slots} "
        f"slots, seed {args.seed}: cross_slot_queue free_at -> fcfs"
    )
    print(
        "| compute scale | scenario | avg accuracy free_at | fcfs | diff | SSP free_at | fcfs "
        "| diff | tasks carried into a slot (fcfs) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['compute_scale']:g} | {r['scenario']} | {r['acc_free_at']:.4f} | "
            f"{r['acc_fcfs']:.4f} | {r['acc_fcfs'] - r['acc_free_at']:+.4f} | "
            f"{r['ssp_free_at']:.4f} | {r['ssp_fcfs']:.4f} | "
            f"{r['ssp_fcfs'] - r['ssp_free_at']:+.4f} | {r['carried_fcfs']:.2f} |",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default="checkpoints/paper_table1.csv")
    add_main_exit_flag(p)
    p.add_argument(
        "--slots",
        type=bounded(int, low=1),
        default=1000,
        help="slots per (reading, scenario, policy)",
    )
    p.add_argument("--seed", type=bounded(int, low=0), default=0)
    p.add_argument("--num-devices", type=bounded(int, low=1, high=10_000), default=10)
    p.add_argument("--slot-ms", type=bounded(float, low=0, low_open=True), default=30.0)
    p.add_argument(
        "--queue-effect",
        action="store_true",
        help="only the cross_slot_queue table: greedy, tau = 10 ms, compute scale 1 and 4",
    )
    args = p.parse_args(argv)
    table = load_exit_table(
        args.table, main_exit=args.main_exit
    )  # ExitTableError: run_cli prints its one sentence
    if args.queue_effect:
        print_queue_effect(args, table)
        return
    print(
        f"M={args.num_devices}, tau={args.slot_ms} ms, {args.slots} slots, seed {args.seed}; "
        "cells: avg accuracy main-branch greedy / greedy with exits (SSP of main-branch greedy)"
    )
    print("| reading | scenario 1 | scenario 2 | scenario 3 | scenario 4 |")
    print("| --- | --- | --- | --- | --- |")
    grl = " | ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(PAPER_GRL, PAPER_GRLE, strict=True))
    print(f"| paper: GRL / GRLE | {grl} |")
    for name, overrides in READINGS:
        cells = []
        for scenario in (1, 2, 3, 4):
            cfg = MECConfig(
                num_devices=args.num_devices, slot_ms=args.slot_ms, scenario=scenario, **overrides
            )
            env = OffloadEnv(table, cfg)
            main_only = run_policy(
                env, BASELINES["main_branch_greedy"], slots=args.slots, seed=args.seed
            )
            greedy = run_policy(env, BASELINES["greedy"], slots=args.slots, seed=args.seed)
            cells.append(
                f"{main_only.avg_accuracy:.2f} / {greedy.avg_accuracy:.2f} ({main_only.ssp:.2f})"
            )
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    # τ = 10 ms: the uplink queue of eq. (6) with and without dropping late tasks
    print(
        f"\ntau = 10 ms, scenario 1, M={args.num_devices}, greedy with exits, {args.slots} slots, seed {args.seed}"
    )
    print(
        "| late tasks | avg accuracy | SSP | throughput (1/s) | mean device backlog at the end (ms) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for late in ("send", "drop"):
        cfg = MECConfig(num_devices=args.num_devices, slot_ms=10.0, scenario=1, late_policy=late)
        env = OffloadEnv(table, cfg)
        m = run_policy(env, BASELINES["greedy"], slots=args.slots, seed=args.seed)
        backlog = float(env.slot_state.device_backlog_ms.mean())
        print(
            f"| {late} | {m.avg_accuracy:.3f} | {m.ssp:.3f} | {m.throughput_per_s:.0f} | {backlog:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(run_cli(main))
