"""Device-dependent training settings: the multi-device recipe rule and the precision choice.

Multi-device rule (docs/multiexit.md, "Multi-GPU recipe"): ``--batch-size`` is the *global*
batch, the images of one optimiser step over all devices, split evenly across them. The peak
learning rates, the one-cycle schedule (a function of optimiser steps, hence of images seen)
and the epochs are those of one device, so N devices run the single-device recipe step for
step: the same batches of the same permutation, the same number of steps, the same learning
rate at every step. What differs is BatchNorm, whose batch statistics are taken per device
over ``global_batch / N`` images (no SyncBatchNorm).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from multiexit.errors import DeviceRecipeError, DeviceUnavailableError
from multiexit.loader import shard_size


@dataclass(frozen=True)
class DeviceRecipe:
    """The training recipe as run on ``devices`` devices (data parallel)."""

    devices: int  # number of data-parallel processes (devices x nodes)
    global_batch: int  # images per optimiser step, all devices together
    per_device_batch: int  # images per step on one device (global_batch / devices)
    lr: float  # peak one-cycle learning rate of the stage, unchanged from one device

    def describe(self, stage: str) -> str:
        """One line for the start of a stage: devices, batches and the learning-rate rule."""
        return (
            f"stage {stage}: {self.devices} device{'s' if self.devices != 1 else ''} x "
            f"{self.per_device_batch} images = global batch {self.global_batch} per step; "
            f"peak learning rate {self.lr:g} and one-cycle schedule as on one device "
            "(multi-GPU rule: global batch and per-sample schedule kept, docs/multiexit.md)"
        )


def device_recipe(devices: int, *, batch_size: int, lr: float) -> DeviceRecipe:
    """The recipe for ``devices`` data-parallel devices from the single-device settings.

    Args:
        devices: number of data-parallel processes (>= 1).
        batch_size: global batch, images per optimiser step over all devices.
        lr: peak learning rate of the stage; kept as it is (no linear scaling), because the
            global batch is kept.

    Raises:
        DeviceRecipeError: ``batch_size`` does not split evenly over ``devices``.
    """
    check_batch_split(devices, batch_size)
    return DeviceRecipe(devices, batch_size, batch_size // devices, lr)


def check_batch_split(devices: int, batch_size: int) -> None:
    """Refuse a device count below one or a global batch that does not split over the devices.

    Raises:
        DeviceRecipeError: the message names the batch, the devices and what to pass instead.
    """
    if devices < 1:
        raise DeviceRecipeError(f"Training needs at least one device (got {devices}).")
    if batch_size % devices:
        raise DeviceRecipeError(
            f"--batch-size {batch_size} (the global batch) does not split evenly over "
            f"{devices} devices; pass a multiple of {devices} or choose the devices with "
            "--devices."
        )


def parse_devices(value: str) -> int | str | list[int]:
    """``--devices`` as Lightning takes it: ``"auto"``, a count (``"8"``; ``"-1"`` = every
    GPU) or distinct indices (``"0,1"``).

    Raises:
        DeviceRecipeError: anything else, including a count of 0 and negative indices.
    """
    if value == "auto":
        return value
    try:
        if "," in value:
            indices = [int(v) for v in value.split(",") if v.strip()]
            if indices and min(indices) >= 0 and len(set(indices)) == len(indices):
                return indices
        elif int(value) >= 1 or int(value) == -1:
            return int(value)
    except ValueError:
        pass
    raise DeviceRecipeError(
        f"--devices {value!r} is not a device choice; pass auto, a count such as 1 or 8, "
        'or device indices such as "0,1".'
    )


def device_count(value: str) -> int | None:
    """How many devices ``--devices`` names, or None where Lightning decides (auto, -1)."""
    devices = parse_devices(value)
    if isinstance(devices, list):
        return len(devices)
    if isinstance(devices, int) and devices >= 0:
        return devices
    return None


def on_gpu(accelerator: str) -> bool:
    """Whether ``--accelerator`` trains on CUDA GPUs (``auto`` does where CUDA is available)."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def check_accelerator(accelerator: str, devices: str) -> int:
    """The number of data-parallel processes Lightning will start for ``--accelerator`` and
    ``--devices``, after checking that the GPUs asked for are on this machine.

    ``auto`` devices are every GPU on a GPU and one process on the CPU (as Lightning does).

    Raises:
        DeviceUnavailableError: GPUs asked for without CUDA, more GPUs or higher indices than
            there are, or GPU indices for a run on the CPU.
        DeviceRecipeError: ``--devices`` is malformed.
    """
    parsed = parse_devices(devices)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"--accelerator {accelerator} needs a CUDA GPU, and torch.cuda.is_available() is "
            "False here; use --accelerator cpu or auto."
        )
    count = device_count(devices)
    if on_gpu(accelerator):
        have = torch.cuda.device_count()
        if isinstance(parsed, list) and max(parsed) >= have:
            raise DeviceUnavailableError(
                f"--devices {devices} names GPU {max(parsed)}, but this machine has {have} "
                f"(indices 0 to {have - 1}); pass indices below {have}."
            )
        if count is not None and count > have:
            raise DeviceUnavailableError(
                f"--devices {devices} asks for {count} GPUs, but this machine has {have}; pass "
                f"--devices {have} or fewer."
            )
        return have if count is None else count
    if accelerator in ("cpu", "auto") and (isinstance(parsed, list) or parsed == -1):
        raise DeviceUnavailableError(
            f"--devices {devices} selects GPUs, but this run trains on the CPU (--accelerator "
            f"{accelerator}); pass a number of CPU processes such as 1, or auto."
        )
    return 1 if count is None else count


def train_batches(images: int, *, global_batch: int, devices: int) -> int:
    """Training batches per epoch on each device, as the training loader makes them: each
    rank gets ``ceil(images / devices)`` images (padded) in batches of ``global_batch /
    devices``, the incomplete last batch dropped only when the share holds a full batch."""
    share = shard_size(images, 0, devices, pad=True)
    per_device = global_batch // devices
    return share // per_device if share >= per_device else -(-share // per_device)


def precision_for(on_gpu: bool, capability: tuple[int, int] | None) -> str:
    """Lightning's precision for ``--precision auto``.

    bf16-mixed on GPUs of compute capability 8.0 or newer (Ampere, Hopper: native bf16);
    16-mixed (fp16 with loss scaling) on older GPUs, where bf16 is emulated and slow;
    32-true on the CPU.
    """
    if not on_gpu:
        return "32-true"
    if capability is not None and tuple(capability) >= (8, 0):
        return "bf16-mixed"
    return "16-mixed"
