"""Batched training augmentation on the device: flip, translate with mean fill, Cutout with mean fill.

All random draws of an epoch (data order and every augmentation parameter) come from the network's own
generator in one place, ``draw_epoch``. The one-network trainer and the packed trainer both call it, which is
what makes packed training reproduce one-by-one training exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    translate: int = 2  # max shift in pixels on each axis; 0 disables
    cutout: int = 4  # square side in pixels; 0 disables


@dataclass
class EpochDraw:
    """One epoch's randomness for one network; every field is ``(steps, batch)``."""

    order: torch.Tensor
    flip: torch.Tensor
    dy: torch.Tensor
    dx: torch.Tensor
    cy: torch.Tensor
    cx: torch.Tensor

    def step(self, i: int) -> EpochDraw:
        return EpochDraw(*(getattr(self, f)[i] for f in ("order", "flip", "dy", "dx", "cy", "cx")))

    def to(self, device: torch.device | str) -> EpochDraw:
        return EpochDraw(*(getattr(self, f).to(device) for f in ("order", "flip", "dy", "dx", "cy", "cx")))


def draw_epoch(
    generator: torch.Generator, n_train: int, batch_size: int, hw: tuple[int, int], aug: AugmentConfig
) -> EpochDraw:
    """Shuffle (drop_last) and draw augmentation parameters for a whole epoch on the CPU generator."""
    steps = n_train // batch_size
    shape = (steps, batch_size)
    order = torch.randperm(n_train, generator=generator)[: steps * batch_size].view(shape)
    flip = torch.rand(shape, generator=generator) < 0.5
    t = aug.translate
    dy = torch.randint(-t, t + 1, shape, generator=generator)
    dx = torch.randint(-t, t + 1, shape, generator=generator)
    side = max(aug.cutout, 1)
    cy = torch.randint(0, hw[0] - side + 1, shape, generator=generator)
    cx = torch.randint(0, hw[1] - side + 1, shape, generator=generator)
    return EpochDraw(order, flip, dy, dx, cy, cx)


def augment(x: torch.Tensor, draw: EpochDraw, aug: AugmentConfig) -> torch.Tensor:
    """Apply one step's draws to a normalised batch ``(B, C, H, W)``; the mean colour is 0 after normalising."""
    n, c, h, w = x.shape
    if aug.flip:
        x = torch.where(draw.flip.view(n, 1, 1, 1), x.flip(3), x)
    t = aug.translate
    if t > 0:
        padded = F.pad(x, (t, t, t, t))
        rows = torch.arange(h, device=x.device) + t - draw.dy.view(n, 1)
        cols = torch.arange(w, device=x.device) + t - draw.dx.view(n, 1)
        x = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * t))
        x = x.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
    if aug.cutout > 0:
        s = aug.cutout
        ys = torch.arange(h, device=x.device).view(1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        cy, cx = draw.cy.view(n, 1, 1), draw.cx.view(n, 1, 1)
        hole = (ys >= cy) & (ys < cy + s) & (xs >= cx) & (xs < cx + s)
        x = x.masked_fill(hole.unsqueeze(1), 0.0)
    return x


DRAW_FIELDS = ("flip", "dy", "dx", "cy", "cx")


def stack_draws(draws: list[EpochDraw], device: torch.device | str) -> EpochDraw:
    """K networks' epoch draws as one ``EpochDraw`` whose fields are ``(K, steps, batch)``, on ``device``."""
    return EpochDraw(*(torch.stack([getattr(d, f) for d in draws]).to(device) for f in ("order", *DRAW_FIELDS)))


def packed_batch(
    x_all: torch.Tensor, y_all: torch.Tensor, normalize, stacked: EpochDraw, i: int, aug: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``i`` of K stacked draws: each network's own images, augmented by its own draws, ``(K, B, C, H, W)``,
    and their labels ``(K, B)``."""
    idx = stacked.order[:, i]  # (K, B)
    step = EpochDraw(idx.reshape(-1), *(getattr(stacked, f)[:, i].reshape(-1) for f in DRAW_FIELDS))
    x = augment(normalize(x_all[idx.reshape(-1)]), step, aug)
    return x.view(*idx.shape, *x.shape[1:]), y_all[idx]
