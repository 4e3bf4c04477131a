"""Plots of a zoo's metadata: what a researcher looks at first after `symzoo generate`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from symzoo.zoo.location import Location, location


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Location, dpi: int = 110) -> Location:
    plt = _pyplot()
    fig.tight_layout()
    path = location(path)
    if isinstance(path, Path):
        fig.savefig(path, dpi=dpi)
    else:  # an object store: render in memory, then one atomic commit
        png = io.BytesIO()
        fig.savefig(png, dpi=dpi, format="png")
        path.write_bytes(png.getvalue())
    plt.close(fig)
    return path


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
    return _save(fig, path, dpi=120)


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
    return _save(fig, path)


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
    return _save(fig, path)


def plot_mli_curves(curves: pd.DataFrame, path: str | Path, title: str, per_variant: int = 60) -> Path:
    """Paper Figure 5 style: training loss along init -> final, normalised to 1 at alpha 0 and 0 at alpha 1, a
    panel per variant (up to ``per_variant`` networks drawn, the median curve on top); bumps above the start or
    below the end are barriers and overshoots."""
    plt = _pyplot()
    variants = list(dict.fromkeys(curves["variant"]))
    fig, axes = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 3.3), squeeze=False, sharey=True)
    for ax, v in zip(axes[0], variants, strict=True):
        g = curves[curves["variant"] == v]
        wide = g.pivot_table(index="model_id", columns="alpha", values="loss")
        start, end = wide.iloc[:, 0], wide.iloc[:, -1]
        norm = wide.sub(end, axis=0).div((start - end).where((start - end).abs() > 1e-12), axis=0)
        alphas = wide.columns.to_numpy()
        for _, row in norm.head(per_variant).iterrows():
            ax.plot(alphas, row.to_numpy(), color="C0", alpha=0.25, lw=0.8)
        ax.plot(alphas, norm.median().to_numpy(), color="black", lw=1.6, label="median")
        ax.set(title=f"{v} (n={len(norm)})", xlabel="alpha (0 = init, 1 = trained)", ylim=(-0.3, 1.5))
        ax.axhline(0, color="grey", lw=0.5)
        ax.axhline(1, color="grey", lw=0.5)
    axes[0][0].set_ylabel("(L(alpha) - L(1)) / (L(0) - L(1))")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"MLI, normalised training loss ({title})", fontsize=10)
    return _save(fig, path)


def plot_delta_histogram(stats: pd.DataFrame, path: str | Path, measurement: str) -> Path:
    """Delta (largest rise along the line) per variant; Delta <= 0 is a monotonic curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    lo, hi = float(stats["delta"].min()), float(stats["delta"].max())
    bins = np.linspace(min(lo, -1e-3), max(hi, 1e-3), 41)
    for v, g in stats.groupby("variant", sort=False):
        ax.hist(g["delta"], bins=bins, alpha=0.5, label=f"{v} ({100 * g['monotonic'].mean():.0f}% monotonic)")
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel="Delta = max rise of the training loss between neighbouring alphas", ylabel="networks")
    ax.set_title(f"MLI Delta by variant ({measurement} loss)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_lmc_curves(curves: pd.DataFrame, path: str | Path, labels: dict[str, str], title: str) -> Path:
    """Paper Figure 3 style: test loss and accuracy along the line between two replicates, mean +- std over pairs
    per method."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for method, g in curves.groupby("method", sort=False):
        for ax, col in ((ax_loss, "test_loss"), (ax_acc, "test_acc")):
            stats = g.groupby("alpha")[col].agg(["mean", "std"]).fillna(0.0)
            n = g["sample"].nunique()
            ax.plot(stats.index, stats["mean"], marker=".", label=f"{labels.get(method, method)} (n={n})")
            ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.15)
    ax_loss.set(xlabel="alpha (0: network A, 1: network B)", ylabel="test loss (cross-entropy)")
    ax_acc.set(xlabel="alpha (0: network A, 1: network B)", ylabel="test accuracy")
    ax_loss.legend(fontsize=8)
    fig.suptitle(f"linear interpolation between replicates: {title}", fontsize=10)
    return _save(fig, path)
