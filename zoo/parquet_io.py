"""Parquet in and out for everything symzoo writes: committed atomically, every page with a CRC, and a damaged
file named in one line instead of a raw Arrow error. Shards, splits and every stage's outputs go through here."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq

from symzoo.errors import ZooError
from symzoo.zoo.location import Location, arrow_path, atomic_write_bytes, require_reachable

CHECKSUM_PREFIX = "checksum_"  # a weight column's row checksums (schema 3)


def is_weight_column(name: str) -> bool:
    return name.startswith("weights_")


def is_vector_column(name: str) -> bool:
    """A column of float32 vectors stored as fixed-size binary with row checksums: weights, and a Bayesian zoo's
    posterior variance parameters (``posterior_final``)."""
    return is_weight_column(name) or name.startswith("posterior_")


def write_parquet_atomically(
    path: Location, table: pa.Table, row_group_size: int | None = None, split_by: str | None = None
) -> str:
    """Parquet committed atomically (``atomic_write_bytes``); returns the file's sha256. Weight columns and their
    checksums are stored uncompressed without dictionaries, every other column zstd; every page carries a CRC.
    With ``split_by``, no row group spans two values of that column (the table must be grouped by it). Shards and
    every stage's outputs are written through here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    names = table.schema.names
    raw = {n for n in names if is_vector_column(n) or n.startswith(CHECKSUM_PREFIX)}
    compression = {n: ("none" if n in raw else "zstd") for n in names}
    dictionary = [n for n in names if n not in raw]
    # page CRCs for every reader that checks them; symzoo checks weights by their row checksums (faster)
    with pq.ParquetWriter(
        sink, table.schema, compression=compression, use_dictionary=dictionary, write_page_checksum=True
    ) as writer:
        for part in runs_of(table, split_by) if split_by else [table]:
            writer.write_table(part, row_group_size=row_group_size)  # each call starts new row groups
    data = sink.getvalue().to_pybytes()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def runs_of(table: pa.Table, column: str) -> list[pa.Table]:
    """The table cut where ``column`` changes value (zero-copy slices)."""
    values = table[column].to_pylist()
    cuts = [0, *(i for i in range(1, len(values)) if values[i] != values[i - 1]), len(values)]
    return [table.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False) if b > a] or [table]


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
