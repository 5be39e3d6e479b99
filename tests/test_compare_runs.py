"""scripts/compare_runs.py: the before/after comparison finds exactly the
differences that matter (numbers beyond the tolerance, changed columns, missing files) and
ignores the ones that do not (wall times, invocation metadata)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"
spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)


def _run_folder(root: Path, *, q: float = 0.5, wall: float = 1.0, extra: bool = False) -> Path:
    root.mkdir()
    pd.DataFrame(
        {"method": ["GRLE", "DROO"], "mean_q": [q, np.nan], "ssp": [1.0, np.inf], "wall_s": wall}
    ).to_csv(root / "devices.csv", index=False)
    (root / "manifest.json").write_text(json.dumps({"config": {"M": 4}, "wall_s": wall}))
    (root / "report.md").write_text(f"# Report\nMade in {wall} s\nGRLE 0.5\n")
    np.savez(root / "traces.npz", q=np.array([q, 2.0]), dec=np.array([1, 2]))
    if extra:
        (root / "extra.csv").write_text("a\n1\n")
    return root


def test_identical_runs_agree_although_wall_times_differ(tmp_path):
    a = _run_folder(tmp_path / "a", wall=1.0)
    b = _run_folder(tmp_path / "b", wall=7.5)
    rows = compare_runs.compare_dirs(a, b, 1e-9)
    assert [rel for rel, _ in rows] == ["devices.csv", "manifest.json", "report.md", "traces.npz"]
    assert all(why is None for _, why in rows)
    assert compare_runs.main([str(a), str(b)]) == 0


def test_a_number_beyond_the_tolerance_is_found_in_csv_and_npz(tmp_path):
    a = _run_folder(tmp_path / "a", q=0.5)
    b = _run_folder(tmp_path / "b", q=0.5 + 1e-6)
    why = dict(compare_runs.compare_dirs(a, b, 1e-9))
    assert why["devices.csv"] == "max |Δ| 1e-06 in 'mean_q'"
    assert why["traces.npz"] == "max |Δ| 1e-06 in 'q'"
    assert compare_runs.compare_dirs(a, b, 1e-5) == [
        (rel, None) for rel in ["devices.csv", "manifest.json", "report.md", "traces.npz"]
    ]
    assert compare_runs.main([str(a), str(b), "--quiet"]) == 1


def test_nan_against_a_number_and_missing_files_differ(tmp_path):
    a = _run_folder(tmp_path / "a")
    b = _run_folder(tmp_path / "b", extra=True)
    frame = pd.read_csv(b / "devices.csv")
    frame.loc[1, "mean_q"] = 0.0
    frame.to_csv(b / "devices.csv", index=False)
    why = dict(compare_runs.compare_dirs(a, b, 1e-9))
    assert why["devices.csv"] == "max |Δ| inf in 'mean_q'"
    assert why["extra.csv"] == "only in AFTER"


def test_a_renamed_column_or_changed_string_differs(tmp_path):
    a = _run_folder(tmp_path / "a")
    b = _run_folder(tmp_path / "b")
    frame = pd.read_csv(b / "devices.csv")
    frame.to_csv(b / "devices.csv", index=False, header=["method", "q", "ssp", "wall_s"])
    assert compare_runs.compare_file(a / "devices.csv", b / "devices.csv", 1e-9) == (
        "columns differ: ['mean_q', 'q']"
    )
    frame.loc[0, "method"] = "GRLE+"
    frame.to_csv(b / "devices.csv", index=False)
    assert compare_runs.compare_file(a / "devices.csv", b / "devices.csv", 1e-9) == (
        "column 'method' differs"
    )


def test_missing_folder_is_one_clear_error(tmp_path, capsys):
    assert compare_runs.main([str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "is not a folder" in capsys.readouterr().err
