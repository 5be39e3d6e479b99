"""DROO at DROO's published hyper-parameters: does the learner stay unsaturated over a long run?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_droo_stability.py \
        [--slots 30000] [--window 1000] [--remedies adam fresh clip] [--agent DROO] [--devices 10]

DROO as DROO builds it: the main branch only, N = 2 ESs, one sigmoid per device (ES 0 or ES 1,
``per_user_sigmoid``), trained by Algorithm 1 at DROO's hyper-parameters (``DROO_PUBLISHED``: lr
0.01, memory 1024, mini-batch 128, every 10 slots). ``--agent DROOE`` instead runs DROOE's
per-option network (all exits) at the same hyper-parameters. Each remedy is one learner option:

- ``adam``: one Adam whose moment estimates carry over all training steps (the default learner);
- ``fresh``: a new Adam every training step, as DROO's own code does (``fresh_optimiser``);
- ``clip``: gradient norm clipped at 1 (``grad_clip_norm``), one Adam;

all from the same seed on the same slots (scenario ``--scenario``, τ = ``--tau`` ms (30),
compute_scale 4 by default). Every ``--window`` slots it prints, over that window:

- ``inside``: share of the actor's outputs x̂ over the valid (device, option) pairs that lie
  strictly inside (0.01, 0.99) — 0 means every output is saturated;
- ``exact01``: share of outputs exactly 0 or 1 in float32 (the loss of eq. 16 is then clamped
  and the quantiser's gaps are all tied);
- ``norm``: the normalised reward of eq. (17): Σ Q of the decisions / Σ Q of the best decision of
  the agent's own option set (DROO: every one of the 2^M ES assignments enumerated; DROOE: the
  exact optimum ``optimal_decision``, slow), predicted Q, every ``--ref-every`` slot;
- ``actor``: the same ratio for the actor's own argmax (no critic).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from dataclasses import replace

import numpy as np
import torch

from grle_common.cli import bounded
from offload.agents import DROO_PUBLISHED, make_agent
from offload.exit_table import load_exit_table
from offload.experiments.runner import default_exits
from offload.sim import MECConfig, OffloadEnv, optimal_decision, score_decisions

REMEDIES = {
    "adam": {},
    "fresh": {"fresh_optimiser": True},
    "clip": {"grad_clip_norm": 1.0},
}


def own_space_best(state, agent_name: str, main_options: np.ndarray) -> float:
    """Predicted Q of the best decision in the agent's option set."""
    if agent_name == "DROOE":
        return optimal_decision(state).q
    m = state.num_devices
    cands = main_options[np.array(list(itertools.product(range(len(main_options)), repeat=m)))]
    return float(np.max(score_decisions(state, cands)))


def run(args: argparse.Namespace, remedy: str) -> list[dict]:
    """One long run of one remedy; one dict per window."""
    table = load_exit_table(default_exits())
    cfg = MECConfig(
        num_devices=args.devices,
        slot_ms=args.tau,
        scenario=args.scenario,
        compute_scale=args.compute_scale,
    )
    per_user = args.agent == "DROO"
    learner = replace(DROO_PUBLISHED, **REMEDIES[remedy])
    agent = make_agent(
        name=args.agent,
        num_exits=table.num_exits,
        num_devices=args.devices,
        num_servers=cfg.num_servers,
        seed=args.seed,
        learner=learner,
        actor_options={"per_user_sigmoid": per_user},
    )
    num_exits = table.num_exits
    main_options = np.arange(cfg.num_servers) * num_exits + num_exits - 1
    env = OffloadEnv(table, cfg)
    env.reset(seed=args.seed)
    rows, window = [], _Window()
    t0 = time.perf_counter()
    for k in range(1, args.slots + 1):
        state = env.slot_state
        obs = agent.encode(state)
        x = agent.learner.relaxed(obs)[obs.mask]  # (1, M, O) x̂ at the valid pairs
        window.inside += int(((x > 0.01) & (x < 0.99)).sum())
        window.exact += int(((x == 0.0) | (x == 1.0)).sum())
        window.outputs += x.size
        res = agent.learn(state, lambda c, s=state: score_decisions(s, c))
        if k % args.ref_every == 0:
            window.got += res.q
            window.actor += float(score_decisions(state, agent.greedy_action(state))[0])
            window.best += own_space_best(state, args.agent, main_options)
        env.step(res.decision)
        if k % args.window == 0:
            rows.append(window.row(k, time.perf_counter() - t0))
            print(f"{remedy:6s} " + "  ".join(f"{key} {val}" for key, val in rows[-1].items()))
            window = _Window()
    return rows


class _Window:
    """Counters of one reporting window."""

    def __init__(self) -> None:
        self.inside = self.exact = self.outputs = 0
        self.got = self.actor = self.best = 0.0

    def row(self, slot: int, wall_s: float) -> dict:
        return {
            "slot": slot,
            "inside": f"{self.inside / self.outputs:.3f}",
            "exact01": f"{self.exact / self.outputs:.3f}",
            "norm": f"{self.got / self.best:.3f}",
            "actor": f"{self.actor / self.best:.3f}",
            "wall_s": f"{wall_s:.0f}",
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slots", type=bounded(int, low=1), default=30_000)
    p.add_argument("--window", type=bounded(int, low=1), default=1000)
    p.add_argument(
        "--ref-every", type=bounded(int, low=1), default=10, help="slots between reference optima"
    )
    p.add_argument("--remedies", nargs="+", default=list(REMEDIES), choices=list(REMEDIES))
    p.add_argument("--agent", default="DROO", choices=["DROO", "DROOE"])
    p.add_argument("--devices", type=bounded(int, low=1), default=10)
    p.add_argument("--scenario", type=bounded(int, low=1, high=4), default=1)
    p.add_argument(
        "--tau", type=bounded(float, low=0, low_open=True), default=30.0, help="slot length τ, ms"
    )
    p.add_argument("--compute-scale", type=bounded(float, low=0, low_open=True), default=4.0)
    p.add_argument("--seed", type=bounded(int, low=0), default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"1 thread; {args.agent} at DROO's hyper-parameters {DROO_PUBLISHED}; M={args.devices}, "
        f"N=2, scenario {args.scenario}, tau {args.tau:g} ms, compute_scale {args.compute_scale}, "
        f"seed {args.seed}, {args.slots} slots"
    )
    for remedy in args.remedies:
        run(args, remedy)


if __name__ == "__main__":
    main()
