"""Validated reader of an exit table (docs/interfaces.md, section 1).

`offload` runs on an exit table alone: this module imports neither torch, torchvision,
`multiexit` nor `profiling`. A table has one row per exit, the columns `exit`, `layer`,
`accuracy` and one `latency_ms:<DEVICE>` column per device (milliseconds, median latency of
prefix + head). Every row of the table is a candidate exit for the simulator; use
`ExitTable.select` to keep fewer.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["ExitTable", "ExitTableError", "load_exit_table", "exit_table_from_frame"]

LATENCY_PREFIX = "latency_ms:"
REQUIRED_COLUMNS = ("exit", "layer", "accuracy")


class ExitTableError(ValueError):
    """An exit table does not follow the schema of docs/interfaces.md, section 1."""


@dataclass(frozen=True)
class ExitTable:
    """Candidate exits with their accuracy and per-device latency.

    Attributes:
        exits: (L,) int, exit numbers (17 = main branch of VGG-16), ascending.
        layers: (L,) backbone layer each exit sits after.
        accuracy: (L,) float64, top-1 accuracy φ_l of each exit, in [0, 1].
        devices: device identifiers, one per latency column, in column order.
        latency_ms: (len(devices), L) float64, latency of each exit on each device, ms.
        source: path the table was read from ("" when built in memory).
    """

    exits: np.ndarray
    layers: tuple[str, ...]
    accuracy: np.ndarray
    devices: tuple[str, ...]
    latency_ms: np.ndarray
    source: str = ""

    @property
    def num_exits(self) -> int:
        """Number of candidate exits L."""
        return int(self.exits.shape[0])

    def latency_of(self, device: str) -> np.ndarray:
        """(L,) latency of every exit on `device`, ms.

        Raises:
            ExitTableError: the table has no latency column for `device`.
        """
        if device not in self.devices:
            raise ExitTableError(
                f"unknown server device name {device!r}: the exit table {self.source or '(in memory)'} "
                f"has latency columns for {list(self.devices)}; pick one of them or add a "
                f"'{LATENCY_PREFIX}{device}' column."
            )
        return self.latency_ms[self.devices.index(device)]

    def select(self, exits: list[int] | tuple[int, ...]) -> ExitTable:
        """A table with only the given exit numbers (kept in ascending order).

        Raises:
            ExitTableError: an exit number is not in the table.
        """
        missing = sorted(set(exits) - set(self.exits.tolist()))
        if missing:
            raise ExitTableError(
                f"exits {missing} are not in the exit table (it has {self.exits.tolist()}); "
                "select only exits that the table lists."
            )
        keep = np.isin(self.exits, list(exits))
        return ExitTable(
            exits=self.exits[keep],
            layers=tuple(lay for lay, k in zip(self.layers, keep, strict=True) if k),
            accuracy=self.accuracy[keep],
            devices=self.devices,
            latency_ms=self.latency_ms[:, keep],
            source=self.source,
        )


def _fail(where: str, what: str, todo: str) -> ExitTableError:
    return ExitTableError(f"{where}: {what}; {todo}.")


def exit_table_from_frame(frame: pd.DataFrame, *, source: str = "") -> ExitTable:
    """Validate a data frame in the exit-table schema and return an `ExitTable`.

    Raises:
        ExitTableError: a column is missing, a value is missing or out of range, an exit
            number repeats, or there is no latency column; the message names the row and
            column and says what to fix.
    """
    where = f"exit table {source}" if source else "exit table"
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise _fail(
            where,
            f"missing column(s) {missing} (columns present: {list(frame.columns)})",
            "write the columns exit, layer, accuracy and latency_ms:<DEVICE> "
            "(docs/interfaces.md section 1); a latency-only table needs its accuracy joined first",
        )
    latency_cols = [c for c in frame.columns if str(c).startswith(LATENCY_PREFIX)]
    if not latency_cols:
        raise _fail(
            where,
            "no latency column",
            f"add at least one '{LATENCY_PREFIX}<DEVICE>' column with latencies in milliseconds",
        )
    if len(frame) == 0:
        raise _fail(where, "the table has no rows", "write one row per candidate exit")
    devices = []
    for col in latency_cols:
        dev = col[len(LATENCY_PREFIX) :]
        if not dev or any(ch.isspace() for ch in dev) or ":" in dev:
            raise _fail(
                where,
                f"column {col!r} has an invalid device name",
                "use a short identifier without spaces or colons, e.g. latency_ms:RTX_2080TI",
            )
        devices.append(dev)

    def numeric(col: str) -> np.ndarray:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        for row, (raw, val) in enumerate(zip(frame[col].tolist(), values, strict=True)):
            if not math.isfinite(val):
                raise _fail(
                    where,
                    f"row {row + 1} (data row, 1-based), column {col!r} holds {raw!r}, not a finite number",
                    "fill in the value or drop the row",
                )
        return values

    exit_values = numeric("exit")
    for row, val in enumerate(exit_values):
        if val != int(val) or val < 1:
            raise _fail(
                where,
                f"row {row + 1}, column 'exit' holds {float(val)!r}",
                "exit numbers are integers >= 1",
            )
    exits = exit_values.astype(np.int64)
    seen: dict[int, int] = {}
    for row, ex in enumerate(exits.tolist()):
        if ex in seen:
            raise _fail(
                where,
                f"rows {seen[ex] + 1} and {row + 1} both describe exit {ex}",
                "keep one row per exit",
            )
        seen[ex] = row
    accuracy = numeric("accuracy")
    for row, acc in enumerate(accuracy):
        if not 0.0 <= acc <= 1.0:
            raise _fail(
                where,
                f"row {row + 1}, column 'accuracy' holds {float(acc)!r}, outside [0, 1]",
                "write accuracy as a fraction (0.935, not 93.5)",
            )
    latency = np.stack([numeric(col) for col in latency_cols])
    for d, col in enumerate(latency_cols):
        for row, lat in enumerate(latency[d]):
            if lat <= 0.0:
                raise _fail(
                    where,
                    f"row {row + 1}, column {col!r} holds {float(lat)!r}, not a positive latency",
                    "latencies are medians in milliseconds and must be > 0",
                )
    layers = [str(v) for v in frame["layer"].tolist()]
    for row, lay in enumerate(frame["layer"].tolist()):
        if lay is None or (isinstance(lay, float) and math.isnan(lay)) or not str(lay).strip():
            raise _fail(
                where,
                f"row {row + 1}, column 'layer' is empty",
                "name the backbone layer the exit sits after (e.g. pool1)",
            )
    order = np.argsort(exits, kind="stable")
    return ExitTable(
        exits=exits[order],
        layers=tuple(layers[i] for i in order),
        accuracy=accuracy[order],
        devices=tuple(devices),
        latency_ms=latency[:, order],
        source=source,
    )


def load_exit_table(path: str | os.PathLike[str]) -> ExitTable:
    """Read and validate an exit table CSV (docs/interfaces.md, section 1).

    Args:
        path: the CSV file; its JSON sidecar (provenance) is not needed.

    Raises:
        FileNotFoundError: no file at `path`.
        ExitTableError: the table breaks the schema (the message says where and what to do).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no exit table at {path!r}; pass the path of a CSV such as checkpoints/paper_table1.csv."
        )
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ExitTableError(
            f"exit table {path}: cannot be parsed as CSV ({err}); write it as comma-separated "
            "text with a header row."
        ) from err
    return exit_table_from_frame(frame, source=path)
