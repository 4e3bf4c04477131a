"""Fitting implicit neural representations: one SIREN per image, coordinates -> intensity, many at once.

INRs are tiny (a 2 -> 32 -> 32 -> 1 SIREN has 1,185 parameters), so one at a time a CPU spends its time in Python
and kernel launches. ``fit_inrs`` fits K networks as one computation: their parameters stacked ``(K, ...)`` and run
side by side (``zoo.packed.packed_logits``, the packed zoo training's forward), the loss the sum of the networks'
own mean squared errors, so each network's gradient is the one it would have alone; Adam is elementwise, so
stacked Adam is K independent Adams. ``fit_one`` is the readable reference: the same fit for one network, which
the batched fit equals (in float64, to rounding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from symzoo.errors import ConfigError
from symzoo.zoo.data import Dataset
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.packed import pack_buffers, packed_logits
from symzoo.zoo.plan import NetSpec
from symzoo.zoo.train import TrainResult


@dataclass(frozen=True)
class FitSettings:
    steps: int = 1000
    lr: float = 1e-3  # AdamW, full batch (every pixel every step)
    weight_decay: float = 0.0


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
    optimizer = torch.optim.AdamW(params.values(), lr=settings.lr, weight_decay=settings.weight_decay)
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
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


def check_inr_data(cfg: dict, data: Dataset) -> None:
    """An INR zoo fits every image of its data once per replicate and variant: ``networks`` must be the number of
    images (``data.train_per_class`` / ``test_per_class`` choose them), and the images single-channel."""
    if data.in_shape[0] != 1:
        raise ConfigError(
            f"config field 'data.name': {data.name} has {data.in_shape[0]} channels; an INR zoo fits single-channel "
            "images: set data.grayscale: true (or use fashion_mnist, digits)"
        )
    images = len(data.x_train) + len(data.x_test)
    if cfg["networks"] != images:
        raise ConfigError(
            f"config field 'networks': {cfg['networks']} is not allowed; an INR zoo has one network per image and "
            f"the data has {images} (choose them with data.train_per_class and test_per_class): networks: {images}"
        )


def inr_image(data: Dataset, sample: int) -> tuple[str, int, int, torch.Tensor]:
    """The image an INR zoo's sample ``sample`` fits: the data set's training images in order, then its test
    images; as (split, index in that split, class, uint8 ``(H, W)``)."""
    n_train = len(data.x_train)
    if sample < n_train:
        return "train", sample, int(data.y_train[sample]), data.x_train[sample, 0]
    i = sample - n_train
    return "test", i, int(data.y_test[i]), data.x_test[i, 0]


def fit_inr_group(models: list[nn.Module], specs: list[NetSpec], data: Dataset) -> list[TrainResult]:
    """Fit one pack of an INR zoo (one variant; ``zoo.config`` makes the recipe a constant): ``TrainResult`` per
    network with its fit's MSE as ``train_loss``, its per-step MSE as the history, and its image's split, index
    and class and its PSNR as columns of their own. A network whose fit is not finite is "diverged"."""
    start = time.perf_counter()
    hp = specs[0].hparams
    images = [inr_image(data, s.sample) for s in specs]
    fit = fit_inrs(models, torch.stack([img for *_, img in images]), FitSettings(hp.epochs, hp.lr, hp.weight_decay))
    seconds = (time.perf_counter() - start) / len(specs)
    nan = float("nan")
    results = []
    for k, (split, index, label, _) in enumerate(images):
        mse = float(fit.mse[k])
        finite = torch.isfinite(fit.weights[k]).all().item() and torch.isfinite(fit.mse[k]).item()
        results.append(
            TrainResult(
                "ok" if finite else "diverged",
                "" if finite else "non-finite fit",
                hp.epochs,
                mse if finite else nan,
                nan,
                nan,
                nan,
                history={"train_loss": fit.loss_history[:, k].tolist(), "train_acc": []},
                seconds=seconds,
                final_weights=fit.weights[k].float(),
                extra={"image_split": split, "image_index": index, "image_class": label, "psnr": float(fit.psnr[k])},
            )
        )
    return results
