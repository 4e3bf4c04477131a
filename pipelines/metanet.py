"""``symzoo metanet``: predict test accuracy from stored weights (paper Table 3) on any stored zoo, or, on an
INR zoo, classify the image each network fits (the INR benchmarks': ``target: class``).

Work units are single runs, one per (variant, metanet, hyperparameter, seed): first the sweep (seed 0, every
grid value), then ``seeds`` fresh runs at the value with the best validation R^2. Each run is a Ray task whose
row lands in ``runs/<key>.parquet``; a rerun trains only the missing ones. The weight matrices are decoded once
per variant and node into a local ``cache/`` (``VariantCache``, a shard at a time) that runs memory-map, so the
driver holds metadata only; where workers cannot reach the zoo (``workers_read``), the driver builds the cache
and hands the matrices to tasks through Ray's object store.

The module imports without Ray (the device machine has none): its Ray tasks are plain functions that the runner
submits, and Ray is imported where the stage runs on it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from symzoo.analysis.inr_tables import classification_table, classification_verdicts
from symzoo.analysis.metanet_inputs import VariantWeights, check_split_sizes, ensure_inputs, split_indices, usable_rows
from symzoo.analysis.metanet_run import RunSpec, grid_for, run_metanet
from symzoo.analysis.metanets import DMC, EQUIVARIANT, FLAT_INPUT, METANETS, PAPER_LRS, PAPER_METANETS
from symzoo.analysis.naming import label
from symzoo.analysis.paper import is_paper_resnet8_zoo
from symzoo.analysis.plots import plot_confusion, plot_inr_fits, plot_lr_sweep, plot_metanet_predictions
from symzoo.analysis.tables import (
    METANET_LABELS,
    equivariant_control,
    metanet_summary,
    metanet_table,
    metanet_verdicts,
)
from symzoo.analysis.verdicts import verdict_frame
from symzoo.analysis.weight_space import WeightSpace
from symzoo.errors import ZooError
from symzoo.pipelines.outputs import remove_stale_temporaries, write_parquet
from symzoo.pipelines.stage_spec import StageOptions, StageResult, StageSpec, check_resources, csv_flag
from symzoo.pipelines.units import WorkUnit
from symzoo.zoo.fields import check_choice, check_int, check_number, fail
from symzoo.zoo.location import atomic_write_bytes, local_scratch
from symzoo.zoo.models import gates_per_sample
from symzoo.zoo.splits import stored_source
from symzoo.zoo.store import Zoo
from symzoo.zoo.symmetry import FlatPermutation, recorded_spec
from symzoo.zoo.weight_cache import VariantCache


@dataclass(frozen=True)
class MetanetOptions(StageOptions):
    metanets: list[str] | None = None  # None: the paper's (PAPER_METANETS), or INR_METANETS on INR zoos
    lrs: list[float] = field(default_factory=lambda: list(PAPER_LRS))
    seeds: int = 5
    epochs: int = 50
    batch_size: int = 128
    weight_decay: float = 1e-2
    weights: str = "final"  # final, init or epoch_E
    split_seed: int | str = 0  # or "stored": the zoo's splits.parquet, whatever made it (symzoo splits)
    align: str = "none"  # rebasin: permute every standard network onto one reference before the flat metanets
    variants: list[str] | None = None  # None: all the zoo holds
    target: str = "auto"  # accuracy (regress test accuracy), class (an INR's image class); auto: by the zoo's task
    augment: str = "auto"  # permutation: permute standard networks' neurons at every step; auto: on INR zoos of
    # independent inits (training.shared_seed false)
    # gpus_per_task auto: a quarter GPU per run where the cluster has GPUs


# what changes every run's result (metanets, lrs, seeds and variants only add runs: they are in done.json)
IDENTITY = ("epochs", "batch_size", "weight_decay", "weights", "split_seed", "align", "target", "augment")
TARGETS = ("auto", "accuracy", "class")
AUGMENTS = ("auto", "none", "permutation")
INR_METANETS = ("mlp", "deepsets", "statnn")  # the default on INR zoos: DMC needs 2,044 weights, a SIREN has 1,185
AUGMENTED = ("mlp", "dmc")  # the metanets a permutation changes the input of (the others are invariant to it)


def check_options(o: dict) -> None:
    names = o["metanets"]
    if names is None:
        names = list(PAPER_METANETS)
    elif not isinstance(names, list) or not names or len(set(names)) != len(names):
        fail("metanet.metanets", f"must be a non-empty list of distinct names from {', '.join(METANETS)}")
    for i, name in enumerate(names):
        check_choice(f"metanet.metanets[{i}]", name, METANETS)
    lrs = o["lrs"]
    if not isinstance(lrs, list) or not lrs or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in lrs):
        fail("metanet.lrs", f"{lrs!r} is not allowed; a non-empty list of learning rates > 0")
    for i, v in enumerate(lrs):
        check_number(f"metanet.lrs[{i}]", v, 1e-12, 10)
    o["lrs"] = sorted({float(v) for v in lrs})
    check_int("metanet.seeds", o["seeds"], 1, 100)
    check_int("metanet.epochs", o["epochs"], 1, 10_000)
    check_int("metanet.batch_size", o["batch_size"], 1)
    check_number("metanet.weight_decay", o["weight_decay"], 0)
    w = o["weights"]
    if not isinstance(w, str) or not (w in ("final", "init") or (w.startswith("epoch_") and w[6:].isdigit())):
        fail("metanet.weights", f"{w!r} is not allowed; final, init or epoch_E (a checkpoint epoch of the zoo)")
    if o["split_seed"] != "stored":
        check_int("metanet.split_seed", o["split_seed"], 0, 2**32 - 1)
    check_choice("metanet.align", o["align"], ("none", "rebasin"))
    check_choice("metanet.target", o["target"], TARGETS)
    check_choice("metanet.augment", o["augment"], AUGMENTS)
    v = o["variants"]
    if v is not None and (not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v)):
        fail("metanet.variants", f"{v!r} is not allowed; a list of the zoo's variants, or null for all")
    check_resources("metanet", o)


def split_seed(text: str) -> int | str:
    """argparse type of --split-seed: an integer, or 'stored'."""
    if text == "stored":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed (an integer) or 'stored'") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metanets",
        default=None,
        help="comma list of mlp,dmc,deepsets,statnn,ridge,gbt (the paper's and two baselines; the default) and the "
        "equivariant nfn_np,nfn_hnp,gmn ([equivariant] extra); on INR zoos the default is mlp,deepsets,statnn",
    )
    parser.add_argument("--lrs", default=None, help="comma list of learning rates to sweep")
    parser.add_argument("--variants", default=None, help="comma list of variants (default: all in the zoo)")
    parser.add_argument("--seeds", type=int, default=None, help="fresh runs at the chosen LR (default 5)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 50)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default 128)")
    parser.add_argument("--weights", default=None, help="final (default), init or epoch_E")
    parser.add_argument(
        "--align",
        choices=["none", "rebasin"],
        default=None,
        help="rebasin: permute every standard network onto one reference before the flat metanets (default none)",
    )
    parser.add_argument(
        "--target",
        choices=list(TARGETS),
        default=None,
        help="accuracy: regress each network's test accuracy; class: classify the image an INR fits "
        "(default auto: class on INR zoos, accuracy elsewhere)",
    )
    parser.add_argument(
        "--augment",
        choices=list(AUGMENTS),
        default=None,
        help="permutation: a fresh neuron permutation of every standard training network at every step, for "
        "the mlp and dmc metanets (default auto: on INR zoos fitted from independent inits, as the INR benchmarks "
        "train; none on zoos of one shared init, whose common alignment it would discard, and elsewhere)",
    )
    parser.add_argument(
        "--split-seed",
        type=split_seed,
        default=None,
        help="seed of the paired 50/25/25 split (default 0), or 'stored': the zoo's splits.parquet",
    )


def overrides_from(args: argparse.Namespace) -> dict:
    return {
        "metanets": csv_flag(args.metanets),
        "lrs": csv_flag(args.lrs, float, "--lrs"),
        "variants": csv_flag(args.variants),
        "seeds": args.seeds,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "weights": args.weights,
        "split_seed": args.split_seed,
        "align": args.align,
        "target": args.target,
        "augment": args.augment,
    }


def input_kind(metanet: str) -> str:
    """Which input a metanet reads: the flat weights, the StatNN statistics, or (the graph metanetwork) the flat
    weights with each network's own F where it has one."""
    if metanet == "gmn":
        return "gated"
    return "flat" if metanet in (*FLAT_INPUT, "ridge") else "stats"


def metanet_task(spec: RunSpec, inputs: dict, progress, unit: int) -> pd.DataFrame:
    """Ray task: one run on this worker's device (a GPU when Ray assigned one). Its matrix is memory-mapped from
    this node's cache (built here from the zoo if this node has none yet) or, where workers cannot reach the zoo,
    taken from Ray's object store."""
    import ray

    from symzoo.pipelines.stage import device_for_task

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    data = inputs[spec.variant]
    kind = data["sources"][input_kind(spec.metanet)]
    if "cache" in data:
        ensure_inputs(data["cache"], (kind,))
        matrix = data["cache"].matrix(kind)
    else:
        matrix = ray.get(data[kind])
    space, permuter = data.get("space"), data.get("permuter")
    row = run_metanet(spec, matrix, data["targets"], data["model_ids"], data["idx"], device_for_task(), space, permuter)
    progress.set.remote(unit, 1)
    return pd.DataFrame([row])


def _usable_by_metadata(frame: pd.DataFrame, target: str) -> np.ndarray:
    return ((frame["status"] == "ok") & frame[TARGET_COLUMNS[target]].notna()).to_numpy()


TARGET_COLUMNS = {"accuracy": "test_acc", "class": "image_class"}


def is_inr_zoo(zoo: Zoo) -> bool:
    return zoo.config.get("task") == "inr"


def resolved_target(zoo: Zoo, opts: MetanetOptions) -> str:
    """``auto`` -> class on INR zoos (they have no test accuracy), accuracy elsewhere; a mismatch is refused."""
    if opts.target == "auto":
        return "class" if is_inr_zoo(zoo) else "accuracy"
    if opts.target == "class" and not is_inr_zoo(zoo):
        raise ZooError(
            f"{zoo.config['name']} is a classifier zoo: its networks fit no image to classify; use target: accuracy"
        )
    if opts.target == "accuracy" and is_inr_zoo(zoo):
        raise ZooError(f"{zoo.config['name']} is an INR zoo: its networks have no test accuracy; use target: class")
    return opts.target


def number_of_classes(zoo: Zoo, target: str) -> int:
    """0 for the accuracy target; the image dataset's classes (as many as the zoo's images hold) for class."""
    return int(zoo.frame["image_class"].max()) + 1 if target == "class" else 0


def augments(zoo: Zoo, opts: MetanetOptions, variant: str, metanet: str) -> bool:
    """Whether a run permutes its training networks: where asked (or auto on INR zoos whose networks start from
    independent inits), on a variant whose neuron permutations are symmetries (standard networks), for a metanet
    whose input they change. Not auto on a zoo of one shared init (``training.shared_seed``): its networks stay
    near that init, aligned with one another, and that alignment is what a flat metanet reads (bench/RESULTS.md
    §15: MLP 75.4% unpermuted, 14.6% permuted, on the same standard INRs)."""
    independent = not zoo.config["training"].get("shared_seed", False)
    wanted = opts.augment == "permutation" or (opts.augment == "auto" and is_inr_zoo(zoo) and independent)
    symmetric = bool(zoo.symmetries[variant]["permutation_is_symmetry"])
    return wanted and symmetric and metanet in AUGMENTED


def check_inputs(zoo: Zoo, opts: MetanetOptions) -> tuple[list[str], pd.DataFrame]:
    """Everything that can be checked from metadata, before anything is written; returns the variants and the
    split (model_id -> train / val / test) the runs use."""
    held = list(zoo.layouts)
    variants = opts.variants or held
    for v in variants:
        zoo.layout(v)  # names the variants the zoo holds
    check_equivariant(zoo, variants, opts.metanets)
    target = resolved_target(zoo, opts)
    baselines = [m for m in opts.metanets if m in ("ridge", "gbt")]
    if target == "class" and baselines:
        raise ZooError(
            f"{baselines[0]} regresses test accuracy and the target here is the image class; leave ridge and gbt "
            "out of metanet.metanets"
        )
    if opts.augment == "permutation" and opts.align == "rebasin":
        raise ZooError(
            "augment: permutation undoes align: rebasin (it permutes the aligned networks again); choose one"
        )
    if opts.weights not in zoo.weight_kinds():
        raise ZooError(f"no weights {opts.weights!r} in {zoo.path}; it stores {', '.join(zoo.weight_kinds())}")
    splits = zoo.splits(opts.split_seed)
    if opts.split_seed == "stored" and stored_source(zoo.path) is None:
        print(
            f"symzoo: warning: {zoo.path} stores no splits.parquet, so split_seed: stored uses seed 0's split; "
            "store one with `symzoo splits`",
            file=sys.stderr,
        )
    for v in variants:
        frame = zoo.frame[zoo.frame["variant"] == v].reset_index(drop=True)
        vw = VariantWeights(v, frame, np.zeros((len(frame), 0), np.float32), _usable_by_metadata(frame, target))
        check_split_sizes(vw, split_indices(vw, splits))
    if "dmc" in opts.metanets:
        short = [v for v in variants if zoo.layout(v).n_trainable < DMC.min_length()]
        if short:
            raise ZooError(
                f"DMC needs at least {DMC.min_length()} weights per network; {', '.join(short)} have fewer: "
                "leave dmc out of metanet.metanets"
            )
    return variants, splits


def check_equivariant(zoo: Zoo, variants: list[str], metanets: list[str]) -> None:
    """The equivariant metanetworks read what they can represent: NFN an MLP's or SIREN's weight space (no place
    for F), the graph metanetwork MLPs, SIRENs and ResNets, with F as gate edges (each network's own F where the zoo
    draws one per network)."""
    nfn = [m for m in metanets if m in ("nfn_np", "nfn_hnp")]
    needed = (["nfn"] if nfn else []) + (["torch_geometric"] if "gmn" in metanets else [])
    for package in needed:  # here, not in a task on a worker
        try:
            importlib.import_module(package)
        except ImportError:
            raise ZooError(
                f"{nfn[0] if package == 'nfn' else 'gmn'} needs the {package} package: "
                "pip install 'symzoo[equivariant]'"
            ) from None
    if nfn and zoo.config["model"]["arch"] not in ("mlp", "siren"):
        raise ZooError(
            f"{nfn[0]} reads MLP and SIREN zoos and {zoo.config['name']} holds {zoo.config['model']['arch']}s; use "
            "gmn, the graph metanetwork, for ResNets"
        )
    if nfn and "sigma_asym" in variants:
        raise ZooError(
            f"{nfn[0]} has no place for sigma-Asym's gate matrix F in NFN's weight space; run it with --variants "
            "standard,w_asym (gmn reads F as graph edges)"
        )


def cache_task(cache: VariantCache, kinds: tuple[str, ...]) -> np.ndarray:
    """Ray task: build a variant's cache on this node (reading the zoo a shard at a time); which rows are finite."""
    return ensure_inputs(cache, kinds)


def prepare_inputs(
    zoo: Zoo, variants: list[str], splits: pd.DataFrame, opts: MetanetOptions, cache: Path, workers_read: bool
) -> tuple[dict, dict]:
    """Per variant: where tasks find the flat weights and StatNN features, targets, ids, split indices.

    Where workers reach the zoo, a task per variant builds its cache on a worker's node and the driver learns only
    which rows are finite: runs memory-map the cache (a node without one builds its own). Elsewhere the driver
    builds the caches, a shard at a time, and puts the matrices into Ray's object store."""
    import ray

    from symzoo.pipelines.stage import get_results

    target = resolved_target(zoo, opts)
    sources = {v: input_sources(zoo, v, opts) for v in variants}
    kinds = {v: tuple(sorted({sources[v][input_kind(m)] for m in opts.metanets})) for v in variants}
    caches = {v: VariantCache.of(zoo, v, opts.weights, cache) for v in variants}
    if workers_read:
        built = [ray.remote(cache_task).remote(caches[v], kinds[v]) for v in variants]
        finite = dict(zip(variants, get_results(built), strict=True))
    else:
        finite = {v: ensure_inputs(caches[v], kinds[v], zoo) for v in variants}
    inputs, counts = {}, {}
    for v in variants:
        frame = zoo.frame[zoo.frame["variant"] == v].reset_index(drop=True)
        usable = usable_rows(frame, finite[v], TARGET_COLUMNS[target])
        vw = VariantWeights(v, frame, np.zeros((len(frame), 0), np.float32), usable)
        idx = split_indices(vw, splits)
        check_split_sizes(vw, idx)
        entry = {
            "targets": frame[TARGET_COLUMNS[target]].to_numpy(np.float32),
            "model_ids": frame["model_id"].to_numpy(),
            "idx": idx,
            "sources": sources[v],
        }
        if any(m in EQUIVARIANT for m in opts.metanets):
            entry["space"] = WeightSpace.of_zoo(zoo, v)  # shared by the variant's networks (check_equivariant)
        if any(augments(zoo, opts, v, m) for m in opts.metanets):
            entry["permuter"] = FlatPermutation(zoo.layout(v), recorded_spec(zoo.symmetries[v]))
        if workers_read:
            entry["cache"] = caches[v]
        else:
            entry |= {kind: ray.put(np.ascontiguousarray(caches[v].matrix(kind))) for kind in kinds[v]}
        inputs[v] = entry
        counts[v] = {"used": int(vw.usable.sum()), "dropped": vw.drop_reasons()}
        counts[v] |= {name: len(idx[name]) for name in ("train", "val", "test")}
        if target == "accuracy":  # how far the targets spread: R² means little where they hardly do
            test_acc = entry["targets"][idx["test"]]
            counts[v] |= {"test_acc_mean": float(test_acc.mean()), "test_acc_std": float(test_acc.std())}
    return inputs, counts


def input_sources(zoo: Zoo, variant: str, opts: MetanetOptions) -> dict[str, str]:
    """Which cached matrix each input kind reads: with ``align: rebasin`` a permutation-symmetric variant's flat
    weights are its networks aligned to one reference (``analysis.metanet_inputs.build_aligned``); the others have
    no permutation to undo and read theirs as stored."""
    aligned = opts.align == "rebasin" and zoo.symmetries[variant]["permutation_is_symmetry"]
    flat = "aligned" if aligned else "flat"
    return {"flat": flat, "stats": "stats", "gated": "gated" if gates_per_sample(zoo.config, variant) else flat}


def _units(specs: list[RunSpec], runs_dir: Path, start: int = 0) -> list[WorkUnit]:
    return [WorkUnit(start + i, runs_dir / f"{s.key}.parquet", s, 1) for i, s in enumerate(specs)]


def run_spec(zoo: Zoo, opts: MetanetOptions, variant: str, metanet: str, value: float, seed: int) -> RunSpec:
    classes = number_of_classes(zoo, resolved_target(zoo, opts))
    augment = augments(zoo, opts, variant, metanet)
    return RunSpec(variant, metanet, value, seed, opts.epochs, opts.batch_size, opts.weight_decay, classes, augment)


def sweep_specs(zoo: Zoo, variants: list[str], opts: MetanetOptions) -> list[RunSpec]:
    """One run (seed 0) per grid value of every (variant, metanet)."""
    grid = {m: grid_for(m, opts.lrs)[1] for m in opts.metanets}
    return [run_spec(zoo, opts, v, m, value, 0) for v in variants for m in opts.metanets for value in grid[m]]


def chosen_values(sweep: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Per (variant, metanet): the grid value with the best validation score (R², or accuracy for the class
    target; NaN counts as worst; ties: the smaller value)."""
    best = {}
    column = "val_accuracy" if "val_accuracy" in sweep.columns else "val_r2"
    for (v, m), g in sweep.groupby(["variant", "metanet"]):
        score = g[column].fillna(-math.inf).to_numpy()
        order = np.lexsort((g["hparam"].to_numpy(), -score))
        best[(v, m)] = float(g["hparam"].to_numpy()[order[0]])
    return best


def metanet_stage(
    zoo_dir: str | Path,
    out: str | Path,
    config_section: dict | None = None,
    overrides: dict | None = None,
    address: str | None = None,
    show_progress: bool = True,
) -> StageResult:
    from symzoo.pipelines.analysis_stage import AnalysisStage  # the Ray runner

    stage = AnalysisStage.open(SPEC, zoo_dir, out, config_section, overrides, "runs")
    if stage.opts.metanets is None:
        default = INR_METANETS if is_inr_zoo(stage.zoo) else PAPER_METANETS
        stage.opts = replace(stage.opts, metanets=list(default))
    zoo, opts = stage.zoo, stage.opts
    variants, splits = check_inputs(zoo, opts)
    if done := stage.finished():
        return done
    with stage.running(address):
        cache = local_scratch(stage.out) / "cache"  # memory-mapped: on a local disk even for s3:// outputs
        cache.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(cache)
        inputs, counts = prepare_inputs(zoo, variants, splits, opts, cache, stage.workers_read())
        sweep_units = _units(sweep_specs(zoo, variants, opts), stage.units_dir)
        print(
            f"symzoo: metanet {', '.join(opts.metanets)} on {', '.join(variants)} of {zoo.config['name']}: "
            f"{len(sweep_units)} sweep runs, then {opts.seeds} seeds per cell -> {stage.out}",
            file=sys.stderr,
        )
        sweep = stage.run(sweep_units, metanet_task, (inputs,), _key, 0.25, "metanet sweep", show_progress)
        chosen = chosen_values(sweep)
        final_specs = [
            run_spec(zoo, opts, v, m, chosen[(v, m)], seed)
            for v in variants
            for m in opts.metanets
            for seed in range(1, opts.seeds + 1)
        ]
        final_units = _units(final_specs, stage.units_dir, start=len(sweep_units))
        final = stage.run(final_units, metanet_task, (inputs,), _key, 0.25, "metanet seeds", show_progress)
        return stage.finish(write_metanet_outputs(stage.out, zoo, opts, variants, sweep, final, counts))


def split_description(zoo: Zoo, split_seed: int | str) -> str:
    """Which assignment the runs used, for the table's notes."""
    source = stored_source(zoo.path)
    if split_seed == "stored" and source is not None:
        return f"the zoo's splits.parquet ({source})"
    seed = 0 if split_seed == "stored" else split_seed
    if is_inr_zoo(zoo):
        return (
            f"by image: the dataset's test images are the test split, a seeded 1/12 of each class's training images "
            f"the validation split (split seed {seed})"
        )
    return f"50/25/25 of hyperparameter samples (split seed {seed})"


def _key(unit: WorkUnit) -> str:
    return unit.payload.key


def predictions_frame(final: pd.DataFrame, classes: bool = False) -> pd.DataFrame:
    """One row per (run, test network): model_id, variant, metanet, seed, and the true and predicted accuracy
    (``true_acc``, ``pred_acc``) or, for the class target, image class (``true_class``, ``pred_class``)."""
    rows = final[["variant", "metanet", "seed", "test_model_id", "test_true", "test_pred"]]
    long = rows.explode(["test_model_id", "test_true", "test_pred"], ignore_index=True)
    frame = pd.DataFrame(
        {
            "model_id": long["test_model_id"].astype("int64"),
            "variant": long["variant"],
            "metanet": long["metanet"],
            "seed": long["seed"].astype("int32"),
        }
    )
    if classes:
        return frame.assign(true_class=long["test_true"].astype("int64"), pred_class=long["test_pred"].astype("int64"))
    return frame.assign(true_acc=long["test_true"].astype("float64"), pred_acc=long["test_pred"].astype("float64"))


def write_metanet_outputs(
    out: Path,
    zoo: Zoo,
    opts: MetanetOptions,
    variants: list[str],
    sweep: pd.DataFrame,
    final: pd.DataFrame,
    counts: dict,
) -> str:
    """table.md, predictions.parquet and figures, derived from the run files alone."""
    if resolved_target(zoo, opts) == "class":
        return write_classification_outputs(out, zoo, opts, variants, sweep, final, counts)
    summary = metanet_summary(final)
    with_paper = is_paper_resnet8_zoo(zoo.config)
    notes = [
        f"zoo {zoo.config['name']} ({zoo.config['model']['arch']} on {zoo.config['data']['name']}), "
        f"weights '{opts.weights}' (W-Asym: trainable entries only; sigma-Asym: F is not a parameter)"
        + (
            "; flat inputs of standard networks aligned by Git Re-Basin weight matching to one reference network "
            "(align: rebasin; the asymmetric variants have no permutation to undo)"
            if opts.align == "rebasin"
            else ""
        ),
        f"split: {split_description(zoo, opts.split_seed)}, every variant's networks of a sample in one part; "
        "test R² (sklearn) and Kendall τ-b at the best-validation epoch, mean ± std over "
        f"{opts.seeds} seeds at the hyperparameter picked on validation R² (one sweep run per value; a single "
        "seed prints no ±)",
        f"neural metanets: AdamW (weight decay {opts.weight_decay:g}), MSE, batch {opts.batch_size}, "
        f"{opts.epochs} epochs, no schedule; ridge: alpha picked on validation; GBT: 300 trees of depth 3, "
        "subsample 0.8, learning rate picked on validation",
        "paper rows: CIFAR-10 ResNet8 zoos of 10,000 networks per variant (Lim et al. 2024, Table 3)"
        + ("" if with_paper else "; this zoo is another setting, so compare directions, not values"),
    ]
    grids = {m: grid_for(m, opts.lrs)[1] for m in opts.metanets}
    predictions = predictions_frame(final)
    control = equivariant_control(predictions, zoo.frame[["model_id", "sample"]], opts.metanets, variants)
    table = metanet_table(summary, opts.metanets, variants, with_paper, counts, notes, grids, final, control)
    write_parquet(out / "verdicts.parquet", verdict_frame(metanet_verdicts(final, opts.metanets, variants, counts)))
    for warning in (line for line in table.splitlines() if line.startswith("- ⚠")):
        print(f"symzoo: warning: {warning[4:]}", file=sys.stderr)
    table = "# Metanetworks: predicting test accuracy from weights (paper Table 3)\n\n" + table
    atomic_write_bytes(out / "table.md", table.encode())
    write_parquet(out / "predictions.parquet", predictions)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    plot_metanet_predictions(predictions, figures / "predicted_vs_true.png", METANET_LABELS)
    plot_lr_sweep(sweep, figures / "val_r2_vs_lr.png", METANET_LABELS)
    return table


def inr_fits(zoo: Zoo, variants: list[str], n: int = 8) -> tuple:
    """The first ``n`` test images of the zoo and what each variant's INR of them draws, with its PSNR."""
    from symzoo.zoo.inr_fit import pixel_grid

    frame = zoo.frame[(zoo.frame["image_split"] == "test") & (zoo.frame["status"] == "ok")]
    indices = sorted(set(frame["image_index"]))[:n]
    data = zoo.dataset()
    images = data.x_test[indices, 0].numpy() / 255
    drawn, psnrs = {}, {}
    for v in variants:
        rows = frame[frame["variant"] == v].set_index("image_index").loc[indices]
        with torch.no_grad():
            grid = pixel_grid(*images.shape[1:])
            drawn[v] = np.stack([zoo.model(int(i))(grid).reshape(images.shape[1:]).numpy() for i in rows["model_id"]])
        psnrs[v] = rows["psnr"].to_numpy()
    return images, drawn, psnrs


def write_classification_outputs(
    out: Path,
    zoo: Zoo,
    opts: MetanetOptions,
    variants: list[str],
    sweep: pd.DataFrame,
    final: pd.DataFrame,
    counts: dict,
) -> str:
    """The class target's table.md (``analysis.inr_tables``), predictions.parquet and figures."""
    dataset = zoo.config["data"]["name"]
    augmented = sorted(
        {f"{METANET_LABELS[m]} on {label(v)}" for v in variants for m in opts.metanets if augments(zoo, opts, v, m)}
    )
    notes = [
        f"zoo {zoo.config['name']} (one SIREN per {dataset} image), weights '{opts.weights}' (W-Asym: trainable "
        "entries only; sigma-Asym: F is not a parameter)",
        f"split: {split_description(zoo, opts.split_seed)}; every variant's INR of an image in one part; test "
        f"accuracy and cross-entropy at the best-validation-accuracy epoch, mean ± std over {opts.seeds} seeds at "
        "the learning rate picked on validation accuracy (one sweep run per value)",
        f"metanets: AdamW (weight decay {opts.weight_decay:g}), cross-entropy, batch {opts.batch_size}, "
        f"{opts.epochs} epochs, no schedule; "
        + (
            f"a fresh neuron permutation of each training INR at every step for {', '.join(augmented)} (+ perm; "
            "the asymmetric variants have no permutation symmetry to augment with)"
            if augmented
            else "no augmentation"
        ),
        "published rows: standard SIRENs only, the benchmarks' downloaded zoos (60,000 training images, fitted "
        "their way) and their metanets at GPU size: another setting, so compare directions, not values",
    ]
    summary = metanet_summary(final, ("accuracy", "nll"))
    predictions = predictions_frame(final, classes=True)
    verdicts = classification_verdicts(final, opts.metanets, variants, METANET_LABELS)
    control = equivariant_control(predictions, zoo.frame[["model_id", "sample"]], opts.metanets, variants)
    table = classification_table(
        summary, opts.metanets, variants, METANET_LABELS, dataset, counts, notes, verdicts, control
    )
    table = "# Metanetworks: classifying the image an INR fits, from its weights\n\n" + table
    write_parquet(out / "verdicts.parquet", verdict_frame(verdicts))
    atomic_write_bytes(out / "table.md", table.encode())
    write_parquet(out / "predictions.parquet", predictions)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    plot_confusion(predictions, figures / "confusion.png", METANET_LABELS)
    plot_inr_fits(*inr_fits(zoo, variants), figures / "inr_fits.png")
    plot_lr_sweep(sweep, figures / "val_accuracy_vs_lr.png", METANET_LABELS)
    return table


def needs_samples(cfg: dict) -> str | None:
    """The metanet split (50/25/25 of hyperparameter samples) needs 2 samples per split at least."""
    if cfg["networks"] >= 8:
        return None
    return "metanet needs networks: 8 or more (it splits hyperparameter samples 50/25/25, 2 at least in each)"


SPEC = StageSpec(
    name="metanet",
    title="Metanetworks: predicting test accuracy from weights (paper Table 3)",
    help="predict test accuracy from stored weights (paper Table 3); resumes",
    item="run",
    options=MetanetOptions,
    check=check_options,
    identity=IDENTITY,
    seed_options=("split_seed", "seeds"),
    run=metanet_stage,
    add_arguments=add_arguments,
    overrides=overrides_from,
    needs=needs_samples,
)
