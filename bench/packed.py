"""Networks per hour with packed training against the one-at-a-time loop, measured in the same run.

    python bench/packed.py                          # CPU: K in 1,4,8 (K=32+ needs more than 24 GiB at batch 512)
    python bench/packed.py --device cuda --ks 1,8,32,128 --check

CIFAR-10 ResNet8 (standard and W-Asym), the paper's recipe: batch 512, AdamW, Table 8 hyperparameters, augmentation,
bf16 autocast on CUDA. Each configuration trains ``--steps`` steps after a warm-up; a paper-recipe network is
25 epochs x 97 steps on average (Table 8), which turns seconds per step into networks per hour.
``--check`` first compares 3 packed networks with the same 3 trained alone (max weight difference) on the device.
``--also max-autotune`` (with ``--compile``) times every pack again with inductor timing its own Triton convolution
templates, which take groups, against cuDNN's for every conv of the graph (keeping the faster), and prints its rate
against the plain pack's, measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import torch

from symzoo.zoo.data import Dataset, load_dataset
from symzoo.zoo.models import build
from symzoo.zoo.packed import train_pack
from symzoo.zoo.plan import PAPER_TABLE8, HParams, sample_hparams
from symzoo.zoo.train import Recipe, train_network

STEPS_PER_PAPER_NETWORK = 25 * (50_000 // 512)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one_epoch_hparams(k: int) -> list[HParams]:
    """Table 8 draws with a single epoch, so every network runs exactly the timed steps."""
    return [
        HParams(h.lr, h.weight_decay, h.label_smoothing, 1)
        for h in (sample_hparams(PAPER_TABLE8, 0, i) for i in range(k))
    ]


def time_loop(variant: str, data: Dataset, recipe: Recipe, n_nets: int) -> float:
    """Seconds per network-step of the plain one-at-a-time loop."""
    hps = one_epoch_hparams(n_nets)
    train_network(build("resnet8", variant).to(data.x_train.device), data, hps[0], recipe, 0, evaluate_final=False)
    sync(str(data.x_train.device))
    start = time.perf_counter()
    for i, hp in enumerate(hps):
        model = build("resnet8", variant, init_seed=i).to(data.x_train.device)
        train_network(model, data, hp, recipe, seed=i, evaluate_final=False)
    sync(str(data.x_train.device))
    return (time.perf_counter() - start) / (n_nets * (len(data.x_train) // recipe.batch_size))


def time_pack(variant: str, data: Dataset, recipe: Recipe, k: int, warm_up: bool = True) -> float:
    """Seconds per network-step of one pack of ``k`` (after a first, untimed pack unless ``warm_up`` is off)."""
    hps = one_epoch_hparams(k)
    device = data.x_train.device
    if warm_up:
        warm = [build("resnet8", variant, init_seed=i).to(device) for i in range(k)]
        start = time.perf_counter()
        train_pack(warm, data, hps, list(range(k)), recipe, evaluate_final=False)
        sync(str(device))
        print(f"{variant}: K={k} warm-up pack (compilation, autotuning) {time.perf_counter() - start:.1f} s")
    models = [build("resnet8", variant, init_seed=i).to(device) for i in range(k)]
    start = time.perf_counter()
    train_pack(models, data, hps, list(range(k)), recipe, evaluate_final=False)
    sync(str(device))
    return (time.perf_counter() - start) / (k * (len(data.x_train) // recipe.batch_size))


def profile(variant: str, data: Dataset, recipe: Recipe, k: int, rows: int = 25) -> None:
    """Where a pack's step spends its time: the operators and kernels with the most device (or CPU) time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    time_pack(variant, data, recipe, k)  # warm-up: compilation and cuDNN autotuning stay out of the profile
    cuda = data.x_train.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        t = time_pack(variant, data, recipe, k, warm_up=False)  # one pack: the kernel totals are its steps
    print(f"{variant}: packed K={k}: {t * 1e3:.2f} ms/net-step under the profiler")
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def check(data: Dataset, recipe: Recipe) -> None:
    """Packed against alone on this device: in strict float32 (no bf16, no TF32) the weights must agree closely;
    with the recipe's bf16 the test accuracies should."""
    hps = [HParams(0.01, 5e-4, 0.1, 1), HParams(0.005, 1e-3, 0.0, 1), HParams(0.02, 1e-4, 0.2, 1)]
    device = data.x_train.device
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        compare(data, dataclasses.replace(recipe, amp=False), hps, "float32")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    if recipe.amp and device.type == "cuda":
        compare(data, recipe, hps, "bf16")


def compare(data: Dataset, recipe: Recipe, hps: list[HParams], label: str) -> None:
    device = data.x_train.device
    for variant in ("standard", "w_asym", "sigma_asym"):
        alone = [
            train_network(build("resnet8", variant, init_seed=i).to(device), data, hp, recipe, i)
            for i, hp in enumerate(hps)
        ]
        packed = train_pack(
            [build("resnet8", variant, init_seed=i).to(device) for i in range(3)], data, hps, [0, 1, 2], recipe
        )
        pairs = list(zip(alone, packed, strict=True))
        diff = max((a.final_weights - b.final_weights).abs().max().item() for a, b in pairs)
        rel = max(((a.final_weights - b.final_weights).norm() / a.final_weights.norm()).item() for a, b in pairs)
        accs = [(round(a.test_acc, 4), round(b.test_acc, 4)) for a, b in pairs]
        print(
            f"check {label} {variant}: max |w_alone - w_packed| = {diff:.1e}, relative L2 {rel:.1e}; "
            f"test acc alone/packed {accs}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ks", default=None, help="pack sizes, e.g. 1,8,32,128")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration")
    parser.add_argument("--variants", default="standard,w_asym")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the packed forward")
    parser.add_argument("--channels-last", action="store_true", help="NHWC activations in the packed forward")
    parser.add_argument("--no-loop", action="store_true", help="skip the one-at-a-time baseline")
    parser.add_argument("--check-only", action="store_true", help="run the --check comparison and stop")
    parser.add_argument("--profile", type=int, default=0, metavar="K", help="print the top kernels of a pack of K")
    parser.add_argument("--also", default="", help=f"also time each pack with these, of {list(ALTERNATIVES)}")
    args = parser.parse_args()
    unknown = set(filter(None, args.also.split(","))) - set(ALTERNATIVES)
    if unknown:
        parser.error(f"--also: unknown {sorted(unknown)}; choose from {list(ALTERNATIVES)}")
    cuda = args.device.startswith("cuda")
    torch.set_num_threads(args.threads)
    ks = [int(k) for k in (args.ks or ("1,8,32,128" if cuda else "1,4,8")).split(",")]
    steps = args.steps or (20 if cuda else 2)
    recipe = Recipe(compile=args.compile, channels_last=args.channels_last)
    cifar = load_dataset("cifar10")
    data = cifar.head(steps * recipe.batch_size, 1000).to(args.device)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {args.threads} threads"
    print(
        f"device: {name}; {steps} steps of batch {recipe.batch_size} per configuration; "
        f"amp={'bf16' if cuda and recipe.amp else 'off'} channels_last={recipe.channels_last} compile={recipe.compile}",
        flush=True,
    )
    if args.check or args.check_only:
        check(cifar.head(4 * recipe.batch_size, 1000).to(args.device), recipe)
    if args.check_only:
        return
    if args.profile:
        profile(args.variants.split(",")[0], data, recipe, args.profile)
        return
    for variant in args.variants.split(","):
        base = float("nan") if args.no_loop else time_loop(variant, data, recipe, 2)
        base_rate = 3600 / (base * STEPS_PER_PAPER_NETWORK)
        print(f"{variant}: one-at-a-time loop {base * 1e3:8.1f} ms/net-step  {base_rate:8.1f} nets/hour", flush=True)
        for k in ks:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            try:
                t = time_pack(variant, data, recipe, k)
            except torch.OutOfMemoryError:
                print(f"{variant}: packed K={k:<4d}      out of memory at batch {recipe.batch_size}")
                torch.cuda.empty_cache()
                continue
            report(variant, f"packed K={k:<4d}", t, f"ratio to loop {base / t:5.2f}", cuda)
            for alternative in filter(None, args.also.split(",")):
                torch._dynamo.reset()  # compiled graphs hold the plain pack's kernels: trace again
                with ALTERNATIVES[alternative]():
                    t_other = time_pack(variant, data, recipe, k)
                torch._dynamo.reset()
                report(variant, f"K={k:<4d} {alternative}", t_other, f"ratio to plain pack {t / t_other:5.2f}", cuda)


def max_autotune() -> contextlib.AbstractContextManager:
    from torch._inductor import config

    return config.patch(max_autotune=True)


ALTERNATIVES = {"max-autotune": max_autotune}


def report(variant: str, label: str, seconds: float, ratio: str, cuda: bool) -> None:
    """One line: seconds per network-step, the networks per hour they mean, a ratio, peak memory on a GPU."""
    rate = 3600 / (seconds * STEPS_PER_PAPER_NETWORK)
    memory = f"  peak {torch.cuda.max_memory_allocated() / 2**30:5.1f} GiB" if cuda else ""
    line = f"{variant}: {label:<22s} {seconds * 1e3:8.1f} ms/net-step  {rate:8.1f} nets/hour  {ratio}{memory}"
    print(line, flush=True)


if __name__ == "__main__":
    main()
