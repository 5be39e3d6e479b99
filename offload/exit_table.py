"""The simulator's exit table: :class:`ExitTable` (the candidate exits as arrays) and its reader
:func:`load_exit_table`.

The schema's rules, messages and error type live in :mod:`exit_tables.schema`, which
`profiling` reads too (docs/interfaces.md, section 1); this module adds only the simulator's
view of a table, which needs each exit's accuracy. It needs only numpy and pandas (and the
standard-library ``grle_common``): it imports neither torch, torchvision, `multiexit` nor
`profiling`. Every row is a candidate exit for the simulator; use `ExitTable.select` to keep
fewer. A table whose deepest exit is not the network's main branch (exit 17 for VGG-16,
:data:`exit_tables.schema.MAIN_EXIT`) is refused unless the caller declares its deepest exit
the main branch (``main_exit=7``; the command lines' ``--main-exit 7``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from exit_tables.schema import (
    LATENCY_PREFIX,
    MAIN_EXIT,
    ExitTableError,
    read_table_frame,
    validate_frame,
)

__all__ = ["ExitTable", "exit_table_from_frame", "load_exit_table"]


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

    @property
    def main_exit(self) -> int:
        """The main branch: the deepest exit (what greedy-main and GRL use)."""
        return int(self.exits[-1])

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


def exit_table_from_frame(frame: pd.DataFrame, *, source: str = "") -> ExitTable:
    """Validate a data frame in the exit-table schema and return an `ExitTable` for the
    simulator (which needs the accuracy column).

    Raises:
        ExitTableError: the frame breaks the schema or has no accuracy column.
    """
    name = source or "exit table"
    typed = validate_frame(frame, name=name)
    if "accuracy" not in typed.columns:
        raise ExitTableError(
            f"{name}: missing column 'accuracy' (a latency-only table); the simulator needs "
            "each exit's accuracy: measure a trained run (profiling.measure --run) or join them."
        )
    latency_cols = [c for c in typed.columns if c.startswith(LATENCY_PREFIX)]
    return ExitTable(
        exits=typed["exit"].to_numpy(dtype=np.int64),
        layers=tuple(typed["layer"].tolist()),
        accuracy=typed["accuracy"].to_numpy(dtype=np.float64),
        devices=tuple(c[len(LATENCY_PREFIX) :] for c in latency_cols),
        latency_ms=typed[latency_cols].to_numpy(dtype=np.float64).T.copy(),
        source=source,
    )


def load_exit_table(
    path: str | os.PathLike[str], *, main_exit: int | None = MAIN_EXIT
) -> ExitTable:
    """Read and validate an exit table CSV (docs/interfaces.md, section 1).

    Args:
        path: the CSV file; its JSON sidecar (provenance) is not needed.
        main_exit: the exit number the table's deepest exit must be (the main branch;
            :data:`MAIN_EXIT` for VGG-16), or None to accept any deepest exit (a table a
            command line has already checked).

    Raises:
        ExitTableError: no file at `path`, the table breaks the schema (the message names
            the file once, the row and column, and says what to do), or its deepest exit is
            not ``main_exit``.
    """
    frame = read_table_frame(path, main_exit=main_exit)
    return exit_table_from_frame(frame, source=os.fspath(path))
