"""A run folder's checks, made before anything is created: writable outputs, a reused run
name with the same settings (``runs/<run>/<stage>/settings.json``), a backbone for stage
``exits``, a data source; and ``--no-resume``'s atomic move of an old stage folder aside.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from pytorch_lightning.utilities import rank_zero_only

from multiexit.data import resolve_source
from multiexit.devices import check_batch_split, device_count
from multiexit.errors import CheckpointNotFoundError, RunSettingsMismatchError
from multiexit.export import check_output_dir

if TYPE_CHECKING:
    from multiexit.train import TrainConfig


# The settings that decide what a stage trains: a stage resumes from its last.ckpt only when
# they are the same as when it started (anything else fails later inside Lightning: more
# epochs break the one-cycle schedule, another width the state_dict; --devices and --strategy
# change how many steps an epoch has). Paths (--pack, --cifar-root), output and display
# flags, --accelerator, --precision and --tta (evaluation only) may change. The recipe's
# values are compared, not its name: --recipe standard with the fast recipe's flags is the same.
# A settings file written before a setting existed does not hold it, and is not held to it.
COMMON_SETTINGS = ("width", "head", "num_classes", "batch_size", "seed", "source", "val_size",
                   "limit_train", "limit_eval", "limit_train_batches", "devices", "strategy",
                   "label_smoothing", "decay_norm_bias", "ema_decay", "warmup_pct", "anneal",
                   "crop_pad")  # fmt: skip
STAGE_SETTINGS = {
    "main": (*COMMON_SETTINGS, "epochs_main", "lr_main", "weight_decay_main", "nesterov"),
    "exits": (*COMMON_SETTINGS, "epochs_exits", "lr_exits", "weight_decay_exits", "init_from",
              "kd_weight", "kd_temperature"),
}  # fmt: skip
SETTINGS_FILE = "settings.json"  # runs/<run>/<stage>/settings.json: the stage's settings


def stage_settings(cfg: TrainConfig, stage: str) -> dict:
    """The values of :data:`STAGE_SETTINGS` ``[stage]`` in ``cfg`` (JSON-ready)."""
    return {name: getattr(cfg, name) for name in STAGE_SETTINGS[stage]}


def _saved_settings(stage_dir: Path, last: Path) -> dict:
    """The settings a stage was started with: its settings file, else (runs written before
    the file existed) the hyper-parameters stored in its ``last.ckpt``."""
    if (stage_dir / SETTINGS_FILE).is_file():
        try:
            return json.loads((stage_dir / SETTINGS_FILE).read_text())
        except ValueError:  # written atomically, so only a hand edit gets here: use the ckpt
            pass
    hp = torch.load(last, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    stage = stage_dir.name
    known = {"width": "width", "head": "head", "num_classes": "num_classes",
             "lr": f"lr_{stage}", "weight_decay": f"weight_decay_{stage}"}  # fmt: skip
    return {known[k]: v for k, v in hp.items() if k in known}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def settings_conflicts(cfg: TrainConfig, stage: str) -> list[str]:
    """``"--flag X (was Y)"`` for every setting of ``stage`` that differs from the one its
    resumable ``last.ckpt`` was trained with; empty when nothing would be resumed."""
    stage_dir = Path(cfg.runs_dir) / cfg.run / stage
    last = stage_dir / "checkpoints" / "last.ckpt"
    if not (cfg.resume and last.is_file()):
        return []
    saved = _saved_settings(stage_dir, last)
    wanted = stage_settings(cfg, stage)
    return [
        f"{_flag(k)} {wanted[k]} (was {saved[k]})"
        for k in wanted
        if k in saved and saved[k] != wanted[k]
    ]


def check_run(cfg: TrainConfig, stages: list[str], *, data: bool = True) -> None:
    """Every check that can fail before training, run before any folder is created.

    Checks that the run folder and ``--export`` can be written, that a stage that would
    resume was started with the same settings (:data:`STAGE_SETTINGS`), that stage ``exits``
    has a backbone to start from, that the global batch splits over the devices that
    ``--devices`` names, and (``data``) that a data source exists.

    Raises:
        OutputPathError: a run or export folder cannot be created.
        RunSettingsMismatchError: a reused run name with other settings; the message names
            them and the two ways out (a new ``--run`` or ``--no-resume``).
        CheckpointNotFoundError: stage ``exits`` has no main-stage checkpoint to start from.
        DeviceRecipeError: ``--devices`` is malformed or ``--batch-size`` does not split
            evenly over the devices it names.
        DataNotFoundError: no CIFAR-10 source.
    """
    check_output_dir(Path(cfg.runs_dir) / cfg.run, "the run folder (--runs-dir/--run)")
    if cfg.export:
        check_output_dir(cfg.export, "--export")
    conflicts = {stage: settings_conflicts(cfg, stage) for stage in stages}
    conflicts = {k: v for k, v in conflicts.items() if v}
    if conflicts:
        where = ", ".join(str(Path(cfg.runs_dir) / cfg.run / k) for k in conflicts)
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in conflicts.items())
        raise RunSettingsMismatchError(
            f"The run {cfg.run!r} ({where}) was started with other settings ({what}); "
            "pass a new --run NAME to train these settings separately, or --no-resume to start "
            "over (the old stage folder is kept as <stage>.replaced-<UTC time>)."
        )
    exits_alone = "exits" in stages and "main" not in stages
    exits_last = Path(cfg.runs_dir) / cfg.run / "exits" / "checkpoints" / "last.ckpt"
    if exits_alone and not (cfg.resume and exits_last.is_file()):
        init = Path(init_path(cfg))
        if not init.exists():
            raise CheckpointNotFoundError(
                f"No checkpoint at {init} to start stage exits from; train stage main first "
                "(--stage main) or pass --init-from with a main-stage .ckpt or checkpoints/<run>."
            )
    count = device_count(cfg.devices)
    if count is not None:
        check_batch_split(count, cfg.batch_size)
    if data:
        resolve_source(cfg.source, pack_path=cfg.pack, cifar_root=cfg.cifar_root,
                       download=cfg.download)  # fmt: skip


def init_path(cfg: TrainConfig) -> str:
    """Where stage ``exits`` takes its backbone from: ``--init-from`` or the run's best main."""
    return cfg.init_from or str(Path(cfg.runs_dir) / cfg.run / "main" / "checkpoints" / "best.ckpt")


def archive(stage_dir: Path) -> Path | None:
    """``--no-resume``: move an existing stage folder aside (one atomic rename) so that the
    stage starts in an empty folder; returns where it went. Only rank 0 moves it: DDP ranks
    started later re-run this script and must not move the folder rank 0 now trains in."""
    if not stage_dir.exists() or rank_zero_only.rank != 0:
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = stage_dir.with_name(f"{stage_dir.name}.replaced-{stamp}")
    os.replace(stage_dir, target)
    print(f"--no-resume: moved the old {stage_dir} to {target}", file=sys.stderr)
    return target
