"""What one worker does with one shard of a zoo: build, train and record its networks; no Ray in here.

``pipelines.generate`` sends shards to Ray workers, which call ``train_shard_table``; a machine without Ray (a
benchmark box, a debugger) can call it directly and gets the very rows a zoo stores.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import torch

from symzoo.zoo.augment import AugmentConfig
from symzoo.zoo.bayes import posterior_size
from symzoo.zoo.bayes_train import ElrgSettings, train_elrg
from symzoo.zoo.config import config_hash
from symzoo.zoo.data import Dataset
from symzoo.zoo.graph_train import train_graph_network
from symzoo.zoo.inr_fit import fit_inr_group
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build_configured
from symzoo.zoo.packed import MIN_COMPILED_PACK, group_into_packs, rows_to_keep, train_pack
from symzoo.zoo.plan import NetSpec, plan_configured
from symzoo.zoo.sources import load_configured
from symzoo.zoo.store import BAYES_HISTORY_FIELDS, HISTORY_FIELDS, POSTERIOR_COLUMN, flat_numpy, rows_to_table
from symzoo.zoo.train import Recipe, train_network


def recipe_from(cfg: dict, device: torch.device) -> Recipe:
    t = cfg["training"]
    return Recipe(
        batch_size=t["batch_size"],
        warmup_epochs=t["warmup_epochs"],
        schedule=t["schedule"],
        optimizer=t["optimizer"],
        momentum=t["momentum"],
        augment=AugmentConfig(**t["augment"]),
        amp=t["amp"],
        compile=resolve_compile(t, device),
    )


def dataset_from(cfg: dict) -> Dataset:
    return load_configured(cfg["data"])


def layouts_for(cfg: dict, data: Dataset) -> dict[str, ParamLayout]:
    """One layout per variant: same tensors and offsets, different trainable entries."""
    return {
        v: ParamLayout.from_model(build_configured(cfg, v, data.in_shape, data.num_classes, sample=0))
        for v in cfg["variants"]
    }


def result_row(cfg: dict, spec: NetSpec, init: torch.Tensor, result: Any | None, error: str = "") -> dict:
    """One Parquet row; a network whose training raised is kept with status "failed" and its reason."""
    row = spec.row() | {"arch": cfg["model"]["arch"], "dataset": cfg["data"]["name"], "weights_init": flat_numpy(init)}
    if result is None:
        return row | {
            "status": "failed",
            "reason": error,
            "epochs_done": 0,
            **{f: [] for f in HISTORY_FIELDS + BAYES_HISTORY_FIELDS},
            "test_ece": float("nan"),
            "seconds": 0.0,
            **dict.fromkeys(["train_loss", "train_acc", "test_loss", "test_acc"], float("nan")),
        }
    row |= {
        k: getattr(result, k)
        for k in ("status", "reason", "epochs_done", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
    }
    row |= {f"history_{k}": v for k, v in result.history.items()}
    row["weights_final"] = flat_numpy(result.final_weights)
    row |= result.extra
    if result.posterior is not None:
        row |= {POSTERIOR_COLUMN: flat_numpy(result.posterior), "test_ece": result.test_ece}
    for epoch, flat in result.checkpoints.items():
        row[f"weights_epoch_{epoch}"] = flat_numpy(flat)
    return row


AUTO_PACK_SIZE_GPU = 32  # saturates an H100: K=128 trains no faster with 4x the memory (bench/RESULTS.md)


# INRs per pack where training.pack_size is auto: on this 2-core CPU 16 fitted fastest (2,427 INR-steps/s against
# 1,592 at 256; bench/RESULTS.md section 14); a GPU wants many more
AUTO_INR_PACK = {"cpu": 16, "cuda": 1024}


def resolve_pack_size(training: dict, device: torch.device, inr: bool = False) -> int:
    """``auto``: classifiers one at a time on a CPU (packing is slower there, bench/RESULTS.md) or with SGD (packed
    training implements AdamW), packs on a GPU; INRs (``inr``) always in packs (``AUTO_INR_PACK``)."""
    if training["pack_size"] != "auto":
        return int(training["pack_size"])
    if inr:
        return AUTO_INR_PACK["cuda" if device.type == "cuda" else "cpu"]
    return AUTO_PACK_SIZE_GPU if device.type == "cuda" and training["optimizer"] == "adamw" else 1


def resolve_compile(training: dict, device: torch.device) -> bool:
    """``auto``: compile packed training on a GPU (1.65x on an H100, bench/RESULTS.md); one network at a time
    and CPUs stay eager (compiling costs more than it saves there)."""
    if training["compile"] != "auto":
        return bool(training["compile"])
    return device.type == "cuda" and resolve_pack_size(training, device) > 1


def train_specs(specs: list[NetSpec], cfg: dict, data: Dataset, on_progress=None) -> list[dict]:
    """Train networks one by one, or packed when ``training.pack_size > 1``; rows come back in plan order.

    A pack that runs out of GPU memory is retried as packs of half its size, and the shard's later packs start
    at the size that fitted: a network trains in a pack as it would alone, so the pack size changes no result.
    """
    device = data.x_train.device
    recipe = recipe_from(cfg, device)
    pack_size = resolve_pack_size(cfg["training"], device, cfg.get("task") == "inr")  # INRs: packs of one variant
    fits = pack_size  # the largest pack size that has not run out of memory in this shard
    rows: dict[int, dict] = {}
    pending = group_into_packs(specs, pack_size)
    while pending:
        group = pending.pop(0)
        if len(group) > fits:
            pending[:0] = [group[i : i + fits] for i in range(0, len(group), fits)]
            continue
        group_rows = train_group(group, cfg, data, recipe, packed=pack_size > 1)
        if group_rows is None:
            fits = len(group) // 2
            print(f"symzoo: a pack of {len(group)} ran out of GPU memory; retrying in packs of {fits}", file=sys.stderr)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the failed pack's tensors went with its frames
            pending.insert(0, group)
            continue
        rows |= group_rows
        if on_progress:
            on_progress(len(rows))
    return [rows[s.model_id] for s in specs]


def train_group(group: list[NetSpec], cfg: dict, data: Dataset, recipe: Recipe, packed: bool) -> dict[int, dict] | None:
    """The rows of one pack (or one network); None when a pack of several ran out of GPU memory, for the caller
    to retry smaller. Any other exception becomes "failed" rows and never ends the shard."""
    device = data.x_train.device
    checkpoints = cfg["training"]["checkpoint_epochs"]
    shape, classes = data.in_shape, data.num_classes
    models = [build_configured(cfg, s.variant, shape, classes, s.seed, s.sample).to(device) for s in group]
    layout = ParamLayout.from_model(models[0])
    inits = [layout.flatten(m).cpu() for m in models]
    try:
        if cfg.get("task") == "inr":  # every network fits its own image, all at once
            results = fit_inr_group(models, group, data)
        elif packed:
            hparams, seeds = [s.hparams for s in group], [s.seed for s in group]
            results = train_pack(models, data, hparams, seeds, recipe, checkpoints)
        elif cfg["model"]["arch"] == "gnn":  # full-batch on the graph (data is a zoo.graph.Graph)
            results = [train_graph_network(models[0], data, group[0].hparams, recipe, checkpoints)]
        elif cfg["training"].get("method", "standard") == "elrg":
            settings = ElrgSettings.from_config(cfg["training"]["elrg"])
            results = [train_elrg(models[0], data, group[0].hparams, recipe, settings, group[0].seed, checkpoints)]
        else:
            results = [train_network(models[0], data, group[0].hparams, recipe, group[0].seed, checkpoints)]
    except Exception as e:
        if isinstance(e, torch.cuda.OutOfMemoryError) and len(group) > 1:
            return None
        traceback.print_exc(file=sys.stderr)
        error = f"{type(e).__name__}: {e}"[:500]
        return {s.model_id: result_row(cfg, s, init, None, error) for s, init in zip(group, inits, strict=True)}
    return {s.model_id: result_row(cfg, s, init, r) for s, init, r in zip(group, inits, results, strict=True)}


def shard_specs(cfg: dict) -> list[list[NetSpec]]:
    """The zoo's networks in shards of neighbouring epoch counts: a pack runs as long as its longest network, so
    mixing 10- and 40-epoch networks in one shard left GPU packs half empty (bench/RESULTS.md). Model ids keep
    plan order; only which shard holds a network follows its length."""
    specs = plan_configured(cfg)
    specs = sorted(specs, key=lambda s: s.hparams.epochs)  # stable: plan order among equal lengths
    per = cfg["execution"]["networks_per_shard"]
    return [specs[i : i + per] for i in range(0, len(specs), per)]


def compiled_pack_sizes(cfg: dict, pack_size: int) -> list[int]:
    """The pack sizes a compiled worker builds a graph for (per variant; each graph once per process): every
    pack's starting size and the sizes it shrinks to as its networks finish on schedule (``rows_to_keep``)."""
    sizes = set()
    for shard in shard_specs(cfg):
        for group in group_into_packs(shard, pack_size):
            epochs = [s.hparams.epochs for s in group]
            rows = list(range(len(group)))
            for ended in sorted(set(epochs)):
                if len(rows) >= MIN_COMPILED_PACK:
                    sizes.add(len(rows))
                keep = rows_to_keep([epochs[r] > ended for r in rows], fixed_sizes=True)
                rows = [rows[i] for i in keep]
    return sorted(sizes)


def training_line(cfg: dict) -> str:
    """How each worker will train: packs and compilation follow the device the config asks for."""
    gpu = cfg["execution"]["gpus_per_task"] > 0
    device = torch.device("cuda" if gpu else "cpu")
    pack = resolve_pack_size(cfg["training"], device, cfg.get("task") == "inr")
    how = f"packs of {pack}" if pack > 1 else "one network at a time"
    compiled = ""
    if resolve_compile(cfg["training"], device):
        sizes = compiled_pack_sizes(cfg, pack)
        graphs = len(sizes) * len(cfg["variants"])
        compiled = f", compiled: up to {graphs} graphs per worker (variant x pack size {sizes}), ~34 s each on an H100"
    return f"training on {'GPU' if gpu else 'CPU'} workers: {cfg['training']['optimizer']}, {how}{compiled}"


def train_shard_table(
    spec_rows: list[NetSpec],
    cfg: dict,
    data: Dataset,
    layouts_json: dict,
    on_progress: Callable[[int], None] | None = None,
) -> pa.Table:
    """Train one shard's networks on ``data``'s device; returns the shard as the Arrow table a zoo stores."""
    rows = train_specs(spec_rows, cfg, data, on_progress)
    posterior = posterior_size_of(cfg, data) if cfg["training"].get("method", "standard") == "elrg" else None
    checkpoints, inr = cfg["training"]["checkpoint_epochs"], cfg.get("task") == "inr"
    return rows_to_table(rows, layouts_json, checkpoints, config_hash(cfg), posterior, inr)


def posterior_size_of(cfg: dict, data: Dataset) -> int:
    """A Bayesian zoo's stored posterior width (the same for every variant: fixed entries store zeros)."""
    model = build_configured(cfg, cfg["variants"][0], data.in_shape, data.num_classes, sample=0)
    return posterior_size(model, cfg["training"]["elrg"]["rank"])
