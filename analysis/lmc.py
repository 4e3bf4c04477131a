"""Linear mode connectivity (paper Table 1): test loss along the line between two trained replicates, with Git
Re-Basin weight matching as the baseline for standard networks. Pure functions; no Ray.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from symzoo.analysis.landscape import evaluate_flat, interpolate, midpoint_barrier
from symzoo.analysis.naming import METHOD_LABELS
from symzoo.analysis.paper import TABLE1
from symzoo.analysis.rebasin import activation_rebasin, rebasin
from symzoo.analysis.stats import ci, mean_ci, mean_std, pm, welch_t
from symzoo.analysis.verdicts import Verdict, outcome_of
from symzoo.zoo.data import Dataset
from symzoo.zoo.graph import Graph
from symzoo.zoo.graph_train import batchnorms, estimate_batchnorm, graph_metrics
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


CURVE_COLUMNS = ["sample", "variant", "method", "model_a", "model_b", "alpha", "test_loss", "test_acc", "distance"]
# A graph zoo's curves also carry every point's accuracy on the training and validation nodes (Appendix A)
GRAPH_COLUMNS = ["train_acc", "valid_acc"]
MATCHINGS = ("auto", "weights", "activations", "both")
MATCHING_METHODS = {"weights": "standard+rebasin", "activations": "standard+activations"}
BATCHNORM = ("reestimate", "interpolate")
PROBE_IMAGES = 2000  # training images activation matching compares features on (image zoos)


def matching_kinds(cfg: dict, matching: str) -> list[str]:
    """The matchings (weights, activations) a zoo's standard pairs get: ``auto`` is activation matching for GNNs
    (the paper's GNN baseline) and weight matching otherwise (its MLP and ResNet baseline)."""
    if matching == "auto":
        matching = "activations" if cfg["model"]["arch"] == "gnn" else "weights"
    return ["weights", "activations"] if matching == "both" else [matching]


def matching_methods(cfg: dict, matching: str) -> list[str]:
    """The LMC methods (curve names) of ``matching_kinds``."""
    return [MATCHING_METHODS[k] for k in matching_kinds(cfg, matching)]


def lmc_curves(
    pairs: pd.DataFrame,
    final_a: np.ndarray,
    final_b: np.ndarray,
    cfg: dict,
    data: Dataset | Graph,
    n_alphas: int,
    batch_size: int,
    methods: list[str],
    batchnorm: str = "reestimate",
) -> pd.DataFrame:
    """Plain cross-entropy and accuracy on the test set along theta_a -> theta_b for each pair of one variant;
    standard pairs also along theta_a -> P(theta_b), b permuted onto a by each Re-Basin method in ``methods``
    (``standard+rebasin``: weight matching; ``standard+activations``: activation matching). ``distance``: the
    line's length per trainable entry. On a graph every point is evaluated with BatchNorm statistics re-estimated
    (``batchnorm``), or interpolated between the endpoints' own."""
    graph = isinstance(data, Graph)
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
        if variant == "standard" and methods:
            model_a = layout.load_into(build_configured(cfg, variant, shape, classes), wa).to(device)
            model_b = layout.load_into(build_configured(cfg, variant, shape, classes), wb).to(device)
            for method in methods:
                ends[method] = layout.flatten(matched(method, model_a, model_b, data, int(pair.sample))).cpu()
        for method, end in ends.items():
            distance = float((wa - end).norm() / layout.n_trainable)
            if graph:
                points = graph_line(template, layout, wa, end, alphas, data, batchnorm)
            else:
                flats = interpolate(wa.unsqueeze(0), end.unsqueeze(0), alphas).to(device)
                loss, acc = evaluate_flat(template, layout, flats, data, "test", torch.zeros(n_alphas), batch_size)
                points = {"test_loss": loss.tolist(), "test_acc": acc.tolist()}
            for a in range(n_alphas):
                row = {"sample": int(pair.sample), "variant": variant, "method": method}
                row |= {"model_a": int(pair.model_a), "model_b": int(pair.model_b), "alpha": float(alphas[a])}
                rows.append(row | {k: float(v[a]) for k, v in points.items()} | {"distance": distance})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS + (GRAPH_COLUMNS if graph else []))


def matched(method: str, model_a: nn.Module, model_b: nn.Module, data: Dataset | Graph, seed: int) -> dict:
    """``model_b``'s parameters permuted onto ``model_a`` by ``method``'s matching."""
    if method == "standard+rebasin":
        return rebasin(model_a, model_b, seed=seed)
    if isinstance(data, Graph):  # the whole graph, each network with its own BatchNorm statistics
        for model in (model_a, model_b):
            estimate_batchnorm(model, data)
        return activation_rebasin(model_a, model_b, [(data.features, data.aggregate)])
    x = data.normalize(data.x_train[:PROBE_IMAGES])
    return activation_rebasin(model_a, model_b, [(x[i : i + 500],) for i in range(0, len(x), 500)])


@torch.no_grad()
def graph_line(
    template: nn.Module,
    layout: ParamLayout,
    start: torch.Tensor,
    end: torch.Tensor,
    alphas: torch.Tensor,
    graph: Graph,
    batchnorm: str,
) -> dict[str, list[float]]:
    """Test loss and accuracy, and train / validation accuracy, of a GNN at each point of a line. ``reestimate``:
    BatchNorm statistics of each point's own weights (the authors' interp.py); ``interpolate``: the endpoints'
    statistics interpolated like the weights (what a plain state-dict interpolation does)."""
    model = copy.deepcopy(template)
    ends_stats = []
    if batchnorm == "interpolate":
        for flat in (start, end):
            estimate_batchnorm(layout.load_into(model, flat), graph)
            ends_stats.append([(m.running_mean.clone(), m.running_var.clone()) for m in batchnorms(model)])
    out: dict[str, list[float]] = {k: [] for k in ("test_loss", "test_acc", "train_acc", "valid_acc")}
    for a in alphas.tolist():
        layout.load_into(model, (1 - a) * start + a * end)
        if batchnorm == "reestimate":
            estimate_batchnorm(model, graph)
        else:
            for m, (sa, sb) in zip(batchnorms(model), zip(*ends_stats, strict=True), strict=True):
                m.running_mean.copy_((1 - a) * sa[0] + a * sb[0])
                m.running_var.copy_((1 - a) * sa[1] + a * sb[1])
        metrics = graph_metrics(model, graph, ("train", "valid", "test"))
        out["test_loss"].append(metrics["test"][0])
        out["test_acc"].append(metrics["test"][1])
        out["train_acc"].append(metrics["train"][1])
        out["valid_acc"].append(metrics["valid"][1])
    return out


def barriers(curves: pd.DataFrame) -> pd.DataFrame:
    """Per pair and method: midpoint test-loss barrier and accuracy drop, and the endpoints' mean test loss and
    accuracy (a small barrier between two weak networks is not the paper's finding)."""
    rows = []
    for (method, sample), g in curves.groupby(["method", "sample"], sort=False):
        g = g.sort_values("alpha")
        a, loss, acc = g["alpha"].to_numpy(), g["test_loss"].to_numpy(), g["test_acc"].to_numpy()
        row = {
            "method": method,
            "sample": sample,
            "loss_barrier": midpoint_barrier(a, loss),
            "acc_drop": -midpoint_barrier(a, acc),
            "endpoint_loss": float((loss[0] + loss[-1]) / 2),
            "endpoint_acc": float((acc[0] + acc[-1]) / 2),
        }
        if "distance" in g:  # curves from before distances were recorded lack it
            row["distance"] = float(g["distance"].iloc[0])
        for column in GRAPH_COLUMNS:  # a graph zoo's endpoints on the training and validation nodes
            if column in g and g[column].notna().all():
                row[f"endpoint_{column}"] = float((g[column].iloc[0] + g[column].iloc[-1]) / 2)
        rows.append(row)
    return pd.DataFrame(rows)


def paper_setting(cfg: dict) -> tuple[str | None, str]:
    """Which row of Table 1 a zoo's setting corresponds to (None: none), and how it is named."""
    arch, data, width = cfg["model"]["arch"], cfg["data"]["name"], cfg["model"]["width"]
    if arch == "mlp" and data == "fashion_mnist":
        return "mlp_mnist", "MLP on Fashion-MNIST (the paper's row: MLP on MNIST, not available offline)"
    if arch == "resnet20" and data == "cifar10" and cfg["data"]["size"] in (None, 32):
        return ("resnet20x8_cifar10" if width == 8 else "resnet20_cifar10"), f"ResNet20 x{width} on CIFAR-10"
    if arch == "gnn":
        return ("gnn_arxiv" if data == "ogbn-arxiv" else None), f"GNN on {data}"
    return None, f"{arch} x{width} on {data}"


def nearest_paper_row(cfg: dict) -> tuple[str, str]:
    """The paper's row to print beside a setting it did not run: its MLP row for MLPs, ResNet20 x1 for ResNets."""
    if cfg["model"]["arch"] == "mlp":
        return "mlp_mnist", "paper: MLP on MNIST (another setting)"
    if cfg["model"]["arch"] == "gnn":
        return "gnn_arxiv", "paper: GNN on ogbn-arXiv (another graph)"
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
    paper = paper_values(row_key)
    lines.append(f"| {row_label} | " + " | ".join(f"{paper[m]:.3f}" if m in paper else "—" for m in methods) + " |")
    lines += ["", "Midpoint test-accuracy drop, and the endpoints' own test loss and accuracy (mean over pairs):", ""]
    lines += ["| | " + " | ".join(METHODS[m] for m in methods) + " |", rule]
    for column, name in (
        ("acc_drop", "accuracy drop"),
        ("endpoint_loss", "endpoint test loss"),
        ("endpoint_acc", "endpoint test accuracy"),
        ("endpoint_train_acc", "endpoint train accuracy"),
        ("endpoint_valid_acc", "endpoint validation accuracy"),
        ("distance", "distance per trainable parameter"),
    ):
        if any(column not in by_method[m] for m in methods):
            continue
        digits = 6 if column == "distance" else 3  # distances per parameter are ~1e-4 (the paper's .000174)
        row = [pm(*mean_std(by_method[m][column])[:2], digits, n=mean_std(by_method[m][column])[2]) for m in methods]
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
    return lmc_verdicts(by_method, paper_values(paper_row(cfg)[0]))


def paper_values(row_key: str) -> dict[str, float]:
    """Table 1's row as method -> barrier: its Re-Basin value belongs to weight matching in the MLP and ResNet rows
    and to activation matching in the GNN row (what the authors ran); the other matching has no paper value."""
    standard, matching, sigma, w = TABLE1[row_key]
    method = "standard+activations" if row_key == "gnn_arxiv" else "standard+rebasin"
    return {"standard": standard, method: matching, "sigma_asym": sigma, "w_asym": w}


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
    for m in (m for m in by_method if m != "standard" and m in paper):
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
