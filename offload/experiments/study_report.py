"""The report sections of the studies of the paper's actor: findings computed from the numbers,
paired differences and exit usage (the ablation's and the regime map's own sections:
:mod:`offload.experiments.study_sections`).

Every table gives mean ± 95 % CI over seeds (:mod:`offload.experiments.stats`, Student t); the
paired differences pair two methods' rows on the same seed, i.e. the same training and
evaluation slots. A section whose data a results frame lacks (e.g. the CSVs committed before
the paper's actor was added have no exit-usage columns) is replaced by a one-line note. Nothing
here states a result in words that is not computed from the frame it is given.
"""

from __future__ import annotations

import math

import pandas as pd

from offload.experiments import stats

#: (first, second) method pairs of the paired-difference table
PAIRS = (("GRLE", "greedy"), ("GRLE", "DROOE"), ("GRLE", "GRL"), ("GRLE", "GRLE+"))
CELL = ["experiment", "M", "tau_ms"]  # one cell of Figs. 5-8 (seeds are its replicates)


def has_methods(frame: pd.DataFrame | None, *methods: str) -> bool:
    """Whether ``frame`` holds rows of every one of ``methods``."""
    return frame is not None and set(methods) <= set(frame["method"])


def cell_means(rows: pd.DataFrame, value: str, by: list[str] = CELL) -> pd.DataFrame:
    """(cell × method) table of the mean of ``value`` over seeds."""
    return rows.groupby([*by, "method"])[value].mean().unstack("method")


def wins(rows: pd.DataFrame, a: str, b: str, value: str, by: list[str] = CELL) -> tuple[int, int]:
    """(cells where mean ``value`` of a ≥ b, cells where both ran); means over seeds."""
    means = cell_means(rows, value, by)
    if a not in means or b not in means:
        return 0, 0
    both = means[[a, b]].dropna()
    return int((both[a] >= both[b]).sum()), len(both)


def paired(rows: pd.DataFrame, a: str, b: str, value: str, by: list[str] = CELL) -> pd.DataFrame:
    """Paired a − b of ``value`` on the same seed, per cell of ``by`` (stats.paired_table)."""
    return stats.paired_table(
        rows, method_column="method", first=a, second=b, pair_on=["seed"], by=by, value=value
    )


def _sign_counts(table: pd.DataFrame) -> tuple[int, int, int]:
    """(CI above 0, CI below 0, cells) of a paired table; a one-pair cell (no CI) is neither."""
    ci = table["ci_half"].fillna(math.inf)
    return (
        int((table["mean"] - ci > 0).sum()),
        int((table["mean"] + ci < 0).sum()),
        len(table),
    )


def exit_columns(rows: pd.DataFrame) -> list[str]:
    """The ``exit_share_<e>`` columns, in exit order."""
    cols = [c for c in rows.columns if c.startswith("exit_share_")]
    return sorted(cols, key=lambda c: int(c.rsplit("_", 1)[1]))


def findings_section(
    cells: pd.DataFrame | None,
    topology: pd.DataFrame | None = None,
    ablation: pd.DataFrame | None = None,
    regime: pd.DataFrame | None = None,
) -> list[str]:
    """ "Findings": computed counts and intervals, those that contradict the paper first."""
    against: list[str] = []
    supports: list[str] = []
    if cells is not None and "GRLE" in set(cells["method"]):
        if "GRLE+" not in set(cells["method"]) and not exit_columns(cells):
            against.append(
                "These Figs. 5–8 rows have no GRLE+ and no exit-usage columns: they were made "
                "before the paper's actor was added, when the method called GRLE was the "
                "engineered actor now named GRLE+ (not the paper's eqs. 12–13)."
            )
        for rival in ("greedy", "random", "GRL", "DROOE", "GRLE+", "greedy-main"):
            won, n = wins(cells, rival, "GRLE", "avg_accuracy")
            if n:
                q_won, _ = wins(cells, rival, "GRLE", "mean_q")
                text = (
                    f"{rival} ≥ GRLE in average accuracy in {won} of {n} cells "
                    f"(scenario × M × τ, mean over seeds); in mean Q in {q_won} of {n}."
                )
                # GRLE+ is GRLE's own engineered variant, not a rival the paper claims to beat
                (against if won and rival != "GRLE+" else supports).append(text)
        for b in ("greedy", "DROOE", "GRL"):
            if has_methods(cells, "GRLE", b):
                up, down, n = _sign_counts(paired(cells, "GRLE", b, "avg_accuracy"))
                supports.append(
                    f"Paired GRLE − {b} (average accuracy, same seeds): 95 % CI above 0 in "
                    f"{up}, below 0 in {down}, straddling 0 (or one seed) in {n - up - down} "
                    f"of {n} cells."
                )
        cols = exit_columns(cells)
        if cols:
            first = cells[cells["method"] == "GRLE"][cols[0]].dropna()
            if len(first):
                against.append(
                    f"GRLE sends {100 * first.mean():.1f} % of tasks to exit "
                    f"{cols[0].rsplit('_', 1)[1]} (mean over its {len(first)} runs; min "
                    f"{100 * first.min():.1f} %, max {100 * first.max():.1f} %)."
                )
    padded = (
        topology is not None and "note" in topology and (topology["note"] == "padded input").any()
    )
    if padded and has_methods(topology, "GRLE", "DROOE"):
        won, n = wins(topology, "DROOE", "GRLE", "avg_accuracy", by=["network"])
        (against if won else supports).append(
            f"Topology: padded-input DROOE ≥ GRLE in {won} of {n} evaluation networks "
            "(trained at one M, mean over seeds)."
        )
    for frame, study in ((ablation, _ablation_findings), (regime, _regime_findings)):
        if frame is not None:
            contra, other = study(frame)
            against, supports = against + contra, supports + other
    out = ["## Findings", ""]
    if not (against or supports):
        return out + ["No result in this run allows a comparison with GRLE.", ""]
    out += [
        "Computed from the tables below: counts over cells, a cell being one setting of a "
        "table's keys (Figs. 5–8 and the ablation: scenario, M, τ; the topology: network; the "
        "regime map: reward, compute scale, τ) and its value the mean over seeds. Nothing here "
        "is written by hand.",
        "",
    ]
    if against:
        out += ["**Against the paper's claims** (GRLE best everywhere):", ""]
        out += [f"- {line}" for line in against] + [""]
    if supports:
        out += ["**Other measurements**:", ""] + [f"- {line}" for line in supports] + [""]
    return out


def _ablation_findings(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(against the paper, other) lines of the ablation."""
    against, other = [], []
    by = ["scenario", "M", "tau_ms"]
    for a, b in (("greedy", "actor"), ("greedy", "GRLE S=MNL"), ("random+critic", "GRLE S=MNL")):
        won, n = wins(rows, a, b, "mean_q", by)
        if n:
            (against if won else other).append(
                f"Ablation: {a} ≥ {b} in mean Q in {won} of {n} cells."
            )
    if "actor_pick_share" in rows and rows["actor_pick_share"].notna().any():
        kept = rows.loc[rows["method"] == "GRLE S=MNL", "actor_pick_share"].dropna()
        if len(kept):
            other.append(
                f"Ablation: the critic keeps the GRLE actor's own candidate in "
                f"{100 * kept.mean():.1f} % of slots (mean over {len(kept)} runs; "
                f"max {100 * kept.max():.1f} %)."
            )
    if has_methods(rows, "GRLE S=MNL", "untrained S=MNL"):
        up, down, n = _sign_counts(paired(rows, "GRLE S=MNL", "untrained S=MNL", "mean_q", by))
        other.append(
            f"Learning lift (trained − untrained actor, both with the critic over M·N·L "
            f"candidates, mean Q): CI above 0 in {up}, below 0 in {down} of {n} cells."
        )
    return against, other


def _regime_findings(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(against the paper, other) lines of the regime map."""
    against, other = [], []
    by = ["reward_form", "psi_steepness", "compute_scale", "tau_ms"]
    rows = rows.assign(psi_steepness=rows["psi_steepness"].fillna(0.0))
    for a, b, contradicts in (
        ("greedy", "GRLE", True),
        ("GRL", "GRLE", True),
        ("greedy", "greedy-main", False),
    ):
        won, n = wins(rows, a, b, "avg_accuracy", by)
        if n:
            text = f"Regime map: {a} ≥ {b} in average accuracy in {won} of {n} cells."
            (against if contradicts and won else other).append(text)
    means = cell_means(rows, "avg_accuracy", by)
    if {"GRLE", "greedy"} <= set(means):
        better = means[means["GRLE"] > means["greedy"]].index
        where = [
            f"{'on-time' if form == 'on_time' else f'k={k:g}'}/τ={tau:g}/×{scale:g}"
            for form, k, scale, tau in better
        ]
        if where:
            shown = ", ".join(where[:12]) + (
                f" and {len(where) - 12} more" if len(where) > 12 else ""
            )
            other.append(
                f"Regime map: GRLE > greedy in average accuracy at {shown} (reward/τ/scale)."
            )
    return against, other


def reference_m(rows: pd.DataFrame, m_ref: int = 10) -> int:
    """The M of ``rows`` closest to ``m_ref`` (the paper's reference M = 10; ties: the smaller)."""
    return int(min(rows["M"].dropna().unique(), key=lambda m: (abs(m - m_ref), m)))


def paired_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """Every paired difference of :data:`PAIRS` (average accuracy and mean Q) per cell, long
    format: the cell's keys, ``pair``, ``metric``, mean, ci_half, n and text (``paired.csv``)."""
    parts = []
    for a, b in PAIRS:
        if not has_methods(cells, a, b):
            continue
        for metric in ("avg_accuracy", "mean_q"):
            part = paired(cells, a, b, metric)
            parts.append(part.assign(pair=f"{a} - {b}", metric=metric))
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True)
    return frame[[*CELL, "pair", "metric", "mean", "ci_half", "n", "text"]]


def paired_section(cells: pd.DataFrame, m_ref: int = 10) -> list[str]:
    """Paired differences (first − second, same seeds) of accuracy and Q per cell at the M
    closest to ``m_ref``; every M is in ``paired.csv``."""
    out = ["## Paired differences (same seeds, same slots)", ""]
    frame = paired_frame(cells)
    if frame.empty:
        return out + ["No method pair of this table ran here; section omitted.", ""]
    m = reference_m(cells, m_ref)
    out += [
        f"Mean ± 95 % CI over seeds of the per-seed difference at M = {m} (every M: "
        "`paired.csv`); each seed's two runs share the training and evaluation slots.",
        "",
        "| scenario | M | τ (ms) | pair | Δ avg accuracy | Δ mean Q | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    at = frame[frame["M"] == m].set_index([*CELL, "pair", "metric"])
    for pair in dict.fromkeys(frame["pair"]):
        for key in sorted({k[:3] for k in at.index if k[3] == pair}):
            acc, q = at.loc[(*key, pair, "avg_accuracy")], at.loc[(*key, pair, "mean_q")]
            out.append(
                f"| {key[0]} | {int(key[1])} | {key[2]:g} | {pair.replace(' - ', ' − ')} | "
                f"{signed(acc['text'])} | {signed(q['text'])} | {int(acc['n'])} |"
            )
    return out + [""]


def signed(text: str) -> str:
    """A difference's text with its sign, ``+`` included."""
    return text if text.startswith("-") else "+" + text


def usage_columns_of(rows: pd.DataFrame) -> list[str]:
    """Exit shares (exit order), ES shares and success per exit (exit order) of ``rows``."""
    success = sorted(
        (c for c in rows.columns if c.startswith("success_exit_")),
        key=lambda c: int(c.rsplit("_", 1)[1]),
    )
    es = sorted(c for c in rows.columns if c.startswith("es_share_"))
    return [*exit_columns(rows), *es, *success]


def usage_frame(rows: pd.DataFrame, by: list[str] = CELL) -> pd.DataFrame:
    """Mean ± CI over seeds of every usage column per method and ``by`` group, long format
    (``exit_usage.csv``); a success rate of an exit no task used (NaN in every seed) is left out."""
    parts = []
    for col in usage_columns_of(rows):
        values = rows.assign(**{col: pd.to_numeric(rows[col], errors="coerce")})
        values = values.dropna(subset=[col])
        if len(values):
            parts.append(stats.summarise(values, [*by, "method"], col).assign(column=col))
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True)
    return frame[[*by, "method", "column", "mean", "ci_half", "n", "text"]]


def usage_section(rows: pd.DataFrame, m_ref: int = 10) -> list[str]:
    """Share of tasks per exit and per ES (mean ± CI over seeds) per method, scenario and τ at
    the M closest to ``m_ref``; every M and the success per exit are in ``exit_usage.csv``."""
    out = ["## Exit usage", ""]
    cols = exit_columns(rows)
    if not cols:
        return out + [
            "These results have no exit-usage columns (made before the paper's actor was added).",
            "",
        ]
    es = sorted(c for c in rows.columns if c.startswith("es_share_"))
    m = reference_m(rows, m_ref)
    out += [
        f"Share of each method's tasks that used each exit, and the share on each edge server, "
        f"at M = {m} (mean ± 95 % CI over seeds; every M and the success rate per exit: "
        "`exit_usage.csv`).",
        "",
        "| scenario | M | τ (ms) | method | "
        + " | ".join(f"exit {c.rsplit('_', 1)[1]}" for c in cols)
        + " | "
        + " | ".join(f"ES {c.rsplit('_', 1)[1]}" for c in es)
        + " |",
        "| --- " * (4 + len(cols) + len(es)) + "|",
    ]
    frame = usage_frame(rows[rows["M"] == m]).set_index([*CELL, "method", "column"])
    keys = sorted({k[:4] for k in frame.index})
    for key in keys:
        cells = [
            frame.loc[(*key, c), "text"] if (*key, c) in frame.index else "–" for c in cols + es
        ]
        out.append("| " + " | ".join(key_text(k) for k in key) + " | " + " | ".join(cells) + " |")
    return out + [""]


def key_text(value: object) -> str:
    """A table key as text: ``–`` for NaN, floats as ``:g``."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:g}"
    return str(value)
