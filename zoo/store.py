"""Zoo storage: Parquet shards of one row per network, a manifest, and ``open_zoo`` to read them back.

Scalars come first, then per-epoch history lists, then weights, then their row checksums, so pandas reads the
metadata without touching weights and a weight column becomes an ``(N, P)`` array without per-row copies.
Shards are written to a hidden temporary name and renamed atomically; a shard that exists is complete.

Schema version 3 (versions 1 and 2 still open): rows are grouped by variant and no row group holds two variants,
so loading one variant reads only its row groups; a weight vector is one ``fixed_size_binary[4P]`` value holding
P little-endian float32s, stored uncompressed, and each weight column ``weights_X`` has a ``checksum_weights_X``
column (``row_checksums``) against which every read checks every row. Version 2 had no such column: its weights
were checked by Parquet's page CRCs alone, which halved read speed (a CRC32 runs at 2-3 GiB/s on a core here).
Version 1 stored ``fixed_size_list<float32>[P]`` under zstd: trained weights compress by 8%, and Parquet decodes a
list with a repetition and definition level per float, which read 3.2-3.7x slower than the same bytes as one
binary value (bench/weight_encoding.py, bench/RESULTS.md).
``np.frombuffer(value, "<f4")`` turns a stored value into its vector where pandas, Polars or DuckDB hand out
bytes.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch import nn

from symzoo import __version__
from symzoo.errors import ConfigError, ZooError
from symzoo.zoo.bayes_train import BAYES_HISTORY, ElrgSettings
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.location import Location, arrow_path, atomic_write_bytes, location, require_reachable
from symzoo.zoo.parquet_io import (
    CHECKSUM_PREFIX,
    is_vector_column,
    is_weight_column,
    read_parquet,
    write_parquet_atomically,
)
from symzoo.zoo.plan import PLANNED_COLUMNS, NetSpec, plan_configured, plan_difference
from symzoo.zoo.splits import SPLITS_FILE, check_splits, seeded_splits, stored_source

SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)  # 1: variants mixed within row groups, weights zstd; 2: no row checksums
REGENERATE = "rerun `symzoo generate` with the zoo's config to quarantine and retrain it"
MANIFEST = "manifest.json"
MODELS = "models"
QUARANTINE = "quarantine"
ROW_GROUP_SIZE = 32
READ_THREADS = 4  # shards read at once: reading, checks and copies release the GIL and overlap even on 2 cores
CONFIG_HASH_KEY = "symzoo.config_hash"  # shard metadata: the hash of the config that trained its networks
CHECKSUM_BLOCK = 1024  # uint32 words (4 KiB) summed per block of a row checksum

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
# A Bayesian zoo (training.method: elrg, zoo/bayes_train.py) adds the posterior predictive's calibration, its
# per-epoch test metrics and KL, and each network's variance parameters (``Zoo.posterior``).
BAYES_SCALAR_FIELDS: list[tuple[str, pa.DataType]] = [("test_ece", pa.float64())]
BAYES_HISTORY_FIELDS = tuple(f"history_{k}" for k in BAYES_HISTORY)
POSTERIOR_COLUMN = "posterior_final"
# An INR zoo (task: inr, zoo/inr_fit.py): each network's image (its split and index in the image data set, its
# class) and the fit's PSNR; its MSE is train_loss.
INR_SCALAR_FIELDS: list[tuple[str, pa.DataType]] = [
    ("image_split", pa.string()),
    ("image_index", pa.int64()),
    ("image_class", pa.int32()),
    ("psnr", pa.float64()),
]


WEIGHT_DTYPE = "<f4"  # how a weight value's bytes read: little-endian float32, whatever machine wrote them


def weight_columns(checkpoint_epochs: list[int]) -> list[str]:
    return ["weights_init", "weights_final", *(f"weights_epoch_{e}" for e in checkpoint_epochs)]


def shard_schema(
    layouts_json: dict[str, dict],
    checkpoint_epochs: list[int],
    config_hash: str | None = None,
    posterior_size: int | None = None,
    inr: bool = False,
) -> pa.Schema:
    """The shard explains itself: schema version, every variant's layout and the hash of the config that trained it
    travel in the file metadata (the hash: so that no zoo adopts a shard trained under another recipe). A Bayesian
    zoo's shards (``posterior_size`` given) add the ``BAYES_*`` fields and the posterior column, an INR zoo's
    (``inr``) the ``INR_SCALAR_FIELDS``."""
    size = next(iter(layouts_json.values()))["size"]
    bayes = posterior_size is not None
    scalars = SCALAR_FIELDS + (BAYES_SCALAR_FIELDS if bayes else []) + (INR_SCALAR_FIELDS if inr else [])
    fields = [pa.field(n, t) for n, t in scalars]
    fields += [pa.field(n, pa.list_(pa.float32())) for n in HISTORY_FIELDS + (BAYES_HISTORY_FIELDS if bayes else ())]
    vectors = {n: size for n in weight_columns(checkpoint_epochs)} | (
        {POSTERIOR_COLUMN: posterior_size} if bayes else {}
    )
    for n, width in vectors.items():
        fields.append(
            pa.field(n, pa.binary(4 * width), metadata={"symzoo.values": WEIGHT_DTYPE, "symzoo.size": str(width)})
        )
    fields += [pa.field(checksum_column(n), pa.uint64()) for n in vectors]
    meta = {"symzoo.schema_version": str(SCHEMA_VERSION), "symzoo.layouts": json.dumps(layouts_json)}
    if config_hash is not None:
        meta[CONFIG_HASH_KEY] = config_hash
    return pa.schema(fields, metadata=meta)


def checksum_column(weight_column: str) -> str:
    """The column holding each row's ``row_checksums`` of ``weight_column`` (schema 3)."""
    return CHECKSUM_PREFIX + weight_column


def row_checksums(rows: np.ndarray) -> np.ndarray:
    """One uint64 per row of ``(N, P)`` float32 weights: the row's bytes as little-endian uint32 words, summed in
    blocks of 4 KiB, the block sums weighted by 1, 3, 5, ... and added, all mod 2^64 (Fletcher's idea, by blocks).

    Why not Parquet's page CRC32: it runs at 2-3 GiB/s on a core here and halved ``Zoo.weights``; this runs at
    10+ GiB/s in numpy. What it catches: every single-bit error and every burst of up to 32 bits (a block sum moves
    by less than 2^52, times an odd weight: never 0 mod 2^64), a block moved or zeroed unless its sum is unchanged,
    and any other damage but for a chance of about 2^-64. It guards against storage and transfer, not attackers.
    """
    words = np.ascontiguousarray(rows, dtype=WEIGHT_DTYPE).view("<u4")
    n, p = words.shape
    full = p // CHECKSUM_BLOCK
    sums = np.empty((n, full + (p % CHECKSUM_BLOCK > 0)), np.uint64)
    sums[:, :full] = words[:, : full * CHECKSUM_BLOCK].reshape(n, full, CHECKSUM_BLOCK).sum(2, dtype=np.uint64)
    if p % CHECKSUM_BLOCK:
        sums[:, full] = words[:, full * CHECKSUM_BLOCK :].sum(1, dtype=np.uint64)
    return (sums * np.arange(1, 2 * sums.shape[1], 2, dtype=np.uint64)).sum(1, dtype=np.uint64)


def rows_to_table(
    rows: list[dict[str, Any]],
    layouts_json: dict[str, dict],
    checkpoint_epochs: list[int],
    config_hash: str | None = None,
    posterior_size: int | None = None,
    inr: bool = False,
) -> pa.Table:
    """Rows hold scalars, history lists and flat float32 weight arrays (or None where a network failed); the table
    comes out grouped by variant (in ``layouts_json``'s order, each variant's rows in their given order)."""
    schema = shard_schema(layouts_json, checkpoint_epochs, config_hash, posterior_size, inr)
    order = list(layouts_json)
    rows = sorted(rows, key=lambda r: order.index(r["variant"]))  # stable
    columns, checksums = [], {}
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if is_vector_column(f.name):
            size = vector_width(f.type)
            valid = np.array([v is not None for v in values], bool)
            flat = np.zeros((len(rows), size), WEIGHT_DTYPE)
            for i, v in enumerate(values):
                if v is not None:
                    flat[i] = np.asarray(v, np.float32)
            bitmap = pa.array(valid).buffers()[1] if not valid.all() else None
            buffers = [bitmap, pa.py_buffer(flat.tobytes())]
            columns.append(pa.FixedSizeBinaryArray.from_buffers(f.type, len(rows), buffers))
            checksums[checksum_column(f.name)] = pa.array(row_checksums(flat), pa.uint64(), mask=~valid)
        elif f.name in checksums:
            columns.append(checksums[f.name])
        else:
            columns.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def shard_path(zoo_dir: Location, index: int) -> Location:
    return zoo_dir / MODELS / f"part-{index:05d}.parquet"


def write_shard(zoo_dir: Location, index: int, table: pa.Table) -> str:
    """Write a shard atomically, one variant per row group; returns the file's sha256."""
    return write_parquet_atomically(shard_path(zoo_dir, index), table, ROW_GROUP_SIZE, split_by="variant")


def check_shard(
    path: Location,
    planned: list[NetSpec] | None = None,
    layouts_json: dict | None = None,
    config_hash: str | None = None,
    size: int | None = None,
) -> int:
    """Raise ``ZooError`` naming the shard unless its footer, schema version, rows (the ``planned`` networks: ids,
    seeds and hyperparameters), variant layouts (``layouts_json``) and the config that trained it (``config_hash``;
    shards written before shards recorded it pass) are sound; returns rows. One footer read."""
    try:
        source, fs = arrow_path(path)
        shard = pq.ParquetFile(source, filesystem=fs, page_checksum_verification=True)  # reads the footer once
        metadata = shard.schema_arrow.metadata or {}
        version = metadata.get(b"symzoo.schema_version")
        rows = shard.read(columns=list(PLANNED_COLUMNS)).to_pydict() if planned is not None else None
    except (OSError, pa.ArrowException, KeyError) as e:  # KeyError: a Parquet file that is no symzoo shard
        require_reachable(path)
        raise ZooError(f"corrupt shard {path} ({type(e).__name__}: {str(e).splitlines()[0][:80]})") from None
    if version not in [str(v).encode() for v in READABLE_SCHEMA_VERSIONS]:
        *first, last = map(str, READABLE_SCHEMA_VERSIONS)
        readable = f"{', '.join(first)} and {last}" if first else last
        raise ZooError(f"shard {path} has schema version {version!r}, this symzoo reads versions {readable}")
    if planned is not None and (difference := plan_difference(rows, planned)):
        raise ZooError(f"shard {path} holds {difference}")
    if layouts_json is not None and json.loads(metadata.get(b"symzoo.layouts", b"{}")) != layouts_json:
        raise ZooError(f"shard {path} holds networks of other layouts than this config's")
    if size is not None:
        for field in shard.schema_arrow:
            if is_weight_column(field.name):
                t = field.type
                stored = vector_width(t)
                if stored != size:
                    raise ZooError(
                        f"shard {path} stores {field.name} vectors of {stored} values, the manifest's layout {size}: "
                        f"the manifest does not describe its shards; {rebuild_hint(path.parent.parent)}"
                    )
    trained_under = metadata.get(CONFIG_HASH_KEY.encode())
    if config_hash is not None and trained_under is not None and trained_under.decode() != config_hash:
        raise ZooError(
            f"shard {path} was trained under another config (hash {trained_under.decode()}, this zoo's "
            f"{config_hash}); {REGENERATE}"
        )
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


def row_groups_holding(metadata: pq.FileMetaData, variants: set[str], sorted_ids: np.ndarray | None) -> list[int]:
    """The row groups that may hold rows of ``variants`` among ``sorted_ids`` (all ids when None), from each
    group's min/max statistics of those columns (a group without statistics is always read)."""
    names = [metadata.schema.column(j).name for j in range(metadata.num_columns)]
    variant_col, id_col = names.index("variant"), names.index("model_id")
    groups = []
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        if group.num_rows == 0:
            continue
        stats = group.column(variant_col).statistics
        if stats is not None and stats.has_min_max and not any(stats.min <= v <= stats.max for v in variants):
            continue
        stats = group.column(id_col).statistics
        if sorted_ids is not None and stats is not None and stats.has_min_max:
            first = np.searchsorted(sorted_ids, stats.min)
            if first == len(sorted_ids) or sorted_ids[first] > stats.max:
                continue
        groups.append(i)
    return groups


def row_group_tables(
    path: Location, fix: str, columns: list[str], select: Callable[[pq.FileMetaData], list[int]]
) -> Iterator[pa.Table]:
    """``columns`` of each row group ``select`` picks from the file's footer, one table at a time: only those
    groups' pages are read, and Arrow reuses one group's buffers for the next (fresh memory is slow to fault in).

    Weight columns with a checksum column (schema 3) are read without page CRCs, from a memory map where the file
    is local, and every row is checked against its stored ``row_checksums``: twice the speed of the CRC path.
    Everything else (scalars, the checksums themselves, weights of older shards) is checked by its page CRCs.
    Damage is one ``ZooError`` naming the file and ``fix``, as in ``read_parquet``."""
    source, fs = arrow_path(path)
    try:
        checked = pq.ParquetFile(source, filesystem=fs, page_checksum_verification=True)
        names = set(checked.schema_arrow.names)
        fast = [c for c in columns if is_weight_column(c) and checksum_column(c) in names]
        slow = [c for c in columns if c not in fast] + [checksum_column(c) for c in fast]
        if fast:
            local = isinstance(fs, pafs.LocalFileSystem)
            handle = pa.memory_map(source) if local else fs.open_input_file(source)
            unchecked = pq.ParquetFile(handle, metadata=checked.metadata, page_checksum_verification=False)
        for group in select(checked.metadata):
            table = checked.read_row_groups([group], columns=slow, use_threads=False)
            for c in fast:
                weights = unchecked.read_row_groups([group], columns=[c], use_threads=False)[c]
                _check_rows(path, fix, c, weights, table, checked.schema_arrow.field(c).type.byte_width // 4)
                table = table.append_column(c, weights)
            yield table.select(columns)
    except (OSError, pa.ArrowException) as e:
        require_reachable(path)
        why = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise ZooError(f"corrupt file {path} ({why}); {fix}") from None


def _check_rows(path: Location, fix: str, column: str, weights: pa.ChunkedArray, table: pa.Table, size: int) -> None:
    """Raise ``ZooError`` unless every row of ``weights`` matches its stored checksum (nulls where it is null)."""
    stored = table[checksum_column(column)]
    values = weights.combine_chunks() if weights.num_chunks != 1 else weights.chunk(0)
    sums = stored.combine_chunks() if stored.num_chunks != 1 else stored.chunk(0)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    bad = valid != sums.is_valid().to_numpy(zero_copy_only=False)
    bad |= valid & (row_checksums(weight_rows(values, size)) != sums.fill_null(0).to_numpy())  # null rows: zeros
    if bad.any():
        where = f" of model_id {table['model_id'][int(np.argmax(bad))]}" if "model_id" in table.column_names else ""
        raise ZooError(f"corrupt file {path} ({column}{where} fails its row checksum); {fix}")


def write_manifest(zoo_dir: Location, manifest: dict[str, Any]) -> None:
    zoo_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(zoo_dir / MANIFEST, json.dumps(manifest, indent=1).encode())


class ManifestDamaged(ZooError):
    """The manifest is missing beside shards, unreadable, or lacks what every manifest holds: rebuildable."""


MANIFEST_KEYS = ("schema_version", "config_hash", "config", "layouts", "n_shards", "shards", "dataset_fingerprint")


def read_manifest(zoo_dir: Location) -> dict[str, Any]:
    path = zoo_dir / MANIFEST
    rebuild = rebuild_hint(zoo_dir)
    if not path.is_file():  # only then is it worth asking what the path is (each question is a request on a store)
        if zoo_dir.is_file():
            raise ZooError(f"{zoo_dir} is a file, not a zoo directory; pass the --out directory of `symzoo generate`")
        if not zoo_dir.is_dir():
            raise ZooError(f"zoo directory {zoo_dir} does not exist; pass the --out directory of `symzoo generate`")
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
    from symzoo.zoo.environment import describe_environment

    return {
        "schema_version": SCHEMA_VERSION,
        "symzoo_version": __version__,
        "environment": describe_environment(),  # where generation started (the driver's machine)
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


def vector_width(weight_type: pa.DataType) -> int | None:
    """How many float32 values one stored weight vector of this type holds (schemas 2-3: fixed-size binary of 4
    bytes a value; schema 1: a fixed-size list); None for a type that is no weight vector."""
    if pa.types.is_fixed_size_binary(weight_type):
        return weight_type.byte_width // 4
    return getattr(weight_type, "list_size", None)


def weight_rows(chunk: pa.Array, size: int) -> np.ndarray:
    """Zero-copy ``(len, size)`` float32 view of one chunk of a weight column, null rows included (as whatever
    their slots hold): ``fixed_size_binary[4P]`` (schemas 2 and 3) or ``fixed_size_list<float32>[P]`` (schema 1)."""
    stored = vector_width(chunk.type)
    if stored != size:  # never reshape one network's bytes into another's row
        raise ZooError(
            f"stored weight vectors hold {stored} values where the manifest's layout says {size}: the manifest does "
            "not describe these shards; check the zoo with `symzoo info --verify` and rebuild the manifest with "
            "`symzoo generate <the zoo's config>`"
        )
    if pa.types.is_fixed_size_binary(chunk.type):
        data = chunk.buffers()[1]
        rows = np.frombuffer(data, WEIGHT_DTYPE, len(chunk) * size, chunk.offset * size * 4).reshape(-1, size)
        rows.flags.writeable = False  # Arrow's buffers are immutable; numpy would let a caller write into one
        return rows
    values = chunk.values.slice(chunk.offset * size, len(chunk) * size)  # a list's child keeps slots for nulls
    return values.to_numpy(zero_copy_only=values.null_count == 0).astype(np.float32, copy=False).reshape(-1, size)


def fixed_size_to_numpy(column: pa.ChunkedArray, size: int, entries: np.ndarray | None = None) -> np.ndarray:
    """``(N, size)`` float32 array of a weight column (only ``entries`` columns when given).

    One chunk without nulls and no ``entries`` is a zero-copy view of Arrow's buffer; otherwise each chunk is
    copied once, straight into the result. Null rows (e.g. the final weights of a failed network) become NaN.
    """
    chunks = [c for c in column.chunks if len(c)]
    if len(chunks) == 1 and chunks[0].null_count == 0 and entries is None:
        return weight_rows(chunks[0], size).astype(np.float32, copy=False)
    out = np.empty((len(column), size if entries is None else len(entries)), np.float32)
    row = 0
    for chunk in chunks:
        values = weight_rows(chunk, size)
        out[row : row + len(chunk)] = values if entries is None else values[:, entries]
        if chunk.null_count:
            out[row : row + len(chunk)][~chunk.is_valid().to_numpy(zero_copy_only=False)] = np.nan
        row += len(chunk)
    return out


@dataclass(frozen=True)
class StoredRows:
    """Some networks' weights as they lie in a zoo: per shard, the sorted model ids wanted from it. A work unit
    carries this instead of the weights, and its task reads the rows where it runs (row groups picked from each
    footer's statistics), so no driver holds the zoo's weights (``Zoo.stored_rows`` makes one)."""

    n_params: int
    parts: tuple[tuple[Location, np.ndarray], ...]  # (shard, sorted ids wanted from it), shards in order
    variants: frozenset[str]
    by_id: bool = True  # prune row groups by model_id too (False: whole variants are wanted)

    @property
    def model_ids(self) -> np.ndarray:
        """The networks, sorted: the row order of ``read``."""
        return np.sort(np.concatenate([ids for _, ids in self.parts])) if self.parts else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return sum(len(ids) for _, ids in self.parts)

    def read(self, which: str, entries: np.ndarray | None = None, size: int | None = None) -> np.ndarray:
        """``(N, P)`` float32 (only ``entries`` columns when given) in model_id order; NaN rows where absent.
        ``which``: a weight kind (``final``, ``init``, ``epoch_E``) or another vector column with its ``size``."""
        size = self.n_params if size is None else size
        out = np.empty((len(self), size if entries is None else len(entries)), np.float32)

        def put(rows: np.ndarray, values: np.ndarray) -> None:
            if (np.diff(rows) == 1).all():
                out[rows[0] : rows[-1] + 1] = values  # a run of rows: one block copy
            else:
                out[rows] = values

        self.read_into(which, put, entries, size)
        return out

    def read_into(
        self,
        which: str,
        put: Callable[[np.ndarray, np.ndarray], None],
        entries: np.ndarray | None = None,
        size: int | None = None,
    ) -> None:
        """Hand each row group's values to ``put(rows, values)`` (``rows``: their positions in model_id order)
        as they are decoded, a few shards at once: memory stays at READ_THREADS row groups."""
        column = which if is_vector_column(which) else f"weights_{which}"
        size, sorted_ids = self.n_params if size is None else size, self.model_ids

        def fill(part: tuple[Location, np.ndarray]) -> None:
            path, wanted = part

            def select(metadata: pq.FileMetaData) -> list[int]:
                return row_groups_holding(metadata, set(self.variants), wanted if self.by_id else None)

            for table in row_group_tables(path, REGENERATE, ["model_id", column], select):
                shard_ids = table["model_id"].to_numpy()
                keep = np.isin(shard_ids, wanted)  # version 1 row groups mix variants
                if not keep.any():
                    continue
                if not keep.all():
                    table, shard_ids = table.filter(pa.array(keep)), shard_ids[keep]
                values = fixed_size_to_numpy(table[column], size, entries)
                put(np.searchsorted(sorted_ids, shard_ids), values)

        # Arrow's reads and numpy's copies release the GIL
        with ThreadPoolExecutor(READ_THREADS) as pool:
            list(pool.map(fill, self.parts))


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
    def _frame_and_shards(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The frame, and for each of its rows the index (in ``shards``) of the shard that holds it."""
        if not self.shards:
            return pd.DataFrame(columns=[n for n, _ in SCALAR_FIELDS]), np.zeros(0, np.int64)
        names = [n for n, _ in SCALAR_FIELDS] + list(HISTORY_FIELDS)
        if self.bayesian:
            names += [n for n, _ in BAYES_SCALAR_FIELDS] + list(BAYES_HISTORY_FIELDS)
        if self.config.get("task") == "inr":
            names += [n for n, _ in INR_SCALAR_FIELDS]
        tables = [read_parquet(p, REGENERATE, columns=names) for p in self.shards]
        shard_of = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
        frame = pa.concat_tables(tables).to_pandas()
        order = np.argsort(frame["model_id"].to_numpy(), kind="stable")
        frame = frame.iloc[order].reset_index(drop=True)
        duplicated = frame.loc[frame["model_id"].duplicated(), "model_id"]
        if len(duplicated):
            raise ZooError(
                f"{self.path} holds model_id {int(duplicated.iloc[0])} more than once (a shard from another zoo?); "
                "run `symzoo generate` with the zoo's config to quarantine the foreign shard"
            )
        return frame, shard_of[order]

    @property
    def frame(self) -> pd.DataFrame:
        """Scalars and history of every network, sorted by model_id; no weights are read."""
        return self._frame_and_shards[0]

    def stored_rows(self, variant: str | None = None, model_ids: list[int] | np.ndarray | None = None) -> StoredRows:
        """Where the weights of these networks (a variant's, or those ids, or both; all when neither) lie: small
        enough to travel with a work unit, so a task that reaches the zoo reads its own rows."""
        frame, shard_of = self._frame_and_shards
        wanted = np.ones(len(frame), bool)
        if variant is not None:
            self.layout(variant)
            wanted &= (frame["variant"] == variant).to_numpy()
        if model_ids is not None:
            wanted &= frame["model_id"].isin(list(model_ids)).to_numpy()
        ids, shards = frame["model_id"].to_numpy()[wanted], shard_of[wanted]
        parts = tuple((self.shards[s], ids[shards == s]) for s in np.unique(shards))
        variants = frozenset(frame.loc[wanted, "variant"])
        return StoredRows(self.n_params, parts, variants, model_ids is not None)

    def weights(
        self,
        which: str = "final",
        variant: str | None = None,
        model_ids: list[int] | None = None,
        trainable_only: bool = False,
    ) -> np.ndarray:
        """``(N, P)`` float32 weights (``which``: init, final or epoch_E) in model_id order; NaN rows where absent."""
        self.check_weight_kind(which)
        if trainable_only and variant is None:
            raise ZooError("trainable_only needs a variant= (variants differ in which entries are trainable)")
        entries = self.layout(variant).trainable_index if trainable_only else None
        return self.stored_rows(variant, model_ids).read(which, entries)

    @property
    def bayesian(self) -> bool:
        """Trained by variational inference (``training.method: elrg``): weights are posterior means."""
        return self.config["training"].get("method", "standard") == "elrg"

    @cached_property
    def posterior_size(self) -> int:
        """Values in one network's stored posterior (``Zoo.posterior``)."""
        from symzoo.zoo.bayes import posterior_size
        from symzoo.zoo.models import build_configured

        if not self.bayesian:
            raise ZooError(f"{self.path} is no Bayesian zoo (training.method is not elrg); it stores no posterior")
        shape, classes = tuple(self.manifest["in_shape"]), self.manifest["num_classes"]
        model = build_configured(self.config, self.config["variants"][0], shape, classes, sample=0)
        return posterior_size(model, self.config["training"]["elrg"]["rank"])

    def posterior(self, variant: str | None = None, model_ids: list[int] | None = None) -> np.ndarray:
        """``(N, Q)`` float32 variance parameters of a Bayesian zoo's networks (``zoo.bayes.Posterior``'s
        ``state_vector``: log-variances, then low-rank factors, per layer) in model_id order."""
        return self.stored_rows(variant, model_ids).read(POSTERIOR_COLUMN, size=self.posterior_size)

    def bayesian_model(self, model_id: int):
        """Network ``model_id`` at its posterior mean and its ``Posterior`` (sampling on), ready to predict."""
        model = self.model(model_id)
        settings = ElrgSettings.from_config(self.config["training"]["elrg"])
        row = self.frame.loc[self.frame["model_id"] == model_id].iloc[0]
        posterior = settings.posterior(model, int(row["seed"]))
        return model, posterior.load_state_vector(self.posterior(model_ids=[model_id])[0])

    def check_weight_kind(self, which: str) -> None:
        if which not in self.weight_kinds():
            raise ZooError(f"no weights {which!r}; this zoo stores {', '.join(self.weight_kinds())}")

    @cached_property
    def symmetries(self) -> dict[str, dict]:
        """Per variant: its permutation spec and scale groups, and whether each is a symmetry (``zoo.symmetry``);
        recorded in the manifest, derived from the config for zoos written before it was."""
        from symzoo.zoo.symmetry import variant_symmetries

        stored = self.manifest.get("symmetries")
        if stored is not None:
            return stored
        return variant_symmetries(self.config, tuple(self.manifest["in_shape"]), self.manifest["num_classes"])

    def splits(self, seed: int | str = "stored") -> pd.DataFrame:
        """model_id -> split (train / val / test), every variant and replicate of a hyperparameter sample in one.

        ``"stored"``: the zoo's ``splits.parquet`` (``symzoo splits`` writes it; generate writes seed 0's), or seed
        0's where the zoo stores none; a seed: that seed's assignment (read from the file when it holds that
        seed's, which is the same thing)."""
        if seed != "stored" and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
            raise ZooError(f"split seed {seed!r} is not allowed; 'stored' or a whole number in [0, 2^32 - 1]")
        source = stored_source(self.path)
        if source is not None and (seed == "stored" or source == f"seed {seed}"):
            path = self.path / SPLITS_FILE
            return check_splits(
                self.frame, read_parquet(path, "rewrite it with `symzoo splits`").to_pandas(), str(path)
            )
        return seeded_splits(self.frame, 0 if seed == "stored" else int(seed)).sort_values(
            "model_id", ignore_index=True
        )

    def weight_kinds(self) -> list[str]:
        """The weights each network has: init, final and the checkpoints (an imported zoo: what its source kept)."""
        kinds = [c.removeprefix("weights_") for c in weight_columns(self.config["training"]["checkpoint_epochs"])]
        imported = self.config.get("imported") or {}
        return [k for k in kinds if k != "init"] if imported.get("format") in ("authors", "dwsnets") else kinds

    def model(self, model_id: int, which: str = "final", graph=None) -> nn.Module:
        """Rebuild network ``model_id`` (fixed structure from the zoo seed, F from its sample where the zoo draws
        F per network) with its stored weights. A GNN's BatchNorm statistics are not stored: they are those of its
        weights on the zoo's graph (``zoo.graph_train.estimate_batchnorm``), computed here on ``graph`` (default:
        the zoo's own, loaded). Call it as ``model(graph.features, graph.aggregate)``."""
        from symzoo.zoo.graph_train import estimate_batchnorm
        from symzoo.zoo.models import build_configured

        row = self.frame.loc[self.frame["model_id"] == model_id]
        if row.empty:
            raise ZooError(f"model_id {model_id} is not in {self.path}")
        r = row.iloc[0]
        shape, classes = tuple(self.manifest["in_shape"]), self.manifest["num_classes"]
        model = build_configured(self.config, r["variant"], shape, classes, int(r["seed"]), int(r["sample"]))
        model = self.layout(r["variant"]).load_into(model, self.weights(which, model_ids=[model_id])[0])
        if self.config["model"]["arch"] == "gnn":
            estimate_batchnorm(model, graph if graph is not None else self.dataset())
        return model.eval()

    def evaluate(self, model_id: int, split: str = "test", which: str = "final") -> dict[str, float]:
        """Plain cross-entropy and accuracy of a stored network on its zoo's data, normalised as in training.

        (Feeding ``x / 255`` instead of ``data.normalize(x)`` silently costs accuracy: the networks were trained
        on per-channel standardised inputs.)
        """
        from symzoo.zoo.train import evaluate

        if self.config.get("task") == "inr":  # an INR: how well it reproduces its own image
            from symzoo.zoo.inr_fit import pixel_grid, psnr

            row = self.frame.loc[self.frame["model_id"] == model_id]
            if row.empty:
                raise ZooError(f"model_id {model_id} is not in {self.path}")
            index, image_split = int(row["image_index"].iloc[0]), row["image_split"].iloc[0]
            if index < 0:
                raise ZooError(f"model_id {model_id}'s image is unknown (its source did not say): no PSNR to compute")
            data = self.dataset()
            image = (data.x_train if image_split == "train" else data.x_test)[index, 0]
            with torch.no_grad():
                out = self.model(model_id, which)(pixel_grid(*image.shape))
            mse = ((out.reshape(image.shape) - image.float() / 255) ** 2).mean()
            return {"mse": float(mse), "psnr": float(psnr(mse))}
        if self.config["model"]["arch"] == "gnn":  # a graph: its nodes' splits, train, valid or test
            from symzoo.zoo.graph import SPLITS
            from symzoo.zoo.graph_train import graph_metrics

            if split not in SPLITS:
                raise ZooError(f"split {split!r} is not allowed; one of {', '.join(SPLITS)} (a graph's nodes)")
            graph = self.dataset()
            loss, acc = graph_metrics(self.model(model_id, which, graph), graph, [split])[split]
            return {"loss": loss, "accuracy": acc}
        if split not in ("train", "test"):
            raise ZooError(f"split {split!r} is not allowed; train or test")
        model, data = self.model(model_id, which), self.dataset()
        x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
        loss, acc = evaluate(model, data, x, y, batch_size=2000, amp=False)
        return {"loss": float(loss), "accuracy": float(acc)}

    def dataset(self):
        """The zoo's data set, loaded as its config says (its fingerprint is in the manifest)."""
        from symzoo.zoo.sources import load_configured

        return load_configured(self.config["data"])

    def verify(self, checksums: bool = False) -> None:
        """Check every shard's footer (and, with ``checksums``, its sha256 against the manifest)."""
        recorded = self.manifest.get("shards", {})
        for p in self.shards:
            check_shard(p, config_hash=self.manifest["config_hash"], size=self.n_params)
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


ADDED_LATER = ("imported", "task")  # top-level config fields that manifests written before them lack


def check_stored_config(zoo_dir: Location, cfg: object) -> None:
    """A shared zoo is input from elsewhere: its manifest's config is checked as strictly as a fresh one before
    anything acts on it (paths, data set names, counts), and must be complete, as a resolved config always is."""
    from symzoo.zoo.config import DEFAULTS, validate

    try:
        validate(cfg)
    except ConfigError as e:
        raise ZooError(f"{zoo_dir}/{MANIFEST} holds an invalid config ({e}); this is not a zoo symzoo wrote") from None
    if missing := [k for k in DEFAULTS if k not in cfg and k not in ADDED_LATER]:
        raise ManifestDamaged(
            f"{zoo_dir}/{MANIFEST} is damaged (its config has no {', '.join(missing)}); {rebuild_hint(zoo_dir)}"
        )


def rebuild_hint(zoo_dir: Location) -> str:
    return f"rebuild it from the shards with `symzoo generate <the zoo's config> --out {zoo_dir}`"


def check_manifest(zoo_dir: Location, manifest: dict) -> None:
    """What the rest of symzoo reads from a manifest, well formed: a count of shards, a mapping of shard
    checksums, and one parseable layout of one size per variant of the config (a wrong size would read other
    networks' bytes as a network)."""
    where = f"{zoo_dir}/{MANIFEST}"
    n = manifest["n_shards"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ManifestDamaged(f"{where} is damaged (n_shards {n!r} is not a count); {rebuild_hint(zoo_dir)}")
    if not isinstance(manifest["shards"], dict):
        raise ManifestDamaged(f"{where} is damaged (shards is not a mapping); {rebuild_hint(zoo_dir)}")
    layouts = manifest["layouts"]
    if not isinstance(layouts, dict) or not layouts:
        raise ManifestDamaged(f"{where} is damaged (no layouts); {rebuild_hint(zoo_dir)}")
    try:
        parsed = {v: ParamLayout.from_json(j) for v, j in layouts.items()}
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        why = f"{type(e).__name__}: {e}" if isinstance(e, ValueError) else type(e).__name__
        raise ManifestDamaged(f"{where} is damaged (a layout does not parse: {why}); {rebuild_hint(zoo_dir)}") from None
    variants = manifest["config"].get("variants") or []
    if sorted(parsed) != sorted(variants):
        raise ManifestDamaged(
            f"{where} is damaged (layouts for {', '.join(parsed)}, the config's variants are "
            f"{', '.join(variants)}); {rebuild_hint(zoo_dir)}"
        )
    if len({layout.size for layout in parsed.values()}) != 1:
        raise ManifestDamaged(f"{where} is damaged (its layouts differ in size); {rebuild_hint(zoo_dir)}")


def open_zoo(path: str | Location, verify: bool = True) -> Zoo:
    """Open a zoo directory (or ``s3://`` / ``gs://`` prefix); ``verify`` checks every shard's footer so a truncated
    shard is named, not read."""
    zoo_dir = location(path)
    manifest = read_manifest(zoo_dir)  # a missing manifest is diagnosed there: a file, no directory, no zoo
    check_stored_config(zoo_dir, manifest["config"])
    check_manifest(zoo_dir, manifest)
    zoo = Zoo(zoo_dir, manifest)
    if verify:
        zoo.verify()
    return zoo


def flat_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().float().numpy()
