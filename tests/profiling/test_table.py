"""The exit-table schema: reader, validator, writer, and merging tables of different devices."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from profiling.errors import ProfilingError
from profiling.table import (
    ExitTableError,
    device_id_from_name,
    make_exit_table,
    merge_exit_tables,
    read_exit_table,
    write_exit_table,
)

PAPER = Path(__file__).resolve().parents[2] / "checkpoints" / "paper_table1.csv"
HEADER = "exit,layer,accuracy,latency_ms:GPU_A\n"


def write_csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(header + body)
    return path


def test_paper_table1_reads_with_the_papers_numbers():
    table = read_exit_table(PAPER, require_sidecar=True)
    assert table.exits.tolist() == [1, 3, 4, 7, 17]
    assert table.layers == ["conv1_1", "pool1", "conv2_1", "conv3_1", "conv5_3"]
    assert table.devices == ["RTX_2080TI", "GTX_1080TI"]
    assert table.accuracy.tolist() == [0.8, 0.85, 0.885, 0.905, 0.935]
    assert table.latency_ms("RTX_2080TI").tolist() == [0.36, 0.46, 0.54, 0.71, 1.26]
    assert table.latency_ms("GTX_1080TI").tolist() == [0.73, 0.89, 1.06, 1.4, 2.42]
    assert table.metadata["source"] == "transcribed"


def test_write_then_read_back_is_identical(tmp_path):
    table = make_exit_table(
        exits=[17, 1, 2],  # sorted on the way in
        layers=["conv5_3", "conv1_1", "conv1_2"],
        accuracy=[0.7, 0.5, 0.6],
        latency_ms={"cpu_1t": [3.25, 1.0, 2.5], "GPU_A": [0.3, 0.1, 0.2]},
        metadata={"source": "measured", "devices": {"cpu_1t": {}, "GPU_A": {"x": 1}}},
    )
    csv_path, json_path = write_exit_table(table, tmp_path / "sub" / "table.csv")
    assert csv_path.read_text().splitlines() == [
        "exit,layer,accuracy,latency_ms:cpu_1t,latency_ms:GPU_A",
        "1,conv1_1,0.5,1.0,0.1",
        "2,conv1_2,0.6,2.5,0.2",
        "17,conv5_3,0.7,3.25,0.3",
    ]
    back = read_exit_table(csv_path)
    assert back.frame.equals(table.frame)
    assert back.metadata == json.loads(json_path.read_text()) == table.metadata
    assert sorted(p.name for p in csv_path.parent.iterdir()) == ["table.csv", "table.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert csv_path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_latency_only_table_has_no_accuracy(tmp_path):
    path = write_csv(tmp_path, "17,conv5_3,0.5\n", header="exit,layer,latency_ms:cpu_1t\n")
    table = read_exit_table(path)
    assert not table.has_accuracy
    with pytest.raises(ProfilingError, match="no accuracy column"):
        _ = table.accuracy


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ("layer,accuracy,latency_ms:GPU_A\n", "conv1_1,0.5,1\n", "missing column 'exit'"),
        ("exit,layer,accuracy\n", "1,conv1_1,0.5\n", "missing latency column"),
        (HEADER, "1,conv1_1,nan,1.0\n", r"row 1 \(exit 1\), column 'accuracy': the value is NaN"),
        (HEADER, "1,conv1_1,,1.0\n", r"row 1 \(exit 1\), column 'accuracy': the value is empty"),
        (
            HEADER,
            "1,conv1_1,0.5,1\n2,conv1_2,0.6,-1\n",
            r"row 2 \(exit 2\), column 'latency_ms:GPU_A': latency -1.0 ms is not positive",
        ),
        (HEADER, "1,conv1_1,0.5,0\n", r"row 1 \(exit 1\), column 'latency_ms:GPU_A': latency 0.0"),
        (
            HEADER,
            "1,conv1_1,93.5,1\n",
            r"row 1 \(exit 1\), column 'accuracy': 93.5 is outside \[0, 1\]",
        ),
        (
            HEADER,
            "1,conv1_1,0.5,1\n1,conv1_2,0.6,2\n",
            r"row 2 \(exit 1\), column 'exit': exit 1 already appears in row 1",
        ),
        (
            HEADER,
            "2,conv1_2,0.5,1\n1,conv1_1,0.6,2\n",
            r"row 2 \(exit 1\), column 'exit': rows must be sorted",
        ),
        (HEADER, "0,conv1_1,0.5,1\n", r"row 1, column 'exit': '0' is not an integer >= 1"),
        (HEADER, "1.5,conv1_1,0.5,1\n", r"row 1, column 'exit'"),
        (HEADER, "1,,0.5,1\n", r"row 1 \(exit 1\), column 'layer': the layer name is empty"),
        (
            HEADER,
            "1,conv1_1,abc,1\n",
            r"row 1 \(exit 1\), column 'accuracy': 'abc' is not a number",
        ),
        ("exit,layer,latency_ms:GPU_A,accuracy\n", "1,c,1,0.5\n", "columns must be in the order"),
        ("exit,layer,speed,latency_ms:GPU_A\n", "1,c,1,0.5\n", "unknown column 'speed'"),
        ("exit,layer,latency_ms:GPU_A,latency_ms:GPU_A\n", "1,c,1,1\n", "appears more than once"),
        ("exit,layer,latency_ms:\n", "1,c,1\n", "device identifier"),
        (HEADER, "", "no rows"),
        (HEADER, "1,conv1_1,0.5\n", "row 1: 3 fields but the header has 4"),
    ],
)
def test_reader_names_row_and_column(tmp_path, header, body, message):
    path = write_csv(tmp_path, body, header=header)
    with pytest.raises(ExitTableError, match=message):
        read_exit_table(path)


def test_sidecar_problems_are_errors(tmp_path):
    path = write_csv(tmp_path, "17,conv5_3,0.5,1\n")
    path.with_suffix(".json").write_text('{"source": "guessed"}')
    with pytest.raises(ExitTableError, match="'source' is 'guessed'"):
        read_exit_table(path)
    path.with_suffix(".json").write_text('{"devices": {"GPU_B": {}}}')
    with pytest.raises(ExitTableError, match="'latency_ms:GPU_A' has no entry"):
        read_exit_table(path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ExitTableError, match="not valid JSON"):
        read_exit_table(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ExitTableError, match="sidecar .* is missing"):
        read_exit_table(path, require_sidecar=True)
    with pytest.raises(ExitTableError, match="no such file"):
        read_exit_table(tmp_path / "nope.csv")


def test_unwritable_path_leaves_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    table = read_exit_table(PAPER)
    with pytest.raises(ProfilingError, match="cannot write to .*choose another output path"):
        write_exit_table(table, blocker / "table.csv")
    assert list(tmp_path.iterdir()) == [blocker]


def test_invalid_table_is_not_written(tmp_path):
    table = read_exit_table(PAPER)
    frame = table.frame.copy()
    frame.loc[2, "latency_ms:RTX_2080TI"] = np.nan
    with pytest.raises(ExitTableError, match=r"row 3 \(exit 4\), column 'latency_ms:RTX_2080TI'"):
        write_exit_table(type(table)(frame, table.metadata), tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_device_id_from_name():
    assert device_id_from_name("NVIDIA H100 80GB HBM3") == "NVIDIA_H100_80GB_HBM3"
    assert device_id_from_name("NVIDIA GeForce RTX 2080 Ti") == "NVIDIA_GeForce_RTX_2080_Ti"
    with pytest.raises(ProfilingError):
        device_id_from_name(" :: ")


def _one_device(device: str, latency: list[float], accuracy=None, **meta):
    return make_exit_table(
        exits=[1, 3, 17],
        layers=["conv1_1", "pool1", "conv5_3"],
        accuracy=accuracy,
        latency_ms={device: latency},
        metadata={"source": "measured", "devices": {device: {"name": device}}, **meta},
    )


def test_merge_gives_one_latency_column_per_device(tmp_path):
    a = _one_device("GPU_A", [0.4, 0.5, 1.3], accuracy=[0.8, 0.85, 0.935], checkpoint_sha256="ab")
    b = _one_device("GPU_B", [0.7, 0.9, 2.4], checkpoint_sha256="ab")  # latency only
    merged = merge_exit_tables([b, a], names=["b.csv", "a.csv"])
    assert merged.devices == ["GPU_B", "GPU_A"]
    assert merged.accuracy.tolist() == [0.8, 0.85, 0.935]
    assert merged.latency_ms("GPU_B").tolist() == [0.7, 0.9, 2.4]
    assert merged.metadata["source"] == "measured"
    assert merged.metadata["devices"] == {"GPU_B": {"name": "GPU_B"}, "GPU_A": {"name": "GPU_A"}}
    assert [m["table"] for m in merged.metadata["merged_from"]] == ["b.csv", "a.csv"]
    path, _ = write_exit_table(merged, tmp_path / "merged.csv")
    assert path.read_text().splitlines()[0] == (
        "exit,layer,accuracy,latency_ms:GPU_B,latency_ms:GPU_A"
    )


def test_merge_with_paper_table_is_mixed():
    paper = read_exit_table(PAPER)
    ours = make_exit_table(
        exits=[1, 3, 4, 7, 17],
        layers=paper.layers,
        latency_ms={"cpu_1t": [1, 2, 3, 4, 9]},
        metadata={"source": "measured", "devices": {"cpu_1t": {}}},
    )
    merged = merge_exit_tables([paper, ours])
    assert merged.devices == ["RTX_2080TI", "GTX_1080TI", "cpu_1t"]
    assert merged.metadata["source"] == "mixed"


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (lambda: _one_device("GPU_A", [1, 2, 3]), "device 'GPU_A' appears in both a and b"),
        (
            lambda: make_exit_table(
                exits=[1, 2, 17],
                layers=["conv1_1", "conv1_2", "conv5_3"],
                latency_ms={"GPU_B": [1, 2, 3]},
            ),
            "merge tables of the same exits",
        ),
        (
            lambda: _one_device("GPU_B", [1, 2, 3], accuracy=[0.8, 0.86, 0.935]),
            "different accuracies",
        ),
        (lambda: _one_device("GPU_B", [1, 2, 3], checkpoint_sha256="cd"), "different checkpoints"),
    ],
)
def test_merge_refuses_inconsistent_tables(second, message):
    first = _one_device(
        "GPU_A", [0.4, 0.5, 1.3], accuracy=[0.8, 0.85, 0.935], checkpoint_sha256="ab"
    )
    with pytest.raises(ProfilingError, match=message):
        merge_exit_tables([first, second()], names=["a", "b"])
    with pytest.raises(ProfilingError, match="at least two"):
        merge_exit_tables([first])
