"""Run the baseline policies in every scenario and print the Section VI-D metrics table.

    python -m offload.sim.run_baselines --slots 10000 --seed 0

Every (scenario, policy) pair runs on its own environment with the same seed, so all policies
see the same tasks and channels. `--optimum-every K` also computes the normalised reward of
eq. (17) on every K-th slot (the exact optimum costs tens of ms per slot at M = 14).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from exit_tables.schema import add_main_exit_flag
from grle_common.cli import UserError, bounded, run_cli

from ..exit_table import load_exit_table
from .baselines import BASELINES
from .config import MECConfig
from .env import OffloadEnv
from .metrics import BatchMetrics, Metrics, normalised_reward
from .optimum import optimal_decision
from .state import SlotState

__all__ = ["run_policy", "main", "POLICIES"]

Policy = Callable[[SlotState, np.random.Generator], np.ndarray]
#: the baselines plus the per-slot exact optimum (slow: use few slots)
POLICIES: dict[str, Policy] = {
    **BASELINES,
    "optimum": lambda state, rng: optimal_decision(state).decision,
}


def run_policy(
    env: OffloadEnv, policy: Policy, *, slots: int, seed: int, optimum_every: int = 0
) -> Metrics:
    """Run `policy` for `slots` slots from `env.reset(seed=seed)` and return the metrics."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed + 1_000_003)
    acc = BatchMetrics(1)
    for slot in range(slots):
        state = env.slot_state
        decision = policy(state, rng)
        ratio = None
        if optimum_every and slot % optimum_every == 0:
            ratio = normalised_reward(state, decision)
        _, _, _, _, info = env.step(decision)
        acc.add(info, None if ratio is None else [ratio])
    return acc.result()[0]


def config_from_args(args: argparse.Namespace, scenario: int) -> MECConfig:
    return MECConfig(
        num_devices=args.num_devices,
        slot_ms=args.slot_ms,
        scenario=scenario,
        kb_reading=args.kb_reading,
        psi_form=args.psi_form,
        late_policy=args.late_policy,
        completion_origin=args.completion_origin,
        rate_model=args.rate_model,
        compute_scale=args.compute_scale,
        cross_slot_queue=args.cross_slot_queue,
        dynamic_topology=args.dynamic_topology,
        max_devices=args.max_devices,
    )


def parser() -> argparse.ArgumentParser:
    defaults = MECConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--table", default="checkpoints/paper_table1.csv", help="candidate exit table CSV"
    )
    count, positive = bounded(int, 1), bounded(float, 0, low_open=True)
    add_main_exit_flag(p)
    p.add_argument("--slots", type=count, default=10_000, help="slots per (scenario, policy)")
    p.add_argument("--seed", type=bounded(int, 0), default=0)
    p.add_argument("--num-devices", type=count, default=defaults.num_devices)
    p.add_argument("--slot-ms", type=positive, default=defaults.slot_ms)
    p.add_argument("--scenarios", type=bounded(int, 1, 4), nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--policies", nargs="+", default=list(BASELINES), choices=list(POLICIES))
    p.add_argument("--kb-reading", default=defaults.kb_reading)
    p.add_argument("--psi-form", default=defaults.psi_form)
    p.add_argument("--late-policy", default=defaults.late_policy)
    p.add_argument("--completion-origin", default=defaults.completion_origin)
    p.add_argument("--rate-model", default=defaults.rate_model)
    p.add_argument("--compute-scale", type=positive, default=defaults.compute_scale)
    p.add_argument(
        "--cross-slot-queue",
        default=defaults.cross_slot_queue,
        choices=["free_at", "fcfs"],
        help="ES queue across slots (MECConfig.cross_slot_queue)",
    )
    p.add_argument("--dynamic-topology", action="store_true")
    p.add_argument(
        "--max-devices", type=count, default=None, help="padding size (dynamic topology)"
    )
    p.add_argument(
        "--optimum-every",
        type=bounded(int, 0),
        default=0,
        help="eq. (17) on every K-th slot (0: off)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> list[dict[str, object]]:
    """Parse arguments, run, print the table; returns its rows."""
    p = parser()
    args = p.parse_args(argv)
    table = load_exit_table(
        args.table, main_exit=args.main_exit
    )  # ExitTableError: run_cli prints its one sentence
    try:  # the flags together (e.g. --max-devices below --num-devices), before any work
        configs = {scenario: config_from_args(args, scenario) for scenario in args.scenarios}
    except ValueError as exc:  # MECConfig says which value and why
        raise UserError(f"{exc} Fix the flag and run again.") from None
    rows = []
    header = (
        f"{'scenario':>8} {'policy':>18} {'avg_acc':>8} {'SSP':>6} {'thr/s':>8} "
        f"{'mean_Q':>7} {'Q_hat':>6} {'s':>6}"
    )
    print(
        f"M={args.num_devices} tau={args.slot_ms} ms slots={args.slots} seed={args.seed} "
        f"kb={args.kb_reading} psi={args.psi_form} late={args.late_policy} "
        f"origin={args.completion_origin} rates={args.rate_model} compute_scale={args.compute_scale} "
        f"queue={args.cross_slot_queue} dynamic={args.dynamic_topology}"
    )
    print(header)
    for scenario in args.scenarios:
        env = OffloadEnv(table, configs[scenario])
        for name in args.policies:
            t0 = time.perf_counter()
            m = run_policy(
                env,
                POLICIES[name],
                slots=args.slots,
                seed=args.seed,
                optimum_every=args.optimum_every,
            )
            secs = time.perf_counter() - t0
            rows.append({"scenario": scenario, "policy": name, **m._asdict(), "seconds": secs})
            print(
                f"{scenario:>8} {name:>18} {m.avg_accuracy:8.3f} {m.ssp:6.3f} "
                f"{m.throughput_per_s:8.1f} {m.mean_q:7.3f} {m.mean_normalised_reward:6.3f} {secs:6.1f}",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    sys.exit(run_cli(main))
