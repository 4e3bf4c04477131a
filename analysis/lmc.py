"""Linear mode connectivity (paper Table 1): test loss along the line between two trained replicates, with Git
Re-Basin weight matching as the baseline for standard networks. Pure functions; no Ray.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from symzoo.analysis.landscape import evaluate_flat, interpolate, midpoint_barrier
from symzoo.analysis.naming import METHOD_LABELS
from symzoo.analysis.paper import TABLE1
from symzoo.analysis.rebasin import rebasin
from symzoo.analysis.stats import ci, mean_ci, mean_std, pm, welch_t
from symzoo.analysis.verdicts import Verdict, outcome_of
from symzoo.zoo.data import Dataset
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build_configured, gates_per_sample

METHODS = METHOD_LABELS  # the methods in Table 1's column order, with their printed names


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
    """Per pair and method: midpoint test-loss barrier and accuracy drop, and the endpoints' mean test loss and
    accuracy (a small barrier between two weak networks is not the paper's finding)."""
    rows = []
    for (method, sample), g in curves.groupby(["method", "sample"], sort=False):
        g = g.sort_values("alpha")
        a, loss, acc = g["alpha"].to_numpy(), g["test_loss"].to_numpy(), g["test_acc"].to_numpy()
        rows.append(
            {
                "method": method,
                "sample": sample,
                "loss_barrier": midpoint_barrier(a, loss),
                "acc_drop": -midpoint_barrier(a, acc),
                "endpoint_loss": float((loss[0] + loss[-1]) / 2),
                "endpoint_acc": float((acc[0] + acc[-1]) / 2),
            }
        )
    return pd.DataFrame(rows)


def paper_setting(cfg: dict) -> tuple[str | None, str]:
    """Which row of Table 1 a zoo's setting corresponds to (None: none), and how it is named."""
    arch, data, width = cfg["model"]["arch"], cfg["data"]["name"], cfg["model"]["width"]
    if arch == "mlp" and data == "fashion_mnist":
        return "mlp_mnist", "MLP on Fashion-MNIST (the paper's row: MLP on MNIST, not available offline)"
    if arch == "resnet20" and data == "cifar10" and cfg["data"]["size"] in (None, 32):
        return ("resnet20x8_cifar10" if width == 8 else "resnet20_cifar10"), f"ResNet20 x{width} on CIFAR-10"
    return None, f"{arch} x{width} on {data}"


def nearest_paper_row(cfg: dict) -> tuple[str, str]:
    """The paper's row to print beside a setting it did not run: its MLP row for MLPs, ResNet20 x1 for ResNets."""
    if cfg["model"]["arch"] == "mlp":
        return "mlp_mnist", "paper: MLP on MNIST (another setting)"
    return "resnet20_cifar10", "paper: ResNet20 x1 on CIFAR-10 (another setting)"


WEAK_ENDPOINTS = 1.5  # a method whose endpoints' test loss is this many times the best method's is flagged


def lmc_table(table_barriers: pd.DataFrame, cfg: dict) -> str:
    """Table 1's layout: one row for this zoo's setting (mean ± std of the midpoint test-loss barrier over
    pairs, then its 95% Student-t interval), a column per method, the paper's row (or its nearest, marked as
    another setting); then the accuracy drop, the endpoints' loss and accuracy, flags and verdicts."""
    key, setting = paper_setting(cfg)
    methods = [m for m in METHODS if m in set(table_barriers["method"])]
    rule = "|" + "---|" * (1 + len(methods))
    lines = ["| setting | " + " | ".join(f"{METHODS[m]} (n)" for m in methods) + " |", rule]
    by_method = {m: table_barriers[table_barriers["method"] == m] for m in methods}
    cells = [setting]
    for m in methods:
        values = by_method[m]["loss_barrier"]
        mean, std, n = mean_std(values)
        cells.append(f"{pm(mean, std, n=n)}{ci(*mean_ci(values))} ({n})")
    lines.append("| " + " | ".join(cells) + " |")
    row_key, row_label = paper_row(cfg)
    paper = dict(zip(METHODS, TABLE1[row_key], strict=True))
    lines.append(f"| {row_label} | " + " | ".join(f"{paper[m]:.3f}" for m in methods) + " |")
    lines += ["", "Midpoint test-accuracy drop, and the endpoints' own test loss and accuracy (mean over pairs):", ""]
    lines += ["| | " + " | ".join(METHODS[m] for m in methods) + " |", rule]
    for column, name in (
        ("acc_drop", "accuracy drop"),
        ("endpoint_loss", "endpoint test loss"),
        ("endpoint_acc", "endpoint test accuracy"),
    ):
        row = [pm(*mean_std(by_method[m][column])[:2], n=mean_std(by_method[m][column])[2]) for m in methods]
        lines.append("| " + " | ".join([name, *row]) + " |")
    flags = lmc_flags(by_method)
    verdicts = lmc_verdicts(by_method, paper)
    lines += [""] + [f"- ⚠ {f}" for f in flags] + [f"- verdict: {v.text}" for v in verdicts]
    return "\n".join(lines) + "\n"


def paper_row(cfg: dict) -> tuple[str, str]:
    """Table 1's row for this zoo's setting, or its nearest (labelled as another setting)."""
    key, _ = paper_setting(cfg)
    return (key, "paper") if key else nearest_paper_row(cfg)


def lmc_verdict_records(table_barriers: pd.DataFrame, cfg: dict) -> list[Verdict]:
    """``lmc_verdicts`` as ``lmc_table`` computes them."""
    methods = [m for m in METHODS if m in set(table_barriers["method"])]
    by_method = {m: table_barriers[table_barriers["method"] == m] for m in methods}
    return lmc_verdicts(by_method, dict(zip(METHODS, TABLE1[paper_row(cfg)[0]], strict=True)))


def lmc_flags(by_method: dict[str, pd.DataFrame]) -> list[str]:
    """Methods whose endpoints are much worse than the best method's: their small barrier says little."""
    losses = {m: float(g["endpoint_loss"].mean()) for m, g in by_method.items()}
    best = min(losses.values())
    return [
        f"{METHODS[m]}'s endpoints are weak (test loss {loss:.3f} against {best:.3f} for the best method): a small "
        "barrier between weak networks is not the paper's finding of connected good solutions"
        for m, loss in losses.items()
        if best > 0 and loss > WEAK_ENDPOINTS * best
    ]


def lmc_verdicts(by_method: dict[str, pd.DataFrame], paper: dict[str, float]) -> list[Verdict]:
    """Each method against standard, as the paper compares them: a lower barrier than standard's (Welch's t-test
    over pairs)."""
    if "standard" not in by_method:
        return []
    base = by_method["standard"]["loss_barrier"]
    out = []
    for m in (m for m in by_method if m != "standard"):
        ours, theirs = float(by_method[m]["loss_barrier"].mean()), float(base.mean())
        _, p = welch_t(by_method[m]["loss_barrier"], base)
        same = (ours - theirs) * (paper[m] - paper["standard"]) > 0
        outcome = "direction reproduced" if same else "direction NOT reproduced"
        if same and not (math.isfinite(p) and p < 0.05):
            outcome = "same direction, not significant"
        text = (
            f"{METHODS[m]} barrier {ours:.3f} vs standard {theirs:.3f} (Welch p = {p:.2g}); paper "
            f"{paper[m]:.3f} vs {paper['standard']:.3f}: {outcome}"
        )
        word = "lower" if paper[m] < paper["standard"] else "higher"
        out.append(
            Verdict(
                f"LMC: {METHODS[m]} barrier {word} than standard",
                f"{paper[m]:.3f} vs {paper['standard']:.3f}",
                f"{ours:.3f} vs {theirs:.3f}",
                "Welch",
                p,
                outcome_of(same, p),
                text=text,
            )
        )
    return out
