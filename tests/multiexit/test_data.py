"""Data: the pack decoder and cache, the sources' errors, batched augmentation, the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import multiexit.data as data_module
from multiexit.data import (
    PACK_SHA256,
    Augmentation,
    CIFAR10DataModule,
    TensorLoader,
    augment_batch,
    cache_path,
    decode_pack,
    default_pack_path,
    draw_augmentation,
    load_cifar10,
    load_pack,
)
from multiexit.errors import ChecksumError, DataNotFoundError
from multiexit.export import sha256_file


def test_pack_decodes_to_its_images_and_labels_and_caches(pack, tmp_path, monkeypatch):
    path, sha, truth = pack
    cache = tmp_path / "cache"
    a = load_pack(path, cache_dir=cache, expected_sha256=sha)
    assert a.train_x.shape == (30, 3, 32, 32) and a.test_x.shape == (10, 3, 32, 32)
    assert a.train_x.dtype == torch.uint8
    assert a.train_y.tolist() == truth["train"][1].tolist()
    assert a.test_y.tolist() == truth["test"][1].tolist()
    # JPEG is lossy: decoded pixels of the smooth test images stay within a few levels
    err = (a.train_x.permute(0, 2, 3, 1).float() - torch.from_numpy(truth["train"][0])).abs()
    assert err.mean() < 2 and err.max() < 20
    assert sha[:12] in a.source and "JPEG copy" in a.source
    name = f"cifar10_jpeg_{sha[:12]}_uint8.npz"
    assert sorted(f.name for f in cache.iterdir()) == [name, name + ".sha256"]
    assert (cache / f"{name}.sha256").read_text() == f"{sha256_file(cache / name)}  {name}\n"
    assert torch.equal(decode_pack(path, expected_sha256=sha).test_x, a.test_x)
    with monkeypatch.context() as m:  # served from the cache: the decoder is never called
        m.setattr(data_module, "decode_pack", _no_decoding)
        b = load_pack(path, cache_dir=cache, expected_sha256=sha)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert b.source == a.source


def _no_decoding(*args, **kwargs):
    raise AssertionError("the pack was decoded although a valid cache exists")


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "no checksum file", "bad arrays"])
def test_a_bad_cache_is_rebuilt_with_a_message(pack, tmp_path, monkeypatch, capsys, damage):
    path, sha, _ = pack
    cache = tmp_path / "cache"
    good = load_pack(path, cache_dir=cache, expected_sha256=sha)
    file = cache_path(cache, sha)
    sidecar = file.with_name(file.name + ".sha256")
    intact = file.read_bytes()
    reason = {
        "truncated": "its sha256 ",
        "corrupted": "its sha256 ",
        "no checksum file": f"it has no checksum file {sidecar.name}",
        "bad arrays": "its train arrays have the wrong dtype or shape",
    }[damage]
    if damage == "truncated":
        file.write_bytes(intact[: len(intact) // 2])
    elif damage == "corrupted":
        flipped = bytearray(intact)
        flipped[len(flipped) // 2] ^= 0xFF
        file.write_bytes(bytes(flipped))
    elif damage == "no checksum file":
        sidecar.unlink()
    else:  # an intact file with its checksum, but not a decoded pack (e.g. another tool's)
        np.savez(file, train_x=np.zeros((2, 32, 32, 3), np.uint8), train_y=np.zeros(2),
                 test_x=np.zeros((1, 3, 32, 32), np.uint8), test_y=np.zeros(1))  # fmt: skip
        sidecar.write_text(f"{sha256_file(file)}  {file.name}\n")
    calls = []
    monkeypatch.setattr(data_module, "decode_pack", lambda *a, **k: calls.append(1) or good)
    again = load_pack(path, cache_dir=cache, expected_sha256=sha)
    err = capsys.readouterr().err
    assert err.startswith(f"The decoded CIFAR-10 cache {file} is unusable ({reason}")
    assert err.endswith(f"); rebuilding it from {path}.\n") and err.count("\n") == 1
    assert calls == [1] and torch.equal(again.train_x, good.train_x)
    assert file.read_bytes() == intact  # rebuilt: the same bytes as the first write
    assert sidecar.read_text() == f"{sha256_file(file)}  {file.name}\n"
    monkeypatch.setattr(data_module, "decode_pack", _no_decoding)
    load_pack(path, cache_dir=cache, expected_sha256=sha)  # and trusted again
    assert capsys.readouterr().err == ""


def test_pack_with_wrong_checksum_is_refused_and_nothing_cached(pack, tmp_path):
    path, sha, _ = pack
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=f"has sha256 {sha}, expected {PACK_SHA256}"):
        load_pack(path, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_data_lists_the_sources_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("GRLE_CIFAR_PACK", str(tmp_path / "nowhere.npz"))
    assert default_pack_path() == tmp_path / "nowhere.npz"
    with pytest.raises(DataNotFoundError) as err:
        load_cifar10(cifar_root=str(tmp_path / "cifar"))
    msg = str(err.value)
    assert str(tmp_path / "cifar") in msg and str(tmp_path / "nowhere.npz") in msg
    assert "--pack" in msg and "GRLE_CIFAR_PACK" in msg and "--cifar-root" in msg


def test_env_var_selects_the_pack(pack, tmp_path, monkeypatch):
    path, sha, truth = pack
    monkeypatch.setenv("GRLE_CIFAR_PACK", str(path))
    a = load_cifar10(source="pack", cache_dir=tmp_path / "c", expected_sha256=sha)
    assert a.train_y.tolist() == truth["train"][1].tolist()


def test_real_pack_has_cifar10_counts(real_pack):
    a = real_pack  # decoded once per test session into a fresh cache, never data/
    assert a.train_x.shape == (50_000, 3, 32, 32) and a.test_x.shape == (10_000, 3, 32, 32)
    assert torch.bincount(a.train_y).tolist() == [5000] * 10
    assert torch.bincount(a.test_y).tolist() == [1000] * 10
    # training-set channel means of CIFAR-10 (0.4914, 0.4822, 0.4465), within JPEG error
    mean = a.train_x[::10].float().mean((0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.003)


def test_augment_batch_matches_per_image_crop_and_flip():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    aug = draw_augmentation(64, torch.Generator().manual_seed(3), pad=2)
    assert aug.dy.min() >= 0 and aug.dy.max() <= 4 and aug.dx.max() <= 4
    out = augment_batch(x, aug, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):  # the per-image reference
        ref = padded[i, :, aug.dy[i] : aug.dy[i] + 8, aug.dx[i] : aug.dx[i] + 8]
        assert torch.equal(out[i], ref.flip(2) if aug.flip[i] else ref)
    assert 10 < int(aug.flip.sum()) < 54  # both branches exercised
    # offset (pad, pad) without flip is the identity
    n = torch.full((64,), 2)
    assert torch.equal(augment_batch(x, Augmentation(n, n, n < 0), pad=2), x)


def test_loader_epochs_cover_all_images_and_depend_only_on_seed_and_epoch():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 32, 32)
    labels = torch.arange(50)
    epoch = [0]
    loader = TensorLoader(
        images.contiguous(), labels, batch_size=16, shuffle=True, seed=1, epoch_fn=lambda: epoch[0]
    )
    assert len(loader) == 4
    first = torch.cat([y for _, y in loader])
    assert sorted(first.tolist()) == list(range(50))
    assert torch.equal(first, torch.cat([y for _, y in loader]))  # same epoch, same order
    epoch[0] = 1
    assert not torch.equal(first, torch.cat([y for _, y in loader]))
    # normalisation: pixel value v -> (v / 255 - mean) / std per channel
    x, y = next(iter(loader))
    expect = (y.float()[:, None] / 255 - torch.tensor([0.4914, 0.4822, 0.4465])) / torch.tensor(
        [0.2470, 0.2435, 0.2616]
    )
    assert torch.allclose(x[:, :, 0, 0], expect, atol=1e-5)
    # two ranks split the permutation without overlap
    parts = [
        torch.cat([y for _, y in TensorLoader(images, labels, batch_size=8, rank=r, world_size=2)])
        for r in (0, 1)
    ]
    assert sorted(torch.cat(parts).tolist()) == list(range(50))


def test_datamodule_split_is_disjoint_and_seeded(arrays):
    dm = CIFAR10DataModule(arrays=arrays, val_size=60, batch_size=32, limit_eval=50)
    dm.setup("fit")
    tr, va = dm.splits["train"], dm.splits["val"]
    assert len(tr[1]) == 260 and len(va[1]) == 50 and len(dm.splits["test"][1]) == 50
    # images are unique per index in the synthetic set (random noise): no overlap
    flat = lambda t: {bytes(v.numpy().tobytes()) for v in t}  # noqa: E731
    assert not flat(tr[0]) & flat(va[0])
    other = CIFAR10DataModule(arrays=arrays, val_size=60, limit_eval=50)
    other.setup("fit")
    assert torch.equal(other.splits["val"][0], va[0])
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (32, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert np.isfinite(xb.numpy()).all()


def test_auto_prefers_a_torchvision_root(tmp_path, monkeypatch, pack):
    """A cifar-10-batches-py folder in the pickle layout (checksums patched: fake content)."""
    import pickle

    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 6}
    written = {}
    for name, n in batches.items():
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels}))
        written[name] = (data, labels)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))
    path, sha, _ = pack  # present too: auto must still choose the torchvision root
    a = load_cifar10(cifar_root=tmp_path / "cifar", pack_path=path, expected_sha256=sha)
    assert "torchvision" in a.source and a.train_x.shape == (20, 3, 32, 32)
    train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(a.train_x, torch.from_numpy(train).view(20, 3, 32, 32))
    assert a.test_y.tolist() == written["test_batch"][1]
    b = load_cifar10(source="pack", cifar_root=tmp_path / "cifar", pack_path=path,
                     expected_sha256=sha, cache_dir=tmp_path / "c")  # fmt: skip
    assert "JPEG copy" in b.source
