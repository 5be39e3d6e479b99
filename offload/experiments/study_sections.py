"""The report sections of the two studies of the paper's actor: the ablation (actor, critic
search, graph; the learning lift) and the regime map (compute scale × τ × reward), as tables of
mean ± 95 % CI over seeds (:mod:`offload.experiments.stats`). Their findings are in
:func:`offload.experiments.study_report.findings_section`."""

from __future__ import annotations

import pandas as pd

from offload.experiments import stats
from offload.experiments.report import markdown_table
from offload.experiments.study_report import exit_columns, has_methods, key_text, paired, signed


def mean_ci_table(rows: pd.DataFrame, by: list[str], values: list[tuple[str, str]]) -> list[str]:
    """Markdown table: one row per ``by`` group + method, one column per (value, label)."""
    summaries = [
        stats.summarise(rows, [*by, "method"], v).set_index([*by, "method"]) for v, _ in values
    ]
    lines = (
        [*(key_text(k) for k in key), *(s.loc[key, "text"] for s in summaries)]
        for key in summaries[0].index
    )
    return markdown_table([*by, "method", *(label for _, label in values)], lines)


def ablation_section(rows: pd.DataFrame) -> list[str]:
    """The ablation table, the learning lift and the ablation figure."""
    out = [
        "## Ablation: actor, critic search, graph (same evaluation slots)",
        "",
        "actor: the trained GRLE actor's own argmax, no critic; random+critic: the critic over "
        "M·N·L random feasible decisions; GRLE S=k: actor + quantiser + critic with k candidates "
        "(S=MNL is the full method); mlp: GRLE+'s features without message passing; optimum: the "
        "exact per-slot maximiser of predicted Q (M ≤ 10); untrained: a freshly initialised GRLE "
        "actor with the critic over M·N·L candidates.",
        "",
    ]
    out += mean_ci_table(
        rows,
        ["scenario", "M", "tau_ms"],
        [("avg_accuracy", "avg accuracy"), ("mean_q", "mean Q"), ("ssp", "SSP")]
        + ([(exit_columns(rows)[0], "exit-1 share")] if exit_columns(rows) else []),
    )
    if "actor_pick_share" in rows:
        picked = rows.dropna(subset=["actor_pick_share"])
        if len(picked):
            out += [
                "",
                "Share of slots in which the critic kept the actor's own candidate (its argmax, "
                "candidate 0) among the M·N·L:",
                "",
            ]
            out += mean_ci_table(
                picked, ["scenario", "M", "tau_ms"], [("actor_pick_share", "actor's pick kept")]
            )
    out += ["", "Learning lift (trained − untrained, paired on the seed):", ""]
    lift = [
        ("GRLE S=MNL", "untrained S=MNL"),
        ("GRLE S=MNL", "actor"),
        ("GRLE S=MNL", "mlp S=MNL"),
        ("GRLE+ S=MNL", "GRLE S=MNL"),
    ]
    out += [
        "| scenario | M | τ (ms) | pair | Δ mean Q | Δ avg accuracy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    by = ["scenario", "M", "tau_ms"]
    for a, b in lift:
        if not has_methods(rows, a, b):
            continue
        q = paired(rows, a, b, "mean_q", by)
        acc = paired(rows, a, b, "avg_accuracy", by).set_index(by)
        for _, r in q.iterrows():
            key = tuple(r[c] for c in by)
            out.append(
                f"| {int(r['scenario'])} | {int(r['M'])} | {r['tau_ms']:g} | {a} − {b} | "
                f"{signed(r['text'])} | {signed(acc.loc[key, 'text'])} |"
            )
    return out + ["", "![ablation](ablation.png)", ""]


def regime_section(rows: pd.DataFrame) -> list[str]:
    """The regime map's tables (accuracy, Q, exit-1 share) and its heat maps."""
    rows = rows.assign(
        variant=[
            "on-time" if f == "on_time" else f"ψ k={k:g}"
            for f, k in zip(rows["reward_form"], rows["psi_steepness"], strict=True)
        ]
    )
    out = [
        "## Regime map: compute scale × τ × reward",
        "",
        f"Scenario {int(rows['scenario'].iloc[0])}, M = {int(rows['M'].iloc[0])}; ψ k = the "
        "steepness in ψ(t) = 1 − sigmoid(k t/δ) (eq. 9: k = 5); on-time: φ_l for a task done by "
        "its deadline, else 0. Mean ± 95 % CI over seeds.",
        "",
    ]
    no_optimum = sorted(
        set(rows["variant"]) - set(rows.loc[rows["method"] == "optimum", "variant"])
    )
    if no_optimum:
        out += [
            f"No exact optimum for {', '.join(no_optimum)} at this M: its search does not prune "
            "under a reward that is flat in time (offload/experiments/regime.py, "
            "ON_TIME_OPTIMUM_MAX_DEVICES).",
            "",
        ]
    values = [("avg_accuracy", "avg accuracy"), ("mean_q", "mean Q")]
    if exit_columns(rows):
        values.append((exit_columns(rows)[0], "exit-1 share"))
    out += mean_ci_table(rows, ["variant", "tau_ms", "compute_scale"], values)
    return out + ["", "![regime](regime.png)", ""]
