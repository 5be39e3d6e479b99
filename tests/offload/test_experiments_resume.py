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
from offload.experiments import convergence, lockstep, store
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


def _crash(monkeypatch, module, name: str, after: int, fault: BaseException) -> None:
    """Make ``module.name`` (a job's run function; ``--workers 1`` runs it in this process)
    raise ``fault`` once ``after`` jobs have finished, as a bug or a Ctrl-C in a job would."""
    real, calls = getattr(module, name), []

    def run(job):
        if len(calls) == after:
            raise fault
        calls.append(job)
        return real(job)

    monkeypatch.setattr(module, name, run)


@pytest.mark.parametrize("fault", [RuntimeError("a job crashed"), KeyboardInterrupt()])
def test_a_run_that_ends_before_any_job_finished_leaves_nothing(
    tmp_path, monkeypatch, capsys, fault
):
    _crash(monkeypatch, lockstep, "run_group", 0, fault)
    kept = tmp_path / "kept"
    kept.mkdir()
    for out in (tmp_path / "new" / "out", kept):  # a folder the run makes, one that was there
        argv = ["csi", *TINY, "--workers", "1", "--out", str(out)]
        if isinstance(fault, KeyboardInterrupt):
            assert main(argv) == 130
            err = capsys.readouterr().err
            assert err.endswith("\ninterrupted: no job had finished, so nothing was saved\n")
        else:
            with pytest.raises(RuntimeError, match="a job crashed"):
                main(argv)
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]  # no new/, no new/out
    assert list(kept.iterdir()) == []  # no .progress


def test_the_corrected_command_replaces_a_crashed_run_with_overwrite(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    crashing = ["csi", *TINY, "--workers", "1", "--out", str(out)]
    with monkeypatch.context() as mp:
        _crash(mp, lockstep, "run_group", 2, RuntimeError("a job crashed"))
        with pytest.raises(RuntimeError):
            main(crashing)
    assert len(list((out / store.PROGRESS / "jobs").glob("*.pkl"))) == 2
    corrected = [*crashing, "--eval-slots", "6"]
    capsys.readouterr()
    assert run_cli(main, corrected) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {out} holds an unfinished run with other settings (differs in: plan; 2 of its "
        "jobs finished); pass --overwrite to discard it and start this run, or pass a new --out.\n"
    )
    assert main([*corrected, "--overwrite"]) == 0
    assert f"discarding the unfinished run of other settings in {out}" in capsys.readouterr().out
    assert not (out / store.PROGRESS).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["plan"]["eval_slots"] == 6 and manifest["jobs_resumed"] == 0


def test_an_unfinished_run_of_other_settings_without_a_finished_job_is_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    old = store.Progress(out, {"experiment": "csi", "engine": "loop"})  # an older version's run
    old.open()
    old.save("000-group-0", pd.DataFrame({"x": [1]}))
    argv = ["csi", *TINY, "--workers", "1", "--out", str(out)]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run with other settings (differs in: engine, " in err
    assert "; 1 of its jobs finished); pass --overwrite to discard it" in err
    assert not (out / "csi.csv").exists()
    old.path("000-group-0").unlink()  # the same run with no finished job: nothing to lose
    assert main(argv) == 0
    assert (out / "csi.csv").exists() and not (out / store.PROGRESS).exists()


def _files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_finished_folder_is_replaced_only_with_overwrite_and_whole(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    csi = ["csi", *TINY, "--workers", "1", "--save-actors", "--out", str(out)]
    assert main(csi) == 0
    other = out / "regime" / "regime.csv"  # another run's folder inside this one
    other.parent.mkdir()
    other.write_text("another run's file\n")
    before = _files(out)
    conv = ["convergence", *TINY, "--workers", "1", "--convergence-slots", "12", "--out", str(out)]
    capsys.readouterr()
    assert run_cli(main, conv) == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds the finished run of `python -m offload.experiments {' '.join(csi)}` "
        "(other settings: experiment, plan, save_actors); pass --overwrite to replace its files "
        "with this run's, or pass a new --out.\n"
    )
    assert _files(out) == before
    # --overwrite, and a crash after one of the two curves: the old files stay whole meanwhile
    with monkeypatch.context() as mp:
        _crash(mp, convergence, "run_convergence", 1, RuntimeError("a job crashed"))
        with pytest.raises(RuntimeError):
            main([*conv, "--overwrite"])
    assert {k: v for k, v in _files(out).items() if not k.startswith(store.PROGRESS)} == before
    capsys.readouterr()
    assert main([*conv, "--overwrite"]) == 0  # the same command resumes
    assert "resuming: 1 of 2 jobs already finished" in capsys.readouterr().out
    ours = sorted(
        ["convergence.csv", "convergence.md", "convergence.png", "manifest.json"]
        + [f"actors/convergence_M6_tau30_seed0_{m}.{x}" for m in ("DROOE", "GRLE") for x in ("json", "safetensors")]
    )  # fmt: skip
    assert sorted(_files(out)) == sorted([*ours, "regime/regime.csv"])  # no csi file, no csi actor
    assert json.loads((out / "manifest.json").read_text())["files"] == ours
    assert other.read_text() == "another run's file\n"


def test_a_folder_of_an_older_manifest_is_replaced_by_its_files(tmp_path, capsys):
    """A manifest written before it listed its files (the committed results/): the run's files
    are the folder's top-level files and actors/; other sub-folders stay."""
    out = tmp_path / "out"
    conv = ["convergence", *TINY, "--workers", "1", "--convergence-slots", "12", "--out", str(out)]
    assert main(conv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["files"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "regime").mkdir()
    (out / "regime" / "regime.csv").write_text("another run's file\n")
    csi = ["csi", *TINY, "--workers", "1", "--out", str(out)]
    assert main([*csi, "--overwrite"]) == 0
    names = ["csi.csv", "csi.md", "csi.png", "exit_usage.csv", "exit_usage.png", "manifest.json"]
    names += ["paired.csv"]
    assert sorted(_files(out)) == sorted([*names, "regime/regime.csv"])
    assert not (out / "actors").exists()  # the old run's actors left with it, and their folder
    # the same command (with or without --overwrite) again: nothing to do, nothing rewritten
    before = _files(out)
    capsys.readouterr()
    for argv in (csi, [*csi, "--overwrite"]):
        assert main(argv) == 0
        assert capsys.readouterr().out == (
            f"nothing to do: {out} already holds this finished run ({out / 'csi.md'}).\n"
        )
    assert _files(out) == before
    # --rebuild-report still redraws from the CSVs
    (out / "csi.png").unlink()
    assert main(["csi", "--rebuild-report", "--out", str(out)]) == 0
    assert (out / "csi.png").exists()
    assert json.loads((out / "manifest.json").read_text())["files"] == sorted(names)


def test_a_folder_with_files_of_no_run_is_refused(tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("mine\n")
    for extra in ([], ["--overwrite"]):  # not ours to replace, whatever the flags
        assert run_cli(main, ["csi", *TINY, "--workers", "1", "--out", str(out), *extra]) == 2
        assert capsys.readouterr().err == (
            f"error: {out} holds files of no experiment run (no manifest.json: todo.txt); pass a "
            "new or empty folder with --out.\n"
        )
    assert _files(out) == {"todo.txt": b"mine\n"}


def test_a_failed_move_puts_every_file_back(tmp_path, monkeypatch):
    out, staged = tmp_path / "out", tmp_path / "out" / ".staging"
    (out / "actors").mkdir(parents=True)
    staged.mkdir()
    old = {"a.csv": "old a", "b.png": "old b", "actors/x.json": "old x", "manifest.json": "old m"}
    new = {"a.csv": "new a", "c.md": "new c", "manifest.json": "new m"}
    for name, text in old.items():
        (out / name).write_text(text)
    for name, text in new.items():
        (staged / name).write_text(text)
    real, moves = os.replace, []

    def replace(src, dst):
        if Path(dst).parent == out and len(moves) == 5:  # the second file of the new set
            raise OSError(28, "No space left on device")
        moves.append((src, dst))
        real(src, dst)

    monkeypatch.setattr(store.os, "replace", replace)
    with pytest.raises(OSError):
        store.commit(staged, out, replaces=list(old))
    assert {k: v.decode() for k, v in _files(out).items() if "/." not in "/" + k} == old
    assert {p.name: p.read_text() for p in staged.iterdir()} == new
    monkeypatch.setattr(store.os, "replace", real)
    store.commit(staged, out, replaces=list(old))
    assert {k: v.decode() for k, v in _files(out).items()} == new  # b.png and actors/ are gone
    assert [p.name for p in out.iterdir() if p.is_dir()] == [".staging"]


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
