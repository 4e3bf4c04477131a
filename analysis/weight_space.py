"""A variant's weight space as equivariant metanetworks read it: effective weights, and the parameter graph.

The metanet stage hands every metanetwork the same input, a network's trainable entries in layout order
(``zoo.layout``). Equivariant metanetworks need more: the weights a network computes with, and where each sits.

- **Effective weights.** A W-Asym layer computes with ``weight * mask + fixed`` (``zoo.layers``); its fixed values
  are one set per zoo, stored in no network. ``WeightSpace.base`` holds them (a metanetwork adds them to
  ``trained``), and ``fixed`` marks them, so a metanetwork sees them as features (the same in every network),
  never as trainable inputs.
- **The parameter graph** (Lim et al. 2023, "Graph Metanetworks for Processing Diverse Neural Architectures"):
  a node per neuron or channel (inputs, every hidden layer, outputs), an edge per weight. Following that paper, a
  linear weight is an edge from input to output neuron; biases and norm scales and shifts are self-loops on the
  neurons they act on (their ``self_loops`` construction); an identity shortcut is an edge of weight 1 per channel
  (type ``residual``), a projection shortcut a conv of its own type. One departure, for CPU budgets: a conv
  contributes one edge per (input, output) channel pair whose features are the whole k x k kernel (padded to 9
  entries), where the paper's graph has one edge per kernel entry; the information and the symmetry are the same.
  sigma-Asym's F, where the zoo shares one, enters as ``gate`` edges between the neurons of a layer, with F's
  entries as constant edge values (FiGLU computes ``sigmoid(F x) * x``: F couples the channels of one layer).

Neuron permutations of a network map its graph to an isomorphic one (hidden nodes carry no index), so any
message-passing network on the graph with a pooled readout is invariant to them; a W-Asym network's fixed entries
stay where they are under such a map, so there the permuted graph is another graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from symzoo.zoo.layers import AsymmetricWeight, FeatureNorm, FiGLU, MaskedLinear
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import MLP, SIREN, ResNet

KERNEL = 9  # entries per edge: a 3x3 kernel; linear weights, biases and 1x1 kernels use the first
EDGE_TYPES = (
    "linear",
    "conv",
    "bias",
    "norm_scale",
    "norm_shift",
    "residual",
    "shortcut_conv",
    "shortcut_norm_scale",
    "shortcut_norm_shift",
    "gate",
)
NODE_TYPES = ("input", "hidden", "output")


@dataclass
class ParameterGraph:
    """One architecture's graph; a network fills its edge values from its effective weight vector.

    ``slots[e, k]`` is the index in the full parameter vector of edge ``e``'s ``k``-th value (-1: none), so
    ``full[..., slots]`` is every network's edge values at once, and each parameter is in exactly one slot."""

    n_nodes: int
    edge_index: torch.Tensor  # (2, E) long: source, target
    slots: torch.Tensor  # (E, K) long, K the most values an edge holds (KERNEL for 3x3 convs, 1 for an MLP)
    edge_const: torch.Tensor  # (E, 2 + len(EDGE_TYPES)) float: constant value, layer position, type one-hot
    node_feat: torch.Tensor  # (N, len(NODE_TYPES) + 2) float: type one-hot, layer position, input/output order

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def gate_edges(self) -> torch.Tensor:
        """bool (E,): the sigma-Asym gate edges, whose constant value is an entry of F."""
        return self.edge_const[:, 2 + EDGE_TYPES.index("gate")] > 0

    def gate_values(self) -> torch.Tensor:
        """(G,) F's entries in gate-edge order: a network's own where the zoo draws F per network."""
        return self.edge_const[self.gate_edges, 0]


class GraphBuilder:
    """Accumulates nodes and edges while walking a module tree."""

    def __init__(self, layout: ParamLayout, n_layers: int) -> None:
        self.offsets = {s.name: (s.offset, s.shape) for s in layout.slots}
        self.n_layers = n_layers
        self.nodes: list[np.ndarray] = []
        self.n_nodes = 0
        self.src: list[np.ndarray] = []
        self.dst: list[np.ndarray] = []
        self.slots: list[np.ndarray] = []
        self.const: list[np.ndarray] = []

    def add_nodes(self, n: int, kind: str, layer: int) -> np.ndarray:
        feat = np.zeros((n, len(NODE_TYPES) + 2), np.float32)
        feat[:, NODE_TYPES.index(kind)] = 1
        feat[:, len(NODE_TYPES)] = layer / self.n_layers
        if kind != "hidden":  # inputs and outputs are not permuted: their order is a feature (GMN does the same)
            feat[:, len(NODE_TYPES) + 1] = np.arange(n) / max(n - 1, 1)
        self.nodes.append(feat)
        ids = np.arange(self.n_nodes, self.n_nodes + n)
        self.n_nodes += n
        return ids

    def add_edges(self, src, dst, slots: np.ndarray, kind: str, layer: int, const: np.ndarray | float = 0.0) -> None:
        src, dst = np.broadcast_arrays(np.asarray(src), np.asarray(dst))
        n = src.size
        padded = np.full((n, KERNEL), -1, np.int64)
        padded[:, : slots.shape[1]] = slots
        feat = np.zeros((n, 2 + len(EDGE_TYPES)), np.float32)
        feat[:, 0] = const
        feat[:, 1] = layer / self.n_layers
        feat[:, 2 + EDGE_TYPES.index(kind)] = 1
        self.src.append(src.reshape(-1))
        self.dst.append(dst.reshape(-1))
        self.slots.append(padded)
        self.const.append(feat)

    def weight(self, name: str, src: np.ndarray, dst: np.ndarray, kind: str, layer: int) -> None:
        """Edges src[i] -> dst[o] for a (out, in[, kh, kw]) weight: one per pair, its kernel as the values."""
        offset, shape = self.offsets[name]
        n_out, n_in = shape[:2]
        k = int(np.prod(shape[2:], dtype=np.int64))
        index = offset + np.arange(n_out * n_in * k).reshape(n_out * n_in, k)
        pairs_dst, pairs_src = np.meshgrid(dst, src, indexing="ij")
        self.add_edges(pairs_src.reshape(-1), pairs_dst.reshape(-1), index, kind, layer)

    def per_node(self, name: str, nodes: np.ndarray, kind: str, layer: int) -> None:
        """Self-loops carrying a vector parameter (bias, norm scale or shift), one entry per node."""
        offset, shape = self.offsets[name]
        self.add_edges(nodes, nodes, (offset + np.arange(shape[0]))[:, None], kind, layer)

    def gate(self, module: FiGLU, nodes: np.ndarray, layer: int) -> None:
        """FiGLU's F: an edge j -> i of constant value F[i, j] for every pair of the layer's neurons."""
        f = module.gate.detach().float().cpu().numpy()
        dst, src = np.meshgrid(nodes, nodes, indexing="ij")
        empty = np.zeros((dst.size, 0), np.int64)
        self.add_edges(src.reshape(-1), dst.reshape(-1), empty, "gate", layer, f.reshape(-1))

    def build(self) -> ParameterGraph:
        slots = np.concatenate(self.slots)
        width = int((slots >= 0).sum(1).max())  # an MLP's edges hold one value each: no padding to 9
        return ParameterGraph(
            self.n_nodes,
            torch.from_numpy(np.stack([np.concatenate(self.src), np.concatenate(self.dst)])),
            torch.from_numpy(np.ascontiguousarray(slots[:, :width])),
            torch.from_numpy(np.concatenate(self.const)),
            torch.from_numpy(np.concatenate(self.nodes)),
        )


def _norm(g: GraphBuilder, prefix: str, nodes: np.ndarray, layer: int, shortcut: bool = False) -> None:
    kind = "shortcut_norm" if shortcut else "norm"
    g.per_node(f"{prefix}.weight", nodes, f"{kind}_scale", layer)
    g.per_node(f"{prefix}.bias", nodes, f"{kind}_shift", layer)


def _activation(g: GraphBuilder, module: nn.Module, nodes: np.ndarray, layer: int) -> None:
    if isinstance(module, FiGLU):
        g.gate(module, nodes, layer)


def _mlp_graph(model: MLP, layout: ParamLayout) -> ParameterGraph:
    modules = list(model.layers)
    linears = [i for i, m in enumerate(modules) if isinstance(m, MaskedLinear)]
    g = GraphBuilder(layout, len(linears))
    current = g.add_nodes(modules[0].in_features, "input", 0)
    layer = 0
    for i, module in enumerate(modules):
        if isinstance(module, MaskedLinear):
            layer += 1
            out = g.add_nodes(module.out_features, "output" if i == linears[-1] else "hidden", layer)
            g.weight(f"layers.{i}.weight", current, out, "linear", layer)
            g.per_node(f"layers.{i}.bias", out, "bias", layer)
            current = out
        elif isinstance(module, FeatureNorm):
            _norm(g, f"layers.{i}", current, layer)
        else:
            _activation(g, module, current, layer)
    return g.build()


def _siren_graph(model: SIREN, layout: ParamLayout) -> ParameterGraph:
    """An MLP's graph: each sine layer's linear map and bias (the sine, like any activation, is no parameter), and
    sigma-Asym's gate after the sine."""
    g = GraphBuilder(layout, len(model.layers) + 1)
    current = g.add_nodes(model.layers[0].linear.in_features, "input", 0)
    for i, sine in enumerate(model.layers):
        out = g.add_nodes(sine.linear.out_features, "hidden", i + 1)
        g.weight(f"layers.{i}.linear.weight", current, out, "linear", i + 1)
        g.per_node(f"layers.{i}.linear.bias", out, "bias", i + 1)
        _activation(g, sine.act, out, i + 1)
        current = out
    outputs = g.add_nodes(model.head.out_features, "output", len(model.layers) + 1)
    g.weight("head.weight", current, outputs, "linear", len(model.layers) + 1)
    g.per_node("head.bias", outputs, "bias", len(model.layers) + 1)
    return g.build()


def _resnet_graph(model: ResNet, layout: ParamLayout) -> ParameterGraph:
    blocks = [(s, b, block) for s, stage in enumerate(model.stages) for b, block in enumerate(stage)]
    g = GraphBuilder(layout, 2 * len(blocks) + 2)
    inputs = g.add_nodes(model.stem.in_channels, "input", 0)
    stream = g.add_nodes(model.stem.out_channels, "hidden", 1)
    g.weight("stem.weight", inputs, stream, "conv", 1)
    _norm(g, "stem_norm", stream, 1)
    _activation(g, model.stem_act, stream, 1)
    layer = 1
    for s, b, block in blocks:
        p = f"stages.{s}.{b}"
        inner = g.add_nodes(block.conv1.out_channels, "hidden", layer + 1)
        g.weight(f"{p}.conv1.weight", stream, inner, "conv", layer + 1)
        _norm(g, f"{p}.norm1", inner, layer + 1)
        _activation(g, block.act1, inner, layer + 1)
        out = g.add_nodes(block.conv2.out_channels, "hidden", layer + 2)
        g.weight(f"{p}.conv2.weight", inner, out, "conv", layer + 2)
        _norm(g, f"{p}.norm2", out, layer + 2)
        if isinstance(block.shortcut, nn.Identity):
            g.add_edges(stream, out, np.zeros((len(out), 0), np.int64), "residual", layer + 2, 1.0)
        else:
            g.weight(f"{p}.shortcut.0.weight", stream, out, "shortcut_conv", layer + 2)
            _norm(g, f"{p}.shortcut.1", out, layer + 2, shortcut=True)
        _activation(g, block.act2, out, layer + 2)
        stream, layer = out, layer + 2
    outputs = g.add_nodes(model.head.out_features, "output", layer + 1)
    g.weight("head.weight", stream, outputs, "linear", layer + 1)
    g.per_node("head.bias", outputs, "bias", layer + 1)
    return g.build()


def parameter_graph(model: nn.Module, layout: ParamLayout | None = None) -> ParameterGraph:
    """The parameter graph of a symzoo MLP, SIREN or ResNet (any width, ResNet8 or ResNet20)."""
    layout = layout or ParamLayout.from_model(model)
    if isinstance(model, MLP):
        graph = _mlp_graph(model, layout)
    elif isinstance(model, SIREN):
        graph = _siren_graph(model, layout)
    elif isinstance(model, ResNet):
        graph = _resnet_graph(model, layout)
    else:
        raise ValueError(f"no parameter graph for {type(model).__name__}; symzoo builds MLP, SIREN and ResNet graphs")
    used = graph.slots[graph.slots >= 0]
    if used.numel() != layout.size or torch.unique(used).numel() != layout.size:
        raise AssertionError("the parameter graph must hold every parameter exactly once")
    return graph


@dataclass
class WeightSpace:
    """What an equivariant metanetwork needs to know about a variant beyond its trainable entries.

    ``template`` is one network of the variant (its weights unused): the module tree, the W-Asym fixed values and,
    where the zoo shares one F, sigma-Asym's gates."""

    template: nn.Module
    per_network_gates: bool = False  # sigma-Asym with F per network: inputs end with the network's F (gate_matrix)
    layout: ParamLayout = field(init=False)
    base: torch.Tensor = field(init=False)  # (P,) effective values of the entries no network trains, else 0
    fixed: torch.Tensor = field(init=False)  # (P,) 1.0 where an entry is fixed (W-Asym), else 0
    trainable_index: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.layout = ParamLayout.from_model(self.template)
        base = torch.zeros(self.layout.size)
        slots = {s.name: s for s in self.layout.slots}
        for name, module in self.template.named_modules():
            if isinstance(module, AsymmetricWeight) and module.weight_fixed is not None:
                s = slots[f"{name}.weight" if name else "weight"]
                base[s.offset : s.offset + s.size] = module.weight_fixed.detach().float().reshape(-1)
        self.base = base
        self.fixed = torch.from_numpy(~self.layout.trainable).float()
        self.trainable_index = torch.from_numpy(self.layout.trainable_index)

    @classmethod
    def of_zoo(cls, zoo, variant: str) -> WeightSpace:
        """A zoo variant's weight space, from the zoo's config: every network of the variant shares it (F too,
        where the zoo draws one F for all; with F per sample, sample 0's)."""
        from symzoo.zoo.models import build_configured, gates_per_sample

        shape, classes = tuple(zoo.manifest["in_shape"]), zoo.manifest["num_classes"]
        template = build_configured(zoo.config, variant, shape, classes, sample=0)
        return cls(template, gates_per_sample(zoo.config, variant))

    @property
    def n_gates(self) -> int:
        """How many F entries end each input row (0 unless ``per_network_gates``)."""
        return int(self.graph().gate_edges.sum()) if self.per_network_gates else 0

    @property
    def arch(self) -> str:
        if isinstance(self.template, SIREN):
            return "siren"
        return "mlp" if isinstance(self.template, MLP) else "resnet"

    def trained(self, flat: torch.Tensor) -> torch.Tensor:
        """(B, n_trainable) trainable entries -> (B, P) in layout order, 0 at fixed entries (as stored)."""
        full = flat.new_zeros(flat.shape[0], self.layout.size)
        full[:, self.trainable_index.to(flat.device)] = flat
        return full

    def graph(self) -> ParameterGraph:
        return parameter_graph(self.template, self.layout)

    def linear_layers(self) -> list[tuple[str, str, str | None]]:
        """An MLP's or SIREN's (weight, bias, norm) parameter prefixes per linear layer, for NFN's weight space."""
        if isinstance(self.template, SIREN):
            n = len(self.template.layers)
            sines = [(f"layers.{i}.linear.weight", f"layers.{i}.linear.bias", None) for i in range(n)]
            return [*sines, ("head.weight", "head.bias", None)]
        if not isinstance(self.template, MLP):
            raise ValueError("NFN's weight space here is an MLP's or a SIREN's; this variant is a ResNet")
        modules = list(self.template.layers)
        out = []
        for i, m in enumerate(modules):
            if isinstance(m, MaskedLinear):
                norm = i + 1 if i + 1 < len(modules) and isinstance(modules[i + 1], FeatureNorm) else None
                out.append((f"layers.{i}.weight", f"layers.{i}.bias", None if norm is None else f"layers.{norm}"))
        return out
