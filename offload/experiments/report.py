"""The Markdown report beside the paper's numbers (the figures: :mod:`offload.experiments.figures`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from grle_common.fileio import atomic_write
from offload.experiments import stats

#: Section VI-D: average accuracy at M = 10, τ = 30 ms (None: not quoted)
PAPER_ACCURACY = {
    "devices": {"figure": "Fig. 5(a)", "GRLE": 0.77, "GRL": 0.60, "DROOE": 0.72, "DROO": 0.58},
    "capacity": {"figure": "Fig. 6", "GRLE": 0.56, "GRL": 0.20, "DROOE": 0.41, "DROO": 0.18},
    "fluctuation": {"figure": "Fig. 7", "GRLE": 0.60, "GRL": 0.21, "DROOE": 0.43, "DROO": None},
    "csi": {"figure": "Fig. 8", "GRLE": 0.58, "GRL": 0.17, "DROOE": 0.40, "DROO": None},
}
PAPER_CONVERGENCE = {"GRLE": 0.96}  # Fig. 4: moving average of the normalised reward exceeds 0.96
PAPER_LOSS = 0.03  # Fig. 4: GRLE's training loss falls below 0.03
#: docs/calibration.md: compute_scale = 4 was fitted to one paper number, GRL ≈ 0.60 in Fig. 5(a)
FITTED = {"compute_scale": 4.0, "experiment": "devices", "method": "GRL"}


def ci_text(values: pd.Series) -> str:
    """ "mean ± 95 % CI half-width" over seeds (stats.mean_ci), "–" when no value is a number."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    return stats.format_ci(stats.mean_ci(v)) if len(v) else "–"


def paper_value(experiment: str, method: str, compute_scale: float) -> str:
    """The paper's accuracy in brackets where the comparison is fair (a method the paper ran,
    at M = 10, τ = 30 ms), marked "fitted" where the compute scale was fitted to that number."""
    value = PAPER_ACCURACY.get(experiment, {}).get(method)
    if value is None:
        return "–"
    fitted = (
        compute_scale == FITTED["compute_scale"]
        and experiment == FITTED["experiment"]
        and method == FITTED["method"]
    )
    return f"[{value:.2f}, fitted]" if fitted else f"[{value:.2f}]"


_T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean (Student t; 0 for one value)."""
    v = values.dropna().to_numpy()
    if len(v) < 2:
        return 0.0
    return _T95.get(len(v), 1.96) * float(np.std(v, ddof=1)) / math.sqrt(len(v))


def summarise(rows: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Mean and 95% CI of ``metric`` over seeds for each ``keys`` group."""
    g = rows.groupby(keys, dropna=False)[metric]
    return pd.DataFrame({"mean": g.mean(), "ci95": g.apply(ci95), "n": g.count()}).reset_index()


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: ``head``, the rule under it, one line per row of cells."""
    return [_table_line(head), "| --- " * len(head) + "|", *(_table_line(r) for r in rows)]


def _table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def scenario_section(rows: pd.DataFrame, experiment: str) -> list[str]:
    """Markdown: our numbers at M = 10, τ = 30 ms beside the paper's, then all M."""
    paper = PAPER_ACCURACY[experiment]
    out = [
        f"### {experiment} (scenario {int(rows['scenario'].iloc[0])}, paper {paper['figure']})",
        "",
    ]
    # the paper quotes M = 10; without it, the M closest to 10 (labelled)
    m_ref = int(min(rows["M"].unique(), key=lambda m: (abs(m - 10), m)))
    at = rows[(rows["M"] == m_ref) & (rows["tau_ms"] == 30)]
    if len(at):
        note = (
            "" if m_ref == 10 else " — **not the paper's M = 10**, which this run did not include"
        )
        out += [
            f"M = {m_ref}, τ = 30 ms (mean ± 95% CI over seeds){note}:",
            "",
            "| method | avg accuracy (ours) | [paper] | SSP (ours) | throughput (ours, tasks/s) "
            "| mean Q per slot (ours, eq. 9) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        means = {}
        scale = float(at["compute_scale"].iloc[0]) if "compute_scale" in at else 1.0
        for method, grp in at.groupby("method", sort=False):
            means[method] = grp["avg_accuracy"].mean()
            out.append(
                f"| {method} | {ci_text(grp['avg_accuracy'])} "
                f"| {paper_value(experiment, method, scale) if m_ref == 10 else '–'} "
                f"| {ci_text(grp['ssp'])} | {ci_text(grp['throughput'])} "
                f"| {ci_text(grp['mean_q'])} |"
            )
        if scale == FITTED["compute_scale"] and experiment == FITTED["experiment"]:
            out += [
                "",
                f"[…, fitted]: compute scale {scale:g} was fitted to this paper number "
                "(docs/calibration.md), so it is not a prediction; the other bracketed paper "
                "values are predicted under that scale.",
            ]
        out += ["", "| ratio | ours | paper |", "| --- | --- | --- |"]
        for a, b in (("GRLE", "GRL"), ("GRLE", "DROOE"), ("DROOE", "DROO")):
            if a in means and b in means and paper.get(a) and paper.get(b):
                ours = means[a] / means[b] if means[b] > 0 else float("nan")
                out.append(f"| {a} / {b} | {ours:.2f}× | {paper[a] / paper[b]:.2f}× |")
        out.append("")
    for tau in sorted(rows["tau_ms"].unique()):
        at_tau = rows[rows["tau_ms"] == tau]
        pivot = at_tau.groupby(["method", "M"])["avg_accuracy"].apply(ci_text).unstack("M")
        out += [f"Average accuracy, τ = {tau:g} ms (mean ± 95% CI over seeds):", ""]
        head = ["method", *(f"M={m}" for m in pivot.columns)]
        out += markdown_table(head, ([method, *map(str, r)] for method, r in pivot.iterrows()))
        out.append("")
    out += [f"![{experiment}]({experiment}.png)", ""]
    return out


def convergence_section(curves: pd.DataFrame) -> list[str]:
    """Markdown: final moving average of the normalised reward and loss per method."""
    out = [
        "### convergence (paper Fig. 4)",
        "",
        "| method | seed | slots | moving avg. of normalised reward, last slot | mean over last 500 slots | "
        "max moving avg. after slot 500 | mean loss, last 10 trainings | paper |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (method, seed), g in curves.groupby(["method", "seed"]):
        late = g[g["slot"] > 500]
        out.append(
            f"| {method} | {seed} | {len(g)} | {g['moving_average'].iloc[-1]:.3f} | "
            f"{g['normalised_reward'].iloc[-500:].mean():.3f} | "
            f"{late['moving_average'].max() if len(late) else float('nan'):.3f} | "
            f"{g['train_loss'].dropna().iloc[-10:].mean():.3f} | "
            f"{'≥ 0.96, loss < 0.03' if method == 'GRLE' else 'below GRLE'} |"
        )
    out += ["", "![convergence](convergence.png)", ""]
    return out


def topology_section(rows: pd.DataFrame) -> list[str]:
    """Markdown: accuracy of agents trained at one M on other networks."""
    train_m = int(rows["train_M"].iloc[0])
    nets = sorted(
        dict.fromkeys(rows["network"]),
        key=lambda n: (n == "dynamic", int(n[2:]) if n[:2] == "M=" else 0),
    )
    out = [
        f"### topology (trained at M = {train_m}, scenario {int(rows['scenario'].iloc[0])}, τ = "
        f"{rows['tau_ms'].iloc[0]:g} ms; average accuracy, mean ± 95% CI over seeds)",
        "",
        "| method | " + " | ".join(nets) + " |",
        "| --- |" + " --- |" * len(nets),
    ]
    for method in dict.fromkeys(rows["method"]):
        cells = []
        for net in nets:
            v = rows[(rows["method"] == method) & (rows["network"] == net)]["avg_accuracy"]
            cells.append("cannot run" if v.isna().all() else ci_text(v))
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    out += ["", "![topology](topology.png)", ""]
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a CSV atomically."""
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def differences_section(rows: pd.DataFrame | None, curves: pd.DataFrame | None) -> list[str]:
    """Markdown: where our numbers differ from the paper's (computed) and the known causes."""
    out = ["## Where we differ from the paper, and why", ""]
    if rows is not None and len(rows):
        out += ["Average accuracy at M = 10, τ = 30 ms, ours − paper:", ""]
        at = rows[(rows["M"] == 10) & (rows["tau_ms"] == 30)]
        for name, paper in PAPER_ACCURACY.items():
            grp = at[at["experiment"] == name]
            if not len(grp):
                continue
            means = grp.groupby("method")["avg_accuracy"].mean()
            diffs = [
                f"{m} {means[m]:.2f} vs {paper[m]:.2f} ({means[m] - paper[m]:+.2f})"
                for m in ("GRLE", "GRL", "DROOE", "DROO")
                if m in means and paper.get(m) is not None
            ]
            out.append(f"- {name} ({paper['figure']}): " + "; ".join(diffs) + ".")
        out.append("")
    if curves is not None and len(curves):
        grle = curves[curves["method"] == "GRLE"]
        final = grle.groupby("seed")["moving_average"].last()
        loss = grle.groupby("seed")["train_loss"].apply(lambda s: s.dropna().iloc[-10:].mean())
        out += [
            f"- Convergence: GRLE's final 50-slot moving average of eq. (17) is "
            f"{', '.join(f'{v:.3f}' for v in final)} (seeds {', '.join(map(str, final.index))}; "
            f"paper: above 0.96); its loss {', '.join(f'{v:.3f}' for v in loss)} (paper: below 0.03).",
            "",
        ]
    out += [
        "Known causes (see docs/offload-agents.md and docs/calibration.md):",
        "",
        "1. **Network regime.** With the paper's stated numbers (Table I latencies, 50–100 KB, "
        "20–100 Mbit/s, δ = 30 ms) almost every task meets its deadline whatever the policy, so "
        "no method falls to the paper's 0.2–0.6; the calibrated runs multiply every exit latency "
        "(`compute_scale`, stated in the header), which brings the main-branch-only methods into "
        "the paper's range but cannot match all four scenarios with one factor.",
        "2. **The objective is Q, not accuracy.** Every learner maximises Q = Σ φ·ψ(t) of eq. (9), "
        "and ψ falls with the completion time even inside the deadline, so a faster, shallower "
        "exit can win although the main branch would also succeed; the paper reports accuracy. "
        "The mean-Q columns show which method earns the most reward of eq. (9); the Findings "
        "above count, cell by cell, where the greedy reference is at or above GRLE in Q too.",
        "3. **DROO-type agents see only the channel** (as the paper describes them): ES backlog, "
        "capacity and the device's own uplink backlog are invisible to them, which costs most "
        "where the capacity varies (scenarios 2–4).",
        "4. **Training loss.** Eq. (16) is averaged here over every valid (device, option) pair "
        "with one positive per device, and near-equivalent options make the best candidate a "
        "noisy label, so the loss settles at about 0.1–0.3; the paper does not state its normalisation.",
        "5. **Protocol.** The paper gives neither the training length nor the M grid or number "
        "of seeds; the plan in the header is ours. Learners are evaluated frozen after online "
        "training; a REDUCED run uses fewer evaluation slots than the paper's 10,000.",
        "",
    ]
    return out
