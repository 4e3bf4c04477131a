"""A stage's output directory: who owns it (``stage.json``), one Parquet file per work unit, written atomically.

Every analysis stage writes into its own ``--out`` directory. ``stage.json`` records which stage, which state of
which zoo and the options that change every result; a rerun with the same identity resumes, another is refused
(so results of different inputs are never mixed). Per-unit files are the resume points: a file that exists and
reads back is finished work.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pyarrow as pa

from symzoo import __version__
from symzoo.errors import ZooError
from symzoo.zoo.location import Location, atomic_write_bytes, require_reachable
from symzoo.zoo.lock import holds_anything
from symzoo.zoo.parquet_io import read_parquet, write_parquet_atomically
from symzoo.zoo.store import Zoo
from symzoo.zoo.weight_cache import zoo_fingerprint

STAGE_FILE = "stage.json"


def check_out_dir(out: Location) -> None:
    """Fail before any work when ``--out`` cannot be a directory."""
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file; pass a new or existing output directory")


# added after outputs existed: recorded only when used, so those stay valid
NEUTRAL_OPTIONS = {"align": "none", "matching": "auto", "batchnorm": "reestimate"}


def stage_identity(zoo: Zoo, opts: dict, identity_options: tuple[str, ...]) -> dict:
    """What makes a stage's results what they are: the zoo's state and the options that change every result (for
    the zoo's stored split, its content: the file can be rewritten)."""
    recorded = (k for k in identity_options if NEUTRAL_OPTIONS.get(k, ...) != opts[k])
    identity = {"zoo_fingerprint": zoo_fingerprint(zoo)} | {k: opts[k] for k in recorded}
    if identity.get("split_seed") == "stored":
        from symzoo.zoo.splits import digest

        identity["split_digest"] = digest(zoo.splits("stored"))
    return identity


def check_stage_dir(out: Location, stage: str, identity: dict) -> None:
    """Raise unless ``out`` is new, empty, or already holds this very work; writes nothing."""
    check_out_dir(out)
    path = out / STAGE_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ZooError(f"{path} is not valid JSON; remove {out} to start the {stage} stage over") from None
        if stored.get("stage") != stage:
            raise ZooError(f"{out} holds {stored.get('stage')!r} outputs, not {stage}; choose another --out")
        old = stored.get("identity", {})
        differs = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if differs:
            raise ZooError(
                f"{out} holds {stage} results of other inputs (differs in: {', '.join(differs)}); "
                "use another --out, or remove it to start over"
            )
        return
    if holds_anything(out):
        raise ZooError(f"{out} exists and is not a {stage} output directory; choose an empty or new --out")


def claim_stage_dir(out: Location, stage: str, identity: dict) -> None:
    """Create ``out`` with its ``stage.json``, or check that it already belongs to this very work."""
    check_stage_dir(out, stage, identity)
    if (out / STAGE_FILE).exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage, "identity": identity, "symzoo_version": __version__}
    atomic_write_bytes(out / STAGE_FILE, json.dumps(record, indent=1).encode())


def write_parquet(path: Location, table: pa.Table | pd.DataFrame) -> str:
    """Atomic write (hidden temp file, then rename); returns the file's sha256."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    return write_parquet_atomically(path, table)


def check_unit_file(path: Location, key_column: str, key: str) -> None:
    """Raise ``ZooError`` unless ``path`` reads back and belongs to unit ``key``."""
    try:
        keys = read_parquet(path, columns=[key_column])[key_column].to_pylist()
    except (OSError, pa.ArrowException, KeyError) as e:
        require_reachable(path)
        raise ZooError(f"corrupt output {path} ({type(e).__name__})") from None
    if not keys or set(keys) != {key}:
        raise ZooError(f"output {path} holds {sorted(set(keys))[:2]} instead of {key!r}")


def read_unit_files(paths: list[Location]) -> pd.DataFrame:
    frames = [read_parquet(p).to_pandas() for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def remove_stale_temporaries(folder: Location) -> None:
    """A write cut short by a kill leaves a hidden temporary: incomplete by construction."""
    for stale in folder.glob(".*.tmp-*"):
        stale.unlink()


DONE_FILE = "done.json"


def mark_done(out: Location, options: dict, seconds: float, where: str) -> None:
    """Record that the stage's outputs are complete for ``options``, with how long the completing call took."""
    record = {"options": options, "seconds": round(seconds, 1), "where": where}
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    atomic_write_bytes(out / DONE_FILE, json.dumps(record, indent=1).encode())


def is_done(out: Location, options: dict) -> bool:
    """True when ``out`` holds complete outputs made with exactly ``options`` (a rerun then does nothing)."""
    path = out / DONE_FILE
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("options") == json.loads(json.dumps(options))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
