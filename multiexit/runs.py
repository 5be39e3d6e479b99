"""A run's checks, made before anything is created: numbers in range and fitting together
(:mod:`multiexit.plan`), the devices, writable outputs, a reused run name with the same
settings (``runs/<run>/<stage>/settings.json``), a readable ``last.ckpt`` to resume from, a
backbone for stage ``exits``, a data source; and ``--no-resume``'s atomic move of an old stage
folder aside.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pytorch_lightning.utilities import rank_zero_only

from grle_common.cli import check_fields
from multiexit.checkpoints import ResumePoint, init_backbone, resume_point
from multiexit.data import CifarArrays, data_sizes, resolve_source
from multiexit.devices import check_accelerator, check_batch_split
from multiexit.errors import RunSettingsMismatchError
from multiexit.export import check_output_dir
from multiexit.model import build_vgg16_multiexit
from multiexit.plan import check_numbers

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


def _saved_settings(stage_dir: Path, point: ResumePoint) -> dict:
    """The settings a stage was started with: its settings file, else (runs written before
    the file existed) the hyper-parameters stored in its ``last.ckpt``."""
    if (stage_dir / SETTINGS_FILE).is_file():
        try:
            return json.loads((stage_dir / SETTINGS_FILE).read_text())
        except ValueError:  # written atomically, so only a hand edit gets here: use the ckpt
            pass
    hp = point.hyper_parameters
    stage = stage_dir.name
    known = {"width": "width", "head": "head", "num_classes": "num_classes",
             "lr": f"lr_{stage}", "weight_decay": f"weight_decay_{stage}"}  # fmt: skip
    return {known[k]: v for k, v in hp.items() if k in known}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resume_points(cfg: TrainConfig, stages: list[str]) -> dict[str, ResumePoint]:
    """The stages of ``stages`` that would resume (``--resume`` and a ``last.ckpt``), each
    with what its ``last.ckpt`` holds.

    Raises:
        CheckpointDamagedError: a ``last.ckpt`` cannot be read.
    """
    if not cfg.resume:
        return {}
    points = {stage: resume_point(Path(cfg.runs_dir) / cfg.run / stage) for stage in stages}
    return {stage: point for stage, point in points.items() if point is not None}


def settings_conflicts(cfg: TrainConfig, stage: str, point: ResumePoint | None) -> list[str]:
    """``"--flag X (was Y)"`` for every setting of ``stage`` that differs from the one its
    resumable ``last.ckpt`` (``point``) was trained with; empty when nothing would be resumed."""
    if point is None:
        return []
    saved = _saved_settings(Path(cfg.runs_dir) / cfg.run / stage, point)
    wanted = stage_settings(cfg, stage)
    return [
        f"{_flag(k)} {wanted[k]} (was {saved[k]})"
        for k in wanted
        if k in saved and saved[k] != wanted[k]
    ]


def check_run(
    cfg: TrainConfig, stages: list[str], *, arrays: CifarArrays | None = None
) -> dict[str, ResumePoint]:
    """Every check that can fail before training, run before any folder is created; returns
    the stages that will resume, with what their ``last.ckpt`` holds.

    Checks every number against its declared range (:func:`grle_common.cli.check_fields`),
    that the accelerator and devices exist and the global batch splits over them, the
    numbers against each other and the data (:func:`multiexit.plan.check_numbers`; CIFAR-10's
    sizes, or those of ``arrays``), that the run folder and ``--export`` can be written, that a
    stage that would resume has a readable ``last.ckpt`` and was started with the same settings
    (:data:`STAGE_SETTINGS`), that stage ``exits`` has a backbone that fits to start from, and
    (without ``arrays``) that a data source exists.

    Raises:
        UserError: a number outside its range (the flag's own sentence).
        DeviceUnavailableError: GPUs asked for that this machine does not have.
        DeviceRecipeError: ``--devices`` is malformed or ``--batch-size`` does not split
            evenly over the devices.
        RunPlanError: numbers that do not fit together or the data.
        OutputPathError: a run or export folder cannot be created.
        CheckpointDamagedError: a ``last.ckpt`` to resume from, or the backbone of stage
            ``exits``, cannot be read.
        RunSettingsMismatchError: a reused run name with other settings; the message names
            them and the two ways out (a new ``--run`` or ``--no-resume``).
        CheckpointNotFoundError: stage ``exits`` has no main-stage checkpoint to start from.
        CheckpointMismatchError: that checkpoint's width or classes differ from the run's.
        DataNotFoundError: no CIFAR-10 source.
    """
    check_fields(cfg)
    devices = check_accelerator(cfg.accelerator, cfg.devices)
    check_batch_split(devices, cfg.batch_size)
    check_numbers(cfg, stages, data_sizes(arrays), devices)
    check_output_dir(Path(cfg.runs_dir) / cfg.run, "the run folder (--runs-dir/--run)")
    if cfg.export:
        check_output_dir(cfg.export, "--export")
    points = resume_points(cfg, stages)
    conflicts = {stage: settings_conflicts(cfg, stage, points.get(stage)) for stage in stages}
    conflicts = {k: v for k, v in conflicts.items() if v}
    if conflicts:
        where = ", ".join(str(Path(cfg.runs_dir) / cfg.run / k) for k in conflicts)
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in conflicts.items())
        raise RunSettingsMismatchError(
            f"The run {cfg.run!r} ({where}) was started with other settings ({what}); "
            "pass a new --run NAME to train these settings separately, or --no-resume to start "
            "over (the old stage folder is kept as <stage>.replaced-<UTC time>)."
        )
    # stage exits takes its backbone now or (stage all) after main: check what exists now
    exits_alone = "exits" in stages and "main" not in stages
    if "exits" in stages and "exits" not in points and (exits_alone or cfg.init_from):
        model = build_vgg16_multiexit(num_classes=cfg.num_classes, width=cfg.width, head=cfg.head)
        init_backbone(model, init_path(cfg))
    if arrays is None:
        resolve_source(cfg.source, pack_path=cfg.pack, cifar_root=cfg.cifar_root,
                       download=cfg.download)  # fmt: skip
    return points


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
