"""Batches from uint8 tensors on one device: shuffle, shard over ranks, crop, flip, normalise.

No Python work per image: one index gather per batch for the crop and flip, the random
choices of an epoch drawn at once from a CPU generator seeded by ``(seed, epoch)``, and every
tensor op on the device the images live on. :func:`shard` splits an epoch over DDP ranks:
padded for training (equal steps per rank), exact for evaluation (every image once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the CIFAR-10 training images
CIFAR_STD = (0.2470, 0.2435, 0.2616)  # per-channel standard deviation of the same


class Augmentation(NamedTuple):
    """Per-image random choices of crop-and-flip augmentation (tensors of length n)."""

    dy: torch.Tensor  # crop offset in the padded image, rows, int64 in [0, 2 * pad]
    dx: torch.Tensor  # crop offset in the padded image, columns, int64 in [0, 2 * pad]
    flip: torch.Tensor  # whether to flip horizontally, bool


def draw_augmentation(n: int, generator: torch.Generator, pad: int = 4) -> Augmentation:
    """Random offsets and flips for n images from a CPU generator (device-independent)."""
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    return Augmentation(dy, dx, torch.rand(n, generator=generator) < 0.5)


def augment_batch(x: torch.Tensor, aug: Augmentation, pad: int = 4) -> torch.Tensor:
    """Crop with ``pad`` pixels of zero padding and flip horizontally, one gather per batch.

    ``x`` is (B, C, H, W) of any dtype on any device; ``aug`` holds B choices on that device.
    """
    b, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (aug.dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = aug.dx[:, None] + torch.arange(w, device=dev)
    cols = torch.where(aug.flip[:, None], cols.flip(1), cols)[:, None, None, :]
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def shard(order: torch.Tensor, rank: int, world_size: int, *, pad: bool) -> torch.Tensor:
    """Rank ``rank``'s share of ``order``: every ``world_size``-th element from ``rank`` on.

    With ``pad`` the order is first extended cyclically to a multiple of ``world_size``, so
    every rank gets ``ceil(n / world_size)`` elements (training: DDP needs the same number of
    steps on every rank; a few images are seen twice per epoch). Without ``pad`` the shares
    are disjoint and cover ``order`` exactly once; they differ in length by at most one
    (evaluation: every image counted exactly once).
    """
    if world_size == 1:
        return order
    n = len(order)
    if pad and n % world_size:
        per_rank = -(-n // world_size)
        order = order.repeat(-(-per_rank * world_size // n))[: per_rank * world_size]
    return order[rank::world_size]


def shard_size(n: int, rank: int, world_size: int, *, pad: bool) -> int:
    """``len(shard(order, rank, world_size, pad=pad))`` for an order of length ``n``."""
    if pad:
        return -(-n // world_size) if n else 0
    return max(0, -(-(n - rank) // world_size))


class TensorLoader:
    """Batches from uint8 tensors on one device: shuffle, augment, normalise, all batched.

    The order and augmentation of epoch e depend only on ``(seed, e)``, so a resumed run
    sees the same batches as an uninterrupted one. With ``world_size > 1`` each rank takes
    every ``world_size``-th sample of the permutation (:func:`shard`): padded to equal
    length when ``pad`` (training), disjoint and exact otherwise (evaluation).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        epoch_fn: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        crop_pad: int = 4,
    ) -> None:
        self.images, self.labels = images, labels.to(images.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.drop_last, self.seed, self.channels_last = drop_last, seed, channels_last
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.crop_pad = crop_pad  # zero padding of the random crop, pixels per side
        dev = images.device
        self.mean = torch.tensor(CIFAR_MEAN, device=dev).view(1, 3, 1, 1) * 255
        self.inv_std = 1 / (torch.tensor(CIFAR_STD, device=dev).view(1, 3, 1, 1) * 255)

    def _per_rank(self) -> int:
        return shard_size(len(self.labels), self.rank, self.world_size, pad=self.pad)

    def __len__(self) -> int:
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch_fn())
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = shard(order, self.rank, self.world_size, pad=self.pad)
        dev = self.images.device
        order = order.to(dev)
        # all random choices of the epoch cross to the device at once: no per-batch sync
        aug = None
        if self.augment:
            drawn = draw_augmentation(len(order), g, self.crop_pad)
            aug = Augmentation(*(t.to(dev) for t in drawn))
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[sl]
            x = self.images[idx]
            if aug is not None:
                x = augment_batch(
                    x, Augmentation(aug.dy[sl], aug.dx[sl], aug.flip[sl]), self.crop_pad
                )
            x = (x.float() - self.mean) * self.inv_std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
