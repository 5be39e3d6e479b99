"""`python -m offload.experiments`: every experiment runs in --quick mode and writes its files."""

from __future__ import annotations

import pandas as pd
import pytest

from offload.agents import load_agent
from offload.experiments.__main__ import main
from offload.experiments.topology import CANNOT_RUN

SMALL = ["--quick", "--workers", "1", "--seeds", "0", "--train-slots", "12", "--eval-slots", "8"]


def test_paper_quick_writes_every_csv_figure_and_the_report(tmp_path):
    assert (
        main(
            ["paper", *SMALL, "--devices", "4", "--convergence-slots", "15", "--out", str(tmp_path)]
        )
        == 0
    )
    for name in ("devices", "capacity", "fluctuation", "csi"):
        rows = pd.read_csv(tmp_path / f"{name}.csv")
        # one row per method, M, τ, seed: 6 methods x 1 M x 2 τ x 1 seed
        assert len(rows) == 12
        assert set(rows["method"]) == {"GRLE", "GRL", "DROOE", "DROO", "greedy", "random"}
        assert rows["avg_accuracy"].between(0, 1).all() and rows["ssp"].between(0, 1).all()
        assert (rows["avg_accuracy"] <= rows["ssp"]).all()  # accuracy of a success is at most 1
        assert (rows["tasks"] == 4 * 8).all()
        assert (rows["compute_scale"] == 1.0).all()  # the simulator's default
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    curves = pd.read_csv(tmp_path / "convergence.csv")
    assert len(curves) == 2 * 15 and set(curves["method"]) == {"GRLE", "DROOE"}
    assert (curves["normalised_reward"] <= 1 + 1e-9).all()  # nothing beats the exact optimum
    topo = pd.read_csv(tmp_path / "topology.csv", keep_default_na=False)
    droo = topo[topo["method"].isin(["DROO", "DROOE"])]
    assert (droo["note"] == CANNOT_RUN).sum() == 2 * 3  # M=4, M=12 and dynamic for each
    grle = topo[topo["method"] == "GRLE"]
    assert (grle["note"] == "").all() and len(grle) == 4  # M=4, 10, 12 and dynamic
    report = (tmp_path / "report.md").read_text()
    assert "REDUCED configuration" in report and "| GRLE / DROOE |" in report
    assert "cannot run" in report
    assert "## Where we differ from the paper, and why" in report
    assert (tmp_path / "actors" / "convergence_M6_tau30_seed0_GRLE.safetensors").exists()
    # the report can be rebuilt from the CSVs alone, header kept
    (tmp_path / "devices.png").unlink()
    assert main(["paper", "--rebuild-report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text() == report
    assert (tmp_path / "devices.png").exists()


@pytest.mark.parametrize("experiment", ["csi", "convergence"])
def test_single_experiment_writes_its_own_report(tmp_path, experiment):
    args = [
        experiment,
        *SMALL,
        "--devices",
        "4",
        "--convergence-slots",
        "12",
        "--out",
        str(tmp_path),
    ]
    assert main([*args, "--compute-scale", "4", "--save-actors"]) == 0
    report = (tmp_path / f"{experiment}.md").read_text()
    assert (tmp_path / f"{experiment}.png").exists()
    assert not (tmp_path / "report.md").exists()
    assert "compute_scale = 4.0" in report and "Calibrated regime" in report
    assert (pd.read_csv(tmp_path / f"{experiment}.csv")["compute_scale"] == 4.0).all()
    saved = sorted(p.stem for p in (tmp_path / "actors").glob("*.safetensors"))
    if experiment == "csi":  # every learner of both cells (τ = 10 and 30 ms)
        assert len(saved) == 8 and "csi_M4_tau30_seed0_GRLE" in saved
        agent = load_agent(tmp_path / "actors" / "csi_M4_tau30_seed0_GRLE")
        assert agent.name == "GRLE"


def test_missing_exit_table_is_one_clear_error(tmp_path, capsys):
    assert (
        main(["devices", "--quick", "--exits", str(tmp_path / "nope.csv"), "--out", str(tmp_path)])
        == 2
    )
    assert "cannot use exit table" in capsys.readouterr().err


def test_a_measured_table_runs_on_its_own_server_devices(tmp_path, capsys):
    table = tmp_path / "cpu.csv"
    table.write_text(
        "exit,layer,accuracy,latency_ms:cpu_1t\n1,conv1_1,0.5,2.5\n17,conv5_3,0.65,28.0\n"
    )
    out = tmp_path / "out"
    # the default servers are the paper's GPUs, which this table does not have
    assert (
        main(["devices", *SMALL, "--devices", "4", "--exits", str(table), "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert "['RTX_2080TI', 'GTX_1080TI']" in err and "--server-devices cpu_1t cpu_1t" in err
    assert not out.exists()  # nothing half-written
    args = ["--devices", "4", "--exits", str(table), "--server-devices", "cpu_1t", "cpu_1t"]
    assert main(["devices", *SMALL, *args, "--out", str(out)]) == 0
    rows = pd.read_csv(out / "devices.csv")
    assert len(rows) == 12 and rows["ssp"].between(0, 1).all()
    # 28 ms of main-branch compute behind a 4-40 ms upload: GRL (main branch only) cannot meet
    # a 30 ms deadline except for the rare fast upload; early exits can
    grl = rows[(rows["method"] == "GRL") & (rows["tau_ms"] == 30)]["avg_accuracy"].item()
    greedy = rows[(rows["method"] == "greedy") & (rows["tau_ms"] == 30)]["avg_accuracy"].item()
    assert grl < 0.2 < greedy
    assert "server_devices = ('cpu_1t', 'cpu_1t')" in (out / "devices.md").read_text()
