"""Zoo storage: Parquet shards of one row per network, a manifest, and ``open_zoo`` to read them back.

Scalars come first, then per-epoch history lists, then weights as ``fixed_size_list<float32>[P]``, so pandas reads
the metadata without touching weights and a weight column becomes an ``(N, P)`` array without per-row copies.
Shards are written to a hidden temporary name and renamed atomically; a shard that exists is complete.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from symzoo import __version__
from symzoo.errors import ConfigError, ZooError
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.location import Location, arrow_path, atomic_write_bytes, location, require_reachable
from symzoo.zoo.plan import PLANNED_COLUMNS, NetSpec, plan_configured, plan_difference

SCHEMA_VERSION = 1
REGENERATE = "rerun `symzoo generate` with the zoo's config to quarantine and retrain it"
MANIFEST = "manifest.json"
MODELS = "models"
QUARANTINE = "quarantine"
ROW_GROUP_SIZE = 32

SCALAR_FIELDS: list[tuple[str, pa.DataType]] = [
    ("model_id", pa.int64()),
    ("sample", pa.int32()),
    ("replicate", pa.int32()),
    ("variant", pa.string()),
    ("seed", pa.int64()),
    ("arch", pa.string()),
    ("dataset", pa.string()),
    ("lr", pa.float64()),
    ("weight_decay", pa.float64()),
    ("label_smoothing", pa.float64()),
    ("epochs", pa.int32()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("epochs_done", pa.int32()),
    ("train_loss", pa.float64()),
    ("train_acc", pa.float64()),
    ("test_loss", pa.float64()),
    ("test_acc", pa.float64()),
    ("seconds", pa.float64()),
]
HISTORY_FIELDS = ("history_train_loss", "history_train_acc")


def weight_columns(checkpoint_epochs: list[int]) -> list[str]:
    return ["weights_init", "weights_final", *(f"weights_epoch_{e}" for e in checkpoint_epochs)]


def shard_schema(layouts_json: dict[str, dict], checkpoint_epochs: list[int]) -> pa.Schema:
    """The shard explains itself: schema version and every variant's layout travel in the file metadata."""
    size = next(iter(layouts_json.values()))["size"]
    fields = [pa.field(n, t) for n, t in SCALAR_FIELDS]
    fields += [pa.field(n, pa.list_(pa.float32())) for n in HISTORY_FIELDS]
    fields += [pa.field(n, pa.list_(pa.float32(), size)) for n in weight_columns(checkpoint_epochs)]
    meta = {"symzoo.schema_version": str(SCHEMA_VERSION), "symzoo.layouts": json.dumps(layouts_json)}
    return pa.schema(fields, metadata=meta)


def rows_to_table(rows: list[dict[str, Any]], layouts_json: dict[str, dict], checkpoint_epochs: list[int]) -> pa.Table:
    """Rows hold scalars, history lists and flat float32 weight arrays (or None where a network failed)."""
    schema = shard_schema(layouts_json, checkpoint_epochs)
    size = next(iter(layouts_json.values()))["size"]
    columns = []
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_fixed_size_list(f.type):
            valid = np.array([v is not None for v in values])
            flat = np.zeros((len(rows), size), np.float32)
            for i, v in enumerate(values):
                if v is not None:
                    flat[i] = np.asarray(v, np.float32)
            mask = pa.array(~valid) if not valid.all() else None
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), size, mask=mask))
        else:
            columns.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def shard_path(zoo_dir: Location, index: int) -> Location:
    return zoo_dir / MODELS / f"part-{index:05d}.parquet"


def write_parquet_atomically(path: Location, table: pa.Table, **options) -> str:
    """zstd Parquet, committed atomically (``atomic_write_bytes``); returns the file's sha256. ``options`` go to
    ``pq.write_table`` (e.g. ``row_group_size``). Shards and every stage's outputs are written through here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    # page CRCs: float weights barely compress, so zstd stores them raw and a flipped byte would decode silently
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True, **options)
    data = sink.getvalue().to_pybytes()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def write_shard(zoo_dir: Location, index: int, table: pa.Table) -> str:
    """Write a shard atomically; returns the file's sha256."""
    return write_parquet_atomically(shard_path(zoo_dir, index), table, row_group_size=ROW_GROUP_SIZE)


def check_shard(path: Location, planned: list[NetSpec] | None = None, layouts_json: dict | None = None) -> int:
    """Raise ``ZooError`` naming the shard unless its footer, schema version, rows (the ``planned`` networks: ids,
    seeds and hyperparameters) and variant layouts (``layouts_json``) are sound; returns rows. One footer read."""
    try:
        source, fs = arrow_path(path)
        shard = pq.ParquetFile(source, filesystem=fs, page_checksum_verification=True)  # reads the footer once
        metadata = shard.schema_arrow.metadata or {}
        version = metadata.get(b"symzoo.schema_version")
        rows = shard.read(columns=list(PLANNED_COLUMNS)).to_pydict() if planned is not None else None
    except (OSError, pa.ArrowException, KeyError) as e:  # KeyError: a Parquet file that is no symzoo shard
        require_reachable(path)
        raise ZooError(f"corrupt shard {path} ({type(e).__name__}: {str(e).splitlines()[0][:80]})") from None
    if version != str(SCHEMA_VERSION).encode():
        raise ZooError(f"shard {path} has schema version {version!r}, this symzoo reads {SCHEMA_VERSION}")
    if planned is not None and (difference := plan_difference(rows, planned)):
        raise ZooError(f"shard {path} holds {difference}")
    if layouts_json is not None and json.loads(metadata.get(b"symzoo.layouts", b"{}")) != layouts_json:
        raise ZooError(f"shard {path} holds networks of other layouts than this config's")
    return shard.metadata.num_rows


def quarantine(zoo_dir: Location, path: Location) -> Location:
    """Move a bad shard aside (never delete data) so the stage can retrain it."""
    dest = zoo_dir / QUARANTINE / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    path.replace(dest)
    return dest


def file_sha256(path: Location) -> str:
    source, fs = arrow_path(path)
    h = hashlib.sha256()
    with fs.open_input_stream(source) as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_parquet(path: Location, fix: str = "delete it and rerun the command that wrote it", **kwargs) -> pa.Table:
    """``pq.read_table`` of a local or object-store file (``columns=``, ``filters=`` as there). A file damaged
    inside (its footer may still be sound; every page written here carries a CRC, checked on each read) is one
    ``ZooError`` naming it and ``fix``, never a raw Arrow error or silently wrong weights."""
    source, fs = arrow_path(path)
    try:
        return pq.read_table(source, filesystem=fs, page_checksum_verification=True, **kwargs)
    except (OSError, pa.ArrowException) as e:
        require_reachable(path)  # an unreachable store is named as such, not as a damaged file
        why = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise ZooError(f"corrupt file {path} ({why}); {fix}") from None


def write_manifest(zoo_dir: Location, manifest: dict[str, Any]) -> None:
    zoo_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(zoo_dir / MANIFEST, json.dumps(manifest, indent=1).encode())


class ManifestDamaged(ZooError):
    """The manifest is missing beside shards, unreadable, or lacks what every manifest holds: rebuildable."""


MANIFEST_KEYS = ("schema_version", "config_hash", "config", "layouts", "n_shards", "shards", "dataset_fingerprint")


def read_manifest(zoo_dir: Location) -> dict[str, Any]:
    path = zoo_dir / MANIFEST
    rebuild = f"rebuild it from the shards with `symzoo generate <the zoo's config> --out {zoo_dir}`"
    if not path.is_file():
        if (zoo_dir / MODELS).is_dir():
            raise ManifestDamaged(f"{zoo_dir} has shards but no {MANIFEST}; {rebuild}")
        raise ZooError(f"{zoo_dir} is not a zoo (no {MANIFEST}); pass the --out directory of `symzoo generate`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestDamaged(f"{path} is damaged ({type(e).__name__}); {rebuild}") from None
    missing = [k for k in MANIFEST_KEYS if k not in manifest] if isinstance(manifest, dict) else ["everything"]
    if missing:
        raise ManifestDamaged(f"{path} is damaged (no {', '.join(missing)}); {rebuild}")
    return manifest


def new_manifest(
    cfg: dict,
    cfg_hash: str,
    layouts: dict[str, ParamLayout],
    data_fingerprint: str,
    in_shape: tuple,
    num_classes: int,
    n_shards: int,
) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "symzoo_version": __version__,
        "config_hash": cfg_hash,
        "config": cfg,
        "asym_seed": cfg["seed"],
        "dataset_fingerprint": data_fingerprint,
        "in_shape": list(in_shape),
        "num_classes": num_classes,
        "layouts": {variant: layout.to_json() for variant, layout in layouts.items()},
        "n_shards": n_shards,
        "complete": False,
        "shards": {},
        "counts": {},
    }


def fixed_size_to_numpy(column: pa.ChunkedArray, size: int, entries: np.ndarray | None = None) -> np.ndarray:
    """``(N, size)`` float32 array of a fixed-size-list column (only ``entries`` columns when given).

    One chunk without nulls and no ``entries`` is a zero-copy view of Arrow's buffer; otherwise each chunk is
    copied once, straight into the result. Null rows (e.g. the final weights of a failed network) become NaN.
    """
    chunks = [c for c in column.chunks if len(c)]
    if len(chunks) == 1 and chunks[0].null_count == 0 and entries is None:
        return chunks[0].flatten().to_numpy(zero_copy_only=True).reshape(-1, size)
    shape = (len(column), size if entries is None else len(entries))
    out = np.empty(shape, np.float32) if column.null_count == 0 else np.full(shape, np.nan, np.float32)
    row = 0
    for chunk in chunks:
        if chunk.null_count == 0:  # the usual case: a zero-copy view of the chunk, copied once into place
            values = chunk.flatten().to_numpy(zero_copy_only=True).reshape(-1, size)
            out[row : row + len(chunk)] = values if entries is None else values[:, entries]
        else:
            valid = chunk.is_valid().to_numpy(zero_copy_only=False)
            values = chunk.drop_null().flatten().to_numpy(zero_copy_only=False).reshape(-1, size)
            rows = np.arange(row, row + len(chunk))[valid]
            out[rows] = values if entries is None else values[:, entries]
        row += len(chunk)
    return out


@dataclass
class Zoo:
    """A stored zoo: metadata as a DataFrame, weights as arrays, any row as a working module."""

    path: Location  # a local directory or an object-store prefix (zoo/location.py)
    manifest: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @cached_property
    def layouts(self) -> dict[str, ParamLayout]:
        """Per variant: the same tensors and offsets, different trainable entries."""
        return {v: ParamLayout.from_json(j) for v, j in self.manifest["layouts"].items()}

    @property
    def n_params(self) -> int:
        return next(iter(self.layouts.values())).size

    def layout(self, variant: str) -> ParamLayout:
        if variant not in self.layouts:
            raise ZooError(f"variant {variant!r} is not in this zoo; it holds {', '.join(self.layouts)}")
        return self.layouts[variant]

    @cached_property
    def shards(self) -> list[Location]:
        """The planned shards that exist; a stray ``part-*.parquet`` beyond the plan is never read as the zoo's."""
        planned = {shard_path(self.path, i).name for i in range(self.manifest["n_shards"])}
        return sorted(p for p in (self.path / MODELS).glob("part-*.parquet") if p.name in planned)

    @property
    def complete(self) -> bool:
        """The manifest says so, every planned shard is on disk and every planned network is in them."""
        cfg, m = self.config, self.manifest
        planned = cfg["networks"] * cfg["replicates"] * len(cfg["variants"])
        return bool(m.get("complete")) and len(self.shards) == m["n_shards"] and len(self.frame) == planned

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Scalars and history of every network, sorted by model_id; no weights are read."""
        if not self.shards:
            return pd.DataFrame(columns=[n for n, _ in SCALAR_FIELDS])
        names = [n for n, _ in SCALAR_FIELDS] + list(HISTORY_FIELDS)
        table = pa.concat_tables(read_parquet(p, REGENERATE, columns=names) for p in self.shards)
        frame = table.to_pandas().sort_values("model_id", ignore_index=True)
        duplicated = frame.loc[frame["model_id"].duplicated(), "model_id"]
        if len(duplicated):
            raise ZooError(
                f"{self.path} holds model_id {int(duplicated.iloc[0])} more than once (a shard from another zoo?); "
                "run `symzoo generate` with the zoo's config to quarantine the foreign shard"
            )
        return frame

    def weights(
        self,
        which: str = "final",
        variant: str | None = None,
        model_ids: list[int] | None = None,
        trainable_only: bool = False,
    ) -> np.ndarray:
        """``(N, P)`` float32 weights (``which``: init, final or epoch_E) in model_id order; NaN rows where absent."""
        if which not in self.weight_kinds():
            raise ZooError(f"no weights {which!r}; this zoo stores {', '.join(self.weight_kinds())}")
        if trainable_only and variant is None:
            raise ZooError("trainable_only needs a variant= (variants differ in which entries are trainable)")
        column = f"weights_{which}"
        filters = []
        if variant is not None:
            filters.append(("variant", "=", variant))
        if model_ids is not None:
            filters.append(("model_id", "in", list(model_ids)))
        filters = filters or None
        # pass 1: which rows, in model_id order (shards group networks by length, not by id)
        ids = [
            read_parquet(p, REGENERATE, columns=["model_id"], filters=filters)["model_id"].to_numpy()
            for p in self.shards
        ]
        sorted_ids = np.sort(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
        entries = self.layout(variant).trainable_index if trainable_only else None
        out = np.empty((len(sorted_ids), self.n_params if entries is None else len(entries)), np.float32)
        # pass 2: one shard at a time straight into its rows, so memory peaks at the result plus one shard
        for path, shard_ids in zip(self.shards, ids, strict=True):
            if len(shard_ids):
                table = read_parquet(path, REGENERATE, columns=["model_id", column], filters=filters)
                rows = np.searchsorted(sorted_ids, table["model_id"].to_numpy())
                out[rows] = fixed_size_to_numpy(table[column], self.n_params, entries)
        return out

    def weight_kinds(self) -> list[str]:
        return [c.removeprefix("weights_") for c in weight_columns(self.config["training"]["checkpoint_epochs"])]

    def model(self, model_id: int, which: str = "final") -> nn.Module:
        """Rebuild network ``model_id`` (fixed structure from the zoo seed, F from its sample where the zoo draws
        F per network) with its stored weights."""
        from symzoo.zoo.models import build_configured

        row = self.frame.loc[self.frame["model_id"] == model_id]
        if row.empty:
            raise ZooError(f"model_id {model_id} is not in {self.path}")
        r = row.iloc[0]
        shape, classes = tuple(self.manifest["in_shape"]), self.manifest["num_classes"]
        model = build_configured(self.config, r["variant"], shape, classes, int(r["seed"]), int(r["sample"]))
        return self.layout(r["variant"]).load_into(model, self.weights(which, model_ids=[model_id])[0]).eval()

    def evaluate(self, model_id: int, split: str = "test", which: str = "final") -> dict[str, float]:
        """Plain cross-entropy and accuracy of a stored network on its zoo's data, normalised as in training.

        (Feeding ``x / 255`` instead of ``data.normalize(x)`` silently costs accuracy: the networks were trained
        on per-channel standardised inputs.)
        """
        from symzoo.zoo.train import evaluate

        if split not in ("train", "test"):
            raise ZooError(f"split {split!r} is not allowed; train or test")
        model, data = self.model(model_id, which), self.dataset()
        x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
        loss, acc = evaluate(model, data, x, y, batch_size=2000, amp=False)
        return {"loss": float(loss), "accuracy": float(acc)}

    def dataset(self):
        """The zoo's data set, loaded as its config says (its fingerprint is in the manifest)."""
        from symzoo.zoo.data import load_configured

        return load_configured(self.config["data"])

    def verify(self, checksums: bool = False) -> None:
        """Check every shard's footer (and, with ``checksums``, its sha256 against the manifest)."""
        recorded = self.manifest.get("shards", {})
        for p in self.shards:
            check_shard(p)
            if checksums and p.name in recorded and file_sha256(p) != recorded[p.name]:
                raise ZooError(
                    f"corrupt shard {p} (checksum differs from the manifest); rerun `symzoo generate` "
                    "with the zoo's config to retrain it"
                )
        if checksums:  # and every stored network is the one the zoo's config plans under its id
            plan = plan_configured(self.config)
            for p in self.shards:
                rows = read_parquet(p, REGENERATE, columns=list(PLANNED_COLUMNS)).to_pydict()
                ids = rows["model_id"]
                if any(not 0 <= i < len(plan) for i in ids):
                    raise ZooError(f"shard {p} holds model ids outside this zoo's plan; {REGENERATE}")
                if difference := plan_difference(rows, [plan[i] for i in ids]):
                    raise ZooError(f"shard {p} holds {difference}; {REGENERATE}")


def check_stored_config(zoo_dir: Location, cfg: object) -> None:
    """A shared zoo is input from elsewhere: its manifest's config is checked as strictly as a fresh one before
    anything acts on it (paths, data set names, counts)."""
    from symzoo.zoo.config import validate

    try:
        validate(cfg)
    except ConfigError as e:
        raise ZooError(f"{zoo_dir}/{MANIFEST} holds an invalid config ({e}); this is not a zoo symzoo wrote") from None


def open_zoo(path: str | Location, verify: bool = True) -> Zoo:
    """Open a zoo directory (or ``s3://`` / ``gs://`` prefix); ``verify`` checks every shard's footer so a truncated
    shard is named, not read."""
    zoo_dir = location(path)
    if zoo_dir.is_file():
        raise ZooError(f"{zoo_dir} is a file, not a zoo directory; pass the --out directory of `symzoo generate`")
    if not zoo_dir.is_dir():
        raise ZooError(f"zoo directory {zoo_dir} does not exist; pass the --out directory of `symzoo generate`")
    manifest = read_manifest(zoo_dir)
    check_stored_config(zoo_dir, manifest["config"])
    zoo = Zoo(zoo_dir, manifest)
    if verify:
        zoo.verify()
    return zoo


def flat_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().float().numpy()
