"""``symzoo lmc``: linear mode connectivity between replicates (paper Table 1) on a stored zoo.

Work units are groups of replicate pairs of one variant; each Ray task evaluates its pairs' lines (and, for
standard networks, the lines after Git Re-Basin weight matching) on the test set, and its curves land in
``units/<key>.parquet``; a rerun evaluates only the missing units.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import torch

from symzoo.analysis.features import sample_per_variant, usable_networks
from symzoo.analysis.lmc import METHODS, barriers, lmc_table, paper_setting, replicate_pairs
from symzoo.analysis.plots import plot_lmc_curves
from symzoo.analysis.tables import sample_note, skipped_note
from symzoo.errors import ZooError
from symzoo.pipelines.analysis_stage import AnalysisStage, StageResult
from symzoo.pipelines.outputs import write_parquet
from symzoo.pipelines.stage import WorkUnit, device_for_task
from symzoo.zoo.data import Dataset
from symzoo.zoo.models import describe_fixed_structure
from symzoo.zoo.store import Zoo


@ray.remote
def lmc_task(payload: dict, cfg: dict, data: Dataset, opts: dict, progress, unit: int) -> pd.DataFrame:
    """Ray task: one unit's pairs on this worker's device."""
    from symzoo.analysis.lmc import lmc_curves

    torch.set_num_threads(max(1, int(opts["cpus_per_task"])))
    device = device_for_task()
    curves = lmc_curves(
        payload["pairs"],
        payload["final_a"],
        payload["final_b"],
        cfg,
        data.to(device),
        opts["alphas"],
        opts["batch_size"],
        opts["rebasin"],
    )
    progress.set.remote(unit, len(payload["pairs"]))
    return curves


def plan_lmc_units(
    pairs: pd.DataFrame, networks: pd.DataFrame, final: np.ndarray, opts: dict, units_dir: Path
) -> list[WorkUnit]:
    """Groups of ``pairs_per_unit`` pairs of one variant; both ends' final weights (``final``, row for row with
    ``networks``) go with them."""
    row_of = pd.Series(networks.index, index=networks["model_id"])
    units = []
    per = opts["pairs_per_unit"]
    for variant, g in pairs.groupby("variant", sort=False):
        g = g.reset_index(drop=True)
        final_a = final[row_of[g["model_a"]].to_numpy()]
        final_b = final[row_of[g["model_b"]].to_numpy()]
        for start in range(0, len(g), per):
            part = g.iloc[start : start + per].reset_index(drop=True)
            key = f"{variant}-{part['sample'].iloc[0]}-{part['sample'].iloc[-1]}-{len(part)}"
            payload = {"key": key, "pairs": part, "final_a": final_a[start : start + per]}
            payload["final_b"] = final_b[start : start + per]
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
    identity_options = ("alphas", "rebasin", "pairs_per_unit", "sample", "sample_seed")
    stage = AnalysisStage.open("lmc", zoo_dir, out, config_section, overrides, identity_options)
    zoo, opts = stage.zoo, stage.opts
    stage.require_weights("final")
    if zoo.config["replicates"] < 2:
        raise ZooError(
            f"{zoo.path} has no replicates (replicates: {zoo.config['replicates']}); LMC pairs networks of the same "
            "hyperparameters: generate a zoo with replicates: 2 (e.g. configs/fashion_mlp_lmc.yaml)"
        )
    if done := stage.finished():
        return done
    ids = None
    if opts["sample"] is not None:  # only the drawn pairs' networks are read
        drawn = sample_per_variant(replicate_pairs(zoo.frame), opts["sample"], opts["sample_seed"])
        ids = np.union1d(drawn["model_a"], drawn["model_b"])
    networks, skipped, weights = usable_networks(zoo, ("final",), ids)
    pairs = replicate_pairs(zoo.frame[zoo.frame["model_id"].isin(networks["model_id"])])
    if pairs.empty:
        raise ZooError(f"{zoo.path} has no pair of finished replicates to interpolate between")
    data = zoo.dataset()
    with stage.running(address):
        units = plan_lmc_units(pairs, networks, weights["final"], opts, stage.units_dir)
        print(
            f"symzoo: lmc of {len(pairs)} replicate pairs of {zoo.config['name']} ({opts['alphas']} alphas"
            f"{', Git Re-Basin for standard pairs' if opts['rebasin'] else ''}) in {len(units)} units -> {stage.out}",
            file=sys.stderr,
        )
        curves = stage.run_on_data(units, lmc_task, data, show_progress)
        return stage.finish(write_lmc_outputs(stage.out, zoo, opts, curves, skipped))


def write_lmc_outputs(out: Path, zoo: Zoo, opts: dict, curves: pd.DataFrame, skipped: dict) -> str:
    curves = curves.sort_values(["method", "sample", "alpha"], ignore_index=True)
    write_parquet(out / "curves.parquet", curves)
    table_barriers = barriers(curves)
    write_parquet(out / "barriers.parquet", table_barriers)
    _, label = paper_setting(zoo.config)
    notes = [
        f"zoo {zoo.config['name']}: pairs are replicates of one hyperparameter sample (same hyperparameters, masks and "
        "F; different init seed and data order); barrier = L(midpoint) - (L(A) + L(B)) / 2, plain cross-entropy on "
        f"the test set; mean +- std over pairs [95% interval of the mean]; {opts['alphas']} alphas",
        "Git Re-Basin: weight matching (coordinate descent over the permutations in random order, linear "
        "assignment each, at most 100 sweeps), B permuted onto A; standard networks only",
        describe_fixed_structure(zoo.config),
        sample_note(opts, zoo, "replicate pairs"),
        skipped_note(skipped),
    ]
    table = "# Linear mode connectivity (paper Table 1)\n\n" + lmc_table(table_barriers, zoo.config)
    table += "\n" + "\n".join(f"- {n}" for n in notes if n) + "\n"
    (out / "table.md").write_text(table)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    plot_lmc_curves(curves, figures / "lmc_curves.png", METHODS, label)
    return table
