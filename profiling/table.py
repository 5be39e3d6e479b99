"""Exit tables as profiling writes them: :class:`ExitTableFile` (the CSV's validated frame and its
JSON sidecar), its reader, its writer, and the merge of tables measured on different devices.

The schema's rules and messages are :mod:`exit_tables.schema`, which the simulator reads too
(docs/interfaces.md, section 1); columns in this order:

======================  ===================  ============================================
column                  type                 meaning
======================  ===================  ============================================
``exit``                int >= 1, unique     exit number; the highest is the main branch
``layer``               non-empty str        backbone layer the exit sits after
``accuracy``            float in [0, 1]      top-1 test accuracy (absent: latency-only table)
``latency_ms:<DEVICE>`` float > 0            median latency of prefix + head, ms (>= 1 column)
======================  ===================  ============================================

Rows are sorted by ``exit``. ``<DEVICE>`` has no spaces or colons. The JSON sidecar (same path,
``.json``) is an object with provenance: ``source`` ("transcribed", "measured" or "mixed"),
``devices`` (one entry per latency column, with the device's metadata and, for measured tables,
the full latency statistics), the checkpoint's sha256, and so on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# the schema's one set of rules, messages and error type, shared with the simulator's reader
# (numpy and pandas only; it belongs to neither package). ExitTableError is a grle_common
# UserError, so the profiling command lines print it as one line like their own.
from exit_tables.schema import (  # ExitTableError and validate_frame: also profiling.table API
    LATENCY_PREFIX,
    MAIN_EXIT,
    ExitTableError,
    read_table_frame,
    validate_frame,
)
from profiling.errors import ProfilingError
from profiling.fileio import write_files_atomically

SOURCES = ("transcribed", "measured", "mixed")


def device_id_from_name(name: str) -> str:
    """A column-safe device identifier: runs of characters other than letters and digits become
    one underscore (``"NVIDIA H100 80GB HBM3"`` -> ``"NVIDIA_H100_80GB_HBM3"``)."""
    ident = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    if not ident:
        raise ProfilingError(f"cannot make a device identifier from the name {name!r}.")
    return ident


def latency_column(device: str) -> str:
    """The CSV column holding the median latency on ``device``."""
    return LATENCY_PREFIX + device


@dataclass(frozen=True)
class ExitTableFile:
    """An exit table as stored: ``frame`` is the CSV, validated, with typed columns in schema
    order; ``metadata`` is the JSON sidecar (provenance). Build one with :func:`make_exit_table`
    or :func:`read_exit_table`. (The simulator's view of a table, as arrays, is
    ``offload.exit_table.ExitTable``.)"""

    frame: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def devices(self) -> list[str]:
        """Device identifiers, in column order."""
        return [
            c[len(LATENCY_PREFIX) :] for c in self.frame.columns if c.startswith(LATENCY_PREFIX)
        ]

    @property
    def has_accuracy(self) -> bool:
        return "accuracy" in self.frame.columns

    @property
    def exits(self) -> np.ndarray:
        return self.frame["exit"].to_numpy(dtype=np.int64)

    @property
    def layers(self) -> list[str]:
        return [str(v) for v in self.frame["layer"]]

    @property
    def accuracy(self) -> np.ndarray:
        if not self.has_accuracy:
            raise ProfilingError(
                "this exit table has no accuracy column (latency only); "
                "measure a trained run (--run) to get accuracies."
            )
        return self.frame["accuracy"].to_numpy(dtype=np.float64)

    def latency_ms(self, device: str) -> np.ndarray:
        """Median latency per exit on ``device``, ms."""
        if device not in self.devices:
            raise ProfilingError(
                f"device {device!r} is not in this table; its devices are {', '.join(self.devices)}."
            )
        return self.frame[latency_column(device)].to_numpy(dtype=np.float64)

    def subset(
        self, exits: Sequence[int], *, metadata: dict[str, Any] | None = None
    ) -> ExitTableFile:
        """The rows of the given exits (same schema), e.g. a candidate table."""
        missing = sorted(set(exits) - set(self.exits.tolist()))
        if missing:
            raise ProfilingError(f"exits {missing} are not in the table.")
        frame = self.frame[self.frame["exit"].isin(list(exits))].reset_index(drop=True)
        return ExitTableFile(frame, dict(self.metadata) if metadata is None else metadata)


def _check_metadata(metadata: Any, frame: pd.DataFrame, name: str) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise ExitTableError(f"{name}: the JSON sidecar must hold an object.")
    source = metadata.get("source")
    if source is not None and source not in SOURCES:
        raise ExitTableError(
            f"{name}: sidecar field 'source' is {source!r}; use one of {', '.join(SOURCES)}."
        )
    devices = metadata.get("devices")
    if devices is not None:
        if not isinstance(devices, dict):
            raise ExitTableError(f"{name}: sidecar field 'devices' must be an object.")
        for col in frame.columns:
            if col.startswith(LATENCY_PREFIX) and col[len(LATENCY_PREFIX) :] not in devices:
                raise ExitTableError(
                    f"{name}: column {col!r} has no entry in the sidecar's 'devices'; add one."
                )
    return metadata


def make_exit_table(
    *,
    exits: Sequence[int],
    layers: Sequence[str],
    latency_ms: Mapping[str, Sequence[float]],
    accuracy: Sequence[float] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ExitTableFile:
    """Build and validate an exit table; rows are sorted by exit.

    Args:
        exits: exit numbers (>= 1, unique).
        layers: backbone layer of each exit.
        latency_ms: device identifier -> median latency per exit, ms (one column each).
        accuracy: top-1 accuracy per exit in [0, 1], or ``None`` for a latency-only table.
        metadata: the JSON sidecar content.
    """
    data: dict[str, Any] = {"exit": list(exits), "layer": list(layers)}
    if accuracy is not None:
        data["accuracy"] = list(accuracy)
    for device, values in latency_ms.items():
        data[latency_column(device)] = list(values)
    frame = pd.DataFrame(data)
    try:
        frame = frame.sort_values("exit", kind="stable").reset_index(drop=True)
    except TypeError:
        pass  # non-numeric exits: validate_frame names the row
    typed = validate_frame(frame, name="new exit table")
    meta = _check_metadata(dict(metadata or {}), typed, "new exit table")
    return ExitTableFile(typed, meta)


def sidecar_path(csv_path: Path | str) -> Path:
    """The JSON sidecar of a table: the same path with ``.json`` instead of ``.csv``."""
    return Path(csv_path).with_suffix(".json")


def read_exit_table(
    path: Path | str, *, require_sidecar: bool = False, main_exit: int | None = MAIN_EXIT
) -> ExitTableFile:
    """Read and validate an exit table and its JSON sidecar (if present).

    Args:
        path: the CSV file.
        require_sidecar: refuse a table without its JSON sidecar.
        main_exit: the exit number the table's deepest exit must be (the main branch, 17 for
            VGG-16), or None to accept any deepest exit.

    Raises:
        ExitTableError: if the file is missing, violates the schema (the message names the
            row and column) or its deepest exit is not ``main_exit``.
    """
    path = Path(path)
    frame = read_table_frame(path, main_exit=main_exit)
    meta_path = sidecar_path(path)
    if meta_path.is_file():
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ExitTableError(f"{meta_path}: not valid JSON ({exc}).") from None
    elif require_sidecar:
        raise ExitTableError(f"{path}: the JSON sidecar {meta_path} is missing.")
    else:
        metadata = {}
    return ExitTableFile(frame, _check_metadata(metadata, frame, str(meta_path)))


def table_writers(table: ExitTableFile, path: Path | str) -> dict[Path, Callable[[Path], None]]:
    """Validate ``table`` and return writers for its CSV and JSON sidecar, to be passed (perhaps
    with other files) to :func:`profiling.fileio.write_files_atomically`.

    Raises:
        ProfilingError: if the table is invalid or the path does not end in ``.csv``.
    """
    path = Path(path)
    if path.suffix != ".csv":
        raise ProfilingError(f"an exit table path must end in .csv (got {path}).")
    frame = validate_frame(table.frame, name=str(path))
    metadata = _check_metadata(dict(table.metadata), frame, str(path))
    text = json.dumps(metadata, indent=2, default=str) + "\n"
    return {
        path: lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"),
        sidecar_path(path): lambda tmp: tmp.write_text(text, encoding="utf-8"),
    }


def write_exit_table(table: ExitTableFile, path: Path | str) -> tuple[Path, Path]:
    """Write ``table`` as CSV plus JSON sidecar, both atomically; returns the two paths.

    Raises:
        ProfilingError: if the table is invalid or the path is not writable.
    """
    write_files_atomically(table_writers(table, path))
    return Path(path), sidecar_path(path)


def merge_exit_tables(
    tables: Sequence[ExitTableFile], *, names: Sequence[str] | None = None
) -> ExitTableFile:
    """Merge tables of the same exits measured on different devices: one latency column per
    device (the shape of the paper's Table I).

    Exits and layers must agree; accuracies, where several tables have them, must be equal
    (taken from the same checkpoint); device identifiers must be distinct.

    Raises:
        ProfilingError: on fewer than two tables, differing exits/layers/accuracies or a device
            that appears in two tables.
    """
    if len(tables) < 2:
        raise ProfilingError("merging needs at least two exit tables.")
    names = list(names) if names is not None else [f"table {i + 1}" for i in range(len(tables))]
    first = tables[0]
    accuracy: np.ndarray | None = first.accuracy if first.has_accuracy else None
    acc_from = names[0]
    latency: dict[str, np.ndarray] = {}
    devices_meta: dict[str, Any] = {}
    device_from: dict[str, str] = {}
    sources: list[str] = []
    merged_from: list[dict[str, Any]] = []
    checkpoint: dict[str, str] = {}
    for table, name in zip(tables, names, strict=True):
        if table.exits.tolist() != first.exits.tolist():
            raise ProfilingError(
                f"{name} has exits {table.exits.tolist()} but {names[0]} has "
                f"{first.exits.tolist()}; merge tables of the same exits."
            )
        if table.layers != first.layers:
            raise ProfilingError(f"{name} and {names[0]} place the exits after different layers.")
        if table.has_accuracy:
            if accuracy is None:
                accuracy, acc_from = table.accuracy, name
            elif not np.allclose(table.accuracy, accuracy, rtol=0.0, atol=1e-12):
                raise ProfilingError(
                    f"{name} and {acc_from} have different accuracies; "
                    "merge tables measured from the same checkpoint."
                )
        sha = table.metadata.get("checkpoint_sha256")
        if sha:
            if checkpoint and sha != checkpoint["sha"]:
                raise ProfilingError(
                    f"{name} and {checkpoint['name']} come from different checkpoints; "
                    "merge tables of the same checkpoint."
                )
            checkpoint = {"sha": sha, "name": name}
        for device in table.devices:
            if device in latency:
                raise ProfilingError(
                    f"device {device!r} appears in both {device_from[device]} and {name}; "
                    "rename the column (and its sidecar entry) in one of them."
                )
            latency[device] = table.latency_ms(device)
            devices_meta[device] = table.metadata.get("devices", {}).get(device, {})
            device_from[device] = name
        source = table.metadata.get("source", "unknown")
        sources.append(source)
        rest = {k: v for k, v in table.metadata.items() if k != "devices"}
        merged_from.append({"table": name, **rest})
    unique = set(sources)
    metadata: dict[str, Any] = {
        "source": sources[0] if len(unique) == 1 and sources[0] in SOURCES else "mixed",
        "devices": devices_meta,
        "merged_from": merged_from,
    }
    if checkpoint:
        metadata["checkpoint_sha256"] = checkpoint["sha"]
    return make_exit_table(
        exits=first.exits.tolist(),
        layers=first.layers,
        latency_ms=latency,
        accuracy=None if accuracy is None else accuracy.tolist(),
        metadata=metadata,
    )
