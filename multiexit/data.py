"""CIFAR-10 from two sources, held as uint8 tensors, with batched tensor augmentation.

Sources (``source=``):

- ``"torchvision"``: the original CIFAR-10 via ``torchvision.datasets.CIFAR10(root)``
  (``download=True`` where there is internet).
- ``"pack"``: the JPEG pack ``../shared/data/cifar10_jpeg.npz``, relative to the source checkout
  or else to the working directory (path overridable by argument, ``--pack`` or the
  ``GRLE_CIFAR_PACK`` environment variable; :func:`pack_path_candidates`), sha256-checked and
  decoded once to a uint8 cache under ``<repo>/data/`` (git-ignored), written atomically.
  Accuracies measured on it are "CIFAR-10 (JPEG copy)" accuracies.
- ``"auto"`` (default): torchvision if ``cifar_root`` holds the data, else the pack.

The whole uint8 set lives on the training device (GPU when training there); a
:class:`~multiexit.loader.TensorLoader` (re-exported here) draws batches by index, then crops
(4-pixel zero padding) and flips the whole batch with tensor ops and normalises it. No Python
work per image anywhere.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch

from grle_common.fileio import atomic_write, sha256_file, write_text_atomic
from multiexit.errors import ChecksumError, DataNotFoundError
from multiexit.loader import (  # noqa: F401 - re-exported: part of multiexit.data's API
    CIFAR_MEAN,
    CIFAR_STD,
    Augmentation,
    TensorLoader,
    augment_batch,
    draw_augmentation,
    shard,
    shard_size,
)

# sha256 of cifar10_jpeg.npz as published in ../shared/data/README.md.
PACK_SHA256 = "f6a62fbe121d76145b17a94a4527507307019a8ea76347530d75d22a3d957a0b"
PACK_ENV = "GRLE_CIFAR_PACK"
REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("auto", "pack", "torchvision")


class DataSizes(NamedTuple):
    """How many images and classes a data set has: what the checks before training read."""

    train: int  # training images (the validation split is held out of these)
    test: int  # test images
    classes: int  # labels are 0 .. classes - 1


CIFAR10_SIZES = DataSizes(train=50_000, test=10_000, classes=10)  # both sources


class CifarArrays(NamedTuple):
    """The full data set as uint8 NCHW images and int64 labels (CPU tensors)."""

    train_x: torch.Tensor  # (50000, 3, 32, 32) uint8
    train_y: torch.Tensor  # (50000,) int64
    test_x: torch.Tensor  # (10000, 3, 32, 32) uint8
    test_y: torch.Tensor  # (10000,) int64
    source: str  # human-readable provenance for manifests and reports


def data_sizes(arrays: CifarArrays | None) -> DataSizes:
    """The sizes of ``arrays``, or of CIFAR-10 (either source) when None."""
    if arrays is None:
        return CIFAR10_SIZES
    classes = int(arrays.train_y.max()) + 1 if len(arrays.train_y) else 0
    return DataSizes(len(arrays.train_y), len(arrays.test_y), classes)


def pack_path_candidates() -> list[Path]:
    """Where the pack is looked for, in order: ``$GRLE_CIFAR_PACK`` alone when set; else
    ``../shared/data/cifar10_jpeg.npz`` relative to the source checkout (``__file__``, right
    for a clone or an editable install), then relative to the working directory (right for a
    regular install run from the repository root, where ``__file__`` is in site-packages)."""
    env = os.environ.get(PACK_ENV)
    if env:
        return [Path(env)]
    rel = Path("shared") / "data" / "cifar10_jpeg.npz"
    candidates = [REPO_ROOT.parent / rel, Path.cwd().resolve().parent / rel]
    return list(dict.fromkeys(candidates))


def default_pack_path() -> Path:
    """The first of :func:`pack_path_candidates` that is a file, else the first candidate."""
    candidates = pack_path_candidates()
    return next((p for p in candidates if p.is_file()), candidates[0])


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


def cache_path(cache_dir: str | os.PathLike | None, expected_sha256: str = PACK_SHA256) -> Path:
    """The decoded cache of the pack with sha256 ``expected_sha256``; its own sha256 is kept
    beside it in ``<name>.sha256`` (``sha256sum`` format)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else REPO_ROOT / "data"
    return cache_dir / f"cifar10_jpeg_{expected_sha256[:12]}_uint8.npz"


def _read_cache(cache: Path) -> list[torch.Tensor]:
    """The four tensors of a verified cache.

    Raises:
        ValueError: the checksum file is missing or differs, or the arrays are malformed.
    """
    sidecar = cache.with_name(cache.name + ".sha256")
    if not sidecar.is_file():
        raise ValueError(f"it has no checksum file {sidecar.name}")
    recorded = sidecar.read_text().split()[:1]
    digest = sha256_file(cache)
    if recorded != [digest]:
        raise ValueError(f"its sha256 {digest[:12]}... differs from {sidecar.name}")
    try:
        with np.load(cache) as z:
            arrays = {k: z[k] for k in CifarArrays._fields[:4]}
    except Exception as exc:  # noqa: BLE001 - zip, pickle and key errors all mean "unreadable"
        raise ValueError(f"it cannot be read ({type(exc).__name__}: {exc})") from None
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32) or y.shape != (len(x),):
            raise ValueError(f"its {split} arrays have the wrong dtype or shape")
    return [torch.from_numpy(arrays[k]) for k in CifarArrays._fields[:4]]


def load_pack(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    expected_sha256: str = PACK_SHA256,
) -> CifarArrays:
    """The pack's images, decoded once to ``<cache_dir>/cifar10_jpeg_<sha12>_uint8.npz``.

    The pack's checksum is verified on every call (about 0.1 s); the cache is keyed by it. The
    cache is verified against the sha256 written beside it (``<cache>.sha256``) and checked
    for shape; a missing, truncated or corrupt cache is rebuilt from the pack, with a message
    on stderr. The cache and then its checksum file are each written atomically, so a cache
    without its checksum (an interrupted write) also counts as bad.

    Raises:
        ChecksumError: the pack's sha256 differs from ``expected_sha256``.
    """
    cache = cache_path(cache_dir, expected_sha256)
    digest = check_pack(path, expected_sha256)
    if cache.is_file():
        try:
            return CifarArrays(*_read_cache(cache), _pack_source(path, digest))
        except ValueError as exc:
            print(
                f"The decoded CIFAR-10 cache {cache} is unusable ({exc}); rebuilding it from "
                f"{path}.",
                file=sys.stderr,
            )
    arrays = decode_pack(path, expected_sha256=expected_sha256)

    def write(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{k: getattr(arrays, k).numpy() for k in CifarArrays._fields[:4]})
        tmp.write_bytes(buf.getvalue())

    atomic_write(cache, write)
    line = f"{sha256_file(cache)}  {cache.name}\n"
    write_text_atomic(cache.with_name(cache.name + ".sha256"), line)
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


def resolve_source(
    source: str = "auto",
    *,
    pack_path: str | os.PathLike | None = None,
    cifar_root: str | os.PathLike | None = None,
    download: bool = False,
) -> tuple[str, Path]:
    """Which source :func:`load_cifar10` would read, without reading it.

    Returns:
        ``("torchvision", root)`` or ``("pack", path of the pack)``.

    Raises:
        DataNotFoundError: no source has the data (the message lists what was tried).
        ValueError: unknown ``source``.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown data source {source!r}; choose one of {', '.join(SOURCES)}.")
    tried = []
    if source in ("auto", "torchvision"):
        if cifar_root is not None and (download or _torchvision_present(cifar_root)):
            return "torchvision", Path(cifar_root)
        tried.append(f"torchvision CIFAR-10 in {cifar_root or '(no --cifar-root given)'}")
    if source in ("auto", "pack"):
        packs = [Path(pack_path)] if pack_path is not None else pack_path_candidates()
        for pack in packs:
            if pack.is_file():
                return "pack", pack
        tried.append("JPEG pack " + " or ".join(str(p) for p in packs))
    raise DataNotFoundError(
        f"No CIFAR-10 data found (tried: {'; '.join(tried)}); pass --pack PATH or set "
        f"{PACK_ENV} to cifar10_jpeg.npz, or pass --cifar-root DIR (with --download where "
        "there is internet)."
    )


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
    kind, path = resolve_source(
        source, pack_path=pack_path, cifar_root=cifar_root, download=download
    )
    if kind == "torchvision":
        return load_torchvision(path, download=download)
    return load_pack(path, cache_dir=cache_dir, expected_sha256=expected_sha256)


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
        crop_pad: int = 4,
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
        augment: random crop + horizontal flip on training batches.
        crop_pad: zero padding of the random crop, pixels per side (0 = flips only).
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
        rank = trainer.global_rank if trainer is not None else 0
        world_size = trainer.world_size if trainer is not None else 1
        x, y = self.splits[split]
        batch_size = h.batch_size if train else h.eval_batch_size
        if not train and len(y) < world_size:
            raise ValueError(
                f"The {split} split has {len(y)} images, fewer than the {world_size} devices; "
                "use fewer devices or a larger --limit-eval."
            )
        # Drop the incomplete last batch only when this rank's share holds a full batch:
        # comparing the global count would leave a rank with zero training batches.
        share = shard_size(len(y), rank, world_size, pad=train)
        return TensorLoader(
            x,
            y,
            batch_size=batch_size,
            shuffle=train,
            augment=train and h.augment,
            drop_last=train and share >= batch_size,
            seed=h.seed,
            channels_last=h.channels_last,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
            rank=rank,
            world_size=world_size,
            pad=train,
            crop_pad=h.crop_pad,
        )

    def train_dataloader(self) -> TensorLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> TensorLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", False)
