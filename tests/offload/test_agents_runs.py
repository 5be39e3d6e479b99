"""K runs at once: the quantiser, the encoders and the learner give every run what it gets
alone (K = 1) -- a run's numbers do not depend on the runs stepped beside it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from offload.agents.agent import input_encoder
from offload.agents.droo import DROOActor, DROOConfig
from offload.agents.grle import GRLEActor, GRLEConfig, encode_slot_batch
from offload.agents.learner import Learner, LearnerConfig, quantise
from offload.sim import MECConfig, OffloadEnv, score_decisions
from offload.sim.batch import BatchState


@pytest.mark.parametrize("distinct", [True, False])
def test_runs_quantised_together_equal_each_run_alone(distinct):
    rng = np.random.default_rng(0)
    longest = 0
    for trial in range(300):
        k, m, o = (int(v) for v in rng.integers(1, [5, 7, 8]))
        x = rng.random((k, m, o))
        if trial % 3 == 0:
            x = np.round(x, 1)  # many ties
        elif trial % 3 == 1 and trial % 2:
            x = (x > 0.6).astype(np.float32)  # saturated actors: many duplicate candidates
        mask = rng.random((k, m, o)) < 0.7  # runs differ in their number of valid pairs
        mask[np.arange(k)[:, None], np.arange(m)[None, :], rng.integers(0, o, (k, m))] = True
        s = [None, 1, 3, 50][trial % 4]
        out = quantise(x, mask, s, distinct=distinct)
        refs = [quantise(x[run], mask[run], s, distinct=distinct) for run in range(k)]
        assert out.shape == (k, max(len(r) for r in refs), m)  # as long as the longest list
        for run, ref in enumerate(refs):
            np.testing.assert_array_equal(out[run, : len(ref)], ref)
            # padding repeats candidate 0: the first best candidate keeps its index
            assert (out[run, len(ref) :] == ref[0]).all()
            if distinct:
                assert len(np.unique(ref, axis=0)) == len(ref)
        longest = max(longest, out.shape[1])
    assert longest > 1


def test_quantise_of_k_runs_names_the_run_without_options():
    mask = np.ones((2, 3, 4), bool)
    mask[1, 2] = False
    with pytest.raises(ValueError, match="device 2 of run 1 has no valid option"):
        quantise(np.zeros((2, 3, 4)), mask)


@pytest.fixture(scope="module")
def states(paper_table):
    """Four loaded slots of mixed scenarios at M = 6, one with some links down."""
    table = paper_table
    rng = np.random.default_rng(3)
    out = []
    for seed, scenario in enumerate((1, 2, 3, 4)):
        env = OffloadEnv(table, MECConfig(num_devices=6, scenario=scenario, compute_scale=4.0))
        env.reset(seed=seed)
        for _ in range(20):
            env.step(rng.integers(0, 10, 6))
        out.append(env.slot_state)
    out[1] = replace(out[1], link=np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=bool))
    return out


@pytest.mark.parametrize("main_branch_only", [False, True])
def test_slots_encoded_together_equal_each_slot_alone(states, main_branch_only):
    """K slots in one call give each slot's own graph, bit for bit (no cross-slot leakage)."""
    cfg = GRLEConfig(main_branch_only=main_branch_only)
    tensors, mask = encode_slot_batch(BatchState.stack(states), cfg)
    for k, state in enumerate(states):
        one, one_mask = encode_slot_batch(BatchState.of(state), cfg)
        np.testing.assert_array_equal(mask[k], one_mask[0])
        for t, u in zip(tensors, one, strict=True):
            assert torch.equal(t[k], u[0])


def _actors(kind: str, seeds: list[int]) -> list[torch.nn.Module]:
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        out.append(
            GRLEActor() if kind == "GRLE" else DROOActor(DROOConfig(6, 2, 5, main_branch_only=True))
        )
    return out


@pytest.mark.parametrize("kind", ["GRLE", "DROO"])
@pytest.mark.parametrize("chunk", [3, 4])  # runs per backward pass: 3 + 1 or all 4 at once
def test_runs_learning_together_match_each_run_alone(states, kind, chunk):
    """K = 4 runs over 12 slots (2 trainings): the same decisions as each run alone (K = 1),
    losses and weights equal up to float rounding (a stacked matmul's rounding can depend on K
    for layers with one output, about 1e-7), and the trained weights written back to the
    modules."""
    cfg = LearnerConfig(batch_size=8, train_interval=5)
    seeds = [10, 11, 12, 13]
    together = Learner(_actors(kind, seeds), cfg, seeds, train_chunk=chunk)
    alone = [Learner([a], cfg, [s]) for a, s in zip(_actors(kind, seeds), seeds, strict=True)]
    encode = input_encoder(together.actors[0])
    obs = encode(BatchState.stack(states))
    np.testing.assert_allclose(
        together.relaxed(obs),
        np.concatenate([lr.relaxed(encode(s)) for lr, s in zip(alone, states, strict=True)]),
        atol=1e-6,
    )
    trained = 0
    for _ in range(12):
        res = together.step(
            obs, lambda c: np.stack([score_decisions(s, c[k]) for k, s in enumerate(states)])
        )
        for k, (lr, s) in enumerate(zip(alone, states, strict=True)):
            ref = lr.step(encode(s), lambda c, s=s: score_decisions(s, c[0])[None])
            np.testing.assert_array_equal(res.decisions[k], ref.decisions[0])
            assert res.q[k] == pytest.approx(ref.q[0])
            if ref.loss is not None:
                assert res.loss[k] == pytest.approx(ref.loss[0], abs=1e-5)
                trained += 1
    assert trained == 2 * len(seeds) and together.train_steps == 2
    together.unstack()
    for lr, actor in zip(alone, together.actors, strict=True):
        for (name, p), q in zip(lr.actors[0].named_parameters(), actor.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)
