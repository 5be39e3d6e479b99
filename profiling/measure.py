"""Time every exit of a multi-exit VGG-16 and write the exit table (paper Section VI-B, Table I).

``python -m profiling.measure --gpu 0 --run checkpoints/<run>`` times, for each exit i, what a
server runs for a task that exits at i: the prefix up to exit i plus head i (``exit_module(i)``),
in eval mode, batch size 1 and fp32 unless asked otherwise. Per exit: ``--warmup`` untimed calls,
then ``--repeats`` timed calls summarised as median, p90, mean, standard deviation, min, max and
count; the median goes into the table's ``latency_ms:<DEVICE>`` column and the full statistics
into the JSON sidecar. Exits are timed one after another, 1 to 17.

Timing modes: CPU -> host clock (``time.perf_counter``) with a fixed thread count; GPU -> CUDA
events around eager launches (launch overhead included), or with ``--cuda-graphs`` CUDA events
around a CUDA-graph replay (compute only).

Outputs in ``--out``: ``exit_table.csv`` + ``.json``; for a trained run also ``candidates.csv`` +
``.json`` (the L exits chosen by :mod:`profiling.candidates`) and ``exits.png`` (Fig. 3 style).
``--untrained`` times a freshly initialised model of the same architecture: latency only, no
accuracy column, no candidates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exit_tables.schema import MAIN_EXIT
from grle_common.cli import add_dataclass_args, bounded, option, run_cli
from grle_common.fileio import created_root
from profiling import metadata as meta
from profiling.errors import ProfilingError
from profiling.fileio import ensure_writable_dir, sha256_file, write_files_atomically
from profiling.timing import (
    CUDA_EVENTS,
    CUDA_GRAPH,
    PROCESS_CPU_TIME,
    CudaEventTimer,
    HostClockTimer,
    LatencyStats,
    Timer,
    capture_cuda_graph,
    time_callable,
    time_interleaved,
)

NUM_EXITS = MAIN_EXIT  # exits 1..17 of the multi-exit VGG-16, the main branch last
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NOT_FLAGS = ("input_shape",)  # MeasureConfig fields the command line does not set
LATENCY_DECIMALS = 4  # CSV medians in ms rounded to 0.1 microsecond


#: (warm-up calls, timed calls) per exit when not given, by device kind: the command line's
#: defaults, with which every committed measured table (checkpoints/) was made
DEFAULT_CALLS = {"cuda": (50, 1024), "cpu": (10, 100)}
CPU_CLOCKS = ("wall", "process")


@dataclass(frozen=True, kw_only=True)
class MeasureConfig:
    """How each exit is timed. Every field but ``input_shape`` is a flag of
    ``python -m profiling.measure`` with this default and help text."""

    batch_size: int = option(1, "images per forward pass", low=1)
    dtype: str = option("fp32", "weights and inputs", choices=DTYPES)
    warmup: int | None = option(
        None,
        "untimed calls per exit before timing (autotuning, caches, allocator)",
        low=0,
        default_text=f"{DEFAULT_CALLS['cuda'][0]} on a GPU, {DEFAULT_CALLS['cpu'][0]} on the CPU",
    )
    repeats: int | None = option(
        None,
        "timed calls per exit",
        low=1,
        default_text=f"{DEFAULT_CALLS['cuda'][1]} on a GPU, {DEFAULT_CALLS['cpu'][1]} on the CPU",
    )
    cuda_graphs: bool = option(False, "GPU only: time CUDA-graph replays, not eager launches")
    input_shape: tuple[int, int, int] = option((3, 32, 32), "channels, height, width of an image")
    seed: int = option(0, "seed of the random input (and of an untrained model's weights)")
    interleave: bool = option(
        False, "time the exits round-robin (1, 2, ..., 17, 1, 2, ...), for shared machines"
    )
    cpu_clock: str = option(
        "wall",
        "CPU timing clock: wall (perf_counter) or process (CPU time of the process; with "
        "--threads 1 it ignores time lost to other processes on a shared machine)",
        choices=CPU_CLOCKS,
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ProfilingError(f"--batch-size must be >= 1 (got {self.batch_size}).")
        if self.dtype not in DTYPES:
            raise ProfilingError(f"--dtype must be one of {', '.join(DTYPES)} (got {self.dtype}).")
        if self.cpu_clock not in CPU_CLOCKS:
            raise ProfilingError(f"--cpu-clock must be wall or process (got {self.cpu_clock}).")
        if (self.warmup is not None and self.warmup < 0) or (
            self.repeats is not None and self.repeats < 1
        ):
            raise ProfilingError(
                f"--warmup must be >= 0 and --repeats >= 1 (got {self.warmup}, {self.repeats})."
            )

    def for_device(self, kind: str) -> MeasureConfig:
        """This config with ``warmup`` and ``repeats`` that were not given set to
        :data:`DEFAULT_CALLS` of the device kind (``"cuda"``, else the CPU's)."""
        warmup, repeats = DEFAULT_CALLS["cuda" if kind == "cuda" else "cpu"]
        return replace(
            self,
            warmup=warmup if self.warmup is None else self.warmup,
            repeats=repeats if self.repeats is None else self.repeats,
        )


@dataclass(frozen=True, kw_only=True)
class Target:
    """One device to measure on."""

    device: torch.device  # torch device (cpu or cuda:<index>)
    device_id: str  # column identifier in the exit table (no spaces or colons)


def resolve_targets(*, gpus: Sequence[str] | None, cpu_threads: int | None) -> list[Target]:
    """Turn ``--gpu 0 1`` / ``--gpu all`` / ``--device cpu --threads N`` into devices.

    Raises:
        ProfilingError: without CUDA (suggesting ``--device cpu``), for a GPU index that does
            not exist (listing those that do) or for a thread count < 1.
    """
    from profiling.table import device_id_from_name

    if gpus is None:
        threads = 1 if cpu_threads is None else cpu_threads
        if threads < 1:
            raise ProfilingError(f"--threads must be >= 1 (got {threads}).")
        return [Target(device=torch.device("cpu"), device_id=f"cpu_{threads}t")]
    if not torch.cuda.is_available():
        built = torch.version.cuda or "no CUDA"
        raise ProfilingError(
            f"--gpu needs CUDA, but torch {torch.__version__} (built with {built}) sees no GPU "
            "on this machine; use --device cpu --threads N to measure on the CPU."
        )
    count = torch.cuda.device_count()
    names = [torch.cuda.get_device_name(i) for i in range(count)]
    listing = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
    if "all" in gpus and len(gpus) > 1:
        raise ProfilingError("give either --gpu all or a list of GPU indices, not both.")
    if list(gpus) == ["all"]:
        indices = list(range(count))
    else:
        indices = []
        for item in gpus:
            if not item.isdigit() or int(item) >= count:
                raise ProfilingError(
                    f"GPU {item} does not exist; this machine has {count} CUDA "
                    f"device{'s' if count != 1 else ''}: {listing}."
                )
            if int(item) not in indices:
                indices.append(int(item))
    ids = [device_id_from_name(names[i]) for i in indices]
    if len(set(ids)) < len(ids):  # identical GPUs: tell the columns apart by index
        ids = [f"{d}_cuda{i}" for d, i in zip(ids, indices, strict=True)]
    return [
        Target(device=torch.device("cuda", i), device_id=d)
        for i, d in zip(indices, ids, strict=True)
    ]


def time_exits(
    model: nn.Module,
    target: Target,
    config: MeasureConfig,
    *,
    timer: Timer | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[LatencyStats], str]:
    """Time ``exit_module(i)`` for every exit of ``model`` on ``target.device``.

    Returns:
        (statistics per exit, 1 first; timing mode).
    """
    device = target.device
    config = config.for_device(device.type)
    dtype = DTYPES[config.dtype]
    model = model.to(device=device, dtype=dtype).eval()
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.randn(config.batch_size, *config.input_shape, generator=generator)
    x = x.to(device=device, dtype=dtype)
    runs: list[Callable[[], Any]] = []
    timers: list[Timer] = []
    stats: list[LatencyStats] = []
    with torch.no_grad():
        for i in range(1, model.num_exits + 1):
            module = model.exit_module(i).eval()

            def run(module: nn.Module = module) -> torch.Tensor:
                return module(x)

            if timer is not None:
                exit_timer: Timer = timer
            elif device.type == "cuda" and config.cuda_graphs:
                run = capture_cuda_graph(run, device, warmup=max(1, config.warmup))
                exit_timer = CudaEventTimer(device, mode=CUDA_GRAPH)
            elif device.type == "cuda":
                exit_timer = CudaEventTimer(device, mode=CUDA_EVENTS)
            elif config.cpu_clock == "process":
                exit_timer = HostClockTimer(clock=time.process_time, mode=PROCESS_CPU_TIME)
            else:
                exit_timer = HostClockTimer()
            if config.interleave:
                runs.append(run)
                timers.append(exit_timer)
                continue
            stats.append(
                time_callable(run, timer=exit_timer, warmup=config.warmup, repeats=config.repeats)
            )
            if progress is not None:
                progress(i)
        if config.interleave:
            stats = time_interleaved(
                runs, timers=timers, warmup=config.warmup, repeats=config.repeats
            )
            if progress is not None:
                progress(model.num_exits)
    return stats, exit_timer.mode


def _device_metadata(target: Target, threads: int) -> dict[str, Any]:
    if target.device.type == "cuda":
        info = meta.cuda_metadata(target.device.index)
        info["nvml_before"] = meta.nvml_snapshot(target.device.index)
        return info
    return meta.cpu_metadata(threads)


def _record_load(info: dict[str, Any], when: str, threads: int, device_id: str) -> None:
    """Store the load average ``when`` ("before"/"after") and whether the machine was busy
    (:func:`profiling.metadata.busy_reason`); warn on stderr when it was."""
    load = meta.load_average()
    reason = meta.busy_reason(load, os.cpu_count(), threads)
    info[f"load_average_{when}"] = load  # 1, 5 and 15 minutes
    info[f"busy_{when}"] = reason
    if reason:
        print(
            f"warning: the machine was busy {when} timing {device_id} ({reason}); other work "
            "inflates latencies, so measure on a quiet machine (or add --cpu-clock process "
            "--interleave on the CPU).",
            file=sys.stderr,
        )


def measure_model(
    model: nn.Module,
    targets: Sequence[Target],
    config: MeasureConfig,
    *,
    threads: int = 1,
    show_progress: bool = False,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time every exit on every target.

    Returns:
        (device id -> median latency per exit in ms, device id -> metadata with the full
        statistics under ``latency_stats_ms`` and NVML readings before/after on GPUs).
    """
    from tqdm.auto import tqdm

    latency: dict[str, list[float]] = {}
    devices: dict[str, Any] = {}
    for target in targets:
        if target.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotune during warm-up, as deployed servers do
        info = _device_metadata(target, threads)
        used = threads if target.device.type == "cpu" else 1  # a GPU run drives it from 1 thread
        info["cpu_governor"] = meta.cpu_governor()
        _record_load(info, "before", used, target.device_id)
        bar = tqdm(
            total=model.num_exits, desc=f"timing {target.device_id}", disable=not show_progress
        )
        stats, mode = time_exits(
            model, target, config, progress=lambda i, bar=bar: bar.update(i - bar.n)
        )
        bar.close()
        if target.device.type == "cuda":
            info["nvml_after"] = meta.nvml_snapshot(target.device.index)
        _record_load(info, "after", used, target.device_id)
        info["timing_mode"] = mode
        info["latency_stats_ms"] = [
            {"exit": i, **s.as_dict()} for i, s in enumerate(stats, start=1)
        ]
        latency[target.device_id] = [round(s.median_ms, LATENCY_DECIMALS) for s in stats]
        devices[target.device_id] = info
    model.to("cpu", torch.float32)
    return latency, devices


# -- the command line ------------------------------------------------------------------------


def _load_model(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any], list[float] | None]:
    """The model, its provenance and its accuracies (None for latency only)."""
    if args.untrained:
        from multiexit.model import build_vgg16_multiexit

        torch.manual_seed(args.seed)
        try:
            model = build_vgg16_multiexit(
                num_classes=args.num_classes, width=args.width, head=args.head
            )
        except ValueError as exc:  # unknown head, non-positive width
            raise ProfilingError(str(exc)) from None
        info = {
            "run": None,
            "untrained": True,
            "config": {"num_classes": args.num_classes, "width": args.width, "head": args.head},
            "init_seed": args.seed,
        }
        return model.eval(), info, None
    from multiexit.export import load_run

    run = Path(args.run)
    try:
        model, manifest = load_run(run)
    except (OSError, ValueError) as exc:
        # multiexit's loader says what is wrong and what to do (missing manifest, checksum,
        # which of width/head/classes differ): one message, the same as multiexit's CLIs.
        raise ProfilingError(str(exc)) from None
    weights = run / manifest["weights"]["file"]
    info = {
        "run": str(run),
        "untrained": False,
        "config": manifest.get("config"),
        "weights_file": str(weights),
        "manifest_sha256": sha256_file(run / "manifest.json"),
        "data_source": manifest.get("data_source"),
    }
    info["checkpoint_sha256"] = sha256_file(weights)
    return model, info, _run_accuracy(run, manifest, model.num_exits)


def _run_accuracy(run: Path, manifest: dict[str, Any], num_exits: int) -> list[float] | None:
    """Per-exit accuracy from the run's ``exit_accuracy.csv`` (or its manifest), exit 1 first."""
    import pandas as pd

    acc_file = manifest.get("accuracy_file")
    if acc_file and (run / acc_file).is_file():
        frame = pd.read_csv(run / acc_file)
        if not {"exit", "accuracy"} <= set(frame.columns):
            raise ProfilingError(f"{run / acc_file} needs the columns 'exit' and 'accuracy'.")
        by_exit = {int(e): float(a) for e, a in zip(frame["exit"], frame["accuracy"], strict=True)}
    elif manifest.get("accuracies"):
        by_exit = {int(e): float(a) for e, a in manifest["accuracies"].items()}
    else:
        return None
    missing = [i for i in range(1, num_exits + 1) if i not in by_exit]
    if missing:
        raise ProfilingError(f"the run {run} has no accuracy for exits {missing}; re-evaluate it.")
    return [by_exit[i] for i in range(1, num_exits + 1)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m profiling.measure",
        description="Time every exit (prefix + head) of a multi-exit VGG-16 and write the exit "
        "table (CSV + JSON), and for a trained run the candidate exits and a Fig. 3-style plot.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--gpu", nargs="+", metavar="ID", help="CUDA device indices, or 'all'")
    where.add_argument("--device", choices=["cpu"], help="measure on the CPU instead of a GPU")
    p.add_argument(
        "--threads", type=bounded(int, low=1), default=1, help="CPU threads (torch.set_num_threads)"
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="an exported run folder, e.g. checkpoints/<run>")
    what.add_argument("--untrained", action="store_true", help="latency only, fresh weights")
    p.add_argument(
        "--width",
        type=bounded(float, low=0, low_open=True),
        help="channel width (--untrained; default 1.0)",
    )
    p.add_argument("--head", help="exit head design (--untrained; default conv_pool)")
    p.add_argument(
        "--num-classes", type=bounded(int, low=2), help="classes (--untrained; default 10)"
    )
    add_dataclass_args(p.add_argument_group("timing"), MeasureConfig, exclude=NOT_FLAGS)
    p.add_argument(
        "--k",
        type=bounded(int, low=1, high=NUM_EXITS),
        default=5,
        help=f"number of candidate exits to select, 1 to {NUM_EXITS} (default 5)",
    )
    p.add_argument("--out", help="output folder (default checkpoints/latency_<model>_<devices>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    on_gpu = args.gpu is not None
    architecture = {"width": args.width, "head": args.head, "num_classes": args.num_classes}
    if args.run and any(v is not None for v in architecture.values()):
        raise ProfilingError(
            "--width, --head and --num-classes apply to --untrained only; a run's manifest "
            "fixes its architecture."
        )
    args.width = 1.0 if args.width is None else args.width
    args.head = args.head or "conv_pool"
    args.num_classes = 10 if args.num_classes is None else args.num_classes
    if args.cpu_clock == "process" and (on_gpu or args.threads != 1):
        raise ProfilingError(
            "--cpu-clock process needs --device cpu --threads 1 (process CPU time sums the "
            "threads, so it is a latency only for one thread)."
        )
    if args.cuda_graphs and not on_gpu:
        raise ProfilingError("--cuda-graphs needs --gpu; CPU timing has no graphs to replay.")
    targets = resolve_targets(gpus=args.gpu, cpu_threads=None if on_gpu else args.threads)
    flags = {
        f.name: getattr(args, f.name) for f in fields(MeasureConfig) if f.name not in NOT_FLAGS
    }
    config = MeasureConfig(**flags).for_device("cuda" if on_gpu else "cpu")
    if not on_gpu:
        torch.set_num_threads(args.threads)
    model, model_info, accuracy = _load_model(args)
    name = Path(args.run).name if args.run else f"untrained_vgg16_w{args.width:g}"
    out = Path(args.out or f"checkpoints/latency_{name}_{'_'.join(t.device_id for t in targets)}")
    created = created_root(out)  # the outermost folder this run makes, if any
    ensure_writable_dir(out)  # fail before a long measurement, not after it
    try:
        return _measure_and_write(args, argv, model, model_info, accuracy, targets, config, out)
    except BaseException:
        # a failed or interrupted run leaves no folder behind (nor a file: writes are all or none)
        if created is not None and not any(p.is_file() for p in created.rglob("*")):
            shutil.rmtree(created, ignore_errors=True)
        raise


def _measure_and_write(args, argv, model, model_info, accuracy, targets, config, out) -> int:
    """Time every exit, then write the table, the candidates and the figure (all or none)."""
    from profiling.candidates import candidate_table, select_candidates
    from profiling.figure import exits_figure_writer
    from profiling.table import make_exit_table, table_writers

    latency, devices = measure_model(
        model, targets, config, threads=args.threads, show_progress=not args.quiet
    )
    metadata: dict[str, Any] = {
        "source": "measured",
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m profiling.measure "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "model": model_info,
        "measurement": {
            **asdict(config),
            "what": "exit_module(i): backbone prefix up to exit i + head i, eval mode, no_grad",
            "order": (
                "round-robin over exits, 1..17 in each round"
                if config.interleave
                else "exits timed one after another, 1 first"
            ),
            "latency_column": "median of the timed calls, ms",
        },
        "software": meta.software_metadata(),
        "devices": devices,
    }
    if model_info.get("checkpoint_sha256"):
        metadata["checkpoint_sha256"] = model_info["checkpoint_sha256"]  # merge checks it
    if accuracy is None:
        metadata["accuracy"] = (
            "none: latency-only table (untrained model or run without accuracies)"
        )
    table = make_exit_table(
        exits=list(range(1, model.num_exits + 1)),
        layers=list(model.exit_layers),
        latency_ms=latency,
        accuracy=accuracy,
        metadata=metadata,
    )
    csv_path = out / "exit_table.csv"
    writers = table_writers(table, csv_path)
    if accuracy is not None:
        selection = select_candidates(table, k=args.k)
        chosen = candidate_table(table, selection, source_path=str(csv_path))
        writers.update(table_writers(chosen, out / "candidates.csv"))
        writers[out / "exits.png"] = exits_figure_writer(table, candidates=selection.exits)
    write_files_atomically(writers)  # all files or none
    for path in writers:
        print(f"wrote {path}")
    if accuracy is not None:
        print(f"candidate exits: {list(selection.exits)}")
    for device, values in latency.items():
        print(
            f"{device}: " + " ".join(f"{i}:{v:.4g}" for i, v in enumerate(values, start=1)) + " ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
