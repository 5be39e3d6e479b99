"""`python -m profiling.merge` and `python -m profiling.select` on small tables."""

from pathlib import Path

from offload.exit_table import load_exit_table
from profiling import merge, select
from profiling.errors import run_cli
from profiling.table import make_exit_table, read_exit_table, write_exit_table

PAPER = Path(__file__).resolve().parents[2] / "checkpoints" / "paper_table1.csv"


def test_select_on_the_paper_table(tmp_path, capsys):
    out = tmp_path / "cand.csv"
    assert select.main([str(PAPER), "--k", "3", "--devices", "RTX_2080TI", "--out", str(out)]) == 0
    assert "candidate exits: [1, 4, 17]" in capsys.readouterr().out
    table = read_exit_table(out, require_sidecar=True)
    assert table.exits.tolist() == [1, 4, 17]
    assert table.devices == ["RTX_2080TI", "GTX_1080TI"]  # all latency columns are kept
    assert table.metadata["candidates"]["devices"] == ["RTX_2080TI"]
    assert table.metadata["source"] == "transcribed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cand.csv", "cand.json", "cand.png"]


def test_offload_reads_the_candidate_table(tmp_path):
    out = tmp_path / "cand.csv"
    assert select.main([str(PAPER), "--k", "4", "--out", str(out)]) == 0
    theirs = load_exit_table(str(out))
    assert theirs.exits.tolist() == [1, 4, 7, 17]
    assert theirs.devices == ("RTX_2080TI", "GTX_1080TI")
    assert theirs.latency_ms.tolist() == [[0.36, 0.54, 0.71, 1.26], [0.73, 1.06, 1.4, 2.42]]


def test_a_bom_from_a_spreadsheet_is_tolerated(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffexit,layer,latency_ms:X\n17,conv5_3,1.5\n".encode())
    assert read_exit_table(path).latency_ms("X").tolist() == [1.5]


def test_merge_two_devices(tmp_path, capsys):
    cpu = make_exit_table(
        exits=[1, 3, 4, 7, 17],
        layers=["conv1_1", "pool1", "conv2_1", "conv3_1", "conv5_3"],
        latency_ms={"cpu_1t": [1.5, 2.5, 3.5, 5.5, 24.0]},
        metadata={"source": "measured", "devices": {"cpu_1t": {"kind": "cpu"}}},
    )
    cpu_path, _ = write_exit_table(cpu, tmp_path / "cpu.csv")
    out = tmp_path / "merged.csv"
    assert merge.main([str(PAPER), str(cpu_path), "--out", str(out)]) == 0
    assert "devices RTX_2080TI, GTX_1080TI, cpu_1t" in capsys.readouterr().out
    merged = read_exit_table(out, require_sidecar=True)
    assert merged.accuracy.tolist() == [0.8, 0.85, 0.885, 0.905, 0.935]
    assert merged.latency_ms("cpu_1t").tolist() == [1.5, 2.5, 3.5, 5.5, 24.0]
    assert merged.metadata["devices"]["cpu_1t"] == {"kind": "cpu"}


def test_bad_table_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("exit,layer,accuracy,latency_ms:X\n1,conv1_1,0.5,1\n2,conv1_2,1.5,2\n")
    assert run_cli(select.main, [str(bad), "--out", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {bad} row 2 (exit 2), column 'accuracy': 1.5 is outside [0, 1]; "
        "write accuracy as a fraction (0.935, not 93.5).\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
    assert run_cli(merge.main, [str(PAPER), str(PAPER), "--out", str(tmp_path / "m.csv")]) == 2
    assert "appears in both" in capsys.readouterr().err
