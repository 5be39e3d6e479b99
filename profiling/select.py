"""Select the candidate exits of an exit table and draw the Fig. 3-style figure.

    python -m profiling.select checkpoints/paper_table1.csv --k 5 --out candidates.csv

The algorithm is documented in :mod:`profiling.candidates` (drop dominated exits, keep the main
branch, maximise the area under the accuracy-vs-latency step curve by dynamic programming).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from exit_tables.schema import add_main_exit_flag
from grle_common.cli import bounded, run_cli
from profiling.candidates import candidate_table, select_candidates
from profiling.errors import ProfilingError
from profiling.figure import exits_figure_writer
from profiling.fileio import write_files_atomically
from profiling.table import read_exit_table, table_writers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m profiling.select", description=__doc__)
    parser.add_argument("table", help="exit table CSV with an accuracy column")
    parser.add_argument(
        "--k",
        type=bounded(int, low=1),
        default=5,
        help="number of candidate exits, at most the table's rows (default 5)",
    )
    parser.add_argument("--devices", nargs="+", help="latency columns to use (default: all)")
    add_main_exit_flag(parser)
    parser.add_argument("--out", help="candidate table CSV (default <table>_candidates.csv)")
    parser.add_argument("--figure", help="figure path (default <out without .csv>.png)")
    parser.add_argument("--figure-device", help="latency column on the figure's x axis")
    args = parser.parse_args(argv)
    source = Path(args.table)
    table = read_exit_table(source, main_exit=args.main_exit)
    if args.k > len(table.exits):
        raise ProfilingError(
            f"--k must be at most {len(table.exits)}, the number of exits in {source} "
            f"(got {args.k}); ask for fewer candidates."
        )
    selection = select_candidates(table, k=args.k, devices=args.devices, main_exit=args.main_exit)
    out = Path(args.out or source.with_name(source.stem + "_candidates.csv"))
    figure = Path(args.figure or out.with_suffix(".png"))
    writers = table_writers(candidate_table(table, selection, source_path=str(source)), out)
    writers[figure] = exits_figure_writer(
        table,
        fmt=figure.suffix.lstrip(".") or "png",
        device=args.figure_device,
        candidates=selection.exits,
        source=str(source),
    )
    write_files_atomically(writers)
    print(
        f"candidate exits: {list(selection.exits)} (main branch: exit {selection.main_exit}; "
        f"dominated: {list(selection.dominated)})"
    )
    print(f"mean accuracy for a budget uniform on [0, H]: {selection.mean_accuracy:.4f}")
    for note in selection.notes:
        print(f"note: {note}")
    print(f"wrote {out}, {out.with_suffix('.json')} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
