"""``symzoo generate``: train a zoo on Ray, one Parquet shard per work unit, resumable at shard granularity."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch

from symzoo.errors import ZooError
from symzoo.pipelines.manifest import finalize_manifest, prepare_manifest
from symzoo.pipelines.registry import load_study_config
from symzoo.pipelines.shard import dataset_from, layouts_for, shard_specs, train_shard_table, training_line
from symzoo.pipelines.stage import StageReport, Written, check_fits, connect, run_pending, sort_units, workers_reach
from symzoo.pipelines.units import WorkUnit
from symzoo.zoo.config import config_hash
from symzoo.zoo.data import Dataset
from symzoo.zoo.inr_fit import check_inr_data
from symzoo.zoo.location import Location, location
from symzoo.zoo.lock import directory_lock, holds_anything
from symzoo.zoo.plan import NetSpec
from symzoo.zoo.store import (
    MANIFEST,
    MODELS,
    check_shard,
    file_sha256,
    quarantine,
    read_manifest,
    shard_path,
    weight_columns,
    write_shard,
)
from symzoo.zoo.train import steps_per_epoch


@dataclass(frozen=True)
class ShardJob:
    """How a zoo's shards are made: ``task(specs, cfg, shared, layouts_json, write_to, progress, unit)`` runs on
    a worker and returns a ``Written`` receipt or the shard's table; ``shared`` goes to every task once (the data
    set for training, the source files for an import); ``verb`` says what was done, for the closing line."""

    task: Callable[..., Any]
    shared: Any
    verb: str


def train_shard(  # a Ray task: resources and retries come from the config, through run_pending's .options
    spec_rows: list[NetSpec],
    cfg: dict,
    data: Dataset,
    layouts_json: dict,
    write_to: Location | None,
    progress,
    unit: int,
):
    """Ray task: train one shard's networks on this worker's device. With ``write_to`` (the zoo, where this worker
    reaches it) the worker writes the shard and returns a ``Written`` receipt; else the shard as an Arrow table."""
    threads = max(1, int(cfg["execution"]["cpus_per_task"]))
    torch.set_num_threads(threads)
    use_gpu = cfg["execution"]["gpus_per_task"] > 0 and torch.cuda.is_available()
    data = data.to("cuda" if use_gpu else "cpu")
    table = train_shard_table(spec_rows, cfg, data, layouts_json, lambda n: progress.set.remote(unit, n))
    return written_or_table(write_to, unit, table)


def written_or_table(write_to: Location | None, unit: int, table):
    """A shard task's result: the shard written to the zoo where this worker reaches it (a ``Written`` receipt),
    else its table, for the driver to write."""
    if write_to is not None:
        try:
            return Written(write_shard(write_to, unit, table))
        except (ZooError, OSError) as e:  # workers_write: true, on a worker without the store's credentials
            print(f"symzoo: this worker cannot write {write_to} ({e}); the driver writes the shard", file=sys.stderr)
    return table


def check_not_inside_a_zoo(out: Location) -> None:
    """A zoo inside another zoo's ``models/`` folder would have its files read as that zoo's shards (pandas,
    Polars, DuckDB read every Parquet file there): refused, as the stages refuse outputs there."""
    if not isinstance(out, Path):
        return
    for folder in out.resolve().parents:
        if folder.name == MODELS and (folder.parent / MANIFEST).is_file():
            raise ZooError(
                f"--out {out} is inside the zoo {folder.parent}'s {MODELS}/ folder, where every Parquet file is read "
                "as a shard; put the new zoo beside it, e.g. --out zoos/NAME"
            )


def shard_resources(execution: dict) -> dict:
    """The Ray resources of one shard's task, from the config's execution section."""
    return {
        "num_cpus": execution["cpus_per_task"],
        "num_gpus": execution["gpus_per_task"],
        "max_retries": execution["max_retries"],
    }


def plan_units(cfg: dict, out: Location) -> list[WorkUnit]:
    """The zoo's shards (``pipelines.shard.shard_specs``) as work units writing to their Parquet paths."""
    return [WorkUnit(i, shard_path(out, i), chunk, len(chunk)) for i, chunk in enumerate(shard_specs(cfg))]


def generate(
    config_path: str | Path, out: str | Location | None = None, address: str | None = None, show_progress: bool = True
) -> StageReport:
    cfg = load_study_config(config_path)
    out = location(out) if out else Path("zoos") / cfg["name"]
    data = dataset_from(cfg)  # before anything is written: missing data fails here
    if cfg.get("task") == "inr":  # and an INR zoo whose networks are not its images
        check_inr_data(cfg, data)
    elif cfg["model"]["arch"] != "gnn":  # and a batch larger than the data (graphs train full-batch)
        steps_per_epoch(len(data.x_train), cfg["training"]["batch_size"])
    layouts = layouts_for(cfg, data)
    units = plan_units(cfg, out)
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file; pass a new or existing zoo directory")
    check_not_inside_a_zoo(out)
    # The lock first, in a second: a second writer is refused before it spends a minute starting Ray, and Ray starts
    # only when some shard is missing. A folder the lock created is removed again when nothing was written, so a
    # wrong address still leaves no trace.
    with directory_lock(out, "symzoo generate"):
        return _generate_locked(cfg, out, data, layouts, units, show_progress, address)


def _generate_locked(
    cfg: dict,
    out: Location,
    data: Dataset,
    layouts: dict,
    units: list,
    show_progress: bool,
    address: str | None,
    job: ShardJob | None = None,
) -> StageReport:
    """Write the zoo's missing shards and its manifest. ``job``: what makes a shard (training by default;
    ``pipelines.importing`` converts a source's files instead) and what it hands each task."""
    job = job or ShardJob(train_shard, data, "trained")
    if not all(u.output.exists() for u in units):  # before anything is written: a wrong address leaves no trace
        connect(address, num_cpus=None)
        check_fits(shard_resources(cfg["execution"]), cfg["name"])  # and so does a task no node can hold
    manifest = prepare_manifest(cfg, out, data, layouts, len(units))
    layouts_json = {v: layout.to_json() for v, layout in layouts.items()}

    recorded = manifest.get("shards", {})

    def check(unit: WorkUnit) -> None:
        """Footer, schema, rows against the plan (ids, seeds, hyperparameters) and layouts, then the bytes against
        the manifest's checksum. A shard the manifest does not record yet (written before a kill, or put there) is
        adopted only if every row is the planned network."""
        check_shard(unit.output, unit.payload, layouts_json, config_hash(cfg))
        name = unit.output.name
        if name in recorded and file_sha256(unit.output) != recorded[name]:
            recorded.pop(name)
            raise ZooError(f"shard {unit.output} differs from the checksum the manifest recorded")

    def write(unit: WorkUnit, table) -> str:
        return write_shard(out, unit.index, table)

    for stale in (out / MODELS).glob(".part-*.tmp-*"):  # a write cut short by a kill: incomplete by construction
        stale.unlink()
    planned = {u.output.name for u in units}
    for foreign in sorted((out / MODELS).glob("part-*.parquet")):
        if foreign.name not in planned:  # never adopted: moved aside where a person can look at it
            moved = quarantine(out, foreign)
            print(f"symzoo: warning: {foreign} is not a shard of this zoo's plan; moved to {moved}", file=sys.stderr)
    start = time.perf_counter()
    report, pending = sort_units(units, check, lambda u: quarantine(out, u.output))
    if pending:
        connect(address, num_cpus=None)  # already joined unless a shard was quarantined
        report = _run_shards(cfg, out, job, layouts_json, units, pending, report, write, show_progress)
    finalize_manifest(out, manifest, report.checksums, report.ok, len(units))
    trained = sum(units[i].size for i in report.done)
    seconds = time.perf_counter() - start
    print(
        f"symzoo: {job.verb} {trained} networks in {seconds:.0f} s; {len(report.skipped)} shards were already done"
        + (f"; {len(report.failed)} shards failed" if report.failed else ""),
        file=sys.stderr,
    )
    return report


def _run_shards(
    cfg: dict,
    out: Location,
    job: ShardJob,
    layouts_json: dict,
    units: list[WorkUnit],
    pending: list[WorkUnit],
    report: StageReport,
    write,
    show_progress: bool,
) -> StageReport:
    """The missing shards on Ray; workers write their own shards where they reach the zoo (``workers_reach``)."""
    execution = cfg["execution"]
    resources = shard_resources(execution)
    n_nets = sum(u.size for u in units)
    print(
        f"symzoo: {cfg['name']}: {n_nets} networks ({', '.join(cfg['variants'])}) in {len(units)} shards -> {out}",
        file=sys.stderr,
    )
    write_to = out if workers_reach(out, execution["workers_write"]) else None
    task_args = (cfg, ray.put(job.shared), layouts_json, write_to)
    return run_pending(units, pending, report, job.task, task_args, write, resources, cfg["name"], show_progress)


def describe_plan(config_path: str | Path, out: str | Location | None = None) -> str:
    """What ``generate`` would do: networks, shards, the first hyperparameter draws, storage, and what is done."""
    import pandas as pd

    cfg = load_study_config(config_path)
    out = location(out) if out else Path("zoos") / cfg["name"]
    data = dataset_from(cfg)
    layouts = layouts_for(cfg, data)
    units = plan_units(cfg, out)
    specs = sorted((s for u in units for s in u.payload), key=lambda s: s.model_id)
    n_vectors = len(weight_columns(cfg["training"]["checkpoint_epochs"]))
    size = next(iter(layouts.values())).size
    gib = len(specs) * n_vectors * size * 4 / 2**30
    done = [u.index for u in units if out.is_dir() and u.output.exists()]
    cfg_hash = config_hash(cfg)
    stale_note = ""
    if out.exists() and not out.is_dir():
        stale_note = f"; --out {out} is a file: generate would refuse it"
    elif (out / MANIFEST).exists():
        stored_hash = read_manifest(out)["config_hash"]
        if stored_hash != cfg_hash:
            stale_note = f", made from another config (hash {stored_hash}): generate would refuse"
    elif holds_anything(out):
        stale_note = f"; {out} holds files but no zoo: generate would refuse it"
    lines = [
        f"{cfg['name']}: {len(specs)} networks = {cfg['networks']} samples x {cfg['replicates']} replicate(s) x "
        f"{len(cfg['variants'])} variant(s) ({', '.join(cfg['variants'])}), {len(units)} shards of "
        f"{cfg['execution']['networks_per_shard']}",
        f"data {cfg['data']['name']} {tuple(data.in_shape)}: {len(data.x_train)} train / {len(data.x_test)} test; "
        f"{cfg['model']['arch']} with {size} parameters "
        f"({', '.join(f'{v} {lay.n_trainable} trainable' for v, lay in layouts.items())})",
        training_line(cfg),
        f"storage: about {gib:.2f} GiB of weights ({n_vectors} vectors per network) -> {out}",
        f"config hash {cfg_hash}; {len(done)} of {len(units)} shards already in {out}" + stale_note,
        "",
        "first hyperparameter samples:",
        pd.DataFrame([s.row() for s in specs[: min(len(specs), 6)]]).to_string(index=False),
    ]
    return "\n".join(lines)
