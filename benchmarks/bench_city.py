"""Speed of the city network and its references, against the number of devices.

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

Then the GRLE actors at scale: GRLE (the paper's actor) and GRLE+ trained
for `--train-slots` slots on a small city (20 devices, 4 ES, 2 nearest; the scale
experiment's training), then on the same slots of every M: the actor alone (sparse encoder +
forward, `offload.agents.sparse`) and actor + critic (`offload.agents.scale_critic.
decide_at_scale`, S = 16, no repair), medians and slopes; the candidate set's quality/time
trade-off (S in {1, 4, 16} x repair off / one local-search pass over every device below its
bound / over the devices earning < 0.25 of it; predicted Q / bound on the same slots) at M = 200 and 1,000; and the peak memory of the whole process (ru_maxrss).

Targets (one core, medians, M = 1,000, N = 50, L = 5): environment step <= 20 ms,
GRLE actor <= 20 ms per slot, actor + critic <= 100 ms, memory of the whole run <= 2 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from grle_common.cli import bounded
from offload.agents.scale_critic import ScaleCriticConfig, decide_at_scale
from offload.agents.sparse import encode_sparse, sparse_relaxed
from offload.exit_table import load_exit_table
from offload.experiments.scale import city_config, train_on_city
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
from profiling.metadata import cpu_model

REPO = Path(__file__).resolve().parents[1]
WHAT = ("env.step", "score 1", "greedy", "local search", "random", "bound")


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


ACTORS = ("GRLE", "GRLE+")
#: (S, repair passes, repair_below): no repair; one pass over every device below its bound;
#: one pass over the devices earning < 0.25 of their bound
CANDIDATE_SETS = tuple((s, r, b) for s in (1, 4, 16) for r, b in ((0, 1.0), (1, 1.0), (1, 0.25)))


def city_slots(table, cfg: CityConfig, count: int, seed: int) -> list:
    """`count` consecutive slot states of a city run by the greedy (after 3 warm-up slots)."""
    env = CityEnv(table, cfg)
    env.reset(seed=seed)
    states = []
    for i in range(3 + count):
        if i >= 3:
            states.append(env.slot_state)
        env.step(greedy_decision(env.slot_state))
    return states


def bench_actors(table, task: MECConfig, args, actors: dict) -> None:
    """Actor alone and actor + critic (S = 16) against M, medians and slopes; then the
    candidate-set table at M = 200 and 1,000 (if among the sizes)."""
    print(
        f"\nGRLE actors at scale ({args.train_slots} training slots on a 20-device, 4-ES city); "
        "medians over the same slots, ms wall; actor = sparse encoder + forward, "
        "+critic = actor + S = 16 candidates scored (no repair)"
    )
    print(
        f"{'M':>6} {'N':>4} "
        + " ".join(f"{n + w:>16}" for n in actors for w in (" actor", " act+critic"))
    )
    times: dict[str, list[float]] = {}
    slots: dict[int, list] = {}
    for m in args.sizes:
        n = max(args.k, m // args.devices_per_server)
        cfg = CityConfig(num_devices=m, num_servers=n, k_nearest=args.k, task=task)
        slots[m] = states = city_slots(table, cfg, args.repeats, args.seed)
        cells = []
        for name, actor in actors.items():
            actor_ms, critic_ms = [], []
            for state in states:
                _, w, _ = timed(
                    lambda s=state, a=actor: sparse_relaxed(a, encode_sparse(s, a.config))
                )
                actor_ms.append(w)
                _, w, _ = timed(lambda s=state, a=actor: decide_at_scale(a, s))
                critic_ms.append(w)
            for key, values in ((name + " actor", actor_ms), (name + " act+critic", critic_ms)):
                times.setdefault(key, []).append(float(np.median(values)))
                cells.append(times[key][-1])
        print(f"{m:>6} {n:>4} " + " ".join(f"{c:>16.2f}" for c in cells), flush=True)
    if len(args.sizes) > 1:
        log_m = np.log(np.array(args.sizes, dtype=float))
        slopes = [np.polyfit(log_m, np.log(v), 1)[0] for v in times.values()]
        print("slope  " + " ".join(f"{s:>16.2f}" for s in slopes) + "   (wall time ~ M^slope)")
    for m in (200, 1000):
        if m not in slots:
            continue
        states = slots[m]
        bounds = np.array([upper_bound(s) for s in states])
        print(
            f"\ncandidate set at M={m} ({len(states)} slots): predicted Q / bound (mean over the "
            "slots of each slot's ratio) and decision ms (median)"
        )
        print(f"{'actor':>8} {'S':>4} {'repair':>7} {'below':>6} {'Q/bound':>9} {'ms':>9}")
        for name, actor in actors.items():
            for num, passes, below in CANDIDATE_SETS:
                critic = ScaleCriticConfig(num, passes, below)
                q, ms = [], []
                for state in states:
                    out, w, _ = timed(lambda s=state, c=critic, a=actor: decide_at_scale(a, s, c))
                    q.append(out.q)
                    ms.append(w)
                ratio = float(np.mean(np.array(q) / bounds))
                print(
                    f"{name:>8} {num:>4} {passes:>7} {below:>6.2f} {ratio:>9.3f} "
                    f"{np.median(ms):>9.1f}"
                )
        greedy_q = [float(score_decisions(s, greedy_decision(s))[0]) for s in states]
        print(f"{'greedy':>8} {'':>4} {'':>7} {'':>6} {float(np.mean(greedy_q / bounds)):>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=bounded(int, low=1), nargs="+", default=[50, 100, 200, 500, 1000]
    )
    parser.add_argument("--devices-per-server", type=bounded(int, low=1), default=20)
    parser.add_argument(
        "--k", type=bounded(int, low=1), default=5, help="each device reaches its k nearest ES"
    )
    parser.add_argument(
        "--repeats", type=bounded(int, low=1), default=7, help="slots timed per size"
    )
    parser.add_argument("--seed", type=bounded(int, low=0), default=0)
    parser.add_argument("--scenario", type=bounded(int, low=1, high=4), default=2)
    parser.add_argument("--compute-scale", type=bounded(float, low=0, low_open=True), default=1.0)
    parser.add_argument("--table", default=str(REPO / "checkpoints" / "paper_table1.csv"))
    parser.add_argument(
        "--subnets", type=bounded(int, low=0), default=10, help="sub-networks for the optimum"
    )
    parser.add_argument(
        "--train-slots",
        type=bounded(int, low=1),
        default=300,
        help="training slots of each GRLE actor",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = load_exit_table(args.table)
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; python "
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
    small = city_config(task, 20, 4, 2)
    t0 = time.perf_counter()
    actors = {
        name: train_on_city(name, table, small, args.seed, args.train_slots).actor
        for name in ACTORS
    }
    print(f"\ntrained {', '.join(ACTORS)} in {time.perf_counter() - t0:.1f} s")
    bench_actors(table, task, args, actors)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(f"\npeak memory of this whole run (ru_maxrss): {peak_mb:.0f} MB (target <= 2,048 MB)")


if __name__ == "__main__":
    main()
