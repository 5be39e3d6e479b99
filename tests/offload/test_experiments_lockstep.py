"""The lockstep engine reproduces the one-run-at-a-time cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offload.experiments.lockstep import Group, groups_for, run_group
from offload.experiments.runner import Cell, default_exits, run_cell

RUNS = (("devices", 30.0, 0), ("capacity", 10.0, 1), ("csi", 30.0, 2))
SIM = (("compute_scale", 4.0),)
COLUMNS = ["avg_accuracy", "ssp", "throughput", "mean_q", "tasks", "final_train_loss"]


@pytest.mark.parametrize("method", ["GRLE", "GRL", "DROOE", "DROO", "greedy", "random"])
def test_run_group_equals_run_cell(method):
    """Three runs of mixed scenarios and τ stepped together give each cell's own numbers."""
    kw = dict(train_slots=40, eval_slots=30, exits_path=default_exits(), sim=SIM)
    batched = pd.DataFrame(run_group(Group(method, 3, RUNS, **kw)))
    loop = pd.DataFrame(
        [
            row
            for e, tau, seed in RUNS
            for row in run_cell(Cell(e, 3, tau, seed, methods=(method,), **kw))
        ]
    )
    keys = ["experiment", "method", "scenario", "M", "tau_ms", "seed", "train_slots", "eval_slots"]
    pd.testing.assert_frame_equal(batched[keys], loop[keys])
    np.testing.assert_allclose(
        batched[COLUMNS].to_numpy(float), loop[COLUMNS].to_numpy(float), rtol=1e-6, equal_nan=True
    )
    assert batched["tasks"].tolist() == [30 * 3] * 3


def test_groups_cover_every_run_once_longest_first():
    groups = groups_for(
        ["devices", "csi"],
        (4, 10),
        (10.0, 30.0),
        (0, 1),
        ("GRLE", "greedy"),
        train_slots=5,
        eval_slots=5,
        exits_path="t.csv",
    )
    assert len(groups) == 4 and all(len(g.runs) == 8 for g in groups)
    assert {(g.method, g.num_devices) for g in groups} == {
        ("GRLE", 4),
        ("GRLE", 10),
        ("greedy", 4),
        ("greedy", 10),
    }
    assert [g.cost for g in groups] == sorted((g.cost for g in groups), reverse=True)
    assert len({r for g in groups for r in g.runs}) == 8


def test_unknown_method_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown method 'oracle'"):
        run_group(Group("oracle", 3, RUNS[:1], 1, 1, default_exits()))
