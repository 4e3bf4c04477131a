"""Equivariant metanetworks: the control the paper lacks (does building symmetries in match removing them?).

- ``nfn_np`` / ``nfn_hnp``: invariant neural functionals of Zhou et al. 2023, "Permutation Equivariant Neural
  Functionals" (NeurIPS), from the ``nfn`` package: three equivariant layers (NP, with learned input/output
  embeddings as in that paper, or HNP), ReLU between, the invariant pooling of the same kind, then an MLP head.
  MLP zoos only. Each linear layer is one weight-space entry with three channels: the weight's channels are the
  trained entries (0 where fixed), the fixed values (W-Asym; 0 elsewhere) and a 0/1 "fixed entry" flag, whose
  first two sum to the weight the layer computes with; the bias's are the bias and the following LayerNorm's
  scale and shift (they act per neuron and permute with it; zeros for the head).
- ``gmn``: a graph metanetwork (Lim et al. 2023, "Graph Metanetworks for Processing Diverse Neural
  Architectures") on ``analysis.weight_space.parameter_graph``: edge features are the edge's (padded) trained
  values, fixed values and fixed flags, a constant value (1 for residual edges, F for sigma-Asym gates), the layer's
  position and the edge type; node features the node type, layer position and input/output order. Three rounds
  of edge-aware message passing (messages from both endpoints and the edge, which is updated too; both edge
  directions) on torch-geometric, mean and max pooling over nodes, an MLP head.

Both see each tensor in units of its RMS over the training networks and start their output at the training
targets' mean (``FitsInputs``): without that, and with a LayerNorm closing the GMN's node MLPs, the GMN fitted a
constant on an MLP zoo (bench/RESULTS.md, "Why the GMN learned nothing").

CPU-sized defaults (16 channels for NFN NP and the GMN, 8 for NFN HNP) keep a 30-epoch run on a few hundred
networks to minutes on a core; the papers used wider ones on GPUs.

Both take the stage's flat input, a network's trainable entries, and rebuild what they need through the
variant's ``WeightSpace`` (fixed entries and gates are the variant's, shared by every network: features, never
inputs a metanetwork could move). Trained and fixed values sit in separate features: a W-Asym ResNet8's fixed
filters are drawn at scale 2 (kappa), ten times its trained weights, and summed into one feature they swamp them
(a first version did that: one of two GMN seeds on W-Asym digits networks then predicted a near-constant).
"""

from __future__ import annotations

import torch
from torch import nn

from symzoo.analysis.readout import squeeze_scalar
from symzoo.analysis.weight_space import ParameterGraph, WeightSpace

EXTRA = "pip install 'symzoo[equivariant]' (the nfn and torch-geometric packages)"


class TensorScale(nn.Module):
    """Each tensor's values in units of that tensor's root mean square over the training networks' trained entries
    (fixed W-Asym values in the same units).

    Why: an equivariant metanet sees every weight apart and learns from their distribution across neurons. Raw, a
    Fashion MLP's first-layer weights (std 0.07 against O(1) constant edge features) and averaging over 196 inputs
    and 302 nodes left the GMN's output moving by 1e-4 of its size from one network to the next at init; it fitted a
    constant for 10 epochs and learned nothing in 20 (bench/RESULTS.md, "Why the GMN learned nothing"). RMS, not
    std: zero stays zero and a norm's scale near 1 stays near 1. The scale is per tensor, so a permutation of
    neurons leaves it unchanged: the metanets stay invariant.
    """

    def __init__(self, space: WeightSpace) -> None:
        super().__init__()
        self.space = space
        self.register_buffer("inverse", torch.ones(space.layout.size))  # (P,) 1 / RMS of each entry's tensor

    @torch.no_grad()
    def fit(self, flat: torch.Tensor) -> None:
        """``flat``: the training networks' trainable entries (N, n_trainable)."""
        trained, fixed = self.space.trained(flat.float()), self.space.fixed.to(flat.device) > 0
        for slot in self.space.layout.slots:
            part = slice(slot.offset, slot.offset + slot.size)
            values = trained[:, part][:, ~fixed[part]]
            rms = float(values.pow(2).mean().sqrt()) if values.numel() else 0.0
            self.inverse[part] = 1.0 / rms if rms > 0 else 1.0

    def forward(self, full: torch.Tensor) -> torch.Tensor:
        """(..., P) values in layout order -> the same in units of their tensor's RMS."""
        return full * self.inverse.to(full.dtype)


class FitsInputs:
    """What an equivariant metanet does with its training split before training (``train_neural`` calls it): each
    tensor's scale (``TensorScale``), and its output starting at the targets' mean, so that the first epochs are not
    spent moving one bias from 0 to ~0.8 while every other parameter follows the mean error."""

    scale: TensorScale
    readout: nn.Sequential
    space: WeightSpace

    def fit_gates(self, gates: torch.Tensor) -> None:
        """Each network's own F (the input's last columns, where the zoo draws F per network): none here."""

    def fit_inputs(self, flat: torch.Tensor, targets: torch.Tensor) -> None:
        """Class targets (several outputs): the logits start at the training split's log class frequencies."""
        self.scale.fit(flat[:, : self.space.layout.n_trainable])
        self.fit_gates(flat[:, self.space.layout.n_trainable :])
        bias = self.readout[-1].bias
        with torch.no_grad():
            if bias.numel() == 1:
                bias.fill_(float(targets.float().mean()))
            else:
                counts = torch.bincount(targets.long(), minlength=bias.numel()).to(bias)
                bias.copy_(torch.log((counts + 1) / (counts.sum() + bias.numel())))


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the equivariant metanetworks need {module}: {EXTRA}") from None


class NFNMetanet(FitsInputs, nn.Module):
    """An invariant NFN (NP or HNP) predicting one scalar per network."""

    CHANNELS = 3

    def __init__(
        self, space: WeightSpace, kind: str = "np", hidden: int = 16, layers: int = 3, head: int = 64, outputs: int = 1
    ):
        super().__init__()
        nfn = _require("nfn")
        from nfn.common import ArraySpec, NetworkSpec

        self.space = space
        self.tensors = space.linear_layers()
        slots = {s.name: s for s in space.layout.slots}
        shapes = [slots[w].shape for w, _, _ in self.tensors]
        spec = NetworkSpec([ArraySpec(tuple(s)) for s in shapes], [ArraySpec((s[0],)) for s in shapes])
        blocks: list[nn.Module] = []
        c_in = self.CHANNELS
        for _ in range(layers):
            if kind == "np":
                blocks.append(nfn.layers.NPLinear(spec, c_in, hidden, io_embed=True))
            else:
                blocks.append(nfn.layers.HNPLinear(spec, c_in, hidden))
            blocks.append(nfn.layers.TupleOp(nn.ReLU()))
            c_in = hidden
        pool = nfn.layers.NPPool(spec) if kind == "np" else nfn.layers.HNPPool(spec)
        n_pooled = (nfn.layers.NPPool if kind == "np" else nfn.layers.HNPPool).get_num_outs(spec)
        self.equivariant = nn.Sequential(*blocks, pool, nn.Flatten(1))
        self.readout = nn.Sequential(nn.Linear(hidden * n_pooled, head), nn.ReLU(), nn.Linear(head, outputs))
        self.scale = TensorScale(space)
        self._offsets = {s.name: (s.offset, s.size, s.shape) for s in space.layout.slots}

    def weight_space(self, flat: torch.Tensor):
        """(B, n_trainable) -> NFN's ``WeightSpaceFeatures`` with this module's three channels."""
        from nfn.common import WeightSpaceFeatures

        trained = self.scale(self.space.trained(flat))
        base = self.scale(self.space.base.to(flat.device, flat.dtype))
        fixed = self.space.fixed.to(flat.device, flat.dtype)

        def take(name: str, source: torch.Tensor) -> torch.Tensor:
            offset, size, shape = self._offsets[name]
            return source[..., offset : offset + size].reshape(*source.shape[:-1], *shape)

        weights, biases = [], []
        for w, b, norm in self.tensors:
            value = take(w, trained)
            weights.append(torch.stack([value, take(w, base).expand_as(value), take(w, fixed).expand_as(value)], 1))
            bias = take(b, trained)
            scale = take(f"{norm}.weight", trained) if norm else torch.zeros_like(bias)
            shift = take(f"{norm}.bias", trained) if norm else torch.zeros_like(bias)
            biases.append(torch.stack([bias, scale, shift], 1))
        return WeightSpaceFeatures(weights, biases)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return squeeze_scalar(self.readout(self.equivariant(self.weight_space(flat))))


def _mlp(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    """A node MLP. No LayerNorm at its end: with one, the GMN fitted a constant on the Fashion MLP zoo for 14
    epochs where without it validation R^2 reached 0.5 by epoch 11 (inputs scaled alike; bench/RESULTS.md)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def edge_aware_layer(hidden: int) -> nn.Module:
    """One round of message passing on torch-geometric: m_ij = phi(h_i, h_j, e_ij), e_ij += m_ij,
    h_i += psi(h_i, mean_j m_ij). phi's first layer, a linear map of the concatenation, is applied as the sum of
    one map per part, the node parts on nodes before gathering: the same function at a third of the edge work."""
    pyg = _require("torch_geometric.nn")

    class EdgeAwareLayer(pyg.MessagePassing):
        def __init__(self) -> None:
            super().__init__(aggr="mean")
            self.from_target = nn.Linear(hidden, hidden)
            self.from_source = nn.Linear(hidden, hidden, bias=False)
            self.from_edge = nn.Linear(hidden, hidden, bias=False)
            self.message_out = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden))
            self.update_mlp = _mlp(2 * hidden, hidden, hidden)

        def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor):
            src, dst = edge_index
            m = self.message_out(self.from_target(h)[dst] + self.from_source(h)[src] + self.from_edge(e))
            agg = self.propagate(edge_index, m=m, size=(h.shape[0], h.shape[0]))
            return h + self.update_mlp(torch.cat([h, agg], -1)), e + m

        def message(self, m: torch.Tensor) -> torch.Tensor:  # the message is computed once, above
            return m

    return EdgeAwareLayer()


class GMNMetanet(FitsInputs, nn.Module):
    """A graph metanetwork: edge-aware message passing over the parameter graph, pooled to one scalar."""

    def __init__(self, space: WeightSpace, hidden: int = 16, layers: int = 3, outputs: int = 1):
        super().__init__()
        pool = _require("torch_geometric.nn")
        self.space = space
        graph: ParameterGraph = space.graph()
        both = torch.cat([graph.edge_index, graph.edge_index.flip(0)], 1)  # messages flow both ways
        direction = torch.cat([torch.zeros(graph.n_edges), torch.ones(graph.n_edges)])[:, None]
        self.register_buffer("edge_index", both, persistent=False)
        self.register_buffer("slots", graph.slots, persistent=False)
        present = graph.slots >= 0
        index = graph.slots.clamp(min=0)
        self.register_buffer("base_values", space.base[index] * present, persistent=False)  # (E, K) every network's
        self.register_buffer("fixed_flags", space.fixed[index] * present, persistent=False)
        const = torch.cat([torch.cat([graph.edge_const, graph.edge_const]), direction], 1)
        self.register_buffer("edge_const", const, persistent=False)
        self.register_buffer("node_feat", graph.node_feat, persistent=False)
        self.n_nodes = graph.n_nodes
        n_edge_feat = 3 * self.slots.shape[1] + const.shape[1]
        self.node_encoder = _mlp(graph.node_feat.shape[1], hidden, hidden)
        self.edge_encoder = nn.Sequential(nn.Linear(n_edge_feat, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.layers = nn.ModuleList(edge_aware_layer(hidden) for _ in range(layers))
        self.readout = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, outputs))
        self.mean_pool, self.max_pool = pool.global_mean_pool, pool.global_max_pool
        self.scale = TensorScale(space)
        # sigma-Asym with F per network: the input ends with the network's F, the gate edges' values
        self.n_gates = space.n_gates
        self.register_buffer("gate_edges", torch.nonzero(graph.gate_edges).flatten(), persistent=False)
        self.register_buffer("gate_inverse", torch.ones(()))

    @torch.no_grad()
    def fit_gates(self, gates: torch.Tensor) -> None:
        """F in units of its RMS over the training networks (F's entries are ~1e-3: raw, the edge encoder would
        barely see them vary from one network to the next)."""
        if self.n_gates:
            rms = float(gates.float().pow(2).mean().sqrt())
            self.gate_inverse.fill_(1.0 / rms if rms > 0 else 1.0)

    def edge_features(self, flat: torch.Tensor) -> torch.Tensor:
        """(B, n_trainable [+ G]) -> (B * 2E, features): trained values, fixed values and fixed flags per slot, then
        the constants (both directions of an edge carry the same values: they are read once); a network's own F,
        where it has one, as its gate edges' constant."""
        gates, flat = flat[:, self.space.layout.n_trainable :], flat[:, : self.space.layout.n_trainable]
        index, present = self.slots.clamp(min=0), self.slots >= 0
        values = self.scale(self.space.trained(flat))[:, index] * present  # (B, E, K)
        inverse = self.scale.inverse[index].to(values.dtype)
        variant = torch.cat([self.base_values.to(values.dtype) * inverse, self.fixed_flags.to(values.dtype)], -1)
        fixed = variant.expand(flat.shape[0], -1, -1)
        per_edge = torch.cat([values, fixed], -1).repeat(1, 2, 1)  # (B, 2E, 3K)
        const = self.edge_const.to(values.dtype).expand(flat.shape[0], -1, -1)
        if self.n_gates:
            const = const.clone()
            n_edges = self.slots.shape[0]
            for at in (self.gate_edges, self.gate_edges + n_edges):  # both directions
                const[:, at, 0] = gates.to(values.dtype) * self.gate_inverse
        return torch.cat([per_edge, const], -1).reshape(-1, per_edge.shape[-1] + const.shape[-1])

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        b, n = flat.shape[0], self.n_nodes
        offsets = (torch.arange(b, device=flat.device) * n).repeat_interleave(self.edge_index.shape[1])
        edge_index = self.edge_index.repeat(1, b) + offsets
        batch = torch.arange(b, device=flat.device).repeat_interleave(n)
        h = self.node_encoder(self.node_feat).repeat(b, 1)
        e = self.edge_encoder(self.edge_features(flat))
        for layer in self.layers:
            h, e = layer(h, edge_index, e)
        pooled = torch.cat([self.mean_pool(h, batch, b), self.max_pool(h, batch, b)], -1)
        return squeeze_scalar(self.readout(pooled))


def build_equivariant(name: str, space: WeightSpace, outputs: int = 1) -> nn.Module:
    if name in ("nfn_np", "nfn_hnp"):
        if space.arch not in ("mlp", "siren"):
            raise ValueError(f"{name} reads MLP and SIREN zoos (NFN's weight space); for ResNets use gmn")
        # HNP keeps input and output neurons apart, so its first and last layers grow with n_in^2 and n_out^2
        # (50M parameters at 16 channels for 196 inputs): half the channels keep it to a CPU's minutes
        if name == "nfn_np":
            return NFNMetanet(space, "np", hidden=16, outputs=outputs)
        return NFNMetanet(space, "hnp", hidden=8, outputs=outputs)
    if name == "gmn":
        return GMNMetanet(space, outputs=outputs)
    raise ValueError(f"unknown equivariant metanet {name!r}; nfn_np, nfn_hnp or gmn")
