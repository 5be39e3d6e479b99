"""What the experiments write per run: the result row of a CSV and the name of a saved actor.

Every results CSV (Figs. 5–8, topology, ablation, regime) has one row per run and method, with
its columns in this order: identification (experiment, method, scenario, compute scale, the
experiment's own setting columns, seed), the Section VI-D metrics, the experiment's tail (slot
counts, its own columns, the wall time), then the exit and ES usage columns.
"""

from __future__ import annotations

import math
from typing import Any

from offload.exit_table import ExitTable
from offload.sim import MECConfig
from offload.sim.metrics import Metrics

METRIC_COLUMNS = ("avg_accuracy", "ssp", "throughput", "mean_q")  # Section VI-D, per row


def metric_columns(m: Metrics | None) -> dict[str, float]:
    """The Section VI-D columns of a result row (NaN for a method that cannot run)."""
    if m is None:
        return {**dict.fromkeys(METRIC_COLUMNS, math.nan), "tasks": 0}
    return {
        "avg_accuracy": m.avg_accuracy,
        "ssp": m.ssp,
        "throughput": m.throughput_per_s,
        "mean_q": m.mean_q,
        "tasks": m.tasks,
    }


def usage_columns(m: Metrics | None, table: ExitTable) -> dict[str, float]:
    """The exit and ES usage columns of a result row (``exit_share_<e>``, ``es_share_<n>``,
    ``success_exit_<e>``; see :class:`~offload.sim.metrics.Usage`); none for a method that
    cannot run (the table fills them with NaN)."""
    if m is None or m.usage is None:
        return {}
    return m.usage.columns(table.exits)


def result_row(
    experiment: str,
    method: str,
    config: MECConfig,
    setting: dict[str, Any],
    metrics: Metrics | None,
    table: ExitTable,
    tail: dict[str, Any],
) -> dict[str, Any]:
    """One CSV row of ``method``'s evaluation under ``config`` (the row's scenario and compute
    scale) with exit table ``table``.

    ``setting``: the experiment's own identification columns after the compute scale, through
    the seed, in CSV order (e.g. ``{"M": 10, "tau_ms": 30.0, "seed": 0}``); ``tail``: the columns
    between the metrics and the usage columns (slot counts, the experiment's own, ``wall_s``).
    """
    return {
        "experiment": experiment,
        "method": method,
        "scenario": config.scenario,
        "compute_scale": config.compute_scale,
        **setting,
        **metric_columns(metrics),
        **tail,
        **usage_columns(metrics, table),
    }


def actor_tag(
    experiment: str, num_devices: int, seed: int, method: str, *, slot_ms: float | None = None
) -> str:
    """The name of a saved actor: ``<experiment>_M<M>_tau<τ ms>_seed<seed>_<method>``, without
    the ``_tau`` part when ``slot_ms`` is None (the topology agents, trained at one τ)."""
    tau = "" if slot_ms is None else f"_tau{slot_ms:g}"
    return f"{experiment}_M{num_devices}{tau}_seed{seed}_{method}"
