"""The exact per-slot optimum equals brute force on random small instances, under every
scoring reading, with backlogs, low capacities and missing links."""

from pathlib import Path

import numpy as np
import pytest

from offload.exit_table import load_exit_table
from offload.sim import (
    MECConfig,
    OffloadEnv,
    SlotState,
    brute_force_decision,
    optimal_decision,
    score_decisions,
)
from offload.sim.baselines import greedy_decision, main_branch_greedy_decision, random_decision
from offload.sim.state import ScoringRules


def random_state(rng: np.random.Generator) -> SlotState:
    num_srv, num_exits = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    num_dev = int(rng.integers(2, 7))
    while (num_srv * num_exits) ** num_dev > 4096:
        num_dev -= 1
    link = rng.uniform(size=(num_dev, num_srv)) < 0.75
    link[np.arange(num_dev), rng.integers(0, num_srv, num_dev)] = True
    rules = ScoringRules(
        float(rng.choice([1.0, 2.0])), bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
    )
    return SlotState(
        device_ids=np.arange(num_dev),
        task_bits=rng.uniform(50, 100, num_dev) * 8000,
        deadline_ms=rng.choice([20.0, 30.0], num_dev),
        rate_mbps=rng.uniform(20, 100, (num_dev, num_srv)),
        link=link,
        device_backlog_ms=rng.uniform(0, 20, num_dev) * (rng.uniform(size=num_dev) < 0.5),
        server_backlog_ms=rng.uniform(0, 25, num_srv) * (rng.uniform(size=num_srv) < 0.6),
        # exit times up to 15 ms at capacity down to 0.1: queues where exits matter
        capacity=rng.uniform(0.1, 1.0, num_srv),
        exit_ms=np.sort(rng.uniform(0.3, 15.0, (num_srv, num_exits)), axis=1),
        exit_accuracy=np.sort(rng.uniform(0.5, 0.95, num_exits)),
        rules=rules,
    )


def test_optimum_equals_brute_force_on_240_random_instances():
    rng = np.random.default_rng(2024)
    worse_greedy = 0
    for _ in range(240):
        state = random_state(rng)
        exact = optimal_decision(state)
        brute = brute_force_decision(state)
        assert exact.q == pytest.approx(brute.q, rel=1e-12, abs=1e-12)
        assert score_decisions(state, exact.decision)[0] == pytest.approx(exact.q, abs=1e-12)
        assert np.all(state.link[np.arange(state.num_devices), exact.decision // state.num_exits])
        for policy in (greedy_decision, main_branch_greedy_decision):
            assert score_decisions(state, policy(state))[0] <= exact.q + 1e-12
        worse_greedy += score_decisions(state, greedy_decision(state))[0] < exact.q - 1e-9
    assert worse_greedy > 10  # the instances are hard enough that greedy is not optimal


def test_device_without_any_link_is_an_error():
    state = random_state(np.random.default_rng(0))
    link = state.link.copy()
    link[0] = False
    bad = SlotState(**{**state.__dict__, "link": link})
    with pytest.raises(ValueError, match="has no link to any ES"):
        optimal_decision(bad)


def test_baselines_respect_links_and_exit_restriction():
    rng = np.random.default_rng(1)
    for _ in range(20):
        state = random_state(rng)
        rows = np.arange(state.num_devices)
        for decision in (
            random_decision(state, rng),
            greedy_decision(state),
            main_branch_greedy_decision(state),
        ):
            assert np.all(state.link[rows, decision // state.num_exits])
        assert np.all(main_branch_greedy_decision(state) % state.num_exits == state.num_exits - 1)


def test_huge_backlog_with_late_tasks_sent_scores_zero_without_overflow():
    state = random_state(np.random.default_rng(5))
    late = SlotState(
        **{
            **state.__dict__,
            "server_backlog_ms": np.full(state.num_servers, 1e5),
            "rules": ScoringRules(1.0, False, False),
        }
    )
    best = optimal_decision(late)
    assert best.q == 0.0  # ψ underflows to exactly 0 a million deadlines late
    assert best.q == brute_force_decision(late).q


def test_optimum_at_full_size_survives_every_single_device_change():
    # M = 14, N = 2, L = 5 is beyond brute force; check the necessary condition that no
    # change of one device's option improves the optimum, in congested slots (compute x4)
    table = load_exit_table(
        Path(__file__).resolve().parents[2] / "checkpoints" / "paper_table1.csv"
    )
    env = OffloadEnv(table, MECConfig(num_devices=14, scenario=2, compute_scale=4.0))
    env.reset(seed=3)
    for _ in range(4):
        state = env.slot_state
        best = optimal_decision(state)
        moves = np.tile(best.decision, (state.num_devices * state.num_options, 1))
        rows = np.arange(moves.shape[0])
        moves[rows, rows // state.num_options] = rows % state.num_options
        assert score_decisions(state, moves).max() <= best.q + 1e-12
        assert score_decisions(state, greedy_decision(state))[0] <= best.q + 1e-12
        env.step(best.decision)
