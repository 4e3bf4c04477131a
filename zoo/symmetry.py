"""The symmetries of a zoo's networks, as data: permutation specs read off the module tree, and transforms.

A permutation spec says, for every parameter tensor, which hidden-unit permutation acts on each of its axes.
It is read off the module tree: a ResNet has one permutation per residual stream (the stem output and the
stage-1 stream share one; each stage that changes width starts a new one) and one per block interior; norm
affines permute with their channels; a shortcut conv takes (P_out, P_in); the head's input follows the last
stream and its bias is not permuted. An MLP has one permutation per hidden layer. Git Re-Basin
(``analysis.rebasin``) matches networks with these specs; the manifest records them per variant.

Besides permutations, every layer whose output a normalisation rescales (GroupNorm(1, C) after a bias-free conv,
LayerNorm after a linear layer) can be multiplied by any c > 0 without changing the function, up to the norm's
eps. On W-Asym networks neither map is a symmetry (the fixed entries stay where and what they are), on
sigma-Asym networks permutations are not (FiGLU's gate matrix is fixed) but scalings are (the gate sees the
norm's output). The transforms say so, and apply such a map only when asked: the control no symmetric zoo offers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
import torch
from torch import nn

from symzoo.errors import ZooError
from symzoo.zoo.layers import AsymmetricWeight, ChannelNorm, FeatureNorm, FiGLU, MaskedLinear
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import GNN, MLP, SIREN, ConvNet, ResNet

Axes = tuple[str | None, ...]


@dataclass(frozen=True)
class PermutationSpec:
    axes: dict[str, Axes]  # parameter name -> the permutation acting on each axis (None: not permuted)

    @cached_property
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


def _convnet_spec(model: ConvNet) -> dict[str, Axes]:
    """Each conv's output channels (and its bias) permute, and the next layer's inputs follow; each dense layer's
    units likewise. A flatten readout leaves the last conv's channels unpermuted: its permutation would act on the
    next layer's inputs in blocks of the feature map, which a spec of whole axes does not express (a subset of the
    symmetries, all of them real)."""
    axes: dict[str, Axes] = {}
    previous: str | None = None
    n_convs = len(model.shape.convs)
    for i in range(1, n_convs + 1):
        out = None if i == n_convs and model.shape.readout == "flatten" else f"conv{i}"
        axes |= {f"conv{i}.weight": _conv(out, previous), f"conv{i}.bias": (out,)}
        previous = out
    for i in range(1, len(model.shape.dense) + 1):
        axes |= {f"dense{i}.weight": (f"dense{i}", previous), f"dense{i}.bias": (f"dense{i}",)}
        previous = f"dense{i}"
    return axes | {"head.weight": (None, previous), "head.bias": (None,)}


def _gnn_spec(model: GNN) -> dict[str, Axes]:
    """One permutation per message-passing layer's features: its linear map's rows and bias, its BatchNorm's
    affine (and running statistics, which are not parameters), and the next layer's (or the head's) inputs."""
    axes: dict[str, Axes] = {}
    previous: str | None = None
    for i in range(len(model.layers)):
        p, out = f"layers.{i}", f"hidden.{i}"
        axes |= {f"{p}.linear.weight": (out, previous), f"{p}.linear.bias": (out,)}
        axes |= {f"{p}.norm.weight": (out,), f"{p}.norm.bias": (out,)}
        previous = out
    return axes | {"head.weight": (None, previous), "head.bias": (None,)}


def _siren_spec(model: SIREN) -> dict[str, Axes]:
    """One permutation per sine layer's units: its linear map's rows and bias, and the next map's inputs."""
    axes: dict[str, Axes] = {}
    previous: str | None = None
    for i in range(len(model.layers)):
        out = f"hidden.{i}"
        axes |= {f"layers.{i}.linear.weight": (out, previous), f"layers.{i}.linear.bias": (out,)}
        previous = out
    return axes | {"head.weight": (None, previous), "head.bias": (None,)}


def is_permutation_symmetric(model: nn.Module) -> bool:
    """False where a W-Asym layer (fixed entries) or FiGLU (a fixed gate matrix) breaks hidden-unit permutations."""
    return not any(
        isinstance(m, FiGLU) or (isinstance(m, AsymmetricWeight) and m.weight_mask is not None) for m in model.modules()
    )


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The spec of a standard ResNet or MLP; asymmetric networks have no permutation symmetry to match."""
    if not is_permutation_symmetric(model):
        raise ValueError(
            "weight matching applies to standard networks: W-Asym and sigma-Asym layers are not permutation symmetric"
        )
    return structural_spec(model)


def structural_spec(model: nn.Module) -> PermutationSpec:
    """Which permutation acts on each axis of each parameter, read off the module tree whatever the variant (on
    an asymmetric network these maps exist but change the function)."""
    if isinstance(model, ResNet):
        axes = _resnet_spec(model)
    elif isinstance(model, MLP):
        axes = _mlp_spec(model)
    elif isinstance(model, ConvNet):
        axes = _convnet_spec(model)
    elif isinstance(model, GNN):
        axes = _gnn_spec(model)
    elif isinstance(model, SIREN):
        axes = _siren_spec(model)
    else:
        raise ValueError(
            f"no permutation spec for {type(model).__name__}; symzoo derives ResNet, MLP, CNN, GNN and SIREN specs"
        )
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


def scale_groups(model: nn.Module) -> list[tuple[str, ...]]:
    """Tensors that one factor c > 0 may scale together: each layer whose whole output a norm then normalises
    (a conv without bias before GroupNorm(1, C); a linear layer, weight and bias, before LayerNorm or a GNN's
    BatchNorm)."""
    groups = []
    if isinstance(model, ResNet):
        pairs = [("stem", "stem_norm")]
        for s, stage in enumerate(model.stages):
            for b, block in enumerate(stage):
                p = f"stages.{s}.{b}"
                pairs += [(f"{p}.conv1", f"{p}.norm1"), (f"{p}.conv2", f"{p}.norm2")]
                if not isinstance(block.shortcut, nn.Identity):
                    pairs.append((f"{p}.shortcut.0", f"{p}.shortcut.1"))
        modules = dict(model.named_modules())
        for layer, norm in pairs:
            if isinstance(modules[norm], ChannelNorm) and getattr(modules[layer], "bias", None) is None:
                groups.append((f"{layer}.weight",))
    elif isinstance(model, MLP):
        layers = list(model.layers)
        for i, module in enumerate(layers[:-1]):
            if isinstance(module, MaskedLinear) and isinstance(layers[i + 1], FeatureNorm):
                groups.append((f"layers.{i}.weight", f"layers.{i}.bias"))
    elif isinstance(model, GNN):  # BatchNorm with the graph's own statistics (zoo.graph_train.estimate_batchnorm)
        groups += [(f"layers.{i}.linear.weight", f"layers.{i}.linear.bias") for i in range(len(model.layers))]
    return groups


def describe_symmetries(model: nn.Module) -> dict:
    """What the manifest records of a variant: its permutation spec, its scale groups, and which are symmetries."""
    return {
        "permutations": {name: list(axes) for name, axes in structural_spec(model).axes.items()},
        "permutation_is_symmetry": is_permutation_symmetric(model),
        "scale_groups": [list(g) for g in scale_groups(model)],
        "scaling_is_symmetry": not any(
            isinstance(m, AsymmetricWeight) and m.weight_mask is not None for m in model.modules()
        ),
    }


def variant_symmetries(cfg: dict, in_shape, num_classes: int) -> dict[str, dict]:
    """``describe_symmetries`` of each variant of the zoo ``cfg`` describes (from its sample-0 network: the
    structure is every network's)."""
    from symzoo.zoo.models import build_configured

    return {v: describe_symmetries(build_configured(cfg, v, in_shape, num_classes, sample=0)) for v in cfg["variants"]}


def recorded_spec(symmetries: dict) -> PermutationSpec:
    """A variant's permutation spec as the manifest records it (``describe_symmetries``), as a ``PermutationSpec``."""
    return _spec_of(tuple((n, tuple(a)) for n, a in symmetries["permutations"].items()))


@lru_cache(maxsize=16)
def _spec_of(axes: tuple[tuple[str, tuple], ...]) -> PermutationSpec:
    return PermutationSpec(dict(axes))  # built once per variant and process


@dataclass
class Transform:
    """A random map of a network's parameters (``{name: tensor}``, as ``WeightDataset``'s layers view holds
    them). Refuses a variant on which it is not a symmetry unless ``allow_function_change``; draws from
    ``generator`` (default torch's global one, which DataLoader seeds per worker)."""

    symmetries: dict[str, dict]  # per variant, as ``describe_symmetries`` (the manifest's "symmetries")
    allow_function_change: bool = False
    generator: torch.Generator | None = None
    kind: str = field(default="", init=False)

    def is_symmetry(self, variant: str) -> bool:
        return bool(self.symmetries[variant][f"{self.kind}_is_symmetry"])

    def check(self, variant: str) -> None:
        if not self.is_symmetry(variant) and not self.allow_function_change:
            raise ZooError(
                f"a {self.kind} is not a symmetry of {variant} networks (it changes the function they compute); "
                "pass allow_function_change=True to apply it anyway, as a control"
            )


@dataclass
class NeuronPermutation(Transform):
    """Every hidden-unit permutation of the spec drawn uniformly at random."""

    kind: str = field(default="permutation", init=False)

    def spec(self, variant: str) -> PermutationSpec:
        return recorded_spec(self.symmetries[variant])

    def __call__(self, tensors: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
        self.check(variant)
        spec = self.spec(variant)
        sizes = {p: tensors[name].shape[axis] for p, [(name, axis), *_] in spec.perm_to_axes.items()}
        perms = {p: torch.randperm(n, generator=self.generator).numpy() for p, n in sizes.items()}
        return permute(spec, perms, tensors)


@dataclass
class PositiveScaling(Transform):
    """Each scale group multiplied by its own factor, log-uniform in [1 / max_factor, max_factor]."""

    max_factor: float = 2.0
    kind: str = field(default="scaling", init=False)

    def __call__(self, tensors: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
        self.check(variant)
        out = dict(tensors)
        span = float(np.log(self.max_factor))
        for group in self.symmetries[variant]["scale_groups"]:
            c = float(torch.exp((torch.rand((), generator=self.generator) * 2 - 1) * span))
            for name in group:
                out[name] = tensors[name] * c
        return out


@dataclass
class FlatPermutation:
    """Neuron permutations of flat weight vectors (a metanet's input, layout order): a batch ``(B, D)`` -> each row
    mapped by its own uniformly drawn permutation of every hidden unit. The index map of a draw is the layout's
    ``arange`` permuted as a network would be, so one gather applies it. Only for variants whose layout holds every
    parameter (standard networks: the ones a permutation maps to an equivalent network)."""

    layout: ParamLayout
    spec: PermutationSpec

    def __post_init__(self) -> None:
        if self.layout.n_trainable != self.layout.size:
            raise ValueError("FlatPermutation maps full parameter vectors; this layout leaves fixed entries out")
        positions = self.layout.unflatten(torch.arange(self.layout.size, dtype=torch.float64))
        self._positions = {name: t.long() for name, t in positions.items()}
        self._sizes = {p: positions[name].shape[axis] for p, [(name, axis), *_] in self.spec.perm_to_axes.items()}

    def index(self, generator: torch.Generator) -> torch.Tensor:
        """One draw as a gather index (D,): ``flat[index]`` is the permuted network."""
        perms = {p: torch.randperm(n, generator=generator).numpy() for p, n in self._sizes.items()}
        moved = permute(self.spec, perms, self._positions)
        return torch.cat([moved[s.name].reshape(-1) for s in self.layout.slots])

    def __call__(self, flat: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        index = torch.stack([self.index(generator) for _ in range(flat.shape[0])]).to(flat.device)
        return flat.gather(1, index)
