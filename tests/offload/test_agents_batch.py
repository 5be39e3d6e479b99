"""The lockstep learner: batched quantiser, encoders and K actors trained together equal the
one-run versions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from offload.agents.batch import BatchLearner, DenseBatch
from offload.agents.droo import DROOActor, DROOConfig, encode_channel, encode_channel_batch
from offload.agents.grle import _DENSE_FIELDS, GRLEActor, GRLEConfig, encode_slot, encode_slot_batch
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
        graph = encode_slot(state, cfg)
        np.testing.assert_array_equal(mask[k], graph.mask)
        for i, field in enumerate(_DENSE_FIELDS):
            assert torch.equal(tensors[i][k], getattr(graph, field)), field
        m, o = graph.edge_index
        assert torch.equal(graph.edge_attr, graph.edge_attr_dense[m, o])


def test_channels_encoded_together_equal_each_slot_alone(states):
    cfg = DROOConfig(num_devices=6, num_servers=2, num_exits=5)
    tensors, _ = encode_channel_batch(BatchState.stack(states), cfg)
    for k, state in enumerate(states):
        assert torch.equal(tensors[0][k], encode_channel(state, cfg).x)
    with pytest.raises(ValueError, match="input size is fixed"):
        encode_channel_batch(BatchState.stack(states), replace(cfg, num_devices=7))


@pytest.mark.parametrize("kind", ["GRLE", "DROO"])
@pytest.mark.parametrize("chunk", [3, 4])  # runs per backward pass: 3 + 1 or all 4 at once
def test_batch_learner_equals_one_learner_per_run(states, kind, chunk):
    """Same decisions, losses and weights as K one-run learners over 12 slots (2 trainings)."""
    cfg = LearnerConfig(batch_size=8, train_interval=5)
    seeds = [10, 11, 12, 13]
    actors = []
    for seed in seeds:
        torch.manual_seed(seed)
        if kind == "GRLE":
            actors.append(GRLEActor())
        else:
            actors.append(DROOActor(DROOConfig(6, 2, 5, main_branch_only=True)))
    batch_state = BatchState.stack(states)
    if kind == "GRLE":
        obs = DenseBatch(*encode_slot_batch(batch_state))
        single = [encode_slot(s) for s in states]
    else:
        obs = DenseBatch(*encode_channel_batch(batch_state, actors[0].config))
        single = [encode_channel(s, actors[0].config) for s in states]
    batched = BatchLearner(
        actors, cfg, seeds, train_chunk=chunk
    )  # copies the weights before the loop trains them
    loops = [Learner(a, cfg, seed=s) for a, s in zip(actors, seeds, strict=True)]
    np.testing.assert_allclose(
        batched.relaxed(obs),
        np.stack([lp.relaxed(o) for lp, o in zip(loops, single, strict=True)]),
        atol=1e-6,
    )
    trained = 0
    for _ in range(12):
        res = batched.step(
            obs, lambda c: np.stack([score_decisions(s, c[k]) for k, s in enumerate(states)])
        )
        for k, (lp, o, s) in enumerate(zip(loops, single, states, strict=True)):
            ref = lp.step(o, o.mask, lambda c, s=s: score_decisions(s, c))
            np.testing.assert_array_equal(res.decisions[k], ref.decision)
            assert res.q[k] == pytest.approx(ref.q)
            if ref.loss is not None:
                assert res.loss[k] == pytest.approx(ref.loss, abs=1e-5)
                trained += 1
    assert trained == 2 * len(seeds)
    fresh = [
        GRLEActor() if kind == "GRLE" else DROOActor(DROOConfig(6, 2, 5, main_branch_only=True))
        for _ in seeds
    ]
    batched.unstack(fresh)
    for lp, actor in zip(loops, fresh, strict=True):
        for (name, p), q in zip(lp.actor.named_parameters(), actor.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)
