"""``symzoo splits``: store a zoo's train / val / test assignment, seeded or brought as a file by its user, checked
complete and paired (``zoo.splits``) and written under the zoo's lock."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from symzoo.errors import ZooError
from symzoo.zoo.location import Location
from symzoo.zoo.lock import directory_lock
from symzoo.zoo.splits import check_splits, digest, seeded_splits, stored_source, write_splits
from symzoo.zoo.store import open_zoo


def read_split_file(path: str) -> pd.DataFrame:
    """A user's assignment: CSV or Parquet with columns model_id and split."""
    file = Path(path)
    if not file.is_file():
        raise ZooError(f"split file {path} does not exist; give a CSV or Parquet file with columns model_id, split")
    try:
        return pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
    except (OSError, ValueError, pa.ArrowException) as e:
        why = type(e).__name__
        raise ZooError(f"cannot read split file {path} ({why}); give a CSV or Parquet with model_id, split") from None


def store_splits(zoo_dir: str | Location, seed: int | None, from_file: str | None, replace: bool) -> pd.DataFrame:
    """``symzoo splits``: write the zoo's assignment (seed ``seed``, or ``from_file``) unless another is stored and
    ``replace`` is not given; returns it, checked complete and paired."""
    zoo = open_zoo(zoo_dir, verify=False)
    if not zoo.complete:
        raise ZooError(f"{zoo.path} is an incomplete zoo; finish it with `symzoo generate` before splitting it")
    if from_file is not None:
        splits, source = check_splits(zoo.frame, read_split_file(from_file), from_file), f"file {from_file}"
    else:
        splits, source = seeded_splits(zoo.frame, seed or 0), f"seed {seed or 0}"
    splits = splits.sort_values("model_id", ignore_index=True)
    with directory_lock(zoo.path, "symzoo splits"):
        stored = stored_source(zoo.path)
        if stored is not None and not replace and digest(zoo.splits("stored")) != digest(splits):
            raise ZooError(
                f"{zoo.path} already stores another split ({stored}); pass --replace to overwrite it (metanet "
                "results made with split_seed: stored then no longer match it and are refused, not mixed)"
            )
        write_splits(zoo.path, splits, source)
    return splits
