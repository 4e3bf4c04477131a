"""Variational training of one network with the diagonal + low-rank Gaussian posterior of ``zoo.bayes``: the
paper's Bayesian networks (Table 2, Figure 4; docs/paper.md §6), as a zoo's ``training.method: elrg``.

Per step: one posterior sample per example (local reparameterisation), loss = NLL + KL / N with N the training
images times ``kl_copies`` (the authors' 8 augmented copies of a CIFAR image). Per epoch the history records the
epoch's mean training NLL and accuracy (of the sampled networks on augmented batches, as the authors log them),
KL / N, and the test set's predictive NLL, accuracy and ECE from ``test_samples`` posterior samples (their mean
predictive probabilities). The network's own parameters are the posterior mean, so the zoo's weight columns hold
means and every other tool reads a Bayesian zoo's networks as networks; the variance parameters travel separately.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from symzoo.zoo.augment import augment, draw_epoch
from symzoo.zoo.bayes import Posterior
from symzoo.zoo.data import Dataset
from symzoo.zoo.layers import seeded_generator
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.plan import HParams
from symzoo.zoo.train import Recipe, TrainResult, lr_factor, smoothed_cross_entropy, steps_per_epoch, tune_kernels

# Per-epoch history beside the standard trainer's train_loss / train_acc (stored as history_<name>).
BAYES_HISTORY = ("train_kl", "test_loss", "test_acc", "test_ece")
ECE_BINS = 15  # as the authors' torchmetrics call


@dataclass(frozen=True)
class ElrgSettings:
    """``training.elrg`` of a zoo config (defaults: the paper's MLP rows)."""

    rank: int = 4
    prior_precision: float = 0.01
    scale_prior: bool = True
    init_log_var: float = -10.0
    learn_diag: bool = False
    test_samples: int = 25
    kl_copies: int = 8

    @classmethod
    def from_config(cls, elrg: dict) -> ElrgSettings:
        return cls(**elrg)

    def posterior(self, model: nn.Module, seed: int) -> Posterior:
        return Posterior(
            model, self.rank, self.init_log_var, self.learn_diag, self.prior_precision, self.scale_prior, seed
        )


@torch.no_grad()
def predictive(
    model: nn.Module, posterior: Posterior, data: Dataset, x: torch.Tensor, y: torch.Tensor, samples: int, batch: int
) -> dict[str, float]:
    """NLL, accuracy and ECE of the posterior predictive (mean of ``samples`` sampled networks' probabilities)
    over uint8 images ``x``, no augmentation."""
    from symzoo.zoo.calibration import expected_calibration_error

    model.eval()
    posterior.sampling = True
    probs = []
    for i in range(0, len(x), batch):
        xb = data.normalize(x[i : i + batch])
        mean = torch.zeros(len(xb), data.num_classes, device=x.device, dtype=torch.float64)
        for _ in range(samples):
            mean += F.softmax(model(xb).double(), dim=-1)
        probs.append(mean / samples)
    p = torch.cat(probs)
    nll = -torch.log(p.gather(1, y.view(-1, 1)).clamp_min(1e-300)).mean()
    acc = (p.argmax(1) == y).double().mean()
    return {"loss": float(nll), "acc": float(acc), "ece": expected_calibration_error(p.cpu(), y.cpu(), ECE_BINS)}


def train_elrg(
    model: nn.Module,
    data: Dataset,
    hp: HParams,
    recipe: Recipe,
    settings: ElrgSettings,
    seed: int,
    checkpoint_epochs: Iterable[int] = (),
) -> TrainResult:
    """Fit ``model``'s posterior (its parameters become the mean) on ``data``; never raises on divergence."""
    start = time.perf_counter()
    device = data.x_train.device
    tune_kernels(device)
    layout = ParamLayout.from_model(model)
    posterior = settings.posterior(model, seed).to(device)
    posterior.seed(seed)  # the noise generator on the data's device
    generator = seeded_generator("symzoo-data", seed)
    params = [*model.parameters(), *posterior.parameters()]
    optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
    steps = steps_per_epoch(len(data.x_train), recipe.batch_size)
    total, warmup = hp.epochs * steps, round(recipe.warmup_epochs * steps)
    n_data = len(data.x_train) * settings.kl_copies
    keep = set(checkpoint_epochs)
    history: dict[str, list[float]] = {k: [] for k in ("train_loss", "train_acc", *BAYES_HISTORY)}
    checkpoints: dict[int, torch.Tensor] = {}
    status, reason, epoch = "ok", "", 0
    for epoch in range(1, hp.epochs + 1):
        model.train()
        draw = draw_epoch(generator, len(data.x_train), recipe.batch_size, data.in_shape[1:], recipe.augment)
        draw = draw.to(device)
        nll_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for i in range(steps):
            step_draw = draw.step(i)
            x = augment(data.normalize(data.x_train[step_draw.order]), step_draw, recipe.augment)
            y = data.y_train[step_draw.order]
            for group in optimizer.param_groups:
                group["lr"] = hp.lr * lr_factor((epoch - 1) * steps + i, total, warmup, recipe.schedule)
            logits = model(x)
            nll = smoothed_cross_entropy(logits, y, hp.label_smoothing)
            loss = nll + posterior.kl() / n_data
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            nll_sum += nll.detach()
            correct += (logits.detach().argmax(-1) == y).sum()
        mean_nll = float(nll_sum / steps)
        history["train_loss"].append(mean_nll)
        history["train_acc"].append(float(correct) / (steps * recipe.batch_size))
        with torch.no_grad():
            history["train_kl"].append(float(posterior.kl()) / n_data)
        if not math.isfinite(mean_nll):
            status, reason = "diverged", f"non-finite training loss in epoch {epoch}"
            for k in BAYES_HISTORY[1:]:
                history[k].append(float("nan"))
            break
        test = predictive(
            model, posterior, data, data.x_test, data.y_test, settings.test_samples, recipe.eval_batch_size
        )
        for k in ("loss", "acc", "ece"):
            history[f"test_{k}"].append(test[k])
        if epoch in keep:
            checkpoints[epoch] = layout.flatten(model).cpu()
    model.eval()
    last = {k: v[-1] if v and status == "ok" else float("nan") for k, v in history.items()}
    return TrainResult(
        status,
        reason,
        epoch,
        last["train_loss"],
        last["train_acc"],
        last["test_loss"],
        last["test_acc"],
        history=history,
        seconds=time.perf_counter() - start,
        final_weights=layout.flatten(model).cpu(),
        checkpoints=checkpoints,
        posterior=posterior.state_vector(),
        test_ece=last["test_ece"],
    )
