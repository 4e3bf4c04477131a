"""Plots of a zoo's metadata: what a researcher looks at first after `symzoo generate`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from symzoo.analysis.naming import color, in_paper_order, label
from symzoo.zoo.location import Location, atomic_write_bytes, location


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def matplotlib_ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def _save(fig, path: str | Location, dpi: int = 110, tight: bool = True) -> Location:
    plt = _pyplot()
    if tight:
        fig.tight_layout()
    path = location(path)
    png = io.BytesIO()  # rendered in memory, then one atomic commit: never half a file, never through a link
    fig.savefig(png, dpi=dpi, format="png")
    atomic_write_bytes(path, png.getvalue())
    plt.close(fig)
    return path


def plot_accuracy(frame: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Test accuracy per variant (histograms) and against the learning rate (log scale), finished networks only."""
    plt = _pyplot()
    ok = frame[frame["status"] == "ok"]
    fig, (hist, scatter) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, 1, 41)
    for variant in in_paper_order(ok["variant"]):
        group = ok[ok["variant"] == variant]
        text = f"{label(variant)} (n={len(group)}, mean {group['test_acc'].mean():.3f})"
        hist.hist(group["test_acc"], bins=bins, alpha=0.55, label=text, color=color(variant))
        scatter.scatter(group["lr"], group["test_acc"], s=12, alpha=0.7, label=label(variant), color=color(variant))
    hist.set(xlabel="test accuracy", ylabel="networks", title="test accuracy by variant")
    hist.legend(fontsize=8)
    scatter.set(xscale="log", xlabel="peak learning rate", ylabel="test accuracy", title="accuracy vs learning rate")
    scatter.legend(fontsize=8)
    diverged = len(frame) - len(ok)
    fig.suptitle(f"{title}  ({len(ok)} finished, {diverged} diverged or failed)")
    return _save(fig, path, dpi=120)


PREDICTION_CLIP = (-0.5, 1.5)


def plot_metanet_predictions(predictions: pd.DataFrame, path: str | Path, labels: dict[str, str]) -> Path:
    """Predicted against true test accuracy: a panel per (metanet, variant), every seed's test predictions, the
    panel's R² (mean over seeds, computed on the unclipped predictions) in its title."""
    from sklearn.metrics import r2_score

    plt = _pyplot()
    metanets = list(dict.fromkeys(predictions["metanet"]))
    variants = in_paper_order(predictions["variant"])
    fig, axes = plt.subplots(
        len(metanets),
        len(variants),
        figsize=(3.2 * len(variants), 3.0 * len(metanets)),
        squeeze=False,
        layout="constrained",  # leaves room for the figure title, which tight_layout lets overlap the top panels
    )
    lo = min(predictions["true_acc"].min(), 0.0)
    for i, m in enumerate(metanets):
        for j, v in enumerate(variants):
            ax = axes[i][j]
            g = predictions[(predictions["metanet"] == m) & (predictions["variant"] == v)]
            ax.scatter(g["true_acc"], g["pred_acc"].clip(*PREDICTION_CLIP), s=6, alpha=0.35, color=color(v))
            ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8)
            ax.set(xlim=(lo, 1.02), ylim=(max(lo - 0.05, PREDICTION_CLIP[0]), 1.1))
            finite = g[np.isfinite(g["pred_acc"])]
            r2 = [r2_score(s["true_acc"], s["pred_acc"]) for _, s in finite.groupby("seed") if len(s) > 1]
            ax.set_title(f"{labels.get(m, m)} / {label(v)}: R² {np.mean(r2):.3f}" if r2 else label(v), fontsize=9)
            if i == len(metanets) - 1:
                ax.set_xlabel("true test accuracy")
            if j == 0:
                ax.set_ylabel("predicted")
    title = f"metanet predictions on the test split (all seeds; points clipped to {list(PREDICTION_CLIP)})"
    fig.suptitle(
        title.replace(" (", "\n(") if len(variants) == 1 else title, fontsize=10 if len(variants) == 1 else None
    )
    return _save(fig, path, tight=False)


def plot_lr_sweep(sweep: pd.DataFrame, path: str | Path, labels: dict[str, str]) -> Path:
    """Validation R² (at the best epoch; accuracy for the class target) against the swept hyperparameter, a panel
    per metanet, a line per variant."""
    plt = _pyplot()
    metanets = list(dict.fromkeys(sweep["metanet"]))
    accuracy = "val_accuracy" in sweep.columns
    fig, axes = plt.subplots(1, len(metanets), figsize=(3.4 * len(metanets), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metanets, strict=True):
        g = sweep[sweep["metanet"] == m]
        for v in in_paper_order(g["variant"]):
            gv = g[g["variant"] == v].sort_values("hparam")
            y = gv["val_accuracy"] if accuracy else gv["val_r2"].clip(lower=-1)
            ax.plot(gv["hparam"], y, marker="o", label=label(v), color=color(v))
        ylim = (0.0, 1.0) if accuracy else (-1.05, 1.0)
        ax.set(xscale="log", xlabel=g["hparam_name"].iloc[0], title=labels.get(m, m), ylim=ylim)
        ax.axhline(0, color="grey", lw=0.6)
    axes[0][0].set_ylabel("validation accuracy" if accuracy else "validation R² (clipped at -1)")
    axes[0][-1].legend(fontsize=8)
    return _save(fig, path)


def plot_confusion(predictions: pd.DataFrame, path: str | Path, labels: dict[str, str]) -> Path:
    """The class target's predictions: a confusion matrix per (metanet, variant), rows the true image class, each
    row normalised to 1 (all seeds' test predictions), the accuracy in the title."""
    plt = _pyplot()
    metanets = list(dict.fromkeys(predictions["metanet"]))
    variants = in_paper_order(predictions["variant"])
    k = int(max(predictions["true_class"].max(), predictions["pred_class"].max())) + 1
    fig, axes = plt.subplots(
        len(metanets), len(variants), figsize=(3.0 * len(variants), 3.0 * len(metanets)), squeeze=False
    )
    for i, m in enumerate(metanets):
        for j, v in enumerate(variants):
            ax = axes[i][j]
            g = predictions[(predictions["metanet"] == m) & (predictions["variant"] == v)]
            counts = np.zeros((k, k))
            np.add.at(counts, (g["true_class"].to_numpy(), g["pred_class"].to_numpy()), 1)
            rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
            ax.imshow(rows, vmin=0, vmax=1, cmap="Blues")
            acc = float((g["true_class"] == g["pred_class"]).mean()) if len(g) else float("nan")
            ax.set_title(f"{labels.get(m, m)} / {label(v)}: {100 * acc:.1f}%", fontsize=9)
            ax.set(xticks=range(k), yticks=range(k))
            ax.tick_params(labelsize=6)
            if i == len(metanets) - 1:
                ax.set_xlabel("predicted class")
            if j == 0:
                ax.set_ylabel("true class")
    fig.suptitle("INR classification on the test images (all seeds; rows sum to 1)")
    return _save(fig, path)


def plot_inr_fits(images: np.ndarray, drawn: dict[str, np.ndarray], psnrs: dict[str, np.ndarray], path) -> Path:
    """What an INR zoo holds: a column per image, its pixels on top, then the image each variant's INR draws,
    clipped to [0, 1], with that fit's PSNR. ``images`` (n, H, W) in [0, 1]; ``drawn[variant]`` the same shape."""
    plt = _pyplot()
    variants = in_paper_order(list(drawn))
    n = len(images)
    fig, axes = plt.subplots(1 + len(variants), n, figsize=(1.3 * n, 1.4 * (1 + len(variants))), squeeze=False)
    for j in range(n):
        rows = [("image", images[j], None)] + [(label(v), drawn[v][j], psnrs[v][j]) for v in variants]
        for i, (name, picture, db) in enumerate(rows):
            ax = axes[i][j]
            ax.imshow(np.clip(picture, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if db is not None:
                ax.set_xlabel(f"{db:.0f} dB", fontsize=7, labelpad=1)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle("test images and the images their INRs draw (PSNR of each fit)", fontsize=9)
    return _save(fig, path)


def plot_mli_curves(curves: pd.DataFrame, path: str | Path, title: str, per_variant: int = 60) -> Path:
    """Two rows, a column per variant. Top, paper Figure 5 style: training loss along init -> final normalised to
    1 at alpha 0 and 0 at alpha 1 (up to ``per_variant`` networks, the median on top). Bottom: each curve's rise
    above its running minimum, L(alpha) - min over alpha' <= alpha of L(alpha'), which is 0 everywhere exactly
    when the curve is monotonic: the small bumps that make a curve non-monotonic, invisible at the top's scale."""
    plt = _pyplot()
    variants = in_paper_order(curves["variant"])
    fig, axes = plt.subplots(2, len(variants), figsize=(3.6 * len(variants), 6.2), squeeze=False, sharey="row")
    for j, v in enumerate(variants):
        g = curves[curves["variant"] == v]
        wide = g.pivot_table(index="model_id", columns="alpha", values="loss")
        start, end = wide.iloc[:, 0], wide.iloc[:, -1]
        norm = wide.sub(end, axis=0).div((start - end).where((start - end).abs() > 1e-12), axis=0)
        rise = wide - np.minimum.accumulate(wide.to_numpy(), axis=1)
        alphas = wide.columns.to_numpy()
        top, bottom = axes[0][j], axes[1][j]
        for (_, row), (_, up) in zip(norm.head(per_variant).iterrows(), rise.head(per_variant).iterrows(), strict=True):
            top.plot(alphas, row.to_numpy(), color=color(v), alpha=0.25, lw=0.8)
            bottom.plot(alphas, up.to_numpy(), color=color(v), alpha=0.3, lw=0.8)
        top.plot(alphas, norm.median().to_numpy(), color="black", lw=1.6, label="median")
        monotonic = float((rise.max(axis=1) <= 0).mean())
        top.set(title=f"{label(v)} (n={len(norm)}, {100 * monotonic:.0f}% monotonic)", ylim=(-0.3, 1.5))
        top.axhline(0, color="grey", lw=0.5)
        top.axhline(1, color="grey", lw=0.5)
        bottom.set(xlabel="alpha (0 = init, 1 = trained)")
        bottom.axhline(0, color="grey", lw=0.5)
    axes[0][0].set_ylabel("(L(alpha) - L(1)) / (L(0) - L(1))")
    axes[1][0].set_ylabel("rise above running minimum")
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"MLI, training loss ({title}); bottom: 0 everywhere iff monotonic", fontsize=10)
    return _save(fig, path)


def plot_delta_histogram(stats: pd.DataFrame, path: str | Path, measurement: str) -> Path:
    """Delta (largest rise along the line) per variant; Delta <= 0 is a monotonic curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    lo, hi = float(stats["delta"].min()), float(stats["delta"].max())
    bins = np.linspace(min(lo, -1e-3), max(hi, 1e-3), 41)
    for v in in_paper_order(stats["variant"]):
        g = stats[stats["variant"] == v]
        text = f"{label(v)} ({100 * g['monotonic'].mean():.0f}% monotonic)"
        ax.hist(g["delta"], bins=bins, alpha=0.5, label=text, color=color(v))
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel="Delta = max rise of the training loss between neighbouring alphas", ylabel="networks")
    ax.set_title(f"MLI Delta by variant ({measurement} loss)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_lmc_curves(curves: pd.DataFrame, path: str | Path, labels: dict[str, str], title: str) -> Path:
    """Paper Figure 3 style: test loss and accuracy along the line between two replicates, the mean over pairs
    per method and a band of ± one standard deviation; the legend sits below the panels, off the curves."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4.2))
    for method in [m for m in labels if m in set(curves["method"])]:
        g = curves[curves["method"] == method]
        for ax, col in ((ax_loss, "test_loss"), (ax_acc, "test_acc")):
            stats = g.groupby("alpha")[col].agg(["mean", "std"]).fillna(0.0)
            n = g["sample"].nunique()
            text = f"{labels.get(method, method)} (n={n}; band: mean ± std)"
            ax.plot(stats.index, stats["mean"], marker=".", label=text, color=color(method))
            lo, hi = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
            ax.fill_between(stats.index, lo, hi, alpha=0.15, color=color(method))
    ax_loss.set(xlabel="alpha (0: network A, 1: network B)", ylabel="test loss (cross-entropy)")
    ax_acc.set(xlabel="alpha (0: network A, 1: network B)", ylabel="test accuracy")
    handles, texts = ax_loss.get_legend_handles_labels()
    fig.legend(handles, texts, loc="lower center", ncol=min(len(texts), 2), fontsize=8)
    fig.suptitle(f"linear interpolation between replicates: {title}", fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return _save(fig, path, tight=False)


def plot_training_loss(curves: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Figure 4 of the paper: training loss against epoch per variant, the mean over instances as a line and their
    range as a band, log scale."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in in_paper_order(curves["variant"]):
        by_epoch = curves[curves["variant"] == variant].groupby("epoch")["train_loss"]
        n = curves.loc[curves["variant"] == variant, "model_id"].nunique()
        mean, low, high = by_epoch.mean(), by_epoch.min(), by_epoch.max()
        ax.plot(mean.index, mean.values, color=color(variant), label=f"{label(variant)} (n={n})")
        ax.fill_between(mean.index, low.values, high.values, color=color(variant), alpha=0.2, linewidth=0)
    ax.set(yscale="log", xlabel="epoch", ylabel="training loss (NLL)", title=title)
    plain = matplotlib_ticker().FormatStrFormatter("%.3g")  # 2 digits repeat labels on a narrow range
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.legend(fontsize=8)
    return _save(fig, path)
