"""The final files of an experiment from its results: CSVs, figures and the report's sections,
and the redraw of figures and report from the CSVs of an earlier run (``--rebuild-report``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from grle_common.fileio import write_text_atomic
from offload.experiments import (
    figures,
    report,
    scale_report,
    store,
    study_figures,
    study_report,
    study_sections,
)
from offload.experiments.runner import SCENARIOS


def report_name(experiment: str) -> str:
    """The report file of an experiment: report.md for ``paper``, <experiment>.md otherwise."""
    return "report.md" if experiment == "paper" else f"{experiment}.md"


def rebuild_report(experiment: str, out: Path) -> int:
    """Figures and report again from ``out``'s CSVs; the old report's header is kept, the CSVs
    are not rewritten.

    Raises:
        OutputError: ``out`` holds no report of ``experiment``.
    """
    md = out / report_name(experiment)
    if not md.exists():
        raise store.OutputError(f"no report at {md} to rebuild; run the experiment first.")
    old = md.read_text().splitlines()
    first = next((i for i, line in enumerate(old) if line.startswith("#" * 2)), len(old))
    results: dict[str, list[pd.DataFrame]] = {}
    for kind, names in (
        ("convergence", ["convergence"]),
        ("cell", list(SCENARIOS)),
        ("topology", ["topology"]),
        ("ablation", ["ablation"]),
        ("regime", ["regime"]),
        ("scale", ["scale"]),
    ):
        for name in names:
            if (out / f"{name}.csv").exists():
                results.setdefault(kind, []).append(
                    pd.read_csv(out / f"{name}.csv", keep_default_na=kind != "topology")
                )
    if "topology" in results:
        for frame in results["topology"]:
            for col in ("avg_accuracy", "ssp", "throughput", "mean_q", "M"):
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
    with store.staging(out) as staged:
        table = next(
            (
                line.split("Exit table: `", 1)[1].split("`", 1)[0]
                for line in old[:first]
                if "Exit table: `" in line
            ),
            "(not recorded)",
        )
        sections = write_outputs(
            results, staged, exit_table=table, run=store.display_path(str(out)), csvs=False
        )
        write_text_atomic(staged / md.name, "\n".join(old[:first] + sections) + "\n")
        store.record_files(out, store.commit(staged, out))
    print(f"rebuilt {md}")
    return 0


def _table_files(
    frame: pd.DataFrame,
    name: str,
    figure: Callable[..., Figure],
    section: Callable[[pd.DataFrame], list[str]],
    *,
    out: Path,
    where: dict[str, str],
    csvs: bool,
) -> list[str]:
    """``<name>.csv`` (unless ``csvs`` is false) and ``<name>.png`` (``figure(frame, **where)``)
    in ``out``; returns the report section of ``frame``."""
    if csvs:
        report.write_csv(frame, out / f"{name}.csv")
    figures.save_figure(figure(frame, **where), out / f"{name}.png")
    return section(frame)


def write_outputs(
    results: dict[str, list[pd.DataFrame]],
    out: Path,
    *,
    exit_table: str,
    run: str,
    csvs: bool = True,
) -> list[str]:
    """CSV files (unless ``csvs`` is false), figures and the report's sections for what ran;
    ``exit_table`` and ``run`` (the output folder) go into the figure titles."""
    sections: list[str] = []
    where = {"exit_table": exit_table, "run": run}
    frames = {kind: pd.concat(parts) for kind, parts in results.items()}
    if results.keys() - {"scale"}:  # the paper-size findings (the scale study has its own)
        sections += study_report.findings_section(
            frames.get("cell"), frames.get("topology"), frames.get("ablation"), frames.get("regime")
        )
    files = {"out": out, "where": where, "csvs": csvs}
    if "convergence" in results:
        curves = frames["convergence"].sort_values(["method", "seed", "slot"])
        figure, section = figures.figure_convergence, report.convergence_section
        sections += _table_files(curves, "convergence", figure, section, **files)
    if "cell" in results:
        rows = pd.concat(results["cell"]).sort_values(
            ["experiment", "method", "M", "tau_ms", "seed"]
        )
        for name, grp in rows.groupby("experiment", sort=False):
            if csvs:
                report.write_csv(grp, out / f"{name}.csv")
            fig = figures.figure_scenario(grp, str(name), **where)
            figures.save_figure(fig, out / f"{name}.png")
        for name in SCENARIOS:
            grp = rows[rows["experiment"] == name]
            if len(grp):
                sections += report.scenario_section(grp, name)
        sections += study_report.paired_section(rows)
        sections += study_report.usage_section(rows)
        # derived tables (every M): written on --rebuild-report too, from the CSVs alone
        for name, derived in (
            ("paired.csv", study_report.paired_frame(rows)),
            ("exit_usage.csv", study_report.usage_frame(rows)),
        ):
            if not derived.empty:
                report.write_csv(derived, out / name)
        if study_report.exit_columns(rows):
            fig = study_figures.figure_usage(rows, **where)
            figures.save_figure(fig, out / "exit_usage.png")
            sections += ["![exit usage](exit_usage.png)", ""]
    if "topology" in results:
        topo = frames["topology"].sort_values(["method", "network", "seed"])
        figure, section = figures.figure_topology, report.topology_section
        sections += _table_files(topo, "topology", figure, section, **files)
    for kind, section, figure in (
        ("ablation", study_sections.ablation_section, study_figures.figure_ablation),
        ("regime", study_sections.regime_section, study_figures.figure_regime),
    ):
        if kind in results:  # job order: the same file every time
            sections += _table_files(frames[kind], kind, figure, section, **files)
    if "scale" in results:
        rows = frames["scale"]
        if csvs:
            report.write_csv(rows, out / "scale.csv")
        figures.save_figure(scale_report.figure_scale(rows, **where), out / "scale.png")
        fig = scale_report.figure_scale_time(rows, **where)
        figures.save_figure(fig, out / "scale_time.png")
        sections += scale_report.scale_section(rows)
    if "cell" in results or "convergence" in results:
        sections += report.differences_section(
            pd.concat(results["cell"]) if "cell" in results else None,
            pd.concat(results["convergence"]) if "convergence" in results else None,
        )
    return sections
