"""Ablation policies: feasible decisions, the critic's exhaustive argmax, the optimum as a bound."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from offload.agents import make_agent
from offload.agents.learner import quantise
from offload.exit_table import load_exit_table
from offload.experiments.ablation import (
    ablation_policies,
    evaluate_policies,
    num_candidates,
    optimum_policy,
)
from offload.experiments.runner import default_exits, train
from offload.sim import MECConfig, OffloadEnv, brute_force_decision, score_decisions

TABLE = load_exit_table(default_exits())


@pytest.fixture(scope="module")
def agents():
    """A GRLE (paper actor) and an MLP-actor agent, each trained 60 slots at M = 3."""
    cfg = MECConfig(num_devices=3, slot_ms=10.0, scenario=2, compute_scale=4.0)
    out = []
    for name in ("GRLE", "GRLE-MLP"):
        agent = make_agent(name=name, num_exits=TABLE.num_exits, seed=0)
        train(agent, OffloadEnv(TABLE, cfg), 60, 0)
        out.append(agent)
    return out


@pytest.fixture(scope="module")
def states(greedy_slots):
    """Six slot states at M = 3 with ES 1 unreachable for device 0."""
    cfg = MECConfig(num_devices=3, slot_ms=10.0, scenario=2, compute_scale=4.0)
    got = greedy_slots(TABLE, cfg, 6, seed=7)
    link = np.array([[True, False], [True, True], [True, True]])
    return [replace(s, link=link) for s in got]


def test_every_ablation_policy_returns_feasible_decisions(agents, states):
    policies = ablation_policies(agents[0], mlp_agent=agents[1], seed=1)
    assert list(policies) == [
        "actor",
        "random+critic",
        "GRLE S=1",
        "GRLE S=M",
        "GRLE S=MNL",
        "mlp S=MNL",
        "optimum",
        "greedy",
        "greedy-main",
    ]
    for state in states:
        for name, policy in policies.items():
            decision = policy(state)
            server, exit_ = np.divmod(decision, TABLE.num_exits)
            assert decision.shape == (3,), name
            assert state.link[np.arange(3), server].all(), name
            assert np.isfinite(score_decisions(state, decision)[0]), name
            if name == "greedy-main":
                assert (exit_ == TABLE.num_exits - 1).all()


def test_s_equal_mnl_with_a_perfect_critic_is_the_argmax_over_its_candidates(agents, states):
    agent = agents[0]
    for state in states:
        obs = agent.encode(state)
        s = num_candidates("MNL", state)
        assert s == 3 * 2 * TABLE.num_exits
        cands = quantise(agent.learner.relaxed(obs)[0], obs.mask[0], s)
        one_by_one = [float(score_decisions(state, c)[0]) for c in cands]  # exhaustive
        expected = cands[int(np.argmax(one_by_one))]
        got = ablation_policies(agent, with_optimum=False)["GRLE S=MNL"](state)
        np.testing.assert_array_equal(got, expected)
    # with one device the M·N·L candidates are every decision: the critic finds the optimum
    one = replace(
        states[0],
        device_ids=np.arange(1),
        **{f: getattr(states[0], f)[:1] for f in ("task_bits", "deadline_ms", "rate_mbps")},
        link=states[0].link[:1],
        device_backlog_ms=states[0].device_backlog_ms[:1],
    )
    res = agent.act(
        one, lambda c: score_decisions(one, c), num_candidates=num_candidates("MNL", one)
    )
    assert res.q == pytest.approx(brute_force_decision(one).q, rel=1e-12)


def test_the_optimum_bounds_every_policy_on_the_same_slots(agents, states):
    policies = ablation_policies(agents[0], mlp_agent=agents[1], seed=2)
    q = {  # predicted Q of eq. (9) of each policy's decision on the same slot states
        name: np.array([float(score_decisions(s, policy(s))[0]) for s in states])
        for name, policy in policies.items()
    }
    for name, values in q.items():
        assert (q["optimum"] >= values - 1e-9).all(), name
    assert q["optimum"].sum() > q["greedy-main"].sum()  # a real gap somewhere on these slots
    with pytest.raises(ValueError, match="runs up to M = 2 devices"):
        optimum_policy(max_devices=2)(states[0])
    with pytest.raises(ValueError, match="use an int, 'M' or 'MNL'"):
        num_candidates("N", states[0])


def test_evaluate_policies_runs_every_policy_on_the_same_tasks(agents):
    cfg = MECConfig(num_devices=3, slot_ms=30.0, scenario=1, compute_scale=4.0)
    policies = ablation_policies(agents[0], seed=3)
    results = evaluate_policies(TABLE, cfg, policies, slots=5, seed=11)
    assert set(results) == set(policies)
    assert {m.tasks for m in results.values()} == {15}
    fresh = evaluate_policies(
        TABLE, cfg, {"r": ablation_policies(agents[0], seed=3)["random+critic"]}, 5, 11
    )
    for field in ("avg_accuracy", "ssp", "mean_q"):  # seeded: the same decisions again
        assert getattr(fresh["r"], field) == getattr(results["random+critic"], field)
    assert results["optimum"].mean_q > 0
