"""Experiment outputs a user can trust: a new run folder by default, output paths checked before
any work, Ctrl-C (SIGINT to the whole process group, workers included) saves the finished jobs
and says how to resume, and a resumed run writes the same files as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from grle_common.cli import run_cli
from offload.experiments import store
from offload.experiments.__main__ import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--quick", "--seeds", "0", "--train-slots", "12", "--eval-slots", "8", "--devices", "4"]
# 16 jobs (8 methods x 2 M, each stepping its 4 runs together): long enough to interrupt midway
RESUMABLE = [
    "devices",
    "--quick",
    "--seeds",
    "0",
    "1",
    "--devices",
    "4",
    "6",
    "--train-slots",
    "15",
    "--eval-slots",
    "80",
    "--save-actors",  # every cell saves its learners: they too must appear only at the end
]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-W", "ignore", "-m", "offload.experiments", *args]


def test_default_output_is_a_new_run_folder_with_a_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ is relative to the working directory
    assert main(["csi", *TINY, "--workers", "1"]) == 0
    (run,) = (tmp_path / "runs" / "offload").iterdir()
    assert run.name.startswith("csi-") and run.name.endswith("Z")
    assert sorted(p.name for p in run.iterdir()) == [
        "csi.csv",
        "csi.md",
        "csi.png",
        "exit_usage.csv",
        "exit_usage.png",
        "manifest.json",
        "paired.csv",
    ]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["command"] == "python -m offload.experiments csi " + " ".join(
        [*TINY, "--workers", "1"]
    )
    assert manifest["config"]["plan"]["eval_slots"] == 8
    assert manifest["config"]["exits_sha256"] == store.file_sha256(
        REPO / "checkpoints" / "paper_table1.csv"
    )
    assert manifest["packages"]["pandas"] == pd.__version__
    assert manifest["machine"]["cpu_cores_available"] >= 1
    assert manifest["git_revision"] != ""
    assert manifest["jobs"] == 8 and manifest["jobs_resumed"] == 0  # 8 methods at one M
    # a second invocation gets its own folder; the first is untouched
    before = (run / "csi.csv").read_bytes()
    assert main(["csi", *TINY, "--workers", "1"]) == 0
    assert len(list((tmp_path / "runs" / "offload").iterdir())) == 2
    assert (run / "csi.csv").read_bytes() == before


def test_unwritable_out_is_one_sentence_before_any_work(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a folder")

    def no_work(*_args, **_kwargs):
        raise AssertionError("jobs ran although the output folder is unusable")

    monkeypatch.setattr("offload.experiments.__main__.run_jobs", no_work)
    argv = ["paper", "--out", str(blocker / "sub")]  # the full preset: 30 min of work
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write to the output folder {blocker / 'sub'} (")
    assert err.endswith("pass a writable folder with --out.") and err.count("\n") == 0
    assert blocker.read_text() == "a regular file, not a folder"


def test_a_folder_of_another_unfinished_run_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    store.Progress(
        out, {"experiment": "csi", "engine": "loop"}
    ).open()  # before the one-code-path refactor
    assert run_cli(main, ["csi", *TINY, "--workers", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run with other settings" in err and "engine" in err
    assert not (out / "csi.csv").exists()


def _frames(folder: Path) -> dict[str, pd.DataFrame]:
    """Every CSV of a run, without the wall-clock column (the only one that may differ)."""
    return {
        p.name: pd.read_csv(p).drop(columns="wall_s", errors="ignore")
        for p in sorted(folder.glob("*.csv"))
    }


def test_sigint_then_resume_gives_the_files_of_an_uninterrupted_run(tmp_path, capsys):
    out = tmp_path / "interrupted"
    args = [*RESUMABLE, "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(
        _command(*args),
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: SIGINT reaches the workers too (Ctrl-C)
    )
    jobs = out / store.PROGRESS / "jobs"
    deadline = time.monotonic() + 120
    while not list(jobs.glob("*.pkl")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted:" in err and "resume with: python -m offload.experiments" in err
    saved = len(list(jobs.glob("*.pkl")))
    assert 1 <= saved < 16  # some, not all, jobs finished
    assert not (out / "devices.csv").exists() and not (out / "devices.md").exists()
    assert not (out / "actors").exists()  # the finished cells' actors wait in .progress

    # the same command again (in this process, to save a start-up) finishes the rest
    assert main(args) == 0
    assert f"resuming: {saved} of 16 jobs already finished" in capsys.readouterr().out
    assert not (out / store.PROGRESS).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["jobs"] == 16 and manifest["jobs_resumed"] == saved

    whole = tmp_path / "whole"
    assert main([*RESUMABLE, "--workers", "1", "--out", str(whole)]) == 0
    ours, ref = _frames(out), _frames(whole)
    names = ["devices.csv", "exit_usage.csv", "paired.csv"]
    assert list(ours) == names and list(ref) == names
    for name in names:
        pd.testing.assert_frame_equal(ours[name], ref[name], check_exact=True)
    assert len(ref["devices.csv"]) == 8 * 2 * 2 * 2  # methods x M x τ x seeds
    # the same actors (every learner of every cell), moved in with the other files
    actors = [sorted(p.name for p in (f / "actors").iterdir()) for f in (out, whole)]
    assert actors[0] == actors[1] and len(actors[0]) == 5 * 8 * 2  # learners x cells x files
    # the report differs only in its header (date, wall time, the resume note)
    body = [(f / "devices.md").read_text().split("\n### ", 1)[1] for f in (out, whole)]
    assert body[0] == body[1]
    # the same command once more: nothing to do, nothing rewritten
    before = (out / "devices.csv").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0 and "nothing to do" in capsys.readouterr().out
    assert (out / "devices.csv").stat().st_mtime_ns == before


def test_interrupt_while_moving_files_in_leaves_the_whole_set(tmp_path):
    staged = tmp_path / "staged"
    staged.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.csv", "a.png", "a.md"):
        (out / name).write_text("old")
        (staged / name).write_text("new")
    calls = []
    real_replace = os.replace

    def replace_and_interrupt(src, dst):
        real_replace(src, dst)
        if not calls:  # Ctrl-C right after the first file of the set has moved
            os.kill(os.getpid(), signal.SIGINT)
        calls.append(dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store.os, "replace", replace_and_interrupt)
        with pytest.raises(KeyboardInterrupt):
            store.commit(staged, out)
    assert len(calls) == 3  # the interrupt waited until the set was complete
    assert {(out / n).read_text() for n in ("a.csv", "a.png", "a.md")} == {"new"}
