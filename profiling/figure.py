"""A figure like the paper's Fig. 3: accuracy against latency of every exit, candidates circled."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure  # a bare Figure renders with Agg: no display, no pyplot state

from profiling.fileio import write_files_atomically
from profiling.table import ExitTableFile

# label offsets tried in turn (points from the marker): first one whose box overlaps neither an
# earlier label nor a marker and stays inside the axes wins
_OFFSETS = ((5, 5), (5, -12), (-14, 5), (-14, -12), (5, 14), (-14, 14), (5, -22), (-14, -22))


def describe(table: ExitTableFile, device: str, source: str | None = None) -> tuple[str, str]:
    """(title lines naming the run and the data copy, x-axis label) from the table's sidecar."""
    meta = table.metadata
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    run = "run " + str(model.get("run") or meta.get("run") or source or "(not recorded)")
    data = model.get("data_source") or meta.get("data") or "data not recorded"
    data = re.sub(r"sha256:([0-9a-f]{12})[0-9a-f]+", r"sha256:\1…", str(data))
    if meta.get("source") == "transcribed":
        run = f"transcribed table {source}" if source else "transcribed table"
        xlabel = f"latency on {device} (ms, as transcribed; the timing mode is not stated)"
    else:
        stat = (meta.get("measurement") or {}).get("repeats")
        xlabel = f"latency on {device} (ms, median" + (f" of {stat} calls)" if stat else ")")
    return f"{run}\naccuracy on {data}", xlabel


def _place_labels(fig: Figure, ax, points, labels) -> list:  # noqa: ANN001 - matplotlib types
    """Annotate each point with its label at the first offset that overlaps nothing drawn."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    inside = ax.get_window_extent(renderer)
    markers = [ax.transData.transform(p) for p in points]
    placed: list = []
    texts = []
    for (x, y), label in zip(points, labels, strict=True):
        best = None
        for dx, dy in _OFFSETS:
            text = ax.annotate(
                label, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8
            )
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            clear = (
                inside.contains(box.x0, box.y0)
                and inside.contains(box.x1, box.y1)
                and not any(box.overlaps(b) for b in placed)
                and not any(box.contains(mx, my) for mx, my in markers)
            )
            if clear:
                best = (text, box)
                break
            text.remove()
        if best is None:  # nowhere clear: keep the first offset rather than drop the label
            text = ax.annotate(
                label, (x, y), textcoords="offset points", xytext=_OFFSETS[0], fontsize=8
            )
            best = (text, text.get_window_extent(renderer))
        placed.append(best[1])
        texts.append(best[0])
    return texts


def exits_figure(
    table: ExitTableFile,
    *,
    device: str | None = None,
    candidates: Sequence[int] = (),
    title: str | None = None,
    source: str | None = None,
) -> Figure:
    """Accuracy vs latency on ``device`` (default: the first latency column) of all exits,
    labelled with their numbers (no two labels overlap, none leaves the axes), the
    ``candidates`` circled and joined by their step curve. The title names the run (or the
    transcribed table ``source``) and the data copy the accuracies were measured on."""
    device = device or table.devices[0]
    latency = table.latency_ms(device)
    accuracy = table.accuracy
    exits = table.exits
    fig = Figure(figsize=(7.0, 4.8), dpi=120)
    ax = fig.subplots()
    ax.plot(latency, accuracy, "o", color="tab:blue", markersize=5, label="exit")
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
    provenance, xlabel = describe(table, device, source)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(
        (title or f"Accuracy vs latency of every exit ({len(exits)} exits, candidates circled)")
        + "\n"
        + provenance,
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.1, y=0.12)  # room for the labels of the outermost exits
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _place_labels(fig, ax, list(zip(latency, accuracy, strict=True)), [str(e) for e in exits])
    return fig


def exits_figure_writer(
    table: ExitTableFile,
    *,
    fmt: str = "png",
    device: str | None = None,
    candidates: Sequence[int] = (),
    title: str | None = None,
    source: str | None = None,
) -> Callable[[Path], None]:
    """The figure of :func:`exits_figure` as a writer ``writer(path)`` that saves it in format
    ``fmt``, for :func:`profiling.fileio.write_files_atomically`."""
    fig = exits_figure(table, device=device, candidates=candidates, title=title, source=source)

    def write(path: Path) -> None:
        fig.savefig(path, format=fmt, bbox_inches="tight")

    return write


def plot_exits(
    table: ExitTableFile,
    path: Path | str,
    *,
    device: str | None = None,
    candidates: Sequence[int] = (),
    title: str | None = None,
    source: str | None = None,
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
        source=source,
    )
    write_files_atomically({path: writer})
    return path
