"""One training epoch of each metanetwork on N weight vectors of a stored zoo, timed (issue 14, item 4).

    python bench/metanet_epoch.py ZOO --networks 5000 --device cuda [--metanets mlp,dmc,deepsets,statnn]

The run is ``analysis.metanet_run.run_metanet`` with one epoch, as the metanet stage trains it (AdamW, MSE,
batch 128), on the zoo's final weights (W-Asym: trainable entries; StatNN: its 7 statistics per tensor, timed
apart). A small zoo's vectors are repeated up to ``--networks`` rows: time does not depend on the values. The
validation and test splits are 64 rows each, so the time is the training epoch's. Prints seconds per epoch and
what the paper's protocol (6 LRs + 5 seeds, 50 epochs) would take per metanet and variant on this device.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from symzoo.analysis.metanet_run import RunSpec, run_metanet
from symzoo.analysis.metanets import PAPER_LRS
from symzoo.zoo.store import open_zoo
from symzoo.zoo.weight_cache import rows_finite, statnn_features

EVAL_ROWS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--networks", type=int, default=5000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--metanets", default="mlp,statnn,dmc,deepsets")
    parser.add_argument("--variants", default="standard,w_asym")
    args = parser.parse_args()
    zoo = open_zoo(args.zoo)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {name}; {args.networks} training vectors per run, 1 epoch, batch 128", flush=True)
    for variant in args.variants.split(","):
        frame = zoo.frame[zoo.frame["variant"] == variant].reset_index(drop=True)
        stored = zoo.weights("final", variant=variant, trainable_only=True)
        rows = np.flatnonzero(rows_finite(stored) & (frame["status"] == "ok").to_numpy() & frame["test_acc"].notna())
        weights = np.ascontiguousarray(np.resize(stored[rows], (args.networks + 2 * EVAL_ROWS, stored.shape[1])))
        targets = np.resize(frame["test_acc"].to_numpy(np.float32)[rows], len(weights))
        begin = time.perf_counter()
        stats = statnn_features(weights, zoo.layout(variant))
        print(f"{variant}: StatNN features of {len(weights)} vectors {time.perf_counter() - begin:.1f} s (CPU)")
        n = args.networks
        idx = {
            "train": np.arange(n),
            "val": np.arange(n, n + EVAL_ROWS),
            "test": np.arange(n + EVAL_ROWS, len(weights)),
        }
        ids = np.arange(len(weights))
        for metanet in args.metanets.split(","):
            inputs = stats if metanet == "statnn" else weights
            spec = RunSpec(variant, metanet, 1e-3, 0, epochs=1)
            try:
                seconds = run_metanet(spec, inputs, targets, ids, idx, args.device)["seconds"]
            except torch.cuda.OutOfMemoryError as e:
                print(f"{variant:10s} {metanet:8s} out of memory: {str(e)[:120]}", flush=True)
                continue
            runs = len(PAPER_LRS) + 5
            protocol_h = runs * 50 * seconds / 3600
            print(
                f"{variant:10s} {metanet:8s} input {inputs.shape[1]:6d} wide  one epoch {seconds:7.2f} s  "
                f"-> 50 epochs {50 * seconds / 60:6.1f} min, paper protocol ({runs} runs) {protocol_h:5.2f} h",
                flush=True,
            )


if __name__ == "__main__":
    main()
