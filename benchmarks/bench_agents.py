"""Decision time per slot and training step time of the learning agents (one CPU thread).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_agents.py [--devices 14] [--repeats 300]

For each agent on slots of the paper's network (M devices, N = 2 ESs, L = 5 exits of
``checkpoints/paper_table1.csv``, scenario 2, τ = 30 ms, seed 0) it reports medians over
``--repeats`` slots of:

- ``actor``: encode the slot + actor forward + argmax (the deployed decision, no critic);
- ``decide``: actor + quantiser (S = M·N·L) + critic scoring of all S candidates + best
  (the decision Algorithm 1 acts with);
- ``train``: one Adam step of eq. (16) on a mini-batch of 64 (memory full).

Agents (``--agents``, the method names of ``offload.agents``): GRLE (the paper's actor, eqs.
12-14 as written), GRLE+ (the engineered actor), GRLE-MLP, GRL, DROOE and DROO; by default the
experiments' GRLE, GRLE+, GRL, DROOE and DROO.

It also times the simulator calls the critic uses (``score_decisions`` for S candidates) so the
agent's own share is visible, and prints ratios against the 1 ms target for GRLE and GRLE+.

``--lockstep K`` (default 24, 0 = skip) then times the lockstep engine of the experiments: one
evaluation slot (encode, actor, quantiser, critic scoring, environment step) and one training
step for K runs of mixed scenarios and τ at once (``offload.agents.learner``, ``offload.sim.batch``,
compute_scale 4), per run, against the same slot run one by one (``agent.act`` + ``env.step``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from grle_common.cli import bounded
from offload.agents import AGENT_NAMES, ALL_AGENT_NAMES, make_agent, quantise
from offload.agents.agent import input_encoder
from offload.agents.learner import Learner
from offload.exit_table import load_exit_table
from offload.experiments.runner import SCENARIOS, default_exits, mec_config
from offload.sim import MECConfig, OffloadEnv, score_decisions
from offload.sim.batch import BatchEnv, batch_score


def median_ms(fn, states, repeats: int) -> float:
    for s in states[:20]:  # warm-up
        fn(s)
    times = []
    for i in range(repeats):
        s = states[i % len(states)]
        t0 = time.perf_counter()
        fn(s)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=bounded(int, low=1), default=14)
    p.add_argument("--repeats", type=bounded(int, low=1), default=300)
    p.add_argument("--agents", nargs="+", default=list(AGENT_NAMES), choices=list(ALL_AGENT_NAMES))
    p.add_argument(
        "--lockstep", type=bounded(int, low=0), default=24, help="runs stepped together (0: skip)"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    table = load_exit_table(default_exits())
    env = OffloadEnv(table, MECConfig(num_devices=args.devices, slot_ms=30.0, scenario=2))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    states = []
    for _ in range(200):
        states.append(env.slot_state)
        env.step(rng.integers(0, 2, args.devices) * table.num_exits + table.num_exits - 1)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread; "
        f"M={args.devices}, N=2, L={table.num_exits}, S={args.devices * 2 * table.num_exits}; "
        f"median of {args.repeats} slots"
    )
    s0 = states[0]
    cands = quantise(
        rng.random((args.devices, s0.num_options)), np.ones((args.devices, s0.num_options), bool)
    )
    score_ms = median_ms(lambda s: score_decisions(s, cands), states, args.repeats)
    print(f"simulator score_decisions of S candidates: {score_ms:.3f} ms")
    print(f"{'agent':10s} {'actor ms':>9s} {'decide ms':>10s} {'train ms':>9s}")
    for name in args.agents:
        agent = make_agent(
            name=name, num_exits=table.num_exits, num_devices=args.devices, num_servers=2, seed=0
        )
        for s in states[:128]:  # fill the replay memory (and train a little)
            agent.learn(s, lambda c, s=s: score_decisions(s, c))
        actor = median_ms(agent.greedy_action, states, args.repeats)
        decide = median_ms(
            lambda s, a=agent: a.act(s, lambda c: score_decisions(s, c)), states, args.repeats
        )
        train = median_ms(
            lambda s, a=agent: a.learner.train_step(), states, max(args.repeats // 5, 20)
        )
        print(f"{name:10s} {actor:9.3f} {decide:10.3f} {train:9.2f}")
        if name in ("GRLE", "GRLE+"):
            print(f"           {name} actor decision / 1 ms target = {actor:.2f}")
    if args.lockstep:
        lockstep(args, table)


def lockstep(args: argparse.Namespace, table) -> None:
    """Per-run time of one lockstep slot and training step vs one run at a time."""
    runs = [(e, tau, seed) for e in SCENARIOS for tau in (10.0, 30.0) for seed in range(3)]
    runs = (runs * (args.lockstep // len(runs) + 1))[: args.lockstep]
    base = MECConfig(compute_scale=4.0)
    configs = [mec_config(base, e, args.devices, tau) for e, tau, _ in runs]
    seeds = [seed for *_, seed in runs]
    print(
        f"\nlockstep: K={len(runs)} runs (scenarios 1-4, tau 10/30 ms, compute_scale 4), "
        f"M={args.devices}; ms per run and slot, median of {args.repeats // 10} lockstep slots"
    )
    print(f"{'agent':10s} {'loop slot':>10s} {'lockstep':>9s} {'ratio':>6s} {'train/run':>10s}")
    for name in args.agents:
        agents = [
            make_agent(
                name=name,
                num_exits=table.num_exits,
                num_devices=args.devices,
                num_servers=2,
                seed=seed,
            )
            for seed in seeds
        ]
        learner = Learner([a.actor for a in agents], agents[0].learner.config, seeds)
        encode = input_encoder(agents[0].actor)
        env = BatchEnv(table, configs)
        env.reset(seeds)
        for _ in range(learner.config.memory_size):  # fill the replay memories
            state = env.state
            env.step(learner.step(encode(state), lambda c, s=state: batch_score(s, c)).decisions)

        def batched_slot(_, env=env, learner=learner, encode=encode):
            state = env.state
            env.step(learner.decide(encode(state), lambda c: batch_score(state, c)).decisions)

        one_env = OffloadEnv(table, configs[0])
        one_env.reset(seed=seeds[0])

        def loop_slot(_, env=one_env, agent=agents[0]):
            state = env.slot_state
            env.step(agent.act(state, lambda c: score_decisions(state, c)).decision)

        slots = list(range(args.repeats))
        batched = median_ms(batched_slot, slots, max(args.repeats // 10, 20)) / len(runs)
        loop = median_ms(loop_slot, slots, args.repeats)
        train = median_ms(lambda _, lr=learner: lr.train_step(), slots, 20) / len(runs)
        print(f"{name:10s} {loop:10.3f} {batched:9.3f} {loop / batched:6.1f} {train:10.2f}")


if __name__ == "__main__":
    main()
