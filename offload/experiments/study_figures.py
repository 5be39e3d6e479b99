"""Figures of the studies of the paper's actor: exit usage, the ablation and the regime map
(heat maps).

Like :mod:`offload.experiments.figures`, each function returns a bare matplotlib ``Figure``
whose title says what produced it; :func:`~offload.experiments.figures.save_figure` writes it.
"""

from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from offload.experiments.figures import title_with_provenance
from offload.experiments.study_report import exit_columns

_EXIT_COLOURS = ("tab:green", "tab:olive", "tab:cyan", "tab:blue", "tab:purple", "tab:pink")


def figure_usage(rows: pd.DataFrame, *, exit_table: str, run: str, m_ref: int = 10) -> Figure:
    """Stacked bars: share of tasks per exit for each method (mean over seeds), one panel per
    scenario (columns) and τ (rows) at the M closest to ``m_ref``."""
    cols = exit_columns(rows)
    m = int(min(rows["M"].dropna().unique(), key=lambda v: (abs(v - m_ref), v)))
    at = rows[rows["M"] == m]
    scenarios = list(dict.fromkeys(at.sort_values("scenario")["experiment"]))
    taus = sorted(at["tau_ms"].unique())
    fig = Figure(
        figsize=(3.4 * len(scenarios) + 0.6, 3.2 * len(taus) + 1.2), dpi=120, layout="constrained"
    )
    axes = np.array(fig.subplots(len(taus), len(scenarios), squeeze=False, sharey=True))
    for (i, tau), (j, experiment) in product(enumerate(taus), enumerate(scenarios)):
        ax = axes[i, j]
        part = at[(at["experiment"] == experiment) & (at["tau_ms"] == tau)]
        means = part.groupby("method")[cols].mean()
        bottom = np.zeros(len(means))
        for k, col in enumerate(cols):
            ax.bar(
                means.index,
                means[col],
                bottom=bottom,
                color=_EXIT_COLOURS[k % len(_EXIT_COLOURS)],
                label=f"exit {col.rsplit('_', 1)[1]}",
            )
            bottom += means[col].to_numpy()
        ax.set_title(f"{experiment}, τ = {tau:g} ms", fontsize=9)
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.set_ylim(0, 1.0)
    for ax in axes[:, 0]:
        ax.set_ylabel("Share of tasks")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(cols))
    title_with_provenance(
        fig, f"Exit usage at M = {m} (mean over seeds)", at, exit_table=exit_table, run=run
    )
    return fig


def figure_ablation(rows: pd.DataFrame, *, exit_table: str, run: str) -> Figure:
    """Horizontal bars of mean Q per ablation policy (± 95 % CI), one panel per (scenario, M, τ)."""
    from offload.experiments import stats  # noqa: PLC0415 - keeps this module's imports light

    keys = sorted({tuple(k) for k in rows[["scenario", "M", "tau_ms"]].to_numpy().tolist()})
    ncols = min(4, len(keys))  # a grid, so that eight panels stay readable
    nrows = -(-len(keys) // ncols)
    fig = Figure(figsize=(3.6 * ncols + 1.2, 3.4 * nrows + 0.8), dpi=120, layout="constrained")
    grid = np.array(fig.subplots(nrows, ncols, sharey=True, squeeze=False))
    axes = grid.ravel()
    order = list(dict.fromkeys(rows["method"]))
    # the paper's method and its variants in red, the references in blue, the rest grey
    colour = [
        "tab:red" if m.startswith(("GRLE", "actor")) else
        "tab:blue" if m.startswith(("greedy", "optimum")) else "tab:gray"
        for m in order
    ]  # fmt: skip
    for ax, (scenario, m, tau) in zip(axes, keys, strict=False):
        part = rows[(rows["scenario"] == scenario) & (rows["M"] == m) & (rows["tau_ms"] == tau)]
        s = stats.summarise(part, ["method"], "mean_q").set_index("method").reindex(order)
        ax.barh(order, s["mean"], xerr=s["ci_half"].fillna(0.0), color=colour, capsize=3)
        ax.set_title(f"scenario {int(scenario)}, M = {int(m)}, τ = {tau:g} ms", fontsize=9)
        ax.set_xlabel("Mean Q per slot (eq. 9)")
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    axes[0].invert_yaxis()  # report order from the top; the y axis is shared, so invert it once
    what = "Ablation on the same evaluation slots (mean ± 95% CI over seeds)"
    title_with_provenance(fig, what, rows, exit_table=exit_table, run=run)
    return fig


def figure_regime(rows: pd.DataFrame, *, exit_table: str, run: str) -> Figure:
    """Heat maps (compute scale × reward variant) per τ: GRLE − greedy accuracy, greedy −
    greedy-main accuracy (what exits pay) and GRLE's exit-1 share, means over seeds."""
    rows = rows.assign(
        variant=[
            "on-time" if f == "on_time" else f"k={k:g}"
            for f, k in zip(rows["reward_form"], rows["psi_steepness"], strict=True)
        ]
    )
    cols = exit_columns(rows)
    maps = [
        ("GRLE − greedy, avg accuracy", ("GRLE", "greedy", "avg_accuracy"), "RdBu"),
        ("greedy − greedy-main, avg accuracy", ("greedy", "greedy-main", "avg_accuracy"), "RdBu"),
    ]
    if cols:
        maps.append(("GRLE exit-1 share", ("GRLE", None, cols[0]), "viridis"))
    taus = sorted(rows["tau_ms"].unique())
    fig = Figure(figsize=(4.8 * len(maps), 3.6 * len(taus) + 0.9), dpi=120, layout="constrained")
    axes = np.array(fig.subplots(len(taus), len(maps), squeeze=False))
    variants = list(dict.fromkeys(rows["variant"]))
    scales = sorted(rows["compute_scale"].unique())
    for i, tau in enumerate(taus):
        at = rows[rows["tau_ms"] == tau]
        means = at.groupby(["method", "variant", "compute_scale"]).mean(numeric_only=True)
        for j, (title, (a, b, value), cmap) in enumerate(maps):
            grid = np.full((len(variants), len(scales)), np.nan)
            for r, v in enumerate(variants):
                for c, s in enumerate(scales):
                    x = means[value].get((a, v, s), np.nan)
                    y = 0.0 if b is None else means[value].get((b, v, s), np.nan)
                    grid[r, c] = x - y
            ax = axes[i, j]
            lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
            kw = {"vmin": -lim, "vmax": lim} if cmap == "RdBu" else {"vmin": 0.0, "vmax": 1.0}
            image = ax.imshow(grid, cmap=cmap, aspect="auto", **kw)
            for (r, c), val in np.ndenumerate(grid):
                if np.isfinite(val):  # white on the dark ends of each colour map
                    dark = abs(val) > 0.6 * lim if b else val < 0.45
                    text = f"{val:+.2f}" if b else f"{val:.2f}"
                    colour = "white" if dark else "black"
                    ax.text(c, r, text, ha="center", va="center", fontsize=7, color=colour)
            ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales])
            ax.set_yticks(range(len(variants)), variants)
            ax.set_xlabel("compute scale")
            ax.set_title(f"{title}, τ = {tau:g} ms", fontsize=9)
            fig.colorbar(image, ax=ax, shrink=0.8)
    what = (
        f"Regime map, scenario {int(rows['scenario'].iloc[0])}, M = {int(rows['M'].iloc[0])} "
        "(mean over seeds)"
    )
    title_with_provenance(fig, what, rows, exit_table=exit_table, run=run)
    return fig
