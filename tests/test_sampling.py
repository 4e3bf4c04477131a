"""The MLI and LMC stages' seeded samples (``sample`` option): at most N per variant, reproducible, in order."""

from __future__ import annotations

import pandas as pd
import pytest

from symzoo.analysis.selection import sample_per_variant
from symzoo.errors import ConfigError
from symzoo.pipelines.registry import STAGES


def frame() -> pd.DataFrame:
    return pd.DataFrame({"model_id": range(50), "variant": ["standard", "w_asym"] * 20 + ["sigma_asym"] * 10})


def test_a_sample_holds_at_most_n_per_variant_in_zoo_order():
    drawn = sample_per_variant(frame(), 8, seed=0)
    assert drawn.groupby("variant").size().to_dict() == {"sigma_asym": 8, "standard": 8, "w_asym": 8}
    assert drawn["model_id"].is_monotonic_increasing
    assert len(sample_per_variant(frame(), 100, seed=0)) == 50  # a variant smaller than n is taken whole
    assert sample_per_variant(frame(), None, seed=0).equals(frame())


def test_a_sample_is_fixed_by_its_seed_and_each_variant_drawn_alone():
    a, b = sample_per_variant(frame(), 5, seed=1), sample_per_variant(frame(), 5, seed=1)
    assert a.equals(b)
    assert not a.equals(sample_per_variant(frame(), 5, seed=2))
    without_sigma = frame()[frame()["variant"] != "sigma_asym"]
    kept = sample_per_variant(without_sigma, 5, seed=1)
    assert kept["model_id"].tolist() == a[a["variant"] != "sigma_asym"]["model_id"].tolist()


@pytest.mark.parametrize("section", ["mli", "lmc"])
def test_sample_options_are_checked(section):
    assert STAGES[section].validate({"sample": 300})["sample"] == 300
    with pytest.raises(ConfigError, match=f"{section}.sample"):
        STAGES[section].validate({"sample": 0})
    with pytest.raises(ConfigError, match=f"{section}.sample_seed"):
        STAGES[section].validate({"sample_seed": -1})
