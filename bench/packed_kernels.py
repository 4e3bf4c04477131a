"""Ways to run one conv layer for K networks at once, forward + backward, against a per-network loop.

    python bench/packed_kernels.py [--device cuda] [--k 8] [--batch 512] [--methods loop,grouped,bmm]

(a) loop: K separate conv2d calls (the one-at-a-time baseline); (b) grouped: one conv2d with groups=K, which is
what ``vmap`` of the model lowers to (grouped_nhwc: the same in channels_last); (c) bmm: unfold (im2col) + one
batched matmul; (d) blockdiagG: groups of G networks, each one dense conv over a block-diagonal weight (G times
the arithmetic, but wider groups, which cuDNN runs far better than 16-channel ones); (e) triton: the kernels of
``bench/triton_conv.py``; (f) grouped_autotuned: the grouped conv compiled with inductor's max-autotune. ResNet8's
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


def triton(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    from triton_conv import grouped_conv3x3  # bench/triton_conv.py: needs the triton package

    k, b, c, h, wd = x.shape
    out = grouped_conv3x3(x.transpose(0, 1).reshape(b, k * c, h, wd), w, stride)
    return out.view(b, k, -1, *out.shape[2:]).transpose(0, 1)


METHODS = {
    "loop": loop,
    "grouped": grouped,
    "grouped_nhwc": grouped_nhwc,
    "blockdiag2": block_diagonal_conv(2),
    "blockdiag4": block_diagonal_conv(4),
    "blockdiag8": block_diagonal_conv(8),
    "bmm": bmm,
    "triton": triton,
    # inductor times its Triton conv templates (which take groups) against cuDNN per shape, keeps the faster
    "grouped_autotuned": torch.compile(grouped, mode="max-autotune-no-cudagraphs", dynamic=False),
}


def gradient_error(fn, ref_grads: tuple[torch.Tensor, torch.Tensor], x, w, stride: int) -> float:
    """Largest relative difference of (dx, dw) from the grouped conv's, for a kernel with its own backward."""
    x.grad = w.grad = None
    fn(x, w, stride).float().square().mean().backward()
    pairs = zip((x.grad, w.grad), ref_grads, strict=True)
    return max(((a - r).float().norm() / r.float().norm()).item() for a, r in pairs)


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


def phase_times(x: torch.Tensor, w: torch.Tensor, stride: int, device: str, repeats: int) -> dict[str, list[float]]:
    """Forward, input-gradient and weight-gradient seconds apart, cuDNN's grouped conv against the Triton kernels."""
    from triton_conv import conv_forward, input_grad, weight_grad

    k, b, c, h, wd = x.shape
    xs = x.detach().transpose(0, 1).reshape(b, k * c, h, wd).contiguous()
    wt, flat = w.detach(), w.detach().reshape(-1, *w.shape[2:])
    g = torch.randn_like(F.conv2d(xs, flat, stride=stride, padding=1, groups=k))

    def cudnn_backward(mask: list[bool]):
        geometry = ([stride, stride], [1, 1], [1, 1], False, [0, 0], k)
        return lambda: torch.ops.aten.convolution_backward(g, xs, flat, None, *geometry, mask)

    phases = {
        "cudnn": [
            lambda: F.conv2d(xs, flat, stride=stride, padding=1, groups=k),
            cudnn_backward([True, False, False]),
            cudnn_backward([False, True, False]),
        ],
        "triton": [
            lambda: conv_forward(xs, wt, stride),
            lambda: input_grad(g, wt, xs.shape, stride),
            lambda: weight_grad(xs, g, wt.shape, stride),
        ],
    }
    return {name: [seconds_per_call(f, device, repeats) for f in fns] for name, fns in phases.items()}


def phase_line(seconds: list[float]) -> str:
    return " ".join(f"{label} {s * 1e3:6.1f} ms" for label, s in zip(("fwd", "dgrad", "wgrad"), seconds, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="loop,grouped,bmm", help=f"first is the baseline; of {list(METHODS)}")
    parser.add_argument("--dtype", default="bfloat16", help="CUDA dtype: bfloat16 or float16")
    parser.add_argument("--phases", action="store_true", help="also time forward, dgrad, wgrad apart (needs triton)")
    args = parser.parse_args()
    methods = args.methods.split(",")
    torch.set_num_threads(args.threads)
    tune_kernels(torch.device(args.device))  # as training does: cuDNN picks its algorithms per shape
    dtype = getattr(torch, args.dtype) if args.device == "cuda" else torch.float32
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"device: {name}; K={args.k}, batch {args.batch}, {dtype}")
    totals = dict.fromkeys(methods, 0.0)
    phase_totals = {"cudnn": [0.0] * 3, "triton": [0.0] * 3}
    for c_in, c_out, side, stride in SHAPES:
        x = torch.randn(args.k, args.batch, c_in, side, side, device=args.device, dtype=dtype, requires_grad=True)
        w = torch.randn(args.k, c_out, c_in, 3, 3, device=args.device, dtype=dtype, requires_grad=True)
        ref = grouped(x, w, stride)
        ref.float().square().mean().backward()
        ref_grads = (x.grad.clone(), w.grad.clone())
        row = []
        for label in methods:
            fn = METHODS[label]
            assert torch.allclose(fn(x, w, stride).float(), ref.float(), atol=0.1, rtol=0.05), label
            t = timed(fn, x, w, stride, args.device, args.repeats)
            totals[label] += t
            row.append(f"{label} {t * 1e3:8.1f} ms")
            if label.startswith("triton"):
                row.append(f"(grad rel err {gradient_error(fn, ref_grads, x, w, stride):.1e})")
        print(f"conv {c_in:>2}->{c_out:<2} {side}x{side} s{stride}: " + "  ".join(row))
        if args.phases:
            times = phase_times(x, w, stride, args.device, args.repeats)
            for name, seconds in times.items():
                phase_totals[name] = [a + s for a, s in zip(phase_totals[name], seconds, strict=True)]
            print("    " + "  |  ".join(f"{name} " + phase_line(s) for name, s in times.items()))
    if args.phases:
        print("phases, all layers: " + "  |  ".join(f"{n} " + phase_line(s) for n, s in phase_totals.items()))
    base = totals[methods[0]]
    print(
        "all layers: " + "  ".join(f"{k} {v * 1e3:.0f} ms (x{base / v:.2f} vs {methods[0]})" for k, v in totals.items())
    )


if __name__ == "__main__":
    main()
