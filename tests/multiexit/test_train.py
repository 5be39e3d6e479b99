"""Training: frozen backbone in stage exits, resume, learning, export round trip, CLI errors."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

import multiexit.evaluate as evaluate_cli
from grle_common.cli import run_cli
from multiexit.data import TensorLoader
from multiexit.errors import (
    CheckpointMismatchError,
    ChecksumError,
    ManifestError,
    UnknownStageError,
)
from multiexit.evaluate import evaluate_exits
from multiexit.export import export_run, load_run, load_state_into
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
    head_weights = [k for k in heads_before if k.endswith(".weight")]
    fresh = build_vgg16_multiexit(width=1 / 8).state_dict()
    assert head_weights == [f"model.{k}" for k in fresh if k.startswith("heads.") and
                            k.endswith(".weight")] and len(head_weights) == 44  # fmt: skip
    assert all(
        not torch.equal(after[k], heads_before[k]) for k in head_weights
    )  # 16 linear, 28 conv+BN
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


class EpochLog(pl.Callback):
    """Records the epochs that actually train (their first batch ran) in this process."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.epochs.append(trainer.current_epoch)


def _last_state(path):
    ckpt = torch.load(path, weights_only=False)
    return ckpt["state_dict"], ckpt["epoch"], ckpt["global_step"]


@pytest.mark.parametrize("stage", ["main", "exits"])
def test_resume_runs_only_the_remaining_epochs_and_ends_where_an_uninterrupted_run_ends(
    tmp_path, arrays, stage
):
    kw = dict(epochs_main=3, epochs_exits=3, limit_train=128)
    cfg, ref = config(tmp_path, **kw), config(tmp_path, run="u", **kw)
    if stage == "exits":  # both runs start their heads from the same main-stage backbone
        run_stage(config(tmp_path, run="m", epochs_main=1, limit_train=64), "main", arrays=arrays)
        backbone = str(tmp_path / "runs/m/main/checkpoints/best.ckpt")
        cfg.init_from = ref.init_from = backbone
    first = EpochLog()
    with pytest.raises(Interrupt):
        run_stage(cfg, stage, arrays=arrays, callbacks=[first, InterruptAtEpoch(2)])
    assert first.epochs == [0, 1]
    last = tmp_path / f"runs/t/{stage}/checkpoints/last.ckpt"
    interrupted, *where = _last_state(last)
    assert where == [1, 8]  # epoch 1 done: 2 epochs x 4 batches of 32
    resumed = EpochLog()
    run_stage(cfg, stage, arrays=arrays, callbacks=[resumed])
    assert resumed.epochs == [2]  # only the remaining epoch ran after resuming
    whole = EpochLog()
    run_stage(ref, stage, arrays=arrays, callbacks=[whole])
    assert whole.epochs == [0, 1, 2]
    a, epoch_a, step_a = _last_state(last)
    b, epoch_b, step_b = _last_state(tmp_path / f"runs/u/{stage}/checkpoints/last.ckpt")
    assert (epoch_a, step_a) == (epoch_b, step_b) == (2, 12)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same batches, same weights
    assert any(not torch.equal(a[k], v) for k, v in interrupted.items())  # epoch 2 trained


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
    with pytest.raises(CheckpointMismatchError) as info:
        load_run(run)
    assert str(info.value) == (
        f"The checkpoint {run / 'model.safetensors'} does not fit this model (width 0.0625 in "
        f"the checkpoint but 0.125 here); the weights and {run / 'manifest.json'} disagree, so "
        "re-export the run."
    )
    with pytest.raises(FileNotFoundError) as info:
        load_run(tmp_path)
    assert str(info.value) == (
        f"The folder {tmp_path} has no manifest.json, so it is not an exported run; pass a "
        "folder written by `python -m multiexit.train --export` (e.g. checkpoints/<run>)."
    )
    (run / "manifest.json").write_text("{}")
    with pytest.raises(ManifestError, match="is not a manifest written by multiexit.export"):
        load_run(run)


def test_a_mismatch_names_which_of_width_head_and_classes_differ():
    state = build_vgg16_multiexit(width=WIDTH, head="conv_pool", num_classes=5).state_dict()
    target = build_vgg16_multiexit(width=WIDTH, head="pool_linear", num_classes=10)
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_into(target, state, "x.ckpt")
    assert str(info.value) == (
        "The checkpoint x.ckpt does not fit this model (head conv_pool in the checkpoint but "
        "pool_linear here; num_classes 5 in the checkpoint but 10 here); build the model with "
        "the checkpoint's settings (width=0.0625, head=conv_pool, num_classes=5) or use a "
        "checkpoint trained with this model's."
    )
    # the backbone alone (stage exits' start): the head design may differ, the classes not
    with pytest.raises(CheckpointMismatchError, match=r"\(num_classes 5 in the checkpoint but "
                       r"10 here\); build"):  # fmt: skip
        load_state_into(target, state, "x.ckpt", skip=("heads.",))
    same_classes = build_vgg16_multiexit(width=WIDTH, head="conv_pool").state_dict()
    load_state_into(target, same_classes, "x.ckpt", skip=("heads.",))  # fits: no error
    assert torch.equal(target.classifier[2].weight, same_classes["classifier.2.weight"])
    foreign = {"fc.weight": torch.zeros(2, 2)}
    with pytest.raises(CheckpointMismatchError, match="not saved from a multi-exit VGG-16"):
        load_state_into(target, foreign, "y.pt")


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
    assert manifest["training"]["precision"] == "32-true"  # what was used, not --precision auto
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
    assert run_cli(main, ["--stage", "warmup", "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: Unknown stage 'warmup'; choose one of main, exits, all."
    )
    with pytest.raises(UnknownStageError):
        train(TrainConfig(stage="finetune"))
    missing = tmp_path / "missing.npz"
    rc = run_cli(
        main,
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
        ],
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"tried: JPEG pack {missing}" in err and "--pack PATH" in err
    rc = run_cli(
        main,
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
        ],
    )
    assert rc == 2 and "train stage main first" in capsys.readouterr().err


def test_cli_refuses_a_checkpoint_of_another_width(tmp_path, capsys, monkeypatch):
    # a data source must exist to get past the checks; it is never read
    monkeypatch.setenv("GRLE_CIFAR_PACK", str(tmp_path / "wide" / "manifest.json"))
    export_run(build_vgg16_multiexit(width=1 / 8), tmp_path / "wide", data_source="none")
    rc = run_cli(main, ["--stage", "exits", "--runs-dir", str(tmp_path), "--width", "0.0625",
                        "--init-from", str(tmp_path / "wide"), "--accelerator", "cpu",
                        "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err == (
        f"error: The checkpoint {tmp_path / 'wide'} does not fit this model (width 0.125 in the "
        "checkpoint but 0.0625 here); pass the checkpoint's --width/--num-classes (this run has "
        "--width 0.0625 --num-classes 10), or --init-from a checkpoint trained with these.\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide"]  # no run folder created
    (tmp_path / "empty").mkdir()
    rc = run_cli(main, ["--stage", "exits", "--runs-dir", str(tmp_path), "--init-from",
                        str(tmp_path / "empty"), "--accelerator", "cpu",
                        "--no-progress"])  # fmt: skip
    assert rc == 2 and f"The folder {tmp_path / 'empty'} has no manifest.json, so it is not an " \
        "exported run" in capsys.readouterr().err  # fmt: skip


def test_every_cli_flag_is_documented_from_its_config_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--width WIDTH channel multiplier of backbone and heads (> 0; default: 1.0)" in text
    assert "--epochs-exits EPOCHS_EXITS epochs of stage exits (SDN: 25) (≥ 1; default: 25)" in text
    assert "--ema-decay EMA_DECAY weight moving average per step, used for eval and export; 0 = " \
        "off (≥ 0 and < 1; default: 0.0)" in text  # fmt: skip
    assert "--run RUN run name: runs/<run>/ and, with export, checkpoints/<run>/ (default: vgg16)" \
        in text  # fmt: skip
    # every option's help ends in its range (numbers) and default: one per config field
    endings = re.findall(r"\((?:[^()]*; )?default: [^()]*\)(?= --| *$)", text.split("options:")[1])
    assert len(endings) == len(dataclasses.fields(TrainConfig))
    assert "%(default)" not in text
    assert not re.search(r"--[a-z-]+( [A-Z_]+)? \(default:", text), "a flag has no help text"


def _tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _cli(tmp_path, *extra: str) -> list[str]:
    return ["--stage", "main", "--run", "t", "--runs-dir", str(tmp_path / "runs"), "--width",
            "0.0625", "--batch-size", "32", "--val-size", "60", "--epochs-main", "1",
            "--limit-train", "64", "--accelerator", "cpu", "--devices", "1", "--no-progress",
            "--lr-main", "0.05", *extra]  # fmt: skip


def test_a_reused_run_name_with_other_settings_is_one_sentence_and_creates_nothing(
    tmp_path, arrays, capsys
):
    train(config(tmp_path, stage="main", epochs_main=1, limit_train=64), arrays=arrays)
    before = _tree(tmp_path)
    assert "runs/t/main/version_0" in before and "runs/t/main/version_1" not in before
    # more epochs: once OneCycleLR's "Tried to step 5 times" traceback after a new version_1
    assert run_cli(main, _cli(tmp_path, "--epochs-main", "2")) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: The run 't' ({tmp_path / 'runs/t/main'}) was started with other settings "
        "(main: --epochs-main 2 (was 1)); pass a new --run NAME to train these settings "
        "separately, or --no-resume to start over (the old stage folder is kept as "
        "<stage>.replaced-<UTC time>).\n"
    )
    # another width: once a state_dict dump of every tensor
    assert run_cli(main, _cli(tmp_path, "--width", "0.125", "--seed", "3")) == 2
    err = capsys.readouterr().err
    assert "(main: --width 0.125 (was 0.0625), --seed 3 (was 0))" in err and err.count("\n") == 1
    assert _tree(tmp_path) == before  # no version_N, no settings file, nothing
    # a run written before settings.json existed: its checkpoint's hyper-parameters decide
    (tmp_path / "runs/t/main/settings.json").unlink()
    assert run_cli(main, _cli(tmp_path, "--width", "0.125")) == 2
    assert "(main: --width 0.125 (was 0.0625))" in capsys.readouterr().err


def test_no_resume_starts_over_and_keeps_the_old_stage_folder(tmp_path, arrays, capsys):
    cfg = config(tmp_path, stage="main", epochs_main=1, limit_train=64)
    train(cfg, arrays=arrays)
    old_last = (tmp_path / "runs/t/main/checkpoints/last.ckpt").read_bytes()
    log = EpochLog()
    again = dataclasses.replace(cfg, epochs_main=2, resume=False)
    run_stage(again, "main", arrays=arrays, callbacks=[log])
    assert log.epochs == [0, 1]  # started over: two epochs of the new setting
    (kept,) = (tmp_path / "runs/t").glob("main.replaced-*")
    assert re.fullmatch(r"main\.replaced-\d{8}T\d{6}\.\d{6}Z", kept.name)
    assert f"--no-resume: moved the old {tmp_path / 'runs/t/main'} to {kept}" in (
        capsys.readouterr().err
    )
    assert (kept / "checkpoints/last.ckpt").read_bytes() == old_last  # the old run, intact
    assert json.loads((kept / "settings.json").read_text())["epochs_main"] == 1
    new = tmp_path / "runs/t/main"
    assert json.loads((new / "settings.json").read_text())["epochs_main"] == 2
    assert sorted(p.name for p in new.glob("version_*")) == ["version_0"]
    assert torch.load(new / "checkpoints/last.ckpt", weights_only=False)["epoch"] == 1
    # and the new settings now resume: nothing is trained again
    resumed = EpochLog()
    run_stage(dataclasses.replace(again, resume=True), "main", arrays=arrays, callbacks=[resumed])
    assert resumed.epochs == []


def test_unwritable_output_paths_fail_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = run_cli(main, _cli(tmp_path, "--runs-dir", str(blocker / "runs")))
    assert rc == 2 and capsys.readouterr().err == (
        f"error: Cannot write the run folder (--runs-dir/--run) {blocker / 'runs/t'} "
        f"({blocker} is a file, not a folder); choose another path.\n"
    )
    rc = run_cli(main, _cli(tmp_path, "--export", str(blocker / "export")))
    assert rc == 2 and capsys.readouterr().err == (
        f"error: Cannot write --export {blocker / 'export'} ({blocker} is a file, not a folder); "
        "choose another path.\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no runs/ folder either


def test_cli_ends_with_a_summary_and_no_upstream_noise(tmp_path, synthetic_cli):
    export = tmp_path / "checkpoints/c"
    done = synthetic_cli("multiexit.train", "--stage", "all", "--run", "c", "--runs-dir",
                         str(tmp_path / "runs"), "--width", "0.0625", "--epochs-main", "1",
                         "--epochs-exits", "1", "--batch-size", "32", "--val-size", "60",
                         "--accelerator", "cpu", "--devices", "1", "--no-progress",
                         "--export", str(export))  # fmt: skip
    assert done.returncode == 0, done.stderr
    # once: "GPU available: ...", "TPU available: ...", "💡 Tip: ...", "`Trainer.fit` stopped",
    # and a `LeafSpec` deprecation warning, twice each (one per stage)
    for noise in ("Warning", "Tip", "available:", "Trainer", "deprecated", "Seed set"):
        assert noise not in done.stderr, done.stderr
    assert done.stderr == ""
    table = pd.read_csv(export / "exit_accuracy.csv")
    rows = [f" {e:4d}  {layer:<8s}  {a:.4f}"
            for e, layer, a in zip(table.exit, table.layer, table.accuracy, strict=True)]  # fmt: skip
    tail = done.stdout.splitlines()[-22:]
    assert tail[:2] == ["test accuracy of stage exits (100 images):", " exit  layer     accuracy"]
    assert tail[2:19] == rows and len(rows) == 17
    assert tail[19] == f"checkpoints: {tmp_path / 'runs/c/exits/checkpoints'}/{{best,last}}.ckpt"
    assert tail[20] == f"exported to: {export}"
    assert re.fullmatch(r"wall time: \d+\.\d s", tail[21])


def test_evaluate_cli_reports_every_exit_of_an_exported_run(
    tmp_path, synthetic_cli, make_arrays, monkeypatch, capsys
):
    from multiexit.data import CIFAR_MEAN, CIFAR_STD

    torch.manual_seed(1)
    run = export_run(build_vgg16_multiexit(width=WIDTH), tmp_path / "run", data_source="none")
    model, _ = load_run(run)
    data = make_arrays()  # what the runner serves as the test set: 100 images
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1) * 255
    x = (data.test_x.float() - mean) / std
    with torch.no_grad():  # one exit at a time, not the all-exits pass evaluate uses
        expect = [int((model.forward_exit(x, i).argmax(1) == data.test_y).sum()) / 100
                  for i in range(1, 18)]  # fmt: skip
    assert len(set(expect)) > 1  # the exits disagree: a mixed-up column would show

    monkeypatch.setattr(evaluate_cli, "load_cifar10", lambda **kw: data)  # in-process run
    assert evaluate_cli.main([str(run), "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    table = pd.read_csv(io.StringIO(printed.out))
    assert table.exit.tolist() == list(range(1, 18)) and table.accuracy.tolist() == expect
    assert printed.err.splitlines()[0] == f"# {run} on synthetic (tests), test set"

    out = tmp_path / "eval" / "acc.csv"
    done = synthetic_cli("multiexit.evaluate", str(run), "--device", "cpu", "--out", str(out))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert pd.read_csv(out).accuracy.tolist() == expect
    lines = done.stdout.splitlines()
    assert lines[0] == f"test accuracy of {run} on synthetic (tests) (100 images):"
    assert lines[2] == f"    1  conv1_1   {expect[0]:.4f}" and len(lines) == 2 + 17 + 2
    assert lines[-2] == f"wrote {out}" and re.fullmatch(r"wall time: \d+\.\d s", lines[-1])

    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = [str(tmp_path / "no-run"), "--out", str(blocker / "acc.csv")]
    assert run_cli(evaluate_cli.main, argv) == 2  # the output is checked before any loading
    assert capsys.readouterr().err == (
        f"error: Cannot write the folder of --out {blocker} ({blocker} is a file, not a "
        "folder); choose another path.\n"
    )
