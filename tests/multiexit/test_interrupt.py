"""Ctrl-C during training: what was saved and the command that resumes; the rerun resumes."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from multiexit.interrupts import resume_command
from multiexit.lit import MultiExitModule
from multiexit.train import main

from .conftest import REPO, cli_runner

# Stage main blocks at the start of its second epoch, after the first was saved to last.ckpt,
# and says so in a file: the test sends SIGINT then, whatever the speed of the machine.
BLOCK_IN_EPOCH_2 = """
import os, time
import multiexit.lit as lit
_marker = os.environ.get("BLOCK_MARKER")
_start = lit.MultiExitModule.on_train_epoch_start
def on_train_epoch_start(self):
    _start(self)
    if _marker and self.current_epoch == 1:
        Path(_marker).write_text("in epoch 2")
        time.sleep(300)  # until the test's SIGINT
lit.MultiExitModule.on_train_epoch_start = on_train_epoch_start
"""


def _args(tmp_path, *extra: str) -> list[str]:
    return ["--stage", "main", "--run", "c", "--runs-dir", str(tmp_path / "runs"), "--width",
            "0.0625", "--epochs-main", "3", "--batch-size", "32", "--val-size", "60",
            "--limit-train", "64", "--accelerator", "cpu", "--devices", "1", "--no-progress",
            *extra]  # fmt: skip


def _wait_for(path, proc, seconds: float) -> None:
    """Until ``path`` exists; fails if ``proc`` ends first or ``seconds`` pass (a bound on a
    hang, not a timing)."""
    end = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, "the training ended before it reached epoch 2"
        assert time.monotonic() < end, f"no {path.name} after {seconds} s"
        time.sleep(0.1)


def test_sigint_saves_names_the_checkpoint_and_the_rerun_resumes(tmp_path):
    script = cli_runner(tmp_path, "multiexit.train", BLOCK_IN_EPOCH_2)
    marker, out, err = tmp_path / "in_epoch_2", tmp_path / "out.txt", tmp_path / "err.txt"
    args = _args(tmp_path, "--no-resume")  # a resume command must not repeat --no-resume
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, str(script), *args], cwd=REPO, stdout=stdout,
                                stderr=stderr, env={**_env(), "BLOCK_MARKER": str(marker)})  # fmt: skip
        try:
            _wait_for(marker, proc, 240)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 130, err.read_text()
        finally:
            proc.kill()
    last = tmp_path / "runs/c/main/checkpoints/last.ckpt"
    command = "python -m multiexit.train " + shlex.join(_args(tmp_path))
    lines = err.read_text().splitlines()
    assert lines[-2:] == [
        f"interrupted in epoch 2 of 3 of stage main; {last} holds the stage after epoch 1 of 3.",
        f"resume with: {command}",
    ]
    assert "Traceback" not in err.read_text()
    assert torch.load(last, weights_only=False)["epoch"] == 0  # epoch 1 (index 0) was saved

    again = subprocess.run([sys.executable, str(script), *_args(tmp_path)], cwd=REPO,
                           capture_output=True, text=True, timeout=300, env=_env())  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"resuming stage main from {last} after epoch 1 of 3 (2 to go)" in (
        again.stdout.splitlines()
    )
    assert torch.load(last, weights_only=False)["epoch"] == 2  # epochs 2 and 3 trained
    versions = sorted(p.name for p in (tmp_path / "runs/c/main").glob("version_*"))
    assert versions == ["version_0", "version_1"]  # one log per process, in the same stage


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "BLOCK_MARKER"}


class _CtrlC:
    """Raises KeyboardInterrupt (as Ctrl-C does) in a hook of MultiExitModule, once: in
    ``epoch`` (0 = the first; None = any) of ``stage``."""

    def __init__(self, monkeypatch, hook: str, epoch: int | None = 0, stage: str = "main") -> None:
        original = getattr(MultiExitModule, hook)

        def interrupted(module, *args):
            now = epoch is None or module.current_epoch == epoch
            if now and module.hparams.stage == stage and not self.done:
                self.done = True
                raise KeyboardInterrupt
            return original(module, *args)

        self.done = False
        monkeypatch.setattr(MultiExitModule, hook, interrupted)


def test_ctrl_c_before_the_first_epoch_is_saved_says_nothing_is_saved(
    tmp_path, capsys, monkeypatch, synthetic_data
):
    _CtrlC(monkeypatch, "on_train_epoch_start")
    handler = signal.getsignal(signal.SIGINT)
    args = _args(tmp_path)
    assert main(args) == 130
    assert capsys.readouterr().err.splitlines()[-2:] == [
        "interrupted in epoch 1 of 3 of stage main, before its first epoch ended; nothing of "
        "stage main is saved yet.",
        f"start it again with: {resume_command(args)}",
    ]
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning had set it to SIG_IGN
    assert not (tmp_path / "runs/c/main/checkpoints/last.ckpt").exists()


def test_ctrl_c_while_testing_keeps_every_epoch_and_the_rerun_only_tests(
    tmp_path, capsys, monkeypatch, synthetic_data
):
    ctrl_c = _CtrlC(monkeypatch, "on_test_epoch_start", epoch=None)
    args = _args(tmp_path)
    assert main(args) == 130 and ctrl_c.done
    last = tmp_path / "runs/c/main/checkpoints/last.ckpt"
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"interrupted while testing stage main; {last} holds the stage after epoch 3 of 3.",
        f"resume with: {resume_command(args)}",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"stage main finished all 3 epochs before ({last}); testing its best checkpoint " \
        "again" in out and "test accuracy of stage main (100 images):" in out  # fmt: skip


def test_ctrl_c_in_stage_exits_of_stage_all_says_main_is_complete(
    tmp_path, capsys, monkeypatch, synthetic_data
):
    _CtrlC(monkeypatch, "on_train_epoch_start", epoch=1, stage="exits")
    args = [*_args(tmp_path, "--epochs-exits", "2"), "--stage", "all"]
    assert main(args) == 130
    last = tmp_path / "runs/c/exits/checkpoints/last.ckpt"
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"interrupted in epoch 2 of 2 of stage exits (stage main is complete); {last} holds the "
        "stage after epoch 1 of 2.",
        f"resume with: {resume_command(args)}",
    ]


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([], "python -m multiexit.train"),
        (["--run", "my run", "--no-resume"], "python -m multiexit.train --run 'my run'"),
    ],
)
def test_the_resume_command_repeats_the_flags_without_no_resume(argv, command):
    assert resume_command(argv) == command
