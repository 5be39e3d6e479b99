"""Merge exit tables measured on different devices into one table with one latency column per
device (the shape of the paper's Table I).

    python -m profiling.merge a/exit_table.csv b/exit_table.csv --out merged/exit_table.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from grle_common.cli import run_cli
from profiling.table import merge_exit_tables, read_exit_table, write_exit_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m profiling.merge", description=__doc__)
    parser.add_argument("tables", nargs="+", help="exit table CSV files (with their .json)")
    parser.add_argument("--out", required=True, help="merged table CSV path (.json beside it)")
    args = parser.parse_args(argv)
    tables = [read_exit_table(path) for path in args.tables]
    merged = merge_exit_tables(tables, names=list(args.tables))
    csv_path, json_path = write_exit_table(merged, args.out)
    print(f"wrote {csv_path} and {json_path}: devices {', '.join(merged.devices)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
