"""Linear mode connectivity (paper Table 1): test loss along the line between two trained replicates, with Git
Re-Basin weight matching as the baseline for standard networks. Pure functions; no Ray.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from symzoo.analysis.landscape import evaluate_flat, interpolate, midpoint_barrier
from symzoo.analysis.paper import TABLE1
from symzoo.analysis.rebasin import rebasin
from symzoo.analysis.stats import ci, mean_ci, mean_std, pm
from symzoo.zoo.data import Dataset
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build_configured, gates_per_sample

METHODS = {
    "standard": "standard",
    "standard+rebasin": "standard + Git Re-Basin",
    "sigma_asym": "sigma-Asym",
    "w_asym": "W-Asym",
}


def replicate_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Disjoint pairs of replicates (0 with 1, 2 with 3, ...) of one hyperparameter sample and variant: they share
    hyperparameters, masks and F, and differ in init seed and data order. Both must have finished."""
    rows = []
    ok = frame[frame["status"] == "ok"]
    for (sample, variant), g in ok.groupby(["sample", "variant"], sort=True):
        g = g.sort_values("replicate")
        reps = g["replicate"].tolist()
        for r in range(0, max(reps, default=-1) + 1, 2):
            if r in reps and r + 1 in reps:
                a, b = g[g["replicate"] == r].iloc[0], g[g["replicate"] == r + 1].iloc[0]
                rows.append({"sample": sample, "variant": variant, "model_a": a["model_id"], "model_b": b["model_id"]})
    return pd.DataFrame(rows, columns=["sample", "variant", "model_a", "model_b"])


CURVE_COLUMNS = ["sample", "variant", "method", "model_a", "model_b", "alpha", "test_loss", "test_acc"]


def lmc_curves(
    pairs: pd.DataFrame,
    final_a: np.ndarray,
    final_b: np.ndarray,
    cfg: dict,
    data: Dataset,
    n_alphas: int,
    batch_size: int,
    with_rebasin: bool,
) -> pd.DataFrame:
    """Plain cross-entropy and accuracy on the test set along theta_a -> theta_b for each pair of one variant;
    standard pairs also along theta_a -> P(theta_b), b permuted onto a by weight matching."""
    device = data.x_train.device
    variant = pairs["variant"].iloc[0]
    shape, classes = data.in_shape, data.num_classes
    template = build_configured(cfg, variant, shape, classes, sample=int(pairs["sample"].iloc[0]))
    layout = ParamLayout.from_model(template)
    template = template.to(device)
    alphas = torch.linspace(0, 1, n_alphas)
    rows = []
    for j, pair in enumerate(pairs.itertuples(index=False)):
        if gates_per_sample(cfg, variant):  # both replicates of a sample share its own F
            template = build_configured(cfg, variant, shape, classes, sample=int(pair.sample)).to(device)
        wa = torch.as_tensor(np.array(final_a[j]))
        wb = torch.as_tensor(np.array(final_b[j]))
        ends = {variant: wb}
        if with_rebasin and variant == "standard":
            model_a = layout.load_into(build_configured(cfg, variant, shape, classes), wa)
            model_b = layout.load_into(build_configured(cfg, variant, shape, classes), wb)
            ends["standard+rebasin"] = layout.flatten(rebasin(model_a, model_b, seed=int(pair.sample)))
        for method, end in ends.items():
            flats = interpolate(wa.unsqueeze(0), end.unsqueeze(0), alphas).to(device)
            loss, acc = evaluate_flat(template, layout, flats, data, "test", torch.zeros(n_alphas), batch_size)
            for a in range(n_alphas):
                rows.append(
                    (int(pair.sample), variant, method, int(pair.model_a), int(pair.model_b), float(alphas[a]))
                    + (float(loss[a]), float(acc[a]))
                )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def barriers(curves: pd.DataFrame) -> pd.DataFrame:
    """Midpoint test-loss and accuracy barriers per pair and method."""
    rows = []
    for (method, sample), g in curves.groupby(["method", "sample"], sort=False):
        g = g.sort_values("alpha")
        a = g["alpha"].to_numpy()
        loss_barrier = midpoint_barrier(a, g["test_loss"].to_numpy())
        acc_drop = -midpoint_barrier(a, g["test_acc"].to_numpy())
        rows.append({"method": method, "sample": sample, "loss_barrier": loss_barrier, "acc_drop": acc_drop})
    return pd.DataFrame(rows)


def paper_setting(cfg: dict) -> tuple[str | None, str]:
    """Which row of Table 1 a zoo's setting corresponds to (None: none), and how it is named."""
    arch, data, width = cfg["model"]["arch"], cfg["data"]["name"], cfg["model"]["width"]
    if arch == "mlp" and data == "fashion_mnist":
        return "mlp_mnist", "MLP on Fashion-MNIST (the paper's row: MLP on MNIST, not available offline)"
    if arch == "resnet20" and data == "cifar10" and cfg["data"]["size"] in (None, 32):
        return ("resnet20x8_cifar10" if width == 8 else "resnet20_cifar10"), f"ResNet20 x{width} on CIFAR-10"
    return None, f"{arch} x{width} on {data}"


def lmc_table(table_barriers: pd.DataFrame, cfg: dict) -> str:
    """Table 1's layout: one row for this zoo's setting (mean +- std of the midpoint test-loss barrier over
    pairs, then its 95% Student-t interval), a column per method, the paper's row beside it where the setting
    matches."""
    key, label = paper_setting(cfg)
    methods = [m for m in METHODS if m in set(table_barriers["method"])]
    rule = "|" + "---|" * (1 + len(methods))
    lines = ["| setting | " + " | ".join(f"{METHODS[m]} (n)" for m in methods) + " |", rule]
    cells = [label]
    for m in methods:
        values = table_barriers.loc[table_barriers["method"] == m, "loss_barrier"]
        mean, std, n = mean_std(values)
        cells.append(f"{pm(mean, std)}{ci(*mean_ci(values))} ({n})")
    lines.append("| " + " | ".join(cells) + " |")
    if key:
        paper = dict(zip(METHODS, TABLE1[key], strict=True))
        lines.append("| paper | " + " | ".join(f"{paper[m]:.3f}" for m in methods) + " |")
    lines += ["", "Midpoint test-accuracy drop (mean of the endpoints' accuracy minus the midpoint's):", ""]
    lines += ["| setting | " + " | ".join(METHODS[m] for m in methods) + " |", rule]
    drops = [pm(*mean_std(table_barriers.loc[table_barriers["method"] == m, "acc_drop"])[:2]) for m in methods]
    lines.append("| " + " | ".join([label, *drops]) + " |")
    return "\n".join(lines) + "\n"
