"""What metanetworks read: a variant's weight matrix (cached, memory-mapped), targets, StatNN features, the split.

The weights of a zoo are decoded from Parquet once per (variant, which) and kept in the stage directory as a
``.npy`` file that every later read memory-maps; W-Asym rows hold only their trainable entries (the layout says
which), sigma-Asym rows exclude F by construction (F is a buffer, never stored).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from symzoo.errors import ZooError
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.store import Zoo

STAT_NAMES = ("mean", "var", "min", "max", "q25", "q50", "q75")
SPLITS = ("train", "val", "test")
MIN_PER_SPLIT = {"train": 2, "val": 2, "test": 2}


def zoo_fingerprint(zoo: Zoo) -> str:
    """Config hash plus every shard's checksum: a stage's outputs belong to exactly this state of the zoo."""
    shards = json.dumps(zoo.manifest.get("shards", {}), sort_keys=True)
    return hashlib.sha256(f"{zoo.manifest['config_hash']}/{shards}".encode()).hexdigest()[:16]


@dataclass
class VariantWeights:
    """One variant's networks: metadata rows (model_id order), weights (N, D) and which rows are usable."""

    variant: str
    frame: pd.DataFrame  # model_id, sample, replicate, status, test_acc, ...
    weights: np.ndarray  # (N, D) float32, possibly a read-only memory map
    usable: np.ndarray  # bool (N,): status ok and every weight finite

    def drop_reasons(self) -> dict[str, int]:
        """How many networks were left out and why (non-ok status by name, non-finite weights)."""
        reasons: dict[str, int] = {}
        for status, n in self.frame.loc[self.frame["status"] != "ok", "status"].value_counts().items():
            reasons[str(status)] = int(n)
        nonfinite = int(((self.frame["status"] == "ok").to_numpy() & ~self.usable).sum())
        if nonfinite:
            reasons["non-finite weights"] = nonfinite
        return reasons


def save_atomically(path: Path, array: np.ndarray) -> None:
    """np.save to a hidden temporary, then rename: a killed write never leaves a half cache file."""
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def load_variant(zoo: Zoo, variant: str, which: str, cache_dir: Path | None) -> VariantWeights:
    """The variant's flat weights in layout order (trainable entries only), from the cache when it has them."""
    layout = zoo.layout(variant)
    frame = zoo.frame[zoo.frame["variant"] == variant].reset_index(drop=True)
    path = cache_dir / f"{variant}-{which}-{zoo_fingerprint(zoo)}.npy" if cache_dir else None
    finite_path = path.with_suffix(".finite.npy") if path else None
    if path is not None and path.exists() and finite_path.exists():
        weights, finite = np.load(path, mmap_mode="r"), np.load(finite_path)
    else:
        weights = zoo.weights(which, variant=variant, trainable_only=True)
        finite = rows_finite(weights)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_atomically(path, weights)
            save_atomically(finite_path, finite)  # second: a cache file without it is rebuilt
            weights = np.load(path, mmap_mode="r")
    if weights.shape != (len(frame), layout.n_trainable) or finite.shape != (len(frame),):
        raise ZooError(
            f"{zoo.path}: {variant} weights have shape {weights.shape}, metadata says {len(frame)} networks of "
            f"{layout.n_trainable} trainable entries; check the zoo with `symzoo info --verify`"
        )
    usable = (frame["status"] == "ok").to_numpy() & finite & frame["test_acc"].notna().to_numpy()
    return VariantWeights(variant, frame, weights, usable)


def rows_finite(weights: np.ndarray, block: int = 256) -> np.ndarray:
    """Which rows hold only finite values: a float64 row sum is finite exactly when every float32 entry is."""
    sums = [np.add.reduce(weights[i : i + block], axis=1, dtype=np.float64) for i in range(0, len(weights), block)]
    return np.isfinite(np.concatenate(sums)) if sums else np.zeros(0, bool)


def statnn_features(weights: np.ndarray, layout: ParamLayout) -> np.ndarray:
    """Unterthiner et al.'s 7 statistics per layout tensor -> (N, 7 * tensors) float32.

    ``weights`` hold the trainable entries only (as ``load_variant`` returns them); a tensor with no trainable
    entry (the W-Asym ResNet8 stem) gives zeros. Variance is unbiased (ddof 1), zero for a single entry.
    """
    trainable = layout.trainable
    kept_before = np.concatenate([[0], np.cumsum(trainable)])  # position in the trainable-only vector
    out = np.zeros((len(weights), 7 * len(layout.slots)), np.float32)
    for t, slot in enumerate(layout.slots):
        lo, hi = kept_before[slot.offset], kept_before[slot.offset + slot.size]
        if hi == lo:
            continue
        x = np.asarray(weights[:, lo:hi], np.float64)
        q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75], axis=1)
        var = x.var(axis=1, ddof=1) if hi - lo > 1 else np.zeros(len(x))
        out[:, 7 * t : 7 * t + 7] = np.stack([x.mean(1), var, x.min(1), x.max(1), q25, q50, q75], axis=1)
    return out


def paired_split(samples: np.ndarray, seed: int, fractions: tuple[float, float] = (0.5, 0.25)) -> dict[int, str]:
    """Hyperparameter sample -> train / val / test, by a seeded permutation of the distinct samples.

    Every variant (and every replicate) of a sample lands in the same split: the variants are compared on the
    same draws, and no replicate of a test sample is seen in training.
    """
    distinct = np.unique(samples)
    order = np.random.default_rng(seed).permutation(distinct)
    n_train = int(round(fractions[0] * len(order)))
    n_val = int(round(fractions[1] * len(order)))
    names = ["train"] * n_train + ["val"] * n_val + ["test"] * (len(order) - n_train - n_val)
    return {int(s): name for s, name in zip(order, names, strict=True)}


def split_indices(vw: VariantWeights, split: dict[int, str]) -> dict[str, np.ndarray]:
    """Row indices of the usable networks in each split."""
    where = vw.frame["sample"].map(split).to_numpy()
    return {name: np.flatnonzero(vw.usable & (where == name)) for name in SPLITS}


def check_split_sizes(vw: VariantWeights, idx: dict[str, np.ndarray]) -> None:
    """A metanet needs a few networks in every split; say how many there are and how many are needed."""
    short = [name for name in SPLITS if len(idx[name]) < MIN_PER_SPLIT[name]]
    if short:
        counts = ", ".join(f"{len(idx[n])} {n}" for n in SPLITS)
        dropped = sum(vw.drop_reasons().values())
        raise ZooError(
            f"variant {vw.variant} has {int(vw.usable.sum())} usable networks ({dropped} dropped), split {counts}; "
            f"the metanet split (50/25/25 of samples) needs at least 2 in each: train a zoo of at least 8 "
            f"hyperparameter samples (networks: 8 or more)"
        )


def sample_per_variant(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows of each variant, drawn without replacement by ``seed`` (each variant from its own stream,
    seeded by its name, so adding a variant leaves the others' draws alone) and kept in their original order; all
    rows when ``n`` is None. How the paper's MLI analyses 300 networks per family of a larger zoo."""
    if n is None:
        return frame
    keep = []
    for variant, g in frame.groupby("variant", sort=True):
        rng = np.random.default_rng([seed, zlib.crc32(str(variant).encode())])
        keep.extend(g.index[np.sort(rng.choice(len(g), min(n, len(g)), replace=False))])
    return frame.loc[sorted(keep)]


def usable_networks(
    zoo: Zoo, kinds: tuple[str, ...], model_ids: np.ndarray | None = None
) -> tuple[pd.DataFrame, dict[str, dict[str, int]], dict[str, np.ndarray]]:
    """Finished networks with finite stored weights of every kind in ``kinds`` (among ``model_ids`` when given),
    per variant what was skipped and why (a diverged or failed network is reported, never fatal), and those
    networks' weights of each kind, row for row: the weights are read once, here, and the caller slices them."""
    frame = zoo.frame
    if model_ids is not None:  # only these networks' rows are read (zoo.weights prunes row groups by id)
        frame = frame[frame["model_id"].isin(model_ids)].reset_index(drop=True)
    ids = None if model_ids is None else frame["model_id"].tolist()
    weights = {kind: zoo.weights(kind, model_ids=ids) for kind in kinds}
    finite = np.ones(len(frame), bool)
    for w in weights.values():
        finite &= rows_finite(w)
    ok = (frame["status"] == "ok").to_numpy() & finite
    skipped: dict[str, dict[str, int]] = {}
    for v, g in frame.groupby("variant"):
        reasons = {str(s): int(n) for s, n in g.loc[g["status"] != "ok", "status"].value_counts().items()}
        bad = int(((g["status"] == "ok").to_numpy() & ~finite[g.index]).sum())
        if bad:
            reasons["non-finite weights"] = bad
        skipped[str(v)] = reasons
    return frame[ok].reset_index(drop=True), skipped, {kind: w[ok] for kind, w in weights.items()}
