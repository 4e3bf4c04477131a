"""Section 5.5 / Appendix A of the paper from a stored zoo: the train-test gap, epochs to a training accuracy, and
the distance per parameter of replicate pairs, each against a computation written out here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_zoo

from symzoo.analysis import appendix_a
from symzoo.zoo.config import validate
from symzoo.zoo.store import open_zoo

ZOO = {
    "name": "appendix",
    "seed": 2,
    "data": {"name": "digits"},
    "model": {"arch": "mlp", "hidden": 16},
    "variants": ["standard", "w_asym"],
    "networks": 2,
    "replicates": 2,
    "hyperparameters": {"epochs": 2, "lr": 0.01},
    "training": {"batch_size": 200, "warmup_epochs": 1, "augment": {"flip": False, "cutout": 0}},
    "execution": {"networks_per_shard": 4},
}


@pytest.fixture(scope="module")
def zoo():
    import tempfile
    from pathlib import Path

    out = Path(tempfile.mkdtemp()) / "zoo"
    torch.set_num_threads(1)
    write_zoo(out, validate(ZOO))
    return open_zoo(out)


def frame_of(rows: list[tuple]) -> pd.DataFrame:
    cols = ["model_id", "variant", "status", "train_acc", "test_acc", "history_train_acc"]
    return pd.DataFrame(rows, columns=cols)


def test_the_gap_and_the_epochs_to_reach_a_training_accuracy():
    frame = frame_of(
        [
            (0, "standard", "ok", 0.9, 0.7, [0.5, 0.72, 0.9]),
            (1, "standard", "ok", 0.8, 0.7, [0.71, 0.8, 0.8]),
            (2, "w_asym", "ok", 0.6, 0.6, [0.3, 0.5, 0.6]),
            (3, "w_asym", "diverged", math.nan, math.nan, [0.9]),  # dropped, never counted
            (4, "w_asym", "ok", 0.75, 0.7, [0.2, 0.4, 0.75]),
        ]
    )
    gen = appendix_a.generalisation(frame).set_index("variant")
    assert gen.loc["standard", "gap"][:2] == pytest.approx((15.0, np.std([20, 10], ddof=1)))
    assert gen.loc["w_asym", "networks"] == 2 and gen.loc["w_asym", "gap"][0] == pytest.approx(2.5)
    speed = appendix_a.epochs_to_reach(frame, 0.7).set_index("variant")
    assert list(speed.loc["standard", "values"]) == [2.0, 1.0]
    assert speed.loc["w_asym", "reached"] == 1 and list(speed.loc["w_asym", "values"]) == [3.0]
    assert appendix_a.threshold_for(frame, paper_setting=True) == 0.7
    assert appendix_a.threshold_for(frame, paper_setting=False) == 0.69  # 90% of the median 0.775, floored


def test_the_distance_per_parameter_of_replicate_pairs(zoo):
    pairs, how = appendix_a.distance_pairs(zoo.frame)
    assert "replicate pairs" in how and len(pairs) == 4  # 2 samples x 2 variants
    d = appendix_a.distances(zoo, pairs)
    for r in d.itertuples(index=False):
        entries = zoo.layout(r.variant).trainable_index
        a = zoo.weights(model_ids=[r.model_a])[0, entries].astype(np.float64)
        b = zoo.weights(model_ids=[r.model_b])[0, entries].astype(np.float64)
        assert r.distance_per_parameter == pytest.approx(np.sqrt(((a - b) ** 2).sum()) / len(entries))


def test_the_section_prints_the_papers_numbers_and_verdicts(zoo):
    text, verdicts = appendix_a.section(zoo, None, paper_setting=False)
    assert "| standard | 4 |" in text and "74.8 / 73.8" in text and "64.0 / 64.0" in text
    assert "paper 0.0034" in text and "paper 0.0051" in text and "not run |" in text
    claims = [v["claim"] for v in verdicts]
    assert "W-Asym overfits less: smaller train - test gap" in claims
    assert "W-Asym networks lie no closer together (distance per parameter)" in claims
