"""Summaries and tests shared by every analysis table: mean ± std over seeds or networks, 95% intervals (Student t
for means, Wilson for proportions), Welch's t-test for measurements, Fisher's exact test for yes/no outcomes and
Wilcoxon's signed-rank test for paired ones."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np
from scipy import stats


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite values, and how many."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if len(x) == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0, len(x)


def pm(mean: float, std: float | None, digits: int = 3, n: int | None = None) -> str:
    """``0.950 ± 0.010`` (or ``n/a``), as the tables print them; the mean alone where there is no spread to show
    (``n`` = 1: one seed or network, whose "± 0.000" would read as a measured spread)."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None or not math.isfinite(std) or n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def welch_t(a: Iterable[float], b: Iterable[float]) -> tuple[float, float]:
    """Two-sided Welch's t-test (unequal variances): statistic and p-value; NaN with fewer than 2 per side."""
    a = np.asarray([v for v in a if math.isfinite(v)], np.float64)
    b = np.asarray([v for v in b if math.isfinite(v)], np.float64)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return math.nan, math.nan
    with warnings.catch_warnings():  # nearly identical samples: scipy warns, the statistic is still reported
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def wilcoxon_paired(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p-value of Wilcoxon's signed-rank test on paired measurements (NaN with fewer than 6 pairs or
    no difference at all)."""
    d = np.asarray(list(a), np.float64) - np.asarray(list(b), np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 6 or not np.any(d):
        return math.nan
    return float(stats.wilcoxon(d).pvalue)


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of the finite values; NaN with fewer than 2."""
    mean, std, n = mean_std(values)
    if n < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sound at 0 and n successes, where the normal interval is not."""
    if n == 0:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_exact(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """Two-sided p-value of Fisher's exact test of two proportions (a yes/no outcome per network)."""
    if n_a == 0 or n_b == 0:
        return math.nan
    table = [[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]]
    return float(stats.fisher_exact(table).pvalue)


def ci(low: float, high: float, digits: int = 3, percent: bool = False) -> str:
    """`` [0.120, 0.340]`` (or nothing), as the tables append a 95% interval to a value."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    if percent:
        return f" [{100 * low:.1f}, {100 * high:.1f}]"
    return f" [{low:.{digits}f}, {high:.{digits}f}]"
