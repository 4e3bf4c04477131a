"""A variant's weights as local ``.npy`` files that every later read memory-maps: decoded from Parquet once per
(variant, which), named by the zoo's fingerprint so any process on any node finds (or builds) the same files.

Rows hold the trainable entries only (the layout says which; W-Asym's fixed entries are the same in every network),
sigma-Asym's F is never stored. Beside the flat matrix live which rows are finite and the StatNN statistics; a
caller may derive further matrices from the flat one (``VariantCache.ensure``'s ``derive``: metanet's Re-Basin
alignment), built under the same lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symzoo.errors import ZooError
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.location import atomic_write_bytes
from symzoo.zoo.store import StoredRows, Zoo, open_zoo, row_checksums

STATISTICS = ("mean", "var", "min", "max", "q25", "q50", "q75")  # StatNN's per-tensor statistics, in column order
SUFFIXES = {"flat": ".npy", "finite": ".finite.npy", "stats": "-statnn.npy", "aligned": "-rebasin.npy"}

# builds a derived matrix at ``path`` from the cache's flat matrix and finite rows, reading the zoo where it must
Derive = Callable[["VariantCache", Zoo, Path], None]


def zoo_fingerprint(zoo: Zoo) -> str:
    """Config hash plus every shard's checksum: a cache or a stage's outputs belong to exactly this state of the zoo."""
    shards = json.dumps(zoo.manifest.get("shards", {}), sort_keys=True)
    return hashlib.sha256(f"{zoo.manifest['config_hash']}/{shards}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VariantCache:
    """One variant's cached matrices on a local disk; small enough to send with every Ray task."""

    zoo: str  # the zoo's location
    variant: str
    which: str
    fingerprint: str
    cache_dir: str

    @classmethod
    def of(cls, zoo: Zoo, variant: str, which: str, cache_dir: Path) -> VariantCache:
        return cls(str(zoo.path), variant, which, zoo_fingerprint(zoo), str(cache_dir))

    def path(self, kind: str) -> Path:
        suffix = SUFFIXES.get(kind, f"-{kind}.npy")
        return Path(self.cache_dir) / f"{self.variant}-{self.which}-{self.fingerprint}{suffix}"

    def matrix(self, kind: str) -> np.ndarray:
        """A cached matrix, memory-mapped (``ensure`` it first)."""
        return np.load(self.path(kind), mmap_mode="r")

    def ensure(
        self, kinds: tuple[str, ...], zoo: Zoo | None = None, derive: Mapping[str, Derive] | None = None
    ) -> np.ndarray:
        """Make ``kinds`` present and sound here, building what is missing or fails its digest (one process at a
        time; others wait, then find it), reading the zoo (``zoo``, or opened from its location) a shard at a
        time; returns which rows are finite. ``flat``, ``finite`` and ``stats`` are built here; any other kind needs
        its builder in ``derive``. A damaged file (bytes overwritten, truncated, emptied, a broken header) fails its
        digest and is rebuilt, never served: the cache lives on a local disk outside the zoo's own checks."""
        import fcntl

        derive = {"stats": _build_stats, **(derive or {})}
        unknown = [k for k in kinds if k not in ("flat", "finite", *derive)]
        if unknown:
            raise ValueError(f"no builder for cached kind {unknown[0]!r}")
        folder = Path(self.cache_dir)
        if folder.exists() and not folder.is_dir():
            raise ZooError(f"cache folder {folder} is a file; pass a folder (or none: the default is used)")
        folder.mkdir(parents=True, exist_ok=True)
        derived = tuple(k for k in kinds if k in derive)
        if not self._sound(("flat", "finite", *derived)):
            with open(folder / f".{self.variant}-{self.which}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when its process dies
                for stale in folder.glob(f".{self.variant}-{self.which}-*.tmp-*"):  # builds cut short
                    stale.unlink(missing_ok=True)
                if not self._sound(("flat", "finite")):
                    zoo = zoo or open_zoo(self.zoo, verify=False)
                    rows = zoo.stored_rows(variant=self.variant)
                    entries = zoo.layout(self.variant).trainable_index
                    finite = write_rows_npy(self.path("flat"), rows, self.which, entries)
                    save_atomically(self.path("finite"), finite)
                    self._record_digest("flat")
                    self._record_digest("finite")
                for kind in derived:
                    if not self._sound((kind,)):
                        zoo = zoo or open_zoo(self.zoo, verify=False)
                        derive[kind](self, zoo, self.path(kind))
                        self._record_digest(kind, built_from=self._recorded("flat")["digest"])
        return np.load(self.path("finite"))

    def _digest_path(self, kind: str) -> Path:
        path = self.path(kind)
        return path.parent / f".{path.name}.digest.json"

    def _recorded(self, kind: str) -> dict:
        try:
            return json.loads(self._digest_path(kind).read_text())
        except (OSError, ValueError):
            return {}

    def _record_digest(self, kind: str, built_from: str | None = None) -> None:
        """Written after its file is in place: a file without its digest (a kill in between) is rebuilt."""
        record = {"digest": file_digest(self.path(kind)), "built_from": built_from}
        atomic_write_bytes(self._digest_path(kind), json.dumps(record).encode())

    def _sound(self, kinds: tuple[str, ...]) -> bool:
        """Each file present and equal to its recorded digest; a derived one also built from today's flat matrix."""
        flat = self._recorded("flat").get("digest")
        for kind in kinds:
            record = self._recorded(kind)
            if not record or not _matches(self.path(kind), record["digest"]):
                return False
            if kind not in ("flat", "finite") and record.get("built_from") != flat:
                return False
        return True


_VERIFIED: dict[str, tuple] = {}  # path -> the file's identity when this process last found it sound


def _matches(path: Path, digest: str) -> bool:
    """The file at ``path`` has ``digest``; checked once per process and file version (a memory-mapped read of a
    whole matrix costs about as much as reading it, so repeated tasks of one worker pay it once)."""
    try:
        st = path.stat()
    except OSError:
        return False
    identity = (st.st_ino, st.st_size, st.st_mtime_ns, digest)
    if _VERIFIED.get(str(path)) == identity:
        return True
    if file_digest(path) != digest:
        return False
    _VERIFIED[str(path)] = identity
    return True


def file_digest(path: Path) -> str | None:
    """sha256 over a cached array: over its rows' checksums (``zoo.store.row_checksums``, 10+ GiB/s) for a float32
    matrix, over its bytes otherwise; None when the file is no longer the array its header says (truncated,
    emptied, a damaged header)."""
    try:
        array = np.load(path, mmap_mode="r")
    except Exception:  # a damaged header fails in numpy's header parser as anything from ValueError to SyntaxError
        return None
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    if array.ndim == 2 and array.dtype == np.float32 and array.shape[1] > 0:
        for i in range(0, len(array), 1024):
            h.update(row_checksums(np.asarray(array[i : i + 1024])).tobytes())
    else:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _build_stats(cache: VariantCache, zoo: Zoo, path: Path) -> None:
    flat, layout = cache.matrix("flat"), zoo.layout(cache.variant)
    blocks = [statnn_features(flat[i : i + 1024], layout) for i in range(0, len(flat), 1024)]
    empty = np.zeros((0, len(STATISTICS) * len(layout.slots)), np.float32)
    save_atomically(path, np.concatenate(blocks) if blocks else empty)


def temporary_beside(path: Path) -> Path:
    """A hidden temporary name next to ``path`` (renamed over it once complete)."""
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}.npy"


def save_atomically(path: Path, array: np.ndarray) -> None:
    """np.save to a hidden temporary, then rename: a killed write never leaves a half cache file, a failed one no
    temporary."""
    tmp = temporary_beside(path)
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_rows_npy(path: Path, rows: StoredRows, which: str, entries: np.ndarray) -> np.ndarray:
    """Stream ``rows`` into a ``.npy`` at ``path`` (positional writes of each decoded row group, to a temporary
    renamed when complete): the process never holds the matrix. Returns which rows are finite."""
    shape = (len(rows), len(entries))
    tmp = temporary_beside(path)
    try:
        finite = _write_rows(tmp, rows, which, entries, shape)
        os.replace(tmp, path)
    finally:  # a failed build (a damaged shard, a full disk) leaves no full-size temporary behind
        tmp.unlink(missing_ok=True)
    return finite


def _write_rows(tmp: Path, rows: StoredRows, which: str, entries: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
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
    return finite


def rows_finite(weights: np.ndarray, block: int = 256) -> np.ndarray:
    """Which rows hold only finite values: a float64 row sum is finite exactly when every float32 entry is."""
    sums = [np.add.reduce(weights[i : i + block], axis=1, dtype=np.float64) for i in range(0, len(weights), block)]
    return np.isfinite(np.concatenate(sums)) if sums else np.zeros(0, bool)


def statnn_features(weights: np.ndarray, layout: ParamLayout) -> np.ndarray:
    """Unterthiner et al.'s statistics (``STATISTICS``) per layout tensor -> (N, 7 * tensors) float32.

    ``weights`` hold the trainable entries only (as the cache stores them); a tensor with no trainable entry (the
    W-Asym ResNet8 stem) gives zeros. Variance is unbiased (ddof 1), zero for a single entry.
    """
    per = len(STATISTICS)
    trainable = layout.trainable
    kept_before = np.concatenate([[0], np.cumsum(trainable)])  # position in the trainable-only vector
    out = np.zeros((len(weights), per * len(layout.slots)), np.float32)
    for t, slot in enumerate(layout.slots):
        lo, hi = kept_before[slot.offset], kept_before[slot.offset + slot.size]
        if hi == lo:
            continue
        x = np.asarray(weights[:, lo:hi], np.float64)
        q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75], axis=1)
        var = x.var(axis=1, ddof=1) if hi - lo > 1 else np.zeros(len(x))
        out[:, per * t : per * t + per] = np.stack([x.mean(1), var, x.min(1), x.max(1), q25, q50, q75], axis=1)
    return out
