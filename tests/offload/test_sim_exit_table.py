"""The exit-table reader: the paper's table reads back, malformed tables are rejected with an
error that names the row/column, and offload needs no training or profiling package."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from offload.exit_table import ExitTableError, load_exit_table
from offload.sim import MECConfig, OffloadEnv

REPO = Path(__file__).resolve().parents[2]
GOOD = (
    "exit,layer,accuracy,latency_ms:RTX_2080TI,latency_ms:GTX_1080TI\n"
    "1,conv1_1,0.8,0.36,0.73\n"
    "17,conv5_3,0.935,1.26,2.42\n"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "table.csv"
    path.write_text(text)
    return path


def test_paper_table_reads_back_exactly():
    table = load_exit_table(REPO / "checkpoints" / "paper_table1.csv")
    assert table.exits.tolist() == [1, 3, 4, 7, 17]
    assert table.layers == ("conv1_1", "pool1", "conv2_1", "conv3_1", "conv5_3")
    assert table.accuracy.tolist() == [0.8, 0.85, 0.885, 0.905, 0.935]
    assert table.devices == ("RTX_2080TI", "GTX_1080TI")
    assert table.latency_of("GTX_1080TI").tolist() == [0.73, 0.89, 1.06, 1.4, 2.42]
    assert table.select([1, 17]).latency_of("RTX_2080TI").tolist() == [0.36, 1.26]


def test_rows_are_sorted_by_exit(tmp_path):
    lines = GOOD.splitlines()
    table = load_exit_table(write(tmp_path, "\n".join([lines[0], lines[2], lines[1]]) + "\n"))
    assert table.exits.tolist() == [1, 17]
    assert np.array_equal(table.accuracy, [0.8, 0.935])


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (GOOD.replace("accuracy,", "acc,"), r"missing column\(s\) \['accuracy'\]"),
        ("exit,layer,accuracy\n1,conv1_1,0.8\n", "no latency column"),
        (GOOD.replace("0.8,0.36", "0.8,"), r"row 1 .*'latency_ms:RTX_2080TI'.*not a finite number"),
        (
            GOOD.replace("0.935,1.26", "0.935,0.0"),
            r"row 2, column 'latency_ms:RTX_2080TI'.*not a positive latency",
        ),
        (GOOD.replace("0.935,1.26", "0.935,-1.26"), "not a positive latency"),
        (GOOD.replace("0.935", "93.5"), r"row 2, column 'accuracy' holds 93.5, outside \[0, 1\]"),
        (GOOD.replace("17,conv5_3", "1,conv5_3"), "rows 1 and 2 both describe exit 1"),
        (GOOD.replace("0.8,", "nan,"), r"row 1.*'accuracy'"),
        (GOOD.replace("latency_ms:GTX_1080TI", "latency_ms:GTX 1080"), "invalid device name"),
    ],
)
def test_malformed_tables_are_rejected(tmp_path, text, pattern):
    with pytest.raises(ExitTableError, match=pattern):
        load_exit_table(write(tmp_path, text))


def test_missing_file_and_unknown_server_device(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exit table"):
        load_exit_table(tmp_path / "absent.csv")
    table = load_exit_table(write(tmp_path, GOOD))
    with pytest.raises(ExitTableError, match="unknown server device name 'A100'.*RTX_2080TI"):
        OffloadEnv(table, MECConfig(server_devices=("RTX_2080TI", "A100")))


def test_offload_imports_no_training_stack():
    code = (
        "import sys, offload.exit_table, offload.sim, offload.sim.baselines, offload.sim.metrics;"
        "bad = [m for m in ('torch', 'torchvision', 'multiexit', 'profiling') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
