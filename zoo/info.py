"""``symzoo info``: what a stored zoo holds, as a short text report."""

from __future__ import annotations

from pathlib import Path

from zoo.store import Zoo


def _size(path: Path) -> str:
    n = float(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe(zoo: Zoo, checksums_verified: bool = False) -> str:
    """The report for an opened zoo (``Zoo.complete`` decides "complete"); the first line says how far the shards
    were checked (footers always, sha256 on --verify)."""
    m, cfg, frame = zoo.manifest, zoo.config, zoo.frame
    planned = cfg["networks"] * cfg["replicates"] * len(cfg["variants"])
    checked = "sha256 verified against the manifest" if checksums_verified else "footers checked; --verify for sha256"
    lines = [
        f"zoo {cfg['name']} at {zoo.path}: {len(frame)} of {planned} networks, "
        f"{'complete' if zoo.complete else 'incomplete'}; {len(zoo.shards)} of {m['n_shards']} shards ({checked})",
        f"  {cfg['model']['arch']} on {cfg['data']['name']} {tuple(m['in_shape'])}, {zoo.n_params} parameters "
        f"({', '.join(f'{v}: {lay.n_trainable} trainable' for v, lay in zoo.layouts.items())})",
        f"  config hash {m['config_hash']}, data {m['dataset_fingerprint']}, asym seed {m['asym_seed']}, "
        f"symzoo {m['symzoo_version']}",
        f"  size on disk {_size(zoo.path)}",
    ]
    if len(frame):
        counts = frame.pivot_table(index="variant", columns="status", values="model_id", aggfunc="count", fill_value=0)
        lines += ["", "networks by variant and status:", counts.to_string()]
        ok = frame[frame["status"] == "ok"]
        acc = ok.groupby("variant")[["train_acc", "test_acc"]].agg(["mean", "std", "min", "max"]).round(4)
        lines += ["", "accuracy of finished networks:", acc.to_string()]
        secs = frame.groupby("variant")["seconds"].mean().round(2)
        lines += ["", "mean training seconds per network:", secs.to_string()]
    return "\n".join(lines)
