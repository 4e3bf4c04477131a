"""Ways to run one conv layer for K networks at once, forward + backward, against a per-network loop.

    python bench/packed_kernels.py [--device cuda] [--k 8] [--batch 512] [--methods loop,grouped,bmm]

(a) loop: K separate conv2d calls (the one-at-a-time baseline); (b) grouped: one conv2d with groups=K, which is
what ``vmap`` of the model lowers to (grouped_nhwc: the same in channels_last); (c) bmm: unfold (im2col) + one
batched matmul; (d) blockdiagG: groups of G networks, each one dense conv over a block-diagonal weight (G times
the arithmetic, but wider groups, which cuDNN runs far better than 16-channel ones); (e) grouped_autotuned: the
grouped conv compiled with inductor's max-autotune. (A hand-written Triton kernel, measured at 0.76x cuDNN's speed
in a training step, was not adopted: bench/experiments/README.md.) ResNet8's
conv shapes on CIFAR-10, bf16 on CUDA (``--dtype float16`` to compare). Prints each method's time relative to the
first one, measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from symzoo.zoo.train import tune_kernels

# (C_in, C_out, H=W, stride) of ResNet8's 3x3 convolutions on 32x32 inputs
SHAPES = [(3, 16, 32, 1), (16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]


def loop(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    return torch.stack([F.conv2d(x[k], w[k], stride=stride, padding=1) for k in range(len(w))])


def grouped(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    k, b, c, h, wd = x.shape
    out = F.conv2d(
        x.transpose(0, 1).reshape(b, k * c, h, wd), w.reshape(-1, *w.shape[2:]), stride=stride, padding=1, groups=k
    )
    return out.view(b, k, -1, *out.shape[2:]).transpose(0, 1)


def grouped_nhwc(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    k, b, c, h, wd = x.shape
    side_by_side = x.transpose(0, 1).reshape(b, k * c, h, wd).contiguous(memory_format=torch.channels_last)
    out = F.conv2d(side_by_side, w.reshape(-1, *w.shape[2:]), stride=stride, padding=1, groups=k)
    return out.view(b, k, -1, *out.shape[2:]).transpose(0, 1)


def block_diagonal(w: torch.Tensor, g: int) -> torch.Tensor:
    """Weights (K, O, I, kh, kw) as K/g dense groups of shape (g*O, g*I, kh, kw), zero off the diagonal blocks.

    Written by index assignment, not by multiplying with an identity: a NaN weight must not spread (NaN * 0)."""
    k, o, i = w.shape[:3]
    out = w.new_zeros(k // g, g, o, g, i, *w.shape[3:])
    idx = torch.arange(g, device=w.device)
    out[:, idx, :, idx] = w.view(k // g, g, o, i, *w.shape[3:]).transpose(0, 1)
    return out.reshape(k * o, g * i, *w.shape[3:])


def block_diagonal_conv(g: int):
    def conv(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
        k, b, c, h, wd = x.shape
        side_by_side = x.transpose(0, 1).reshape(b, k * c, h, wd)
        out = F.conv2d(side_by_side, block_diagonal(w, g), stride=stride, padding=1, groups=k // g)
        return out.view(b, k, -1, *out.shape[2:]).transpose(0, 1)

    return conv


def bmm(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    k, b, c, h, wd = x.shape
    cols = F.unfold(x.reshape(k * b, c, h, wd), 3, padding=1, stride=stride)  # (K*B, C*9, L)
    length = cols.shape[-1]
    cols = cols.view(k, b, c * 9, length).permute(0, 2, 1, 3).reshape(k, c * 9, b * length)
    out = torch.bmm(w.reshape(k, w.shape[1], -1), cols)  # (K, O, B*L)
    side = (h + 2 - 3) // stride + 1
    return out.view(k, -1, b, side, side).transpose(1, 2)


METHODS = {
    "loop": loop,
    "grouped": grouped,
    "grouped_nhwc": grouped_nhwc,
    "blockdiag2": block_diagonal_conv(2),
    "blockdiag4": block_diagonal_conv(4),
    "blockdiag8": block_diagonal_conv(8),
    "bmm": bmm,
    # inductor times its Triton conv templates (which take groups) against cuDNN per shape, keeps the faster
    "grouped_autotuned": torch.compile(grouped, mode="max-autotune-no-cudagraphs", dynamic=False),
}


def seconds_per_call(once, device: str, repeats: int) -> float:
    """Mean seconds of ``once()`` after one untimed call (cuDNN autotuning, Triton compilation and tuning)."""
    once()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def timed(fn, x, w, stride, device, repeats: int) -> float:
    return seconds_per_call(lambda: fn(x, w, stride).float().square().mean().backward(), device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="loop,grouped,bmm", help=f"first is the baseline; of {list(METHODS)}")
    parser.add_argument("--dtype", default="bfloat16", help="CUDA dtype: bfloat16 or float16")
    args = parser.parse_args()
    methods = args.methods.split(",")
    torch.set_num_threads(args.threads)
    tune_kernels(torch.device(args.device))  # as training does: cuDNN picks its algorithms per shape
    dtype = getattr(torch, args.dtype) if args.device == "cuda" else torch.float32
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"device: {name}; K={args.k}, batch {args.batch}, {dtype}")
    totals = dict.fromkeys(methods, 0.0)
    for c_in, c_out, side, stride in SHAPES:
        x = torch.randn(args.k, args.batch, c_in, side, side, device=args.device, dtype=dtype, requires_grad=True)
        w = torch.randn(args.k, c_out, c_in, 3, 3, device=args.device, dtype=dtype, requires_grad=True)
        ref = grouped(x, w, stride)
        row = []
        for label in methods:
            fn = METHODS[label]
            assert torch.allclose(fn(x, w, stride).float(), ref.float(), atol=0.1, rtol=0.05), label
            t = timed(fn, x, w, stride, args.device, args.repeats)
            totals[label] += t
            row.append(f"{label} {t * 1e3:8.1f} ms")
        print(f"conv {c_in:>2}->{c_out:<2} {side}x{side} s{stride}: " + "  ".join(row))
    base = totals[methods[0]]
    print(
        "all layers: " + "  ".join(f"{k} {v * 1e3:.0f} ms (x{base / v:.2f} vs {methods[0]})" for k, v in totals.items())
    )


if __name__ == "__main__":
    main()
