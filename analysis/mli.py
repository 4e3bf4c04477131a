"""Monotonic linear interpolation (paper Table 4): curves for a group of networks, per-network statistics, and the
per-variant table with 95% intervals, Fisher's exact and Welch's t-tests. Pure functions: a GPU box without Ray
calls ``mli_curves`` directly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch

from symzoo.analysis.landscape import evaluate_flat, interpolate, mli_stats
from symzoo.analysis.naming import in_paper_order, label
from symzoo.analysis.paper import TABLE4
from symzoo.analysis.payloads import finite_rows, unevaluated_rows, unit_weights
from symzoo.analysis.stats import ci, fisher_exact, mean_ci, mean_std, pm, welch_t, wilson_ci
from symzoo.analysis.verdicts import Verdict, outcome_of
from symzoo.zoo.augment import AugmentConfig
from symzoo.zoo.data import Dataset
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build_configured, gates_per_sample
from symzoo.zoo.packed import pack_buffers

MEASUREMENTS = {
    "clean": "clean: the un-augmented training set in a fixed order (deterministic)",
    "augmented": "augmented: flip / translate / cutout with fresh draws and order at every alpha, full batches "
    "only, as the authors' code measured it (seeded per network: reruns repeat the numbers)",
}
METRICS = ("delta", "monotonic", "local_convexity", "global_convexity", "global_convexity_authors")
METRIC_LABELS = {
    "delta": "Delta (max rise)",
    "monotonic": "monotonic",
    "local_convexity": "local convexity",
    "global_convexity": "global convexity, as defined",
    "global_convexity_authors": "global convexity, as in the authors' code",
}


def mli_curves(
    networks: pd.DataFrame,
    init: np.ndarray,
    final: np.ndarray,
    cfg: dict,
    data: Dataset,
    n_alphas: int,
    measurements: list[str],
    batch_size: int,
    networks_per_pack: int = 1,
) -> pd.DataFrame:
    """Loss and accuracy along the line from each network's initial to its final weights.

    ``networks``: rows of one variant (model_id, variant, sample, seed, label_smoothing); ``init``/``final``: their flat
    weights ``(N, P)``. The loss is label-smoothed with each network's own smoothing. The alphas of
    ``networks_per_pack`` networks are evaluated as one packed computation on ``data``'s device.
    """
    device = data.x_train.device
    variant = networks["variant"].iloc[0]
    own_gates = gates_per_sample(cfg, variant)
    first = int(networks["sample"].iloc[0])
    template = build_configured(cfg, variant, data.in_shape, data.num_classes, sample=first).to(device)
    layout = ParamLayout.from_model(template)  # the zoo's layout for this variant, rebuilt from the same seed
    alphas = torch.linspace(0, 1, n_alphas)
    aug = AugmentConfig(**cfg["training"]["augment"])
    rows = []
    for start in range(0, len(networks), networks_per_pack):
        part = networks.iloc[start : start + networks_per_pack]
        w0 = torch.as_tensor(np.array(init[start : start + len(part)]), device=device)
        w1 = torch.as_tensor(np.array(final[start : start + len(part)]), device=device)
        flats = interpolate(w0, w1, alphas.to(device))
        smoothing = torch.tensor(part["label_smoothing"].to_numpy(), dtype=torch.float32).repeat_interleave(n_alphas)
        buffers = None  # the template's fixed structure, unless each network has its own F
        if own_gates:
            own = [build_configured(cfg, variant, data.in_shape, data.num_classes, sample=s) for s in part["sample"]]
            buffers = {n: t.to(device) for n, t in pack_buffers(own, repeats=n_alphas)[0].items()}
        for measurement in measurements:
            if measurement == "clean":
                loss, acc = evaluate_flat(
                    template, layout, flats, data, "train", smoothing, batch_size, buffers=buffers
                )
            else:
                seeds = [(int(s), a) for s in part["seed"] for a in range(n_alphas)]
                loss, acc = evaluate_flat(
                    template,
                    layout,
                    flats,
                    data,
                    "train",
                    smoothing,
                    cfg["training"]["batch_size"],
                    aug,
                    seeds,
                    buffers=buffers,
                )
            for j, model_id in enumerate(part["model_id"]):
                for a in range(n_alphas):
                    k = j * n_alphas + a
                    rows.append((int(model_id), variant, measurement, float(alphas[a]), float(loss[k]), float(acc[k])))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def measurements_for(loss: str) -> list[str]:
    """The measurements an ``mli.loss`` option asks for."""
    return list(MEASUREMENTS) if loss == "both" else [loss]


def mli_payloads(networks: pd.DataFrame, zoo, loss: str, networks_per_unit: int) -> list[dict]:
    """The stage's work units as plain data: groups of ``networks_per_unit`` networks of one variant, for each
    measurement, with where their weights lie in ``zoo`` (``rows``: read by whoever evaluates the unit) and a key
    that names the unit's file. The same keys wherever they are evaluated (Ray tasks, or a machine without Ray)."""
    payloads = []
    per = networks_per_unit
    for variant, g in networks.groupby("variant", sort=False):
        g = g.sort_values("model_id")
        for start in range(0, len(g), per):
            part = g.iloc[start : start + per][["model_id", "variant", "sample", "seed", "label_smoothing"]]
            rows = zoo.stored_rows(model_ids=part["model_id"].to_numpy())
            for m in measurements_for(loss):
                key = f"{m}-{variant}-{part['model_id'].iloc[0]}-{part['model_id'].iloc[-1]}-{len(part)}"
                payloads.append({"key": key, "measurement": m, "networks": part.reset_index(drop=True), "rows": rows})
    return payloads


CURVE_COLUMNS = ["model_id", "variant", "measurement", "alpha", "loss", "accuracy"]


def evaluate_payload(payload: dict, cfg: dict, data: Dataset, alphas: int, batch_size: int) -> pd.DataFrame:
    """One unit's curves on ``data``'s device: 8 networks' lines per packed computation on a GPU, one on a CPU.
    A network whose stored weights are not finite is not evaluated; the unit records it (``unevaluated_rows``)."""
    weights = unit_weights(payload, ("init", "final"))
    finite = finite_rows(weights)
    networks = payload["networks"]
    parts = []
    if finite.any():
        parts.append(
            mli_curves(
                networks[finite].reset_index(drop=True),
                weights["init"][finite],
                weights["final"][finite],
                cfg,
                data,
                alphas,
                [payload["measurement"]],
                batch_size,
                8 if data.x_train.device.type == "cuda" else 1,
            )
        )
    if not finite.all():
        marks = networks[~finite].assign(measurement=payload["measurement"])
        parts.append(unevaluated_rows(marks, CURVE_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def per_network_stats(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (model_id, measurement) with the five statistics."""
    rows = []
    for (model_id, variant, measurement), g in curves.groupby(["model_id", "variant", "measurement"], sort=False):
        g = g.sort_values("alpha")
        s = mli_stats(g["alpha"].to_numpy(), g["loss"].to_numpy())
        rows.append({"model_id": model_id, "variant": variant, "measurement": measurement, **s.__dict__})
    return pd.DataFrame(rows)


def mli_table(stats: pd.DataFrame, variants: list[str], measurement: str, with_paper: bool) -> str:
    """Table 4's layout for one measurement: a row per variant (the paper's order), a column per metric (95%
    intervals: Student t for means, Wilson for the monotonic share), the paper's rows below (marked as another
    setting unless the zoo is the paper's), then the tests between every pair of variants (Fisher's exact test for
    "monotonic", a yes/no outcome per network; Welch's t-test for the others) and a verdict per paper direction.
    A metric with one value for every network tests nothing on this zoo: it is named once instead."""
    s = stats[stats["measurement"] == measurement]
    variants = in_paper_order(variants)
    constant = [m for m in METRICS if s[m].astype(float).nunique() == 1]
    header = ["variant", "networks", *[METRIC_LABELS[m] for m in METRICS]]
    lines = [f"### {MEASUREMENTS[measurement]}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in variants:
        cells = [label(v), str(int((s["variant"] == v).sum()))]
        for metric in METRICS:
            x = s.loc[s["variant"] == v, metric].astype(float)
            if metric == "monotonic":
                k, n = int(x.sum()), len(x)
                cells.append(f"{100 * k / n:.1f}%{ci(*wilson_ci(k, n), percent=True)}" if n else "n/a")
            else:
                mean, std, n = mean_std(x)
                cells.append(pm(mean, std, n=n) + ("" if metric in constant else ci(*mean_ci(x))))
        lines.append("| " + " | ".join(cells) + " |")
    setting = "" if with_paper else ", another setting"
    for v in (v for v in variants if v in TABLE4["delta"]):
        cells = [f"paper: {label(v)} (CIFAR-10 ResNet8{setting})", "300"]
        for metric in METRICS:
            mean, std = TABLE4["global_convexity" if metric == "global_convexity_authors" else metric][v]
            cells.append(f"{100 * mean:.1f}%" if metric == "monotonic" else pm(mean, std))
        lines.append("| " + " | ".join(cells) + " |")
    pairs = list(itertools.combinations(variants, 2))
    lines += ["", "Two-sided tests between variants (monotonic: Fisher's exact test; the rest: Welch's t-test):", ""]
    lines += ["| metric | " + " | ".join(f"{label(a)} vs {label(b)}" for a, b in pairs) + " |"]
    lines.append("|" + "---|" * (1 + len(pairs)))
    for metric in (m for m in METRICS if m not in constant):
        cells = [METRIC_LABELS[metric]]
        for a, b in pairs:
            p, stat = pair_test(s, metric, a, b)
            cells.append("n/a" if not np.isfinite(p) else (f"{stat}, p = {p:.2g}" if stat else f"Fisher p = {p:.2g}"))
        lines.append("| " + " | ".join(cells) + " |")
    if constant:
        values = ", ".join(f"{METRIC_LABELS[m]} ({float(s[m].iloc[0]):.3f})" for m in constant)
        lines += ["", f"Uninformative on this zoo, so not tested: every network of every variant has {values}."]
    verdicts = mli_verdicts(s, variants, constant, measurement)
    if verdicts:
        lines += ["", *[f"- verdict ({measurement}): {v.text}" for v in verdicts]]
    return "\n".join(lines) + "\n"


def pair_test(s: pd.DataFrame, metric: str, a: str, b: str) -> tuple[float, str]:
    """p-value of the two-sided test of ``metric`` between variants a and b, and Welch's statistic ("" for
    Fisher's exact test of the monotonic share)."""
    xa, xb = (s.loc[s["variant"] == v, metric].astype(float) for v in (a, b))
    if metric == "monotonic":
        return fisher_exact(int(xa.sum()), len(xa), int(xb.sum()), len(xb)), ""
    t, p = welch_t(xa, xb)
    return p, f"t = {t:.2f}"


def mli_verdicts(s: pd.DataFrame, variants: list[str], constant: list[str], measurement: str = "") -> list[Verdict]:
    """The paper's directions (more monotonic, smaller Delta, more locally convex as symmetries go: standard, then
    σ-Asym, then W-Asym), each pair of variants present checked: reproduced where ours point the same way at
    p < 0.05."""
    out = []
    for metric in ("monotonic", "delta", "local_convexity"):
        if metric in constant:
            continue
        for a, b in itertools.combinations([v for v in variants if v in TABLE4[metric]], 2):
            ours = {v: float(s.loc[s["variant"] == v, metric].astype(float).mean()) for v in (a, b)}
            paper = {v: TABLE4[metric][v][0] for v in (a, b)}
            if paper[a] == paper[b] or not all(np.isfinite(list(ours.values()))):
                continue
            same = (ours[b] - ours[a]) * (paper[b] - paper[a]) > 0
            p, _ = pair_test(s, metric, a, b)
            outcome = "direction reproduced" if same else "direction NOT reproduced"
            if same and not (np.isfinite(p) and p < 0.05):
                outcome = "same direction, not significant"

            def fmt(x: float, metric: str = metric) -> str:
                return f"{100 * x:.1f}%" if metric == "monotonic" else f"{x:.3f}"

            word = "higher" if paper[b] > paper[a] else "lower"
            text = (
                f"{METRIC_LABELS[metric]}: {label(b)} {fmt(ours[b])} vs {label(a)} {fmt(ours[a])} (p = {p:.2g}); "
                f"paper: {label(b)} {word} ({fmt(paper[b])} vs {fmt(paper[a])}): {outcome}"
            )
            where = f" ({measurement} loss)" if measurement else ""
            out.append(
                Verdict(
                    f"MLI {METRIC_LABELS[metric]}{where}: {label(b)} {word} than {label(a)}",
                    f"{fmt(paper[b])} vs {fmt(paper[a])}",
                    f"{fmt(ours[b])} vs {fmt(ours[a])}",
                    "Fisher exact" if metric == "monotonic" else "Welch",
                    p,
                    outcome_of(same, p),
                    text=text,
                )
            )
    return out


def mli_verdict_records(stats: pd.DataFrame, variants: list[str], measurement: str) -> list[Verdict]:
    """``mli_verdicts`` of one measurement, as its table computes them."""
    s = stats[stats["measurement"] == measurement]
    constant = [m for m in METRICS if s[m].astype(float).nunique() == 1]
    return mli_verdicts(s, in_paper_order(variants), constant, measurement)
