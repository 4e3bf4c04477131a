"""``symzoo info``: what a stored zoo holds, as a short text report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from symzoo.zoo.models import describe_fixed_structure
from symzoo.zoo.plan import PAPER_TABLE8, draw
from symzoo.zoo.store import Zoo

LR_WD_STRATA = 4  # quartiles of lr x wd under the config's distributions


def _size(path: Path) -> str:
    n = float(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def lr_wd_edges(dists: dict, strata: int = LR_WD_STRATA, draws: int = 20_000) -> np.ndarray:
    """Inner quantiles of lr x wd under the config's hyperparameter distributions (a seeded Monte Carlo sample):
    the edges of ``strata`` strata holding equal shares of the population of draws."""
    dists = {**PAPER_TABLE8, **dists}
    rng = np.random.default_rng(0)
    x = np.array([draw(dists["lr"], rng) * draw(dists["weight_decay"], rng) for _ in range(draws)])
    return np.quantile(x, np.linspace(0, 1, strata + 1)[1:-1])


def stratified_mean(values: np.ndarray, lr_wd: np.ndarray, edges: np.ndarray) -> float:
    """Mean of the per-stratum means over strata of equal population share (``lr_wd_edges``).

    Accuracy collapses where lr x wd is large (docs/paper.md §2), so a few dozen draws that happen to over- or
    under-sample that corner move the plain mean by points; reweighting each stratum to its population share
    removes that part of the noise. NaN when a stratum holds no network; the plain mean when lr x wd is fixed.
    """
    values, lr_wd = np.asarray(values, np.float64), np.asarray(lr_wd, np.float64)
    if len(np.unique(edges)) < len(edges):
        return float(values.mean()) if len(values) else math.nan
    strata = np.searchsorted(edges, lr_wd)
    means = [values[strata == s].mean() if (strata == s).any() else math.nan for s in range(len(edges) + 1)]
    return float(np.mean(means))


def summarise_test_accuracy(frame: pd.DataFrame, dists: dict) -> pd.DataFrame:
    """Per variant: finished networks' test accuracy (count, mean, median, std) and the stratified mean."""
    ok = frame[frame["status"] == "ok"]
    edges = lr_wd_edges(dists)
    summary = ok.groupby("variant")["test_acc"].agg(["count", "mean", "median", "std", "min", "max"])
    summary["stratified_mean"] = [
        stratified_mean(g["test_acc"], g["lr"] * g["weight_decay"], edges) for _, g in ok.groupby("variant")
    ]
    return summary.round(4)


IMPORTED_KEEPS = {  # what each source kept, for the line that says a zoo was imported
    "authors": "final weights and test accuracy as the source stored them; no initial weights, losses, history or "
    "seeds",
    "small-cnn-zoo": "every checkpoint's weights, the final train/test metrics; the source's other columns per "
    "network in source.parquet; no history or seeds",
    "dwsnets": "each INR's final weights, its image's class and the source's train / val / test (splits.parquet); "
    "no initial weights, fit quality or seeds; the image itself where symzoo exported the zoo (images.csv)",
}


def describe(zoo: Zoo, checksums_verified: bool = False) -> str:
    """The report for an opened zoo (``Zoo.complete`` decides "complete"); the first line says how far the shards
    were checked (footers always, sha256 on --verify)."""
    m, cfg, frame = zoo.manifest, zoo.config, zoo.frame
    planned = cfg["networks"] * cfg["replicates"] * len(cfg["variants"])
    checked = "sha256 verified against the manifest" if checksums_verified else "footers checked; --verify for sha256"
    lines = [
        f"zoo {cfg['name']} at {zoo.path}: {len(frame)} of {planned} networks, "
        f"{'complete' if zoo.complete else 'incomplete'}; {len(zoo.shards)} of {m['n_shards']} shards ({checked})",
        f"  {cfg['model']['arch']} on {cfg['data']['name']} {tuple(m['in_shape'])}, {zoo.n_params} parameters "
        f"({', '.join(f'{v}: {lay.n_trainable} trainable' for v, lay in zoo.layouts.items())})",
        f"  config hash {m['config_hash']}, data {m['dataset_fingerprint']}, asym seed {m['asym_seed']}, "
        f"symzoo {m['symzoo_version']}",
        f"  {describe_fixed_structure(cfg)}",
        f"  size on disk {_size(zoo.path)}",
    ]
    imported = cfg.get("imported")
    if imported:
        lines.insert(
            1,
            f"  imported (`symzoo import {imported['format']}`) from {imported['source']}: "
            + IMPORTED_KEEPS.get(imported["format"], "what the source stored"),
        )
    if len(frame):
        counts = frame.pivot_table(index="variant", columns="status", values="model_id", aggfunc="count", fill_value=0)
        lines += ["", "networks by variant and status:", counts.to_string()]
        ok = frame[frame["status"] == "ok"]
        train = ok.groupby("variant")["train_acc"].agg(["mean", "std"]).round(4)
        measured = ok["train_acc"].notna().any()
        how = (
            "the last epoch's sampled networks on augmented batches"
            if zoo.bayesian
            else "un-augmented, the whole training set"
        )
        if measured:
            lines += ["", f"train accuracy of finished networks ({how}):", train.to_string()]
        if zoo.bayesian:
            elrg = cfg["training"]["elrg"]
            ece = ok.groupby("variant")["test_ece"].agg(["mean", "std"]).round(4)
            lines += [
                "",
                f"Bayesian (training.method elrg: rank-{elrg['rank']} posterior, {elrg['test_samples']} test "
                "samples); test ECE of the posterior predictive:",
                ece.to_string(),
            ]
        if cfg.get("task") == "inr":
            fit = ok.groupby("variant")["psnr"].describe()[["count", "mean", "std", "min", "max"]].round(2)
            lines += ["", "INR fits of finished networks: PSNR (dB) on their own image:", fit.to_string()]
            secs = frame.groupby("variant")["seconds"].mean().round(3)
            return "\n".join(lines + ["", "mean fitting seconds per network (fitted in packs):", secs.to_string()])
        test = summarise_test_accuracy(frame, cfg["hyperparameters"])
        lines += [
            "",
            f"test accuracy of finished networks (stratified_mean: the mean over {LR_WD_STRATA} strata of lr x wd, "
            "each its population share under the config's distributions; NaN while a stratum is empty):",
            test.to_string(),
        ]
        secs = frame.groupby("variant")["seconds"].mean().round(2)
        if secs.notna().any():
            lines += ["", "mean training seconds per network:", secs.to_string()]
    return "\n".join(lines)
