"""Summaries and tests shared by every analysis table: mean +- std over seeds or networks, Welch's t-test."""

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


def pm(mean: float, std: float | None, digits: int = 3) -> str:
    """``0.950 +- 0.010`` (or ``n/a``), as the tables print them."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


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
