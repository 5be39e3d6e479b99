"""Candidate-exit selection on hand-made tables with hand-computed answers."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from profiling.candidates import (
    candidate_table,
    dominated_exits,
    select_candidates,
    select_exits,
    step_area,
)
from profiling.errors import ProfilingError
from profiling.figure import plot_exits
from profiling.table import make_exit_table, read_exit_table, write_exit_table

PAPER = Path(__file__).resolve().parents[2] / "checkpoints" / "paper_table1.csv"
T1_EXITS = [1, 3, 4, 7, 17]
T1_ACC = [0.8, 0.85, 0.885, 0.905, 0.935]
T1_RTX = [0.36, 0.46, 0.54, 0.71, 1.26]

# A Fig. 3-like table: 17 exits on an RTX 2080 Ti-like latency scale, where deeper exits do not
# always help (the paper's observation); exits 1, 3, 4, 7, 17 carry Table I's numbers.
FIG3_LAT = [0.36, 0.41, 0.46, 0.54, 0.60, 0.63, 0.71, 0.78, 0.85, 0.88, 0.95, 1.02, 1.09, 1.12,
            1.17, 1.22, 1.26]  # fmt: skip
FIG3_ACC = [0.80, 0.79, 0.85, 0.885, 0.88, 0.875, 0.905, 0.90, 0.895, 0.90, 0.90, 0.905, 0.90,
            0.90, 0.905, 0.90, 0.935]  # fmt: skip


def test_area_of_a_step_curve_by_hand():
    # best accuracy 0 until 1 ms, 0.5 until 2 ms, then 0.9 until the 4 ms horizon
    assert step_area([0.5, 0.9], [1.0, 2.0], 4.0) == pytest.approx(0.5 * 1 + 0.9 * 2)
    # a dominated point (slower and worse) changes nothing
    assert step_area([0.5, 0.9, 0.4], [1.0, 2.0, 3.0], 4.0) == pytest.approx(2.3)


@pytest.mark.parametrize(
    ("k", "expected", "area"),
    [
        # {1, 4, 17}: .8*(.54-.36) + .885*(1.26-.54) = .144 + .6372; beats {1,7,17} = .77775
        (3, [1, 4, 17], 0.7812),
        # {1, 4, 7, 17}: .144 + .885*.17 + .905*.55 = .7922; beats {1,3,7,17} = .79025
        (4, [1, 4, 7, 17], 0.7922),
        (5, [1, 3, 4, 7, 17], 0.7962),
        (2, [1, 17], 0.72),
    ],
)
def test_table1_on_one_device(k, expected, area):
    chosen, dominated, got_area, horizon, notes = select_exits(T1_EXITS, T1_ACC, T1_RTX, k=k)
    assert chosen == expected
    assert dominated == []
    assert got_area == pytest.approx(area, abs=1e-12)
    assert horizon == 1.26
    assert notes == []


def test_fig3_like_table_selects_the_papers_five_exits():
    exits = list(range(1, 18))
    assert dominated_exits(exits, FIG3_ACC, FIG3_LAT) == [2, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    chosen, *_ = select_exits(exits, FIG3_ACC, FIG3_LAT, k=5)
    assert chosen == [1, 3, 4, 7, 17]


@pytest.mark.parametrize(
    ("acc13", "expected"),
    [
        # front {1,3,4,7,13,17}; losses when one exit is left out (hand-computed):
        # 1: .08, 3: .004, 4: .00595, 7: .0076, 13: .905*.55 - (.3439 + .91*.17) = -.00085
        (0.91, [1, 3, 4, 7, 17]),
        # exit 13 at .93: leaving it out now loses .00425 > .004, so exit 3 goes
        (0.93, [1, 4, 7, 13, 17]),
    ],
)
def test_a_sixth_front_exit_forces_a_trade(acc13, expected):
    acc = list(FIG3_ACC)
    acc[12] = acc13
    chosen, *_ = select_exits(range(1, 18), acc, FIG3_LAT, k=5)
    assert chosen == expected


def test_main_branch_is_kept_even_when_dominated():
    # exit 3 (main) is slower and less accurate than exits 1 and 2
    chosen, dominated, area, horizon, notes = select_exits(
        [1, 2, 3], [0.9, 0.95, 0.85], [1.0, 2.0, 3.0], k=2
    )
    assert dominated == [3]
    assert chosen == [1, 3]  # exit 1 covers .9*(3-1) = 1.8 > exit 2's .95*(3-2)
    assert area == pytest.approx(1.8)
    assert horizon == 3.0
    assert "main branch (exit 3) is dominated" in notes[0]


def test_fewer_candidates_than_asked_when_the_front_is_small():
    chosen, dominated, _, _, notes = select_exits(
        [1, 2, 3, 4], [0.5, 0.5, 0.4, 0.9], [1.0, 1.0, 2.0, 3.0], k=4
    )
    assert dominated == [2, 3]  # 2 ties with 1 (lower number kept); 3 is worse and slower
    assert chosen == [1, 4]
    assert "only 2 exits" in notes[0]


def test_dp_is_the_exact_optimum_on_random_tables():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(2, 10))
        acc = rng.uniform(0.3, 1.0, n).round(3)
        lat = rng.uniform(0.1, 5.0, n).round(3)
        k = int(rng.integers(1, n + 1))
        exits = list(range(1, n + 1))
        chosen, _, area, horizon, _ = select_exits(exits, acc, lat, k=k)
        assert n in chosen and len(chosen) <= k
        best = max(
            step_area(acc[list(s)], lat[list(s)], horizon)
            for s in itertools.combinations(range(n - 1), k - 1)
            for s in [(*s, n - 1)]
        )
        assert area == pytest.approx(best, abs=1e-12), f"trial {trial}"


def test_several_devices_use_mean_latency_relative_to_the_main_branch():
    table = read_exit_table(PAPER)
    rel = (np.array(T1_RTX) / 1.26 + np.array([0.73, 0.89, 1.06, 1.4, 2.42]) / 2.42) / 2
    for k in (2, 3, 4):
        selection = select_candidates(table, k=k)
        assert list(selection.exits) == select_exits(T1_EXITS, T1_ACC, rel, k=k)[0]
        assert selection.devices == ("RTX_2080TI", "GTX_1080TI")
    one = select_candidates(table, k=3, devices=["RTX_2080TI"])
    assert one.area == pytest.approx(0.7812 / 1.26)
    assert one.mean_accuracy == pytest.approx(0.7812 / 1.26)


def test_bad_requests():
    table = read_exit_table(PAPER)
    with pytest.raises(ProfilingError, match=">= 1"):
        select_candidates(table, k=0)
    with pytest.raises(ProfilingError, match="main branch exit 16"):
        select_candidates(table, main_exit=16)
    with pytest.raises(ProfilingError, match="'TPU' is not in this table"):
        select_candidates(table, devices=["TPU"])
    latency_only = make_exit_table(exits=[1, 2], layers=["a", "b"], latency_ms={"cpu_1t": [1, 2]})
    with pytest.raises(ProfilingError, match="no accuracy column"):
        select_candidates(latency_only)


def test_candidate_table_and_figure_are_written(tmp_path):
    full = make_exit_table(
        exits=range(1, 18),
        layers=[f"layer{i}" for i in range(1, 18)],
        accuracy=FIG3_ACC,
        latency_ms={"RTX_like": FIG3_LAT},
        metadata={"source": "measured", "devices": {"RTX_like": {}}},
    )
    selection = select_candidates(full, k=5)
    path, _ = write_exit_table(
        candidate_table(full, selection, source_path="full.csv"), tmp_path / "c.csv"
    )
    back = read_exit_table(path, require_sidecar=True)
    assert back.exits.tolist() == [1, 3, 4, 7, 17]
    assert back.accuracy.tolist() == [0.8, 0.85, 0.885, 0.905, 0.935]
    assert back.latency_ms("RTX_like").tolist() == [0.36, 0.46, 0.54, 0.71, 1.26]
    cand = back.metadata["candidates"]
    assert cand["exits"] == [1, 3, 4, 7, 17] and cand["selected_from"] == "full.csv"
    assert cand["dominated"] == [2, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    figure = plot_exits(full, tmp_path / "fig.png", candidates=selection.exits)
    data = figure.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "c.json", "fig.png"]
