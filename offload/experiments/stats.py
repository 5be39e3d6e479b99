"""Statistics for the report: mean ± confidence interval over seeds (Student t) and paired
differences between two methods that saw the same slots (common random numbers, see
`offload.sim.dynamics`), with a formatter for tables ("0.812 ± 0.004").

numpy and pandas only: the Student-t quantile is computed here from the regularised
incomplete beta function (continued fraction) and bisection, accurate to about 1e-10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "Interval",
    "t_quantile",
    "mean_ci",
    "paired_difference",
    "format_ci",
    "summarise",
    "paired_table",
]


class Interval(NamedTuple):
    """A mean with the half-width of its confidence interval."""

    mean: float  # sample mean
    half_width: float  # t quantile × standard error; nan with fewer than 2 values
    n: int  # number of values (seeds, or pairs)
    level: float  # confidence level, e.g. 0.95

    @property
    def low(self) -> float:
        """Lower end of the interval."""
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        """Upper end of the interval."""
        return self.mean + self.half_width


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for k in range(1, 300):
        k2 = 2 * k
        for num in (
            k * (b - k) * x / ((a + k2 - 1.0) * (a + k2)),
            -(a + k) * (a + b + k) * x / ((a + k2) * (a + k2 + 1.0)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (e.g. p = 0.975, df = 4:
    2.7764451...).

    Raises:
        ValueError: p outside (0, 1) or df not positive.
    """
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile(p={p}, df={df}): use 0 < p < 1 and df > 0.")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:  # bracket, then bisect (the CDF is monotone)
        low, high = high, 2.0 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if _t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * high:
            break
    return 0.5 * (low + high)


def mean_ci(values: Sequence[float] | np.ndarray | pd.Series, level: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of independent values (one per seed): mean ±
    t_{(1+level)/2, n-1} · s / √n with the sample standard deviation s (ddof = 1).

    NaN values are dropped; with one value the half-width is nan.

    Raises:
        ValueError: no (non-nan) values, or a level outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level}: give a confidence level in (0, 1), e.g. 0.95.")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("mean_ci got no values; pass at least one number per seed.")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, 1, level)
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(mean, t_quantile(0.5 + level / 2.0, x.size - 1) * se, int(x.size), level)


def paired_difference(
    a: Sequence[float] | np.ndarray | pd.Series,
    b: Sequence[float] | np.ndarray | pd.Series,
    level: float = 0.95,
) -> Interval:
    """Mean and confidence interval of a − b over matched pairs (the same seed, slots and
    settings for both methods). Pandas Series are matched on their index.

    Raises:
        ValueError: arrays of different lengths, Series whose indices differ, or no pairs.
    """
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if not a.index.sort_values().equals(b.index.sort_values()):
            raise ValueError(
                "paired_difference got Series with different indices; pass values of the "
                "same seeds/slots for both methods."
            )
        diff = (a - b.reindex(a.index)).to_numpy()
    else:
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(
                f"paired_difference got {x.shape} and {y.shape} values; pass one value per "
                "pair for each method, in the same order."
            )
        diff = x - y
    return mean_ci(diff, level)


def format_ci(interval: Interval, digits: int = 3) -> str:
    """The interval as text, "0.812 ± 0.004" ("0.812" when the half-width is nan: one value)."""
    if math.isnan(interval.half_width):
        return f"{interval.mean:.{digits}f}"
    return f"{interval.mean:.{digits}f} ± {interval.half_width:.{digits}f}"


def summarise(
    frame: pd.DataFrame, by: Sequence[str], value: str, level: float = 0.95
) -> pd.DataFrame:
    """One row per group of `by` (e.g. method, scenario, M, τ) with the mean of `value` over
    the group's rows (e.g. seeds), the CI half-width, the count and the formatted text.

    Raises:
        KeyError: a column of `by` or `value` is missing.
    """
    rows = []
    for key, group in frame.groupby(list(by), sort=True):
        ci = mean_ci(group[value], level)
        key = key if isinstance(key, tuple) else (key,)
        rows.append((*key, ci.mean, ci.half_width, ci.n, format_ci(ci)))
    return pd.DataFrame(rows, columns=[*by, "mean", "ci_half", "n", "text"])


def paired_table(
    frame: pd.DataFrame,
    *,
    method_column: str,
    first: str,
    second: str,
    pair_on: Sequence[str],
    by: Sequence[str],
    value: str,
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired differences first − second of `value` per group of `by`, pairing the rows of
    the two methods on `pair_on` (e.g. seed): one row per group with mean, CI half-width,
    number of pairs and the formatted text. Rows present for only one method are left out.

    Raises:
        ValueError: a method has two rows with the same `by` + `pair_on` key.
        KeyError: a column is missing.
    """
    keys = [*by, *pair_on]
    sides = []
    for method in (first, second):
        part = frame[frame[method_column] == method].set_index(keys)[value]
        if not part.index.is_unique:
            raise ValueError(
                f"method {method!r} has several rows for one {keys} key; pass one row per "
                "method, group and pair."
            )
        sides.append(part)
    joined = pd.concat(sides, axis=1, keys=["a", "b"], join="inner").reset_index()
    rows = []
    for key, group in joined.groupby(list(by), sort=True):
        ci = paired_difference(group["a"].to_numpy(), group["b"].to_numpy(), level)
        key = key if isinstance(key, tuple) else (key,)
        rows.append((*key, ci.mean, ci.half_width, ci.n, format_ci(ci)))
    return pd.DataFrame(rows, columns=[*by, "mean", "ci_half", "n", "text"])
