"""Plots of a zoo's metadata: what a researcher looks at first after `symzoo generate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_accuracy(frame: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Test accuracy per variant (histograms) and against the learning rate (log scale), finished networks only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
