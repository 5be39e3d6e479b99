"""What the exit figure shows, read from the matplotlib objects: a title naming the run (or the
transcribed table) and the data copy, one label per exit with no two overlapping and none
outside the axes, and an x label that calls a median a median only when it was measured."""

from __future__ import annotations

import itertools
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Annotation

from profiling.figure import exits_figure
from profiling.table import read_exit_table

REPO = Path(__file__).resolve().parents[2]
CPU = REPO / "checkpoints" / "vgg16_cpu_ref" / "latency_cpu_1t" / "exit_table.csv"
PAPER = REPO / "checkpoints" / "paper_table1.csv"


def _labels(fig):
    (ax,) = fig.axes
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    notes = [c for c in ax.get_children() if isinstance(c, Annotation)]
    return ax, renderer, notes


def test_measured_table_figure_names_run_and_data_and_labels_every_exit_readably():
    table = read_exit_table(CPU)
    fig = exits_figure(table, candidates=[1, 4, 7, 11, 17])
    ax, renderer, notes = _labels(fig)
    title = ax.get_title()
    assert "run checkpoints/vgg16_cpu_ref" in title
    assert "accuracy on CIFAR-10 (JPEG copy) cifar10_jpeg.npz sha256:f6a62fbe121d…" in title
    assert ax.get_xlabel() == "latency on cpu_1t (ms, median of 200 calls)"
    assert ax.get_ylabel() == "top-1 accuracy"
    assert sorted(int(n.get_text()) for n in notes) == list(range(1, 18))
    boxes = [n.get_window_extent(renderer) for n in notes]
    inside = ax.get_window_extent(renderer)
    for box in boxes:  # exit 17's label is not clipped by the axes
        assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
    for a, b in itertools.combinations(range(len(boxes)), 2):  # exits 9 and 10 sit 0.3 ms apart
        assert not boxes[a].overlaps(boxes[b]), (notes[a].get_text(), notes[b].get_text())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["exit", "candidate"]
    assert len(ax.get_lines()) == 3  # exits, candidate circles, the step curve


def test_transcribed_table_is_not_called_a_median():
    fig = exits_figure(read_exit_table(PAPER), source="checkpoints/paper_table1.csv")
    ax, _, notes = _labels(fig)
    assert "median" not in ax.get_xlabel()
    assert ax.get_xlabel() == (
        "latency on RTX_2080TI (ms, as transcribed; the timing mode is not stated)"
    )
    assert "transcribed table checkpoints/paper_table1.csv" in ax.get_title()
    assert "accuracy on CIFAR-10 (original), per the paper" in ax.get_title()
    assert [n.get_text() for n in notes] == ["1", "3", "4", "7", "17"]
