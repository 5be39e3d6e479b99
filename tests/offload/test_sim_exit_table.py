"""The exit-table reader: the paper's table reads back, malformed tables are rejected with an
error that names the row/column, and offload needs no training or profiling package."""

import subprocess
import sys
from pathlib import Path

import pytest

from exit_tables.schema import ExitTableError
from offload.exit_table import load_exit_table
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


def test_rows_out_of_order_are_rejected_not_sorted(tmp_path):
    # one rule for every reader (tests/test_exit_table_readers.py holds the shared bad tables)
    lines = GOOD.splitlines()
    with pytest.raises(ExitTableError, match=r"row 2 \(exit 1\).*rows must be sorted by exit"):
        load_exit_table(write(tmp_path, "\n".join([lines[0], lines[2], lines[1]]) + "\n"))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "exit,layer,latency_ms:RTX_2080TI\n17,conv5_3,1.26\n",
            r"missing column 'accuracy' \(a latency-only table\)",
        ),
        (GOOD.replace("0.8,0.36", "0.8,"), r"row 1 .*'latency_ms:RTX_2080TI': the value is empty"),
        (GOOD.replace("0.935,1.26", "0.935,0.0"), r"row 2 \(exit 17\).*latency 0.0 ms"),
        (GOOD.replace("17,conv5_3", "1,conv5_3"), "exit 1 already appears in row 1"),
    ],
)
def test_malformed_tables_are_rejected(tmp_path, text, pattern):
    with pytest.raises(ExitTableError, match=pattern):
        load_exit_table(write(tmp_path, text))


def test_missing_file_and_unknown_server_device(tmp_path):
    with pytest.raises(ExitTableError, match="absent.csv: no such file"):
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
