"""The exit-table schema (docs/interfaces.md, section 1): its one set of rules, messages and
error type, shared by every reader of an exit table.

`profiling` writes exit tables and `offload` reads them; the schema belongs to neither, so both
import it from here and neither imports the other. The readers built on it are the simulator's
``offload.exit_table.load_exit_table`` (arrays for the simulator) and profiling's
``profiling.table.read_exit_table`` (a validated frame with its JSON sidecar); both go through
:func:`read_table_frame` / :func:`validate_frame` and raise :class:`ExitTableError` with the
same message for the same fault. This module needs only numpy and pandas (and the
standard-library ``grle_common``): it imports neither torch, `multiexit`, `profiling` nor
`offload`.

Schema, columns in this order: ``exit`` (int >= 1, unique, rows sorted by it), ``layer``
(non-empty), ``accuracy`` (in [0, 1]; absent only in a latency-only table, which the simulator
cannot use) and one ``latency_ms:<DEVICE>`` column per device (median latency of prefix + head,
ms, > 0; ``<DEVICE>`` without spaces or colons). Out-of-order rows are an error for every reader,
not silently sorted: a table written by hand in the wrong order is more likely a mistake than
a choice.

The main branch is the table's deepest exit, and the file readers check that it is the
network's: exit 17 for VGG-16 (:data:`MAIN_EXIT`). A table without it (e.g. exits 1-7 only) is
refused unless the caller declares its deepest exit the main branch (``main_exit=7``; the
command lines' ``--main-exit 7``), so that no policy or report silently takes another exit for
the main branch.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from grle_common.cli import UserError, bounded

__all__ = [
    "LATENCY_PREFIX",
    "MAIN_EXIT",
    "ExitTableError",
    "check_header",
    "check_main_exit",
    "read_table_frame",
    "validate_frame",
]

#: the prefix of a latency column's name: ``latency_ms:<DEVICE>``
LATENCY_PREFIX = "latency_ms:"
#: the exit number of VGG-16's main branch (16 early exits, then the classifier after conv5_3)
MAIN_EXIT = 17
_DEVICE_ID = re.compile(r"^[^\s:]+$")


class ExitTableError(UserError, ValueError):
    """An exit table is missing, unreadable or breaks the schema of docs/interfaces.md, section 1;
    the message names the file once, the row and column, and says what to do.

    The one error type of every exit-table reader (simulator and profiling); a
    :class:`~grle_common.cli.UserError`, so every command line prints it as ``error: <message>``.
    """


def _cell_number(value: Any, where: str, column: str) -> float:
    text = value.strip() if isinstance(value, str) else value
    if text is None or (isinstance(text, str) and text == ""):
        raise ExitTableError(f"{where}, column {column!r}: the value is empty; fill it in.")
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise ExitTableError(f"{where}, column {column!r}: {value!r} is not a number.") from None
    if math.isnan(number):
        raise ExitTableError(f"{where}, column {column!r}: the value is NaN; fill it in.")
    if math.isinf(number):
        raise ExitTableError(f"{where}, column {column!r}: the value is infinite.")
    return number


def check_header(columns: Sequence[Any], name: str) -> list[str]:
    """Check the column names and their order; returns them as strings.

    Raises:
        ExitTableError: a required column is missing, repeated, unknown or out of order.
    """
    columns = [str(c) for c in columns]
    for required in ("exit", "layer"):
        if required not in columns:
            raise ExitTableError(f"{name}: missing column {required!r}; see docs/interfaces.md §1.")
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise ExitTableError(f"{name}: column {dup[0]!r} appears more than once.")
    latency = [c for c in columns if c.startswith(LATENCY_PREFIX)]
    if not latency:
        raise ExitTableError(
            f"{name}: missing latency column; add at least one 'latency_ms:<DEVICE>' column."
        )
    for col in columns:
        if col.startswith(LATENCY_PREFIX):
            if not _DEVICE_ID.match(col[len(LATENCY_PREFIX) :]):
                raise ExitTableError(
                    f"{name}: column {col!r} needs a device identifier without spaces or colons."
                )
        elif col not in ("exit", "layer", "accuracy"):
            raise ExitTableError(
                f"{name}: unknown column {col!r}; allowed are exit, layer, accuracy and "
                "latency_ms:<DEVICE>."
            )
    expected = ["exit", "layer"] + (["accuracy"] if "accuracy" in columns else []) + latency
    if columns != expected:
        raise ExitTableError(
            f"{name}: columns must be in the order {', '.join(expected)} (got {', '.join(columns)})."
        )
    return columns


def validate_frame(frame: pd.DataFrame, *, name: str = "exit table") -> pd.DataFrame:
    """Check ``frame`` against the schema and return a typed copy (int exits, float values).

    Raises:
        ExitTableError: naming ``name``, the 1-based data row, the exit and the column at fault.
    """
    columns = check_header(list(frame.columns), name)
    if len(frame) == 0:
        raise ExitTableError(f"{name}: the table has no rows; add one row per exit.")
    rows: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for r, raw in enumerate(frame.itertuples(index=False, name=None), start=1):
        record = dict(zip(columns, raw, strict=True))
        where = f"{name} row {r}"
        exit_value = _cell_number(record["exit"], where, "exit")
        if exit_value != int(exit_value) or exit_value < 1:
            raise ExitTableError(
                f"{where}, column 'exit': {record['exit']!r} is not an integer >= 1."
            )
        exit_no = int(exit_value)
        where = f"{name} row {r} (exit {exit_no})"
        if exit_no in seen:
            raise ExitTableError(
                f"{where}, column 'exit': exit {exit_no} already appears in row {seen[exit_no]}; "
                "keep one row per exit."
            )
        if seen and exit_no < max(seen):
            raise ExitTableError(
                f"{where}, column 'exit': rows must be sorted by exit; reorder the rows."
            )
        seen[exit_no] = r
        layer = record["layer"]
        if not isinstance(layer, str) or not layer.strip():
            raise ExitTableError(f"{where}, column 'layer': the layer name is empty; fill it in.")
        out: dict[str, Any] = {"exit": exit_no, "layer": layer.strip()}
        for col in columns[2:]:
            value = _cell_number(record[col], where, col)
            if col == "accuracy" and not 0.0 <= value <= 1.0:
                raise ExitTableError(
                    f"{where}, column 'accuracy': {value} is outside [0, 1]; "
                    "write accuracy as a fraction (0.935, not 93.5)."
                )
            if col.startswith(LATENCY_PREFIX) and value <= 0.0:
                raise ExitTableError(
                    f"{where}, column {col!r}: latency {value} ms is not positive."
                )
            out[col] = value
        rows.append(out)
    typed = pd.DataFrame(rows, columns=columns)
    typed["exit"] = typed["exit"].astype(np.int64)
    return typed


def add_main_exit_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--main-exit N`` (default :data:`MAIN_EXIT`), the flag of every command line that
    reads an exit table: the exit number the table's deepest exit must be."""
    parser.add_argument(
        "--main-exit",
        type=bounded(int, low=1),
        default=MAIN_EXIT,
        help="exit number of the main branch (greedy-main, GRL; always kept as a candidate): the "
        f"table's deepest exit must be it (default {MAIN_EXIT}, VGG-16's)",
    )


def check_main_exit(exits: Sequence[int], main_exit: int | None, name: str) -> None:
    """Check that the deepest of ``exits`` is the main branch ``main_exit`` (None: no check).

    Raises:
        ExitTableError: the deepest exit is another one; the message says how to add the main
            branch or declare the deepest exit as it.
    """
    deepest = int(max(exits))
    if main_exit is None or deepest == main_exit:
        return
    raise ExitTableError(
        f"{name}: the deepest exit is {deepest}, not the main branch (exit {main_exit}), so "
        f"the main-branch policies and reports would take exit {deepest} for it; add the row "
        f"of exit {main_exit}, or pass --main-exit {deepest} to declare exit {deepest} the "
        "main branch."
    )


def read_table_frame(
    path: str | os.PathLike[str], *, main_exit: int | None = MAIN_EXIT
) -> pd.DataFrame:
    """Read and validate the CSV of an exit table (no sidecar); returns the typed frame.

    Args:
        path: the CSV file.
        main_exit: the exit number the table's deepest exit must be (the main branch;
            :data:`MAIN_EXIT` for VGG-16), or None to accept any deepest exit.

    Raises:
        ExitTableError: no file at ``path``, an empty or non-text file, a row with the wrong
            number of fields (e.g. a truncated last row), any schema fault, or a deepest exit
            that is not ``main_exit``; the message names ``path`` once.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ExitTableError(
            f"{name}: no such file; pass the path of an exit table CSV such as "
            "checkpoints/paper_table1.csv."
        )
    try:
        with open(name, newline="", encoding="utf-8-sig") as handle:  # tolerate a BOM
            lines = [row for row in csv.reader(handle) if row]
    except UnicodeDecodeError as exc:
        raise ExitTableError(
            f"{name}: not a text file (byte {exc.start} is not UTF-8); pass the exit table CSV."
        ) from None
    except (OSError, csv.Error) as exc:
        raise ExitTableError(f"{name}: not a readable CSV file ({exc}).") from None
    if not lines:
        raise ExitTableError(f"{name}: the file is empty; write the header and one row per exit.")
    header = [c.strip() for c in lines[0]]
    for r, row in enumerate(lines[1:], start=1):
        if len(row) != len(header):
            cut = " (the last row: is the file truncated?)" if r == len(lines) - 1 else ""
            raise ExitTableError(
                f"{name} row {r}: {len(row)} fields but the header has {len(header)}{cut}; "
                "write one value per column."
            )
    check_header(header, name)  # before pandas, which would rename duplicate columns
    frame = validate_frame(pd.DataFrame(lines[1:], columns=header, dtype=object), name=name)
    check_main_exit(frame["exit"].tolist(), main_exit, name)
    return frame
