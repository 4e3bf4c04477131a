"""``symzoo lmc``: linear mode connectivity between replicates (paper Table 1) on a stored zoo.

Work units are groups of replicate pairs of one variant; each Ray task evaluates its pairs' lines (and, for
standard networks, the lines after Git Re-Basin weight matching) on the test set, and its curves land in
``units/<key>.parquet``; a rerun evaluates only the missing units. A unit carries where its networks' rows lie;
its task reads them (the driver does, as it sends the unit, where workers cannot reach the zoo).

The module imports without Ray (the device machine has none): its Ray task is a plain function that the runner
submits, and the Ray runner is imported where the stage runs on Ray.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from symzoo.analysis.lmc import (
    BATCHNORM,
    CURVE_COLUMNS,
    MATCHINGS,
    METHODS,
    PROBE_IMAGES,
    barriers,
    lmc_curves,
    lmc_table,
    lmc_verdict_records,
    matching_kinds,
    matching_methods,
    paper_setting,
    replicate_pairs,
)
from symzoo.analysis.payloads import finite_rows, take_unevaluated, unevaluated_rows, unit_weights
from symzoo.analysis.plots import plot_lmc_curves
from symzoo.analysis.selection import finished_networks, sample_per_variant
from symzoo.analysis.tables import sample_note, skipped_note
from symzoo.analysis.verdicts import verdict_frame
from symzoo.errors import ZooError
from symzoo.pipelines.outputs import write_parquet
from symzoo.pipelines.stage_spec import StageOptions, StageResult, StageSpec, check_resources
from symzoo.pipelines.units import WorkUnit
from symzoo.zoo.data import Dataset
from symzoo.zoo.fields import check_bool, check_choice, check_int, fail
from symzoo.zoo.location import atomic_write_bytes
from symzoo.zoo.models import describe_fixed_structure
from symzoo.zoo.store import Zoo


@dataclass(frozen=True)
class LmcOptions(StageOptions):
    alphas: int = 25  # odd: the midpoint is on the line
    rebasin: bool = True  # Git Re-Basin for standard pairs
    matching: str = "auto"  # weights, activations or both; auto: activations for GNNs, weights otherwise
    batchnorm: str = "reestimate"  # GNNs: BatchNorm statistics re-estimated at every alpha, or interpolated
    batch_size: int = 512
    pairs_per_unit: int = 4
    sample: int | None = None  # replicate pairs per variant, drawn by sample_seed; None: all
    sample_seed: int = 0


IDENTITY = ("alphas", "rebasin", "matching", "batchnorm", "pairs_per_unit", "sample", "sample_seed")


def check_options(o: dict) -> None:
    check_int("lmc.alphas", o["alphas"], 3, 1001)
    if o["alphas"] % 2 == 0:
        fail(
            "lmc.alphas",
            f"{o['alphas']} is not allowed; an odd number, so that the midpoint alpha = 0.5 is on the line",
        )
    check_bool("lmc.rebasin", o["rebasin"])
    check_choice("lmc.matching", o["matching"], MATCHINGS)
    check_choice("lmc.batchnorm", o["batchnorm"], BATCHNORM)
    check_int("lmc.batch_size", o["batch_size"], 1)
    check_int("lmc.pairs_per_unit", o["pairs_per_unit"], 1)
    check_int("lmc.sample", o["sample"], 1, allow_none=True)
    check_int("lmc.sample_seed", o["sample_seed"], 0, 2**32 - 1)
    check_resources("lmc", o)


def needs_replicates(cfg: dict) -> str | None:
    """LMC pairs replicates: a zoo without them cannot have this stage."""
    if cfg["replicates"] >= 2:
        return None
    return "lmc needs replicates: 2 or more (LMC pairs replicates)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alphas", type=int, default=None, help="points along each line, odd (default 25)")
    parser.add_argument("--rebasin", action=argparse.BooleanOptionalAction, default=None, help="Git Re-Basin baseline")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default 512)")
    parser.add_argument(
        "--matching",
        choices=MATCHINGS,
        default=None,
        help="Git Re-Basin by weight or activation matching, or both (default auto: activations for GNNs, else "
        "weights)",
    )
    parser.add_argument(
        "--batchnorm",
        choices=BATCHNORM,
        default=None,
        help="GNN zoos: BatchNorm statistics re-estimated at every alpha (default) or interpolated between the ends'",
    )


def overrides_from(args: argparse.Namespace) -> dict:
    return {
        "alphas": args.alphas,
        "batch_size": args.batch_size,
        "rebasin": args.rebasin,
        "matching": args.matching,
        "batchnorm": args.batchnorm,
    }


def lmc_task(payload: dict, cfg: dict, data: Dataset, opts: LmcOptions, progress, unit: int) -> pd.DataFrame:
    """Ray task: one unit's pairs on this worker's device."""
    from symzoo.pipelines.stage import device_for_task  # Ray's device for this worker

    torch.set_num_threads(max(1, int(opts.cpus_per_task)))
    curves = evaluate_pairs(payload, cfg, data.to(device_for_task()), opts)
    progress.set.remote(unit, len(payload["pairs"]))
    return curves


def evaluate_pairs(payload: dict, cfg: dict, data: Dataset, opts: LmcOptions) -> pd.DataFrame:
    """One unit's pairs on ``data``'s device; a pair with an end whose stored weights are not finite is not
    evaluated, and the unit records it (``unevaluated_rows``). No Ray: any machine can call it."""
    pairs = payload["pairs"]
    final = unit_weights(payload, ("final",))["final"]
    ids = payload["rows"].model_ids if "rows" in payload else payload["model_ids"]
    final_a = final[np.searchsorted(ids, pairs["model_a"].to_numpy())]
    final_b = final[np.searchsorted(ids, pairs["model_b"].to_numpy())]
    finite = finite_rows({"a": final_a, "b": final_b})
    parts = []
    if finite.any():
        kept = pairs[finite].reset_index(drop=True)
        methods = matching_methods(cfg, opts.matching) if opts.rebasin else []
        curves = lmc_curves(
            kept, final_a[finite], final_b[finite], cfg, data, opts.alphas, opts.batch_size, methods, opts.batchnorm
        )
        parts.append(curves)
    if not finite.all():
        parts.append(unevaluated_rows(pairs[~finite].assign(method=pairs["variant"]), CURVE_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def plan_lmc_units(pairs: pd.DataFrame, zoo: Zoo, opts: LmcOptions, units_dir: Path) -> list[WorkUnit]:
    """Groups of ``pairs_per_unit`` pairs of one variant, with where both ends' final weights lie in ``zoo``."""
    units = []
    per = opts.pairs_per_unit
    for variant, g in pairs.groupby("variant", sort=False):
        g = g.reset_index(drop=True)
        for start in range(0, len(g), per):
            part = g.iloc[start : start + per].reset_index(drop=True)
            key = f"{variant}-{part['sample'].iloc[0]}-{part['sample'].iloc[-1]}-{len(part)}"
            rows = zoo.stored_rows(model_ids=np.union1d(part["model_a"], part["model_b"]))
            payload = {"key": key, "pairs": part, "rows": rows}
            units.append(WorkUnit(len(units), units_dir / f"{key}.parquet", payload, len(part)))
    return units


def lmc_stage(
    zoo_dir: str | Path,
    out: str | Path,
    config_section: dict | None = None,
    overrides: dict | None = None,
    address: str | None = None,
    show_progress: bool = True,
) -> StageResult:
    from symzoo.pipelines.analysis_stage import AnalysisStage  # the Ray runner

    stage = AnalysisStage.open(SPEC, zoo_dir, out, config_section, overrides)
    zoo, opts = stage.zoo, stage.opts
    stage.require_weights("final")
    if zoo.config["replicates"] < 2:
        raise ZooError(
            f"{zoo.path} has no replicates (replicates: {zoo.config['replicates']}); LMC pairs networks of the same "
            "hyperparameters: generate a zoo with replicates: 2 (e.g. configs/fashion_mlp_lmc.yaml)"
        )
    if done := stage.finished():
        return done
    frame = zoo.frame
    if opts.sample is not None:  # only the drawn pairs' networks are read
        drawn = sample_per_variant(replicate_pairs(frame), opts.sample, opts.sample_seed)
        frame = frame[frame["model_id"].isin(np.union1d(drawn["model_a"], drawn["model_b"]))]
    networks, skipped = finished_networks(frame)
    pairs = replicate_pairs(networks)
    if pairs.empty:
        raise ZooError(f"{zoo.path} has no pair of finished replicates to interpolate between")
    data = zoo.dataset()
    with stage.running(address):
        units = plan_lmc_units(pairs, zoo, opts, stage.units_dir)
        print(
            f"symzoo: lmc of {len(pairs)} replicate pairs of {zoo.config['name']} ({opts.alphas} alphas"
            f"{rebasin_phrase(zoo.config, opts)}) in {len(units)} units -> {stage.out}",
            file=sys.stderr,
        )
        curves = stage.run_on_data(units, lmc_task, data, ("final",), show_progress)
        curves = take_unevaluated(curves, "sample", skipped, "pairs")
        if curves.empty:
            raise ZooError(f"{zoo.path} has no pair of replicates with finite weights to interpolate between")
        return stage.finish(write_lmc_outputs(stage.out, zoo, opts, curves, skipped))


def rebasin_phrase(cfg: dict, opts: LmcOptions) -> str:
    if not opts.rebasin:
        return ""
    return f", Git Re-Basin ({' and '.join(matching_kinds(cfg, opts.matching))} matching) for standard pairs"


def rebasin_note(cfg: dict, opts: LmcOptions) -> str:
    """How the Re-Basin methods this run used matched B onto A."""
    if not opts.rebasin:
        return ""
    probe = "the whole graph" if cfg["model"]["arch"] == "gnn" else f"{PROBE_IMAGES} training images"
    how = {
        "standard+rebasin": "weight matching (coordinate descent over the permutations in random order, linear "
        "assignment each, at most 100 sweeps)",
        "standard+activations": "activation matching (one linear assignment per permutation on the inner products "
        f"of both networks' features after each nonlinearity, on {probe})",
    }
    methods = " and ".join(how[m] for m in matching_methods(cfg, opts.matching))
    return f"Git Re-Basin: {methods}, B permuted onto A; standard networks only"


def write_lmc_outputs(out: Path, zoo: Zoo, opts: LmcOptions, curves: pd.DataFrame, skipped: dict) -> str:
    curves = curves.sort_values(["method", "sample", "alpha"], ignore_index=True)
    write_parquet(out / "curves.parquet", curves)
    table_barriers = barriers(curves)
    write_parquet(out / "barriers.parquet", table_barriers)
    _, label = paper_setting(zoo.config)
    graph = zoo.config["model"]["arch"] == "gnn"
    trainable = ", ".join(f"{METHODS.get(v, v)} {zoo.layout(v).n_trainable:,}" for v in zoo.config["variants"])
    batchnorm_note = (
        "BatchNorm statistics re-estimated on the whole graph at every alpha (the endpoints' losses are the trained "
        "networks' own)"
        if opts.batchnorm == "reestimate"
        else "BatchNorm statistics interpolated between the endpoints' own, like the weights (no re-estimation)"
    )
    notes = [
        f"zoo {zoo.config['name']}: pairs are replicates of one hyperparameter sample (same hyperparameters, masks and "
        f"F; different init seed{' (full-batch: nothing else)' if graph else ' and data order'}); barrier = "
        "L(midpoint) - (L(A) + L(B)) / 2, plain cross-entropy on the test set; mean ± std over pairs [95% interval "
        f"of the mean]; {opts.alphas} alphas",
        rebasin_note(zoo.config, opts),
        f"distance per trainable parameter: ||A - B|| / P (B after matching for Re-Basin), P = {trainable}",
        batchnorm_note if graph else "",
        describe_fixed_structure(zoo.config),
        sample_note(opts.sample, opts.sample_seed, zoo, "replicate pairs"),
        skipped_note(skipped),
    ]
    table = "# Linear mode connectivity (paper Table 1)\n\n" + lmc_table(table_barriers, zoo.config)
    write_parquet(out / "verdicts.parquet", verdict_frame(lmc_verdict_records(table_barriers, zoo.config)))
    table += "\n" + "\n".join(f"- {n}" for n in notes if n) + "\n"
    atomic_write_bytes(out / "table.md", table.encode())
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    plot_lmc_curves(curves, figures / "lmc_curves.png", METHODS, label)
    return table


SPEC = StageSpec(
    name="lmc",
    title="Linear mode connectivity (paper Table 1)",
    help="linear mode connectivity between replicates, with Git Re-Basin (paper Table 1)",
    item="pair",
    options=LmcOptions,
    check=check_options,
    identity=IDENTITY,
    seed_options=("sample", "sample_seed"),
    run=lmc_stage,
    add_arguments=add_arguments,
    overrides=overrides_from,
    needs=needs_replicates,
)
