"""Time and peak memory to get the (N, P) float32 weight matrix of a full-size CIFAR-10 ResNet8 zoo, four ways.

    python bench/load_weights.py [--networks 10000] [--dir /tmp/symzoo-load-bench]

A zoo of N standard ResNet8s (78,042 parameters, init and final weights) is synthesised once in the zoo's own
format (shards of 250 networks, manifest), then each method runs in a fresh process (peak RSS is that process's),
three times round robin, best time kept; every run is on a warm page cache:
  pyarrow   pq.read_table of the weights_final column of every shard, to one numpy array (the baseline)
            (no page-CRC verification, no row selection)
  zoo       Zoo.weights("final")
  cache     the metanet stage's read: load_variant from its .npy cache (memory map, finiteness scan, copy)
  npload    np.load of the same .npy bytes (the cache's baseline)
Targets (issue 11): zoo >= 80% of pyarrow's rate; cache >= 50% of np.load's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARD = 250


def synthesise(zoo_dir: Path, n: int) -> None:
    """N standard CIFAR-10 ResNet8 rows with random weights, written through the zoo's own shard writer."""
    from symzoo.zoo.config import config_hash, validate
    from symzoo.zoo.layout import ParamLayout
    from symzoo.zoo.models import build
    from symzoo.zoo.store import new_manifest, rows_to_table, write_manifest, write_shard

    cfg = validate({"name": "bench", "data": {"name": "cifar10"}, "variants": ["standard"], "networks": n})
    layouts = {"standard": ParamLayout.from_model(build("resnet8", "standard"))}
    size, layouts_json = layouts["standard"].size, {"standard": layouts["standard"].to_json()}
    manifest = new_manifest(cfg, config_hash(cfg), layouts, "synthetic", (3, 32, 32), 10, -(-n // SHARD))
    scalars = {"replicate": 0, "variant": "standard", "arch": "resnet8", "dataset": "cifar10", "lr": 0.01}
    scalars |= {"weight_decay": 1e-4, "label_smoothing": 0.1, "epochs": 10, "status": "ok", "reason": ""}
    scalars |= {"epochs_done": 10, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "seconds": 1.0}
    scalars |= {"history_train_loss": [1.0], "history_train_acc": [0.5]}
    rng = np.random.default_rng(0)
    for s, start in enumerate(range(0, n, SHARD)):
        rows = []
        for i in range(start, min(n, start + SHARD)):
            w = rng.standard_normal(size, dtype=np.float32) * np.float32(0.05)
            ids = {"model_id": i, "sample": i, "seed": i, "test_acc": float(rng.uniform(0.1, 0.8))}
            rows.append(scalars | ids | {"weights_init": w, "weights_final": w + np.float32(0.01)})
        manifest["shards"][f"part-{s:05d}.parquet"] = write_shard(zoo_dir, s, rows_to_table(rows, layouts_json, []))
        print(f"synthesised {min(n, start + SHARD)} of {n} networks", file=sys.stderr)
    manifest["complete"] = True
    write_manifest(zoo_dir, manifest)


def cache_path(zoo_dir: Path) -> Path:
    from symzoo.zoo.store import open_zoo
    from symzoo.zoo.weight_cache import zoo_fingerprint

    return zoo_dir.parent / "cache" / f"standard-final-{zoo_fingerprint(open_zoo(zoo_dir, verify=False))}.npy"


def peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). ru_maxrss would not do: Linux keeps it across execve, so a child
    started by a parent that once held the whole matrix would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_method(method: str, zoo_dir: Path) -> dict:
    """One read in this process: seconds, shape and a checksum of the matrix."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from symzoo.zoo.store import open_zoo
    from symzoo.zoo.weight_cache import VariantCache

    zoo = open_zoo(zoo_dir, verify=False)
    _ = zoo.frame, zoo.layouts  # metadata is not what is timed
    start = time.perf_counter()
    if method == "pyarrow":
        column = pa.concat_tables(pq.read_table(p, columns=["weights_final"]) for p in zoo.shards)["weights_final"]
        size = zoo.n_params  # schema 2 stores each vector as one fixed_size_binary value of float32s
        matrix = np.concatenate([np.frombuffer(c.buffers()[1], "<f4").reshape(-1, size) for c in column.chunks])
    elif method == "zoo":
        matrix = zoo.weights("final")
    elif method == "cache":
        cache = VariantCache.of(zoo, "standard", "final", zoo_dir.parent / "cache")
        cache.ensure(("flat",), zoo)
        matrix = np.array(cache.matrix("flat"))
    elif method == "npload":
        matrix = np.load(cache_path(zoo_dir))
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - start
    peak_mib = peak_rss_mib()
    return {"seconds": seconds, "shape": list(matrix.shape), "peak_mib": peak_mib, "sum": float(matrix[:, ::997].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=10_000)
    parser.add_argument("--dir", default="/tmp/symzoo-load-bench")
    parser.add_argument("--method", default=None, help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    zoo_dir = Path(args.dir) / f"zoo-{args.networks}"
    if args.method:
        print(json.dumps(run_method(args.method, zoo_dir)))
        return
    if not (zoo_dir / "manifest.json").exists():
        synthesise(zoo_dir, args.networks)
    if not cache_path(zoo_dir).exists():
        from symzoo.zoo.store import open_zoo
        from symzoo.zoo.weight_cache import VariantCache

        zoo = open_zoo(zoo_dir)
        VariantCache.of(zoo, "standard", "final", zoo_dir.parent / "cache").ensure(("flat",), zoo)
    methods = ("pyarrow", "zoo", "cache", "npload")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(3):  # round robin: no method always runs right after the one that warmed its files
        for method in methods:
            cmd = [sys.executable, __file__, "--networks", str(args.networks), "--dir", args.dir, "--method", method]
            runs[method].append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    results = {m: min(r, key=lambda x: x["seconds"]) for m, r in runs.items()}
    sums = {r["sum"] for r in results.values()}
    assert len(sums) == 1, f"methods disagree on the matrix: {results}"
    gib = np.prod(results["zoo"]["shape"]) * 4 / 2**30
    print(f"(N, P) = {tuple(results['zoo']['shape'])} float32, {gib:.2f} GiB; best of 3 (round robin), warm page cache")
    print(f"{'method':8} {'seconds':>8} {'GiB/s':>7} {'peak RSS MiB':>13}  (imports and metadata: ~340 MiB)")
    for method, r in results.items():
        print(f"{method:8} {r['seconds']:8.2f} {gib / r['seconds']:7.2f} {r['peak_mib']:13.0f}")
    zoo_ratio = results["pyarrow"]["seconds"] / results["zoo"]["seconds"]
    cache_ratio = results["npload"]["seconds"] / results["cache"]["seconds"]
    print(f"Zoo.weights at {zoo_ratio:.0%} of pyarrow's rate (target >= 80%)")
    print(f"stage cache at {cache_ratio:.0%} of np.load's rate (target >= 50%)")


if __name__ == "__main__":
    main()
