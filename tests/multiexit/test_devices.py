"""Device settings without devices: the multi-GPU recipe rule, the precision choice, the
Trainer options, and how the loaders shard the data over ranks."""

from __future__ import annotations

import pytest
import torch

from grle_common.cli import run_cli
from multiexit.data import CIFAR10DataModule, TensorLoader, shard, shard_size
from multiexit.devices import (
    DeviceRecipe,
    device_count,
    device_recipe,
    parse_devices,
    precision_for,
)
from multiexit.errors import DeviceRecipeError
from multiexit.lit import MultiExitModule
from multiexit.train import TrainConfig, _device_options, main


@pytest.mark.parametrize(
    ("devices", "per_device"), [(1, 256), (2, 128), (4, 64)]
)  # the recipe's global batch 256 on 1, 2, 4 GPUs
def test_multi_device_rule_keeps_global_batch_and_learning_rate(devices, per_device):
    recipe = device_recipe(devices, batch_size=256, lr=0.1)
    assert recipe == DeviceRecipe(devices, 256, per_device, 0.1)
    s = "s" if devices > 1 else ""
    assert recipe.describe("main") == (
        f"stage main: {devices} device{s} x {per_device} images = global batch 256 per step; "
        "peak learning rate 0.1 and one-cycle schedule as on one device "
        "(multi-GPU rule: global batch and per-sample schedule kept, docs/multiexit.md)"
    )


def test_multi_device_rule_refuses_a_batch_that_does_not_split(tmp_path, capsys):
    with pytest.raises(DeviceRecipeError, match="--batch-size 256 .* over 3 devices"):
        device_recipe(3, batch_size=256, lr=0.1)
    rc = run_cli(main, ["--accelerator", "cpu", "--devices", "3", "--batch-size", "100",
                        "--no-progress", "--runs-dir", str(tmp_path / "runs"),
                        "--width", "0.0625", "--source", "pack",
                        "--pack", str(tmp_path / "absent.npz")])  # fmt: skip
    assert rc == 2
    # checked before the data: the missing pack is not what the user hears about first
    assert capsys.readouterr().err.startswith("error: --batch-size 100 (the global batch)")
    assert not (tmp_path / "runs").exists()  # refused before any folder was created


def test_devices_are_parsed_as_lightning_takes_them_or_refused(tmp_path, capsys):
    assert parse_devices("auto") == "auto"
    assert parse_devices("8") == 8
    assert parse_devices("0,1") == [0, 1]
    assert [device_count(v) for v in ("auto", "-1", "3", "0,2,5")] == [None, None, 3, 3]
    rc = run_cli(main, ["--accelerator", "cpu", "--devices", "two", "--no-progress",
                        "--runs-dir", str(tmp_path / "runs"), "--width", "0.0625"])  # fmt: skip
    assert rc == 2
    assert capsys.readouterr().err.startswith("error: --devices 'two' is not a device choice")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("gpu", "capability", "expected"),
    [
        (False, None, "32-true"),
        (True, (7, 0), "16-mixed"),  # V100: no native bf16
        (True, (7, 5), "16-mixed"),  # T4, RTX 2080 Ti
        (True, (8, 0), "bf16-mixed"),  # A100
        (True, (8, 6), "bf16-mixed"),  # RTX 3090
        (True, (9, 0), "bf16-mixed"),  # H100 / H200
    ],
)
def test_precision_follows_compute_capability(gpu, capability, expected):
    assert precision_for(gpu, capability) == expected


def test_trainer_device_options_on_a_faked_gpu(monkeypatch):
    seen = []

    def capability(index):
        seen.append(index)
        return (7, 5)

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    cfg = TrainConfig(accelerator="gpu", devices="2,3", strategy="ddp")
    assert _device_options(cfg, True) == {
        "accelerator": "gpu",
        "devices": [2, 3],
        "strategy": "ddp",
        "precision": "16-mixed",
        "benchmark": True,  # cudnn.benchmark for GPU training
    }
    assert seen == [2]  # the capability of the first GPU used
    cpu = _device_options(TrainConfig(accelerator="cpu", devices="1"), False)
    assert cpu["precision"] == "32-true" and cpu["benchmark"] is None
    assert _device_options(TrainConfig(precision="16-mixed"), True)["precision"] == "16-mixed"


def test_stage_main_freezes_the_heads_and_stage_exits_the_backbone():
    main_stage = MultiExitModule(stage="main", width=1 / 16)
    assert not any(p.requires_grad for p in main_stage.model.heads.parameters())
    assert all(p.requires_grad for p in main_stage.model.backbone().parameters())
    exits = MultiExitModule(stage="exits", width=1 / 16)
    assert all(p.requires_grad for p in exits.model.heads.parameters())
    assert not any(p.requires_grad for p in exits.model.backbone().parameters())


@pytest.mark.parametrize("n", [10, 11, 7, 1])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_without_padding_cover_every_index_once(n, world_size):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    parts = [shard(order, r, world_size, pad=False) for r in range(world_size)]
    assert sorted(torch.cat(parts).tolist()) == list(range(n))  # disjoint, complete
    assert [len(p) for p in parts] == [shard_size(n, r, world_size, pad=False)
                                       for r in range(world_size)]  # fmt: skip
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize(("n", "world_size", "per_rank"), [(10, 3, 4), (11, 2, 6), (1, 3, 1)])
def test_padded_shards_have_equal_length(n, world_size, per_rank):
    order = torch.arange(n)
    parts = [shard(order, r, world_size, pad=True) for r in range(world_size)]
    assert [len(p) for p in parts] == [per_rank] * world_size
    assert shard_size(n, 0, world_size, pad=True) == per_rank
    assert set(torch.cat(parts).tolist()) == set(range(n))
    assert shard(torch.arange(10), 1, 3, pad=True).tolist() == [1, 4, 7, 0]  # hand-computed


def test_evaluation_loaders_count_each_test_image_once_over_three_ranks():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    y = torch.arange(10)
    seen = []
    for rank in range(3):
        loader = TensorLoader(x, y, batch_size=3, rank=rank, world_size=3, pad=False)
        labels = [b[1] for b in loader]
        assert len(loader) == len(labels) == [2, 1, 1][rank]  # shares of 4, 3, 3 images
        seen += torch.cat(labels).tolist()
    assert sorted(seen) == list(range(10))  # 10 images, not 12


class _FakeTrainer:
    def __init__(self, rank: int, world_size: int) -> None:
        self.global_rank, self.world_size, self.current_epoch = rank, world_size, 0


def test_drop_last_compares_the_rank_share_with_the_batch(arrays):
    # 300 training images (320 - 20 held out), 2 ranks: 150 each; a batch of 200 is more than
    # a rank's share, so the last (only) batch must be kept, not dropped.
    dm = CIFAR10DataModule(arrays=arrays, val_size=20, batch_size=200, eval_batch_size=64)
    dm.setup()
    dm.trainer = _FakeTrainer(1, 2)
    train = dm.train_dataloader()
    assert not train.drop_last and len(train) == 1
    assert [len(b[1]) for b in train] == [150]
    dm.hparams.batch_size = 64  # a share of 150 holds full batches: the 22 left over drop
    train = dm.train_dataloader()
    assert train.drop_last and [len(b[1]) for b in train] == [64, 64]
    test = dm.test_dataloader()  # 100 test images: ranks get 50 each, no padding
    assert not test.pad and sum(len(b[1]) for b in test) == 50
