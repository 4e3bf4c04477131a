"""Time one paper-recipe ResNet8 training epoch on CIFAR-10 per variant: the baseline later speed work beats.

    python bench/epoch.py [--device cuda] [--steps N]

Prints images/second per variant and each variant's ratio to the standard network measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch

from symzoo.zoo.data import load_dataset
from symzoo.zoo.models import VARIANTS, build
from symzoo.zoo.plan import HParams
from symzoo.zoo.train import Recipe, train_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="training steps of batch 512 to time (an epoch: 97)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("cifar10")
    recipe = Recipe()
    n = args.steps * recipe.batch_size
    sub = data.head(n, 0).to(args.device)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU x{args.threads} threads"
    print(f"device: {name}; {args.steps} steps of batch {recipe.batch_size}")
    rates = {}
    for variant in VARIANTS:
        model = build("resnet8", variant, init_seed=0).to(args.device)
        train_network(model, sub, HParams(0.01, 5e-4, 0.1, 1), recipe, seed=0, evaluate_final=False)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_network(model, sub, HParams(0.01, 5e-4, 0.1, 1), recipe, seed=1, evaluate_final=False)
        seconds = time.perf_counter() - start
        rates[variant] = n / seconds
        print(
            f"{variant:11s} {rates[variant]:9.0f} img/s  full epoch {50_000 / rates[variant]:7.1f} s  "
            f"ratio to standard {rates[variant] / rates['standard']:.2f}"
        )


if __name__ == "__main__":
    main()
