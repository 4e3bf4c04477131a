"""Mean test accuracy of paper-recipe ResNet8s on the full CIFAR-10, beside the paper's figures.

    python bench/accuracy.py --device cuda --networks 32 --pack 16 [--budget-s 180]

Trains ``--networks`` paired hyperparameter samples (paper Table 8) per variant with packed training, no Ray
(the device machines have none), packs of the variants taking turns, so a time budget cuts both alike. Prints
each pack as it ends, then mean train/test accuracy, divergences and networks per hour per variant.
Paper: 74.8% / 73.8% train / test (standard), 64.0% / 64.0% (W-Asym).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from symzoo.analysis.paper import ZOO_ACCURACY
from symzoo.zoo.data import load_dataset
from symzoo.zoo.models import build
from symzoo.zoo.packed import train_pack
from symzoo.zoo.plan import plan_zoo
from symzoo.zoo.train import Recipe, TrainResult

PAPER = ZOO_ACCURACY


def summary(variant: str, results: list[TrainResult], seconds: float) -> str:
    ok = [r for r in results if r.status == "ok"]
    train = [100 * r.train_acc for r in ok] or [float("nan")]
    test = [100 * r.test_acc for r in ok] or [float("nan")]
    spread = statistics.pstdev(test) if len(test) > 1 else float("nan")
    return (
        f"{variant:10s} {len(results):3d} nets  mean train/test acc {statistics.fmean(train):5.1f}% / "
        f"{statistics.fmean(test):5.1f}% (std {spread:4.1f})  paper {PAPER[variant][0]}% / {PAPER[variant][1]}%  "
        f"diverged {len(results) - len(ok)}  {3600 * len(results) / max(seconds, 1e-9):6.0f} nets/hour"
    )


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
    parser.add_argument("--budget-s", type=float, default=None, help="start no pack after this many seconds")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the packs, as GPU zoos do")
    parser.add_argument(
        "--sort-epochs",
        action="store_true",
        help="packs of neighbouring epoch counts, as the zoo's shards (fair only when no --budget-s cuts the run)",
    )
    args = parser.parse_args()
    if args.sort_epochs and args.budget_s is not None:
        parser.error("--sort-epochs with --budget-s would leave out the longest networks; use one or the other")
    variants = args.variants.split(",")
    data = load_dataset(args.dataset).to(args.device)
    recipe = Recipe(batch_size=args.batch_size, channels_last=args.channels_last, compile=args.compile)
    specs = plan_zoo(
        args.networks, variants, zoo_seed=args.seed, dists={"epochs": args.epochs} if args.epochs else None
    )
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"device: {name}; {args.networks} networks per variant, packs of {args.pack}, paper recipe, "
        f"compile={args.compile}, {'epoch-sorted' if args.sort_epochs else 'plan-order'} packs",
        flush=True,
    )
    # plan-order packs by default: whatever a time budget leaves must be a fair sample of Table 8
    per_variant = [[s for s in specs if s.variant == v] for v in variants]
    if args.sort_epochs:
        per_variant = [sorted(mine, key=lambda s: s.hparams.epochs) for mine in per_variant]
    per_variant = [[mine[i : i + args.pack] for i in range(0, len(mine), args.pack)] for mine in per_variant]
    turns = [g for round_ in itertools.zip_longest(*per_variant) for g in round_ if g]  # variants take turns
    results: dict[str, list[TrainResult]] = {v: [] for v in variants}
    seconds: dict[str, float] = dict.fromkeys(variants, 0.0)
    start = time.perf_counter()
    for group in turns:
        if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
            print(f"time budget of {args.budget_s:.0f} s spent: {sum(map(len, results.values()))} networks trained")
            break
        variant = group[0].variant
        t0 = time.perf_counter()
        models = [
            build("resnet8", variant, data.in_shape, data.num_classes, asym_seed=args.seed, init_seed=s.seed).to(
                args.device
            )
            for s in group
        ]
        done = train_pack(models, data, [s.hparams for s in group], [s.seed for s in group], recipe)
        seconds[variant] += time.perf_counter() - t0
        results[variant] += done
        epochs = [s.hparams.epochs for s in group]
        print(
            f"pack {variant} epochs {min(epochs)}-{max(epochs)}: test acc "
            + " ".join(f"{100 * r.test_acc:.1f}" for r in done)
            + f"  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    for variant in variants:
        if results[variant]:
            print(summary(variant, results[variant], seconds[variant]))


if __name__ == "__main__":
    main()
