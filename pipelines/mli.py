"""``symzoo mli``: monotonic linear interpolation (paper Table 4) on a stored zoo.

Work units are groups of one variant's finished networks and one loss measurement; each Ray task evaluates its
networks' lines from initial to final weights (``analysis.mli.mli_curves``, packed) and its curves land in
``units/<key>.parquet``; a rerun evaluates only the missing units. The driver reads the weights and sends them
with the unit only where workers cannot reach the zoo (``workers_read``); elsewhere a unit carries where its
networks' rows lie and its task reads them, so the driver holds metadata only.

The module imports without Ray (the device machine has none): its Ray task is a plain function that the runner
submits, and the Ray runner is imported where the stage runs on Ray.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from symzoo.analysis.mli import (
    MEASUREMENTS,
    evaluate_payload,
    mli_payloads,
    mli_table,
    mli_verdict_records,
    per_network_stats,
)
from symzoo.analysis.paper import is_paper_resnet8_zoo
from symzoo.analysis.payloads import take_unevaluated
from symzoo.analysis.plots import plot_delta_histogram, plot_mli_curves
from symzoo.analysis.selection import finished_networks, sample_per_variant
from symzoo.analysis.tables import sample_note, skipped_note
from symzoo.analysis.verdicts import verdict_frame
from symzoo.errors import ZooError
from symzoo.pipelines.outputs import write_parquet
from symzoo.pipelines.stage_spec import StageOptions, StageResult, StageSpec, check_resources
from symzoo.pipelines.units import WorkUnit
from symzoo.zoo.data import Dataset
from symzoo.zoo.fields import check_choice, check_int
from symzoo.zoo.location import atomic_write_bytes
from symzoo.zoo.models import describe_fixed_structure
from symzoo.zoo.store import Zoo


@dataclass(frozen=True)
class MliOptions(StageOptions):
    alphas: int = 25
    loss: str = "both"  # clean, augmented or both
    batch_size: int = 512
    networks_per_unit: int = 16
    sample: int | None = None  # networks per variant, drawn by sample_seed (the paper analyses 300); None: all
    sample_seed: int = 0


IDENTITY = ("alphas", "networks_per_unit", "sample", "sample_seed")  # loss is in done.json: "both" adds to "clean"


def check_options(o: dict) -> None:
    check_int("mli.alphas", o["alphas"], 3, 1001)
    check_choice("mli.loss", o["loss"], (*MEASUREMENTS, "both"))
    check_int("mli.batch_size", o["batch_size"], 1)
    check_int("mli.networks_per_unit", o["networks_per_unit"], 1)
    check_int("mli.sample", o["sample"], 1, allow_none=True)
    check_int("mli.sample_seed", o["sample_seed"], 0, 2**32 - 1)
    check_resources("mli", o)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alphas", type=int, default=None, help="points along each line (default 25)")
    parser.add_argument("--loss", default=None, help="clean, augmented or both (default both)")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluation batch of the clean loss (default 512)")


def overrides_from(args: argparse.Namespace) -> dict:
    return {"alphas": args.alphas, "loss": args.loss, "batch_size": args.batch_size}


def mli_task(payload: dict, cfg: dict, data: Dataset, opts: MliOptions, progress, unit: int) -> pd.DataFrame:
    """Ray task: one unit's curves on this worker's device."""
    from symzoo.pipelines.stage import device_for_task  # Ray's device for this worker

    torch.set_num_threads(max(1, int(opts.cpus_per_task)))
    curves = evaluate_payload(payload, cfg, data.to(device_for_task()), opts.alphas, opts.batch_size)
    progress.set.remote(unit, len(payload["networks"]))
    return curves


def plan_mli_units(networks: pd.DataFrame, zoo: Zoo, opts: MliOptions, units_dir: Path) -> list[WorkUnit]:
    """The units of ``analysis.mli.mli_payloads``, each writing ``units/<key>.parquet``."""
    payloads = mli_payloads(networks, zoo, opts.loss, opts.networks_per_unit)
    return [WorkUnit(i, units_dir / f"{p['key']}.parquet", p, len(p["networks"])) for i, p in enumerate(payloads)]


def mli_stage(
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
    stage.require_weights("init")
    if reason := needs_init(zoo.config):
        raise ZooError(f"{zoo.path}: {reason}")
    if done := stage.finished():
        return done
    data = zoo.dataset()
    chosen = sample_per_variant(zoo.frame, opts.sample, opts.sample_seed)  # a failed draw is reported
    networks, skipped = finished_networks(chosen)
    if networks.empty:
        raise ZooError(f"{zoo.path} has no finished network to interpolate")
    with stage.running(address):
        units = plan_mli_units(networks, zoo, opts, stage.units_dir)
        print(
            f"symzoo: mli of {len(networks)} networks of {zoo.config['name']} ({opts.alphas} alphas, loss "
            f"{opts.loss}) in {len(units)} units -> {stage.out}",
            file=sys.stderr,
        )
        curves = stage.run_on_data(units, mli_task, data, ("init", "final"), show_progress)
        curves = take_unevaluated(curves, "model_id", skipped, "networks")
        if curves.empty:
            raise ZooError(f"{zoo.path} has no finished network with finite weights to interpolate")
        return stage.finish(write_mli_outputs(stage.out, zoo, opts, curves, skipped))


def write_mli_outputs(out: Path, zoo: Zoo, opts: MliOptions, curves: pd.DataFrame, skipped: dict) -> str:
    """curves.parquet, stats.parquet, table.md and figures, from the unit files alone."""
    curves = curves.sort_values(["measurement", "model_id", "alpha"], ignore_index=True)
    write_parquet(out / "curves.parquet", curves)
    stats = per_network_stats(curves)
    write_parquet(out / "stats.parquet", stats)
    variants = [v for v in zoo.config["variants"] if v in set(stats["variant"])]
    with_paper = is_paper_resnet8_zoo(zoo.config)
    parts = ["# Monotonic linear interpolation (paper Table 4)", ""]
    verdicts = []
    for m in dict.fromkeys(curves["measurement"]):
        parts.append(mli_table(stats, variants, m, with_paper))
        verdicts += mli_verdict_records(stats, variants, m)
    write_parquet(out / "verdicts.parquet", verdict_frame(verdicts))
    notes = [
        f"zoo {zoo.config['name']} ({zoo.config['model']['arch']} on {zoo.config['data']['name']}); "
        f"loss = training loss label-smoothed with each network's own smoothing, at {opts.alphas} evenly spaced "
        "alphas from the initial (0) to the final (1) weights; mean ± std over networks [95% interval]",
        "Delta = largest rise between neighbouring points (monotonic iff Delta <= 0); local convexity = fraction of "
        "interior points with a non-negative second difference; global convexity as defined = fraction of interior "
        "points on or below the chord from L(0) to L(1); as in the authors' code = below the line through L(0) and "
        "L(alpha_1), which every non-increasing curve passes with 1.0",
        describe_fixed_structure(zoo.config),
        sample_note(opts.sample, opts.sample_seed, zoo, "networks"),
        skipped_note(skipped),
        "paper rows: 300 CIFAR-10 ResNet8s per family trained with the paper's recipe, measured augmented (Lim et "
        "al. 2024, Table 4); its global convexity column is the authors' code's"
        + (
            ""
            if with_paper
            else "; this zoo is another setting, so compare directions, not values (briefly trained networks are "
            "nearly all monotonic, and augmentation noise can hide a short training's fall in loss)"
        ),
    ]
    table = "\n".join(parts) + "\n" + "\n".join(f"- {n}" for n in notes if n) + "\n"
    atomic_write_bytes(out / "table.md", table.encode())
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for m in dict.fromkeys(curves["measurement"]):
        plot_mli_curves(curves[curves["measurement"] == m], figures / f"mli_curves_{m}.png", f"{m} loss")
        plot_delta_histogram(stats[stats["measurement"] == m], figures / f"delta_hist_{m}.png", m)
    return table


def needs_init(cfg: dict) -> str | None:
    """MLI interpolates from each network's initial weights, which an imported zoo's source did not keep."""
    if (cfg.get("imported") or {}).get("format") == "authors":
        return "mli needs initial weights, and the authors' zoo kept final weights only"
    if cfg["model"]["arch"] == "gnn":
        return "mli is not implemented for graph networks (lmc is: symzoo lmc ZOO --out DIR)"
    return None


SPEC = StageSpec(
    name="mli",
    title="Monotonic linear interpolation (paper Table 4)",
    help="monotonic linear interpolation from init to trained weights (paper Table 4)",
    item="curve",
    options=MliOptions,
    check=check_options,
    identity=IDENTITY,
    seed_options=("sample", "sample_seed"),
    run=mli_stage,
    needs=needs_init,
    add_arguments=add_arguments,
    overrides=overrides_from,
)
