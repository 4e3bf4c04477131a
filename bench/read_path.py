"""Where a weight read's time goes: Arrow's read of one weight column with and without page CRCs, from a file or a
memory map, with symzoo's row checksums, against np.load of the same bytes, in one run (ratios, not seconds).

    python bench/read_path.py ZOO [--threads 1 2 4]

ZOO: any schema-3 zoo (e.g. bench/scale.py's synthetic ``zoo_2000``). Each way reads every shard's row groups of
``weights_final`` into one (N, P) array in model_id order, ``--threads`` shards at once, best of 3 on a warm page
cache. ``Zoo.weights`` is the committed path (memory map, no page CRCs, row checksums).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from symzoo.zoo.store import open_zoo, row_checksums, weight_rows


def read_all(zoo, page_crc: bool, memory_map: bool, check_rows: bool, threads: int) -> np.ndarray:
    rows = zoo.stored_rows()
    ids, size = rows.model_ids, zoo.n_params
    out = np.empty((len(rows), size), np.float32)

    def one(part) -> None:
        path, _ = part
        shard = pq.ParquetFile(str(path), page_checksum_verification=page_crc, memory_map=memory_map)
        for group in range(shard.metadata.num_row_groups):
            table = shard.read_row_groups([group], columns=["model_id", "weights_final"], use_threads=False)
            values = weight_rows(table["weights_final"].chunk(0), size)
            if check_rows:
                row_checksums(values)
            out[np.searchsorted(ids, table["model_id"].to_numpy())] = values

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, rows.parts))
    return out


def best_of_3(read, *args) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        read(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    zoo = open_zoo(args.zoo, verify=False)
    gib = len(zoo.frame) * zoo.n_params * 4 / 2**30
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "final.npy"
        np.save(npy, zoo.weights("final"))
        baseline = best_of_3(np.load, npy)
    print(f"{gib:.2f} GiB of final weights; np.load {gib / baseline:.2f} GiB/s (baseline)")
    print(f"{'way':44} {'threads':>7} {'GiB/s':>6} {'time vs np.load':>16}")
    ways = {
        "page CRCs, file (schema 2's path)": (True, False, False),
        "no page CRCs, file": (False, False, False),
        "no page CRCs, memory map": (False, True, False),
        "no page CRCs, memory map, row checksums": (False, True, True),
    }
    for threads in args.threads:
        for name, (crc, mmap, check) in ways.items():
            seconds = best_of_3(read_all, zoo, crc, mmap, check, threads)
            print(f"{name:44} {threads:7d} {gib / seconds:6.2f} {seconds / baseline:15.2f}x")
    seconds = best_of_3(zoo.weights, "final")
    print(f"{'Zoo.weights (committed)':44} {'4':>7} {gib / seconds:6.2f} {seconds / baseline:15.2f}x")


if __name__ == "__main__":
    main()
