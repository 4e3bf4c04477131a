"""The zoo training recipe for one network (docs/paper.md §2): the readable reference for packed training.

AdamW (or SGD with momentum), batch 512 with drop_last, per-iteration triangular LR peaking at epoch 5,
label-smoothed cross-entropy, batched augmentation on the device, bf16 autocast on CUDA. A non-finite loss ends
training with status "diverged"; it never raises.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from symzoo.errors import ConfigError
from symzoo.zoo.augment import AugmentConfig, augment, draw_epoch
from symzoo.zoo.data import Dataset
from symzoo.zoo.layers import seeded_generator
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.plan import HParams

# triangular: the zoo recipe (docs/paper.md §2); constant: the peak lr throughout, as the authors' LMC scripts train;
# warmup_constant: linear warm-up over warmup_epochs, then the peak lr (the authors' GNN, docs/paper.md §7)
SCHEDULES = ("triangular", "constant", "warmup_constant")
TRAINING_METHODS = ("standard", "elrg")  # elrg: variational Bayesian training (zoo/bayes_train.py)


@dataclass(frozen=True)
class Recipe:
    batch_size: int = 512
    warmup_epochs: float = 5.0
    schedule: str = "triangular"
    optimizer: str = "adamw"  # or "sgd" (Nesterov momentum)
    momentum: float = 0.9
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    amp: bool = True  # bf16 autocast, CUDA only
    compile: bool = False  # torch.compile the packed forward (packed training only)
    channels_last: bool = False  # NHWC activations in the packed forward (a GPU option; see bench/RESULTS.md)
    eval_batch_size: int = 2000


@dataclass
class TrainResult:
    status: str  # "ok" | "diverged" | "failed"
    reason: str
    epochs_done: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    history: dict[str, list[float]]
    seconds: float
    final_weights: torch.Tensor  # flat, in layout order
    checkpoints: dict[int, torch.Tensor] = field(default_factory=dict)
    posterior: torch.Tensor | None = None  # Bayesian training: the variance parameters (zoo.bayes.Posterior)
    test_ece: float = float("nan")  # Bayesian training: the posterior predictive's calibration error
    extra: dict = field(default_factory=dict)  # columns of a task's own (an INR's image and PSNR)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str = "triangular") -> float:
    """Triangle: rises linearly to 1 at ``warmup_steps``, falls linearly to 0 after the last step; constant 1; or
    ``warmup_constant``: (step + 1) / warmup_steps up to 1, then 1."""
    if schedule == "warmup_constant":
        return min(1.0, (step + 1) / max(1, warmup_steps))
    if schedule == "constant" or total_steps <= 1:
        return 1.0
    warmup_steps = max(1, min(warmup_steps, total_steps - 1))
    return min((step + 1) / warmup_steps, (total_steps - step) / (total_steps - warmup_steps))


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """bf16 autocast outputs go up to float32; float64 (used to prove equivalences exactly) stays."""
    return t if t.dtype == torch.float64 else t.float()


def smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: torch.Tensor | float) -> torch.Tensor:
    """Mean label-smoothed CE over the last batch dim; ``smoothing`` broadcasts over any leading (network) dims."""
    logp = F.log_softmax(at_least_float32(logits), dim=-1)
    nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    uniform = -logp.mean(-1)
    smoothing = torch.as_tensor(smoothing, dtype=logp.dtype, device=logp.device).unsqueeze(-1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean(-1)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: Dataset,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    amp: bool = True,
    smoothing: torch.Tensor | float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (plain unless ``smoothing``, which may be per network) and accuracy of ``forward`` (logits
    ``(..., B, classes)``) over uint8 images in order, no augmentation."""
    loss_sum, correct = 0.0, 0.0
    for i in range(0, len(x), batch_size):
        with autocast(x.device, amp):
            logits = at_least_float32(forward(data.normalize(x[i : i + batch_size])))
        yb = y[i : i + batch_size].expand(logits.shape[:-1])  # packed logits carry a leading network dim
        loss_sum = loss_sum + smoothed_cross_entropy(logits, yb, smoothing) * yb.shape[-1]
        correct = correct + (logits.argmax(-1) == yb).float().sum(-1)
    return loss_sum / len(x), correct / len(x)


def tune_kernels(device: torch.device) -> None:
    """Let cuDNN time its convolution algorithms once per shape: a zoo repeats the same shapes for hours."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per epoch (drop_last); a batch larger than the training set is a config error, not a NaN."""
    if batch_size > n_train:
        raise ConfigError(
            f"config field 'training.batch_size': {batch_size} exceeds the {n_train} training images; "
            "lower it or train on more data"
        )
    return n_train // batch_size


def make_optimizer(model: nn.Module, hp: HParams, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=hp.lr, momentum=recipe.momentum, nesterov=True, weight_decay=hp.weight_decay
        )
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose adamw or sgd")


def train_network(
    model: nn.Module,
    data: Dataset,
    hp: HParams,
    recipe: Recipe,
    seed: int,
    checkpoint_epochs: Iterable[int] = (),
    evaluate_final: bool = True,
) -> TrainResult:
    """Train ``model`` in place on ``data`` (already on the model's device) and evaluate it."""
    start = time.perf_counter()
    device = data.x_train.device
    tune_kernels(device)
    layout = ParamLayout.from_model(model)
    generator = seeded_generator("symzoo-data", seed)
    optimizer = make_optimizer(model, hp, recipe)
    steps = steps_per_epoch(len(data.x_train), recipe.batch_size)
    total, warmup = hp.epochs * steps, round(recipe.warmup_epochs * steps)
    keep = set(checkpoint_epochs)
    history: dict[str, list[float]] = {"train_loss": [], "train_acc": []}
    checkpoints: dict[int, torch.Tensor] = {}
    status, reason, epoch = "ok", "", 0
    model.train()
    for epoch in range(1, hp.epochs + 1):
        draw = draw_epoch(generator, len(data.x_train), recipe.batch_size, data.in_shape[1:], recipe.augment)
        draw = draw.to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for i in range(steps):
            step_draw = draw.step(i)
            x = augment(data.normalize(data.x_train[step_draw.order]), step_draw, recipe.augment)
            y = data.y_train[step_draw.order]
            for group in optimizer.param_groups:
                group["lr"] = hp.lr * lr_factor((epoch - 1) * steps + i, total, warmup, recipe.schedule)
            with autocast(device, recipe.amp):
                logits = model(x)
            loss = smoothed_cross_entropy(logits, y, hp.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(-1) == y).sum()
        mean_loss = (loss_sum / steps).item()
        history["train_loss"].append(mean_loss)
        history["train_acc"].append(correct.item() / (steps * recipe.batch_size))
        if not torch.isfinite(torch.tensor(mean_loss)):
            status, reason = "diverged", f"non-finite training loss in epoch {epoch}"
            break
        if epoch in keep:
            checkpoints[epoch] = layout.flatten(model).cpu()
    model.eval()
    metrics = [float("nan")] * 4
    if status == "ok" and evaluate_final:
        tr = evaluate(model, data, data.x_train, data.y_train, recipe.eval_batch_size, recipe.amp)
        te = evaluate(model, data, data.x_test, data.y_test, recipe.eval_batch_size, recipe.amp)
        metrics = [float(v) for v in (*tr, *te)]
    return TrainResult(
        status,
        reason,
        epoch,
        *metrics,
        history=history,
        seconds=time.perf_counter() - start,
        final_weights=layout.flatten(model).cpu(),
        checkpoints=checkpoints,
    )
