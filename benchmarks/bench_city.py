"""Speed of the city network (issue 13) and its references, against the number of devices.

    OMP_NUM_THREADS=1 python benchmarks/bench_city.py [--sizes 50 100 200 500 1000]
        [--devices-per-server 20] [--k 5] [--repeats 7] [--seed 0] [--scenario 2]
        [--compute-scale 1] [--table checkpoints/paper_table1.csv] [--subnets 10]

For each M: N = max(k, M / devices-per-server) ES at the default density (25 per km^2), each
device reaching its k nearest; the environment is run with the greedy, and on `--repeats`
consecutive slots it times: one environment step (serve the slot with `true_slot`, move the
city, draw the next slot), scoring one decision (`score_decisions`), the greedy, the local
search from the greedy (2 passes), a random decision and the upper bound. Medians over the
slots (wall and CPU time of this process, ms), then the log-log slope of each median against
M (time ~ M^slope). Then, at the largest M, the references' predicted Q on one slot and, on
`--subnets` sub-networks of up to 10 devices sharing an ES, the exact optimum against the
bound, the greedy and the local search (how tight the bound is where it can be checked).

Target (issue 13): environment step <= 20 ms at M = 1,000, N = 50, L = 5 (one core, median).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from offload.exit_table import load_exit_table
from offload.sim import MECConfig, optimal_decision, score_decisions
from offload.sim.city import CityConfig
from offload.sim.city_env import CityEnv
from offload.sim.scale_refs import (
    greedy_decision,
    local_search,
    random_decision,
    sub_network,
    upper_bound,
)

REPO = Path(__file__).resolve().parents[1]
WHAT = ("env.step", "score 1", "greedy", "local search", "random", "bound")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """(result, wall ms, CPU ms of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, 1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)


def bench_size(table, cfg: CityConfig, repeats: int, seed: int) -> tuple[dict, CityEnv]:
    """Medians (wall, CPU) in ms of every WHAT over `repeats` slots of one city."""
    env = CityEnv(table, cfg)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(3):  # let backlogs build up
        env.step(greedy_decision(env.slot_state))
    times = {name: ([], []) for name in WHAT}

    def add(name: str, wall: float, cpu: float) -> None:
        times[name][0].append(wall)
        times[name][1].append(cpu)

    for _ in range(repeats):
        state = env.slot_state
        greedy, *t = timed(lambda s=state: greedy_decision(s))
        add("greedy", *t)
        _, *t = timed(lambda s=state, g=greedy: score_decisions(s, g))
        add("score 1", *t)
        _, *t = timed(lambda s=state, g=greedy: local_search(s, g, max_passes=2))
        add("local search", *t)
        _, *t = timed(lambda s=state: random_decision(s, rng))
        add("random", *t)
        _, *t = timed(lambda s=state: upper_bound(s))
        add("bound", *t)
        _, *t = timed(lambda g=greedy: env.step(g))
        add("env.step", *t)
    return {k: (float(np.median(w)), float(np.median(c))) for k, (w, c) in times.items()}, env


def anchor(state, subnets: int) -> None:
    """The references on one slot, and the exact optimum on small sub-networks."""
    greedy = greedy_decision(state)
    ls = local_search(state, greedy)
    rnd = random_decision(state, np.random.default_rng(0))
    bound = upper_bound(state)
    q_g, q_r = score_decisions(state, np.stack([greedy, rnd]))
    print(
        f"one slot, M={state.num_devices}: predicted Q greedy {q_g:.2f}, local search {ls.q:.2f} "
        f"({ls.moves} moves), random {q_r:.2f}, bound {bound:.2f}; "
        f"greedy/bound {q_g / bound:.3f}, local search/bound {ls.q / bound:.3f}"
    )
    rows = []
    t0 = time.perf_counter()
    for n in range(min(subnets, state.num_servers)):
        devices = np.flatnonzero(state.link[:, n])[:10]
        sub = sub_network(state, devices)
        opt = optimal_decision(sub)
        if opt.q <= 0:
            continue
        g = float(score_decisions(sub, greedy_decision(sub))[0])
        rows.append(
            (opt.q / upper_bound(sub), g / opt.q, local_search(sub).q / opt.q, sub.num_devices)
        )
    rows = np.array(rows)
    print(
        f"{len(rows)} sub-networks of {int(rows[:, 3].min())}-{int(rows[:, 3].max())} devices sharing an ES "
        f"({time.perf_counter() - t0:.1f} s): optimum/bound median {np.median(rows[:, 0]):.3f} "
        f"(min {rows[:, 0].min():.3f}), greedy/optimum median {np.median(rows[:, 1]):.3f} "
        f"(min {rows[:, 1].min():.3f}), local search/optimum median {np.median(rows[:, 2]):.3f} "
        f"(min {rows[:, 2].min():.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    parser.add_argument("--devices-per-server", type=int, default=20)
    parser.add_argument("--k", type=int, default=5, help="each device reaches its k nearest ES")
    parser.add_argument("--repeats", type=int, default=7, help="slots timed per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", type=int, default=2)
    parser.add_argument("--compute-scale", type=float, default=1.0)
    parser.add_argument("--table", default=str(REPO / "checkpoints" / "paper_table1.csv"))
    parser.add_argument("--subnets", type=int, default=10, help="sub-networks for the optimum")
    args = parser.parse_args()
    table = load_exit_table(args.table)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; python "
        f"{platform.python_version()}, numpy {np.__version__}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(
        f"table {Path(args.table).name} (L={table.num_exits}), scenario {args.scenario}, "
        f"compute_scale {args.compute_scale}, k={args.k}, seed {args.seed}, {args.repeats} slots "
        "per size; medians, ms wall (CPU)"
    )
    task = MECConfig(scenario=args.scenario, compute_scale=args.compute_scale)
    print(f"{'M':>6} {'N':>4} " + " ".join(f"{name:>20}" for name in WHAT))
    results, env = {}, None
    for m in args.sizes:
        n = max(args.k, m // args.devices_per_server)
        cfg = CityConfig(num_devices=m, num_servers=n, k_nearest=args.k, task=task)
        results[m], env = bench_size(table, cfg, args.repeats, args.seed)
        cells = " ".join(f"{w:>11.3f} ({c:>6.3f})" for w, c in (results[m][k] for k in WHAT))
        print(f"{m:>6} {n:>4} {cells}", flush=True)
    if len(args.sizes) > 1:
        log_m = np.log(np.array(args.sizes, dtype=float))
        slopes = [
            np.polyfit(log_m, np.log([results[m][k][0] for m in args.sizes]), 1)[0] for k in WHAT
        ]
        print("slope  " + " ".join(f"{s:>20.2f}" for s in slopes) + "   (wall time ~ M^slope)")
    anchor(env.slot_state, args.subnets)


if __name__ == "__main__":
    main()
