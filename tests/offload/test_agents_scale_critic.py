"""The critic at city scale: the edge quantiser is the dense quantiser's list cut
at S, and every candidate of the scaled critic is feasible."""

from __future__ import annotations

import numpy as np
import pytest

from offload.agents import make_agent
from offload.agents.quantise import quantise, quantise_edges
from offload.agents.scale_critic import ScaleCriticConfig, decide_at_scale, score_candidates
from offload.agents.sparse import reachable_edges
from offload.sim import MECConfig, score_decisions
from offload.sim.city import CityConfig
from offload.sim.city_env import CityEnv
from offload.sim.evaluator import task_rewards
from offload.sim.scale_refs import alone_rewards, greedy_decision, local_search


@pytest.fixture
def city_state(loaded_city):
    """The state of a loaded city's third slot (two greedy slots first)."""

    def make(num_devices, num_servers, k, seed=0):
        env = loaded_city(seed=seed, num_devices=num_devices, num_servers=num_servers, k_nearest=k)
        for _ in range(2):
            env.step(greedy_decision(env.slot_state))
        return env.slot_state

    return make


@pytest.mark.parametrize("ties", [False, True])
def test_edge_quantiser_is_the_dense_list_cut_at_s(ties, city_state):
    rng = np.random.default_rng(7)
    for trial in range(40):
        state = city_state(int(rng.integers(2, 9)), int(rng.integers(2, 5)), 2, trial)
        dev, _, _, opt = reachable_edges(state, main_branch_only=bool(trial % 5 == 0))
        x = rng.uniform(size=dev.size)
        if ties:  # a saturating actor: many equal values and gaps
            x = np.round(x * 2) / 2
        dense = np.zeros((state.num_devices, state.num_options))
        mask = np.zeros(dense.shape, dtype=bool)
        dense[dev, opt], mask[dev, opt] = x, True
        for s in (1, 2, 4, 16, 1000):
            expected = quantise(dense, mask, s)
            got = quantise_edges(x, dev, opt, state.num_devices, s)
            np.testing.assert_array_equal(got, expected)


def test_dense_and_edge_forms_give_the_same_candidates_on_random_instances():
    rng = np.random.default_rng(11)
    for trial in range(300):
        k, m, o = (int(v) for v in rng.integers(1, [5, 12, 12]))
        x = rng.uniform(size=(k, m, o))
        if trial % 3 == 0:  # a saturating actor: many equal values and gaps
            x = np.round(x * 2) / 2
        mask = rng.uniform(size=x.shape) < rng.uniform(0.2, 1.0)
        mask[np.arange(k)[:, None], np.arange(m), rng.integers(0, o, (k, m))] = True
        union = mask.any(axis=0)  # the edges of every run; `valid` says which each run has
        dev, opt = np.nonzero(union)
        for s in (1, 2, 5, 17, 1000):
            for distinct in (True, False):
                dense = quantise(x, mask, s, distinct=distinct)
                edges = quantise_edges(
                    x[:, dev, opt], dev, opt, m, s, valid=mask[:, dev, opt], distinct=distinct
                )
                np.testing.assert_array_equal(edges, dense)
                one = quantise_edges(x[0][mask[0]], *np.nonzero(mask[0]), m, s, distinct=distinct)
                np.testing.assert_array_equal(one, quantise(x[0], mask[0], s, distinct=distinct))


@pytest.mark.parametrize("repair", [0, 1])
def test_scaled_critic_candidates_are_feasible_and_the_decision_is_their_best(
    paper_table, repair, city_state
):
    state = city_state(150, 8, 3)
    for name in ("GRLE", "GRLE+"):
        agent = make_agent(name=name, num_exits=paper_table.num_exits, seed=0)
        out = decide_at_scale(agent.actor, state, ScaleCriticConfig(16, repair))
        cands = out.candidates
        assert cands.shape[1] == state.num_devices and 1 <= len(cands) <= 16 + repair
        n_of = cands // state.num_exits
        assert state.link[np.arange(state.num_devices), n_of].all()  # only reachable options
        assert ((cands >= 0) & (cands < state.num_options)).all()  # one option per device
        np.testing.assert_allclose(out.scores, score_decisions(state, cands))
        assert out.q == out.scores.max() and out.best_index == int(np.argmax(out.scores))
        np.testing.assert_array_equal(out.decision, cands[out.best_index])


def test_repair_never_lowers_the_predicted_q_and_moves_only_the_losers(city_state):
    state = city_state(120, 6, 3, seed=2)
    cands = np.random.default_rng(0).integers(0, 5, (3, state.num_devices))
    cands += state.link.argmax(axis=1)[None] * state.num_exits  # each device's first ES
    plain = score_candidates(state, cands)
    repaired = score_candidates(state, cands, repair_passes=1)
    assert repaired.q > plain.q and repaired.best_index == len(cands)  # the repair won
    earned = task_rewards(state, plain.decision[None])[0]
    keep = earned >= 0.25 * alone_rewards(state).max(axis=1)
    part = score_candidates(state, cands, repair_passes=1, repair_below=0.25)
    assert plain.q <= part.q <= repaired.q + 1e-9 and keep.any()
    np.testing.assert_array_equal(part.decision[keep], plain.decision[keep])


def test_local_search_moves_only_the_devices_it_is_given(city_state):
    state = city_state(60, 5, 3, seed=4)
    start = state.link.argmax(axis=1) * state.num_exits  # exit 1 of each device's first ES
    movers = np.arange(0, state.num_devices, 3)
    out = local_search(state, start, max_passes=2, devices=movers)
    fixed = np.setdiff1d(np.arange(state.num_devices), movers)
    np.testing.assert_array_equal(out.decision[fixed], start[fixed])
    assert out.q >= out.start_q and out.moves > 0


def test_bad_input_raises_one_clear_error():
    with pytest.raises(ValueError, match="at least one"):
        ScaleCriticConfig(num_candidates=0)
    with pytest.raises(ValueError, match="device 1 has no valid option"):
        quantise_edges(np.ones(2), np.array([0, 0]), np.array([0, 1]), 2, 4)
    with pytest.raises(ValueError, match="device 0 of run 1 has no valid option"):
        quantise_edges(np.ones((2, 2)), [0, 1], [0, 0], 2, 4, valid=[[1, 1], [0, 1]])
    with pytest.raises(ValueError, match="one value per edge"):
        quantise_edges(np.ones(3), np.array([0, 0]), np.array([0, 1]), 2, 4)


def test_a_slot_without_devices_gets_the_empty_decision(paper_table):
    cfg = CityConfig(
        num_devices=30, num_servers=6, k_nearest=None, range_m=30.0, task=MECConfig(scenario=2)
    )
    env = CityEnv(paper_table, cfg)
    state, _ = env.reset(seed=0)
    assert state.num_devices == 0  # 30 m of reach: nobody is covered
    agent = make_agent(name="GRLE+", num_exits=paper_table.num_exits, seed=0)
    out = decide_at_scale(agent.actor, state)
    assert out.decision.shape == (0,) and out.q == 0.0
    env.step(out.decision)
