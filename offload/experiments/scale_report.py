"""The scale experiment's figures and report section, computed from ``scale.csv``
alone: quality against M, decision time against M on log–log axes with the fitted slope of
every method, and the findings (every number read from the table)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from offload.experiments.figures import METHOD_STYLE, _legend_below, title_with_provenance
from offload.experiments.report import markdown_table
from offload.experiments.scale import REPAIR_SUFFIX

_STYLE = {
    **METHOD_STYLE,
    "GRLE-MLP": ("tab:green", "d"),
    "local search": ("k", "*"),
}
_QUALITY = (
    ("avg_accuracy", "Average accuracy"),
    ("ssp", "Service success probability"),
    ("q_over_bound", "Predicted Q / upper bound"),
)
#: learners in the table: those with an actor time
_LEARNER = "actor_ms"


def _order(rows: pd.DataFrame) -> list[str]:
    """Methods in the CSV's order (learners first, as the jobs were built)."""
    return list(dict.fromkeys(rows["method"]))


def _style(method: str) -> tuple[str, str, str]:
    """(colour, marker, line style): learners solid, their "+repair" rows dash-dotted in the
    learner's colour, references dashed."""
    base = method.removesuffix(REPAIR_SUFFIX)
    colour, marker = _STYLE.get(base, ("k", "."))
    if base != method:
        return colour, "v", "-."
    return colour, marker, "-" if method.startswith("GRLE") else "--"


def slope(ms: pd.Series, devices: pd.Series) -> float:
    """Least-squares slope of log(time) against log(M) (time ~ M^slope); NaN with < 2 M."""
    ok = np.isfinite(ms) & (ms > 0)
    if ok.sum() < 2 or devices[ok].nunique() < 2:
        return float("nan")
    return float(np.polyfit(np.log(devices[ok]), np.log(ms[ok]), 1)[0])


def by_m(rows: pd.DataFrame, column: str, how: str = "mean") -> pd.DataFrame:
    """``column`` per (method, M) over every N and seed: mean, or median (times)."""
    return rows.groupby(["method", "M"], sort=False)[column].agg(how).reset_index()


def figure_scale(rows: pd.DataFrame, *, exit_table: str, run: str) -> Figure:
    """Quality against M (log axis): one panel per measure, mean over N and seeds."""
    fig = Figure(figsize=(13, 4.2), dpi=120, layout="constrained")
    axes = fig.subplots(1, len(_QUALITY))
    for ax, (col, label) in zip(axes, _QUALITY, strict=True):
        for method in _order(rows):
            part = by_m(rows[rows["method"] == method], col)
            colour, marker, line = _style(method)
            ax.plot(part["M"], part[col], color=colour, marker=marker, linestyle=line)
        ax.set_xscale("log")
        ax.set_xlabel("Devices M (log scale)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=c, marker=mk, linestyle=ls, label=m)
        for m in _order(rows)
        for c, mk, ls in [_style(m)]
    ]
    _legend_below(fig, handles, ncol=len(handles))
    servers = ", ".join(str(n) for n in sorted(rows["N"].unique()))
    title_with_provenance(
        fig,
        f"City networks: quality against M (mean over N = {servers} and seeds)",
        rows,
        exit_table=exit_table,
        run=run,
    )
    return fig


def figure_scale_time(rows: pd.DataFrame, *, exit_table: str, run: str) -> Figure:
    """Decision time per slot against M, log–log, median over N and seeds, with each method's
    fitted slope in the legend; the learners' encoder + actor alone dotted (once per actor)."""
    fig = Figure(figsize=(8, 5.2), dpi=120, layout="constrained")
    ax = fig.subplots()
    handles = []
    for method in _order(rows):
        colour, marker, line = _style(method)
        part = rows[rows["method"] == method]
        for col, what, style in (("decision_ms", "", line), (_LEARNER, " actor", ":")):
            med = by_m(part, col, "median").dropna()
            if med.empty or (what and method.endswith(REPAIR_SUFFIX)):  # its actor: drawn
                continue
            s = slope(med[col], med["M"])
            (h,) = ax.plot(
                med["M"],
                med[col],
                color=colour,
                marker=marker,
                linestyle=style,
                label=f"{method}{what} (slope {s:.2f})",
            )
            handles.append(h)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Devices M (log scale)")
    ax.set_ylabel("Decision time per slot, ms (median, log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    title_with_provenance(
        fig, "Decision time against M (one core)", rows, exit_table=exit_table, run=run, size=9
    )
    return fig


def scale_section(rows: pd.DataFrame) -> list[str]:
    """Markdown: the findings, then per method and M the measures (mean over N and seeds, times
    as medians) and the fitted slopes."""
    methods = _order(rows)
    out = ["## Scale: city networks up to M = 1,000 devices", ""]
    out += _findings(rows)
    head = ["method", "M", "avg accuracy", "SSP", "mean Q (true)", "Q / bound",
            "decision ms", "actor ms"]  # fmt: skip
    body = []
    for method in methods:
        part = rows[rows["method"] == method]
        for m, grp in part.groupby("M"):
            actor = grp["actor_ms"].median()
            body.append([
                method, f"{m:g}", f"{grp['avg_accuracy'].mean():.3f}", f"{grp['ssp'].mean():.3f}",
                f"{grp['mean_q'].mean():.2f}", f"{grp['q_over_bound'].mean():.3f}",
                f"{grp['decision_ms'].median():.1f}", "–" if np.isnan(actor) else f"{actor:.1f}",
            ])  # fmt: skip
    servers = ", ".join(str(n) for n in sorted(rows["N"].unique()))
    out += [
        f"Per method and M, mean over N = {servers} and the seeds; times: median over them of "
        "each run's median decision time per slot (one core, wall clock):",
        "",
        *markdown_table(head, body),
        "",
        "Fitted slopes (decision time ~ M^slope, least squares on the medians per M):",
        "",
    ]
    slopes = []
    for method in methods:
        part = rows[rows["method"] == method]
        dec = by_m(part, "decision_ms", "median")
        act = by_m(part, _LEARNER, "median").dropna()
        s_act = slope(act[_LEARNER], act["M"]) if len(act) else float("nan")
        slopes.append(
            [method, f"{slope(dec['decision_ms'], dec['M']):.2f}",
             "–" if np.isnan(s_act) else f"{s_act:.2f}"]
        )  # fmt: skip
    out += markdown_table(["method", "decision slope", "actor slope"], slopes)
    m_max = rows["M"].max()
    at = rows[rows["M"] == m_max]
    servers = sorted(at["N"].unique())
    q = at.pivot_table(index="method", columns="N", values="q_over_bound", aggfunc="mean")
    ms = at.pivot_table(index="method", columns="N", values="decision_ms", aggfunc="median")
    out += [
        "",
        f"At M = {m_max:g}, per N (mean over the seeds): predicted Q / bound and the median "
        "decision ms per slot:",
        "",
        *markdown_table(
            ["method", *(f"N = {n:g}" for n in servers)],
            [
                [method, *(f"{q.loc[method, n]:.3f} ({ms.loc[method, n]:.0f} ms)" for n in servers)]
                for method in methods
                if method in q.index
            ],
        ),
    ]
    out += ["", "![quality against M](scale.png)", "", "![time against M](scale_time.png)", ""]
    return out


def _findings(rows: pd.DataFrame) -> list[str]:
    """Findings read off the table: at the largest M, the ranking by Q / bound, the best
    learner against the greedy, and the times."""
    m_max = rows["M"].max()
    at = rows[rows["M"] == m_max]
    q = at.groupby("method", sort=False)["q_over_bound"].mean().sort_values(ascending=False)
    ms = at.groupby("method", sort=False)["decision_ms"].median()
    acc = at.groupby("method", sort=False)["avg_accuracy"].mean()
    learners = [m for m in q.index if rows.loc[rows["method"] == m, _LEARNER].notna().any()]
    lines = [
        f"- At M = {m_max:g} (mean over N and seeds), predicted Q / bound: "
        + ", ".join(f"{m} {v:.3f}" for m, v in q.items())
        + "."
    ]
    n_max = at["N"].max()
    dense = at[at["N"] == n_max].groupby("method", sort=False)["q_over_bound"].mean()
    lines.append(
        f"- At M = {m_max:g} and N = {n_max:g} ({m_max / n_max:g} devices per ES): "
        + ", ".join(f"{m} {v:.3f}" for m, v in dense.sort_values(ascending=False).items())
        + "."
    )
    if learners and "greedy" in q:
        best = learners[0]
        lines.append(
            f"- The best learner there, {best}, reaches {q[best] / q['greedy']:.3f} of the "
            f"greedy's Q / bound (average accuracy {acc[best]:.3f} against {acc['greedy']:.3f}) "
            f"in {ms[best]:.1f} ms per slot against the greedy's {ms['greedy']:.1f} ms "
            f"({ms[best] / ms['greedy']:.2f}× the greedy's time)."
        )
    if "local search" in q and "greedy" in q:
        lines.append(
            f"- The local search from the greedy adds {q['local search'] - q['greedy']:+.3f} "
            f"Q / bound over the greedy for {ms['local search']:.1f} ms per slot."
        )
    dec = by_m(rows, "decision_ms", "median")
    slopes = {m: slope(g["decision_ms"], g["M"]) for m, g in dec.groupby("method", sort=False)}
    lines.append(
        "- Decision time slopes against M: "
        + ", ".join(f"{m} {s:.2f}" for m, s in slopes.items())
        + "."
    )
    return ["### Findings (computed from scale.csv)", "", *lines, ""]
