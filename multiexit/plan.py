"""The numbers of a training run checked together, before anything is created.

Each flag's own range is declared on its :class:`~multiexit.train.TrainConfig` field
(``option(..., low=, high=)``) and refused by argparse; a record built in code gets the same
check from :func:`grle_common.cli.check_fields`. What is checked here needs two values, the
devices or the data: the validation split against the training set, the limits against what
is left of it, the evaluation splits against the devices, the classes against the labels, and
the batches and optimiser steps an epoch will have. Each failure is one
:class:`~multiexit.errors.RunPlanError` sentence naming the flags and what to pass.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from multiexit.data import DataSizes
from multiexit.devices import train_batches
from multiexit.errors import RunPlanError

if TYPE_CHECKING:
    from multiexit.train import TrainConfig


def epoch_batches(cfg: TrainConfig, sizes: DataSizes, devices: int) -> int:
    """Training batches (optimiser steps) per epoch on each device, after
    ``--limit-train`` and ``--limit-train-batches``, as Lightning counts them.

    Raises:
        RunPlanError: ``--limit-train-batches`` is a non-integer above 1, or a fraction that
            leaves no whole batch.
    """
    images = sizes.train - cfg.val_size
    if cfg.limit_train is not None:
        images = min(images, cfg.limit_train)
    batches = train_batches(images, global_batch=cfg.batch_size, devices=devices)
    limit = cfg.limit_train_batches
    if limit > 1:
        if limit != int(limit):
            raise RunPlanError(
                f"--limit-train-batches {limit:g} is neither a fraction of an epoch (≤ 1) nor a "
                f"whole number of batches; pass e.g. {int(limit)}."
            )
        return min(batches, int(limit))
    if int(batches * limit) == 0:  # Lightning's rule for a fraction
        needed = math.ceil(10_000 / batches) / 10_000
        raise RunPlanError(
            f"--limit-train-batches {limit:g} is less than one of the {batches} training batches "
            f"of an epoch; pass at least {needed:g}, or a whole number of batches such as 2."
        )
    return int(batches * limit)


def check_numbers(cfg: TrainConfig, stages: list[str], sizes: DataSizes, devices: int) -> None:
    """Check the numbers of ``cfg`` against each other, the data and ``devices`` processes.

    Raises:
        RunPlanError: the first problem found, in one sentence.
    """
    if cfg.num_classes < sizes.classes:
        raise RunPlanError(
            f"--num-classes {cfg.num_classes} is fewer than the {sizes.classes} classes of the "
            f"data (labels 0 to {sizes.classes - 1}); pass --num-classes {sizes.classes} or more."
        )
    if cfg.val_size >= sizes.train:
        raise RunPlanError(
            f"--val-size {cfg.val_size} holds out all {sizes.train} training images, leaving "
            f"none to train on; pass a number below {sizes.train}."
        )
    left = sizes.train - cfg.val_size
    if cfg.limit_train is not None and cfg.limit_train > left:
        raise RunPlanError(
            f"--limit-train {cfg.limit_train} is more than the {left} training images left "
            f"after --val-size {cfg.val_size}; pass at most {left}, or leave it out to use all."
        )
    if cfg.limit_eval is not None and cfg.limit_eval > sizes.test:
        raise RunPlanError(
            f"--limit-eval {cfg.limit_eval} is more than the {sizes.test} test images; pass at "
            "most that, or leave it out to use all."
        )
    limit_eval = cfg.limit_eval or math.inf
    splits = {"validation": (min(cfg.val_size, limit_eval), "--val-size or --limit-eval"),
              "test": (min(sizes.test, limit_eval), "--limit-eval")}  # fmt: skip
    for split, (images, flags) in splits.items():
        if images < devices:
            raise RunPlanError(
                f"The {split} split would have {images} images, fewer than the {devices} "
                f"devices that each evaluate a share; pass a larger {flags}, or fewer --devices."
            )
    steps = epoch_batches(cfg, sizes, devices)
    for stage in stages:
        total = steps * (cfg.epochs_main if stage == "main" else cfg.epochs_exits)
        # torch's OneCycleLR divides by (warm-up steps - 1): exactly one step is a 0 / 0
        if float(cfg.warmup_pct * total) == 1.0:
            raise RunPlanError(
                f"--warmup-pct {cfg.warmup_pct:g} makes exactly one warm-up step of the {total} "
                f"optimiser steps of stage {stage}, which torch's one-cycle schedule cannot "
                "divide by; pass another --warmup-pct."
            )
