"""Train the multi-exit VGG-16: ``python -m multiexit.train --stage all --run NAME``.

Layout of a run (``runs/`` is git-ignored)::

    runs/<run>/main/checkpoints/{best,last}.ckpt      stage main (Lightning checkpoints)
    runs/<run>/main/version_*/metrics.csv             CSVLogger
    runs/<run>/main/exit_accuracy.csv                 test accuracy of every exit
    runs/<run>/exits/...                              the same for stage exits

A stage whose ``last.ckpt`` exists resumes from it (and says from which epoch), only with the
settings it started with (``runs/<run>/<stage>/settings.json``, see :mod:`multiexit.runs`);
``--no-resume`` starts over after moving the old stage folder to
``<stage>.replaced-<UTC time>``. Every check runs before a folder is created (numbers against
their ranges and each other, devices, outputs, a readable ``last.ckpt``, the backbone of stage
exits, the data), and the command ends with a summary (per-exit accuracy, paths, time); Ctrl-C
ends it with what was saved and the command that resumes, exit status 130
(:mod:`multiexit.interrupts`). Stage
``exits`` starts from the best ``main`` checkpoint of the same run (or ``--init-from``: a
``.ckpt`` or an exported ``checkpoints/<run>`` folder). ``--export DIR`` writes the final
model as safetensors + ``manifest.json`` + ``exit_accuracy.csv`` (see ``multiexit.export``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only

from grle_common.cli import add_dataclass_args, option, run_cli
from grle_common.fileio import atomic_write, write_text_atomic
from multiexit.checkpoints import init_backbone
from multiexit.data import SOURCES, CIFAR10DataModule, CifarArrays
from multiexit.devices import device_recipe, on_gpu, parse_devices, precision_for
from multiexit.export import export_run
from multiexit.interrupts import (
    InterruptWatch,
    StageInterrupted,
    lightning_call,
    resume_command,
    resume_line,
)
from multiexit.lit import MultiExitModule, accuracy_frame, check_stage
from multiexit.model import HEADS
from multiexit.runs import SETTINGS_FILE, archive, check_run, init_path, stage_settings

ALL_STAGES = ("main", "exits", "all")

# Named recipes: the TrainConfig values each one sets; a flag given on the command line (or a
# keyword given to TrainConfig.for_recipe) still wins. "standard" is TrainConfig's defaults,
# the recipe every run used before recipes had names. The ablation behind "fast" (width 0.25,
# 10 + 3 epochs, one CPU thread) is in docs/multiexit.md, "Training recipes".
RECIPES: dict[str, dict[str, object]] = {
    "standard": {},
    "fast": {
        "label_smoothing": 0.1,
        "decay_norm_bias": False,
        "batch_size": 128,
        "crop_pad": 2,
    },
}


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a training run depends on (the CLI flags, one to one: each field's help text
    is its ``--help`` line, see :func:`grle_common.cli.add_dataclass_args`)."""

    stage: str = option("all", "main, exits, or all (= main then exits)")
    run: str = option("vgg16", "run name: runs/<run>/ and, with export, checkpoints/<run>/")
    runs_dir: str = option("runs", "parent folder of the Lightning run folders")
    width: float = option(1.0, "channel multiplier of backbone and heads", low=0, low_open=True)
    head: str = option("conv_pool", "exit head design, one of multiexit.model.HEADS", choices=HEADS)
    num_classes: int = option(10, "number of classes (at least the data's 10)", low=2)
    epochs_main: int = option(60, "epochs of stage main", low=1)
    epochs_exits: int = option(25, "epochs of stage exits (SDN: 25)", low=1)
    recipe: str = option(
        "standard",
        "standard (the defaults) or fast (docs/multiexit.md); given flags win",
        choices=RECIPES,
    )
    lr_main: float = option(
        0.1, "peak one-cycle learning rate, stage main (SGD)", low=0, low_open=True
    )
    lr_exits: float = option(
        1e-3, "peak one-cycle learning rate, stage exits (Adam)", low=0, low_open=True
    )
    weight_decay_main: float = option(5e-4, "weight decay, stage main", low=0)
    weight_decay_exits: float = option(1e-4, "weight decay, stage exits", low=0)
    batch_size: int = option(256, "training images per optimiser step, all devices together", low=1)
    label_smoothing: float = option(
        0.0, "cross-entropy label smoothing, both stages", low=0, high=1, high_open=True
    )
    nesterov: bool = option(True, "Nesterov momentum (stage main, SGD)")
    decay_norm_bias: bool = option(True, "also weight-decay BatchNorm weights and biases")
    ema_decay: float = option(
        0.0, "weight moving average per step, used for eval and export; 0 = off",
        low=0, high=1, high_open=True,
    )  # fmt: skip
    warmup_pct: float = option(
        0.15, "fraction of the steps warming the learning rate up to its peak",
        low=0, high=1, low_open=True, high_open=True,
    )  # fmt: skip
    anneal: str = option("linear", "one-cycle shape: linear or cos", choices=("linear", "cos"))
    # up to 31: a crop of the 32-pixel image padded by p keeps at least one image pixel
    crop_pad: int = option(
        4, "random-crop zero padding, pixels per side (0 = flips only)", low=0, high=31
    )
    kd_weight: float = option(
        0.0, "stage exits: weight of distillation from the main classifier (0 = off)",
        low=0, high=1,
    )  # fmt: skip
    kd_temperature: float = option(
        3.0, "stage exits: distillation temperature", low=0, low_open=True
    )
    tta: bool = option(False, "also report flip test-time augmentation (column accuracy_tta)")
    seed: int = option(
        0, "seed of initialisation, split, order and augmentation", low=0, high=2**32 - 1
    )
    source: str = option("auto", "data source: auto, pack, torchvision", choices=SOURCES)
    pack: str | None = option(
        None, "path of cifar10_jpeg.npz (default: $GRLE_CIFAR_PACK or ../shared)"
    )
    cifar_root: str | None = option(None, "torchvision CIFAR-10 root folder")
    download: bool = option(False, "let torchvision download CIFAR-10 (needs internet)")
    val_size: int = option(5000, "training images held out for checkpoint selection", low=1)
    limit_train: int | None = option(None, "use only this many training images (quick runs)", low=1)
    limit_eval: int | None = option(None, "use only this many validation / test images", low=1)
    limit_train_batches: float = option(
        1.0, "fraction (<=1) or whole number (>1) of batches per epoch", low=0, low_open=True
    )
    accelerator: str = option("auto", "Lightning accelerator: auto, cpu, gpu")
    devices: str = option("auto", 'Lightning devices: auto, 1, 8, "0,1"')
    strategy: str = option("auto", "Lightning strategy: auto, ddp, ...")
    precision: str = option(
        "auto", "auto = bf16-mixed on GPUs >= sm80, 16-mixed on older, 32-true on CPU"
    )
    resume: bool = option(True, "resume a stage from its last.ckpt when present")
    init_from: str | None = option(None, "stage exits: main-stage .ckpt or exported run folder")
    export: str | None = option(None, "write the final model to this folder (checkpoints/<run>)")
    progress: bool = option(True, "show Lightning's progress bar")
    log_every_n_steps: int = option(50, "training steps between two rows of metrics.csv", low=1)

    @classmethod
    def for_recipe(cls, recipe: str, **overrides) -> TrainConfig:
        """A config with the values of ``RECIPES[recipe]``, then ``overrides`` on top."""
        return cls(**{"recipe": recipe, **_recipe_values(recipe), **overrides})


def _recipe_values(recipe: str) -> dict[str, object]:
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")
    return dict(RECIPES[recipe])


def _first_cuda_index(devices: int | str | list[int]) -> int:
    return devices[0] if isinstance(devices, list) and devices else 0


def _device_options(cfg: TrainConfig, gpu: bool) -> dict:
    """The Trainer's accelerator, devices, strategy, precision and cuDNN settings.

    ``--precision auto``: :func:`multiexit.devices.precision_for` of the first GPU used
    (bf16-mixed from compute capability 8.0, else 16-mixed; 32-true on the CPU). On a GPU,
    cuDNN autotuning is on: every batch has the same shape, so the search pays off at once.
    """
    devices = parse_devices(cfg.devices)
    precision = cfg.precision
    if precision == "auto":
        capability = torch.cuda.get_device_capability(_first_cuda_index(devices)) if gpu else None
        precision = precision_for(gpu, capability)
    return {
        "accelerator": cfg.accelerator,
        "devices": devices,
        "strategy": cfg.strategy,
        "precision": precision,
        "benchmark": True if gpu else None,
    }


def run_stage(
    cfg: TrainConfig, stage: str, *, arrays: CifarArrays | None = None, callbacks=()
) -> tuple[MultiExitModule, CIFAR10DataModule, list[float]]:
    """Fit one stage (resuming if possible), test its best checkpoint, write the CSV.

    Returns the module holding the best weights, the data module and the test accuracy
    of every exit.

    Raises:
        MultiexitError: a check of :func:`multiexit.runs.check_run` failed (nothing created).
        StageInterrupted: Ctrl-C (a ``KeyboardInterrupt``); it knows what was saved.
    """
    check_stage(stage)
    # before the seed: checking a backbone builds a model, which draws random numbers
    point = check_run(cfg, [stage], arrays=arrays).get(stage)
    gpu = on_gpu(cfg.accelerator)
    stage_dir = Path(cfg.runs_dir) / cfg.run / stage
    pl.seed_everything(cfg.seed, workers=True)
    main = stage == "main"
    epochs = cfg.epochs_main if main else cfg.epochs_exits
    checkpoint = ModelCheckpoint(
        dirpath=stage_dir / "checkpoints",
        filename="best",
        monitor="val_acc",
        mode="max",
        enable_version_counter=False,
    )
    # Lightning's save_last only saves when the best improved; resuming needs every epoch.
    latest = ModelCheckpoint(
        dirpath=stage_dir / "checkpoints", filename="last", enable_version_counter=False
    )
    if cfg.progress:  # reading metrics for the bar syncs the GPU: not on every step
        callbacks = [TQDMProgressBar(refresh_rate=10), *callbacks]
    watch = InterruptWatch()
    trainer = pl.Trainer(
        **_device_options(cfg, gpu),
        max_epochs=epochs,
        callbacks=[checkpoint, latest, watch, *callbacks],
        logger=CSVLogger(save_dir=str(Path(cfg.runs_dir) / cfg.run), name=stage),
        limit_train_batches=cfg.limit_train_batches,
        enable_progress_bar=cfg.progress,
        log_every_n_steps=cfg.log_every_n_steps,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    lr = cfg.lr_main if main else cfg.lr_exits
    recipe = device_recipe(trainer.world_size, batch_size=cfg.batch_size, lr=lr)
    if trainer.is_global_zero:
        print(recipe.describe(stage), flush=True)
        if point is not None:
            print(resume_line(stage, point, epochs), flush=True)
    dm = CIFAR10DataModule(
        source=cfg.source,
        pack_path=cfg.pack,
        cifar_root=cfg.cifar_root,
        download=cfg.download,
        val_size=cfg.val_size,
        batch_size=recipe.per_device_batch,
        seed=cfg.seed,
        limit_train=cfg.limit_train,
        limit_eval=cfg.limit_eval,
        crop_pad=cfg.crop_pad,
        channels_last=gpu,
        arrays=arrays,
    )
    module = MultiExitModule(
        stage=stage,
        num_classes=cfg.num_classes,
        width=cfg.width,
        head=cfg.head,
        optimizer="sgd" if main else "adam",
        lr=recipe.lr,
        weight_decay=cfg.weight_decay_main if main else cfg.weight_decay_exits,
        channels_last=gpu,
        label_smoothing=cfg.label_smoothing,
        nesterov=cfg.nesterov,
        decay_norm_bias=cfg.decay_norm_bias,
        ema_decay=cfg.ema_decay,
        tta=cfg.tta,
        warmup_pct=cfg.warmup_pct,
        anneal=cfg.anneal,
        kd_weight=0.0 if main else cfg.kd_weight,
        kd_temperature=cfg.kd_temperature,
    )
    if not main and point is None:
        init_backbone(module.model, init_path(cfg))  # checked by check_run: before archive
    if not cfg.resume:
        archive(stage_dir)
    if rank_zero_only.rank == 0:  # the first file of the stage: every check has passed
        text = json.dumps(stage_settings(cfg, stage), indent=2) + "\n"
        write_text_atomic(stage_dir / SETTINGS_FILE, text)
    testing = False
    try:
        ckpt_path = str(point.path) if point is not None else None
        lightning_call(trainer.fit, watch, module, datamodule=dm, ckpt_path=ckpt_path)
        testing = True
        best = checkpoint.best_model_path or str(stage_dir / "checkpoints" / "last.ckpt")
        best_module = MultiExitModule.load_from_checkpoint(best, map_location="cpu")
        lightning_call(trainer.test, watch, best_module, datamodule=dm, verbose=False)
    except KeyboardInterrupt:
        raise StageInterrupted(
            stage_dir, epochs, None if testing else trainer.current_epoch + 1
        ) from None
    accuracy = best_module.test_accuracy
    if trainer.is_global_zero:
        frame = accuracy_frame(best_module.model, accuracy, best_module.test_accuracy_tta)
        atomic_write(stage_dir / "exit_accuracy.csv", lambda tmp: frame.to_csv(tmp, index=False))
    return best_module, dm, accuracy


def train(cfg: TrainConfig, *, arrays: CifarArrays | None = None) -> MultiExitModule:
    """Run ``cfg.stage`` (``all`` = main then exits) and export if asked; returns the module."""
    check_stage(cfg.stage, ALL_STAGES)
    stages = ["main", "exits"] if cfg.stage == "all" else [cfg.stage]
    check_run(cfg, stages, arrays=arrays)  # before any folder is created
    for i, stage in enumerate(stages):
        try:
            module, dm, accuracy = run_stage(cfg, stage, arrays=arrays)
        except StageInterrupted as stop:
            stop.finished = tuple(stages[:i])
            raise
    if cfg.export and module.trainer.is_global_zero:
        frame = accuracy_frame(module.model, accuracy, module.test_accuracy_tta)
        export_run(  # the weights that were tested: the moving average when there is one
            module.eval_model.float().to(memory_format=torch.contiguous_format),
            cfg.export,
            data_source=dm.source_description,
            accuracy=frame,
            extra={
                # the precision Lightning trained with, not "auto"
                "training": {**dataclasses.asdict(cfg), "precision": module.trainer.precision},
                "command": "python -m multiexit.train " + shlex.join(sys.argv[1:]),
                "accuracy_split": "test"
                + (f" (random subset of {cfg.limit_eval})" if cfg.limit_eval else ""),
                "torch": torch.__version__,
            },
        )
    return module


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from command-line flags (``--flag-name`` per field)."""
    p = argparse.ArgumentParser(
        prog="python -m multiexit.train", description=__doc__.split("\n")[0]
    )
    add_dataclass_args(p, TrainConfig)
    known, _ = p.parse_known_args(argv)  # the recipe first: it sets the other flags' defaults
    try:
        p.set_defaults(**_recipe_values(known.recipe))
    except ValueError as err:
        p.error(str(err))
    ns = p.parse_args(argv)
    cfg = TrainConfig(**vars(ns))
    if cfg.limit_train_batches > 1 and cfg.limit_train_batches == int(cfg.limit_train_batches):
        cfg.limit_train_batches = int(cfg.limit_train_batches)  # a number of batches
    return cfg


def summary(cfg: TrainConfig, module: MultiExitModule, seconds: float) -> str:
    """The lines printed at the end of ``python -m multiexit.train``: the test accuracy of
    every exit of the last stage, where its weights are, and the wall time."""
    stage = module.hparams.stage
    frame = accuracy_frame(module.model, module.test_accuracy or [], module.test_accuracy_tta)
    tta = "accuracy_tta" in frame.columns
    lines = [f"test accuracy of stage {stage} ({module.test_count or '?'} images):"]
    lines += [" exit  layer     accuracy" + ("  with flip TTA" if tta else "")]
    lines += [
        f" {r.exit:4d}  {r.layer:<8s}  {r.accuracy:.4f}"
        + (f"    {r.accuracy_tta:.4f}" if tta else "")
        for r in frame.itertuples()
    ]
    ckpt = Path(cfg.runs_dir) / cfg.run / stage / "checkpoints"
    lines.append(f"checkpoints: {ckpt}/{{best,last}}.ckpt")
    lines.append(f"exported to: {cfg.export}" if cfg.export else "not exported (no --export)")
    lines.append(f"wall time: {seconds:.1f} s")
    return "\n".join(lines)


def quiet_upstream() -> None:
    """Hide what a user of the CLIs cannot act on: Lightning's tips and info lines (GPU/TPU
    available, "Trainer.fit stopped: max_epochs reached", litmodels adverts) and upstream
    deprecation warnings. Only ``python -m multiexit.train`` calls this (not :func:`main`), so
    tests and library callers see everything."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module=r"(pytorch_)?lightning(_fabric)?(\..*)?")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: train, then print :func:`summary`; returns the exit status.

    Ctrl-C during a stage prints what was saved (the stage's ``last.ckpt`` and its epoch) and
    the command that resumes, and returns 130.

    Raises:
        MultiexitError: a problem the user can fix (no data, a checkpoint that does not fit or
            cannot be read, a reused run name, an unwritable path, numbers that do not fit
            together, ...); ``run_cli`` prints it as one line.
    """
    start = time.perf_counter()
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(args)
    try:
        module = train(cfg)
    except StageInterrupted as stop:
        if rank_zero_only.rank == 0:
            print("\n" + stop.report(resume_command(args)), file=sys.stderr, flush=True)
        return 130
    if rank_zero_only.rank == 0:
        print(summary(cfg, module, time.perf_counter() - start), flush=True)
    return 0


if __name__ == "__main__":
    quiet_upstream()  # the command line only: in-process callers keep their own settings
    sys.exit(run_cli(main))
