"""One exit-table schema (`exit_tables.schema`): every bad table below goes through every reader
of the repository — the simulator's (`offload.exit_table.load_exit_table`) and profiling's
(`profiling.table.read_exit_table`) — and each gives the same error type and the same message,
which names the file exactly once and says what is wrong. The schema belongs to neither side:
profiling imports no part of offload, and the schema imports neither."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exit_tables.schema import ExitTableError
from grle_common.cli import UserError, run_cli
from offload.exit_table import load_exit_table
from profiling.errors import ProfilingError
from profiling.table import read_exit_table

HEADER = "exit,layer,accuracy,latency_ms:RTX_2080TI,latency_ms:GTX_1080TI\n"
ROW1 = "1,conv1_1,0.8,0.36,0.73\n"
ROW7 = "7,conv3_1,0.905,0.71,1.4\n"
ROW17 = "17,conv5_3,0.935,1.26,2.42\n"
READERS = {"offload": load_exit_table, "profiling": read_exit_table}
REPO = Path(__file__).resolve().parents[1]

# (file content, the message after "<path>" — the same for every reader)
BAD_TABLES = {
    "out of order": (
        HEADER + ROW17 + ROW1,
        " row 2 (exit 1), column 'exit': rows must be sorted by exit; reorder the rows.",
    ),
    "truncated last row": (
        HEADER + ROW1 + "17,conv5_3,0.9",
        " row 2: 3 fields but the header has 5 (the last row: is the file truncated?); "
        "write one value per column.",
    ),
    "empty file": ("", ": the file is empty; write the header and one row per exit."),
    "header only": (HEADER, ": the table has no rows; add one row per exit."),
    "duplicate exit": (
        HEADER + ROW1 + ROW1,
        " row 2 (exit 1), column 'exit': exit 1 already appears in row 1; keep one row per exit.",
    ),
    "accuracy in percent": (
        HEADER + ROW1.replace("0.8,", "80,"),
        " row 1 (exit 1), column 'accuracy': 80.0 is outside [0, 1]; "
        "write accuracy as a fraction (0.935, not 93.5).",
    ),
    "empty latency": (
        HEADER + ROW1.replace("0.36", ""),
        " row 1 (exit 1), column 'latency_ms:RTX_2080TI': the value is empty; fill it in.",
    ),
    "nan accuracy": (
        HEADER + ROW1.replace("0.8,", "nan,"),
        " row 1 (exit 1), column 'accuracy': the value is NaN; fill it in.",
    ),
    "negative latency": (
        HEADER + ROW1.replace("0.36", "-0.36"),
        " row 1 (exit 1), column 'latency_ms:RTX_2080TI': latency -0.36 ms is not positive.",
    ),
    "unknown column": (
        HEADER.replace("accuracy", "acc"),
        ": unknown column 'acc'; allowed are exit, layer, accuracy and latency_ms:<DEVICE>.",
    ),
    "no latency column": (
        "exit,layer,accuracy\n1,conv1_1,0.8\n",
        ": missing latency column; add at least one 'latency_ms:<DEVICE>' column.",
    ),
    "no main branch": (
        HEADER + ROW1 + ROW7,
        ": the deepest exit is 7, not the main branch (exit 17), so the main-branch policies "
        "and reports would take exit 7 for it; add the row of exit 17, or pass --main-exit 7 "
        "to declare exit 7 the main branch.",
    ),
    "device name with a space": (
        HEADER.replace("GTX_1080TI", "GTX 1080"),
        ": column 'latency_ms:GTX 1080' needs a device identifier without spaces or colons.",
    ),
}
BINARY = b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe\x00binary"


def _message(reader, path: Path) -> str:
    with pytest.raises(ExitTableError) as info:
        reader(path)
    return str(info.value)


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("case", BAD_TABLES.keys())
def test_every_reader_gives_the_same_message(tmp_path, reader, case):
    text, expected = BAD_TABLES[case]
    path = tmp_path / "table.csv"
    path.write_text(text)
    assert _message(reader, path) == f"{path}{expected}"


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_missing_and_binary_files(tmp_path, reader):
    missing = tmp_path / "absent.csv"
    assert _message(reader, missing) == (
        f"{missing}: no such file; pass the path of an exit table CSV such as "
        "checkpoints/paper_table1.csv."
    )
    binary = tmp_path / "weights.csv"
    binary.write_bytes(BINARY)
    assert _message(reader, binary) == (
        f"{binary}: not a text file (byte 10 is not UTF-8); pass the exit table CSV."
    )


def test_one_error_type_that_every_cli_prints_as_one_line(tmp_path, capsys):
    # one ExitTableError for every reader: a ValueError for library callers and a UserError,
    # which the profiling CLIs (run_cli) print as one line just like their ProfilingError
    missing = tmp_path / "absent.csv"
    with pytest.raises(ValueError) as info:
        read_exit_table(missing)
    assert type(info.value) is ExitTableError and isinstance(info.value, UserError)
    assert not issubclass(ExitTableError, ProfilingError)  # the schema imports no profiling
    assert run_cli(lambda argv: read_exit_table(argv[0]), [missing]) == 2
    assert capsys.readouterr().err == f"error: {info.value}\n"


def test_the_simulator_needs_accuracy(tmp_path):
    path = tmp_path / "latency_only.csv"
    path.write_text("exit,layer,latency_ms:cpu_1t\n17,conv5_3,2.5\n")
    assert read_exit_table(path).devices == ["cpu_1t"]  # a valid latency-only table
    assert _message(load_exit_table, path).startswith(f"{path}: missing column 'accuracy'")


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_a_table_without_exit_17_is_read_only_when_its_main_branch_is_declared(tmp_path, reader):
    path = tmp_path / "shallow.csv"
    path.write_text(HEADER + ROW1 + ROW7)
    assert reader(path, main_exit=7).exits.tolist() == [1, 7]
    assert reader(path, main_exit=None).exits.tolist() == [1, 7]
    full = tmp_path / "full.csv"
    full.write_text(HEADER + ROW1 + ROW7 + ROW17)
    assert reader(full).exits.tolist() == [1, 7, 17]
    with pytest.raises(ExitTableError, match="the deepest exit is 17, not the main branch "):
        reader(full, main_exit=7)  # exit 7 cannot be the main branch with exit 17 behind it


def test_the_simulators_table_names_its_main_branch(tmp_path):
    path = tmp_path / "shallow.csv"
    path.write_text(HEADER + ROW1 + ROW7)
    assert load_exit_table(path, main_exit=7).main_exit == 7
    assert load_exit_table("checkpoints/paper_table1.csv").main_exit == 17


def test_profiling_select_refuses_a_table_without_exit_17_unless_told(tmp_path, capsys):
    from profiling import select

    path = tmp_path / "shallow.csv"
    path.write_text(HEADER + ROW1 + ROW7)
    out = tmp_path / "out" / "c.csv"
    assert run_cli(select.main, [str(path), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {path}{BAD_TABLES['no main branch'][1]}\n"
    assert not (tmp_path / "out").exists()
    assert run_cli(select.main, [str(path), "--main-exit", "7", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: --k must be at most 2, the number of exits in {path} (got 5); ask for fewer "
        "candidates.\n"
    )
    assert run_cli(select.main, [str(path), "--main-exit", "7", "--k", "2", "--out", str(out)]) == 0
    assert "candidate exits: [1, 7] (main branch: exit 7;" in capsys.readouterr().out
    assert read_exit_table(out, main_exit=7).exits.tolist() == [1, 7]


def test_the_experiments_refuse_a_table_without_exit_17_unless_told(tmp_path, capsys):
    from offload.experiments.__main__ import main

    path = tmp_path / "shallow.csv"
    path.write_text(HEADER + ROW1 + ROW7)
    out = tmp_path / "run"
    argv = ["devices", "--quick", "--exits", str(path), "--out", str(out), "--workers", "1"]
    assert run_cli(main, argv) == 2
    assert capsys.readouterr().err == f"error: {path}{BAD_TABLES['no main branch'][1]}\n"
    assert not out.exists()
    assert run_cli(main, [*argv, "--main-exit", "7", "--devices", "2"]) == 0
    report = (out / "devices.md").read_text()
    assert "(main branch: exit 7, after `conv3_1`)" in report


@pytest.mark.parametrize("module", ["offload.sim.run_baselines", "offload.sim.calibration"])
def test_simulator_clis_give_the_readers_message_not_a_traceback(module, tmp_path, capsys):
    """The simulator's own command lines read tables through the same reader: a bad table is
    one line ``error: <the reader's message>`` and exit status 2 (grle_common.cli.run_cli)."""
    import importlib

    bad = tmp_path / "bad.csv"
    text, message = BAD_TABLES["out of order"]
    bad.write_text(text)
    assert run_cli(importlib.import_module(module).main, ["--table", str(bad)]) == 2
    assert capsys.readouterr().err == f"error: {bad}{message}\n"


@pytest.mark.parametrize("module", ["offload.sim.run_baselines", "offload.sim.calibration"])
def test_simulator_clis_read_a_shallow_table_only_with_its_main_branch_declared(
    module, tmp_path, capsys
):
    import importlib

    main = importlib.import_module(module).main
    path = tmp_path / "shallow.csv"
    path.write_text(HEADER + ROW1 + ROW7)
    argv = ["--table", str(path), "--slots", "2", "--num-devices", "2"]
    assert run_cli(main, argv) == 2
    assert capsys.readouterr().err == f"error: {path}{BAD_TABLES['no main branch'][1]}\n"
    assert run_cli(main, [*argv, "--main-exit", "7"]) == 0


def _packages_loaded_by(imports: str) -> set[str]:
    """The top-level packages of this repository (and torch) that a fresh interpreter has loaded
    after running ``imports``."""
    code = (
        f"import importlib, pkgutil, sys; {imports}; "
        "ours = {'exit_tables', 'grle_common', 'multiexit', 'offload', 'profiling', 'torch'}; "
        "print(*sorted({m.split('.')[0] for m in sys.modules} & ours))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_profiling_imports_no_offload_module():
    # upstream meets downstream through files: import every profiling module, and no part of
    # offload may come with them (the exit-table schema comes from exit_tables)
    every_module = (
        "import profiling; [importlib.import_module('profiling.' + m.name) "
        "for m in pkgutil.iter_modules(profiling.__path__)]"
    )
    loaded = _packages_loaded_by(every_module)
    assert {"profiling", "exit_tables", "torch"} <= loaded  # profiling.measure was imported
    assert "offload" not in loaded


def test_the_schema_belongs_to_neither_side():
    assert _packages_loaded_by("import exit_tables.schema") == {"exit_tables", "grle_common"}
