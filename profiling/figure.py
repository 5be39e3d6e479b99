"""A figure like the paper's Fig. 3: accuracy against latency of every exit, candidates circled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # a bare Figure renders with Agg: no display, no pyplot state

from profiling.fileio import write_files_atomically
from profiling.table import ExitTable


def exits_figure_writer(
    table: ExitTable,
    *,
    fmt: str = "png",
    device: str | None = None,
    candidates: Sequence[int] = (),
    title: str | None = None,
) -> Callable[[Path], None]:
    """Draw accuracy vs. median latency on ``device`` (default: the first latency column) of all
    exits, labelled with their numbers, the ``candidates`` circled and joined by their step curve.

    Returns a writer ``writer(path)`` that saves the figure in format ``fmt``, for
    :func:`profiling.fileio.write_files_atomically`.
    """
    device = device or table.devices[0]
    latency = table.latency_ms(device)
    accuracy = table.accuracy
    exits = table.exits
    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    ax = fig.subplots()
    ax.plot(latency, accuracy, "o", color="tab:blue", markersize=5, label="exit")
    for x, y, e in zip(latency, accuracy, exits, strict=True):
        ax.annotate(str(e), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    chosen = np.isin(exits, list(candidates))
    if chosen.any():
        order = np.argsort(latency[chosen])
        cx, cy = latency[chosen][order], accuracy[chosen][order]
        ax.plot(
            cx,
            cy,
            "o",
            markersize=14,
            markerfacecolor="none",
            markeredgecolor="tab:red",
            markeredgewidth=1.5,
            label="candidate",
        )
        ax.step(
            np.append(cx, latency.max()),
            np.append(cy, cy[-1]),
            where="post",
            color="tab:red",
            linewidth=0.8,
            alpha=0.6,
        )
    ax.set_xlabel(f"latency on {device} (ms, median)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(title or "Performance of early-exits")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()

    def write(path: Path) -> None:
        fig.savefig(path, format=fmt)

    return write


def plot_exits(
    table: ExitTable,
    path: Path | str,
    *,
    device: str | None = None,
    candidates: Sequence[int] = (),
    title: str | None = None,
) -> Path:
    """Save the figure of :func:`exits_figure_writer` atomically; the format follows the file
    extension (``.png``, ``.pdf``, ``.svg``). Returns the path."""
    path = Path(path)
    writer = exits_figure_writer(
        table,
        fmt=path.suffix.lstrip(".") or "png",
        device=device,
        candidates=candidates,
        title=title,
    )
    write_files_atomically({path: writer})
    return path
