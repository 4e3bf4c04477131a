"""One metanetwork run: train on the train split, evaluate every epoch, keep the best-validation epoch's test
metrics and predictions. Pure function of its inputs and seed; no Ray, so any machine can call it.

Two targets: a network's test accuracy (regression: MSE, scored by R² and Kendall τ, paper Table 3) or, on INR
zoos, the class of the image a network fits (classification: cross-entropy, scored by accuracy and the test
cross-entropy, the INR benchmarks' protocol). ``RunSpec.classes`` says which (0: regression).

The CPU baselines (ridge on the flat weights, gradient-boosted trees on the StatNN statistics) go through the
same entry point, with their regularisation (ridge alpha, GBT learning rate) in place of the learning rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import kendalltau
from sklearn.metrics import r2_score

from symzoo.analysis.metanets import build_metanet
from symzoo.zoo.layers import stable_seed

RIDGE_ALPHAS = [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]  # X X^T is ~1e3 per diagonal entry at ResNet8 size
GBT_LRS = [0.01, 0.03, 0.1, 0.3]


def grid_for(metanet: str, lrs: list[float]) -> tuple[str, list[float]]:
    """The hyperparameter picked on validation: its name and values."""
    if metanet == "ridge":
        return "alpha", RIDGE_ALPHAS
    if metanet == "gbt":
        return "lr", GBT_LRS
    return "lr", lrs


@dataclass(frozen=True)
class RunSpec:
    variant: str
    metanet: str
    hparam: float  # learning rate (ridge: alpha)
    seed: int  # 0: the LR sweep's run; 1..S: the fresh runs at the chosen LR
    epochs: int = 50
    batch_size: int = 128
    weight_decay: float = 1e-2
    classes: int = 0  # 0: regress test accuracy; K: classify the fitted image into K classes
    augment: bool = False  # a fresh neuron permutation of every training network at every step (standard nets)

    @property
    def metrics(self) -> tuple[str, str]:
        """The run's two scores; the first picks the best epoch and the hyperparameter (higher is better)."""
        return metric_names(self.classes)

    @property
    def key(self) -> str:
        return f"{self.variant}--{self.metanet}--{self.hparam:g}--s{self.seed}"


def metric_names(classes: int) -> tuple[str, str]:
    return ("accuracy", "nll") if classes else ("r2", "tau")


def scores(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Regression (``pred`` (N,)): R^2 (sklearn) and Kendall tau-b (scipy); NaN where predictions are not finite or
    constant. Classification (``pred`` (N, K) logits): accuracy and mean cross-entropy; NaN where not finite."""
    if not np.all(np.isfinite(pred)):
        return math.nan, math.nan
    if pred.ndim == 2:
        logits = torch.from_numpy(pred).double()
        labels = torch.as_tensor(true, dtype=torch.long)
        nll = float(torch.nn.functional.cross_entropy(logits, labels))
        return float((logits.argmax(1) == labels).double().mean()), nll
    tau = kendalltau(true, pred).statistic if np.ptp(pred) > 0 else math.nan
    return float(r2_score(true, pred)), float(tau)


def point_predictions(pred: np.ndarray) -> np.ndarray:
    """What a run stores per test network: the predicted accuracy, or the predicted class (argmax of logits)."""
    return pred.argmax(1).astype(np.float32) if pred.ndim == 2 else pred


@torch.no_grad()
def _predict(model: torch.nn.Module, x: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    model.eval()  # DMC has BatchNorm: evaluation uses its running statistics
    batches = (torch.as_tensor(np.asarray(x[i : i + batch_size]), device=device) for i in range(0, len(x), batch_size))
    out = [model(b) for b in batches]
    return torch.cat(out).float().cpu().numpy() if out else np.zeros(0, np.float32)


def train_neural(
    spec: RunSpec,
    inputs: np.ndarray,
    targets: np.ndarray,
    idx: dict[str, np.ndarray],
    device: torch.device,
    space=None,
    permuter: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> dict:
    """AdamW (weight decay 1e-2), MSE (or cross-entropy), no schedule; per-epoch train loss and val/test scores.
    ``permuter`` (``spec.augment``): maps a batch of flat networks to randomly permuted equivalents."""
    torch.manual_seed(stable_seed("symzoo-metanet-init", spec.metanet, spec.seed))
    model = build_metanet(spec.metanet, inputs.shape[1], space, max(spec.classes, 1)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.hparam, weight_decay=spec.weight_decay)
    x_train = torch.as_tensor(np.asarray(inputs[idx["train"]]), device=device)
    y_dtype = torch.long if spec.classes else torch.float32
    y_train = torch.as_tensor(targets[idx["train"]], device=device).to(y_dtype)
    if hasattr(model, "fit_inputs"):  # the equivariant metanets scale each tensor from the training split
        model.fit_inputs(x_train, y_train)
    loss_fn = torch.nn.functional.cross_entropy if spec.classes else torch.nn.functional.mse_loss
    if spec.augment and permuter is None:
        raise ValueError(f"{spec.key} asks for permutation augmentation and was given no permuter")
    augment_gen = torch.Generator().manual_seed(stable_seed("symzoo-metanet-augment", spec.metanet, spec.seed))
    x_val, x_test = np.asarray(inputs[idx["val"]]), np.asarray(inputs[idx["test"]])
    y_val, y_test = targets[idx["val"]], targets[idx["test"]]
    order_gen = torch.Generator().manual_seed(stable_seed("symzoo-metanet-order", spec.metanet, spec.seed))
    first, second = spec.metrics
    names = ("train_loss", f"val_{first}", f"val_{second}", f"test_{first}", f"test_{second}")
    curves: dict[str, list[float]] = {k: [] for k in names}
    best = {"epoch": 0, "val": -math.inf, "pred": np.full(len(y_test), np.nan, np.float32)}
    for epoch in range(1, spec.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=order_gen).to(device)
        total, seen = 0.0, 0
        for i in range(0, len(order), spec.batch_size):
            batch = order[i : i + spec.batch_size]
            if len(batch) < 2 and spec.metanet == "dmc":  # BatchNorm cannot train on one example
                continue
            x = x_train[batch] if not spec.augment else permuter(x_train[batch], augment_gen)
            loss = loss_fn(model(x), y_train[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
            seen += len(batch)
        curves["train_loss"].append(total / max(seen, 1))
        val = scores(y_val, _predict(model, x_val, spec.batch_size, device))
        test_out = _predict(model, x_test, spec.batch_size, device)
        test = scores(y_test, test_out)
        for k, v in zip(names[1:], (*val, *test), strict=True):
            curves[k].append(v)
        if not math.isfinite(curves["train_loss"][-1]):
            break  # diverged: the curves say so, and the best epoch stays the last finite one
        if math.isfinite(val[0]) and val[0] > best["val"]:
            best = {"epoch": epoch, "val": val[0], "pred": point_predictions(test_out)}
    return {"curves": curves, "best_epoch": best["epoch"], "test_pred": best["pred"]}


def train_baseline(spec: RunSpec, inputs: np.ndarray, targets: np.ndarray, idx: dict[str, np.ndarray]) -> dict:
    """Ridge (flat weights) or gradient-boosted trees (StatNN statistics): one fit, curves of length one."""
    from sklearn.ensemble import GradientBoostingRegressor

    if spec.classes:
        raise ValueError(f"{spec.metanet} regresses test accuracy; the class target needs a neural metanet")

    from symzoo.analysis.ridge import BlockRidge

    if spec.metanet == "ridge":  # the flat weights stay where they are (a memory map): no float64 copy
        ridge = BlockRidge(spec.hparam).fit(inputs, targets, idx["train"])

        def pred(split: str) -> np.ndarray:
            return ridge.predict(inputs, idx[split])
    else:
        model = GradientBoostingRegressor(
            learning_rate=spec.hparam, n_estimators=300, max_depth=3, subsample=0.8, random_state=spec.seed
        )
        model.fit(np.asarray(inputs[idx["train"]], np.float64), targets[idx["train"]])

        def pred(split: str) -> np.ndarray:
            return model.predict(np.asarray(inputs[idx[split]], np.float64)).astype(np.float32)

    train_pred = pred("train")
    val_r2, val_tau = scores(targets[idx["val"]], pred("val"))
    test_pred = pred("test")
    test_r2, test_tau = scores(targets[idx["test"]], test_pred)
    train_loss = float(np.mean((train_pred - targets[idx["train"]]) ** 2))
    curves = {"train_loss": [train_loss], "val_r2": [val_r2], "val_tau": [val_tau]}
    curves |= {"test_r2": [test_r2], "test_tau": [test_tau]}
    return {"curves": curves, "best_epoch": 1, "test_pred": test_pred}


def run_metanet(
    spec: RunSpec,
    inputs: np.ndarray,
    targets: np.ndarray,
    model_ids: np.ndarray,
    idx: dict[str, np.ndarray],
    device: torch.device | str = "cpu",
    space=None,
    permuter: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> dict:
    """One run -> one row: the spec, per-epoch curves, the best-validation epoch, its test metrics and predictions.
    ``space``: the variant's ``analysis.weight_space.WeightSpace``, which the equivariant metanets read;
    ``permuter``: the variant's ``zoo.symmetry.FlatPermutation`` where ``spec.augment``."""
    start = time.perf_counter()
    device = torch.device(device)
    if spec.metanet in ("ridge", "gbt"):
        out = train_baseline(spec, inputs, targets, idx)
        device = torch.device("cpu")
    else:
        out = train_neural(spec, inputs, targets, idx, device, space, permuter)
    curves, best = out["curves"], out["best_epoch"]
    scored = [f"{split}_{m}" for split in ("val", "test") for m in spec.metrics]
    at_best = {k: (curves[k][best - 1] if best else math.nan) for k in scored}
    return {
        **asdict(spec),
        "hparam_name": grid_for(spec.metanet, [])[0],
        "n_train": len(idx["train"]),
        "n_val": len(idx["val"]),
        "n_test": len(idx["test"]),
        "best_epoch": best,
        **at_best,
        **{f"curve_{k}": [float(v) for v in vals] for k, vals in curves.items()},
        "test_model_id": [int(i) for i in model_ids[idx["test"]]],
        "test_true": [float(v) for v in targets[idx["test"]]],
        "test_pred": [float(v) for v in out["test_pred"]],
        "seconds": time.perf_counter() - start,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
    }
