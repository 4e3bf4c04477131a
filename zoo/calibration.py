"""Expected calibration error (Guo et al. 2017), one of Table 2's columns (docs/paper.md §6).

Predictions are binned by their confidence (the largest class probability) into equal-width bins over [0, 1];
ECE is the average, weighted by each bin's share of the predictions, of |accuracy - mean confidence| in the bin.
A prediction whose confidence is exactly a bin edge goes to the bin below it (the first bin includes 0), as
torchmetrics and the usual reference implementations bin.
"""

from __future__ import annotations

import torch


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE of ``probabilities`` (N, classes; rows sum to 1, e.g. a BNN's mean over posterior samples) for ``labels``."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).to(probabilities.dtype)
    edges = torch.linspace(0, 1, bins + 1, dtype=probabilities.dtype, device=probabilities.device)
    which = torch.bucketize(confidence, edges[1:-1], right=False)  # bin i holds (edges[i], edges[i + 1]]
    total = torch.zeros((), dtype=probabilities.dtype, device=probabilities.device)
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
            total = total + gap * in_bin.to(probabilities.dtype).mean()
    return float(total)
