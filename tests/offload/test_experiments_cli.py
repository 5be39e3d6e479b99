"""`python -m offload.experiments`: every experiment runs in --quick mode and writes its files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from grle_common.cli import run_cli
from offload.agents import load_agent
from offload.experiments import store
from offload.experiments.__main__ import EXPERIMENTS, main, parser
from offload.experiments.presets import PROCESS_BYTES, memory_estimate, preset
from offload.experiments.runner import default_exits

METHODS = {"GRLE", "GRLE+", "GRL", "DROOE", "DROO", "greedy", "greedy-main", "random"}

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
        # one row per method, M, τ, seed: 8 methods x 1 M x 2 τ x 1 seed
        assert len(rows) == 16
        assert set(rows["method"]) == METHODS
        shares = rows[[c for c in rows.columns if c.startswith("exit_share_")]].sum(axis=1)
        assert shares.to_numpy() == pytest.approx(1.0)  # every task at one exit
        main_branch = rows[rows["method"].isin(["GRL", "DROO", "greedy-main"])]
        assert (main_branch["exit_share_17"] == 1.0).all()  # Table I's main branch is exit 17
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
    # padded input: DROO-type agents trained at M = 10 run at M = 4, 12 and in the dynamic network
    assert (droo["note"] == "padded input").all() and len(droo) == 2 * 4
    assert pd.to_numeric(droo["avg_accuracy"]).between(0, 1).all()
    grle = topo[topo["method"] == "GRLE"]
    assert (grle["note"] == "").all() and len(grle) == 4  # M=4, 10, 12 and dynamic
    assert set(topo["method"]) == METHODS - {"random"}
    report = (tmp_path / "report.md").read_text()
    assert "REDUCED configuration" in report and "| GRLE / DROOE |" in report
    assert "cannot run" not in report
    assert report.index("## Findings") < report.index("### convergence")
    assert "- greedy ≥ GRLE in average accuracy in " in report
    assert "| devices | 4 | 30 | GRLE − greedy |" in report  # the paired table
    assert "## Exit usage" in report and (tmp_path / "exit_usage.png").exists()
    assert "## Where we differ from the paper, and why" in report
    assert (tmp_path / "actors" / "convergence_M6_tau30_seed0_GRLE.safetensors").exists()
    assert (tmp_path / "manifest.json").exists() and not (tmp_path / ".progress").exists()
    assert not list(tmp_path.glob(".staging-*"))  # the staging folder is gone
    # the report can be rebuilt from the CSVs alone, header kept, CSVs untouched
    (tmp_path / "devices.png").unlink()
    csv_before = (tmp_path / "devices.csv").stat().st_mtime_ns
    assert main(["paper", "--rebuild-report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text() == report
    assert (tmp_path / "devices.png").exists()
    assert (tmp_path / "devices.csv").stat().st_mtime_ns == csv_before


@pytest.mark.parametrize(
    ("experiment", "actors"),
    [
        # --save-actors: every learner of both cells (τ = 10 and 30 ms)
        (
            "csi",
            [
                f"csi_M4_tau{tau}_seed0_{m}"
                for m in ("DROO", "DROOE", "GRL", "GRLE", "GRLE+")
                for tau in (10, 30)
            ],
        ),
        # the convergence actors are always saved (M = 6 in --quick)
        ("convergence", ["convergence_M6_tau30_seed0_DROOE", "convergence_M6_tau30_seed0_GRLE"]),
    ],
)
def test_single_experiment_writes_its_own_report(tmp_path, experiment, actors):
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
    assert saved == sorted(actors)
    agent = load_agent(tmp_path / "actors" / actors[-1])
    assert agent.name == actors[-1].rsplit("_", 1)[1]
    if experiment == "csi":  # the experiments' GRLE is the paper's actor, GRLE+ the engineered one
        grle = load_agent(tmp_path / "actors" / "csi_M4_tau30_seed0_GRLE").actor
        plus = load_agent(tmp_path / "actors" / "csi_M4_tau30_seed0_GRLE+").actor
        assert (type(grle).__name__, type(plus).__name__) == ("GRLEPaperActor", "GRLEActor")


def test_missing_exit_table_is_one_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    out = tmp_path / "out"
    assert run_cli(main, ["devices", "--quick", "--exits", str(missing), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert err.count(str(missing)) == 1 and f"{missing}: no such file" in err
    assert not out.exists()


COUNT, SEED, POSITIVE = "an integer ≥ 1", "an integer ≥ 0 and ≤ 4294967295", "a number > 0"
# (experiment, flag, its values, the flag's range); the last value is out of range
BAD_NUMBERS = [
    *[("devices", "--devices", v, COUNT) for v in ("0", "-3", "4 0")],
    *[("devices", "--eval-slots", v, COUNT) for v in ("0", "-5")],
    *[("devices", "--workers", v, COUNT) for v in ("0", "-2")],
    ("convergence", "--convergence-slots", "0", COUNT),
    ("regime", "--regime-devices", "0", COUNT),
    *[
        ("scale", f, "0", COUNT)
        for f in ("--scale-candidates", "--scale-devices", "--scale-servers")
    ],
    ("devices", "--train-slots", "-1", "an integer ≥ 0"),
    *[("devices", "--seeds", v, SEED) for v in ("-1", "0 4294967296")],
    *[("devices", "--compute-scale", v, POSITIVE) for v in ("-1", "0", "nan")],
    ("regime", "--regime-scales", "1 0", POSITIVE),
]


@pytest.mark.parametrize(("experiment", "flag", "values", "valid"), BAD_NUMBERS)
def test_a_number_out_of_range_is_refused_before_any_work(
    tmp_path, capsys, experiment, flag, values, valid
):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([experiment, flag, *values.split(), "--quick", "--out", str(out)])
    assert exc.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    got = values.split()[-1]
    assert (
        last
        == f"python -m offload.experiments: error: argument {flag}: must be {valid} (got {got})"
    )
    assert not out.exists()


def test_every_numeric_option_has_a_range():
    numeric = [a for a in parser()._actions if a.type is not None]
    assert {a.dest for a in numeric} == {
        "seeds", "workers", "devices", "regime_devices", "regime_scales", "scale_devices",
        "scale_servers", "scale_candidates", "train_slots", "eval_slots", "convergence_slots",
        "compute_scale", "main_exit",
    }  # fmt: skip
    assert all(a.type not in (int, float) for a in numeric)  # bounded, not a bare type


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["devices", "--devices", "4", "10", "4"],
            "--devices names 4 more than once; give each value once.",
        ),
        (["devices", "--seeds", "1", "1", "2", "2"], "--seeds names 1, 2 more than once; give each value once."),
        (["devices", "--compute-scale", "inf"], "--compute-scale must be a finite number (got inf)."),
        (["regime", "--regime-scales", "1", "inf"], "--regime-scales must be a finite number (got inf)."),
    ],
)  # fmt: skip
def test_values_that_do_not_fit_together_are_one_sentence(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert run_cli(main, [*argv, "--quick", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not out.exists()


def test_a_run_bigger_than_the_machines_memory_is_refused_with_the_estimate(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(store, "memory_bytes", lambda: 16 * 2**30)

    def no_work(*_args, **_kwargs):
        raise AssertionError("jobs ran although the run cannot fit in memory")

    monkeypatch.setattr("offload.experiments.__main__.run_jobs", no_work)
    out = tmp_path / "out"
    # --quick devices: 8 groups of 2 runs (τ = 10, 30); at M = 100000 the quantiser's candidate
    # arrays alone are 168 GiB per group
    assert run_cli(main, ["devices", "--quick", "--devices", "100000", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: this run needs about 61.8 TiB of memory (2 processes, each with a job of 2 runs "
        "at M = 100000 with N·L = 10 options per device) but this machine has 16.0 GiB; lower "
        "--devices, --seeds or --workers.\n"
    )
    argv = ["convergence", "--quick", "--workers", "1", "--convergence-slots", "100000000"]
    assert run_cli(main, [*argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: this run needs about 75.0 GiB of memory (1 process with a job of 1 run at M = 6 "
        "with N·L = 10 options per device, and 2 convergence curves of 100000000 slots) but this "
        "machine has 16.0 GiB; lower --convergence-slots or --seeds.\n"
    )
    assert not out.exists()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_full_presets_fit_a_small_machine(experiment):
    """The estimate refuses absurd runs, not the committed ones: every full preset on 2 workers
    stays under 4 GiB."""
    plan = preset(experiment, quick=False)
    est = memory_estimate(experiment, plan, servers=2, exits=5)
    assert 2 * (PROCESS_BYTES + est.job_bytes) + est.results_bytes < 4 * 2**30


def test_a_measured_table_runs_on_its_own_server_devices(tmp_path, capsys):
    table = tmp_path / "cpu.csv"
    table.write_text(
        "exit,layer,accuracy,latency_ms:cpu_1t\n1,conv1_1,0.5,2.5\n17,conv5_3,0.65,28.0\n"
    )
    out = tmp_path / "out"
    # the default servers are the paper's GPUs, which this table does not have
    argv = ["devices", *SMALL, "--devices", "4", "--exits", str(table), "--out", str(out)]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert "['RTX_2080TI', 'GTX_1080TI']" in err and "--server-devices cpu_1t cpu_1t" in err
    assert not out.exists()  # nothing half-written
    args = ["--devices", "4", "--exits", str(table), "--server-devices", "cpu_1t", "cpu_1t"]
    assert main(["devices", *SMALL, *args, "--out", str(out)]) == 0
    rows = pd.read_csv(out / "devices.csv")
    assert len(rows) == 16 and rows["ssp"].between(0, 1).all()
    # 28 ms of main-branch compute behind a 4-40 ms upload: GRL (main branch only) cannot meet
    # a 30 ms deadline except for the rare fast upload; early exits can
    grl = rows[(rows["method"] == "GRL") & (rows["tau_ms"] == 30)]["avg_accuracy"].item()
    greedy = rows[(rows["method"] == "greedy") & (rows["tau_ms"] == 30)]["avg_accuracy"].item()
    assert grl < 0.2 < greedy
    assert "server_devices = ('cpu_1t', 'cpu_1t')" in (out / "devices.md").read_text()


MEASURED = Path(__file__).resolve().parents[2] / "scripts" / "offload_measured.py"


@pytest.mark.parametrize(
    ("flag", "value", "valid"),
    [
        ("--devices", "0", "an integer ≥ 1"),
        ("--taus", "-10", "a number > 0"),
        ("--seeds", "-1", "an integer ≥ 0 and ≤ 4294967295"),
        ("--train-slots", "-1", "an integer ≥ 0"),
        ("--eval-slots", "0", "an integer ≥ 1"),
        ("--workers", "0", "an integer ≥ 1"),
    ],
)
def test_the_measured_table_script_refuses_a_number_out_of_range(
    tmp_path, capsys, monkeypatch, flag, value, valid
):
    spec = importlib.util.spec_from_file_location("offload_measured", MEASURED)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "offload_measured", script)  # its dataclasses look it up
    spec.loader.exec_module(script)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        script.main(["--exits", default_exits(), "--out", str(out), flag, value])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python scripts/offload_measured.py: error: argument {flag}: must be {valid} (got {value})"
    )
    assert not out.exists()
