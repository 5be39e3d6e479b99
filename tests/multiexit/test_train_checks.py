"""Bad numbers and damaged checkpoints: refused in one sentence before any folder is created."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
from safetensors.torch import save_file

import multiexit.evaluate as evaluate_cli
import multiexit.model as model_cli
from grle_common.cli import UserError, run_cli
from multiexit.export import export_run
from multiexit.model import build_vgg16_multiexit
from multiexit.train import TrainConfig, main, run_stage, train

from .test_train import WIDTH, EpochLog, _cli, config

PROG = "python -m multiexit.train"


@pytest.mark.parametrize(
    ("flag", "value", "range_"),
    [
        ("--width", "0", "a number > 0"),
        ("--width", "-1", "a number > 0"),
        ("--num-classes", "1", "an integer ≥ 2"),
        ("--epochs-main", "0", "an integer ≥ 1"),
        ("--epochs-exits", "0", "an integer ≥ 1"),
        ("--lr-main", "0", "a number > 0"),
        ("--lr-exits", "-0.001", "a number > 0"),
        ("--weight-decay-main", "-0.0001", "a number ≥ 0"),
        ("--weight-decay-exits", "-1", "a number ≥ 0"),
        ("--batch-size", "0", "an integer ≥ 1"),
        ("--label-smoothing", "1", "a number ≥ 0 and < 1"),
        ("--ema-decay", "1.0", "a number ≥ 0 and < 1"),
        ("--ema-decay", "-0.5", "a number ≥ 0 and < 1"),
        ("--warmup-pct", "0", "a number > 0 and < 1"),
        ("--warmup-pct", "1", "a number > 0 and < 1"),
        ("--crop-pad", "-1", "an integer ≥ 0 and ≤ 31"),
        ("--crop-pad", "32", "an integer ≥ 0 and ≤ 31"),
        ("--kd-weight", "1.5", "a number ≥ 0 and ≤ 1"),
        ("--kd-temperature", "0", "a number > 0"),
        ("--seed", "-1", "an integer ≥ 0 and ≤ 4294967295"),
        ("--seed", "4294967296", "an integer ≥ 0 and ≤ 4294967295"),
        ("--val-size", "0", "an integer ≥ 1"),
        ("--limit-train", "-5", "an integer ≥ 1"),
        ("--limit-train", "0", "an integer ≥ 1"),
        ("--limit-eval", "0", "an integer ≥ 1"),
        ("--limit-train-batches", "0", "a number > 0"),
        ("--limit-train-batches", "-2", "a number > 0"),
        ("--log-every-n-steps", "0", "an integer ≥ 1"),
    ],
)
def test_a_number_outside_its_range_is_refused_at_parse_time(tmp_path, capsys, flag, value, range_):
    with pytest.raises(SystemExit) as exc:
        main(["--runs-dir", str(tmp_path / "runs"), flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"{PROG}: error: argument {flag}: must be {range_} (got {value})"
    assert not (tmp_path / "runs").exists()


def test_every_numeric_option_of_train_declares_its_range():
    hints = typing.get_type_hints(TrainConfig)
    numeric = [f.name for f in dataclasses.fields(TrainConfig)
               if hints[f.name] in (int, float, int | None, float | None)]  # fmt: skip
    assert len(numeric) == 21
    assert [
        n for n in numeric if "bounds" not in TrainConfig.__dataclass_fields__[n].metadata
    ] == []


def test_a_config_built_in_code_is_checked_too(tmp_path, arrays):
    with pytest.raises(UserError) as info:
        train(config(tmp_path, width=0.0), arrays=arrays)
    assert str(info.value) == "--width must be a number > 0 (got 0.0)."
    with pytest.raises(UserError, match=r"^--epochs-main must be an integer ≥ 1 \(got 0\)\.$"):
        run_stage(config(tmp_path, epochs_main=0), "main", arrays=arrays)
    assert not tmp_path.joinpath("runs").exists()


def _refused(tmp_path, capsys, *extra: str) -> str:
    """The one line ``python -m multiexit.train`` prints for ``extra``, after checking that it
    exits with 2 and creates nothing (no data source exists: every check comes before it)."""
    argv = ["--runs-dir", str(tmp_path / "runs"), "--accelerator", "cpu", "--no-progress",
            "--source", "pack", "--pack", str(tmp_path / "absent.npz"), *extra]  # fmt: skip
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "runs").exists()
    return err.removeprefix("error: ").rstrip("\n")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--val-size", "50000"], "--val-size 50000 holds out all 50000 training images, leaving "
         "none to train on; pass a number below 50000."),
        (["--val-size", "49000", "--limit-train", "1001"], "--limit-train 1001 is more than the "
         "1000 training images left after --val-size 49000; pass at most 1000, or leave it out "
         "to use all."),
        (["--limit-eval", "10001"], "--limit-eval 10001 is more than the 10000 test images; pass "
         "at most that, or leave it out to use all."),
        (["--num-classes", "9"], "--num-classes 9 is fewer than the 10 classes of the data "
         "(labels 0 to 9); pass --num-classes 10 or more."),
        (["--limit-train-batches", "2.5"], "--limit-train-batches 2.5 is neither a fraction of an "
         "epoch (≤ 1) nor a whole number of batches; pass e.g. 2."),
        (["--limit-train", "640", "--batch-size", "64", "--limit-train-batches", "0.05"],
         "--limit-train-batches 0.05 is less than one of the 10 training batches of an epoch; "
         "pass at least 0.1, or a whole number of batches such as 2."),
        (["--stage", "main", "--limit-train", "64", "--batch-size", "32", "--epochs-main", "5",
          "--warmup-pct", "0.1"], "--warmup-pct 0.1 makes exactly one warm-up step of the 10 "
         "optimiser steps of stage main, which torch's one-cycle schedule cannot divide by; "
         "pass another --warmup-pct."),
        (["--devices", "0"], "--devices '0' is not a device choice; pass auto, a count such as 1 "
         'or 8, or device indices such as "0,1".'),
        (["--devices", "0,1"], "--devices 0,1 selects GPUs, but this run trains on the CPU "
         "(--accelerator cpu); pass a number of CPU processes such as 1, or auto."),
        (["--devices", "3", "--batch-size", "96", "--limit-eval", "2"], "The validation split "
         "would have 2 images, fewer than the 3 devices that each evaluate a share; pass a "
         "larger --val-size or --limit-eval, or fewer --devices."),
    ],
)  # fmt: skip
def test_numbers_that_do_not_fit_together_are_one_sentence(tmp_path, capsys, extra, message):
    assert _refused(tmp_path, capsys, *extra) == message


def test_gpus_that_are_not_there_are_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _refused(tmp_path, capsys, "--accelerator", "gpu") == (
        "--accelerator gpu needs a CUDA GPU, and torch.cuda.is_available() is False here; use "
        "--accelerator cpu or auto."
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # one GPU, as far as it asks
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _refused(tmp_path, capsys, "--accelerator", "gpu", "--devices", "2") == (
        "--devices 2 asks for 2 GPUs, but this machine has 1; pass --devices 1 or fewer."
    )
    assert _refused(tmp_path, capsys, "--accelerator", "gpu", "--devices", "0,3") == (
        "--devices 0,3 names GPU 3, but this machine has 1 (indices 0 to 0); pass indices below 1."
    )


def test_the_other_multiexit_commands_refuse_bad_numbers(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        evaluate_cli.main([str(tmp_path), "--batch-size", "0"])
    assert exc.value.code == 2 and capsys.readouterr().err.splitlines()[-1] == (
        "python -m multiexit.evaluate: error: argument --batch-size: must be an integer ≥ 1 (got 0)"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run_cli(evaluate_cli.main, [str(tmp_path), "--device", "cuda"]) == 2
    assert capsys.readouterr().err == (
        "error: --device cuda needs a CUDA GPU, and torch.cuda.is_available() is False here; "
        "use --device cpu.\n"
    )
    with pytest.raises(SystemExit) as exc:
        model_cli.main(["0"])
    assert exc.value.code == 2 and capsys.readouterr().err.splitlines()[-1] == (
        "python -m multiexit.model: error: argument width: must be a number > 0 (got 0)"
    )


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_last_ckpt_is_one_sentence_and_no_resume_starts_over(tmp_path, arrays, capsys):
    cfg = config(tmp_path, stage="main", epochs_main=1, limit_train=64)
    train(cfg, arrays=arrays)
    last = tmp_path / "runs/t/main/checkpoints/last.ckpt"
    _truncate(last)
    before = sorted(p.name for p in (tmp_path / "runs/t/main").iterdir())
    assert run_cli(main, _cli(tmp_path)) == 2  # the same settings: it would resume
    assert capsys.readouterr().err == (
        f"error: {last} is damaged (cannot be read: it is not a whole zip archive as torch.save "
        "writes, so it was cut short or is no checkpoint); delete it to start stage main again, "
        "or pass --no-resume to start over (the old stage folder is kept as "
        "main.replaced-<UTC time>).\n"
    )
    assert sorted(p.name for p in (tmp_path / "runs/t/main").iterdir()) == before
    log = EpochLog()  # --no-resume: the damaged stage is moved aside, the stage trains anew
    run_stage(dataclasses.replace(cfg, resume=False), "main", arrays=arrays, callbacks=[log])
    assert log.epochs == [0] and torch.load(last, weights_only=False)["epoch"] == 0
    last.unlink()  # deleted: the stage starts again in its folder
    log = EpochLog()
    run_stage(cfg, "main", arrays=arrays, callbacks=[log])
    assert log.epochs == [0] and last.is_file()


def _exits_cli(tmp_path, init_from, *extra: str) -> list[str]:
    return ["--stage", "exits", "--runs-dir", str(tmp_path / "runs"), "--width", str(WIDTH),
            "--init-from", str(init_from), "--accelerator", "cpu", "--no-progress",
            "--source", "pack", "--pack", str(tmp_path / "absent.npz"), *extra]  # fmt: skip


def test_a_damaged_init_from_is_one_sentence_before_any_work(tmp_path, capsys):
    advice = ("pass --init-from with an intact main-stage .ckpt or exported run folder, or train "
              "stage main again (--stage main --no-resume).\n")  # fmt: skip
    model = build_vgg16_multiexit(width=WIDTH)
    ckpt = tmp_path / "main.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    weights = tmp_path / "main.safetensors"
    save_file(model.state_dict(), str(weights))
    foreign = tmp_path / "list.ckpt"
    torch.save([1, 2, 3], foreign)
    # intact, both pass every check and stop only at the missing data
    for path in (ckpt, weights):
        assert run_cli(main, _exits_cli(tmp_path, path)) == 2
        assert "No CIFAR-10 data found" in capsys.readouterr().err
    _truncate(ckpt)
    _truncate(weights)
    cases = {
        ckpt: "it is not a whole zip archive as torch.save writes, so it was cut short or is no "
        "checkpoint",
        weights: "Error while deserializing header: incomplete metadata, file not fully covered",
        foreign: "it holds no state_dict, so it is no Lightning checkpoint",
    }
    for path, reason in cases.items():
        for stage in ("exits", "all"):  # stage all: refused before stage main trains
            assert run_cli(main, _exits_cli(tmp_path, path, "--stage", stage)) == 2
            err = capsys.readouterr().err
            assert err == f"error: {path} is damaged (cannot be read: {reason}); {advice}"
    run = export_run(model, tmp_path / "export", data_source="none")
    _truncate(run / "model.safetensors")
    assert run_cli(main, _exits_cli(tmp_path, run)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'model.safetensors'} has sha256 ") and err.endswith(
        "the file is corrupt or was replaced, re-export it.\n"
    )
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError):  # CheckpointDamagedError: library callers catch a ValueError
        run_stage(config(tmp_path, init_from=str(foreign)), "exits")
