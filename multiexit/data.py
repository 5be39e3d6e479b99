"""CIFAR-10 from two sources, held as uint8 tensors, with batched tensor augmentation.

Sources (``source=``):

- ``"torchvision"``: the original CIFAR-10 via ``torchvision.datasets.CIFAR10(root)``
  (``download=True`` where there is internet).
- ``"pack"``: the JPEG pack ``<repo>/../shared/data/cifar10_jpeg.npz`` (path overridable by
  argument, ``--pack`` or the ``GRLE_CIFAR_PACK`` environment variable), sha256-checked and
  decoded once to a uint8 cache under ``<repo>/data/`` (git-ignored), written atomically.
  Accuracies measured on it are "CIFAR-10 (JPEG copy)" accuracies.
- ``"auto"`` (default): torchvision if ``cifar_root`` holds the data, else the pack.

The whole uint8 set lives on the training device (GPU when training there); a
:class:`TensorLoader` draws batches by index, then crops (4-pixel zero padding) and flips the
whole batch with tensor ops and normalises it. No Python work per image anywhere.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch

from multiexit.errors import ChecksumError, DataNotFoundError
from multiexit.export import atomic_write, sha256_file

# sha256 of cifar10_jpeg.npz as published in ../shared/data/README.md.
PACK_SHA256 = "f6a62fbe121d76145b17a94a4527507307019a8ea76347530d75d22a3d957a0b"
PACK_ENV = "GRLE_CIFAR_PACK"
REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the CIFAR-10 training images
CIFAR_STD = (0.2470, 0.2435, 0.2616)  # per-channel standard deviation of the same
SOURCES = ("auto", "pack", "torchvision")


class CifarArrays(NamedTuple):
    """The full data set as uint8 NCHW images and int64 labels (CPU tensors)."""

    train_x: torch.Tensor  # (50000, 3, 32, 32) uint8
    train_y: torch.Tensor  # (50000,) int64
    test_x: torch.Tensor  # (10000, 3, 32, 32) uint8
    test_y: torch.Tensor  # (10000,) int64
    source: str  # human-readable provenance for manifests and reports


def default_pack_path() -> Path:
    """``$GRLE_CIFAR_PACK`` if set, else ``<repo root>/../shared/data/cifar10_jpeg.npz``."""
    env = os.environ.get(PACK_ENV)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "cifar10_jpeg.npz"


def _decode_split(header: np.ndarray, payload: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
    from torchvision.io import decode_jpeg

    head = torch.from_numpy(header)
    files = [
        torch.cat([head, torch.from_numpy(payload[offsets[i] : offsets[i + 1]])])
        for i in range(len(offsets) - 1)
    ]
    return torch.stack(decode_jpeg(files))


def check_pack(path: str | os.PathLike, expected_sha256: str = PACK_SHA256) -> str:
    """The pack's sha256, after checking it against ``expected_sha256``.

    Raises:
        ChecksumError: the file's sha256 differs from ``expected_sha256``.
    """
    digest = sha256_file(path)
    if digest != expected_sha256:
        raise ChecksumError(
            f"The CIFAR-10 pack {path} has sha256 {digest}, expected {expected_sha256}; "
            "replace it with an intact copy of cifar10_jpeg.npz (see shared/data/README.md)."
        )
    return digest


def decode_pack(path: str | os.PathLike, *, expected_sha256: str = PACK_SHA256) -> CifarArrays:
    """Check the pack's sha256 and decode every image to uint8 (about 5 s per core).

    Raises:
        ChecksumError: the file's sha256 differs from ``expected_sha256``.
    """
    digest = check_pack(path, expected_sha256)
    with np.load(path) as z:
        header = z["jpeg_header"]
        arrays = [
            _decode_split(header, z[f"{s}_payload"], z[f"{s}_offsets"]) for s in ("train", "test")
        ]
        labels = [torch.from_numpy(z[f"{s}_labels"].astype(np.int64)) for s in ("train", "test")]
    return CifarArrays(arrays[0], labels[0], arrays[1], labels[1], _pack_source(path, digest))


def _pack_source(path: str | os.PathLike, digest: str) -> str:
    return f"CIFAR-10 (JPEG copy) {Path(path).name} sha256:{digest}"


def load_pack(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    expected_sha256: str = PACK_SHA256,
) -> CifarArrays:
    """The pack's images, decoded once to ``<cache_dir>/cifar10_jpeg_<sha12>_uint8.npz``.

    The pack's checksum is verified on every call (about 0.1 s); the cache is keyed by it.

    Raises:
        ChecksumError: the pack's sha256 differs from ``expected_sha256``.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else REPO_ROOT / "data"
    cache = cache_dir / f"cifar10_jpeg_{expected_sha256[:12]}_uint8.npz"
    digest = check_pack(path, expected_sha256)
    if cache.is_file():
        with np.load(cache) as z:
            tensors = [torch.from_numpy(z[k]) for k in ("train_x", "train_y", "test_x", "test_y")]
        return CifarArrays(*tensors, _pack_source(path, digest))
    arrays = decode_pack(path, expected_sha256=expected_sha256)

    def write(tmp: str) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{k: getattr(arrays, k).numpy() for k in CifarArrays._fields[:4]})
        Path(tmp).write_bytes(buf.getvalue())

    atomic_write(cache, write)
    return arrays


def load_torchvision(root: str | os.PathLike, *, download: bool = False) -> CifarArrays:
    """The original CIFAR-10 through torchvision (``download`` needs internet)."""
    from torchvision.datasets import CIFAR10

    parts = []
    for train in (True, False):
        ds = CIFAR10(str(root), train=train, download=download)
        parts.append(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous())
        parts.append(torch.tensor(ds.targets, dtype=torch.int64))
    return CifarArrays(*parts, f"CIFAR-10 (torchvision) {root}")


def _torchvision_present(root: str | os.PathLike) -> bool:
    return (Path(root) / "cifar-10-batches-py" / "data_batch_1").is_file()


def load_cifar10(
    *,
    source: str = "auto",
    pack_path: str | os.PathLike | None = None,
    cifar_root: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    expected_sha256: str = PACK_SHA256,
) -> CifarArrays:
    """Load CIFAR-10 from the first available source (see the module docstring).

    Raises:
        DataNotFoundError: no source has the data (the message lists what was tried).
        ChecksumError: the pack exists but its sha256 is wrong.
        ValueError: unknown ``source``.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown data source {source!r}; choose one of {', '.join(SOURCES)}.")
    tried = []
    if source in ("auto", "torchvision"):
        if cifar_root is not None and (download or _torchvision_present(cifar_root)):
            return load_torchvision(cifar_root, download=download)
        tried.append(f"torchvision CIFAR-10 in {cifar_root or '(no --cifar-root given)'}")
    if source in ("auto", "pack"):
        pack = Path(pack_path) if pack_path is not None else default_pack_path()
        if pack.is_file():
            return load_pack(pack, cache_dir=cache_dir, expected_sha256=expected_sha256)
        tried.append(f"JPEG pack {pack}")
    raise DataNotFoundError(
        f"No CIFAR-10 data found (tried: {'; '.join(tried)}); pass --pack PATH or set "
        f"{PACK_ENV} to cifar10_jpeg.npz, or pass --cifar-root DIR (with --download where "
        "there is internet)."
    )


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


class TensorLoader:
    """Batches from uint8 tensors on one device: shuffle, augment, normalise, all batched.

    The order and augmentation of epoch e depend only on ``(seed, e)``, so a resumed run
    sees the same batches as an uninterrupted one. With ``world_size > 1`` each rank takes
    every ``world_size``-th sample of the permutation (padded to equal length).
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
    ) -> None:
        self.images, self.labels = images, labels.to(images.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.drop_last, self.seed, self.channels_last = drop_last, seed, channels_last
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.rank, self.world_size = rank, world_size
        dev = images.device
        self.mean = torch.tensor(CIFAR_MEAN, device=dev).view(1, 3, 1, 1) * 255
        self.inv_std = 1 / (torch.tensor(CIFAR_STD, device=dev).view(1, 3, 1, 1) * 255)

    def _per_rank(self) -> int:
        return -(-len(self.labels) // self.world_size)

    def __len__(self) -> int:
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch_fn())
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            order = torch.cat([order, order[: self._per_rank() * self.world_size - n]])
            order = order[self.rank :: self.world_size]
        dev = self.images.device
        order = order.to(dev)
        # all random choices of the epoch cross to the device at once: no per-batch sync
        aug = None
        if self.augment:
            aug = Augmentation(*(t.to(dev) for t in draw_augmentation(len(order), g)))
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[sl]
            x = self.images[idx]
            if aug is not None:
                x = augment_batch(x, Augmentation(aug.dy[sl], aug.dx[sl], aug.flip[sl]))
            x = (x.float() - self.mean) * self.inv_std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


class CIFAR10DataModule(pl.LightningDataModule):
    """CIFAR-10 for Lightning: train / validation (held out from train) / test loaders.

    The validation split selects checkpoints; the test set is only for reported accuracies.
    """

    def __init__(
        self,
        *,
        source: str = "auto",
        pack_path: str | None = None,
        cifar_root: str | None = None,
        download: bool = False,
        cache_dir: str | None = None,
        expected_sha256: str = PACK_SHA256,
        val_size: int = 5000,
        batch_size: int = 256,
        eval_batch_size: int = 1000,
        seed: int = 0,
        limit_train: int | None = None,
        limit_eval: int | None = None,
        augment: bool = True,
        channels_last: bool = False,
        arrays: CifarArrays | None = None,
    ) -> None:
        """Args (all keyword-only):
        source / pack_path / cifar_root / download / cache_dir / expected_sha256: see
            :func:`load_cifar10`.
        val_size: training images held out for validation (fixed by ``seed``).
        batch_size: training batch size per device, images.
        eval_batch_size: validation/test batch size, images.
        seed: seed of the validation split, the shuffling and the augmentation.
        limit_train: use only this many training images (quick runs, tests); None = all.
        limit_eval: use only this many validation and test images; None = all.
        augment: random crop (padding 4) + horizontal flip on training batches.
        channels_last: hand batches over in channels-last memory format (GPU speed).
        arrays: data already in memory (tests); bypasses the sources.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["arrays"])
        self._arrays = arrays
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def source_description(self) -> str:
        """Provenance of the data, after :meth:`setup`."""
        return self.arrays.source

    @property
    def arrays(self) -> CifarArrays:
        if self._arrays is None:
            h = self.hparams
            self._arrays = load_cifar10(
                source=h.source,
                pack_path=h.pack_path,
                cifar_root=h.cifar_root,
                download=h.download,
                cache_dir=h.cache_dir,
                expected_sha256=h.expected_sha256,
            )
        return self._arrays

    def prepare_data(self) -> None:
        # Runs once per node: decodes the pack into the cache so that ranks only read it.
        _ = self.arrays

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        h, a = self.hparams, self.arrays
        g = torch.Generator().manual_seed(h.seed)
        perm = torch.randperm(len(a.train_y), generator=g)
        val_idx, train_idx = perm[: h.val_size], perm[h.val_size :]
        if h.limit_train is not None:
            train_idx = train_idx[: h.limit_train]
        test_x, test_y = a.test_x, a.test_y
        if h.limit_eval is not None:
            val_idx = val_idx[: h.limit_eval]
            sub = torch.randperm(len(test_y), generator=g)[: h.limit_eval]
            test_x, test_y = test_x[sub], test_y[sub]
        dev = self._device()
        self.splits = {
            "train": (a.train_x[train_idx].to(dev), a.train_y[train_idx].to(dev)),
            "val": (a.train_x[val_idx].to(dev), a.train_y[val_idx].to(dev)),
            "test": (test_x.to(dev), test_y.to(dev)),
        }

    def _loader(self, split: str, train: bool) -> TensorLoader:
        h = self.hparams
        trainer = getattr(self, "trainer", None)
        x, y = self.splits[split]
        return TensorLoader(
            x,
            y,
            batch_size=h.batch_size if train else h.eval_batch_size,
            shuffle=train,
            augment=train and h.augment,
            drop_last=train and len(y) >= h.batch_size,
            seed=h.seed,
            channels_last=h.channels_last,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def train_dataloader(self) -> TensorLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> TensorLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", False)
