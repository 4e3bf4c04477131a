"""A zoo trained on this machine's device through the zoo's own shard code, without Ray; accuracy per variant.

    python bench/zoo_shard.py configs/cifar10_paper.yaml --networks 24 --device cuda [--out /tmp/zoo_shard]
    python bench/zoo_shard.py ... --triton-conv     # the packs' 3x3 convolutions on bench/triton_conv.py

What a GPU worker of ``symzoo generate`` does with each shard (``pipelines.shard.train_shard_table``: the
config's pack size and ``compile`` resolved for this device, epoch-sorted shards, the stored Arrow schema), for
machines without Ray (the device machines have none). Writes the shards as a zoo does, reads them back with
pandas, and prints mean train/test accuracy per variant beside the paper's, divergences and networks per hour.
Paper (CIFAR-10 ResNet8): 74.8% / 73.8% train / test (standard), 64.0% / 64.0% (W-Asym).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import pandas as pd
import torch
from accuracy import PAPER  # bench/accuracy.py: the paper's train / test accuracies per variant
from packed import triton_convs  # bench/packed.py: routes packed 3x3 convs to bench/triton_conv.py

from symzoo.pipelines.shard import dataset_from, layouts_for, shard_specs, train_shard_table, training_line
from symzoo.zoo.config import load_config
from symzoo.zoo.store import MODELS, write_shard


def config_for(path: str, networks: int | None, device: str, seed: int | None = None) -> dict:
    """The config as a GPU worker of generate resolves it, with ``networks`` samples (and another zoo ``seed``:
    fresh draws, masks and inits), on ``device``."""
    cfg = load_config(path)
    if networks:
        cfg["networks"] = networks
    if seed is not None:
        cfg["seed"] = seed
    if device == "cpu":
        cfg["execution"]["gpus_per_task"] = 0
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--networks", type=int, default=None, help="networks per variant (default: the config's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="/tmp/zoo_shard")
    parser.add_argument("--triton-conv", action="store_true", help="packed 3x3 convs on bench/triton_conv.py")
    args = parser.parse_args()
    cfg = config_for(args.config, args.networks, args.device)
    out = Path(args.out)
    data = dataset_from(cfg).to(args.device)
    layouts_json = {v: layout.to_json() for v, layout in layouts_for(cfg, data).items()}
    shards = shard_specs(cfg)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    n_nets = sum(map(len, shards))
    convs = "; 3x3 convs on bench/triton_conv.py" if args.triton_conv else ""
    print(f"device: {name}; {cfg['name']}: {n_nets} networks in {len(shards)} shards; {training_line(cfg)}{convs}")
    start = time.perf_counter()
    with triton_convs() if args.triton_conv else contextlib.nullcontext():
        for index, specs in enumerate(shards):

            def progress(done: int, index: int = index, total: int = len(specs)) -> None:
                print(f"shard {index}: {done}/{total} networks after {time.perf_counter() - start:.0f} s", flush=True)

            write_shard(out, index, train_shard_table(specs, cfg, data, layouts_json, progress))
    seconds = time.perf_counter() - start
    zoo = pd.read_parquet(out / MODELS, columns=["variant", "status", "epochs", "train_acc", "test_acc"])
    print(f"{len(zoo)} rows read back with pandas; {n_nets} networks in {seconds:.0f} s, compilation included")
    for variant, rows in zoo.groupby("variant"):
        ok = rows[rows.status == "ok"]
        paper = PAPER.get(str(variant), (float("nan"), float("nan")))
        print(
            f"{variant:10s} {len(rows):3d} nets  mean train/test acc {100 * ok.train_acc.mean():5.1f}% / "
            f"{100 * ok.test_acc.mean():5.1f}% (median test {100 * ok.test_acc.median():5.1f}%, "
            f"std {100 * ok.test_acc.std():4.1f})  paper {paper[0]}% / {paper[1]}%  "
            f"diverged {int((rows.status == 'diverged').sum())}  failed {int((rows.status == 'failed').sum())}"
        )
    print(f"overall {3600 * n_nets / seconds:.0f} networks/hour (one process, every graph compiled in the run)")


if __name__ == "__main__":
    main()
