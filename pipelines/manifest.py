"""A zoo's manifest as ``symzoo generate`` keeps it: created from the config, checked on a rerun, rebuilt when
damaged, completed from the shards. No Ray in here, so a machine without Ray (the device machines; see
``pipelines/local.py``) writes a zoo exactly as generate's driver would.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from symzoo.errors import ZooError
from symzoo.zoo.config import config_hash
from symzoo.zoo.data import Dataset
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.location import Location
from symzoo.zoo.lock import holds_anything
from symzoo.zoo.splits import seeded_splits, stored_source, write_splits
from symzoo.zoo.store import (
    MANIFEST,
    MODELS,
    ManifestDamaged,
    check_manifest,
    file_sha256,
    new_manifest,
    open_zoo,
    quarantine,
    read_manifest,
    write_manifest,
)
from symzoo.zoo.symmetry import variant_symmetries


def prepare_manifest(cfg: dict, out: Location, data: Dataset, layouts: dict[str, ParamLayout], n_shards: int) -> dict:
    """Create the manifest, or check that an existing zoo at ``out`` was made from this very config."""
    h = config_hash(cfg)
    if (out / MANIFEST).exists() or (out / MODELS).is_dir():
        try:
            manifest = read_manifest(out)
            if manifest["config_hash"] == h:  # this zoo's manifest: well formed, or rebuilt from the shards
                check_manifest(out, manifest)
        except ManifestDamaged as e:
            return rebuild_manifest(cfg, out, data, layouts, n_shards, str(e))
        if manifest["config_hash"] != h:
            raise ZooError(
                f"{out} holds a zoo from a different config (hash {manifest['config_hash']}, this one {h}); "
                "use another --out or the zoo's own config"
            )
        if manifest["dataset_fingerprint"] != data.fingerprint():
            raise ZooError(
                f"{out} was trained on different data (fingerprint {manifest['dataset_fingerprint']}); "
                "restore that data set or use another --out"
            )
        return manifest
    if holds_anything(out):
        raise ZooError(f"{out} exists and is not a zoo; choose an empty or new --out directory")
    return create_manifest(cfg, out, data, layouts, n_shards)


def create_manifest(cfg: dict, out: Location, data: Dataset, layouts: dict[str, ParamLayout], n_shards: int, **extra):
    """Write the manifest of a zoo that has none (or whose own was moved aside) and return it."""
    manifest = new_manifest(
        cfg, config_hash(cfg), layouts, data.fingerprint(), data.in_shape, data.num_classes, n_shards
    )
    manifest["symmetries"] = variant_symmetries(cfg, data.in_shape, data.num_classes)
    write_manifest(out, manifest | extra)
    return manifest | extra


def rebuild_manifest(
    cfg: dict, out: Location, data: Dataset, layouts: dict[str, ParamLayout], n_shards: int, why: str
) -> dict:
    """A new manifest from ``cfg`` for a zoo whose manifest is damaged or gone; the old file is moved aside.

    The shards are then checked as on every rerun (footer, schema, planned ids and layouts): those that pass are
    kept and their checksums recorded, the others are quarantined and retrained.
    """
    print(f"symzoo: warning: {why.split('; rebuild')[0]}; rebuilding the manifest from the config", file=sys.stderr)
    if (out / MANIFEST).exists():
        moved = quarantine(out, out / MANIFEST)
        print(f"symzoo: the damaged manifest was moved to {moved}", file=sys.stderr)
    return create_manifest(cfg, out, data, layouts, n_shards, rebuilt=time.strftime("%Y-%m-%d %H:%M:%S"))


def finalize_manifest(out: Location, manifest: dict, checksums: dict[str, str], all_ok: bool, n_shards: int) -> None:
    """Record shard checksums (``checksums``: this run's, by file name) and counts; the zoo is complete when every
    planned shard exists and no shard failed (``all_ok``)."""
    shards = manifest.setdefault("shards", {})
    shards.update(checksums)
    for path in sorted((out / MODELS).glob("part-*.parquet")):
        if path.name not in shards:
            shards[path.name] = file_sha256(path)
    zoo = open_zoo(out, verify=False)
    frame = zoo.frame
    counts = frame.groupby(["variant", "status"]).size() if len(frame) else {}
    manifest["counts"] = {f"{v}/{s}": int(n) for (v, s), n in dict(counts).items()}
    manifest["n_networks"] = int(len(frame))
    manifest["complete"] = len(shards) == n_shards and all_ok
    manifest["mean_test_acc"] = {
        v: float(np.nanmean(g["test_acc"])) if g["test_acc"].notna().any() else None
        for v, g in frame.groupby("variant")
    }
    write_manifest(out, manifest)
    if manifest["complete"]:
        if stored_source(out) is None:  # the default paired split, written once
            write_splits(out, seeded_splits(frame, 0), "seed 0")
        from symzoo.zoo.card import write_card

        zoo.manifest = manifest  # the frame is read already
        write_card(zoo)
