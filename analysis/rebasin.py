"""Git Re-Basin weight matching (Ainsworth et al. 2023) with permutation specs derived from a model's structure.

A permutation spec says, for every parameter tensor, which hidden-unit permutation acts on each of its axes.
It is read off the module tree: a ResNet has one permutation per residual stream (the stem output and the
stage-1 stream share one; each stage that changes width starts a new one) and one per block interior; norm
affines permute with their channels; a shortcut conv takes (P_out, P_in); the head's input follows the last
stream and its bias is not permuted. An MLP has one permutation per hidden layer. Weight matching then permutes
the second network onto the first by coordinate descent, each step a linear assignment (SPEC section 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from symzoo.zoo.layers import AsymmetricWeight, FeatureNorm, FiGLU, MaskedLinear
from symzoo.zoo.models import MLP, ResNet

Axes = tuple[str | None, ...]


@dataclass(frozen=True)
class PermutationSpec:
    axes: dict[str, Axes]  # parameter name -> the permutation acting on each axis (None: not permuted)

    @property
    def perm_to_axes(self) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        for name, axes in self.axes.items():
            for axis, perm in enumerate(axes):
                if perm is not None:
                    out.setdefault(perm, []).append((name, axis))
        return out


def _conv(perm_out: str | None, perm_in: str | None) -> Axes:
    return (perm_out, perm_in, None, None)


def _resnet_spec(model: ResNet) -> dict[str, Axes]:
    stream = "stream.stem"  # the stem output and every residual stream it feeds without a projection
    axes = {"stem.weight": _conv(stream, None), "stem_norm.weight": (stream,), "stem_norm.bias": (stream,)}
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            p = f"stages.{s}.{b}"
            projected = not isinstance(block.shortcut, nn.Identity)
            out = f"stream.stage{s}" if projected else stream
            inner = f"{p}.inner"
            axes |= {f"{p}.conv1.weight": _conv(inner, stream), f"{p}.norm1.weight": (inner,)}
            axes |= {f"{p}.norm1.bias": (inner,), f"{p}.conv2.weight": _conv(out, inner)}
            axes |= {f"{p}.norm2.weight": (out,), f"{p}.norm2.bias": (out,)}
            if projected:
                axes |= {f"{p}.shortcut.0.weight": _conv(out, stream)}
                axes |= {f"{p}.shortcut.1.weight": (out,), f"{p}.shortcut.1.bias": (out,)}
            stream = out
    axes |= {"head.weight": (None, stream), "head.bias": (None,)}
    return axes


def _mlp_spec(model: MLP) -> dict[str, Axes]:
    linears = [i for i, m in enumerate(model.layers) if isinstance(m, MaskedLinear)]
    axes: dict[str, Axes] = {}
    previous: str | None = None
    for i, module in enumerate(model.layers):
        if isinstance(module, MaskedLinear):
            out = None if i == linears[-1] else f"hidden.{i}"
            axes |= {f"layers.{i}.weight": (out, previous), f"layers.{i}.bias": (out,)}
            previous = out
        elif isinstance(module, FeatureNorm):
            axes |= {f"layers.{i}.weight": (previous,), f"layers.{i}.bias": (previous,)}
    return axes


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The spec of a standard ResNet or MLP; asymmetric networks have no permutation symmetry to match."""
    for module in model.modules():
        if isinstance(module, FiGLU) or (isinstance(module, AsymmetricWeight) and module.weight_mask is not None):
            raise ValueError(
                "weight matching applies to standard networks: W-Asym and sigma-Asym layers are not permutation "
                "symmetric"
            )
    if isinstance(model, ResNet):
        axes = _resnet_spec(model)
    elif isinstance(model, MLP):
        axes = _mlp_spec(model)
    else:
        raise ValueError(f"no permutation spec for {type(model).__name__}; symzoo derives ResNet and MLP specs")
    names = [n for n, _ in model.named_parameters()]
    if sorted(names) != sorted(axes):
        raise ValueError(f"permutation spec does not cover the parameters: {sorted(set(names) ^ set(axes))[:4]}")
    return PermutationSpec(axes)


def permute(spec: PermutationSpec, perms: dict[str, np.ndarray], params: dict, skip: tuple[str, int] | None = None):
    """``params`` with every axis reindexed by its permutation (``skip``: leave that one (name, axis) alone)."""
    out = {}
    for name, w in params.items():
        for axis, perm in enumerate(spec.axes[name]):
            if perm is not None and (name, axis) != skip:
                w = torch.index_select(w, axis, torch.as_tensor(perms[perm], device=w.device))
        out[name] = w
    return out


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
