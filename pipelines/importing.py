"""``symzoo import``: another project's zoo as an ordinary symzoo zoo, converted on Ray one shard per work unit
(written where it runs, resumable after a kill, with progress), exactly as ``symzoo generate`` writes a zoo.

Formats (docs/zoo.md, "Bring your own zoo"): ``authors``, the paper's own ResNet8 zoo (``zoo/formats/authors.py``).
The imported zoo's config records the format, the source folder and each sample's hyperparameters
(``imported``), so its plan, its config hash and its rerun follow from the manifest as a generated zoo's do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from symzoo.errors import ZooError
from symzoo.pipelines.generate import ShardJob, _generate_locked, check_not_inside_a_zoo
from symzoo.pipelines.shard import layouts_for
from symzoo.pipelines.stage import Written
from symzoo.pipelines.units import WorkUnit
from symzoo.zoo.config import config_hash, validate
from symzoo.zoo.data import load_configured
from symzoo.zoo.formats import authors
from symzoo.zoo.layers import encode_fixed_structure
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.location import Location, location
from symzoo.zoo.lock import directory_lock
from symzoo.zoo.plan import NetSpec, plan_configured
from symzoo.zoo.store import rows_to_table, shard_path, write_shard

FORMATS = ("authors",)
NETWORKS_PER_SHARD = 64


def import_zoo(
    fmt: str,
    source: str | Path,
    out: str | Location,
    data: str = "cifar10",
    data_root: str | None = None,
    hparams: str | Path | None = None,
    address: str | None = None,
    show_progress: bool = True,
    networks_per_shard: int = NETWORKS_PER_SHARD,
):
    """Import ``source`` (a folder in format ``fmt``) into the zoo ``out``; a rerun finishes what a killed one left."""
    if fmt not in FORMATS:
        raise ZooError(f"unknown zoo format {fmt!r}; choose one of {', '.join(FORMATS)}")
    root = Path(source).expanduser().resolve()
    found = authors.find_networks(root)
    for skipped in authors.unsupported_types(root):
        print(f"symzoo: warning: not importing {skipped}", file=sys.stderr)
    hparams_path = Path(hparams) if hparams else root / "hparams.csv"
    rows = authors.read_hparams(hparams_path)
    beyond = sorted(i for files in found.values() for i in files if i >= len(rows))
    if beyond:
        raise ZooError(f"{hparams_path} has {len(rows)} rows but {root} holds index {beyond[0]}; pass its hparams.csv")
    variants = [v for v in ("standard", "w_asym") if v in found]
    raw = {
        "name": root.name or "imported",
        "data": {"name": data, "root": data_root},
        "model": {"arch": "resnet8"},
        "variants": variants,
        "networks": len(rows),
        "imported": {"format": fmt, "source": str(root), "hparams": rows},
        "execution": {"networks_per_shard": networks_per_shard},
    }
    dataset = load_configured(validate(raw)["data"])  # before anything is written: missing data fails here
    if "w_asym" in found:
        template = validate(raw)
        layout = layouts_for({**template, "variants": ["standard"]}, dataset)["standard"]  # names and shapes
        raw["model"]["fixed_structure"] = zoo_structure(found["w_asym"], layout)
    cfg = validate(raw)
    out = location(out)
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file; pass a new or existing zoo directory")
    check_not_inside_a_zoo(out)
    layouts = layouts_for(cfg, dataset)
    units = plan_units(cfg, out)
    sources = {v: {i: str(p) for i, p in files.items()} for v, files in found.items()}
    job = ShardJob(import_shard, sources, "imported")
    with directory_lock(out, "symzoo import"):
        return _generate_locked(cfg, out, dataset, layouts, units, show_progress, address, job)


def zoo_structure(files: dict[int, Path], layout: ParamLayout) -> dict:
    """The zoo's W-Asym masks and fixed values, from its first W-Asym network whose weights are finite (their
    masks are files shared by the whole zoo; ``authors.to_flat`` checks every network against this one)."""
    for index in sorted(files):
        state, _ = authors.load_file(files[index])
        if all(v.isfinite().all() for v in state.values()):
            masks, fixed = authors.fixed_structure(state, layout)
            if not masks:
                raise ZooError(f"{files[index]} has no .mask entries: it is no W-Asym (sparse_resnet8) network")
            return encode_fixed_structure(masks, fixed)
    raise ZooError("every W-Asym network holds NaN or infinite weights; there is no fixed structure to read")


def plan_units(cfg: dict, out: Location) -> list[WorkUnit]:
    """Shards of neighbouring samples (every variant of a sample in one shard), in plan order."""
    specs = plan_configured(cfg)
    per = cfg["execution"]["networks_per_shard"] * len(cfg["variants"])
    chunks = [specs[i : i + per] for i in range(0, len(specs), per)]
    return [WorkUnit(i, shard_path(out, i), chunk, len(chunk)) for i, chunk in enumerate(chunks)]


def import_shard(  # a Ray task, like generate's train_shard; plain Python without Ray
    specs: list[NetSpec],
    cfg: dict,
    sources: dict[str, dict[int, str]],
    layouts_json: dict,
    write_to: Location | None,
    progress,
    unit: int,
):
    """Convert one shard's networks; returns a ``Written`` receipt where this worker wrote it, else the table."""
    torch.set_num_threads(1)
    table = import_shard_table(specs, cfg, sources, layouts_json, lambda n: progress.set.remote(unit, n))
    if write_to is not None:
        try:
            return Written(write_shard(write_to, unit, table))
        except (ZooError, OSError) as e:
            print(f"symzoo: this worker cannot write {write_to} ({e}); the driver writes the shard", file=sys.stderr)
    return table


def import_shard_table(specs: list[NetSpec], cfg: dict, sources: dict, layouts_json: dict, on_progress=None):
    """The shard's rows as the Arrow table a zoo stores (no Ray): every planned network, imported, diverged
    (non-finite weights, kept as they are) or failed (no file, or not the zoo's fixed structure)."""
    layouts = {v: ParamLayout.from_json(j) for v, j in layouts_json.items()}
    structure = stored_structure(cfg, layouts)
    rows = []
    for done, spec in enumerate(specs, start=1):
        path = sources.get(spec.variant, {}).get(spec.sample)
        rows.append(network_row(cfg, spec, Path(path) if path else None, layouts[spec.variant], structure))
        if on_progress and done % 8 == 0:
            on_progress(done)
    return rows_to_table(rows, layouts_json, cfg["training"]["checkpoint_epochs"], config_hash(cfg))


def stored_structure(cfg: dict, layouts: dict[str, ParamLayout]) -> tuple[dict, dict] | None:
    """The zoo's W-Asym masks and fixed values by weight name, decoded from its config, or None."""
    from symzoo.zoo.layers import decode_fixed_structure

    entries = cfg["model"].get("fixed_structure")
    if not entries or "w_asym" not in layouts:
        return None
    shapes = {s.name: s.shape for s in layouts["w_asym"].slots}
    decoded = {name: decode_fixed_structure(e, torch.Size(shapes[name])) for name, e in entries.items()}
    return {n: m for n, (m, _) in decoded.items()}, {n: f for n, (_, f) in decoded.items()}


def network_row(
    cfg: dict, spec: NetSpec, path: Path | None, layout: ParamLayout, structure: tuple[dict, dict] | None
) -> dict:
    """One network's row. The source stores final weights and test accuracy only: no initial weights (null), no
    losses or training history (NaN, empty); its epochs are taken as trained (``epochs_done``)."""
    row = spec.row() | {
        "arch": cfg["model"]["arch"],
        "dataset": cfg["data"]["name"],
        "weights_init": None,
        "weights_final": None,
        "epochs_done": 0,
        "seconds": float("nan"),
        "history_train_loss": [],
        "history_train_acc": [],
        **dict.fromkeys(["train_loss", "train_acc", "test_loss", "test_acc"], float("nan")),
    }
    if path is None:
        return row | {"status": "failed", "reason": f"no file for index {spec.sample} in the source"}
    state, test_acc = authors.load_file(path)
    own = structure if spec.variant == "w_asym" else None
    try:
        flat = authors.to_flat(path, state, layout, own)
    except authors.FixedStructureMismatch as e:
        return row | {"status": "failed", "reason": f"{path.name}: {e}"}
    finite = bool(np.isfinite(flat).all())
    return row | {
        "status": "ok" if finite else "diverged",
        "reason": "" if finite else f"{path.name} holds non-finite weights",
        "epochs_done": spec.hparams.epochs,
        "test_acc": test_acc,
        "weights_final": flat,
    }
