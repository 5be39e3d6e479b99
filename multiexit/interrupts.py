"""Ctrl-C during training: what was saved, and the command that resumes.

Lightning catches a ``KeyboardInterrupt`` inside ``trainer.fit`` / ``trainer.test`` itself: it
ignores further Ctrl-C, shuts down and calls ``sys.exit(1)``
(``pytorch_lightning.trainer.call._call_and_handle_interrupt``), so the command would end with
status 1 and no word. :func:`lightning_call` turns that exit back into a
``KeyboardInterrupt``; ``multiexit.train`` then raises :class:`StageInterrupted`, whose
:meth:`~StageInterrupted.report` names the stage, the epoch, the ``last.ckpt`` that holds the
work and the command that resumes it, and the command line exits with status 130.
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from multiexit.checkpoints import ResumePoint, resume_point
from multiexit.errors import CheckpointDamagedError

COMMAND = "python -m multiexit.train"


class InterruptWatch(pl.Callback):
    """Remembers that Lightning caught a Ctrl-C (its ``on_exception`` hook sees it first)."""

    def __init__(self) -> None:
        self.caught = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.caught = True


def lightning_call(call: Callable[..., Any], watch: InterruptWatch, *args, **kwargs) -> Any:
    """``call(*args, **kwargs)`` (``trainer.fit`` or ``trainer.test``, with ``watch`` among the
    trainer's callbacks), where Ctrl-C raises ``KeyboardInterrupt`` instead of Lightning's
    ``sys.exit(1)``, and the Ctrl-C handler Lightning replaced is put back."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        return call(*args, **kwargs)
    except SystemExit:
        if watch.caught:
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


def resume_command(argv: list[str]) -> str:
    """The command that resumes the run of ``argv``: the same flags without ``--no-resume``
    (which would move the saved work aside and start over)."""
    return " ".join([COMMAND, shlex.join(a for a in argv if a != "--no-resume")]).rstrip()


def resume_line(stage: str, point: ResumePoint, epochs: int) -> str:
    """What a rerun says when it resumes ``stage`` from ``point`` (``epochs`` in all)."""
    if point.epochs_done >= epochs:
        return (
            f"stage {stage} finished all {epochs} epochs before ({point.path}); testing its best "
            "checkpoint again"
        )
    return (
        f"resuming stage {stage} from {point.path} after epoch {point.epochs_done} of {epochs} "
        f"({epochs - point.epochs_done} to go)"
    )


class StageInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stage of ``multiexit.train``; a ``KeyboardInterrupt`` to callers."""

    def __init__(
        self, stage_dir: Path, epochs: int, epoch: int | None, finished: tuple[str, ...] = ()
    ) -> None:
        """Args:
        stage_dir: ``runs/<run>/<stage>``; its ``last.ckpt`` is read now, for the report.
        epochs: the stage's number of epochs.
        epoch: the epoch it stopped in (1 = the first), or None when it stopped after
            training (while testing).
        finished: the stages of the command that had finished before this one.
        """
        super().__init__(f"stage {stage_dir.name} interrupted")
        self.stage, self.epochs, self.epoch, self.finished = stage_dir.name, epochs, epoch, finished
        self.damage: str | None = None
        try:
            self.saved = resume_point(stage_dir)
        except CheckpointDamagedError as exc:
            self.saved, self.damage = None, str(exc)

    def report(self, command: str) -> str:
        """Two lines: where it stopped and what is saved; the command to run next."""
        stage, epochs = self.stage, self.epochs
        where = (
            f"while testing stage {stage}"
            if self.epoch is None
            else f"in epoch {self.epoch} of {epochs} of stage {stage}"
        )
        done = "".join(f" (stage {s} is complete)" for s in self.finished)
        if self.saved is not None:
            saved = f"{self.saved.path} holds the stage after epoch {self.saved.epochs_done}"
            return f"interrupted {where}{done}; {saved} of {epochs}.\nresume with: {command}"
        if self.damage is not None:
            return f"interrupted {where}{done}; {self.damage}\nthen run: {command}"
        return (
            f"interrupted {where}{done}, before its first epoch ended; nothing of stage {stage} "
            f"is saved yet.\nstart it again with: {command}"
        )
