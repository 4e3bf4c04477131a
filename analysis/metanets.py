"""The four metanetworks of paper Table 3 (docs/paper.md §3), exactly as specified, plus their parameter counts.

Each maps a batch of inputs to one predicted test accuracy per network (or, with ``outputs`` K > 1, K class
logits: the INR zoos' image classes): MLP, DMC and DeepSets read the flat weight vector (trainable entries, layout
order), StatNN reads the 7 statistics per parameter tensor.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from symzoo.analysis.readout import squeeze_scalar

PAPER_METANETS = ("mlp", "dmc", "deepsets", "statnn", "ridge", "gbt")  # paper Table 3 and the CPU baselines
EQUIVARIANT = ("nfn_np", "nfn_hnp", "gmn")  # the control the paper lacks (analysis.equivariant); read a WeightSpace
METANETS = (*PAPER_METANETS, *EQUIVARIANT)
PAPER_LRS = [1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2]  # one run per LR, picked on validation R^2 (docs/paper.md, Table 3)

FLAT_INPUT = ("mlp", "dmc", "deepsets", *EQUIVARIANT)  # read weights; statnn reads statistics
NEURAL = (*FLAT_INPUT, "statnn")


class MLPMetanet(nn.Module):
    """Linear(D, 64) -> ReLU -> LayerNorm(64) -> Linear(64, 1)."""

    def __init__(self, dim: int, hidden: int = 64, outputs: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.LayerNorm(hidden), nn.Linear(hidden, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_scalar(self.net(x))


class DMC(nn.Module):
    """Eilertsen et al.'s 1-D CNN over the flat vector: 6 conv/pool blocks to 64 channels, 4 more convs (pool after
    the 2nd and 4th), then a per-position MLP, mean over positions, and an MLP readout."""

    def __init__(self, channels: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64), deep_blocks: int = 4, outputs: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv1d(c_in, c_out, 5), nn.ReLU(), nn.BatchNorm1d(c_out), nn.MaxPool1d(2)]
        c = channels[-1]
        for b in range(deep_blocks):
            layers += [nn.Conv1d(c, c, 5), nn.ReLU(), nn.BatchNorm1d(c)]
            if b % 2 == 1:
                layers.append(nn.MaxPool1d(2))
        self.features = nn.Sequential(*layers)
        self.per_position = nn.Sequential(nn.Linear(c, c), nn.LayerNorm(c), nn.ReLU())
        self.readout = nn.Sequential(nn.Linear(c, c), nn.LayerNorm(c), nn.ReLU(), nn.Linear(c, outputs))

    @staticmethod
    def min_length() -> int:
        """Shortest flat vector that survives every unpadded conv and pool with one position left."""
        n = 1
        for op in ["pool", "conv", "conv", "pool", "conv", "conv"]:  # the deep blocks, last first
            n = 2 * n if op == "pool" else n + 4
        for _ in range(6):
            n = 2 * n + 4
        return n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.unsqueeze(1))  # (B, 64, L')
        h = self.per_position(h.transpose(1, 2)).mean(1)
        return squeeze_scalar(self.readout(h))


class DeepSets(nn.Module):
    """Every scalar weight is a set element: phi = Linear(1, 64) -> LN -> ReLU, mean, rho = 2 x [Linear -> LN ->
    ReLU] -> Linear(64, 1). The set is processed in checkpointed chunks so memory stays (batch x chunk x 64)."""

    def __init__(self, hidden: int = 64, chunk: int = 8192, outputs: int = 1):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(1, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.rho = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(),
            nn.Linear(hidden, outputs),
        )
        self.chunk = chunk

    def _chunk_sum(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi(x.unsqueeze(-1)).sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for i in range(0, x.shape[1], self.chunk):
            part = x[:, i : i + self.chunk]
            if torch.is_grad_enabled():
                total = total + checkpoint(self._chunk_sum, part, use_reentrant=False)
            else:
                total = total + self._chunk_sum(part)
        return squeeze_scalar(self.rho(total / x.shape[1]))


class StatNN(nn.Module):
    """Unterthiner et al.: Linear(F, 256) -> ReLU -> LN -> Linear(256, 256) -> ReLU -> LN -> Linear(256, 1)."""

    def __init__(self, n_features: int, hidden: int = 256, outputs: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_scalar(self.net(x))


def build_metanet(name: str, input_dim: int, space=None, outputs: int = 1) -> nn.Module:
    """``input_dim``: the flat vector's length (mlp, dmc, deepsets) or the number of statistics (statnn);
    ``space`` (``analysis.weight_space.WeightSpace``): the variant's weight space, for the equivariant ones;
    ``outputs``: 1 (predicted accuracy) or the number of classes (logits)."""
    if name in EQUIVARIANT:
        from symzoo.analysis.equivariant import build_equivariant

        if space is None:
            raise ValueError(f"{name} needs the variant's WeightSpace")
        return build_equivariant(name, space, outputs)
    if name == "mlp":
        return MLPMetanet(input_dim, outputs=outputs)
    if name == "dmc":
        if input_dim < DMC.min_length():
            raise ValueError(f"DMC needs flat vectors of at least {DMC.min_length()} entries, got {input_dim}")
        return DMC(outputs=outputs)
    if name == "deepsets":
        return DeepSets(outputs=outputs)
    if name == "statnn":
        return StatNN(input_dim, outputs=outputs)
    raise ValueError(f"unknown metanet {name!r}; choose one of {', '.join(NEURAL)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
