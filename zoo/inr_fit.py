"""Fitting implicit neural representations: one SIREN per image, coordinates -> intensity, many at once.

INRs are tiny (a 2 -> 32 -> 32 -> 1 SIREN has 1,185 parameters), so one at a time a CPU spends its time in Python
and kernel launches. ``fit_inrs`` fits K networks as one computation: their parameters stacked ``(K, ...)`` and run
side by side (``zoo.packed.packed_logits``, the packed zoo training's forward), the loss the sum of the networks'
own mean squared errors, so each network's gradient is the one it would have alone; Adam is elementwise, so
stacked Adam is K independent Adams. ``fit_one`` is the readable reference: the same fit for one network, which
the batched fit equals (in float64, to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.packed import pack_buffers, packed_logits


@dataclass(frozen=True)
class FitSettings:
    steps: int = 1000
    lr: float = 1e-3  # Adam, full batch (every pixel every step)


def pixel_grid(height: int, width: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``(H * W, 2)`` coordinates in [-1, 1], row-major (row, column), as SIREN and DWSNets sample an image."""
    rows = torch.linspace(-1, 1, height, dtype=dtype)
    cols = torch.linspace(-1, 1, width, dtype=dtype)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)


def image_targets(images: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """uint8 ``(K, H, W)`` grayscale images -> ``(K, H * W, 1)`` intensities in [0, 1]."""
    return (images.to(dtype or torch.get_default_dtype()) / 255).reshape(len(images), -1, 1)


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of intensities in [0, 1]."""
    return 10 * torch.log10(1 / mse.clamp_min(1e-30))


@dataclass
class FitResult:
    weights: torch.Tensor  # (K, P) flat, in the layout's order
    mse: torch.Tensor  # (K,) after the last step
    psnr: torch.Tensor  # (K,)
    loss_history: torch.Tensor  # (steps, K): each network's MSE before each step


def fit_inrs(models: list[nn.Module], images: torch.Tensor, settings: FitSettings) -> FitResult:
    """Fit ``models[k]`` (one architecture and variant) to ``images[k]`` (uint8 ``(K, H, W)``), all at once."""
    template = models[0]
    layout = ParamLayout.from_model(template)
    dtype = next(template.parameters()).dtype
    named = [dict(m.named_parameters()) for m in models]
    params = {n: torch.stack([p[n].detach() for p in named]).clone().requires_grad_() for n in named[0]}
    buffers, _ = pack_buffers(models)
    k, (h, w) = len(models), images.shape[1:]
    coords = pixel_grid(h, w, dtype).expand(k, h * w, 2)
    targets = image_targets(images, dtype)
    optimizer = torch.optim.Adam(params.values(), lr=settings.lr)
    history = []
    for _ in range(settings.steps):
        per_network = ((packed_logits(template, params, buffers, coords) - targets) ** 2).mean((1, 2))
        optimizer.zero_grad(set_to_none=True)
        per_network.sum().backward()  # each network's gradient is its own loss's
        optimizer.step()
        history.append(per_network.detach())
    with torch.no_grad():
        mse = ((packed_logits(template, params, buffers, coords) - targets) ** 2).mean((1, 2))
    flat = torch.cat([params[s.name].detach().reshape(k, -1) for s in layout.slots], 1)
    return FitResult(flat, mse, psnr(mse), torch.stack(history) if history else torch.empty(0, k))


def fit_one(model: nn.Module, image: torch.Tensor, settings: FitSettings) -> FitResult:
    """The same fit for one network, written plainly (the reference ``fit_inrs`` is tested against)."""
    dtype = next(model.parameters()).dtype
    coords = pixel_grid(*image.shape, dtype)
    target = image_targets(image[None], dtype)[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    history = []
    for _ in range(settings.steps):
        loss = ((model(coords) - target) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.detach())
    with torch.no_grad():
        mse = ((model(coords) - target) ** 2).mean()
    layout = ParamLayout.from_model(model)
    params = dict(model.named_parameters())
    flat = torch.cat([params[s.name].detach().reshape(-1) for s in layout.slots])[None]  # in its own dtype
    return FitResult(flat, mse[None], psnr(mse)[None], torch.stack(history)[:, None])


def step_flops(model: nn.Module, pixels: int) -> float:
    """Multiply-adds x 2 of one forward over ``pixels`` coordinates, times 3 for forward and backward: the
    arithmetic one fitting step of one network must do (a lower bound on its time)."""
    macs = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return 3 * 2 * macs * pixels
