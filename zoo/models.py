"""ResNet8/ResNet20 and MLP in their standard, W-Asymmetric and sigma-Asymmetric variants (docs/paper.md §1).

Every variant has the same module tree and parameter names; only the layers' fixed structure differs, so one
parameter layout describes a whole paired zoo.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from symzoo.zoo.layers import (
    ChannelNorm,
    FeatureNorm,
    FiGLU,
    FixSpec,
    MaskedConv2d,
    MaskedLinear,
    WeightInit,
    init_fixed_structure,
    init_trainable,
    load_fixed_structure,
)

Variant = Literal["standard", "w_asym", "sigma_asym"]
VARIANTS: tuple[str, ...] = ("standard", "w_asym", "sigma_asym")
ARCHS: tuple[str, ...] = (
    "resnet8", "resnet20", "resnet110", "mlp", "bnn_mlp", "small_cnn", "convnet", "gnn", "siren"
)  # fmt: skip
BLOCKS_PER_STAGE = {"resnet8": 1, "resnet20": 3, "resnet110": 18}
MLP_ARCHS: tuple[str, ...] = ("mlp", "bnn_mlp")
GATES: tuple[str, ...] = ("zoo", "network")  # one FiGLU F per zoo, or one per hyperparameter sample
# Each architecture starts from its authors' init (docs/paper.md §1): their ResNets from Kaiming normal, their MLPs
# from PyTorch's default nn.Linear init. (W-Asym trainable entries start U(+-1/sqrt(fan_in)) in both.)
WEIGHT_INIT: dict[str, WeightInit] = {
    "resnet8": "kaiming_normal",
    "resnet20": "kaiming_normal",
    "resnet110": "kaiming_normal",
    "mlp": "torch_default",
    "bnn_mlp": "torch_default",
    "small_cnn": "kaiming_normal",  # the Small CNN Zoo's networks drew theirs from several inits (its metadata)
    "convnet": "kaiming_normal",  # the ModelZoos drew theirs from several inits too (model::init_type)
    "gnn": "torch_default",  # the authors' gnn/ code: nn.Linear's default and their SparseLinear's (the same draw)
    "siren": "siren",  # Sitzmann et al. 2020: U(+-1/fan_in) first, U(+-sqrt(6/fan_in)/omega) after
}
# small_cnn's and convnet's (model.activation): the Small CNN Zoo's two and the ModelZoos' (model::nlin)
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "leakyrelu", "sigmoid", "silu", "gelu")
# The Bayesian experiment's MLP (docs/paper.md §6): 256 units, depth 8 or 16, ReLU; W-Asym fixes 8 entries of
# every row of every layer at kappa 0.5.
BNN_MLP = {"hidden": 256, "depth": 8, "fixed": 8, "kappa": 0.5}

# The GNN of Table 1 (docs/paper.md §7): 3 message-passing layers of 256; W-Asym fixes 6 entries of every row of
# every linear map at kappa 0.5; sigma-Asym's F ~ N(0, (0.01 / sqrt(hidden))^2), the authors' "small standard
# deviation". Their W-Asym GNN also gates with that F (main_arxiv.py builds asym_w_gnn with nonlin asym_swiglu):
# model.w_asym_gates, true by default for gnn, keeps it; false gives a W-Asym GNN with plain GELUs.
GNN_SHAPE = {"hidden": 256, "depth": 3, "fixed": 6, "kappa": 0.5, "gate_scale": 0.01}

# The SIREN of INR zoos (Sitzmann et al. 2020; DWSNets' default 2 -> 32 -> 32 -> 1): sine layers sin(omega (W x + b)),
# omega 30. W-Asym fixes 1 entry per row of the first layer (it has 2 inputs), hidden / 8 per row of the others and
# hidden / 2 in the head, as the MLP's ratios, each at its layer's init bound (a SIREN's weights are ~1e-2: fixed
# entries of scale 1 would swamp them). sigma-Asym gates each sine layer's output: sigmoid(F y) * y.
SIREN_SHAPE = {"hidden": 32, "depth": 3, "omega": 30.0, "output_offset": 0.5}  # the offset: DWSNets' (their #7)

# ResNet20 "fix entries" per output channel at width x1 (paper Table 6); width x8 fixes three times more (Table 7).
RESNET20_FIXED = {"stem": 12, "conv": (36, 54, 72), "skip": (4, 6, 8), "linear": 8}


def _activation(variant: str, channels: int) -> nn.Module:
    return FiGLU(channels) if variant == "sigma_asym" else nn.ReLU()


class BasicBlock(nn.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        variant: str,
        fix_conv: FixSpec | None,
        fix_skip: FixSpec | None,
    ):
        super().__init__()
        self.conv1 = MaskedConv2d(c_in, c_out, 3, stride, 1, fix=fix_conv)
        self.norm1 = ChannelNorm(c_out)
        self.act1 = _activation(variant, c_out)
        self.conv2 = MaskedConv2d(c_out, c_out, 3, 1, 1, fix=fix_conv)
        self.norm2 = ChannelNorm(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(MaskedConv2d(c_in, c_out, 1, stride, fix=fix_skip), ChannelNorm(c_out))
        self.act2 = _activation(variant, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet with ``GroupNorm(1, C)`` ("LayerNorm"); any input size thanks to adaptive pooling."""

    def __init__(
        self,
        blocks_per_stage: int,
        in_channels: int,
        num_classes: int,
        variant: str,
        width: int = 1,
        fixes: dict[str, object] | None = None,
    ):
        super().__init__()
        fixes = fixes or {}
        widths = [16 * width, 32 * width, 64 * width]
        self.stem = MaskedConv2d(in_channels, widths[0], 3, 1, 1, fix=fixes.get("stem"))
        self.stem_norm = ChannelNorm(widths[0])
        self.stem_act = _activation(variant, widths[0])
        stages = []
        c_in = widths[0]
        for s, c_out in enumerate(widths):
            conv_fix = fixes["conv"][s] if "conv" in fixes else None
            skip_fix = fixes["skip"][s] if "skip" in fixes else None
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, variant, conv_fix, skip_fix))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = MaskedLinear(widths[-1], num_classes, fix=fixes.get("linear"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_norm(self.stem(x)))
        x = self.stages(x)
        return self.head(self.pool(x).flatten(1))


class MLP(nn.Module):
    """``depth`` linear layers; hidden ones followed by LayerNorm and GELU (ReLU with ``relu``; FiGLU in the
    sigma-Asym variant either way)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        variant: str,
        width: int = 512,
        depth: int = 4,
        fixes: Sequence[FixSpec | None] | None = None,
        relu: bool = False,
    ):
        super().__init__()
        fixes = list(fixes) if fixes is not None else [None] * depth
        sizes = [in_features] + [width] * (depth - 1) + [num_classes]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(MaskedLinear(sizes[i], sizes[i + 1], fix=fixes[i]))
            if i < depth - 1:
                layers.append(FeatureNorm(sizes[i + 1]))
                plain = nn.ReLU() if relu else nn.GELU()
                layers.append(FiGLU(sizes[i + 1], std=1.0) if variant == "sigma_asym" else plain)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leakyrelu": nn.LeakyReLU,  # slope 0.01, PyTorch's default (the ModelZoos' nn.LeakyReLU())
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}
# The Small CNN Zoo's network (Unterthiner et al. 2020; docs/zoo.md) as a ConvNet spec
SMALL_CNN_LAYERS = "c16k3s2,c16k3s2,c16k3s2,mean"


@dataclass(frozen=True)
class ConvLayer:
    channels: int
    kernel: int
    stride: int = 1
    pool: bool = False  # a 2x2 max pool after the convolution, before the activation (the ModelZoos' order)


@dataclass(frozen=True)
class ConvNetShape:
    """A plain CNN: unpadded convolutions, a readout (``mean``: global average pooling; ``flatten``), hidden dense
    layers, then the head to the classes. Written as a short spec, e.g. ``c8k5p,c6k5p,c4k2,flatten,20``: ``c``
    channels, ``k`` kernel, optional ``s`` stride, ``p`` a 2x2 max pool; the readout; each hidden layer's width."""

    convs: tuple[ConvLayer, ...]
    readout: str
    dense: tuple[int, ...]

    @classmethod
    def parse(cls, spec: str) -> ConvNetShape:
        tokens = [t.strip() for t in spec.split(",") if t.strip()]
        readouts = [i for i, t in enumerate(tokens) if t in ("mean", "flatten")]
        if len(readouts) != 1:
            raise ValueError(f"{spec!r} needs exactly one readout, mean or flatten, after its convolutions")
        at = readouts[0]
        convs = []
        for token in tokens[:at]:
            match = re.fullmatch(r"c(\d+)k(\d+)(?:s(\d+))?(p?)", token)
            if not match:
                raise ValueError(f"{token!r} in {spec!r} is no convolution; write c<channels>k<kernel>[s<stride>][p]")
            convs.append(ConvLayer(int(match[1]), int(match[2]), int(match[3] or 1), bool(match[4])))
        if not all(t.isdigit() for t in tokens[at + 1 :]):
            raise ValueError(f"{spec!r}: after the readout come hidden layer widths only (numbers)")
        dense = tuple(int(t) for t in tokens[at + 1 :])
        if any(c.channels < 1 or c.kernel < 1 or c.stride < 1 for c in convs) or any(d < 1 for d in dense):
            raise ValueError(f"{spec!r}: channels, kernels, strides and widths are positive")
        return cls(tuple(convs), tokens[at], dense)

    def __str__(self) -> str:
        convs = [f"c{c.channels}k{c.kernel}" + (f"s{c.stride}" if c.stride != 1 else "") + ("p" if c.pool else "")
                 for c in self.convs]  # fmt: skip
        return ",".join([*convs, self.readout, *map(str, self.dense)])

    def features(self, in_shape: Sequence[int]) -> int:
        """The readout's width on images of ``in_shape`` (C, H, W); ``ValueError`` where they shrink to nothing."""
        channels, height, width = in_shape
        for conv in self.convs:
            height, width = (height - conv.kernel) // conv.stride + 1, (width - conv.kernel) // conv.stride + 1
            if conv.pool:
                height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise ValueError(f"{self} leaves nothing of a {in_shape[1]}x{in_shape[2]} image")
            channels = conv.channels
        return channels if self.readout == "mean" else channels * height * width


class ConvNet(nn.Module):
    """A plain CNN of a ``ConvNetShape``: conv (+ max pool) + activation per layer, the readout, dense layers with
    the activation, a linear head. Layers are named ``conv1..``, ``dense1..``, ``head``. The Small CNN Zoo's
    network (``small_cnn``, 4,970 parameters on one channel) and the ModelZoos' CNNs (``convnet``) are two shapes.
    Standard variant only: no W-Asym or sigma-Asym structure is defined for it."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, shape: ConvNetShape, activation: str = "relu"):
        super().__init__()
        act = ACTIVATION_MODULES[activation]
        self.shape = shape
        channels = in_shape[0]
        for i, conv in enumerate(shape.convs, start=1):
            self.add_module(f"conv{i}", MaskedConv2d(channels, conv.channels, conv.kernel, conv.stride, bias=True))
            self.add_module(f"act{i}", act())
            channels = conv.channels
        width = shape.features(in_shape)
        for i, units in enumerate(shape.dense, start=1):
            self.add_module(f"dense{i}", MaskedLinear(width, units))
            self.add_module(f"dense_act{i}", act())
            width = units
        self.head = MaskedLinear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.shape.convs, start=1):
            x = getattr(self, f"conv{i}")(x)
            if conv.pool:
                x = F.max_pool2d(x, 2)
            x = getattr(self, f"act{i}")(x)
        x = x.mean((2, 3)) if self.shape.readout == "mean" else x.flatten(1)
        for i in range(1, len(self.shape.dense) + 1):
            x = getattr(self, f"dense_act{i}")(getattr(self, f"dense{i}")(x))
        return self.head(x)


class GraphLayer(nn.Module):
    """One message-passing layer: mean-aggregate (each node's own features plus its neighbours' mean), a linear
    map, BatchNorm over nodes, then GELU (or FiGLU)."""

    def __init__(self, d_in: int, d_out: int, gated: bool, gate_std: float, fix: FixSpec | None):
        super().__init__()
        self.linear = MaskedLinear(d_in, d_out, fix=fix)
        self.norm = nn.BatchNorm1d(d_out)
        self.act: nn.Module = FiGLU(d_out, std=gate_std) if gated else nn.GELU()

    def forward(self, x: torch.Tensor, aggregate: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(torch.sparse.mm(aggregate, x))))


class GNN(nn.Module):
    """The paper's GNN for node classification (Table 1; the authors' ``gnn/main_arxiv.py``): ``depth``
    message-passing layers of ``hidden`` units, then a linear head. ``forward(features, aggregate)`` takes the
    graph's node features ``(N, F)`` and its sparse mean-aggregation operator (``zoo.graph.Graph.aggregate``) and
    returns logits for every node. On ogbn-arXiv's shapes (128 features, 40 classes) it has 176,424 parameters."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        variant: str,
        hidden: int = 256,
        depth: int = 3,
        gated: bool = False,
        gate_std: float | None = None,
        fixes: Sequence[FixSpec | None] | None = None,
    ):
        super().__init__()
        fixes = list(fixes) if fixes is not None else [None] * (depth + 1)
        std = GNN_SHAPE["gate_scale"] / math.sqrt(hidden) if gate_std is None else gate_std
        sizes = [in_features] + [hidden] * depth
        self.layers = nn.ModuleList(GraphLayer(sizes[i], hidden, gated, std, fixes[i]) for i in range(depth))
        self.head = MaskedLinear(hidden, num_classes, fix=fixes[depth])

    def forward(self, features: torch.Tensor, aggregate: torch.Tensor) -> torch.Tensor:
        x = features
        for layer in self.layers:
            x = layer(x, aggregate)
        return self.head(x)


class SineLayer(nn.Module):
    """sin(omega (W x + b)), then FiGLU in the sigma-Asym variant."""

    def __init__(self, d_in: int, d_out: int, omega: float, first: bool, gated: bool, gate_std, fix):
        super().__init__()
        self.omega = omega
        self.linear = MaskedLinear(d_in, d_out, fix=fix)
        self.linear.siren_bound = 1 / d_in if first else math.sqrt(6 / d_in) / omega
        self.act: nn.Module = FiGLU(d_out, std=gate_std) if gated else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.sin(self.omega * self.linear(x)))


class SIREN(nn.Module):
    """An implicit neural representation: coordinates ``(B, in)`` -> values ``(B, out)``; ``depth`` linear maps,
    all but the last followed by a sine; ``output_offset`` is added to the output (DWSNets' +0.5, which lets a
    network near zero output mid-grey)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        variant: str,
        hidden: int = 32,
        depth: int = 3,
        omega: float = 30.0,
        output_offset: float = 0.0,
        gate_std: float | None = None,
        asym: bool = False,
    ):
        super().__init__()
        sizes = [in_features] + [hidden] * (depth - 1)
        layers = []
        for i in range(depth - 1):
            bound = 1 / sizes[i] if i == 0 else math.sqrt(6 / sizes[i]) / omega
            fix = FixSpec(1 if i == 0 else max(1, hidden // 8), bound) if asym else None
            layers.append(SineLayer(sizes[i], hidden, omega, i == 0, variant == "sigma_asym", gate_std, fix))
        self.layers = nn.Sequential(*layers)
        head_bound = math.sqrt(6 / hidden) / omega
        self.head = MaskedLinear(hidden, out_features, fix=FixSpec(hidden // 2, head_bound) if asym else None)
        self.head.siren_bound = head_bound
        self.output_offset = output_offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x)) + self.output_offset


def resnet_fixes(arch: str, width: int) -> dict[str, object]:
    """W-Asym fixed structure: ResNet8 fixes 8 whole filters per output channel; ResNet20 and ResNet110 fix single
    entries (paper Table 6)."""
    if arch == "resnet8":
        conv = FixSpec(8, 2.0, "filter")
        return {"stem": conv, "conv": [conv] * 3, "skip": [FixSpec(8, 2.0)] * 3, "linear": FixSpec(8, 2.0)}
    scale = 3 if width >= 8 else 1
    t = RESNET20_FIXED
    return {
        "stem": FixSpec(t["stem"] * scale, 2.0),
        "conv": [FixSpec(n * scale, 2.0) for n in t["conv"]],
        "skip": [FixSpec(n * scale, 2.0) for n in t["skip"]],
        "linear": FixSpec(t["linear"] * scale, 2.0),
    }


def mlp_fixes(width: int, depth: int) -> list[FixSpec]:
    """Paper Table 5 at width 512: 64/64/64/256 fixed per row with kappa 1/1/0.5/0.25; other widths keep the
    ratios (width/8 per row of the hidden layers, width/2 in the head)."""
    kappas = [1.0] * (depth - 2) + [0.5, 0.25]
    counts = [width // 8] * (depth - 1) + [width // 2]
    return [FixSpec(n, k) for n, k in zip(counts, kappas, strict=True)]


def adjusted(fixes, kappa: float | None, fixed_head: bool):
    """An architecture's W-Asym fixes with every kappa replaced (``kappa``) and the head left standard (not
    ``fixed_head``); a list for MLPs (head last), a dict for ResNets (head ``linear``)."""

    def scaled(spec):
        if spec is None or kappa is None:
            return spec
        if isinstance(spec, list):
            return [scaled(s) for s in spec]
        return FixSpec(spec.n_fixed, kappa, spec.unit)

    if isinstance(fixes, list):
        out = [scaled(f) for f in fixes]
        return out[:-1] + [None] if not fixed_head else out
    out = {k: scaled(v) for k, v in fixes.items()}
    if not fixed_head:
        out["linear"] = None
    return out


def build(
    arch: str,
    variant: str,
    in_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    asym_seed: int = 0,
    init_seed: int = 0,
    width: int = 1,
    gate_sample: int | None = None,
    hidden: int | None = None,
    gate_std: float | None = None,
    depth: int | None = None,
    kappa: float | None = None,
    fixed_head: bool = True,
    fixed_structure: dict[str, dict] | None = None,
    activation: str | None = None,
    w_asym_gates: bool | None = None,
    output_offset: float | None = None,
    layers: str | None = None,
) -> nn.Module:
    """Build and initialise one network.

    ``asym_seed`` is the zoo's: it fixes masks, fixed values and FiGLU gates, shared by every network of the zoo.
    ``gate_sample`` (a hyperparameter sample) gives FiGLU gates of that sample's own instead of the zoo's.
    ``init_seed`` is the network's own and draws its trainable initial weights.
    ``hidden`` (MLP only): units per hidden layer; default the paper's 512 x ``width``.
    ``depth`` (MLPs only): linear layers; default 4 (``mlp``) or 8 (``bnn_mlp``).
    ``kappa`` (W-Asym): the fixed entries' scale in every layer instead of the architecture's (the Bayesian ResNet
    rows use 0.5); ``fixed_head`` False leaves the last layer standard (the paper's CIFAR-100 Bayesian ResNets).
    ``gate_std``: the standard deviation of sigma-Asym's F; default the authors' per architecture (docs/paper.md §1:
    1/sqrt(C) in their ResNets, 1 in their MLPs).
    ``fixed_structure`` (W-Asym): masks and fixed values stored with the zoo (``layers.encode_fixed_structure``; an
    imported zoo's own) instead of those drawn from ``asym_seed``. ``activation`` (small_cnn, convnet): one of
    ``ACTIVATIONS``; ``layers`` (convnet): its ``ConvNetShape`` spec.
    ``w_asym_gates`` (gnn): whether W-Asym layers also gate with FiGLU, as the authors' W-Asym GNN (null: yes).
    ``output_offset`` (siren): added to the output (null: 0.5). A SIREN maps 2-d coordinates to one intensity:
    ``in_shape`` and ``num_classes`` are (2,) and 1 for it.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    asym = variant == "w_asym"
    if arch == "mlp":
        in_features, units = math.prod(in_shape), hidden or 512 * width
        depth = depth or 4
        fixes = adjusted(mlp_fixes(units, depth), kappa, fixed_head) if asym else None
        model: nn.Module = MLP(in_features, num_classes, variant, width=units, depth=depth, fixes=fixes)
    elif arch == "bnn_mlp":
        depth, units = depth or BNN_MLP["depth"], hidden or BNN_MLP["hidden"]
        fixes = adjusted([FixSpec(BNN_MLP["fixed"], BNN_MLP["kappa"])] * depth, kappa, fixed_head) if asym else None
        model = MLP(math.prod(in_shape), num_classes, variant, width=units, depth=depth, fixes=fixes, relu=True)
    elif arch == "gnn":
        depth, units = depth or GNN_SHAPE["depth"], hidden or GNN_SHAPE["hidden"]
        row_fix = FixSpec(GNN_SHAPE["fixed"], GNN_SHAPE["kappa"])
        fixes = adjusted([row_fix] * (depth + 1), kappa, fixed_head) if asym else None
        gated = variant == "sigma_asym" or (asym and w_asym_gates is not False)
        model = GNN(in_shape[0], num_classes, variant, units, depth, gated, gate_std, fixes)
    elif arch == "siren":
        depth, units = depth or SIREN_SHAPE["depth"], hidden or SIREN_SHAPE["hidden"]
        std = 1 / math.sqrt(units) if gate_std is None else gate_std
        offset = SIREN_SHAPE["output_offset"] if output_offset is None else output_offset
        model = SIREN(in_shape[0], num_classes, variant, units, depth, SIREN_SHAPE["omega"], offset, std, asym)
    elif arch in ("small_cnn", "convnet"):
        if variant != "standard":
            raise ValueError(f"{arch} has no {variant} variant; standard only")
        if arch == "convnet" and layers is None:
            raise ValueError("a convnet needs its layers (model.layers), e.g. c8k5p,c6k5p,c4k2,flatten,20")
        shape = ConvNetShape.parse(SMALL_CNN_LAYERS if arch == "small_cnn" else layers)
        model = ConvNet(in_shape, num_classes, shape, activation or "relu")
    else:
        fixes = adjusted(resnet_fixes(arch, width), kappa, fixed_head) if asym else None
        model = ResNet(BLOCKS_PER_STAGE[arch], in_shape[0], num_classes, variant, width, fixes)
    if gate_std is not None:
        for module in model.modules():
            if isinstance(module, FiGLU):
                module.std = gate_std
    init_fixed_structure(model, asym_seed, gate_sample)
    init_trainable(model, init_seed, WEIGHT_INIT[arch])
    if asym and fixed_structure is not None:
        load_fixed_structure(model, fixed_structure)
    return model


def gates_of(cfg: dict) -> str:
    """The zoo's FiGLU gate sharing; zoos written before the choice existed had one F per zoo."""
    return cfg["model"].get("gates", "zoo")


def describe_fixed_structure(cfg: dict) -> str:
    """How a zoo's networks were made, for every table that compares variants: which init, and how far the fixed
    structure is shared (results with F per zoo and F per network are not the same experiment)."""
    init = {
        "kaiming_normal": "Kaiming normal",
        "torch_default": "PyTorch's default U(+-1/sqrt(fan_in))",
        "siren": "SIREN's U(+-1/fan_in) first, U(+-sqrt(6/fan_in)/30) after",
    }
    parts = [f"{cfg['model']['arch']} weights start from {init[WEIGHT_INIT[cfg['model']['arch']]]}"]
    if "w_asym" in cfg["variants"]:
        stored = " (stored with the zoo: the source's own)" if cfg["model"].get("fixed_structure") else ""
        parts.append(f"W-Asym masks and fixed values: one set per zoo{stored}")
    if "sigma_asym" in cfg["variants"]:
        if cfg["model"].get("gate_std") is not None:
            parts.append(f"sigma-Asym F ~ N(0, {cfg['model']['gate_std']:g}^2) (model.gate_std)")
        if gates_of(cfg) == "network":
            parts.append("sigma-Asym F: one per hyperparameter sample, shared by its replicates (model.gates: network)")
        else:
            parts.append("sigma-Asym F: one per zoo (model.gates: zoo)")
    return "; ".join(parts)


def gates_per_sample(cfg: dict, variant: str) -> bool:
    """Whether networks of ``variant`` in this zoo each have their sample's own F (sigma-Asym, gates: network)."""
    return variant == "sigma_asym" and gates_of(cfg) == "network"


def build_configured(
    cfg: dict,
    variant: str,
    in_shape: Sequence[int],
    num_classes: int,
    init_seed: int = 0,
    sample: int | None = None,
) -> nn.Module:
    """A network of the zoo that config ``cfg`` describes: its model section and zoo seed (the asym seed).

    ``sample`` is the network's hyperparameter sample; a zoo with ``model.gates: network`` needs it to rebuild a
    sigma-Asym network's own F (every other network is the same whatever it is).
    """
    model = cfg["model"]
    if model["arch"] == "siren":  # coordinates (row, column) -> intensity, whatever the images' shape
        in_shape, num_classes = (2,), 1
    gate_sample = None
    if gates_per_sample(cfg, variant):
        if sample is None:
            raise ValueError("this zoo draws F per hyperparameter sample (model.gates: network); pass sample=")
        gate_sample = int(sample)
    return build(
        model["arch"],
        variant,
        in_shape,
        num_classes,
        cfg["seed"],
        init_seed,
        model["width"],
        gate_sample,
        model.get("hidden"),
        model.get("gate_std"),
        model.get("depth"),
        model.get("kappa"),
        model.get("fixed_head", True),
        model.get("fixed_structure"),
        model.get("activation"),
        model.get("w_asym_gates"),
        model.get("output_offset"),
        model.get("layers"),
    )
