"""The experiment figures in the paper's layout (Figs. 4–8 and the topology figure).

Each ``figure_*`` function returns a matplotlib ``Figure`` (a bare Figure renders with Agg: no
display, no pyplot state), so tests read what it shows — title, axis labels, legend entries,
lines — before :func:`save_figure` writes it. Every title says what produced the figure: the
exit table, the compute scale, M, τ, seeds and slots, and the run (output folder). Legends sit
outside the data, and distinguish τ = 10 ms from τ = 30 ms by line style and marker fill as well
as the method's colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from grle_common.fileio import atomic_write
from offload.experiments.report import PAPER_ACCURACY, summarise

METHOD_STYLE = {
    "GRLE": ("tab:red", "o"),
    "GRLE+": ("tab:purple", "P"),
    "GRL": ("tab:orange", "s"),
    "DROOE": ("tab:blue", "^"),
    "DROO": ("tab:cyan", "v"),
    "greedy": ("tab:gray", "x"),
    "greedy-main": ("tab:brown", "+"),
    "optimum": ("k", "*"),
    "random": ("tab:olive", "D"),
}
METRICS = (
    ("avg_accuracy", "Average accuracy"),
    ("ssp", "Service success probability"),
    ("throughput", "Average throughput (tasks/s)"),
)
TAU_STYLE = {30.0: "-", 10.0: "--"}  # the paper's figures: solid τ = 30 ms, dashed τ = 10 ms


def _style(method: str) -> tuple[str, str]:
    return METHOD_STYLE.get(method, ("k", "."))


def _values(values) -> str:  # noqa: ANN001 - any iterable of numbers
    """``4, 6, …, 14`` style list of the distinct values, in numeric order."""
    return ", ".join(f"{v:g}" for v in sorted({float(v) for v in values}))


def provenance_line(rows: pd.DataFrame, exit_table: str, run: str) -> str:
    """The second title line: exit table, compute scale, seeds, slots and the run."""
    scales = _values(rows["compute_scale"]) if "compute_scale" in rows else "?"
    seeds = sorted(int(s) for s in rows["seed"].unique())
    parts = [f"exit table {exit_table}", f"compute scale ×{scales}", f"seeds {seeds}"]
    if "eval_slots" in rows and (rows["eval_slots"] > 0).any():
        parts.append(f"{int(rows['eval_slots'].max()):,} evaluation slots")
    return "; ".join(parts) + f"; run {run}"


def title_with_provenance(
    fig: Figure, what: str, rows: pd.DataFrame, *, exit_table: str, run: str, size: float = 10
) -> None:
    """The figure's title: ``what`` it shows, then :func:`provenance_line` of ``rows`` (``size``:
    font size, points)."""
    fig.suptitle(what + "\n" + provenance_line(rows, exit_table, run), fontsize=size)


def _line_style(tau: float) -> str:
    return TAU_STYLE.get(float(tau), ":")


def _errorbar_vs_m(ax: Axes, summary: pd.DataFrame, method: str, **style: Any) -> None:
    """One line of ``method`` (its colour and marker): mean ± 95% CI against M, from the rows of
    :func:`~offload.experiments.report.summarise`."""
    color, marker = _style(method)
    ax.errorbar(
        summary["M"],
        summary["mean"],
        yerr=summary["ci95"],
        color=color,
        marker=marker,
        capsize=3,
        **style,
    )


def _axes_vs_m(ax: Axes, xlabel: str, ylabel: str, devices: pd.Series, top: float | None) -> None:
    """Labels, one tick per M in ``devices``, a light grid, and the view clipped to [0, ``top``]
    (a CI over few seeds can reach past the metric's range; clip the view, not the data)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(sorted(devices.unique()))
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0.0, top=top)


def figure_scenario(rows: pd.DataFrame, experiment: str, *, exit_table: str, run: str) -> Figure:
    """Figs. 5–8 layout: (a) accuracy, (b) SSP, (c) throughput vs M, one line per (method, τ).

    τ = 30 ms: solid line, filled marker; τ = 10 ms: dashed line, open marker (in the legend too).
    """
    fig = Figure(figsize=(15, 5.2), dpi=120)
    axes = fig.subplots(1, 3)
    for ax, (metric, label) in zip(axes, METRICS, strict=True):
        s = summarise(rows, ["method", "tau_ms", "M"], metric)
        for (method, tau), grp in s.groupby(["method", "tau_ms"]):
            _errorbar_vs_m(
                ax,
                grp,
                method,
                markerfacecolor=_style(method)[0] if tau >= 30 else "white",
                linestyle=_line_style(tau),
                label=f"{method}, τ = {tau:g} ms",
            )
        top = 1.02 if metric != "throughput" else None
        _axes_vs_m(ax, "No. of IoT devices M", label, rows["M"], top)
    handles = [
        Line2D(
            [],
            [],
            color=_style(method)[0],
            marker=_style(method)[1],
            markerfacecolor=_style(method)[0] if tau >= 30 else "white",
            linestyle=_line_style(tau),
            label=f"{method}, τ = {tau:g} ms",
        )
        for method in sorted(rows["method"].unique(), key=list(METHOD_STYLE).index)
        for tau in sorted(rows["tau_ms"].unique(), reverse=True)
    ]
    _legend_below(fig, handles, ncol=len(handles) // max(1, rows["tau_ms"].nunique()))
    scenario = int(rows["scenario"].iloc[0])
    figure = PAPER_ACCURACY.get(experiment, {}).get("figure", "")
    what = (
        f"{experiment} (scenario {scenario}, paper {figure} layout): M = {_values(rows['M'])}, "
        f"τ = {_values(rows['tau_ms'])} ms, mean ± 95% CI over seeds"
    )
    title_with_provenance(fig, what, rows, exit_table=exit_table, run=run)
    return fig


def _legend_below(fig: Figure, handles: list, *, ncol: int) -> None:
    """One legend for the whole figure, below the panels (outside the data); long handles so
    that line styles are told apart."""
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.02),
        ncol=ncol,
        fontsize=8,
        handlelength=3.5,
        frameon=False,
    )


def figure_convergence(curves: pd.DataFrame, *, exit_table: str, run: str) -> Figure:
    """Fig. 4 layout: moving-average normalised reward and training loss vs time slot."""
    fig = Figure(figsize=(12, 4.8), dpi=120)
    a, b = fig.subplots(1, 2)
    styles = ("-", "--", ":", "-.")
    for method, grp in curves.groupby("method"):
        color, _ = _style(method)
        for i, (seed, g) in enumerate(grp.groupby("seed")):
            ls = styles[i % len(styles)]
            kw = {"color": color, "alpha": 0.85, "linestyle": ls, "label": f"{method}, seed {seed}"}
            a.plot(g["slot"], g["moving_average"], **kw)
            lg = g.dropna(subset=["train_loss"])
            b.plot(lg["slot"], lg["train_loss"], **kw)
    a.axhline(0.96, color="k", lw=0.8, ls=":", label="paper: GRLE 0.96")
    a.set_xlabel("Time slot")
    a.set_ylabel("Moving average of normalised reward (50 slots)")
    b.set_xlabel("Time slot")
    b.set_ylabel("Training loss (eq. 16)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    handles, _ = a.get_legend_handles_labels()
    _legend_below(fig, handles, ncol=min(len(handles), 7))
    what = (
        f"convergence (paper Fig. 4 layout, scenario 1): M = {_values(curves['M'])}, "
        f"τ = {_values(curves['tau_ms'])} ms, {int(curves['slot'].max()):,} training slots"
    )
    title_with_provenance(fig, what, curves, exit_table=exit_table, run=run)
    return fig


def figure_topology(rows: pd.DataFrame, *, exit_table: str, run: str) -> Figure:
    """Average accuracy vs evaluation M for agents trained at one M (DROO types only there)."""
    fig = Figure(figsize=(7.5, 5.0), dpi=120)
    ax = fig.subplots()
    fixed = rows[rows["network"] != "dynamic"].dropna(subset=["avg_accuracy"])
    s = summarise(fixed, ["method", "M"], "avg_accuracy")
    for method, grp in s.groupby("method"):
        _errorbar_vs_m(ax, grp, method, label=method)
    train_m = int(rows["train_M"].iloc[0])
    ax.axvline(train_m, color="k", ls=":", lw=0.8, label=f"training M = {train_m}")
    _axes_vs_m(ax, "No. of IoT devices M at evaluation", "Average accuracy", fixed["M"], 1.02)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    what = (
        f"topology (scenario {int(rows['scenario'].iloc[0])}): trained at M = {train_m}, "
        f"evaluated at M = {_values(fixed['M'])}, τ = {_values(rows['tau_ms'])} ms"
    )
    title_with_provenance(fig, what, rows, exit_table=exit_table, run=run, size=9)
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Save as PNG (everything inside the saved area: legends below or beside the axes)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight"))
