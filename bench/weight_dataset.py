"""WeightDataset's throughput against a plain memory map of the same matrix (issue 25).

    python bench/weight_dataset.py ZOO_DIR [--variant standard] [--batch-size 64] [--epochs 3]

One shuffled epoch of (flat weights, test accuracy) batches through ``torch.utils.data.DataLoader``, with 0 and 2
worker processes: ``WeightDataset(view="flat")`` against a minimal Dataset that indexes ``np.load(npy,
mmap_mode="r")`` of the very cache file WeightDataset reads (the fastest a map-style dataset over this matrix can
be). Also the ``layers`` view and a ``NeuronPermutation`` transform, which rebuild tensors per item. Prints
batches per second (best epoch of ``--epochs``, after one warm-up epoch) and the ratio to the memory map.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


class MemoryMapped(torch.utils.data.Dataset):
    """The baseline: rows of a .npy, memory-mapped in each worker."""

    def __init__(self, path: Path, targets: np.ndarray) -> None:
        self.path, self.targets, self.matrix = path, torch.from_numpy(targets), None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        if self.matrix is None:
            self.matrix = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.array(self.matrix[i])), self.targets[i]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "matrix": None}


def batches_per_second(dataset, batch_size: int, workers: int, epochs: int) -> float:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )
    best = 0.0
    for epoch in range(epochs + 1):
        start, n = time.perf_counter(), 0
        for _ in loader:
            n += 1
        if epoch:  # the first epoch warms the page cache and starts the workers
            best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path)
    parser.add_argument("--variant", default="standard")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from symzoo.zoo.dataset import WeightDataset
    from symzoo.zoo.store import open_zoo
    from symzoo.zoo.symmetry import NeuronPermutation

    zoo = open_zoo(args.zoo)
    flat = WeightDataset(zoo, view="flat", variants=[args.variant])
    path = flat.caches[args.variant].path("flat")
    rows = flat.networks["row"].to_numpy()
    targets = flat.networks["test_acc"].to_numpy(np.float32)
    baseline = MemoryMapped(path, targets) if (rows == np.arange(len(rows))).all() else None
    if baseline is None:
        raise SystemExit("some networks were left out (not ok or non-finite): the baseline needs every row")
    width = np.load(path, mmap_mode="r").shape[1]
    print(f"{len(flat)} networks of {width} weights ({args.variant}), batch {args.batch_size}; torch threads 1")
    torch.set_num_threads(1)
    cases = {
        "memory map (baseline)": baseline,
        "WeightDataset flat": flat,
        "WeightDataset layers": WeightDataset(zoo, view="layers", variants=[args.variant]),
        "WeightDataset flat + NeuronPermutation": WeightDataset(
            zoo, view="flat", variants=[args.variant], transform=NeuronPermutation(zoo.symmetries)
        ),
    }
    for workers in (0, 2):
        base = None
        for name, dataset in cases.items():
            rate = batches_per_second(dataset, args.batch_size, workers, args.epochs)
            base = base or rate
            print(f"workers {workers}  {name:40s} {rate:8.1f} batches/s  {rate / base:5.2f}x the memory map")


if __name__ == "__main__":
    main()
