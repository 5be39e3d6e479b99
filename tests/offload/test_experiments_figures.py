"""What the experiment figures show, read from the matplotlib objects before saving: titles that
name the exit table, compute scale, M, τ and run; axis labels; one line per (method, τ); a
legend outside the data whose τ = 10 and τ = 30 ms entries differ in line style and marker fill
as well as sharing the method's colour."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from offload.experiments import figures

METHODS = ("GRLE", "GRL", "DROOE", "DROO", "greedy", "random")


def scenario_rows() -> pd.DataFrame:
    rows = []
    for i, (method, m, tau, seed) in enumerate(
        itertools.product(METHODS, (4, 10, 12), (10.0, 30.0), (0, 1))
    ):
        acc = 0.3 + 0.01 * (i % 40)
        rows.append(
            {
                "experiment": "capacity",
                "method": method,
                "scenario": 2,
                "compute_scale": 4.0,
                "M": m,
                "tau_ms": tau,
                "seed": seed,
                "avg_accuracy": acc,
                "ssp": acc + 0.1,
                "throughput": 100.0 * m,
                "mean_q": 1.0,
                "eval_slots": 500,
            }
        )
    return pd.DataFrame(rows)


def _boxes(fig):
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    return renderer


def test_scenario_figure_shows_what_produced_it_and_a_readable_legend():
    fig = figures.figure_scenario(
        scenario_rows(), "capacity", exit_table="checkpoints/paper_table1.csv", run="runs/x"
    )
    title = fig.get_suptitle()
    assert "capacity (scenario 2, paper Fig. 6 layout): M = 4, 10, 12, τ = 10, 30 ms" in title
    assert "exit table checkpoints/paper_table1.csv; compute scale ×4; seeds [0, 1]" in title
    assert "500 evaluation slots; run runs/x" in title
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == [
        "Average accuracy",
        "Service success probability",
        "Average throughput (tasks/s)",
    ]
    assert {ax.get_xlabel() for ax in axes} == {"No. of IoT devices M"}
    for ax in axes:
        assert len(ax.containers) == 12  # one error-bar line per (method, τ)
        assert [t for t in ax.get_xticks()] == [4, 10, 12]  # numeric M, in order
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [f"{m}, τ = {t} ms" for m in METHODS for t in (30, 10)]
    handles = dict(zip(labels, legend.legend_handles, strict=True))
    for m in METHODS:
        slow, fast = handles[f"{m}, τ = 30 ms"], handles[f"{m}, τ = 10 ms"]
        assert slow.get_color() == fast.get_color()
        assert (slow.get_linestyle(), fast.get_linestyle()) == ("-", "--")
        assert slow.get_markerfacecolor() != fast.get_markerfacecolor()
    renderer = _boxes(fig)
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in axes)


def test_convergence_and_topology_figures():
    slots = np.arange(1, 61)
    curves = pd.concat(
        pd.DataFrame(
            {
                "method": method,
                "compute_scale": 4.0,
                "M": 10,
                "tau_ms": 30.0,
                "seed": seed,
                "slot": slots,
                "normalised_reward": 0.9,
                "moving_average": 0.9 - 0.1 / slots,
                "train_loss": np.where(slots % 10 == 0, 0.2, np.nan),
            }
        )
        for method in ("GRLE", "DROOE")
        for seed in (0, 1)
    )
    fig = figures.figure_convergence(curves, exit_table="t.csv", run="results")
    assert fig.get_suptitle().startswith(
        "convergence (paper Fig. 4 layout, scenario 1): M = 10, τ = 30 ms, 60 training slots\n"
        "exit table t.csv; compute scale ×4; seeds [0, 1]; run results"
    )
    a, b = fig.axes
    assert a.get_ylabel() == "Moving average of normalised reward (50 slots)"
    assert b.get_ylabel() == "Training loss (eq. 16)"
    assert len(a.get_lines()) == 5 and len(b.get_lines()) == 4  # 4 curves (+ the paper's 0.96)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "DROOE, seed 0",
        "DROOE, seed 1",
        "GRLE, seed 0",
        "GRLE, seed 1",
        "paper: GRLE 0.96",
    ]

    topo = pd.DataFrame(
        [
            {
                "method": method,
                "scenario": 2,
                "compute_scale": 1.0,
                "network": f"M={m}",
                "M": m,
                "train_M": 10,
                "tau_ms": 30.0,
                "seed": 0,
                "avg_accuracy": 0.5 if method != "DROO" or m == 10 else np.nan,
                "eval_slots": 100,
            }
            for method in ("GRLE", "DROO")
            for m in (4, 10, 20)
        ]
    )
    fig = figures.figure_topology(topo, exit_table="t.csv", run="r")
    assert "trained at M = 10, evaluated at M = 4, 10, 20, τ = 30 ms" in fig.get_suptitle()
    (ax,) = fig.axes
    assert ax.get_ylim() == pytest.approx((0.0, 1.02))
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["training M = 10", "DROO", "GRLE"]
    renderer = _boxes(fig)
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
