"""The scale experiment (city scale): a tiny run writes its CSV, figures and report, and the
numbers read back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from offload.experiments.__main__ import main, make_plan, parse_args, run_config
from offload.experiments.scale import REPAIR_SUFFIX, SCALE_LEARNERS, SCALE_METHODS
from offload.experiments.scale_report import slope

TINY = ["--quick", "--workers", "1", "--train-slots", "12", "--eval-slots", "3"]


def test_scale_tiny_run_writes_csv_figures_and_report(tmp_path):
    argv = ["scale", *TINY, "--scale-devices", "20", "40", "--scale-servers", "5"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "scale.csv")
    repaired = [m + REPAIR_SUFFIX for m in SCALE_LEARNERS]
    assert set(rows["method"]) == set(SCALE_METHODS) | set(repaired)
    assert len(rows) == (len(SCALE_METHODS) + len(repaired)) * 2  # methods x M x N x seed
    assert set(rows["M"]) == {20, 40} and set(rows["N"]) == {5} and set(rows["k"]) == {5}
    learners = rows[rows["method"].isin(SCALE_LEARNERS + tuple(repaired))]
    assert (learners["train_M"] == 20).all() and (learners["candidates"] == 16).all()
    assert learners["actor_ms"].notna().all() and rows["decision_ms"].gt(0).all()
    assert rows.loc[~rows.index.isin(learners.index), "actor_ms"].isna().all()
    with_repair = rows[rows["method"].isin(repaired)]
    assert (with_repair["repair_passes"] == 1).all() and (with_repair["repair_below"] == 0.25).all()
    assert (rows.loc[rows["method"].isin(SCALE_LEARNERS), "repair_passes"] == 0).all()
    # the bound holds: no method's predicted Q above it; the ratio is what the columns say
    assert (rows["q_over_bound"] <= 1 + 1e-12).all() and (rows["q_over_bound"] > 0).all()
    np.testing.assert_allclose(rows["q_over_bound"], rows["pred_q"] / rows["bound_q"])
    assert rows[["avg_accuracy", "ssp"]].apply(lambda c: c.between(0, 1)).all().all()
    report = (tmp_path / "scale.md").read_text()
    at = rows[rows["M"] == 40]
    greedy = at.loc[at["method"] == "greedy", "q_over_bound"].mean()
    assert f"greedy {greedy:.3f}" in report  # the findings are read off the table
    assert "Fitted slopes" in report and "## Findings\n" not in report
    for name in ("scale.png", "scale_time.png", "manifest.json"):
        assert (tmp_path / name).exists()
    assert main(["scale", "--rebuild-report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "scale.md").read_text() == report


def test_slope_of_a_power_law():
    m = pd.Series([50.0, 100.0, 1000.0])
    assert abs(slope(3.0 * m**1.5, m) - 1.5) < 1e-9
    assert np.isnan(slope(pd.Series([1.0]), pd.Series([50.0])))


def test_other_experiments_record_no_scale_fields():
    """Runs of the other experiments keep the configuration they had before the scale study
    (so they resume, and a finished --out stays finished)."""
    for experiment in ("paper", "regime", "ablation", "scale"):
        args = parse_args([experiment, "--quick"])
        plan = run_config(args, make_plan(args))["plan"]
        assert any(k.startswith("scale_") for k in plan) == (experiment == "scale")
