"""The tables' statistics: intervals that behave at the edges, the right test for a yes/no outcome, and metrics
that cannot discriminate named once instead of tested."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from symzoo.analysis.mli import mli_table
from symzoo.analysis.stats import fisher_exact, mean_ci, wilson_ci


def test_wilson_interval_stays_inside_0_1_and_is_not_empty_at_the_edges():
    assert wilson_ci(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))  # the textbook value
    low, high = wilson_ci(10, 10)
    assert high == pytest.approx(1.0) and 0.7 < low < 0.73
    low, high = wilson_ci(5, 10)
    assert low == pytest.approx(1 - high) and low < 0.5 < high
    assert np.isnan(wilson_ci(0, 0)[0])


def test_fisher_exact_test_separates_proportions_only_when_they_differ():
    assert fisher_exact(30, 30, 0, 30) < 1e-10
    assert fisher_exact(15, 30, 15, 30) == pytest.approx(1.0)
    assert 0.05 < fisher_exact(6, 10, 3, 10) < 1  # 60% against 30% of ten: not significant


def test_mean_interval_narrows_with_more_networks():
    rng = np.random.default_rng(0)
    few, many = rng.normal(1, 1, 10), rng.normal(1, 1, 1000)
    (a, b), (c, d) = mean_ci(few), mean_ci(many)
    assert a < few.mean() < b and c < 1 < d and (d - c) < (b - a) / 5


def test_mli_table_tests_monotonic_with_fisher_and_names_constant_metrics_once():
    rows = []
    for variant, share in (("standard", 0.2), ("w_asym", 0.9)):
        for i in range(50):
            mono = i < share * 50
            rows.append(
                {
                    "model_id": len(rows),
                    "variant": variant,
                    "measurement": "clean",
                    "delta": -0.01 if mono else 0.01 + i * 1e-4,
                    "monotonic": mono,
                    "local_convexity": 0.5 + 0.004 * i,
                    "global_convexity": 1.0,
                    "global_convexity_authors": 1.0,
                }
            )
    table = mli_table(pd.DataFrame(rows), ["standard", "w_asym"], "clean", with_paper=False)
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert rows["| standard"].split(" | ")[3] == "20.0% [11.2, 33.0]"  # variants as rows, as in the paper
    assert rows["| W-Asym"].split(" | ")[3] == "90.0% [78.6, 95.7]"
    monotonic_row = next(line for line in table.splitlines() if line.startswith("| monotonic | Fisher p"))
    assert float(monotonic_row.split("p = ")[1].split(" ")[0]) < 1e-10
    assert "Uninformative on this zoo, so not tested" in table and "global convexity, as defined (1.000)" in table
    assert not any(line.startswith("| global convexity") and "p =" in line for line in table.splitlines())
