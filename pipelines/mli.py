"""``symzoo mli``: monotonic linear interpolation (paper Table 4) on a stored zoo.

Work units are groups of one variant's finished networks and one loss measurement; each Ray task evaluates its
networks' lines from initial to final weights (``analysis.mli.mli_curves``, packed) and its curves land in
``units/<key>.parquet``; a rerun evaluates only the missing units. The driver reads the weights and sends them
with the unit, so workers need no shared filesystem.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import torch

from analysis.features import rows_finite, zoo_fingerprint
from analysis.mli import MEASUREMENTS, mli_table, per_network_stats
from analysis.options import resolve
from analysis.paper import is_paper_resnet8_zoo
from analysis.plots import plot_delta_histogram, plot_mli_curves
from pipelines.outputs import (
    check_out_dir,
    check_stage_dir,
    claim_stage_dir,
    is_done,
    mark_done,
    read_unit_files,
    remove_stale_temporaries,
    write_parquet,
)
from pipelines.stage import WorkUnit, analysis_resources, connect, describe_cluster, run_unit_files
from symzoo.errors import ZooError
from zoo.data import Dataset
from zoo.store import Zoo, open_zoo


@dataclass
class LandscapeResult:
    out: Path
    table: str
    evaluated: int  # units evaluated in this call
    kept: int  # units found finished


def usable_networks(zoo: Zoo, kinds: tuple[str, ...]) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Finished networks with finite stored weights of every kind in ``kinds``, and per variant what was
    skipped and why (a diverged or failed network is reported, never fatal)."""
    frame = zoo.frame
    finite = np.ones(len(frame), bool)
    for kind in kinds:
        finite &= rows_finite(zoo.weights(kind))
    ok = (frame["status"] == "ok").to_numpy() & finite
    skipped: dict[str, dict[str, int]] = {}
    for v, g in frame.groupby("variant"):
        reasons = {str(s): int(n) for s, n in g.loc[g["status"] != "ok", "status"].value_counts().items()}
        bad = int(((g["status"] == "ok").to_numpy() & ~finite[g.index]).sum())
        if bad:
            reasons["non-finite weights"] = bad
        skipped[str(v)] = reasons
    return frame[ok].reset_index(drop=True), skipped


def device_for_task() -> torch.device:
    return torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")


@ray.remote
def mli_task(payload: dict, cfg: dict, data: Dataset, opts: dict, progress, unit: int) -> pd.DataFrame:
    """Ray task: one unit's curves on this worker's device."""
    from analysis.mli import mli_curves

    torch.set_num_threads(max(1, int(opts["cpus_per_task"])))
    device = device_for_task()
    per_pack = 8 if device.type == "cuda" else 1
    curves = mli_curves(
        payload["networks"],
        payload["init"],
        payload["final"],
        cfg,
        data.to(device),
        opts["alphas"],
        [payload["measurement"]],
        opts["batch_size"],
        per_pack,
    )
    progress.set.remote(unit, len(payload["networks"]))
    return curves


def plan_mli_units(zoo: Zoo, networks: pd.DataFrame, opts: dict, units_dir: Path) -> list[WorkUnit]:
    """Groups of ``networks_per_unit`` networks of one variant, for each measurement; weights go with them."""
    measurements = list(MEASUREMENTS) if opts["loss"] == "both" else [opts["loss"]]
    units = []
    for variant, g in networks.groupby("variant", sort=False):
        ids = g["model_id"].tolist()
        init = zoo.weights("init", model_ids=ids)
        final = zoo.weights("final", model_ids=ids)
        per = opts["networks_per_unit"]
        for start in range(0, len(ids), per):
            part = g.iloc[start : start + per][["model_id", "variant", "seed", "label_smoothing"]]
            for m in measurements:
                key = f"{m}-{variant}-{part['model_id'].iloc[0]}-{part['model_id'].iloc[-1]}-{len(part)}"
                payload = {
                    "key": key,
                    "measurement": m,
                    "networks": part.reset_index(drop=True),
                    "init": init[start : start + per],
                    "final": final[start : start + per],
                }
                units.append(WorkUnit(len(units), units_dir / f"{key}.parquet", payload, len(part)))
    return units


def check_landscape_zoo(zoo: Zoo, needs: str) -> None:
    if not zoo.manifest.get("complete"):
        raise ZooError(
            f"{zoo.path} is an incomplete zoo ({len(zoo.frame)} networks so far); finish it with "
            "`symzoo generate` and its config before analysing it"
        )
    if needs not in zoo.weight_kinds():
        raise ZooError(f"{zoo.path} stores no {needs} weights; this stage needs them")


def mli_stage(
    zoo_dir: str | Path,
    out: str | Path,
    config_section: dict | None = None,
    overrides: dict | None = None,
    address: str | None = None,
    show_progress: bool = True,
) -> LandscapeResult:
    out = Path(out)
    check_out_dir(out)
    zoo = open_zoo(zoo_dir)
    opts = resolve("mli", zoo.config.get("mli"), config_section, overrides)
    check_landscape_zoo(zoo, "init")
    identity = {"zoo_fingerprint": zoo_fingerprint(zoo), "alphas": opts["alphas"]}
    identity["networks_per_unit"] = opts["networks_per_unit"]
    check_stage_dir(out, "mli", identity)
    done_key = {k: v for k, v in opts.items() if k not in ("cpus_per_task", "gpus_per_task")}
    if is_done(out, done_key):
        print(f"symzoo: {out} already holds the complete mli results; nothing to do", file=sys.stderr)
        return LandscapeResult(out, (out / "table.md").read_text(), 0, len(list((out / "units").glob("*.parquet"))))
    data = zoo.dataset()
    networks, skipped = usable_networks(zoo, ("init", "final"))
    if networks.empty:
        raise ZooError(f"{zoo.path} has no finished network with finite weights to interpolate")
    connect(address)  # before anything is written: a wrong address leaves no trace
    claim_stage_dir(out, "mli", identity)
    units_dir = out / "units"
    units_dir.mkdir(exist_ok=True)
    remove_stale_temporaries(units_dir)
    units = plan_mli_units(zoo, networks, opts, units_dir)
    start = time.perf_counter()
    print(
        f"symzoo: mli of {len(networks)} networks of {zoo.config['name']} ({opts['alphas']} alphas, loss "
        f"{opts['loss']}) in {len(units)} units -> {out}",
        file=sys.stderr,
    )
    resources = analysis_resources(opts["cpus_per_task"], opts["gpus_per_task"], 0.5)
    report = run_unit_files(
        units,
        mli_task,
        (zoo.config, ray.put(data), opts),
        out,
        lambda u: u.payload["key"],
        resources,
        "mli",
        show_progress,
    )
    curves = read_unit_files([u.output for u in units]).drop(columns="key")
    table = write_mli_outputs(out, zoo, opts, curves, skipped)
    mark_done(out, done_key, time.perf_counter() - start, describe_cluster())
    print(
        f"symzoo: {len(report.done)} mli units evaluated in {time.perf_counter() - start:.0f} s, "
        f"{len(report.skipped)} were already done",
        file=sys.stderr,
    )
    return LandscapeResult(out, table, len(report.done), len(report.skipped))


def write_mli_outputs(out: Path, zoo: Zoo, opts: dict, curves: pd.DataFrame, skipped: dict) -> str:
    """curves.parquet, stats.parquet, table.md and figures, from the unit files alone."""
    curves = curves.sort_values(["measurement", "model_id", "alpha"], ignore_index=True)
    write_parquet(out / "curves.parquet", curves)
    stats = per_network_stats(curves)
    write_parquet(out / "stats.parquet", stats)
    variants = [v for v in zoo.config["variants"] if v in set(stats["variant"])]
    with_paper = is_paper_resnet8_zoo(zoo.config)
    parts = ["# Monotonic linear interpolation (paper Table 4)", ""]
    for m in dict.fromkeys(curves["measurement"]):
        parts.append(mli_table(stats, variants, m, with_paper))
    notes = [
        f"zoo {zoo.config['name']} ({zoo.config['model']['arch']} on {zoo.config['data']['name']}); "
        f"loss = training loss label-smoothed with each network's own smoothing, at {opts['alphas']} evenly spaced "
        "alphas from the initial (0) to the final (1) weights; mean +- std over networks",
        "Delta = largest rise between neighbouring points (monotonic iff Delta <= 0); local convexity = fraction of "
        "interior points with a non-negative second difference; global convexity as defined = fraction of interior "
        "points on or below the chord from L(0) to L(1); as in the authors' code = below the line through L(0) and "
        "L(alpha_1), which every non-increasing curve passes with 1.0",
        "skipped: "
        + "; ".join(f"{v}: " + (", ".join(f"{n} {why}" for why, n in r.items()) or "none") for v, r in skipped.items()),
        "paper: 300 CIFAR-10 ResNet8s per family, paper Table 8 hyperparameters, measured augmented; its global "
        "convexity column is the authors' code's"
        if with_paper
        else "the paper's Table 4 is on CIFAR-10 ResNet8s trained with the paper's recipe; this zoo is not, so "
        "no paper values are printed beside it (SPEC section 4: briefly trained networks are nearly all monotonic)",
    ]
    table = "\n".join(parts) + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    (out / "table.md").write_text(table)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for m in dict.fromkeys(curves["measurement"]):
        plot_mli_curves(curves[curves["measurement"] == m], figures / f"mli_curves_{m}.png", f"{m} loss")
        plot_delta_histogram(stats[stats["measurement"] == m], figures / f"delta_hist_{m}.png", m)
    return table
