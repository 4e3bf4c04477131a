"""Full-batch node classification for the GNN zoos (docs/paper.md §7), the authors' ``gnn/main_arxiv.py`` recipe:
every epoch is one step on the whole graph (loss on the training nodes), so the only randomness is the init.

BatchNorm's statistics are not weights: on a full graph they are a function of the weights, and
``estimate_batchnorm`` recomputes them (one pass over the whole graph, the authors' re-estimation). A trained network
is evaluated, stored and rebuilt with the statistics of its final weights, so interpolation with re-estimation
(``symzoo lmc``) gives each endpoint exactly its own loss.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
from torch import nn

from symzoo.zoo.graph import Graph
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.plan import HParams
from symzoo.zoo.train import Recipe, TrainResult, lr_factor, make_optimizer, smoothed_cross_entropy


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def estimate_batchnorm(model: nn.Module, graph: Graph) -> None:
    """Set every BatchNorm's running statistics to those of one full-graph pass under the current weights (a
    cumulative average over one batch: the batch's mean and unbiased variance); leaves the model in eval mode."""
    norms = batchnorms(model)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    model(graph.features, graph.aggregate)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def graph_metrics(model: nn.Module, graph: Graph, splits: Iterable[str] = ("train", "test")) -> dict[str, tuple]:
    """Plain cross-entropy and accuracy per split, in eval mode (the model's running statistics as they are)."""
    model.eval()
    logits = model(graph.features, graph.aggregate).float()
    out = {}
    for split in splits:
        idx, y = graph.nodes(split)
        out[split] = (
            float(torch.nn.functional.cross_entropy(logits[idx], y)),
            float((logits[idx].argmax(-1) == y).float().mean()),
        )
    return out


def train_graph_network(
    model: nn.Module,
    graph: Graph,
    hp: HParams,
    recipe: Recipe,
    checkpoint_epochs: Iterable[int] = (),
) -> TrainResult:
    """Train ``model`` in place on ``graph`` (already on the model's device): ``hp.epochs`` full-batch steps of the
    recipe's optimizer with ``recipe.schedule`` over epochs (``warmup_constant``: the authors' linear warm-up, then
    constant); then BatchNorm re-estimated and train/test metrics. A non-finite loss ends it as "diverged"."""
    start = time.perf_counter()
    layout = ParamLayout.from_model(model)
    optimizer = make_optimizer(model, hp, recipe)
    warmup = round(recipe.warmup_epochs)
    train_idx, train_y = graph.nodes("train")
    keep = set(checkpoint_epochs)
    history: dict[str, list[float]] = {"train_loss": [], "train_acc": []}
    checkpoints: dict[int, torch.Tensor] = {}
    status, reason, epoch = "ok", "", 0
    for epoch in range(1, hp.epochs + 1):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = hp.lr * lr_factor(epoch - 1, hp.epochs, warmup, recipe.schedule)
        logits = model(graph.features, graph.aggregate)[train_idx]
        loss = smoothed_cross_entropy(logits, train_y, hp.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history["train_loss"].append(float(loss.detach()))
        history["train_acc"].append(float((logits.detach().argmax(-1) == train_y).float().mean()))
        if not torch.isfinite(loss):
            status, reason = "diverged", f"non-finite training loss in epoch {epoch}"
            break
        if epoch in keep:
            checkpoints[epoch] = layout.flatten(model).cpu()
    metrics = [float("nan")] * 4
    if status == "ok":
        estimate_batchnorm(model, graph)
        m = graph_metrics(model, graph)
        metrics = [*m["train"], *m["test"]]
    model.eval()
    return TrainResult(
        status,
        reason,
        epoch,
        *metrics,
        history=history,
        seconds=time.perf_counter() - start,
        final_weights=layout.flatten(model).cpu(),
        checkpoints=checkpoints,
    )
