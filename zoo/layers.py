"""The only place where symmetry-breaking structure is made, and the layers every model is built from.

W-Asymmetric layers compute with ``W' = M * W + (1 - M) * kappa * N``: ``M`` marks trainable entries, ``N`` is a
fixed standard normal draw. Both are buffers derived from a zoo-level seed and the layer's name, so every network
of a zoo (and every process that rebuilds one) sees the same pattern. The raw ``weight`` keeps zeros at fixed
positions: the mask kills their gradient and AdamW's decoupled decay keeps a zero at zero, so nothing drifts.

FiGLU, ``sigma(x) = sigmoid(F x) * x`` with a fixed random ``F``, is the sigma-Asymmetric nonlinearity. ``F`` is
one per zoo by default, or one per hyperparameter sample (``model.gates: network``, as the authors' zoo had it).

Every fixed draw is made in float32 whatever torch's default dtype, then cast: a network rebuilt under
``torch.set_default_dtype(torch.float64)`` must be the network that was trained, not another draw.

Packed training (``zoo.packed``) runs K networks as one: their parameters are stacked with a leading dimension
K and activations carry the K networks side by side along the channel axis, ``(B, K*C, ...)``. Each layer
recognises stacked parameters and does per-network arithmetic (grouped convolution, per-block norms).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# Fixed structure and initial weights are drawn in this dtype whatever torch's default, then cast to the layer's.
DRAW_DTYPE = torch.float32
# siren: U(+-bound) with each layer's own bound (``siren_bound``: 1/fan_in first, sqrt(6/fan_in)/omega after; a SIREN
# sets it), biases as PyTorch's default
WeightInit = Literal["kaiming_normal", "torch_default", "siren"]


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, identical in every process (unlike Python's salted ``hash``)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(stable_seed(*parts))


@dataclass(frozen=True)
class FixSpec:
    """How many entries of each row (output channel or neuron) are fixed, and their scale.

    ``unit="filter"`` fixes whole ``k x k`` input filters of a conv ("fix filters"); ``unit="entry"`` fixes single
    entries ("fix entries"). Asking for at least as many units as a row has fixes the whole row.
    """

    n_fixed: int
    kappa: float
    unit: Literal["filter", "entry"] = "entry"


def sample_row_masks(rows: int, units: int, n_fixed: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean ``(rows, units)`` mask, True where trainable, with ``n_fixed`` False per row.

    Rows are pairwise distinct whenever enough distinct rows exist, so no two neurons are interchangeable.
    """
    if n_fixed >= units:
        return torch.zeros(rows, units, dtype=torch.bool)
    distinct_possible = math.comb(units, n_fixed) >= rows
    seen: set[tuple[int, ...]] = set()
    out = torch.ones(rows, units, dtype=torch.bool)
    for r in range(rows):
        for _ in range(1000):
            fixed = tuple(sorted(torch.randperm(units, generator=generator)[:n_fixed].tolist()))
            if fixed not in seen or not distinct_possible:
                break
        seen.add(fixed)
        out[r, list(fixed)] = False
    return out


class AsymmetricWeight:
    """Mixin for ``nn.Linear``/``nn.Conv2d``: optional fixed pattern on ``weight`` and the recipe's init."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    fix: FixSpec | None
    weight_mask: torch.Tensor | None
    weight_fixed: torch.Tensor | None

    siren_bound: float = 0.0  # a SIREN layer's init bound (weight_init "siren")

    def _setup_asymmetry(self, fix: FixSpec | None) -> None:
        self.fix = fix
        self.register_buffer("weight_mask", None)
        self.register_buffer("weight_fixed", None)

    def init_fixed(self, generator: torch.Generator) -> None:
        """Draw mask and fixed values (zoo-level: the generator comes from the zoo seed and this layer's name)."""
        if self.fix is None:
            return
        out_ch, in_ch = self.weight.shape[:2]
        kernel = self.weight[0, 0].numel()
        if self.fix.unit == "filter":
            rows = sample_row_masks(out_ch, in_ch, self.fix.n_fixed, generator)
            mask = rows[:, :, None].expand(out_ch, in_ch, kernel)
        else:
            mask = sample_row_masks(out_ch, in_ch * kernel, self.fix.n_fixed, generator)
        mask = mask.reshape(self.weight.shape).to(self.weight.dtype)
        noise = torch.randn(self.weight.shape, generator=generator, dtype=DRAW_DTYPE).to(self.weight.dtype)
        self.weight_mask = mask
        self.weight_fixed = (1 - mask) * self.fix.kappa * noise
        with torch.no_grad():
            self.weight.mul_(mask)

    def init_parameters(self, generator: torch.Generator, weight_init: WeightInit = "kaiming_normal") -> None:
        """The authors' init for this architecture (docs/paper.md §1): ``kaiming_normal`` (fan_in, ReLU gain; their
        ResNets) or ``torch_default`` (U(+-1/sqrt(fan_in)), PyTorch's ``nn.Linear`` default; their MLPs). W-Asym
        trainable entries always start U(+-1/sqrt(fan_in)), biases too. Drawn in float32, then cast."""
        fan_in = self.weight[0].numel()
        bound = 1 / math.sqrt(fan_in)
        with torch.no_grad():
            weight = torch.empty(self.weight.shape, dtype=DRAW_DTYPE)
            if self.weight_mask is None and weight_init == "kaiming_normal":
                nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu", generator=generator)
            elif weight_init == "siren":
                weight.uniform_(-self.siren_bound, self.siren_bound, generator=generator)
            elif weight_init in ("kaiming_normal", "torch_default"):
                weight.uniform_(-bound, bound, generator=generator)
            else:
                raise ValueError(f"unknown weight init {weight_init!r}; kaiming_normal or torch_default")
            if self.weight_mask is not None:
                weight.mul_(self.weight_mask.to(DRAW_DTYPE))
            self.weight.copy_(weight)
            if self.bias is not None:
                bias = torch.empty(self.bias.shape, dtype=DRAW_DTYPE).uniform_(-bound, bound, generator=generator)
                self.bias.copy_(bias)

    def effective_weight(self) -> torch.Tensor:
        if self.weight_mask is None:
            return self.weight
        return self.weight * self.weight_mask + self.weight_fixed

    def trainable_mask(self) -> torch.Tensor:
        """Boolean mask of ``weight`` entries that training may change."""
        if self.weight_mask is None:
            return torch.ones(self.weight.shape, dtype=torch.bool)
        return self.weight_mask.bool()


class MaskedLinear(AsymmetricWeight, nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, fix: FixSpec | None = None):
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._setup_asymmetry(fix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        if w.dim() == 2:
            return F.linear(x, w, self.bias)
        # packed: weights (K, out, in), features (B, K*in) -> (B, K*out)
        out = torch.einsum("bki,koi->bko", x.view(x.shape[0], w.shape[0], -1), w)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(x.shape[0], -1)


class MaskedConv2d(AsymmetricWeight, nn.Conv2d):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        fix: FixSpec | None = None,
    ):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self._setup_asymmetry(fix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        if w.dim() == 4:
            return self._conv_forward(x, w, self.bias)
        # packed: weights (K, out, in, kh, kw), images (B, K*in, H, W): one grouped convolution, group k = network k
        bias = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(x, w.reshape(-1, *w.shape[2:]), bias, self.stride, self.padding, self.dilation, w.shape[0])


class ChannelNorm(nn.GroupNorm):
    """``GroupNorm(1, C)``, the paper's "LayerNorm" for CNNs; with packed ``(K, C)`` affines it normalises each
    network's channel block of ``(B, K*C, H, W)`` on its own (``group_norm`` with K groups, the same arithmetic)."""

    def __init__(self, channels: int):
        super().__init__(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        networks = self.weight.numel() // self.num_channels  # 1 unless packed
        return F.group_norm(x, networks, self.weight.reshape(-1), self.bias.reshape(-1), self.eps)


class FeatureNorm(nn.LayerNorm):
    """LayerNorm over features; with packed ``(K, F)`` affines, over each network's block of ``(B, K*F)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dim() == 1:
            return super().forward(x)
        k = self.weight.shape[0]
        z = F.layer_norm(x.view(x.shape[0], k, -1), self.normalized_shape, eps=self.eps)
        return (z * self.weight + self.bias).reshape(x.shape[0], -1)


class FiGLU(nn.Module):
    """``sigmoid(F x) * x`` over channels (dim 1), ``F`` fixed; the identity gate until ``init_fixed`` is called."""

    def __init__(self, channels: int, std: float | None = None):
        super().__init__()
        self.channels = channels
        self.std = 1 / math.sqrt(channels) if std is None else std
        self.register_buffer("gate", torch.zeros(channels, channels))

    def init_fixed(self, generator: torch.Generator) -> None:
        draw = torch.randn(self.channels, self.channels, generator=generator, dtype=DRAW_DTYPE) * self.std
        self.gate = draw.to(self.gate.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, K*C, ...) with K = 1 unless packed; a gate (C, C) acts on every network's channel block, a stacked
        # gate (K, C, C) gives network k its own (a packed zoo whose F is per network)
        blocks = x.view(x.shape[0], -1, self.channels, *x.shape[2:])
        spec = "koc,bkc...->bko..." if self.gate.dim() == 3 else "oc,bkc...->bko..."
        pre = torch.einsum(spec, self.gate, blocks)
        return (torch.sigmoid(pre) * blocks).reshape(x.shape)


def init_fixed_structure(model: nn.Module, asym_seed: int, gate_sample: int | None = None) -> None:
    """Draw every fixed pattern of ``model`` from the zoo seed and each layer's qualified name.

    ``gate_sample`` None: FiGLU gates are the zoo's, like the W-Asym masks. An integer (the network's
    hyperparameter sample): gates of their own, shared by the sample's replicates so that LMC pairs share F.
    """
    for name, module in model.named_modules():
        if isinstance(module, FiGLU) and gate_sample is not None:
            module.init_fixed(seeded_generator("symzoo-gate", asym_seed, gate_sample, name))
        elif isinstance(module, (AsymmetricWeight, FiGLU)):
            module.init_fixed(seeded_generator("symzoo-asym", asym_seed, name))


def init_trainable(model: nn.Module, seed: int, weight_init: WeightInit = "kaiming_normal") -> None:
    """Recipe init of all trainable parameters from one network seed; norms get weight 1, bias 0."""
    generator = seeded_generator("symzoo-init", seed)
    for module in model.modules():
        if isinstance(module, AsymmetricWeight):
            module.init_parameters(generator, weight_init)
        elif isinstance(module, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm1d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def encode_fixed_structure(masks: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor]) -> dict[str, dict]:
    """A zoo's W-Asym structure made elsewhere (an imported zoo's masks and fixed values), as the config's
    ``model.fixed_structure``: per weight name, its trainable mask as packed bits and its fixed entries' values as
    float32, both base64, so the config (and the manifest's copy of it) rebuilds every network of the zoo."""
    import base64

    import numpy as np

    out = {}
    for name, mask in masks.items():
        keep = mask.detach().cpu().bool().reshape(-1).numpy()
        values = fixed[name].detach().cpu().reshape(-1).numpy().astype("<f4")[~keep]
        out[name] = {
            "shape": list(mask.shape),
            "trainable_bits": base64.b64encode(np.packbits(keep).tobytes()).decode(),
            "fixed_values": base64.b64encode(values.tobytes()).decode(),
        }
    return out


def decode_fixed_structure(entry: dict, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, fixed)`` of one weight from its ``encode_fixed_structure`` entry; ``ValueError`` naming what does
    not fit ``shape``."""
    import base64

    import numpy as np

    if list(entry.get("shape", [])) != list(shape):
        raise ValueError(f"its shape {entry.get('shape')} is not the layer's {list(shape)}")
    size = math.prod(shape)
    bits = np.frombuffer(base64.b64decode(entry["trainable_bits"]), np.uint8)
    keep = np.unpackbits(bits)[:size].astype(bool)
    values = np.frombuffer(base64.b64decode(entry["fixed_values"]), "<f4")
    if keep.size != size or values.size != size - keep.sum():
        raise ValueError(f"{keep.size} mask bits and {values.size} fixed values for {size} entries")
    fixed = np.zeros(size, np.float32)
    fixed[~keep] = values
    mask = torch.from_numpy(keep.astype(np.float32)).reshape(shape)
    return mask, torch.from_numpy(fixed).reshape(shape)


def load_fixed_structure(model: nn.Module, structure: dict[str, dict]) -> None:
    """Replace the seeded W-Asym masks and fixed values of ``model`` by a stored structure (an imported zoo's):
    every masked layer must have an entry, and each entry a masked layer; trainable entries at now-fixed
    positions are zeroed, as ``init_fixed`` leaves them."""
    layers = {f"{n}.weight" if n else "weight": m for n, m in model.named_modules() if isinstance(m, AsymmetricWeight)}
    masked = {n for n, m in layers.items() if m.fix is not None}
    if set(structure) != masked:
        extra, missing = sorted(set(structure) - masked), sorted(masked - set(structure))
        raise ValueError(f"the stored fixed structure names {extra} beyond the model's and lacks {missing}")
    for name, entry in structure.items():
        layer = layers[name]
        try:
            mask, fixed = decode_fixed_structure(entry, layer.weight.shape)
        except ValueError as e:
            raise ValueError(f"stored fixed structure of {name}: {e}") from None
        layer.weight_mask = mask.to(layer.weight.dtype)
        layer.weight_fixed = fixed.to(layer.weight.dtype)
        with torch.no_grad():
            layer.weight.mul_(layer.weight_mask)
