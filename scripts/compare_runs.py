"""Compare two output folders of the offload commands number by number.

``python scripts/compare_runs.py BEFORE AFTER [--tol 1e-9]`` walks both folders and compares
every file they share by kind:

* ``*.csv``: the same columns in the same order and the same number of rows; string columns
  equal, numeric columns within ``--tol`` absolute (NaN equals NaN; ``inf`` equals ``inf``).
  Wall-clock columns (``wall_s`` and names ending in ``_wall_s``) are skipped.
* ``*.safetensors``: the same tensor names and shapes, values within ``--tol``.
* ``*.npz``: the same array names and shapes, values within ``--tol`` (exact for non-floats).
* ``*.md`` and ``*.txt``: equal line by line after dropping lines that carry a time,
  a command line or a revision (``Made``, ``Command``, ``wall``, ``git``, ``Engine``), and
  after masking numbers that follow "s" or "min" time units.
* ``*.json``: equal after dropping the keys that describe the invocation (times, argv,
  command, revision, machine, paths, workers, backend).

Files present in only one folder are reported. Images and logs are not compared. Exit status 0 when
everything matches, 1 otherwise; one summary line per file. It checks that a change keeps "the
same commands give the same numbers to within 1e-9" (the outputs of scripts/goldens.sh).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from grle_common.cli import bounded

SKIP_SUFFIXES = {".png", ".pdf", ".svg", ".log"}  # images; progress logs
VOLATILE_LINE = re.compile(r"(Made |Command|command|wall|Wall|git|Engine|engine|UTC|minutes)")
TIME_UNIT = re.compile(r"\d+(\.\d+)?\s*(s|ms|min)\b")
VOLATILE_KEYS = {
    "command",
    "argv",
    "git_revision",
    "machine",
    "packages",
    "started_utc",
    "finished_utc",
    "wall_s_this_invocation",
    "wall_s",
    "out",
    "jobs_resumed",
    "engine",
    "created_utc",
    "workers",
    "backend",
    "address",
}


def _is_wall(column: str) -> bool:
    return column == "wall_s" or column.endswith("_wall_s")


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| over the finite pairs; inf when NaN/inf patterns differ."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    same_special = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
    finite = np.isfinite(a) & np.isfinite(b)
    if not np.all(same_special | finite):
        return math.inf
    return float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))


def compare_csv(a: Path, b: Path, tol: float) -> str | None:
    fa, fb = pd.read_csv(a), pd.read_csv(b)
    if list(fa.columns) != list(fb.columns):
        return f"columns differ: {sorted(set(fa.columns) ^ set(fb.columns)) or 'order'}"
    if len(fa) != len(fb):
        return f"rows {len(fa)} vs {len(fb)}"
    worst, where = 0.0, ""
    for col in fa.columns:
        if _is_wall(col):
            continue
        x, y = fa[col], fb[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            d = _max_diff(x.to_numpy(), y.to_numpy())
            if d > worst:
                worst, where = d, col
        elif not x.astype(str).equals(y.astype(str)):
            return f"column {col!r} differs"
    return None if worst <= tol else f"max |Δ| {worst:.3g} in {where!r}"


def compare_tensors(a: dict, b: dict, tol: float) -> str | None:
    if sorted(a) != sorted(b):
        return f"names differ: {sorted(set(a) ^ set(b))}"
    worst, where = 0.0, ""
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.shape != y.shape:
            return f"{name}: shape {x.shape} vs {y.shape}"
        if x.dtype.kind in "fc":
            d = _max_diff(x, y)
        else:
            d = 0.0 if np.array_equal(x, y) else math.inf
        if d > worst:
            worst, where = d, name
    return None if worst <= tol else f"max |Δ| {worst:.3g} in {where!r}"


def _load_safetensors(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _text_lines(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    return [TIME_UNIT.sub("<t>", ln) for ln in lines if not VOLATILE_LINE.search(ln)]


def _strip(value):  # noqa: ANN001, ANN202 - JSON value
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def compare_file(a: Path, b: Path, tol: float) -> str | None:
    """None when `a` and `b` agree; otherwise one phrase saying how they differ."""
    suffix = a.suffix
    if suffix == ".csv":
        return compare_csv(a, b, tol)
    if suffix == ".safetensors":
        return compare_tensors(_load_safetensors(a), _load_safetensors(b), tol)
    if suffix == ".npz":
        with np.load(a) as za, np.load(b) as zb:
            return compare_tensors(dict(za), dict(zb), tol)
    if suffix == ".json":
        same = _strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text()))
        return None if same else "JSON differs"
    la, lb = _text_lines(a), _text_lines(b)
    if la == lb:
        return None
    first = next((i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), None)
    if first is None:
        return f"{len(la)} vs {len(lb)} lines"
    return f"line {first + 1}: {la[first][:60]!r} vs {lb[first][:60]!r}"


def compare_dirs(before: Path, after: Path, tol: float) -> list[tuple[str, str | None]]:
    """(relative path, difference or None) for every file in either folder."""

    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and p.suffix not in SKIP_SUFFIXES
        }

    fa, fb = files(before), files(after)
    rows = []
    for rel in sorted(fa | fb):
        if rel not in fb:
            rows.append((rel, "only in BEFORE"))
        elif rel not in fa:
            rows.append((rel, "only in AFTER"))
        else:
            rows.append((rel, compare_file(before / rel, after / rel, tol)))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument(
        "--tol", type=bounded(float, low=0), default=1e-9, help="absolute tolerance (default 1e-9)"
    )
    p.add_argument("--quiet", action="store_true", help="print only the files that differ")
    args = p.parse_args(argv)
    for folder in (args.before, args.after):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder; pass two output folders.", file=sys.stderr)
            return 2
    rows = compare_dirs(args.before, args.after, args.tol)
    bad = [(rel, why) for rel, why in rows if why is not None]
    for rel, why in rows:
        if why is not None or not args.quiet:
            print(f"{'DIFF' if why else 'same'}  {rel}" + (f"  ({why})" if why else ""))
    print(f"{len(rows) - len(bad)} of {len(rows)} files agree within {args.tol:g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
