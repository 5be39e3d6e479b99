"""Reading the checkpoints a stage starts from, with one sentence when one cannot be read.

- A stage's ``runs/<run>/<stage>/checkpoints/last.ckpt``: where a rerun resumes
  (:func:`resume_point`: how many epochs it holds and the hyper-parameters it was trained with).
- The backbone stage ``exits`` starts from (:func:`init_backbone`): a main-stage Lightning
  ``.ckpt``, a ``.safetensors`` file or an exported run folder (``--init-from``).

A truncated or corrupt file (a copy cut short, a full disk, a file that is no checkpoint) is a
:class:`~multiexit.errors.CheckpointDamagedError` naming the file and what to do, never a
torch or unpickling traceback.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file

from multiexit.errors import CheckpointDamagedError, CheckpointNotFoundError
from multiexit.export import load_run, load_state_into
from multiexit.model import VGG16MultiExit

LAST = "last.ckpt"  # runs/<run>/<stage>/checkpoints/last.ckpt, written after every epoch
INIT_ADVICE = (
    "pass --init-from with an intact main-stage .ckpt or exported run folder, or train stage "
    "main again (--stage main --no-resume)"
)


class ResumePoint(NamedTuple):
    """What a stage's ``last.ckpt`` holds: where a rerun of the stage continues."""

    path: Path  # runs/<run>/<stage>/checkpoints/last.ckpt
    epochs_done: int  # epochs of the stage trained and saved in it (1 = the first epoch)
    hyper_parameters: dict[str, Any]  # MultiExitModule's, as saved by Lightning


def _reason(exc: BaseException) -> str:
    """The first sentence of an exception's message (torch's go on for lines)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text.split(". ")[0].rstrip(".")[:200]


def read_checkpoint(path: str | Path, advice: str) -> dict[str, Any]:
    """A Lightning checkpoint's contents, memory-mapped (tensors are read only when used).

    Args:
        path: the ``.ckpt`` file.
        advice: what the user should do if it cannot be read (the end of the message).

    Raises:
        CheckpointDamagedError: ``"<path> is damaged (cannot be read: <reason>); <advice>."``
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; cut short, it loses its end
        reason = "it is not a whole zip archive as torch.save writes, so it was cut short or is no checkpoint"
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception as exc:  # noqa: BLE001 - zip, pickle and torch errors all mean "unreadable"
            reason = _reason(exc)
        else:
            if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
                return ckpt
            reason = "it holds no state_dict, so it is no Lightning checkpoint"
    raise CheckpointDamagedError(f"{path} is damaged (cannot be read: {reason}); {advice}.")


def resume_point(stage_dir: str | Path) -> ResumePoint | None:
    """What ``<stage_dir>/checkpoints/last.ckpt`` holds, or None when there is none.

    Raises:
        CheckpointDamagedError: it exists but cannot be read; the message says to delete it
            (the stage then starts again) or to pass ``--no-resume``.
    """
    stage_dir = Path(stage_dir)
    last = stage_dir / "checkpoints" / LAST
    if not last.is_file():
        return None
    advice = (
        f"delete it to start stage {stage_dir.name} again, or pass --no-resume to start over "
        f"(the old stage folder is kept as {stage_dir.name}.replaced-<UTC time>)"
    )
    ckpt = read_checkpoint(last, advice)
    epoch = ckpt.get("epoch")
    if not isinstance(epoch, int) or epoch < 0:
        raise CheckpointDamagedError(
            f"{last} is damaged (cannot be read: it records no epoch); {advice}."
        )
    # Lightning saves the index of the epoch just finished: epoch 0 done is "1 epoch done"
    return ResumePoint(last, epoch + 1, dict(ckpt.get("hyper_parameters") or {}))


def backbone_state(path: str | Path, advice: str = INIT_ADVICE) -> dict[str, torch.Tensor]:
    """The state dict of the model in a main-stage checkpoint: a Lightning ``.ckpt`` (its
    moving average when the run kept one: that is what it validated and exported), a
    ``.safetensors`` file or an exported run folder.

    Raises:
        CheckpointNotFoundError: no such file, or a folder without ``manifest.json``.
        CheckpointDamagedError: the file cannot be read (the message ends with ``advice``).
        ChecksumError, ManifestError: a damaged exported run (see :func:`load_run`).
    """
    p = Path(path)
    if p.is_dir():
        return load_run(p)[0].state_dict()  # says so if the folder has no manifest
    if p.is_file() and p.suffix == ".safetensors":
        try:
            return load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - safetensors' own error type: unreadable
            raise CheckpointDamagedError(
                f"{p} is damaged (cannot be read: {_reason(exc)}); {advice}."
            ) from None
    if p.is_file():
        weights = read_checkpoint(p, advice)["state_dict"]
        prefix = "ema_model." if any(k.startswith("ema_model.") for k in weights) else "model."
        return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
    raise CheckpointNotFoundError(
        f"No checkpoint at {p} to start stage exits from; train stage main first "
        "(--stage main) or pass --init-from with a main-stage .ckpt or checkpoints/<run>."
    )


def init_backbone(model: VGG16MultiExit, path: str | Path) -> None:
    """Load the backbone (features + main classifier) of a main-stage checkpoint into
    ``model``; the heads keep their initialisation, so any head design can be trained on one
    backbone.

    Raises:
        CheckpointNotFoundError, CheckpointDamagedError, ChecksumError, ManifestError: see
            :func:`backbone_state`.
        CheckpointMismatchError: the backbone's width or classes differ from ``model``'s.
    """
    load_state_into(
        model, backbone_state(path), str(path), skip=("heads.",),
        hint=f"pass the checkpoint's --width/--num-classes (this run has --width {model.width:g} "
        f"--num-classes {model.num_classes}), or --init-from a checkpoint trained with these",
    )  # fmt: skip
