"""Plots of a zoo's metadata: what a researcher looks at first after `symzoo generate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(frame: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Test accuracy per variant (histograms) and against the learning rate (log scale), finished networks only."""
    plt = _pyplot()
    ok = frame[frame["status"] == "ok"]
    fig, (hist, scatter) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, 1, 41)
    for variant, group in ok.groupby("variant"):
        label = f"{variant} (n={len(group)}, mean {group['test_acc'].mean():.3f})"
        hist.hist(group["test_acc"], bins=bins, alpha=0.55, label=label)
        scatter.scatter(group["lr"], group["test_acc"], s=12, alpha=0.7, label=variant)
    hist.set(xlabel="test accuracy", ylabel="networks", title="test accuracy by variant")
    hist.legend(fontsize=8)
    scatter.set(xscale="log", xlabel="peak learning rate", ylabel="test accuracy", title="accuracy vs learning rate")
    scatter.legend(fontsize=8)
    diverged = len(frame) - len(ok)
    fig.suptitle(f"{title}  ({len(ok)} finished, {diverged} diverged or failed)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_metanet_predictions(predictions: pd.DataFrame, path: str | Path, labels: dict[str, str]) -> Path:
    """Predicted against true test accuracy: a panel per (metanet, variant), every seed's test predictions."""
    plt = _pyplot()
    metanets = list(dict.fromkeys(predictions["metanet"]))
    variants = list(dict.fromkeys(predictions["variant"]))
    fig, axes = plt.subplots(
        len(metanets), len(variants), figsize=(3.2 * len(variants), 3.0 * len(metanets)), squeeze=False
    )
    lo = min(predictions["true_acc"].min(), 0.0)
    for i, m in enumerate(metanets):
        for j, v in enumerate(variants):
            ax = axes[i][j]
            g = predictions[(predictions["metanet"] == m) & (predictions["variant"] == v)]
            ax.scatter(g["true_acc"], g["pred_acc"].clip(-0.5, 1.5), s=6, alpha=0.35)
            ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8)
            ax.set(xlim=(lo, 1.02), ylim=(lo - 0.05, 1.1))
            ax.set_title(f"{labels.get(m, m)} / {v}", fontsize=9)
            if i == len(metanets) - 1:
                ax.set_xlabel("true test accuracy")
            if j == 0:
                ax.set_ylabel("predicted")
    fig.suptitle("metanet predictions on the test split (all seeds; predictions clipped to [-0.5, 1.5])")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lr_sweep(sweep: pd.DataFrame, path: str | Path, labels: dict[str, str]) -> Path:
    """Validation R^2 (at the best epoch) against the swept hyperparameter, a panel per metanet, a line per variant."""
    plt = _pyplot()
    metanets = list(dict.fromkeys(sweep["metanet"]))
    fig, axes = plt.subplots(1, len(metanets), figsize=(3.4 * len(metanets), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metanets, strict=True):
        g = sweep[sweep["metanet"] == m]
        for v, gv in g.groupby("variant", sort=False):
            gv = gv.sort_values("hparam")
            ax.plot(gv["hparam"], gv["val_r2"].clip(lower=-1), marker="o", label=v)
        ax.set(xscale="log", xlabel=g["hparam_name"].iloc[0], title=labels.get(m, m), ylim=(-1.05, 1.0))
        ax.axhline(0, color="grey", lw=0.6)
    axes[0][0].set_ylabel("validation R^2 (clipped at -1)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
