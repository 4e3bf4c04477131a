"""INRs fitted per second: batched fitting (``zoo.inr_fit.fit_inrs``) against one at a time (``fit_one``) and
against the machine's FLOP bound, measured in the same run.

    python bench/inr_fit.py [--steps 50] [--packs 16,64,256] [--variant standard] [--threads 2]

Fits SIRENs (2 -> 32 -> 32 -> 1) to real 28x28 Fashion-MNIST images. Prints INR-steps per second for each way, the
ratio batched / one-at-a-time, the fraction of the FLOP bound reached (the bound: the machine's float32 matmul
rate, measured here on 1024 x 1024 products, over the fit's arithmetic per step, ``zoo.inr_fit.step_flops``), and
what a 70,000-image Fashion-MNIST INR zoo per variant would take at ``--fit-steps`` steps per INR.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="steps timed per measurement")
    parser.add_argument("--packs", default="16,64,256", help="batched pack sizes K")
    parser.add_argument("--variant", default="standard", choices=["standard", "w_asym", "sigma_asym"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-steps", type=int, default=500, help="steps per INR in the projection")
    args = parser.parse_args()

    from symzoo.zoo.data import load_fashion_mnist
    from symzoo.zoo.inr_fit import FitSettings, fit_inrs, fit_one, step_flops
    from symzoo.zoo.location import default_data_dir
    from symzoo.zoo.models import build

    torch.set_num_threads(args.threads)
    images = torch.from_numpy(load_fashion_mnist(default_data_dir())[0][:, 0])
    settings = FitSettings(steps=args.steps)
    packs = [int(k) for k in args.packs.split(",")]

    def nets(k: int) -> list:
        return [build("siren", args.variant, (2,), 1, init_seed=i) for i in range(k)]

    single_n = 4
    models = nets(single_n)
    start = time.perf_counter()
    for i, m in enumerate(models):
        fit_one(m, images[i], settings)
    single = single_n * args.steps / (time.perf_counter() - start)
    rates = {}
    for k in packs:
        models = nets(k)
        start = time.perf_counter()
        fit_inrs(models, images[:k], settings)
        rates[k] = k * args.steps / (time.perf_counter() - start)
    peak = matmul_gflops()
    flops = step_flops(nets(1)[0], 28 * 28)
    bound = peak * 1e9 / flops
    print(f"SIREN 2-32-32-1 ({args.variant}), 28x28 images, {args.threads} threads; INR-steps per second:")
    print(f"  one at a time (fit_one):   {single:10.0f}")
    for k, rate in rates.items():
        print(f"  batched, K = {k:<5}        {rate:10.0f}   ratio to one at a time {rate / single:6.1f}")
    best_k = max(rates, key=rates.get)
    print(f"FLOP bound: {peak:.1f} GFLOP/s (float32 matmul) / {flops / 1e6:.2f} MFLOP per INR-step = {bound:.0f}")
    print(f"  best batched rate reaches {rates[best_k] / bound:.1%} of it")
    total = 70_000 * args.fit_steps
    print(
        f"projection: 70,000 INRs x {args.fit_steps} steps = {total / rates[best_k] / 3600:.1f} h per variant at "
        f"K = {best_k} ({total / single / 3600:.1f} h one at a time, {total / bound / 3600:.2f} h at the bound)"
    )


if __name__ == "__main__":
    main()
