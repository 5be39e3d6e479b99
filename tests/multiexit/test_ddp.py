"""Two-process DDP on the CPU (gloo): ``--stage all`` with plain ``--strategy ddp`` trains,
counts every test image exactly once, exports on rank 0 only, and leaves the same files as a
one-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from multiexit.data import TensorLoader
from multiexit.evaluate import evaluate_exits
from multiexit.export import load_run
from multiexit.lit import MultiExitModule

JOB = Path(__file__).with_name("ddp_job.py")
N_TEST = 101  # ddp_job.py's test set: odd, so 2 ranks padded with a duplicate would count 102


def _run_job(out: Path, *flags: str) -> subprocess.CompletedProcess:
    out.mkdir(parents=True)
    argv = ["--stage", "all", "--run", "t", "--runs-dir", str(out / "runs"),
            "--export", str(out / "export"), "--width", "0.0625", "--batch-size", "64",
            "--val-size", "40", "--epochs-main", "1", "--epochs-exits", "1",
            "--lr-main", "0.05", "--lr-exits", "0.01", "--accelerator", "cpu",
            "--no-progress", *flags]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("MASTER_PORT", None)  # Lightning picks a free port
    proc = subprocess.run(
        [sys.executable, str(JOB), str(out), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _files(root: Path) -> set[str]:
    """Files of a job's folder, without the job's own records (rank*.json, export_calls.txt)."""
    own = {"export_calls.txt"}
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.name not in own and not p.name.startswith("rank")
    }


def _synthetic_test_set():
    sys.path.insert(0, str(JOB.parent))
    from ddp_job import N_TEST as n_test
    from ddp_job import N_TRAIN, synthetic_arrays

    assert n_test == N_TEST
    return synthetic_arrays(N_TRAIN, N_TEST)


def test_two_process_ddp_stage_all_matches_one_process(tmp_path):
    ddp = _run_job(tmp_path / "ddp", "--devices", "2", "--strategy", "ddp")
    _run_job(tmp_path / "one", "--devices", "1")
    # the recipe rule was printed once per stage (rank 0 only), with the split global batch
    lines = [line for line in ddp.stdout.splitlines() if "global batch" in line]
    assert [line.split(":")[0] for line in lines] == ["stage main", "stage exits"]
    assert "2 devices x 32 images = global batch 64 per step" in lines[0]

    ranks = [json.loads((tmp_path / f"ddp/rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
    # metrics reduced over exactly the real test set: 101 images, not 102
    assert [r["test_count"] for r in ranks] == [N_TEST, N_TEST]
    assert ranks[0]["test_accuracy"] == ranks[1]["test_accuracy"]
    one = json.loads((tmp_path / "one/rank0.json").read_text())
    assert one["test_count"] == N_TEST and one["world_size"] == 1

    # export on rank 0 only, once; the export loads and its table is the reduced accuracy
    assert (tmp_path / "ddp/export_calls.txt").read_text() == "0\n"
    _, manifest = load_run(tmp_path / "ddp/export")
    table = pd.read_csv(tmp_path / "ddp/export/exit_accuracy.csv")
    assert table.accuracy.tolist() == [round(a, 6) for a in ranks[0]["test_accuracy"]]
    assert manifest["training"]["devices"] == "2" and manifest["training"]["strategy"] == "ddp"

    # the best exits checkpoint, evaluated in one process on all 101 images, gives the same
    # number of correct predictions per exit as the two ranks' sum
    arrays = _synthetic_test_set()
    best = MultiExitModule.load_from_checkpoint(
        tmp_path / "ddp/runs/t/exits/checkpoints/best.ckpt", map_location="cpu"
    )
    plain = evaluate_exits(best.model, TensorLoader(arrays.test_x, arrays.test_y, batch_size=50))
    assert [round(a * N_TEST) for a in plain] == [
        round(a * N_TEST) for a in ranks[0]["test_accuracy"]
    ]
    # the backbone did not move in stage exits: its weights equal the best main checkpoint's
    main_state = torch.load(
        tmp_path / "ddp/runs/t/main/checkpoints/best.ckpt", map_location="cpu", weights_only=False
    )["state_dict"]
    exits_state = best.state_dict()
    backbone = [k for k in main_state if not k.startswith("model.heads.")]
    assert backbone and all(torch.equal(main_state[k], exits_state[k]) for k in backbone)

    # the same kind of run as one process: the same files under runs/ and the export folder
    ddp_files, one_files = _files(tmp_path / "ddp"), _files(tmp_path / "one")
    assert ddp_files == one_files, ddp_files ^ one_files
    assert {"export/model.safetensors", "export/manifest.json", "export/exit_accuracy.csv",
            "runs/t/main/exit_accuracy.csv", "runs/t/exits/exit_accuracy.csv",
            "runs/t/exits/checkpoints/last.ckpt"} <= ddp_files  # fmt: skip
