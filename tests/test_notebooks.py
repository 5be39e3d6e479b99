"""The notebooks in ``notebooks/`` run top to bottom and print what the committed files hold.

Each notebook is executed with nbclient on the ``python3`` kernel (from the project's virtual
environment), with ``notebooks/`` as the working directory. The checks parse the printed output
of tagged cells and compare it with values computed here from the committed CSVs.

The notebooks are committed WITH their outputs, so that a reader browsing the repository sees
the figures. The tests check that those outputs are current: every code cell's printed text in
the committed notebook equals that of a fresh execution, and it shows as many figures (the PNG
bytes themselves depend on the matplotlib build, so they are not compared). After changing a
notebook or the files it reads, refresh the committed outputs with

    .venv/bin/python tests/test_notebooks.py        # executes both notebooks and saves them
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
RESULTS = REPO / "results"
TIMEOUT_S = 120  # per cell; each notebook runs in well under a minute


NAMES = ("exits.ipynb", "offloading.ipynb")


def execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,  # no timestamps: a re-run changes a committed notebook only if
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # what it shows changed
    )
    client.execute()  # raises CellExecutionError on the first failing cell (outputs replaced)
    return nb


def shown(nb: nbformat.NotebookNode) -> list[tuple[str, int]]:
    """(printed text, number of figures) of every code cell."""
    return [
        (stdout(c), sum("image/png" in o.get("data", {}) for o in c.get("outputs", [])))
        for c in nb.cells
        if c.cell_type == "code"
    ]


def stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def tagged(nb: nbformat.NotebookNode, tag: str) -> str:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"one cell tagged {tag!r} expected"
    return stdout(cells[0])


def figures(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def rows_of(text: str, first: str) -> list[list[str]]:
    """Whitespace-split lines of a printed table after its header line starting with ``first``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first])
    return [line.split() for line in lines[start + 1 :] if line.strip()]


@pytest.fixture(scope="module")
def exits_nb() -> nbformat.NotebookNode:
    return execute("exits.ipynb")


@pytest.fixture(scope="module")
def offloading_nb() -> nbformat.NotebookNode:
    return execute("offloading.ipynb")


@pytest.mark.parametrize("name", NAMES)
def test_committed_outputs_are_current(request, name):
    fresh = request.getfixturevalue("exits_nb" if name == "exits.ipynb" else "offloading_nb")
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert figures(committed) > 0, f"{name} is committed without outputs"
    assert shown(committed) == shown(fresh), (
        f"the committed outputs of {name} are stale: run `.venv/bin/python tests/test_notebooks.py`"
    )


def test_exits_notebook_prints_the_committed_exit_table(exits_nb):
    first = stdout(exits_nb.cells[1])
    run = REPO / re.search(r"^run: (.+)$", first, re.M).group(1).strip()
    table = pd.read_csv(run / "latency_cpu_1t" / "exit_table.csv")
    candidates = pd.read_csv(run / "latency_cpu_1t" / "candidates.csv")["exit"].tolist()
    rows = rows_of(tagged(exits_nb, "exit-table"), "exit")
    assert len(rows) == len(table) == 17
    for printed, (_, row) in zip(rows, table.iterrows(), strict=True):
        exit_, layer, acc, lat, _, cand = printed
        assert (int(exit_), layer) == (row["exit"], row["layer"])
        assert float(acc) == pytest.approx(row["accuracy"], abs=5e-5)
        assert float(lat) == pytest.approx(row["latency_ms:cpu_1t"], abs=5e-5)
        assert (cand == "True") == (row["exit"] in candidates)
    chosen = json.loads((run / "latency_cpu_1t" / "candidates.json").read_text())
    assert f"candidates: {chosen['candidates']['exits']}" in tagged(exits_nb, "candidates")
    assert figures(exits_nb) == 2


def test_exits_notebook_compares_with_every_row_of_table_one(exits_nb):
    paper = pd.read_csv(REPO / "checkpoints" / "paper_table1.csv")
    text = tagged(exits_nb, "paper-comparison")
    rows = rows_of(text, "exit")[: len(paper)]
    assert [int(r[0]) for r in rows] == paper["exit"].tolist()
    assert [float(r[2]) for r in rows] == pytest.approx(paper["accuracy"].tolist(), abs=5e-4)
    # relative latency of Table I, mean over its two GPUs, e.g. exit 1: (0.36/1.26 + 0.73/2.42)/2
    assert float(rows[0][3]) == pytest.approx((0.36 / 1.26 + 0.73 / 2.42) / 2, abs=5e-4)
    matched = sum(r[-1] == "True" for r in rows)
    assert f"matched or beaten at no more relative latency: {matched} of 5" in text


def test_offloading_notebook_prints_the_committed_results(offloading_nb):
    cells = pd.concat(
        [pd.read_csv(RESULTS / f"{n}.csv") for n in ("devices", "capacity", "fluctuation", "csi")]
    )
    ref = cells[(cells["M"] == 10) & (cells["tau_ms"] == 30)]
    means = ref.groupby(["method", "experiment"])["avg_accuracy"].mean()
    rows = {r[0]: r[1:] for r in rows_of(tagged(offloading_nb, "paper-accuracy"), "method")}
    assert set(rows) == set(ref["method"])
    for method, values in rows.items():
        for i, name in enumerate(("devices", "capacity", "fluctuation", "csi")):
            assert float(values[2 * i]) == pytest.approx(means[(method, name)], abs=5e-4)
    assert rows["GRLE"][1] == "0.77"  # the paper's Fig. 5(a) value for GRLE

    conv = pd.read_csv(RESULTS / "convergence.csv")
    last = conv[conv["slot"] > conv["slot"].max() - 500].groupby("method")["normalised_reward"]
    printed = dict(r for r in rows_of(tagged(offloading_nb, "convergence"), "method"))
    assert {k: float(v) for k, v in printed.items()} == pytest.approx(
        last.mean().to_dict(), abs=5e-5
    )

    measured = pd.read_csv(RESULTS / "measured_cpu_ref" / "cells.csv")
    text = tagged(offloading_nb, "measured")
    assert f"cells.csv: {len(measured)} rows" in text
    assert "cpu_1t+cpu_1t" in text
    assert figures(offloading_nb) == 7


if __name__ == "__main__":  # refresh the committed outputs (see the module docstring)
    for notebook in NAMES:
        nbformat.write(execute(notebook), NOTEBOOKS / notebook)
        print(f"executed and saved notebooks/{notebook}")
