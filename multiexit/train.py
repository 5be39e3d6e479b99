"""Train the multi-exit VGG-16: ``python -m multiexit.train --stage all --run NAME``.

Layout of a run (``runs/`` is git-ignored)::

    runs/<run>/main/checkpoints/{best,last}.ckpt      stage main (Lightning checkpoints)
    runs/<run>/main/version_*/metrics.csv             CSVLogger
    runs/<run>/main/exit_accuracy.csv                 test accuracy of every exit
    runs/<run>/exits/...                              the same for stage exits

A stage whose ``last.ckpt`` exists resumes from it, only with the settings it started with
(``runs/<run>/<stage>/settings.json``, see :mod:`multiexit.runs`); ``--no-resume`` starts over
after moving the old stage folder to ``<stage>.replaced-<UTC time>``. Every check runs before
a folder is created, and the command ends with a summary (per-exit accuracy, paths, time). Stage
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
from safetensors.torch import load_file

from grle_common.cli import add_dataclass_args, option, run_cli
from grle_common.fileio import atomic_write, write_text_atomic
from multiexit.data import SOURCES, CIFAR10DataModule, CifarArrays
from multiexit.devices import device_recipe, parse_devices, precision_for
from multiexit.errors import CheckpointNotFoundError
from multiexit.export import export_run, load_run, load_state_into
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
    width: float = option(1.0, "channel multiplier of backbone and heads")
    head: str = option("conv_pool", "exit head design, one of multiexit.model.HEADS", choices=HEADS)
    num_classes: int = option(10, "number of classes")
    epochs_main: int = option(60, "epochs of stage main")
    epochs_exits: int = option(25, "epochs of stage exits (SDN: 25)")
    recipe: str = option(
        "standard",
        "standard (the defaults) or fast (docs/multiexit.md); given flags win",
        choices=RECIPES,
    )
    lr_main: float = option(0.1, "peak one-cycle learning rate, stage main (SGD)")
    lr_exits: float = option(1e-3, "peak one-cycle learning rate, stage exits (Adam)")
    weight_decay_main: float = option(5e-4, "weight decay, stage main")
    weight_decay_exits: float = option(1e-4, "weight decay, stage exits")
    batch_size: int = option(256, "training images per optimiser step, all devices together")
    label_smoothing: float = option(0.0, "cross-entropy label smoothing, both stages")
    nesterov: bool = option(True, "Nesterov momentum (stage main, SGD)")
    decay_norm_bias: bool = option(True, "also weight-decay BatchNorm weights and biases")
    ema_decay: float = option(
        0.0, "weight moving average per step, used for eval and export; 0 = off"
    )
    warmup_pct: float = option(
        0.15, "fraction of the steps warming the learning rate up to its peak"
    )
    anneal: str = option("linear", "one-cycle shape: linear or cos", choices=("linear", "cos"))
    crop_pad: int = option(4, "random-crop zero padding, pixels per side (0 = flips only)")
    kd_weight: float = option(
        0.0, "stage exits: weight of distillation from the main classifier (0 = off)"
    )
    kd_temperature: float = option(3.0, "stage exits: distillation temperature")
    tta: bool = option(False, "also report flip test-time augmentation (column accuracy_tta)")
    seed: int = option(0, "seed of initialisation, split, order and augmentation")
    source: str = option("auto", "data source: auto, pack, torchvision", choices=SOURCES)
    pack: str | None = option(
        None, "path of cifar10_jpeg.npz (default: $GRLE_CIFAR_PACK or ../shared)"
    )
    cifar_root: str | None = option(None, "torchvision CIFAR-10 root folder")
    download: bool = option(False, "let torchvision download CIFAR-10 (needs internet)")
    val_size: int = option(5000, "training images held out for checkpoint selection")
    limit_train: int | None = option(None, "use only this many training images (quick runs)")
    limit_eval: int | None = option(None, "use only this many validation / test images")
    limit_train_batches: float = option(1.0, "fraction (<=1) or number (>1) of batches per epoch")
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
    log_every_n_steps: int = option(50, "training steps between two rows of metrics.csv")

    @classmethod
    def for_recipe(cls, recipe: str, **overrides) -> TrainConfig:
        """A config with the values of ``RECIPES[recipe]``, then ``overrides`` on top."""
        return cls(**{"recipe": recipe, **_recipe_values(recipe), **overrides})


def _recipe_values(recipe: str) -> dict[str, object]:
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")
    return dict(RECIPES[recipe])


def _on_gpu(cfg: TrainConfig) -> bool:
    return cfg.accelerator in ("gpu", "cuda") or (
        cfg.accelerator == "auto" and torch.cuda.is_available()
    )


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


def _init_weights(module: MultiExitModule, path: str) -> None:
    """Load the backbone (features + main classifier) of a main-stage checkpoint.

    ``path`` is a Lightning ``.ckpt``, a ``.safetensors`` file or an exported run folder. The
    heads keep their fresh initialisation, so any head design can be trained on one backbone.

    Raises:
        CheckpointNotFoundError: no such file, or a folder without ``manifest.json``.
        CheckpointMismatchError: the backbone's width or classes differ from ``module``'s.
    """
    p = Path(path)
    if p.is_dir():
        state = load_run(p)[0].state_dict()  # says so if the folder has no manifest
    elif p.is_file() and p.suffix == ".safetensors":
        state = load_file(str(p))
    elif p.is_file():
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
        # a run with a moving average validated and exports the average: start from it too
        prefix = (
            "ema_model."
            if any(k.startswith("ema_model.") for k in ckpt["state_dict"])
            else "model."
        )
        state = {
            k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)
        }
    else:
        raise CheckpointNotFoundError(
            f"No checkpoint at {p} to start stage exits from; train stage main first "
            "(--stage main) or pass --init-from with a main-stage .ckpt or checkpoints/<run>."
        )
    model = module.model
    load_state_into(
        model, state, str(p), skip=("heads.",),
        hint=f"pass the checkpoint's --width/--num-classes (this run has --width {model.width:g} "
        f"--num-classes {model.num_classes}), or --init-from a checkpoint trained with these",
    )  # fmt: skip


def run_stage(
    cfg: TrainConfig, stage: str, *, arrays: CifarArrays | None = None, callbacks=()
) -> tuple[MultiExitModule, CIFAR10DataModule, list[float]]:
    """Fit one stage (resuming if possible), test its best checkpoint, write the CSV.

    Returns the module holding the best weights, the data module and the test accuracy
    of every exit.
    """
    check_stage(stage)
    gpu = _on_gpu(cfg)
    stage_dir = Path(cfg.runs_dir) / cfg.run / stage
    pl.seed_everything(cfg.seed, workers=True)
    main = stage == "main"
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
    trainer = pl.Trainer(
        **_device_options(cfg, gpu),
        max_epochs=cfg.epochs_main if main else cfg.epochs_exits,
        callbacks=[checkpoint, latest, *callbacks],
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
    last = stage_dir / "checkpoints" / "last.ckpt"
    check_run(cfg, [stage], data=arrays is None)
    resume = cfg.resume and last.is_file()
    if not main and not resume:
        _init_weights(module, init_path(cfg))  # may still refuse the backbone: before archive
    if not cfg.resume:
        archive(stage_dir)
    if rank_zero_only.rank == 0:  # the first file of the stage: every check has passed
        text = json.dumps(stage_settings(cfg, stage), indent=2) + "\n"
        write_text_atomic(stage_dir / SETTINGS_FILE, text)
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    best = checkpoint.best_model_path or str(last)
    best_module = MultiExitModule.load_from_checkpoint(best, map_location="cpu")
    trainer.test(best_module, datamodule=dm, verbose=False)
    accuracy = best_module.test_accuracy
    if trainer.is_global_zero:
        frame = accuracy_frame(best_module.model, accuracy, best_module.test_accuracy_tta)
        atomic_write(stage_dir / "exit_accuracy.csv", lambda tmp: frame.to_csv(tmp, index=False))
    return best_module, dm, accuracy


def train(cfg: TrainConfig, *, arrays: CifarArrays | None = None) -> MultiExitModule:
    """Run ``cfg.stage`` (``all`` = main then exits) and export if asked; returns the module."""
    check_stage(cfg.stage, ALL_STAGES)
    stages = ["main", "exits"] if cfg.stage == "all" else [cfg.stage]
    check_run(cfg, stages, data=arrays is None)  # before any folder is created
    for stage in stages:
        module, dm, accuracy = run_stage(cfg, stage, arrays=arrays)
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
    if cfg.limit_train_batches > 1:
        cfg.limit_train_batches = int(cfg.limit_train_batches)
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
    """CLI entry point: train, then print :func:`summary`.

    Raises:
        MultiexitError: a problem the user can fix (no data, a checkpoint that does not fit, a
            reused run name, an unwritable path, ...); ``run_cli`` prints it as one line.
    """
    start = time.perf_counter()
    cfg = parse_args(argv)
    module = train(cfg)
    if rank_zero_only.rank == 0:
        print(summary(cfg, module, time.perf_counter() - start), flush=True)
    return 0


if __name__ == "__main__":
    quiet_upstream()  # the command line only: in-process callers keep their own settings
    sys.exit(run_cli(main))
