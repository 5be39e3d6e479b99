"""Training: frozen backbone in stage exits, resume, learning, export round trip, CLI errors."""

from __future__ import annotations

import dataclasses
import json
import re

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from multiexit.data import TensorLoader
from multiexit.errors import CheckpointMismatchError, ChecksumError, UnknownStageError
from multiexit.evaluate import evaluate_exits
from multiexit.export import export_run, load_run
from multiexit.model import build_vgg16_multiexit, exit_table
from multiexit.train import TrainConfig, main, run_stage, train

WIDTH = 1 / 16  # channel multiplier of the test models


def config(tmp_path, **kw) -> TrainConfig:
    base = dict(
        run="t",
        runs_dir=str(tmp_path / "runs"),
        width=WIDTH,
        batch_size=32,
        val_size=60,
        epochs_main=2,
        epochs_exits=2,
        accelerator="cpu",
        devices="1",
        progress=False,
        lr_main=0.05,
        lr_exits=0.01,
    )
    base.update(kw)
    return TrainConfig(**base)


class Interrupt(Exception):
    pass


class InterruptAtEpoch(pl.Callback):
    """Simulates a crash at the start of an epoch, after the previous one was checkpointed."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Interrupt


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_main_stage_learns_then_exits_stage_keeps_backbone_bit_identical(tmp_path, arrays):
    cfg = config(tmp_path, width=1 / 8, epochs_main=6)
    main_module, _, acc = run_stage(cfg, "main", arrays=arrays)
    # synthetic classes (ten colours + noise): the main exit learns them in 48 steps
    assert acc[16] >= 0.85, acc
    ckpt = torch.load(tmp_path / "runs/t/main/checkpoints/best.ckpt", weights_only=False)
    before = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("model.heads.")}
    heads_before = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.heads.")}
    assert any("running_mean" in k for k in before) and any("num_batches" in k for k in before)

    exits_module, _, acc = run_stage(cfg, "exits", arrays=arrays)
    after = exits_module.state_dict()
    for k, v in before.items():  # every backbone weight and BatchNorm statistic
        assert torch.equal(after[k], v), k
    assert all(not torch.equal(after[k], v) for k, v in heads_before.items() if "weight" in k)
    assert acc[16] == pytest.approx(
        pd.read_csv(tmp_path / "runs/t/main/exit_accuracy.csv").accuracy[16], abs=1e-6
    )
    assert sum(a > 0.3 for a in acc[:16]) >= 8, acc  # the heads learned (chance is 0.1)
    table = pd.read_csv(tmp_path / "runs/t/exits/exit_accuracy.csv")
    assert list(table.columns) == ["exit", "layer", "accuracy", "params", "macs"]
    assert table.exit.tolist() == list(range(1, 18)) and table.layer[2] == "pool1"
    # another head design on the same backbone: only the heads differ
    other = config(tmp_path, width=1 / 8, run="p", head="pool_linear", epochs_exits=1,
                   init_from=str(tmp_path / "runs/t/main/checkpoints/best.ckpt"))  # fmt: skip
    pooled, _, acc_pooled = run_stage(other, "exits", arrays=arrays)
    assert all(
        torch.equal(pooled.state_dict()[k], v) for k, v in before.items() if "heads" not in k
    )
    assert acc_pooled[16] == acc[16] and pooled.model.head_kind == "pool_linear"
    rows = exit_table(exits_module.model)
    assert table.params.tolist() == [r.params for r in rows]
    assert table.macs.tolist() == [r.macs for r in rows]


def test_resume_continues_an_interrupted_run(tmp_path, arrays):
    cfg = config(tmp_path, stage="main", epochs_main=3, limit_train=128)
    with pytest.raises(Interrupt):
        run_stage(cfg, "main", arrays=arrays, callbacks=[InterruptAtEpoch(2)])
    last = tmp_path / "runs/t/main/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 1
    resumed, _, _ = run_stage(cfg, "main", arrays=arrays)
    assert resumed.trainer.current_epoch == 3
    uninterrupted, _, _ = run_stage(
        config(tmp_path, run="u", epochs_main=3, limit_train=128), "main", arrays=arrays
    )
    a, b = resumed.state_dict(), uninterrupted.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same batches, same weights


def test_export_load_round_trip_and_bad_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = build_vgg16_multiexit(width=WIDTH, head="pool_linear").eval()
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    acc = pd.DataFrame(
        {"exit": range(1, 18), "layer": model.exit_layers, "accuracy": 0.5, "params": 0, "macs": 0}
    )
    run = export_run(
        model, tmp_path / "run32", data_source="synthetic", accuracy=acc, dtype=torch.float32
    )
    loaded, manifest = load_run(run)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(model(x), loaded(x), strict=True))
    assert manifest["config"] == {"num_classes": 10, "width": WIDTH, "head": "pool_linear"}
    assert manifest["accuracies"]["17"] == 0.5 and manifest["data_source"] == "synthetic"
    assert pd.read_csv(run / "exit_accuracy.csv").equals(acc)

    half = export_run(model, tmp_path / "run16", data_source="synthetic")
    loaded16, m16 = load_run(half)
    assert m16["weights"]["dtype"] == "float16"
    for k, v in model.state_dict().items():
        expect = v.half().float() if v.is_floating_point() else v
        assert torch.equal(loaded16.state_dict()[k], expect), k

    weights = half / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="corrupt or was replaced"):
        load_run(half)

    manifest["config"]["width"] = 1 / 8  # weights no longer fit the configured model
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointMismatchError, match="does not fit this model"):
        load_run(run)
    with pytest.raises(FileNotFoundError, match="No manifest.json"):
        load_run(tmp_path)


def test_full_width_export_stays_under_40_mb(tmp_path):
    run = export_run(build_vgg16_multiexit(), tmp_path / "full", data_source="none")
    assert (run / "model.safetensors").stat().st_size < 40e6


def test_stage_all_exports_a_loadable_run(tmp_path, arrays):
    cfg = config(
        tmp_path,
        stage="all",
        epochs_main=1,
        epochs_exits=1,
        limit_train=64,
        export=str(tmp_path / "checkpoints/t"),
    )
    module = train(cfg, arrays=arrays)
    model, manifest = load_run(tmp_path / "checkpoints/t")
    assert manifest["training"]["stage"] == "all" and manifest["data_source"] == "synthetic (tests)"
    table = pd.read_csv(tmp_path / "checkpoints/t/exit_accuracy.csv")
    assert manifest["accuracies"] == {
        str(e): a for e, a in zip(table.exit, table.accuracy, strict=True)
    }
    # the plain evaluation loop agrees with Lightning's test loop (up to float16 storage)
    loader = TensorLoader(arrays.test_x, arrays.test_y, batch_size=50)
    plain = evaluate_exits(model, loader)
    assert max(abs(a - b) for a, b in zip(plain, table.accuracy, strict=True)) <= 0.02
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        module.model.eval()
        for u, v in zip(module.model(x), model(x), strict=True):
            assert torch.allclose(u, v, atol=2e-2, rtol=2e-2)  # float16 storage


def test_cli_errors_are_one_sentence(tmp_path, capsys):
    assert main(["--stage", "warmup", "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: Unknown stage 'warmup'; choose one of main, exits, all."
    )
    with pytest.raises(UnknownStageError):
        train(TrainConfig(stage="finetune"))
    missing = tmp_path / "missing.npz"
    rc = main(
        [
            "--source",
            "pack",
            "--pack",
            str(missing),
            "--runs-dir",
            str(tmp_path),
            "--accelerator",
            "cpu",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"tried: JPEG pack {missing}" in err and "--pack PATH" in err
    rc = main(
        [
            "--stage",
            "exits",
            "--runs-dir",
            str(tmp_path),
            "--width",
            "0.0625",
            "--init-from",
            str(tmp_path / "none.ckpt"),
            "--accelerator",
            "cpu",
        ]
    )
    assert rc == 2 and "train stage main first" in capsys.readouterr().err


def test_cli_refuses_a_checkpoint_of_another_width(tmp_path, capsys):
    export_run(build_vgg16_multiexit(width=1 / 8), tmp_path / "wide", data_source="none")
    rc = main(["--stage", "exits", "--runs-dir", str(tmp_path), "--width", "0.0625",
               "--init-from", str(tmp_path / "wide"), "--accelerator", "cpu", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "does not fit this model" in err and "(shape: " in err


def test_every_cli_flag_is_documented_from_its_config_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--width WIDTH channel multiplier of backbone and heads (default: 1.0)" in text
    assert "--epochs-exits EPOCHS_EXITS epochs of stage exits (SDN: 25) (default: 25)" in text
    # every option's help ends in its default: one per config field
    endings = re.findall(r"\(default: [^()]*\)(?= --| *$)", text.split("options:")[1])
    assert len(endings) == len(dataclasses.fields(TrainConfig))
    assert "%(default)" not in text
    assert not re.search(r"--[a-z-]+( [A-Z_]+)? \(default:", text), "a flag has no help text"
