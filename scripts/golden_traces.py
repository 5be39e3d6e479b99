"""Golden G8 (scripts/goldens.sh): 100-slot traces of the simulator paths that no committed
report uses -- the fcfs queue, late tasks sent, doubled ψ, Markov rates, dynamic topology,
completion from transmission, the on-time reward, scenario 1 -- with greedy, random and
main-branch greedy decisions, their predicted Q, the exact optimum and eq. (17) every 10th slot.

``python scripts/golden_traces.py OUT.npz`` (run in the checkout whose code is compared)."""

import sys
from dataclasses import replace

import numpy as np

from offload.exit_table import load_exit_table
from offload.sim import MECConfig, OffloadEnv
from offload.sim.baselines import greedy_decision, main_branch_greedy_decision, random_decision
from offload.sim.evaluator import score_decisions
from offload.sim.metrics import normalised_reward
from offload.sim.optimum import optimal_decision

out = sys.argv[1]
table = load_exit_table("checkpoints/paper_table1.csv")
base = MECConfig(num_devices=5, slot_ms=10.0, scenario=4, compute_scale=4.0)
variants = {
    "fcfs": dict(cross_slot_queue="fcfs"),
    "send": dict(late_policy="send"),
    "doubled": dict(psi_form="doubled"),
    "markov": dict(rate_model="markov"),
    "dynamic": dict(dynamic_topology=True, max_devices=7),
    "origin_tx": dict(completion_origin="transmission"),
    "on_time": dict(reward_form="on_time"),
    "s1": dict(scenario=1),
}
res = {}
for name, kw in variants.items():
    cfg = replace(base, **kw)
    for seed in range(3):
        env = OffloadEnv(table, cfg)
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        rows = []
        for t in range(100):
            s = env.slot_state
            pol = t % 3
            dec = (
                greedy_decision(s)
                if pol == 0
                else random_decision(s, rng)
                if pol == 1
                else main_branch_greedy_decision(s)
            )
            sc = score_decisions(s, dec)
            if t % 10 == 0 and s.num_devices <= 7 and s.link.all():
                opt = optimal_decision(s)
                rows.append(
                    [opt.q, float(score_decisions(s, opt.decision)[0]), normalised_reward(s, dec)]
                )
            _, r, _, _, info = env.step(dec)
            res[f"{name}_{seed}_step{t}"] = np.array(
                [
                    r,
                    info["predicted_q"],
                    info["num_tasks"],
                    info["num_success"],
                    info["num_lost"],
                    info["accuracy_sum"],
                    info["q_sum"],
                    float(sc[0]),
                ]
            )
            res[f"{name}_{seed}_dec{t}"] = dec
        res[f"{name}_{seed}_opt"] = np.array(rows)
np.savez(out, **res)
print("saved", len(res))
