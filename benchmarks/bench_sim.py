"""Speed of the MEC simulator: env steps per second, scoring S = M*N*L candidates of one slot,
and the exact per-slot optimum at M = 14, N = 2, L = 5.

    OMP_NUM_THREADS=1 python benchmarks/bench_sim.py [--slots 200] [--seed 0]

Targets (issue 4): scoring S = 140 candidates <= 0.5 ms; exact optimum <= 100 ms median.
Reports medians (and p90/max for the optimum) over the slots of a seeded scenario-2 run.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from offload.exit_table import load_exit_table
from offload.sim import MECConfig, OffloadEnv, optimal_decision, score_decisions
from offload.sim.baselines import greedy_decision

REPO = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(fn, repeat: int, blocks: int = 5) -> tuple[float, float, float]:
    """Timings of `fn` in ms: (median wall time, median CPU time of this process, smallest
    median wall time of `blocks` consecutive blocks). On a shared machine the CPU time leaves
    out the time other jobs held the core, and the best block shows the uncontended cost (as
    `timeit` recommends the minimum)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    best = min(float(np.median(block)) for block in np.array_split(np.array(wall), blocks))
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu)), 1e3 * best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slots", type=int, default=200, help="slots for the optimum timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenario", type=int, default=2)
    args = p.parse_args()
    table = load_exit_table(REPO / "checkpoints" / "paper_table1.csv")
    cfg = MECConfig(num_devices=14, slot_ms=30.0, scenario=args.scenario)
    env = OffloadEnv(table, cfg)
    env.reset(seed=args.seed)
    print(
        f"machine: {cpu_name()}, python {platform.python_version()}, "
        f"numpy {np.__version__}; M=14 N=2 L=5 scenario={args.scenario} seed={args.seed}"
    )

    # env steps per second with a fixed decision (the simulator alone)
    decision = np.zeros(env.slot_state.num_devices, dtype=np.int64)
    steps = 2000
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        env.step(decision)
    rate = steps / (time.perf_counter() - t0)
    cpu_rate = steps / (time.process_time() - c0)
    print(f"env.step: {rate:,.0f} steps/s wall, {cpu_rate:,.0f} steps/s CPU ({steps} steps)")

    rng = np.random.default_rng(args.seed)
    state = env.slot_state
    candidates = rng.integers(
        0, state.num_options, (state.num_devices * state.num_options, state.num_devices)
    )
    wall, cpu, best = median_ms(lambda: score_decisions(state, candidates), 1000)
    print(
        f"score_decisions S={len(candidates)}: {wall:.3f} ms median wall, {cpu:.3f} ms median CPU, "
        f"{best:.3f} ms best block (target <= 0.5 ms)"
    )
    wall, cpu, best = median_ms(lambda: greedy_decision(state), 500)
    print(
        f"greedy_decision: {wall:.3f} ms median wall, {cpu:.3f} ms median CPU, {best:.3f} ms best block"
    )

    for scale in (1.0, 4.0):  # the stated numbers, and the paper's regime (docs/calibration.md)
        env = OffloadEnv(table, cfg.replace(compute_scale=scale))
        env.reset(seed=args.seed)
        times, cpus, gaps = [], [], []
        for _ in range(args.slots):
            state = env.slot_state
            t0, c0 = time.perf_counter(), time.process_time()
            best = optimal_decision(state)
            cpus.append(1e3 * (time.process_time() - c0))
            times.append(1e3 * (time.perf_counter() - t0))
            gaps.append(best.q - score_decisions(state, greedy_decision(state))[0])
            env.step(best.decision)
        t = np.array(times)
        print(
            f"optimal_decision, compute_scale={scale}, {args.slots} slots: median {np.median(t):.1f} ms, "
            f"p90 {np.percentile(t, 90):.1f} ms, max {t.max():.1f} ms wall (median CPU "
            f"{np.median(cpus):.1f} ms; target median <= 100 ms); "
            f"optimum beats greedy in {np.mean(np.array(gaps) > 1e-9):.0%} of slots"
        )


if __name__ == "__main__":
    main()
