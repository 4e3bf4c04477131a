"""Ray Data against symzoo's own read path, for the analysis stages (issue 21: evaluate, adopt where it keeps resume,
quarantine and progress).

    python bench/experiments/ray_data.py ZOO_DIR [--column weights_final]

Three ways to run one pass over every network's weights that an analysis stage would make (here: each row's sum
of squares, as a finiteness check needs), on a local Ray cluster:
  symzoo    StoredRows.read_into in one process, a row group at a time (what a stage's task does for its rows)
  tasks     one Ray task per shard, each reading its rows with StoredRows (the stages' shape: units read where
            they run, results are small)
  ray.data  ray.data.read_parquet(models/, columns=[model_id, weights]) streaming into map_batches
Prints seconds, GiB/s and the driver's peak RSS after each; the ratio is against ``symzoo`` in the same run.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sum_of_squares(values: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", values, values, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path)
    parser.add_argument("--column", default="weights_final")
    args = parser.parse_args()

    import ray

    from symzoo.zoo.store import open_zoo

    zoo = open_zoo(args.zoo, verify=False)
    which = args.column.removeprefix("weights_")
    rows = zoo.stored_rows()
    gib = len(rows) * zoo.n_params * 4 / 2**30
    results = {}

    start = time.perf_counter()
    out = np.empty(len(rows))

    def put(at: np.ndarray, values: np.ndarray) -> None:
        out[at] = sum_of_squares(values)

    rows.read_into(which, put)
    results["symzoo"] = time.perf_counter() - start
    reference = out.copy()
    print(f"symzoo    {results['symzoo']:6.1f} s {gib / results['symzoo']:5.2f} GiB/s driver {peak_mib():.0f} MiB")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    @ray.remote
    def shard_task(part) -> tuple[np.ndarray, np.ndarray]:
        from symzoo.zoo.store import StoredRows

        shard = StoredRows(rows.n_params, (part,), rows.variants, by_id=False)
        sums = np.empty(len(shard))
        shard.read_into(which, lambda at, values: sums.__setitem__(at, sum_of_squares(values)))
        return shard.model_ids, sums

    ray.get(shard_task.remote(rows.parts[0]))  # workers started and imports done before timing
    start = time.perf_counter()
    got = ray.get([shard_task.remote(part) for part in rows.parts])
    results["tasks"] = time.perf_counter() - start
    ids = np.concatenate([g[0] for g in got])
    sums = np.concatenate([g[1] for g in got])[np.argsort(ids)]
    assert np.allclose(sums, reference), "per-shard tasks disagree with the in-process read"
    print(
        f"tasks     {results['tasks']:6.1f} s {gib / results['tasks']:5.2f} GiB/s driver {peak_mib():.0f} MiB "
        f"({results['tasks'] / results['symzoo']:.2f}x symzoo)"
    )

    import pyarrow as pa

    def batch_sums(batch: pa.Table) -> pa.Table:
        column = batch[args.column].combine_chunks()
        values = np.frombuffer(column.buffers()[1], "<f4", len(column) * zoo.n_params, column.offset * 4 * zoo.n_params)
        return pa.table({"model_id": batch["model_id"], "sum": sum_of_squares(values.reshape(len(column), -1))})

    start = time.perf_counter()
    dataset = ray.data.read_parquet(str(args.zoo / "models"), columns=["model_id", args.column])
    frames = [b for b in dataset.map_batches(batch_sums, batch_format="pyarrow").iter_batches(batch_format="pandas")]
    results["ray.data"] = time.perf_counter() - start
    import pandas as pd

    frame = pd.concat(frames).sort_values("model_id")
    assert np.allclose(frame["sum"].to_numpy(), reference), "Ray Data disagrees with the in-process read"
    print(
        f"ray.data  {results['ray.data']:6.1f} s {gib / results['ray.data']:5.2f} GiB/s driver {peak_mib():.0f} MiB "
        f"({results['ray.data'] / results['symzoo']:.2f}x symzoo)"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
