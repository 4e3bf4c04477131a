"""Mean test accuracy of paper-recipe ResNet8s on the full CIFAR-10, beside the paper's figures.

    python bench/accuracy.py --device cuda --networks 24 --pack 24

Trains ``--networks`` paired hyperparameter samples (paper Table 8) per variant with packed training, no Ray
(the device machines have none), and prints mean train/test accuracy, divergences and networks per hour.
Paper: 74.8% / 73.8% train / test (standard), 64.0% / 64.0% (W-Asym).
"""

from __future__ import annotations

import argparse
import time

import torch

from zoo.data import load_dataset
from zoo.models import build
from zoo.packed import train_pack
from zoo.plan import plan_zoo
from zoo.train import Recipe

PAPER = {"standard": (74.8, 73.8), "w_asym": (64.0, 64.0), "sigma_asym": (float("nan"), float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--networks", type=int, default=24)
    parser.add_argument("--pack", type=int, default=24)
    parser.add_argument("--variants", default="standard,w_asym")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="cifar10", help="a smoke test may use digits")
    parser.add_argument("--epochs", type=int, default=None, help="override Table 8's epochs (smoke tests only)")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    variants = args.variants.split(",")
    data = load_dataset(args.dataset).to(args.device)
    recipe = Recipe(batch_size=args.batch_size)
    specs = plan_zoo(
        args.networks, variants, zoo_seed=args.seed, dists={"epochs": args.epochs} if args.epochs else None
    )
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {name}; {args.networks} networks per variant, packs of {args.pack}, paper recipe")
    for variant in variants:
        mine = [s for s in specs if s.variant == variant]
        start = time.perf_counter()
        results = []
        for i in range(0, len(mine), args.pack):
            group = mine[i : i + args.pack]
            models = [
                build("resnet8", variant, data.in_shape, data.num_classes, asym_seed=args.seed, init_seed=s.seed)
                for s in group
            ]
            models = [m.to(args.device) for m in models]
            results += train_pack(models, data, [s.hparams for s in group], [s.seed for s in group], recipe)
        hours = (time.perf_counter() - start) / 3600
        ok = [r for r in results if r.status == "ok"]
        train = 100 * sum(r.train_acc for r in ok) / max(1, len(ok))
        test = 100 * sum(r.test_acc for r in ok) / max(1, len(ok))
        print(
            f"{variant:10s} mean train/test acc {train:5.1f}% / {test:5.1f}%  (paper {PAPER[variant][0]}% / "
            f"{PAPER[variant][1]}%)  diverged {len(results) - len(ok)}/{len(results)}  "
            f"{len(results) / hours:7.0f} nets/hour"
        )


if __name__ == "__main__":
    main()
