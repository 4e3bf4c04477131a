"""Git Re-Basin weight matching (Ainsworth et al. 2023) on the permutation specs of ``zoo.symmetry``.

Weight matching permutes the second network onto the first by coordinate descent, each step a linear assignment
(docs/paper.md §5).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from symzoo.zoo.symmetry import PermutationSpec, permutation_spec, permute


def weight_matching(
    spec: PermutationSpec,
    params_a: dict[str, torch.Tensor],
    params_b: dict[str, torch.Tensor],
    max_sweeps: int = 100,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Permutations that bring ``params_b`` closest to ``params_a`` (maximise the summed inner products).

    Coordinate descent from the identity: each sweep visits the permutations in a random order and solves each
    exactly by linear assignment on sum(W_a W_b^T) over the axes it acts on; it stops after a sweep without a
    gain above 1e-12, or after ``max_sweeps``. Apply the result with ``permute(spec, perms, params_b)``.
    """
    a = {n: w.detach().double().cpu() for n, w in params_a.items()}
    b = {n: w.detach().double().cpu() for n, w in params_b.items()}
    groups = spec.perm_to_axes
    sizes = {p: a[name].shape[axis] for p, [(name, axis), *_] in groups.items()}
    perms = {p: np.arange(n) for p, n in sizes.items()}
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    for _ in range(max_sweeps):
        improved = False
        for p in rng.permutation(names):
            n = sizes[p]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for name, axis in groups[p]:
                wb = permute(spec, perms, {name: b[name]}, skip=(name, axis))[name]
                wa = torch.movedim(a[name], axis, 0).reshape(n, -1)
                cost += wa @ torch.movedim(wb, axis, 0).reshape(n, -1).T
            cost_np = cost.numpy()
            _, assignment = linear_sum_assignment(cost_np, maximize=True)
            gain = cost_np[np.arange(n), assignment].sum() - cost_np[np.arange(n), perms[p]].sum()
            if gain > 1e-12:
                improved = True
                perms[p] = assignment
        if not improved:
            break
    return perms


def rebasin(model_a: nn.Module, model_b: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """``model_b``'s parameters permuted onto ``model_a`` (same architecture, standard variant)."""
    spec = permutation_spec(model_a)
    pa, pb = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    perms = weight_matching(spec, pa, pb, seed=seed)
    return {n: w.detach() for n, w in permute(spec, perms, pb).items()}
