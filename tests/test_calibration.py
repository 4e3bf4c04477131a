"""Expected calibration error against a plain loop over bins written from its definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from symzoo.zoo.calibration import expected_calibration_error


def reference_ece(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """The definition, one prediction at a time: bin i holds confidences in (i/bins, (i+1)/bins], bin 0 also 0."""
    confidence, predicted = probabilities.max(1), probabilities.argmax(1)
    sums = np.zeros((bins, 3))  # count, correct, confidence
    for c, p, y in zip(confidence, predicted, labels, strict=True):
        b = max(0, int(np.ceil(c * bins)) - 1)
        sums[b] += (1, p == y, c)
    used = sums[:, 0] > 0
    gaps = np.abs(sums[used, 1] / sums[used, 0] - sums[used, 2] / sums[used, 0])
    return float((gaps * sums[used, 0]).sum() / len(labels))


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_ece_is_the_weighted_gap_between_accuracy_and_confidence(bins):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 10)) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 10, 2000)
    labels[:1200] = probabilities[:1200].argmax(1)  # partly right, so accuracy and confidence both vary
    ours = expected_calibration_error(torch.from_numpy(probabilities), torch.from_numpy(labels), bins)
    assert ours == pytest.approx(reference_ece(probabilities, labels, bins), abs=1e-12)


def test_a_perfectly_calibrated_and_a_confidently_wrong_model():
    certain = torch.eye(4, dtype=torch.float64)
    assert expected_calibration_error(certain, torch.arange(4)) == 0.0
    assert expected_calibration_error(certain, torch.tensor([1, 2, 3, 0])) == pytest.approx(1.0)
