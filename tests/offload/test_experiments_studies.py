"""The studies of the paper's actor: the ablation and regime experiments (--quick), the ψ-shape
switches they rely on, and the report's paired statistics on a hand-computed case."""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grle_common.cli import run_cli
from offload.exit_table import load_exit_table
from offload.experiments.__main__ import main
from offload.experiments.runner import default_exits
from offload.experiments.study_figures import figure_regime, figure_usage
from offload.experiments.study_report import (
    findings_section,
    paired_frame,
    paired_section,
    usage_frame,
    usage_section,
)
from offload.sim import MECConfig, OffloadEnv, optimal_decision, score_decisions
from offload.sim.reward import PsiScale, normalised, psi, psi_scale

REPO = Path(__file__).resolve().parents[2]
TINY = ["--quick", "--workers", "1", "--train-slots", "8", "--eval-slots", "6"]


def test_default_psi_shape_is_the_plain_float_of_eq_9():
    """The defaults build no PsiScale, so every caller runs today's arithmetic bit for bit."""
    assert type(psi_scale("as_written")) is float and psi_scale("as_written") == 1.0
    assert type(psi_scale("doubled", 5.0, "psi")) is float and psi_scale("doubled") == 2.0
    t, d = np.array([0.0, 6.0, 30.0, math.inf]), np.array([30.0, 30.0, 30.0, 30.0])
    e = np.exp(-5.0 * t / d)
    np.testing.assert_array_equal(psi(t, d, 1.0), 1.0 * e / (1.0 + e))


def test_psi_steepness_and_on_time_reward_by_hand():
    k10 = psi_scale("as_written", 10.0)
    # ψ(t) = 1 − sigmoid(10 t/δ): t = 3, δ = 30 → 1/(1 + e^1)
    assert psi(np.array([3.0]), np.array([30.0]), k10)[0] == pytest.approx(1 / (1 + math.e))
    assert psi(3.0, 30.0, k10) == pytest.approx(1 / (1 + math.e))  # floats: a float back
    on_time = psi_scale("as_written", 5.0, "on_time")
    t = np.array([0.0, 29.0, 30.0, 30.5, math.inf])
    np.testing.assert_array_equal(psi(t, np.full(5, 30.0), on_time), [1, 1, 1, 0, 0])
    assert [psi(x, 30.0, on_time) for x in (30.0, 30.5)] == [1.0, 0.0]
    assert float(psi_scale("doubled", 5.0, "on_time")) == 2.0
    again = pickle.loads(pickle.dumps(k10))  # worker processes keep the shape
    assert isinstance(again, PsiScale) and again.steepness == 10.0 and not again.on_time


def test_psi_of_floats_is_the_array_formula_and_eq_17_by_hand():
    """One ψ for floats (the scalar search model) and arrays; eq. (17) with its zero case."""
    for t in (0.0, 6.0, 29.5, 31.0, 200.0, math.inf):
        got = psi(t, 30.0, 2.0)
        assert type(got) is float
        assert got == pytest.approx(float(psi(np.array([t]), np.array([30.0]), 2.0)[0]), rel=1e-15)
    assert psi(6.0, 30.0) == math.exp(-1.0) / (1.0 + math.exp(-1.0))  # ψ(δ/5) = 1 - sigmoid(1)
    assert normalised(0.375, 0.5) == 0.75
    assert normalised(0.0, 0.0) == 1.0  # the optimum earns nothing and neither does the decision
    assert normalised(-1.0, 0.0) == 0.0


@pytest.mark.parametrize(("k", "form"), [(20.0, "psi"), (5.0, "on_time")])
def test_optimum_and_evaluator_agree_under_the_new_rewards(k, form):
    """The exact optimum (scalar model) and the vectorised evaluator give one Q per decision."""
    table = load_exit_table(default_exits())
    cfg = MECConfig(num_devices=4, compute_scale=4.0, psi_steepness=k, reward_form=form)
    env = OffloadEnv(table, cfg)
    env.reset(seed=3)
    for _ in range(5):
        state = env.slot_state
        best = optimal_decision(state)
        assert float(score_decisions(state, best.decision)[0]) == pytest.approx(best.q, abs=1e-12)
        env.step(best.decision)


def test_regime_refuses_a_fixed_compute_scale(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(main, ["regime", *TINY, "--compute-scale", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the regime map sweeps the compute scale itself")
    assert err.count("\n") == 1 and not out.exists()


def test_bad_reward_settings_are_one_clear_error():
    with pytest.raises(ValueError, match="psi_steepness=0"):
        MECConfig(psi_steepness=0)
    with pytest.raises(ValueError, match=r"reward_form='late'.*choose one of \['psi', 'on_time'\]"):
        MECConfig(reward_form="late")


def test_regime_quick_writes_the_map(tmp_path):
    assert main(["regime", *TINY, "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "regime.csv")
    # 4 reward variants x 6 methods x 2 compute scales x 2 τ x 1 seed
    assert len(rows) == 4 * 6 * 2 * 2
    assert set(rows["method"]) == {"GRLE", "GRLE+", "GRL", "greedy", "greedy-main", "optimum"}
    assert sorted(rows["compute_scale"].unique()) == [1.0, 4.0]
    on_time = rows[rows["reward_form"] == "on_time"]
    assert on_time["psi_steepness"].isna().all()
    # on-time reward: Q of a slot = Σ φ of the tasks done in time = accuracy sum, M = 4 tasks
    np.testing.assert_allclose(on_time["mean_q"], 4 * on_time["avg_accuracy"], rtol=1e-12)
    assert (rows[rows["method"].isin(["GRL", "greedy-main"])]["exit_share_17"] == 1.0).all()
    report = (tmp_path / "regime.md").read_text()
    assert "## Findings" in report and "Regime map: greedy ≥ GRLE in average accuracy in" in report
    assert "| on-time | 10 | 1 | GRLE |" in report and (tmp_path / "regime.png").exists()
    assert main(["regime", "--rebuild-report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "regime.md").read_text() == report


def test_ablation_quick_evaluates_every_policy_on_the_same_slots(tmp_path):
    assert main(["ablation", *TINY, "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "ablation.csv")
    assert list(rows["method"]) == [
        "actor",
        "random+critic",
        "GRLE S=1",
        "GRLE S=M",
        "GRLE S=MNL",
        "mlp S=MNL",
        "optimum",
        "greedy",
        "greedy-main",
        "GRLE+ actor",
        "GRLE+ S=MNL",
        "untrained S=MNL",
    ]
    assert (rows["tasks"] == 4 * 6).all() and (rows["M"] == 4).all()
    # the actor alone and S = 1 (the actor's argmax, scored) take the same decisions
    first = rows.set_index("method")
    cols = ["avg_accuracy", "mean_q", "exit_share_1"]
    assert first.loc["actor", cols].tolist() == first.loc["GRLE S=1", cols].tolist()
    assert (rows.loc[rows["method"] == "untrained S=MNL", "train_slots"] == 0).all()
    # how often the critic keeps the actor's own candidate: counted in whole slots (6 here),
    # only for the four actor + critic policies over M·N·L candidates
    share = first["actor_pick_share"].dropna()
    assert sorted(share.index) == ["GRLE S=MNL", "GRLE+ S=MNL", "mlp S=MNL", "untrained S=MNL"]
    np.testing.assert_allclose(share * 6, np.round(share * 6), atol=1e-12)
    report = (tmp_path / "ablation.md").read_text()
    assert "| 1 | 4 | 30 | GRLE S=MNL − untrained S=MNL |" in report
    assert "Learning lift" in report and (tmp_path / "ablation.png").exists()
    assert "Ablation: the critic keeps the GRLE actor's own candidate in " in report


def _synthetic() -> pd.DataFrame:
    """One cell, three seeds: GRLE and greedy with hand-chosen numbers."""
    base = {"experiment": "devices", "scenario": 1, "M": 10, "tau_ms": 30.0}
    acc = {"GRLE": [0.80, 0.82, 0.84], "greedy": [0.79, 0.80, 0.83]}
    q = {"GRLE": [1.0, 1.1, 1.2], "greedy": [1.0, 1.0, 1.0]}
    share = {"GRLE": [1.0, 0.5, 0.0], "greedy": [0.0, 0.0, 0.0]}
    return pd.DataFrame(
        [
            {
                **base,
                "method": m,
                "seed": s,
                "avg_accuracy": acc[m][s],
                "mean_q": q[m][s],
                "exit_share_1": share[m][s],
                "exit_share_17": 1 - share[m][s],
                "es_share_1": 0.5,
                "es_share_2": 0.5,
            }
            for m in ("GRLE", "greedy")
            for s in range(3)
        ]
    )


def test_paired_statistics_on_the_report_by_hand():
    """GRLE − greedy per seed: accuracy 0.01, 0.02, 0.01 → mean 0.01333, s = 0.0057735,
    half-width t(0.975, 2) = 4.302653 × s/√3 = 0.014342; Q: 0, 0.1, 0.2 → 0.1 ± 0.248420."""
    lines = paired_section(_synthetic())
    assert "| devices | 10 | 30 | GRLE − greedy | +0.013 ± 0.014 | +0.100 ± 0.248 | 3 |" in lines
    frame = paired_frame(_synthetic()).set_index("metric")
    assert frame.loc["avg_accuracy", "mean"] == pytest.approx(0.04 / 3, abs=1e-15)
    assert frame.loc["avg_accuracy", "ci_half"] == pytest.approx(
        4.302653 * 0.0057735 / 3**0.5, rel=1e-5
    )
    assert frame.loc["mean_q", "ci_half"] == pytest.approx(4.302653 * 0.1 / 3**0.5, rel=1e-6)
    assert not any("GRLE − DROOE" in line for line in lines)  # DROOE did not run: no row
    findings = "\n".join(findings_section(_synthetic()))
    assert "- greedy ≥ GRLE in average accuracy in 0 of 1 cells" in findings
    assert "in mean Q in 0 of 1" in findings
    # 0.01333 − 0.01434 < 0 < 0.01333 + 0.01434: the CI straddles 0
    assert "CI above 0 in 0, below 0 in 0, straddling 0 (or one seed) in 1 of 1 cells" in findings
    # GRLE's exit-1 share: (1 + 0.5 + 0)/3 = 50 %
    assert "GRLE sends 50.0 % of tasks to exit 1 (mean over its 3 runs; min 0.0 %" in findings
    table = usage_frame(_synthetic()).set_index(["method", "column"])
    assert table.loc[("GRLE", "exit_share_1"), "mean"] == pytest.approx(0.5)
    assert table.loc[("greedy", "exit_share_17"), "text"] == "1.000 ± 0.000"
    usage = usage_section(_synthetic())
    # exit-1 shares 1, 0.5, 0: mean 0.5, s = 0.5, half-width 4.302653 × 0.5/√3 = 1.242
    assert "| devices | 10 | 30 | GRLE | 0.500 ± 1.242 | 0.500 ± 1.242 | 0.500 ± 0.000 | " in (
        "\n".join(usage) + " "
    )


def test_sections_without_data_say_so_in_one_line():
    old = _synthetic().drop(columns=["exit_share_1", "exit_share_17", "es_share_1", "es_share_2"])
    usage = usage_section(old)
    assert (
        usage[2]
        == "These results have no exit-usage columns (made before the paper's actor was added)."
    )
    paired = paired_section(old[old["method"] == "greedy"])
    assert paired[2] == "No method pair of this table ran here; section omitted."


def _before_paper_actor(frame: pd.DataFrame) -> pd.DataFrame:
    """A result table as the code before the paper's actor wrote it: the engineered actor called
    GRLE, no paper actor, no main-branch greedy, no usage columns, fixed-input DROO."""
    usage = [c for c in frame if c.startswith(("exit_share_", "es_share_", "success_exit_"))]
    old = frame[~frame["method"].isin(["GRLE", "greedy-main"])].drop(columns=usage)
    old = old.assign(method=old["method"].replace({"GRLE+": "GRLE"}))
    if "network" in old:  # DROO types could not run away from their training M
        fixed = old["method"].isin(["DROO", "DROOE"]) & (old["M"] != old["train_M"])
        old.loc[fixed, METRICS] = np.nan
        old.loc[fixed, "note"] = "cannot run: DROO's input size is fixed at the training M"
    return old


METRICS = ["avg_accuracy", "ssp", "throughput", "mean_q"]


def test_rebuild_report_on_results_made_before_the_paper_actor_degrades_gracefully(tmp_path):
    """CSVs written before the paper's actor was added (no GRLE+, no usage columns, DROO "cannot
    run") still rebuild, in a copy made from the committed CSVs: the committed report is never written."""
    committed = REPO / "results"
    before = {p.name: p.read_bytes() for p in committed.glob("*.md")}
    for p in committed.glob("*.csv"):
        if p.name in ("paired.csv", "exit_usage.csv"):
            continue  # derived tables: the rebuild writes them
        frame = pd.read_csv(p)
        (frame if p.name == "convergence.csv" else _before_paper_actor(frame)).to_csv(
            tmp_path / p.name, index=False
        )
    shutil.copy(committed / "report.md", tmp_path / "report.md")
    assert main(["paper", "--rebuild-report", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert report.splitlines()[0] == before["report.md"].decode().splitlines()[0]
    assert (
        "made before the paper's actor was added, when the method called GRLE was the engineered actor"
        in report
    )
    assert (
        "These results have no exit-usage columns (made before the paper's actor was added)."
        in report
    )
    assert "| [0.60, fitted] |" in report  # compute scale 4 was fitted to GRL's number
    assert "cannot run" in report  # the old fixed-input DROO rows keep their note
    assert {p.name: p.read_bytes() for p in committed.glob("*.md")} == before


def test_study_figures_show_the_computed_differences():
    """The regime heat map writes GRLE − greedy per (variant, scale) cell; the usage figure has
    one panel per scenario and τ at the reference M."""
    rows = pd.DataFrame(
        [
            {
                "experiment": "regime",
                "method": m,
                "scenario": 1,
                "M": 10,
                "tau_ms": 30.0,
                "compute_scale": scale,
                "psi_steepness": 5.0,
                "reward_form": "psi",
                "seed": seed,
                "avg_accuracy": base + (0.1 if m == "GRLE" else 0.0) + 0.01 * seed,
                "exit_share_1": 0.25 * seed if m == "GRLE" else 0.0,
                "eval_slots": 10,
            }
            for m in ("GRLE", "greedy", "greedy-main")
            for scale, base in ((1.0, 0.5), (4.0, 0.3))
            for seed in (0, 1)
        ]
    )
    fig = figure_regime(rows, exit_table="t.csv", run="r")
    first = fig.axes[0]  # GRLE − greedy at τ = 30 ms
    assert [t.get_text() for t in first.texts] == ["+0.10", "+0.10"]
    assert first.get_title() == "GRLE − greedy, avg accuracy, τ = 30 ms"
    share = fig.axes[2]  # the heat maps first, then their colour bars
    assert [t.get_text() for t in share.texts] == ["0.12", "0.12"]  # mean of 0 and 0.25
    cells = _synthetic().assign(tau_ms=lambda f: f["seed"].map({0: 10.0, 1: 10.0, 2: 10.0}))
    usage = figure_usage(pd.concat([cells, _synthetic()]), exit_table="t.csv", run="r")
    titles = [ax.get_title() for ax in usage.axes]
    assert titles == ["devices, τ = 10 ms", "devices, τ = 30 ms"]
    assert usage.get_suptitle().startswith("Exit usage at M = 10 (mean over seeds)")
