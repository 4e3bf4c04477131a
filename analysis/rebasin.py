"""Git Re-Basin (Ainsworth et al. 2023) on the permutation specs of ``zoo.symmetry``: weight matching and
activation matching.

Weight matching permutes the second network onto the first by coordinate descent, each step a linear assignment
(docs/paper.md §5). Activation matching (the paper's GNN baseline, docs/paper.md §7) runs both networks on the
same inputs and solves one linear assignment per permutation on the inner products of the features it permutes,
summed over every place those features appear (a ResNet's residual stream appears after every block of a stage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from symzoo.zoo.models import GNN, MLP, SIREN, ConvNet, ResNet
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


def activation_sites(model: nn.Module) -> dict[str, list[str]]:
    """For each permutation of ``model``'s spec, the modules whose outputs carry the features it permutes (the
    features after the nonlinearity, as they flow on)."""
    if isinstance(model, MLP):
        linears = [i for i, m in enumerate(model.layers) if isinstance(m, nn.Linear)]
        return {f"hidden.{i}": [f"layers.{i + 2}"] for i in linears[:-1]}
    if isinstance(model, (GNN, SIREN)):
        return {f"hidden.{i}": [f"layers.{i}"] for i in range(len(model.layers))}
    if isinstance(model, ConvNet):  # the spec's permutations: convs (the last not where it is flattened), dense
        perms = permutation_spec(model).perm_to_axes
        sites = {f"conv{i}": [f"act{i}"] for i in range(1, len(model.shape.convs) + 1)}
        sites |= {f"dense{i}": [f"dense_act{i}"] for i in range(1, len(model.shape.dense) + 1)}
        return {p: s for p, s in sites.items() if p in perms}
    if isinstance(model, ResNet):  # the streams as zoo.symmetry names them
        stream = "stream.stem"
        sites: dict[str, list[str]] = {stream: ["stem_act"]}
        for s, stage in enumerate(model.stages):
            for b, block in enumerate(stage):
                p = f"stages.{s}.{b}"
                if not isinstance(block.shortcut, nn.Identity):
                    stream = f"stream.stage{s}"
                sites[f"{p}.inner"] = [f"{p}.act1"]
                sites.setdefault(stream, []).append(f"{p}.act2")
        return sites
    raise ValueError(f"no activation sites for {type(model).__name__}; activation matching covers MLP, GNN and CNNs")


@torch.no_grad()
def features_at(model: nn.Module, sites: list[str], run: Callable[[nn.Module], object]) -> dict[str, torch.Tensor]:
    """The outputs of ``model``'s modules named ``sites`` while ``run(model)`` runs it once in eval mode."""
    acts: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    hooks = [modules[s].register_forward_hook(lambda _m, _i, out, s=s: acts.__setitem__(s, out)) for s in sites]
    try:
        run(model.eval())
    finally:
        for h in hooks:
            h.remove()
    return acts


@torch.no_grad()
def activation_matching(
    model_a: nn.Module, model_b: nn.Module, batches: Iterable[tuple], forward: Callable | None = None
) -> dict[str, np.ndarray]:
    """Permutations that bring ``model_b``'s features closest to ``model_a``'s: for each permutation, the linear
    assignment maximising sum_n <a_i(x_n), b_j(x_n)> over the batches' inputs and every site of it (float64
    sums). ``batches`` yields argument tuples for ``forward(model, *args)`` (default ``model(*args)``); both models
    run in eval mode. Apply the result with ``permute(spec, perms, params_b)``."""
    forward = forward or (lambda model, *args: model(*args))
    sites = activation_sites(model_a)
    site_group = {site: group for group, names in sites.items() for site in names}
    cost: dict[str, torch.Tensor] = {}
    for args in batches:
        sites = list(site_group)
        captured = [features_at(m, sites, lambda m, args=args: forward(m, *args)) for m in (model_a, model_b)]
        for site, group in site_group.items():
            a, b = (torch.movedim(c[site], 1, -1).reshape(-1, c[site].shape[1]).double() for c in captured)
            cost[group] = cost.get(group, 0) + a.T @ b
    return {group: linear_sum_assignment(c.cpu().numpy(), maximize=True)[1] for group, c in cost.items()}


def activation_rebasin(
    model_a: nn.Module, model_b: nn.Module, batches: Iterable[tuple], forward: Callable | None = None
) -> dict[str, torch.Tensor]:
    """``model_b``'s parameters permuted onto ``model_a`` by activation matching (standard variant)."""
    spec = permutation_spec(model_a)
    perms = activation_matching(model_a, model_b, batches, forward)
    return {n: w.detach() for n, w in permute(spec, perms, dict(model_b.named_parameters())).items()}
