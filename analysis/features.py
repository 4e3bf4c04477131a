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
from symzoo.zoo.store import StoredRows, Zoo, open_zoo

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
    """The variant's flat weights in layout order (trainable entries only): memory-mapped from ``cache_dir`` (built
    there first if absent, a shard at a time), or read into memory when ``cache_dir`` is None."""
    frame = zoo.frame[zoo.frame["variant"] == variant].reset_index(drop=True)
    if cache_dir is None:
        weights = zoo.weights(which, variant=variant, trainable_only=True)
        finite = rows_finite(weights)
    else:
        cache = VariantCache.of(zoo, variant, which, cache_dir)
        finite = cache.ensure(("flat",), zoo)
        weights = cache.matrix("flat")
    n_trainable = zoo.layout(variant).n_trainable
    if weights.shape != (len(frame), n_trainable) or finite.shape != (len(frame),):
        raise ZooError(
            f"{zoo.path}: {variant} weights have shape {weights.shape}, metadata says {len(frame)} networks of "
            f"{n_trainable} trainable entries; check the zoo with `symzoo info --verify`"
        )
    return VariantWeights(variant, frame, weights, usable_rows(frame, finite))


def usable_rows(frame: pd.DataFrame, finite: np.ndarray) -> np.ndarray:
    """Finished, with finite weights and a test accuracy: what a metanet can learn from."""
    return (frame["status"] == "ok").to_numpy() & finite & frame["test_acc"].notna().to_numpy()


@dataclass(frozen=True)
class VariantCache:
    """One variant's metanet inputs as ``.npy`` files on a local disk: the flat weights (trainable entries), which
    rows are finite, and the StatNN statistics. Named by the zoo's fingerprint, so any process on any node can
    build them from the zoo (``ensure``) and find them again; small enough to send with every task."""

    zoo: str  # the zoo's location
    variant: str
    which: str
    fingerprint: str
    cache_dir: str

    @classmethod
    def of(cls, zoo: Zoo, variant: str, which: str, cache_dir: Path) -> VariantCache:
        return cls(str(zoo.path), variant, which, zoo_fingerprint(zoo), str(cache_dir))

    def path(self, kind: str) -> Path:
        suffix = {"flat": ".npy", "finite": ".finite.npy", "stats": "-statnn.npy", "aligned": "-rebasin.npy"}[kind]
        return Path(self.cache_dir) / f"{self.variant}-{self.which}-{self.fingerprint}{suffix}"

    def matrix(self, kind: str) -> np.ndarray:
        """The ``flat`` or ``stats`` matrix, memory-mapped (``ensure`` it first)."""
        return np.load(self.path(kind), mmap_mode="r")

    def ensure(self, kinds: tuple[str, ...], zoo: Zoo | None = None) -> np.ndarray:
        """Build whichever of ``kinds`` is missing here (one process at a time; others wait, then find it), reading
        the zoo (``zoo``, or opened from its location) a shard at a time; returns which rows are finite."""
        import fcntl

        Path(self.cache_dir).mkdir(parents=True, exist_ok=True)
        needed = ("flat", "finite", *(k for k in ("stats", "aligned") if k in kinds))
        if not all(self.path(k).exists() for k in needed):
            with open(Path(self.cache_dir) / f".{self.variant}-{self.which}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when its process dies
                if not (self.path("flat").exists() and self.path("finite").exists()):
                    zoo = zoo or open_zoo(self.zoo, verify=False)
                    rows = zoo.stored_rows(variant=self.variant)
                    entries = zoo.layout(self.variant).trainable_index
                    save_atomically(self.path("finite"), write_rows_npy(self.path("flat"), rows, self.which, entries))
                if "stats" in kinds and not self.path("stats").exists():
                    zoo = zoo or open_zoo(self.zoo, verify=False)
                    flat, layout = self.matrix("flat"), zoo.layout(self.variant)
                    blocks = [statnn_features(flat[i : i + 1024], layout) for i in range(0, len(flat), 1024)]
                    empty = np.zeros((0, 7 * len(layout.slots)), np.float32)
                    save_atomically(self.path("stats"), np.concatenate(blocks) if blocks else empty)
                if "aligned" in kinds and not self.path("aligned").exists():
                    zoo = zoo or open_zoo(self.zoo, verify=False)
                    finite = np.load(self.path("finite"))
                    align_to_reference(self.matrix("flat"), finite, zoo, self.variant, self.path("aligned"))
        return np.load(self.path("finite"))


def align_to_reference(flat: np.ndarray, finite: np.ndarray, zoo: Zoo, variant: str, path: Path) -> None:
    """Every network of a permutation-symmetric variant permuted onto one reference by Git Re-Basin's weight
    matching (SANE canonicalises a zoo this way), written row by row to the ``.npy`` at ``path``: the reference is
    the first network with finite weights, chosen without looking at any target. Rows with non-finite weights are
    copied as they are (the metanet leaves them out anyway)."""
    import torch

    from symzoo.analysis.rebasin import weight_matching
    from symzoo.zoo.symmetry import permute, recorded_spec

    symmetries = zoo.symmetries[variant]
    if not symmetries["permutation_is_symmetry"]:
        raise ZooError(
            f"{variant} networks have no permutation symmetry to align: metanet.align applies to standard ones"
        )
    layout = zoo.layout(variant)
    spec = recorded_spec(symmetries)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=flat.shape)
    reference = layout.unflatten(torch.from_numpy(np.array(flat[int(np.argmax(finite))]))) if finite.any() else None
    for i in range(len(flat)):
        row = np.array(flat[i])
        if finite[i]:
            params = layout.unflatten(torch.from_numpy(row))
            perms = weight_matching(spec, reference, params, seed=0)
            row = layout.flatten(permute(spec, perms, params)).numpy()
        out[i] = row
    out.flush()
    del out
    os.replace(tmp, path)


def write_rows_npy(path: Path, rows: StoredRows, which: str, entries: np.ndarray) -> np.ndarray:
    """Stream ``rows`` into a ``.npy`` at ``path`` (positional writes of each decoded row group, to a temporary
    renamed when complete): the process never holds the matrix. Returns which rows are finite."""
    shape = (len(rows), len(entries))
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    finite = np.zeros(shape[0], bool)
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        start, row_bytes = f.tell(), shape[1] * 4
        f.truncate(start + shape[0] * row_bytes)
        fd = f.fileno()

        def put(at: np.ndarray, values: np.ndarray) -> None:
            finite[at] = rows_finite(values)
            values = np.ascontiguousarray(values, "<f4")
            runs = np.flatnonzero(np.diff(at) != 1) + 1  # consecutive rows go out in one write
            for lo, hi in zip(np.r_[0, runs], np.r_[runs, len(at)], strict=True):
                os.pwrite(fd, values[lo:hi].tobytes(), start + int(at[lo]) * row_bytes)

        rows.read_into(which, put, entries)
    os.replace(tmp, path)
    return finite


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


def split_indices(vw: VariantWeights, splits: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices of the usable networks in each split (``splits``: model_id -> split, as ``Zoo.splits``)."""
    where = vw.frame["model_id"].map(splits.set_index("model_id")["split"]).to_numpy()
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


def finished_networks(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """The networks whose status is ok, and per variant how many were not and why (a diverged or failed network
    is reported, never fatal). Metadata only: whether the weights are finite is found where they are read."""
    skipped = {
        str(v): {str(s): int(n) for s, n in g.loc[g["status"] != "ok", "status"].value_counts().items()}
        for v, g in frame.groupby("variant")
    }
    return frame[frame["status"] == "ok"].reset_index(drop=True), skipped


def with_weights(payload: dict, kinds: tuple[str, ...]) -> dict:
    """The payload with its rows' weights read (``weights``: kind -> array, rows in ``model_ids`` order) in place of
    where they lie."""
    rows = payload["rows"]
    read = {"weights": {k: rows.read(k) for k in kinds}, "model_ids": rows.model_ids}
    return {k: v for k, v in payload.items() if k != "rows"} | read


def unit_weights(payload: dict, kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A unit's weights of each kind (rows in model_id order): as sent with it, or read here from the zoo."""
    if "weights" in payload:
        return payload["weights"]
    return {k: payload["rows"].read(k) for k in kinds}


NOT_EVALUATED = "non-finite weights"


def finite_rows(weights: dict[str, np.ndarray]) -> np.ndarray:
    """Rows finite in every kind of weights."""
    masks = [rows_finite(w) for w in weights.values()]
    return np.logical_and.reduce(masks) if masks else np.zeros(0, bool)


def unevaluated_rows(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A unit's record of the items it could not evaluate (non-finite stored weights): one row each, its ``alpha``
    and measures NaN. The stage drops them from the curves and counts them (``take_unevaluated``)."""
    marks = pd.DataFrame({c: frame[c].to_numpy() if c in frame else np.nan for c in columns})
    return marks.astype({c: "float64" for c in columns if c not in frame})


def take_unevaluated(curves: pd.DataFrame, key: str, skipped: dict[str, dict[str, int]], what: str) -> pd.DataFrame:
    """The curves without the units' not-evaluated rows, each counted (distinct ``key``) into ``skipped``."""
    marked = curves["alpha"].isna()
    for variant, g in curves[marked].groupby("variant"):
        skipped.setdefault(str(variant), {})[f"{what} with {NOT_EVALUATED}"] = int(g[key].nunique())
    return curves[~marked].reset_index(drop=True)
