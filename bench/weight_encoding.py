"""How to store weight vectors in Parquet: read speed and size of four encodings against np.load, same run.

    python bench/weight_encoding.py [--networks 250] [--zoo DIR]

The same (N, P) float32 matrix (ResNet8 size, P = 78,042; random N(0, 0.05), or the final weights of a stored zoo
with --zoo) is written as one column four ways, in row groups of 32 with page CRCs, and read back with
``pq.read_table`` (CRCs verified) into an (N, P) array; best of 3 on a warm page cache:
  list/none    fixed_size_list<float32>[P], uncompressed
  list/zstd    fixed_size_list<float32>[P], zstd (schema 1)
  binary/none  fixed_size_binary[4P], uncompressed (schema 2)
  binary/lz4   fixed_size_binary[4P], lz4
np.load of the same bytes as .npy is the baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def column(matrix: np.ndarray, kind: str) -> pa.Array:
    n, p = matrix.shape
    if kind == "list":
        return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), p)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * p), n, [None, pa.py_buffer(matrix.tobytes())])


def to_matrix(table: pa.Table, p: int) -> np.ndarray:
    chunks = table["w"].chunks
    if pa.types.is_fixed_size_list(chunks[0].type):
        return np.concatenate([c.flatten().to_numpy().reshape(-1, p) for c in chunks])
    return np.concatenate([np.frombuffer(c.buffers()[1], "<f4").reshape(-1, p) for c in chunks])


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=250)
    parser.add_argument("--zoo", type=Path, help="take the final weights of this stored zoo's first networks")
    args = parser.parse_args()
    if args.zoo:
        from symzoo.zoo.store import open_zoo

        zoo = open_zoo(args.zoo)
        ids = zoo.frame["model_id"].iloc[: args.networks].tolist()
        matrix = np.ascontiguousarray(zoo.weights("final", model_ids=ids))
        source = f"final weights of {len(ids)} networks of {args.zoo}"
    else:
        matrix = np.random.default_rng(0).standard_normal((args.networks, 78_042), dtype=np.float32) * 0.05
        source = f"{args.networks} random N(0, 0.05) vectors of 78,042 float32"
    n, p = matrix.shape
    gib = matrix.nbytes / 2**30
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "w.npy"
        np.save(npy, matrix)
        baseline = best_of(lambda: np.load(npy))
        print(f"{source}: {gib:.2f} GiB; np.load {gib / baseline:.2f} GiB/s")
        print(f"{'encoding':12} {'size':>6} {'GiB/s':>6} {'time / np.load':>15}")
        for kind, codec in (("list", "none"), ("list", "zstd"), ("binary", "none"), ("binary", "lz4")):
            path = Path(tmp) / f"{kind}-{codec}.parquet"
            table = pa.table({"w": column(matrix, kind)})
            pq.write_table(
                table, path, compression=codec, use_dictionary=False, write_page_checksum=True, row_group_size=32
            )
            read = to_matrix(pq.read_table(path, page_checksum_verification=True), p)
            assert np.array_equal(read, matrix)
            seconds = best_of(lambda path=path: to_matrix(pq.read_table(path, page_checksum_verification=True), p))
            size = path.stat().st_size / matrix.nbytes
            print(f"{kind + '/' + codec:12} {size:6.3f} {gib / seconds:6.2f} {seconds / baseline:15.2f}")


if __name__ == "__main__":
    main()
