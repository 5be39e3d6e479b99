"""Latency statistics and timers with an injectable clock.

A *timer* measures one call of a function and returns its duration in milliseconds. Three
timers cover the cases the profiler needs:

- :class:`HostClockTimer` reads a host clock around the call, synchronising the device before
  and after when given a ``synchronize`` function (CPU timing, or "synchronised clocks" on a GPU).
  Its clock is injectable so that tests can drive it with known durations.
- :class:`CudaEventTimer` records CUDA events around the call on the current stream and reads
  the elapsed device time once the end event has completed (device work is asynchronous, so a
  bare host clock would only time the kernel launches).
- :func:`capture_cuda_graph` turns a function into a CUDA-graph replay, which removes the
  per-kernel launch overhead; timing the replay with :class:`CudaEventTimer` gives the
  compute-bound latency.

:func:`time_callable` runs warm-up calls (cuDNN autotuning, allocator, caches), then ``repeats``
timed calls, and summarises them with :func:`summarize`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from profiling.errors import ProfilingError

#: timing modes written into the table's metadata
HOST_CLOCK = "host_clock"  # perf_counter around the call (CPU)
SYNCED_HOST_CLOCK = "synchronized_host_clock"  # device synchronised before and after the call
CUDA_EVENTS = "cuda_events"  # CUDA events around eager launches (includes launch overhead)
CUDA_GRAPH = "cuda_graph_replay"  # CUDA events around a CUDA-graph replay (compute only)
PROCESS_CPU_TIME = "process_cpu_time"  # CPU time of the process (1 thread: immune to preemption)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated latency measurements of one exit on one device (milliseconds)."""

    median_ms: float  # median of the samples, ms (the value written to the exit table)
    p90_ms: float  # 90th percentile (numpy's linear interpolation between order statistics), ms
    mean_ms: float  # arithmetic mean, ms
    std_ms: float  # sample standard deviation (ddof=1; 0.0 for a single sample), ms
    min_ms: float  # fastest sample, ms
    max_ms: float  # slowest sample, ms
    count: int  # number of timed samples (warm-up calls excluded)

    def as_dict(self, *, decimals: int = 6) -> dict[str, float | int]:
        """The statistics as a JSON-ready dict, floats rounded to ``decimals`` places."""
        out: dict[str, float | int] = {}
        for name, value in self.__dict__.items():
            out[name] = value if isinstance(value, int) else round(float(value), decimals)
        return out


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Median, p90, mean, standard deviation, min, max and count of latency samples in ms.

    Raises:
        ProfilingError: if there are no samples or a sample is not a finite positive number.
    """
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.ndim != 1 or samples.size == 0:
        raise ProfilingError("no latency samples to summarise; use at least one repeat.")
    if not np.all(np.isfinite(samples)) or np.any(samples <= 0.0):
        raise ProfilingError(
            "a latency sample is not a finite positive number of milliseconds; "
            "check the timer (a clock that does not advance gives zero durations)."
        )
    std = float(np.std(samples, ddof=1)) if samples.size > 1 else 0.0
    return LatencyStats(
        median_ms=float(np.median(samples)),
        p90_ms=float(np.percentile(samples, 90.0)),
        mean_ms=float(np.mean(samples)),
        std_ms=std,
        min_ms=float(np.min(samples)),
        max_ms=float(np.max(samples)),
        count=int(samples.size),
    )


class Timer(Protocol):
    """Measures one call of ``fn`` and returns its duration in milliseconds."""

    mode: str

    def time_once(self, fn: Callable[[], Any]) -> float: ...


class HostClockTimer:
    """Host clock around one call; with ``synchronize``, the device is drained before and after.

    Args:
        clock: returns the current time in seconds (``time.perf_counter`` by default; tests
            inject a fake clock).
        synchronize: waits until the device is idle (``torch.cuda.synchronize`` on a GPU), or
            ``None`` on the CPU where calls are synchronous.
        mode: the timing mode to record (default: derived from ``synchronize``).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        synchronize: Callable[[], Any] | None = None,
        mode: str | None = None,
    ) -> None:
        self.clock = clock
        self.synchronize = synchronize
        self.mode = mode or (HOST_CLOCK if synchronize is None else SYNCED_HOST_CLOCK)

    def time_once(self, fn: Callable[[], Any]) -> float:
        if self.synchronize is not None:
            self.synchronize()  # earlier queued work must not be billed to this call
        start = self.clock()
        fn()
        if self.synchronize is not None:
            self.synchronize()  # the call's device work must be finished before reading the clock
        return (self.clock() - start) * 1e3


class CudaEventTimer:
    """CUDA events recorded on the current stream around one call (device time, ms).

    ``mode`` is :data:`CUDA_EVENTS`, or :data:`CUDA_GRAPH` when the timed function is a graph
    replay made by :func:`capture_cuda_graph`.
    """

    def __init__(self, device: Any, *, mode: str = CUDA_EVENTS) -> None:
        import torch

        self.device = torch.device(device)
        self.mode = mode
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def synchronize(self) -> None:
        """Wait until the device is idle. :func:`time_callable` calls it after the warm-up, so
        that queued warm-up kernels cannot delay the first timed call's start event."""
        import torch

        torch.cuda.synchronize(self.device)

    def time_once(self, fn: Callable[[], Any]) -> float:
        import torch

        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            self._start.record(stream)
            fn()
            self._end.record(stream)
            self._end.synchronize()  # elapsed_time is only defined once the end event completed
            return float(self._start.elapsed_time(self._end))


def capture_cuda_graph(fn: Callable[[], Any], device: Any, *, warmup: int = 3) -> Callable[[], Any]:
    """Capture the device work of ``fn`` into a CUDA graph and return a function replaying it.

    ``fn`` must use static input tensors (allocated before the capture); the warm-up runs on a
    side stream, as CUDA-graph capture requires. The capture runs on a stream of ``device``
    itself: without ``stream=``, ``torch.cuda.graph`` uses one capture stream shared by all
    graphs, created on whichever device was current at the first capture, so a second GPU's
    graph would be captured on the first GPU. The replay makes ``device`` current, because a
    graph is launched on the current device's stream.
    """
    import torch

    device = torch.device(device)
    with torch.cuda.device(device):
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(max(1, warmup)):
                fn()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        capture_stream = torch.cuda.Stream(device=device)
        with torch.cuda.graph(graph, stream=capture_stream):
            fn()
        torch.cuda.synchronize(device)

    def replay() -> None:
        with torch.cuda.device(device):
            graph.replay()

    return replay


def time_callable(
    fn: Callable[[], Any], *, timer: Timer, warmup: int, repeats: int
) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then time ``repeats`` calls with ``timer``.

    Raises:
        ProfilingError: if ``warmup`` < 0 or ``repeats`` < 1.
    """
    if warmup < 0 or repeats < 1:
        raise ProfilingError(
            f"warm-up must be >= 0 and repeats >= 1 (got warm-up {warmup}, repeats {repeats})."
        )
    for _ in range(warmup):
        fn()
    sync = getattr(timer, "synchronize", None)
    if warmup and callable(sync):
        sync()  # warm-up work queued on a device must not leak into the first timed call
    samples = [timer.time_once(fn) for _ in range(repeats)]
    if any(not math.isfinite(s) for s in samples):
        raise ProfilingError("the timer returned a non-finite duration; check the device.")
    return summarize(samples)


def time_interleaved(
    fns: Sequence[Callable[[], Any]], *, timers: Sequence[Timer], warmup: int, repeats: int
) -> list[LatencyStats]:
    """Like :func:`time_callable` for several functions, timed round-robin: after each
    function's warm-up, round r times call r of every function in turn. Slow drifts and bursts
    of load from other processes then spread over all functions instead of biasing the one that
    happened to be timed at that moment.

    Raises:
        ProfilingError: if ``warmup`` < 0, ``repeats`` < 1 or the lengths differ.
    """
    if warmup < 0 or repeats < 1:
        raise ProfilingError(
            f"warm-up must be >= 0 and repeats >= 1 (got warm-up {warmup}, repeats {repeats})."
        )
    if len(fns) != len(timers):
        raise ProfilingError("give one timer per function.")
    for fn, timer in zip(fns, timers, strict=True):
        for _ in range(warmup):
            fn()
        sync = getattr(timer, "synchronize", None)
        if warmup and callable(sync):
            sync()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for j, (fn, timer) in enumerate(zip(fns, timers, strict=True)):
            samples[j].append(timer.time_once(fn))
    return [summarize(s) for s in samples]
