"""The zoo's train / val / test assignment, stored once as ``splits.parquet`` beside ``models/``.

Metanetworks are compared on the same split, and a split must not leak: every network of one hyperparameter sample
(all variants, all replicates) lands in the same part, so W-Asym and standard are tested on the same draws and no
replicate of a test network is seen in training. The metanet stage and ``WeightDataset`` read the assignment from
here; ``symzoo splits`` writes it (seeded, or brought by the user from a CSV/Parquet of model_id -> split).

INR zoos (one network per image; a sample is an image) split by image instead: the image dataset's test images
are the test split (``image_split``), a seeded share of each class's training images the validation split.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa

from symzoo.errors import ZooError
from symzoo.zoo.location import Location, location
from symzoo.zoo.parquet_io import read_parquet, write_parquet_atomically

SPLITS_FILE = "splits.parquet"
SPLIT_NAMES = ("train", "val", "test")
FRACTIONS = (0.5, 0.25)  # train, val; test takes the rest (the paper's metanet protocol)
INR_VAL_FRACTION = 1 / 12  # of an INR zoo's training images: 5,000 of 60,000, the MNIST INR benchmarks' validation


def paired_split(samples: np.ndarray, seed: int, fractions: tuple[float, float] = FRACTIONS) -> dict[int, str]:
    """Hyperparameter sample -> train / val / test, by a seeded permutation of the distinct samples."""
    distinct = np.unique(samples)
    order = np.random.default_rng(seed).permutation(distinct)
    n_train = int(round(fractions[0] * len(order)))
    n_val = int(round(fractions[1] * len(order)))
    names = ["train"] * n_train + ["val"] * n_val + ["test"] * (len(order) - n_train - n_val)
    return {int(s): name for s, name in zip(order, names, strict=True)}


def image_split(frame: pd.DataFrame, seed: int, val_fraction: float = INR_VAL_FRACTION) -> dict[int, str]:
    """An INR zoo's sample (one image) -> train / val / test by its image: the image dataset's test images are the
    test split, and a seeded ``val_fraction`` of each class's training images the validation split, as the INR
    benchmarks split MNIST (55,000 / 5,000 / 10,000). Every variant's fit of one image lands in one part."""
    images = frame.drop_duplicates("sample")[["sample", "image_split", "image_class"]]
    out = {int(s): "test" for s in images.loc[images["image_split"] == "test", "sample"]}
    rng = np.random.default_rng(seed)
    train = images[images["image_split"] != "test"].sort_values("sample")
    for _, group in train.groupby("image_class", sort=True):
        order = rng.permutation(group["sample"].to_numpy())
        n_val = int(round(val_fraction * len(order)))
        out |= {int(s): ("val" if i < n_val else "train") for i, s in enumerate(order)}
    return out


def is_inr_frame(frame: pd.DataFrame) -> bool:
    """Networks that each fit one image (``task: inr``) carry the image's split and class."""
    return "image_split" in frame.columns and frame["image_split"].notna().all()


def seeded_splits(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """model_id -> split for every network of ``frame``, paired by sample: by image for INR zoos (``image_split``),
    else a seeded 50/25/25 of the hyperparameter samples (``paired_split``)."""
    samples = frame["sample"].to_numpy()
    by_sample = image_split(frame, seed) if is_inr_frame(frame) else paired_split(samples, seed)
    return pd.DataFrame(
        {"model_id": frame["model_id"].to_numpy(np.int64), "split": frame["sample"].map(by_sample).to_numpy()}
    )


def check_splits(frame: pd.DataFrame, splits: pd.DataFrame, source: str) -> pd.DataFrame:
    """``splits`` (model_id, split) as a complete, paired assignment of ``frame``'s networks, in model_id order;
    anything else is one ``ZooError`` that names the first offending network or sample."""
    missing = {"model_id", "split"} - set(splits.columns)
    if missing:
        raise ZooError(f"{source} has no column {', '.join(sorted(missing))}; it needs model_id and split")
    splits = splits[["model_id", "split"]].copy()
    ids = pd.to_numeric(splits["model_id"], errors="coerce")
    not_ids = splits.loc[ids.isna() | (ids != ids.round()), "model_id"]
    if len(not_ids):
        raise ZooError(f"{source}: model_id {not_ids.iloc[0]!r} is not a network id (a whole number)")
    splits["model_id"] = ids.astype("int64")
    bad = splits.loc[~splits["split"].isin(SPLIT_NAMES), "split"]
    if len(bad):
        raise ZooError(f"{source}: split {bad.iloc[0]!r} is not one of {', '.join(SPLIT_NAMES)}")
    if splits["model_id"].duplicated().any():
        raise ZooError(
            f"{source} assigns model_id {int(splits.loc[splits['model_id'].duplicated(), 'model_id'].iloc[0])} twice"
        )
    merged = frame[["model_id", "sample"]].merge(splits, on="model_id", how="left")
    if merged["split"].isna().any():
        first = int(merged.loc[merged["split"].isna(), "model_id"].iloc[0])
        raise ZooError(f"{source} assigns no split to model_id {first} (every network of the zoo needs one)")
    extra = set(splits["model_id"]) - set(frame["model_id"])
    if extra:
        raise ZooError(f"{source} names model_id {min(extra)}, which is not in this zoo")
    mixed = merged.groupby("sample")["split"].nunique()
    if (mixed > 1).any():
        raise ZooError(
            f"{source} puts the networks of sample {int(mixed[mixed > 1].index[0])} in different splits; every "
            "variant and replicate of a hyperparameter sample must share one (else the test set leaks)"
        )
    return merged[["model_id", "split"]].sort_values("model_id", ignore_index=True)


def digest(splits: pd.DataFrame) -> str:
    """A short hash of the assignment: a stage's results record which split they used."""
    text = json.dumps([splits["model_id"].tolist(), splits["split"].tolist()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_splits(zoo_dir: Location, splits: pd.DataFrame, source: str) -> Location:
    """``splits.parquet`` (model_id, split; ``source`` in its metadata), atomically."""
    table = pa.Table.from_pandas(splits, preserve_index=False)
    meta = {b"symzoo.splits_source": source.encode(), b"symzoo.splits_digest": digest(splits).encode()}
    path = location(zoo_dir) / SPLITS_FILE
    write_parquet_atomically(path, table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}))
    return path


def stored_source(zoo_dir: Location) -> str | None:
    """How the stored splits were made (``seed 0``, ``file my.csv``), or None when the zoo has none."""
    path = location(zoo_dir) / SPLITS_FILE
    if not path.exists():
        return None
    meta = read_parquet(path, "rewrite it with `symzoo splits`").schema.metadata or {}
    return meta.get(b"symzoo.splits_source", b"unknown").decode()
