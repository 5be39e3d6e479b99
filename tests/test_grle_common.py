"""grle_common: the one atomic write, the one file digest and the one command-line convention."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from grle_common.cli import (
    UserError,
    add_dataclass_args,
    bounded,
    check_fields,
    check_range,
    option,
    run_cli,
)
from grle_common.fileio import (
    atomic_write,
    check_writable_dir,
    created_root,
    sha256_file,
    write_bytes_atomic,
    write_files_atomically,
    write_text_atomic,
)

REPO = Path(__file__).resolve().parents[1]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("new but incomp")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_a_set_of_files_is_written_whole_or_not_at_all(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "sub" / "b.json"

    def fail(_tmp: Path) -> None:
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space left"):
        write_files_atomically({a: lambda tmp: tmp.write_text("a"), b: fail})
    assert not a.exists() and list((tmp_path / "sub").iterdir()) == []
    seen = []

    def record(tmp: Path) -> None:
        seen.append(tmp.name)
        tmp.write_text(tmp.suffix)

    write_files_atomically({a: record, b: record})
    assert a.read_text() == ".csv" and b.read_text() == ".json"  # the target's suffix is kept
    assert seen[0].startswith(".a.csv.") and seen[0].endswith(".tmp.csv")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.csv", "b.json", "sub"]


def test_text_and_bytes_wrappers_and_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    text = write_text_atomic(tmp_path / "new" / "report.md", "τ = 30 ms\n")
    assert text.read_text(encoding="utf-8") == "τ = 30 ms\n"
    assert text.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600
    data = write_bytes_atomic(tmp_path / "job.pkl", b"\x00\x01")
    assert data.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["job.pkl", "new", "report.md"]


def test_check_writable_dir(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe is gone
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        check_writable_dir(blocker / "sub")


def test_created_root_is_the_outermost_folder_a_mkdir_would_make(tmp_path):
    assert created_root(tmp_path) is None
    assert created_root(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    (tmp_path / "a").mkdir()
    assert created_root(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b"


def test_sha256_file_equals_hashlib(tmp_path):
    path = tmp_path / "weights.bin"
    data = os.urandom(3 * 1024 + 17)
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    assert sha256_file(path, chunk_bytes=1000) == expected  # chunk edges change nothing
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


class BadInput(UserError):
    pass


def test_run_cli_turns_a_user_error_into_one_line_and_status_2(capsys):
    def main(argv):
        raise BadInput(f"the table {argv[0]} has no rows; add one row per exit.")

    assert run_cli(main, ["t.csv"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: the table t.csv has no rows; add one row per exit.\n"
    assert captured.out == ""


def test_run_cli_statuses(capsys):
    def interrupted(_argv):
        raise KeyboardInterrupt

    assert run_cli(interrupted) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert run_cli(lambda argv: 3) == 3
    assert run_cli(lambda argv: None) == 0
    assert run_cli(lambda argv: [{"rows": 1}]) == 0  # a main that returns its results

    def bug(_argv):
        raise ZeroDivisionError("a bug, not a user error")

    with pytest.raises(ZeroDivisionError):
        run_cli(bug)


@dataclass(frozen=True, kw_only=True)
class Config:
    width: float = option(1.0, "channel multiplier")
    head: str = option("conv_pool", "exit head design", choices=("conv_pool", "pool_linear"))
    epochs: int = option(60, "epochs of 100% of the data")
    limit: int | None = option(None, "use only this many images")
    warmup: int | None = option(None, "untimed calls", default_text="50 on a GPU, 10 on the CPU")
    resume: bool = option(True, "resume from last.ckpt")
    tta: bool = option(False, "flip test-time augmentation")
    shape: tuple[int, int] = option((32, 32), "height and width of an image, pixels")


def test_dataclass_args_build_flags_with_help_and_defaults(capsys):
    p = argparse.ArgumentParser(prog="x")
    names = add_dataclass_args(p, Config, exclude=("shape",))
    assert names == ["width", "head", "epochs", "limit", "warmup", "resume", "tta"]
    assert Config(**{n: getattr(p.parse_args([]), n) for n in names}) == Config()
    args = p.parse_args(["--width", "0.5", "--limit", "64", "--no-resume", "--tta"])
    assert (args.width, args.limit, args.resume, args.tta) == (0.5, 64, False, True)
    assert isinstance(args.width, float) and isinstance(args.limit, int)
    with pytest.raises(SystemExit):
        p.parse_args(["--head", "mlp"])
    assert "invalid choice: 'mlp'" in capsys.readouterr().err
    text = " ".join(p.format_help().split())
    assert "--width WIDTH channel multiplier (default: 1.0)" in text
    assert "--epochs EPOCHS epochs of 100% of the data (default: 60)" in text
    assert "--limit LIMIT use only this many images (default: None)" in text
    assert "--warmup WARMUP untimed calls (default: 50 on a GPU, 10 on the CPU)" in text
    assert "--resume, --no-resume resume from last.ckpt (default: True)" in text
    assert "--tta, --no-tta flip test-time augmentation (default: False)" in text


def test_dataclass_args_refuse_an_undocumented_field():
    @dataclass
    class Undocumented:
        width: float = 1.0

    with pytest.raises(TypeError, match="'width' .* has no help text"):
        add_dataclass_args(argparse.ArgumentParser(), Undocumented)
    with pytest.raises(TypeError, match="'shape' has type"):
        add_dataclass_args(argparse.ArgumentParser(), Config)


@dataclass
class _Ranged:
    width: float = option(1.0, "channel multiplier", low=0, low_open=True)
    batch_size: int = option(256, "images per step", low=1)
    fraction: float = option(0.5, "a share", low=0, high=1)
    limit: int | None = option(None, "optional count", low=1)
    decay: float = option(0.0, "a decay per step", low=0, high=1, high_open=True)
    share: float = option(0.5, "a share strictly inside", low=0, high=1, low_open=True,
                          high_open=True)  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--width", "0"], "argument --width: must be a number > 0 (got 0)"),
        (["--width", "-1"], "argument --width: must be a number > 0 (got -1)"),
        (["--batch-size", "0"], "argument --batch-size: must be an integer ≥ 1 (got 0)"),
        (["--fraction", "1.5"], "argument --fraction: must be a number ≥ 0 and ≤ 1 (got 1.5)"),
        (["--limit", "-5"], "argument --limit: must be an integer ≥ 1 (got -5)"),
        (["--batch-size", "two"], "argument --batch-size: must be an integer ≥ 1 (got 'two')"),
        (["--width", "nan"], "argument --width: must be a number > 0 (got nan)"),
        (["--decay", "1"], "argument --decay: must be a number ≥ 0 and < 1 (got 1)"),
        (["--share", "0"], "argument --share: must be a number > 0 and < 1 (got 0)"),
        (["--share", "1.0"], "argument --share: must be a number > 0 and < 1 (got 1.0)"),
    ],
)
def test_a_flag_outside_its_declared_range_is_refused_in_one_sentence(argv, message, capsys):
    p = argparse.ArgumentParser(prog="prog")
    add_dataclass_args(p, _Ranged)
    with pytest.raises(SystemExit) as exc:
        p.parse_args(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"prog: error: {message}"


def test_flags_inside_their_range_parse_and_records_built_in_code_are_checked_too():
    p = argparse.ArgumentParser()
    add_dataclass_args(p, _Ranged)
    args = p.parse_args(["--width", "0.25", "--batch-size", "1", "--fraction", "1"])
    assert (args.width, args.batch_size, args.fraction, args.limit) == (0.25, 1, 1.0, None)
    args = p.parse_args(["--decay", "0", "--share", "0.999"])
    assert (args.decay, args.share) == (0.0, 0.999)
    check_fields(_Ranged())  # the defaults are valid
    with pytest.raises(UserError, match=r"^--batch-size must be an integer ≥ 1 \(got 0\)\.$"):
        check_fields(_Ranged(batch_size=0))
    with pytest.raises(UserError, match=r"^--seeds must be an integer ≥ 0 \(got -1\)\.$"):
        check_range("--seeds", -1, 0, kind=int)
    check_range("--seeds", 0, 0, kind=int)
    with pytest.raises(UserError, match=r"^--decay must be a number ≥ 0 and < 1 \(got 1\.0\)\.$"):
        check_fields(_Ranged(decay=1.0))
    with pytest.raises(UserError, match=r"^--p must be a number > 0 and < 1 \(got 1\)\.$"):
        check_range("--p", 1, 0, 1, low_open=True, high_open=True)


def test_help_shows_the_range_of_a_bounded_field():
    p = argparse.ArgumentParser()
    add_dataclass_args(p, _Ranged)
    text = " ".join(p.format_help().split())
    assert "--width WIDTH channel multiplier (> 0; default: 1.0)" in text
    assert "--batch-size BATCH_SIZE images per step (≥ 1; default: 256)" in text
    assert "--share SHARE a share strictly inside (> 0 and < 1; default: 0.5)" in text
    assert "--limit LIMIT optional count (≥ 1; default: None)" in text


def test_bounded_types_a_hand_written_flag_element_by_element(capsys):
    p = argparse.ArgumentParser(prog="prog")
    p.add_argument("--devices", type=bounded(int, low=1, high=100_000), nargs="+")
    assert p.parse_args(["--devices", "1", "100000"]).devices == [1, 100_000]
    with pytest.raises(SystemExit):
        p.parse_args(["--devices", "5", "-3"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "prog: error: argument --devices: must be an integer ≥ 1 and ≤ 100000 (got -3)"


def test_grle_common_imports_only_the_standard_library():
    code = (
        "import sys, grle_common.cli, grle_common.fileio;"
        "bad = [m for m in ('numpy', 'pandas', 'torch', 'multiexit', 'profiling', 'offload')"
        " if m in sys.modules]; print(bad)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
