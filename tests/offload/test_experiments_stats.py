"""Report statistics: Student-t quantiles against published tables, mean ± CI and paired
differences on tiny hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from offload.experiments.stats import (
    Interval,
    format_ci,
    mean_ci,
    paired_difference,
    paired_table,
    summarise,
    t_quantile,
)


@pytest.mark.parametrize(
    ("p", "df", "table"),
    [  # two-sided 95 % / 99 % and one-sided 95 % critical values of standard t tables
        (0.975, 1, 12.7062047362),
        (0.975, 2, 4.3026527297),
        (0.975, 4, 2.7764451052),
        (0.975, 9, 2.2621571628),
        (0.975, 30, 2.0422724563),
        (0.995, 4, 4.6040948714),
        (0.95, 1, 6.3137515147),
        (0.975, 1000, 1.9623390808),
    ],
)
def test_t_quantile_matches_tables(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=1e-9)
    assert t_quantile(1.0 - p, df) == pytest.approx(-table, abs=1e-9)


def test_t_quantile_rejects_bad_input():
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df > 0"):
        t_quantile(0.9, 0)


def test_mean_ci_five_seeds_by_hand():
    # values 1..5: mean 3, s = sqrt(2.5), se = sqrt(2.5 / 5) = sqrt(0.5), t(0.975, 4) = 2.776445
    ci = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert ci.mean == 3.0 and ci.n == 5 and ci.level == 0.95
    assert ci.half_width == pytest.approx(2.7764451052 * math.sqrt(0.5), abs=1e-9)  # 1.963243
    assert (ci.low, ci.high) == pytest.approx((3.0 - 1.9632432, 3.0 + 1.9632432), abs=1e-6)
    assert format_ci(ci) == "3.000 ± 1.963"


def test_mean_ci_one_value_and_nans():
    ci = mean_ci([0.8123, np.nan])
    assert ci.n == 1 and math.isnan(ci.half_width)
    assert format_ci(ci) == "0.812"
    with pytest.raises(ValueError, match="no values"):
        mean_ci([np.nan])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=95)


def test_paired_difference_by_hand():
    # differences 0.02, 0.03, 0.01: mean 0.02, s = 0.01, se = 0.01/sqrt(3), t(0.975, 2) = 4.302653
    ci = paired_difference([0.80, 0.82, 0.81], [0.78, 0.79, 0.80])
    assert ci.mean == pytest.approx(0.02, abs=1e-15)
    assert ci.half_width == pytest.approx(4.3026527297 * 0.01 / math.sqrt(3), abs=1e-12)  # 0.0248
    assert format_ci(ci) == "0.020 ± 0.025"
    # unpaired, the same numbers give a much wider interval: pairing removes the slot noise
    assert mean_ci([0.80, 0.82, 0.81]).half_width > 0.02
    # Series are matched on their index (seed), not on their order
    a = pd.Series([0.80, 0.82, 0.81], index=[0, 1, 2])
    b = pd.Series([0.80, 0.78, 0.79], index=[2, 0, 1])
    assert paired_difference(a, b) == ci
    with pytest.raises(ValueError, match="different indices"):
        paired_difference(a, pd.Series([1.0, 2.0, 3.0], index=[0, 1, 5]))
    with pytest.raises(ValueError, match="same order"):
        paired_difference([1.0, 2.0], [1.0])


def test_summarise_and_paired_table():
    frame = pd.DataFrame(
        {
            "method": ["GRLE"] * 3 + ["greedy"] * 3 + ["GRLE"] * 2 + ["greedy"] * 3,
            "M": [10] * 6 + [4] * 5,
            "seed": [0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2],
            "acc": [0.80, 0.82, 0.81, 0.78, 0.79, 0.80, 0.9, 0.8, 0.7, 0.7, 0.1],
        }
    )
    table = summarise(frame, ["method", "M"], "acc")
    assert table[["method", "M", "n"]].values.tolist() == [
        ["GRLE", 4, 2],
        ["GRLE", 10, 3],
        ["greedy", 4, 3],
        ["greedy", 10, 3],
    ]
    grle10 = table.iloc[1]
    assert grle10["mean"] == pytest.approx(0.81)
    assert grle10["ci_half"] == pytest.approx(4.3026527297 * 0.01 / math.sqrt(3), abs=1e-12)
    paired = paired_table(
        frame,
        method_column="method",
        first="GRLE",
        second="greedy",
        pair_on=["seed"],
        by=["M"],
        value="acc",
    )
    # M = 4: seed 2 has no GRLE row and is left out; differences 0.2, 0.1 -> mean 0.15,
    # s = 0.0707107, se = 0.05, t(0.975, 1) = 12.706205 -> half-width 0.635310
    assert paired["M"].tolist() == [4, 10] and paired["n"].tolist() == [2, 3]
    assert paired["mean"].tolist() == pytest.approx([0.15, 0.02], abs=1e-12)
    assert paired["ci_half"].iloc[0] == pytest.approx(12.7062047362 * 0.05, abs=1e-9)
    assert paired["text"].tolist() == ["0.150 ± 0.635", "0.020 ± 0.025"]
    duplicated = pd.concat([frame, frame.iloc[:1]])
    with pytest.raises(ValueError, match="several rows"):
        paired_table(
            duplicated,
            method_column="method",
            first="GRLE",
            second="greedy",
            pair_on=["seed"],
            by=["M"],
            value="acc",
        )


def test_interval_is_a_named_tuple():
    ci = Interval(0.5, 0.1, 4, 0.95)
    assert ci.low == pytest.approx(0.4) and ci.high == pytest.approx(0.6)
