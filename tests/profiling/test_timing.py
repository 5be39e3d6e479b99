"""Latency statistics and timers, driven by a fake clock with known durations."""

import math

import pytest

from profiling.errors import ProfilingError
from profiling.timing import (
    HOST_CLOCK,
    SYNCED_HOST_CLOCK,
    HostClockTimer,
    summarize,
    time_callable,
    time_interleaved,
)


class FakeClock:
    """A clock (seconds) that only moves when the timed function says how long it took."""

    def __init__(self) -> None:
        self.now = 100.0
        self.events: list[str] = []

    def __call__(self) -> float:
        self.events.append("clock")
        return self.now


def make_work(clock: FakeClock, durations_ms: list[float]):
    queue = list(durations_ms)

    def work() -> None:
        clock.events.append("work")
        clock.now += queue.pop(0) / 1e3

    return work, queue


def test_summarize_exact_values():
    stats = summarize([float(v) for v in range(1, 11)])  # 1..10 ms
    assert stats.median_ms == 5.5
    assert stats.p90_ms == pytest.approx(9.1, abs=1e-12)  # 9 + 0.1 * (10 - 9), linear rule
    assert stats.mean_ms == 5.5
    assert stats.std_ms == pytest.approx(math.sqrt(82.5 / 9), abs=1e-12)  # ddof = 1
    assert (stats.min_ms, stats.max_ms, stats.count) == (1.0, 10.0, 10)


def test_summarize_single_sample_has_zero_std():
    stats = summarize([2.5])
    assert (stats.median_ms, stats.p90_ms, stats.std_ms, stats.count) == (2.5, 2.5, 0.0, 1)


@pytest.mark.parametrize("bad", [[], [1.0, 0.0], [1.0, -2.0], [float("nan")], [float("inf")]])
def test_summarize_rejects_bad_samples(bad):
    with pytest.raises(ProfilingError):
        summarize(bad)


def test_time_callable_excludes_warmup_and_uses_the_clock():
    clock = FakeClock()
    # two warm-up calls of 50 ms must not appear; then five calls of known length
    work, queue = make_work(clock, [50.0, 50.0, 4.0, 1.0, 3.0, 2.0, 10.0])
    stats = time_callable(work, timer=HostClockTimer(clock=clock), warmup=2, repeats=5)
    assert queue == []
    assert stats.count == 5
    assert stats.median_ms == pytest.approx(3.0, abs=1e-9)
    assert stats.mean_ms == pytest.approx(4.0, abs=1e-9)
    assert stats.max_ms == pytest.approx(10.0, abs=1e-9)
    assert stats.p90_ms == pytest.approx(4.0 + 0.6 * 6.0, abs=1e-9)  # sorted 1,2,3,4,10; pos 3.6


def test_synchronised_timer_drains_the_device_around_each_call():
    clock = FakeClock()
    work, _ = make_work(clock, [1.0, 2.0])
    syncs: list[int] = []

    def synchronize() -> None:
        clock.events.append("sync")
        syncs.append(1)

    timer = HostClockTimer(clock=clock, synchronize=synchronize)
    assert timer.mode == SYNCED_HOST_CLOCK
    assert HostClockTimer().mode == HOST_CLOCK
    clock.events.clear()
    assert timer.time_once(work) == pytest.approx(1.0, abs=1e-9)
    assert clock.events == ["sync", "clock", "work", "sync", "clock"]


def test_time_callable_rejects_bad_counts():
    clock = FakeClock()
    work, _ = make_work(clock, [1.0])
    with pytest.raises(ProfilingError, match="repeats"):
        time_callable(work, timer=HostClockTimer(clock=clock), warmup=0, repeats=0)
    with pytest.raises(ProfilingError, match="clock that does not advance"):
        time_callable(lambda: None, timer=HostClockTimer(clock=clock), warmup=0, repeats=3)


def test_stats_as_dict_rounds_floats_only():
    d = summarize([1.0, 2.0, 4.0]).as_dict(decimals=3)
    assert d == {
        "median_ms": 2.0,
        "p90_ms": 3.6,
        "mean_ms": 2.333,
        "std_ms": 1.528,
        "min_ms": 1.0,
        "max_ms": 4.0,
        "count": 3,
    }


def test_interleaved_timing_goes_round_robin_after_each_warmup():
    clock = FakeClock()
    order: list[str] = []

    def make(name: str, durations: list[float]):
        queue = list(durations)

        def work() -> None:
            order.append(name)
            clock.now += queue.pop(0) / 1e3

        return work

    a = make("a", [9.0, 1.0, 2.0, 3.0])  # one warm-up call, then three timed
    b = make("b", [9.0, 10.0, 30.0, 20.0])
    timer = HostClockTimer(clock=clock)
    sa, sb = time_interleaved([a, b], timers=[timer, timer], warmup=1, repeats=3)
    assert order == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert (sa.median_ms, sa.count) == (pytest.approx(2.0), 3)
    assert (sb.median_ms, sb.max_ms) == (pytest.approx(20.0), pytest.approx(30.0))
    with pytest.raises(ProfilingError, match="one timer per function"):
        time_interleaved([a, b], timers=[timer], warmup=0, repeats=1)


class FakeCuda:
    """Stands in for ``torch.cuda`` (monkeypatched attribute by attribute): records which
    device is current when streams are made, graphs captured and replayed, events recorded."""

    def __init__(self) -> None:
        self.current = "cuda:0"
        self.log: list[tuple] = []

    def install(self, monkeypatch) -> None:
        import contextlib

        import torch

        fake = self

        @contextlib.contextmanager
        def device(dev):
            before, fake.current = fake.current, str(torch.device(dev))
            try:
                yield
            finally:
                fake.current = before

        class Stream:
            def __init__(self, device=None):
                self.device = str(torch.device(device)) if device is not None else fake.current
                fake.log.append(("stream", self.device, fake.current))

            def wait_stream(self, other):
                pass

        class CUDAGraph:
            def replay(self):
                fake.log.append(("replay", fake.current))

        @contextlib.contextmanager
        def graph(cuda_graph, pool=None, stream=None):
            fake.log.append(("capture", getattr(stream, "device", None), fake.current))
            yield

        @contextlib.contextmanager
        def stream(s):
            yield

        class Event:
            def __init__(self, enable_timing=False):
                self.name = None

            def record(self, s=None):
                fake.log.append(("record", fake.current))

            def synchronize(self):
                pass

            def elapsed_time(self, other):
                return 2.5

        def synchronize(dev=None):
            fake.log.append(("synchronize", str(torch.device(dev)) if dev is not None else None))

        for name, value in {
            "device": device,
            "Stream": Stream,
            "CUDAGraph": CUDAGraph,
            "graph": graph,
            "stream": stream,
            "Event": Event,
            "synchronize": synchronize,
            "current_stream": lambda dev=None: Stream(dev),
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)


def test_cuda_graph_is_captured_on_a_stream_of_its_own_device(monkeypatch):
    from profiling.timing import capture_cuda_graph

    fake = FakeCuda()
    fake.install(monkeypatch)
    calls = []
    replay = capture_cuda_graph(lambda: calls.append(fake.current), "cuda:1", warmup=2)
    captures = [e for e in fake.log if e[0] == "capture"]
    # the capture stream belongs to cuda:1 and cuda:1 is current, although cuda:0 was current
    assert captures == [("capture", "cuda:1", "cuda:1")]
    assert calls == ["cuda:1"] * 3  # two warm-up calls on the side stream, one captured
    assert fake.current == "cuda:0"
    fake.log.clear()
    replay()  # called from code where cuda:0 is current: the replay switches to cuda:1
    assert fake.log == [("replay", "cuda:1")]


def test_cuda_event_timer_drains_the_warmup_before_the_first_sample(monkeypatch):
    from profiling.timing import CUDA_GRAPH, CudaEventTimer

    fake = FakeCuda()
    fake.install(monkeypatch)
    timer = CudaEventTimer("cuda:1", mode=CUDA_GRAPH)

    def work() -> None:
        fake.log.append(("work", fake.current))

    stats = time_callable(work, timer=timer, warmup=2, repeats=2)
    assert (stats.median_ms, stats.count, timer.mode) == (2.5, 2, CUDA_GRAPH)
    events = [e for e in fake.log if e[0] != "stream"]
    assert events == [
        ("work", "cuda:0"),  # warm-up
        ("work", "cuda:0"),
        ("synchronize", "cuda:1"),  # drained before the first timed call
        ("record", "cuda:1"), ("work", "cuda:1"), ("record", "cuda:1"),
        ("record", "cuda:1"), ("work", "cuda:1"), ("record", "cuda:1"),
    ]  # fmt: skip
