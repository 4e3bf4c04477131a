"""The zoo summary's accuracy statistics: strata of lr x wd with equal population shares, and their mean."""

import math

import numpy as np
import pandas as pd

from symzoo.zoo.info import lr_wd_edges, stratified_mean, summarise_test_accuracy
from symzoo.zoo.plan import PAPER_TABLE8, draw


def test_lr_wd_strata_hold_equal_shares_of_fresh_table8_draws():
    edges = lr_wd_edges(PAPER_TABLE8)
    rng = np.random.default_rng(123)  # another sample than the one the edges came from
    x = np.array([draw(PAPER_TABLE8["lr"], rng) * draw(PAPER_TABLE8["weight_decay"], rng) for _ in range(40_000)])
    shares = np.bincount(np.searchsorted(edges, x), minlength=4) / len(x)
    assert np.allclose(shares, 0.25, atol=0.01), shares


def test_stratified_mean_reweights_an_oversampled_stratum():
    edges = np.array([1.0, 2.0, 3.0])
    lr_wd = np.array([0.5] * 10 + [1.5, 2.5, 3.5])  # ten draws in the first stratum, one in each other
    values = np.array([0.0] * 10 + [1.0, 2.0, 3.0])
    assert values.mean() < 0.5
    assert stratified_mean(values, lr_wd, edges) == 1.5


def test_stratified_mean_is_nan_with_an_empty_stratum_and_plain_with_fixed_lr_wd():
    assert math.isnan(stratified_mean(np.array([1.0, 2.0]), np.array([0.5, 1.5]), np.array([1.0, 2.0, 3.0])))
    fixed = lr_wd_edges({"lr": 0.01, "weight_decay": 1e-3})
    assert stratified_mean(np.array([0.2, 0.4]), np.array([1e-5, 1e-5]), fixed) == np.float64(0.2 + 0.4) / 2


def test_summary_leaves_out_unfinished_networks():
    frame = pd.DataFrame(
        {
            "variant": ["standard"] * 3,
            "status": ["ok", "ok", "diverged"],
            "test_acc": [0.7, 0.9, 0.1],
            "lr": [0.01, 0.01, 0.5],
            "weight_decay": [1e-3, 1e-3, 1e-1],
        }
    )
    row = summarise_test_accuracy(frame, {"lr": 0.01, "weight_decay": 1e-3}).loc["standard"]
    assert row["count"] == 2 and row["mean"] == 0.8 and row["median"] == 0.8 and row["stratified_mean"] == 0.8
