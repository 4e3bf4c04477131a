"""Loss along straight lines in weight space: MLI statistics (paper Table 4) and barriers (paper Table 1).

Many parameter vectors are evaluated as one packed computation (``zoo.packed.packed_logits``): the points along
a line, or the lines of several networks of one variant, are stacked to ``(K, ...)`` and run side by side, so a GPU
worker interpolates a whole shard's networks together. No Ray in here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from symzoo.zoo.augment import AugmentConfig, draw_epoch, packed_batch, stack_draws
from symzoo.zoo.data import Dataset
from symzoo.zoo.layers import seeded_generator
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.packed import packed_logits
from symzoo.zoo.train import at_least_float32, autocast, evaluate, smoothed_cross_entropy

# ---------------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class MLIStats:
    delta: float  # largest rise between neighbouring points; <= 0 means monotonic
    monotonic: bool
    local_convexity: float  # fraction of interior points with a non-negative centred second difference
    global_convexity: float  # as defined: interior points on or below the chord from L(0) to L(1)
    global_convexity_authors: float  # as in the authors' code: below the line through L(0) and L(alpha_1)


def mli_stats(alphas: np.ndarray, loss: np.ndarray) -> MLIStats:
    """The paper's MLI statistics of one curve ``loss`` at evenly spaced ``alphas`` from 0 to 1."""
    alphas, loss = np.asarray(alphas, np.float64), np.asarray(loss, np.float64)
    delta = float(np.max(np.diff(loss)))
    second = loss[2:] - 2 * loss[1:-1] + loss[:-2]
    inner_a, inner = alphas[1:-1], loss[1:-1]
    chord = (1 - inner_a) * loss[0] + inner_a * loss[-1]
    # the authors' interp.py: line = L0 + (L1 - L0) * alpha, with L1 the *second* point, not the end point
    authors_line = loss[0] + (loss[1] - loss[0]) * inner_a
    return MLIStats(
        delta=delta,
        monotonic=bool(delta <= 0),
        local_convexity=float(np.mean(second >= 0)),
        global_convexity=float(np.mean(inner <= chord)),
        global_convexity_authors=float(np.mean(inner <= authors_line)),
    )


def midpoint_barrier(alphas: np.ndarray, loss: np.ndarray) -> float:
    """L(theta_1/2 + theta_2/2) - (L(theta_1) + L(theta_2)) / 2, read off a curve that includes alpha = 0.5."""
    alphas = np.asarray(alphas)
    mid = np.flatnonzero(np.isclose(alphas, 0.5))
    if len(mid) == 0:
        raise ValueError("the midpoint barrier needs alpha = 0.5 on the curve: use an odd number of alphas")
    return float(loss[mid[0]] - (loss[0] + loss[-1]) / 2)


# ---------------------------------------------------------------------------------------------------- evaluation


def interpolate(start: torch.Tensor, end: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Flat vectors ``(1 - a) * start + a * end`` for every pair and alpha: ``(N, P)`` x2 -> ``(N * A, P)``."""
    a = alphas.to(start.dtype).view(1, -1, 1)
    return ((1 - a) * start.unsqueeze(1) + a * end.unsqueeze(1)).reshape(-1, start.shape[-1])


@torch.no_grad()
def evaluate_flat(
    template: nn.Module,
    layout: ParamLayout,
    flats: torch.Tensor,
    data: Dataset,
    split: str,
    smoothing: torch.Tensor,
    batch_size: int,
    augment_with: AugmentConfig | None = None,
    seeds: list[tuple] | None = None,
    amp: bool = True,
    buffers: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-smoothed loss and accuracy ``(K,)`` of K flat parameter vectors of ``template``'s architecture.

    Clean (``augment_with`` None): every vector sees the whole split in a fixed order, no augmentation.
    Augmented (training split, as the authors' code measured MLI): vector k gets its own shuffle and
    augmentation draws from a generator seeded by ``seeds[k]``, full batches only (drop_last).
    ``buffers``: the fixed structure per vector where it differs (``zoo.packed.pack_buffers``); default the
    template's, shared by every vector.
    """
    template = template.eval()  # GroupNorm models behave the same; any BatchNorm would use running statistics
    params = {n: t.to(flats.device) for n, t in layout.unflatten(flats).items()}
    buffers = dict(template.named_buffers()) if buffers is None else buffers
    x_all, y_all = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    k, device = len(flats), flats.device
    smoothing = smoothing.to(device)
    if augment_with is None:  # the zoo's own evaluation, every vector on the same batches

        def forward(x: torch.Tensor) -> torch.Tensor:
            return packed_logits(template, params, buffers, x.unsqueeze(0).expand(k, *x.shape))

        loss, acc = evaluate(forward, data, x_all, y_all, batch_size, amp, smoothing)
        return loss.float().cpu(), acc.float().cpu()
    hw = data.in_shape[1:]
    draws = [draw_epoch(seeded_generator("symzoo-mli", *s), len(x_all), batch_size, hw, augment_with) for s in seeds]
    stacked = stack_draws(draws, device)
    steps = stacked.order.shape[1]
    loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
    correct = torch.zeros(k, dtype=torch.float64, device=device)
    for i in range(steps):
        x, y = packed_batch(x_all, y_all, data.normalize, stacked, i, augment_with)
        with autocast(device, amp):
            logits = at_least_float32(packed_logits(template, params, buffers, x))
        loss_sum += smoothed_cross_entropy(logits, y, smoothing).double() * batch_size
        correct += (logits.argmax(-1) == y).sum(-1).double()
    seen = steps * batch_size
    return (loss_sum / seen).float().cpu(), (correct / seen).float().cpu()
