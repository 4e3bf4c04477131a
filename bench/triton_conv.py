"""An experiment: grouped 3x3 convolutions for packed networks as Triton implicit GEMMs, forward and backward.

The profile of a compiled pack on an H100 (bench/RESULTS.md) puts 69% of the step in cuDNN's grouped convolutions,
nearly half of that in cuDNN's own NCHW <-> NHWC transposes. These kernels read the packed activations
``(B, K*C, H, W)`` where they lie, one program per block of output pixels and network, fp32 accumulation, and
walk the nine taps of the 3x3 filter, a matrix product per tap and block of 16 channels:

- forward: ``out[m, :] = sum_t x[m shifted by t, :] @ w_t`` (m: output pixels; ``w_t``: the (I, O) tap matrix);
- dgrad: the same walk backwards (strides 1 and 2: a tap that the stride skips is masked out);
- wgrad: ``dw_t = sum_m g[m, :]^T x[m shifted by t, :]``, one program per network, tap and pixel range; the ranges'
  partial sums are added in a fixed order afterwards (no atomics: the same inputs give the same bits).

Why taps and not one flat reduction over (channel, tap): the first draft flattened them, which costs integer
divisions and 2-D index arithmetic on every element it loads; per tap the shifted pixel positions and their
padding masks are 1-D and a channel block is one add away (GPU run 5 in bench/RESULTS.md measured the first draft).
The taps are a loop, not unrolled, and each product takes 16 channels: both keep registers per thread low
(``bench/triton_registers.py``).

Bench only (per layer: ``bench/packed_kernels.py --methods grouped,triton``; whole training steps:
``bench/packed.py --also triton-conv``); needs the ``triton`` package, and runs on CPUs under
``TRITON_INTERPRET=1`` (tests/test_triton_conv.py checks it against ``F.conv2d`` there).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import triton
import triton.language as tl


@triton.jit
def _pixels(m, B, H, W):
    """Flat pixel indices of ``(B, H, W)`` images: in range?, image, row, column."""
    b, p = m // (H * W), m % (H * W)
    return m < B * H * W, b, p // W, p % W


@triton.jit
def _tap_source(yo, xo, m_ok, t, H, W, STRIDE: tl.constexpr):
    """Input pixel that tap ``t`` of a 3x3 filter (padding 1) reads for output pixel (yo, xo), and whether it exists."""
    y = yo * STRIDE + t // 3 - 1
    x = xo * STRIDE + t % 3 - 1
    return y, x, m_ok & (y >= 0) & (y < H) & (x >= 0) & (x < W)


# Tile shapes tried per layer shape (triton.autotune keeps the fastest). Under the interpreter, where nothing can
# be timed, tests pick one through INTERPRETER_CONFIG; only BLOCK_M changes what the kernels compute. Compiled for
# an H100 without one (bench/triton_registers.py), 8 warps on 64-128 pixels need the fewest registers per thread,
# so the most warps fit on a multiprocessor to hide the gathers' latency.
CONFIGS = [triton.Config({"BLOCK_M": m}, num_warps=w, num_stages=2) for m, w in [(32, 2), (64, 4), (64, 8), (128, 8)]]
CHUNK = tl.constexpr(16)  # channels per matrix product: tl.dot's least; whole 64-channel blocks cost 255 registers
SHAPE_KEY = ["B", "H", "W", "NETS", "I", "O", "STRIDE"]
WGRAD_SPLIT = 8  # pixel ranges per network and tap, each one program; their partial sums are added afterwards
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
INTERPRETER_CONFIG = dict(CONFIGS[0].kwargs)


def _tuned():
    """Autotuned on a GPU; under the interpreter, the tile shape of ``INTERPRETER_CONFIG`` (read at each call)."""
    if INTERPRETING:
        return triton.heuristics({name: (lambda _, name=name: INTERPRETER_CONFIG[name]) for name in INTERPRETER_CONFIG})
    return triton.autotune(CONFIGS, key=SHAPE_KEY)


@_tuned()
@triton.jit
def _forward(
    x_ptr, w_ptr, out_ptr, B, H, W, Ho, Wo, NETS,
    I: tl.constexpr, O: tl.constexpr, I_PAD: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """``w_ptr``: tap matrices ``(K, 9, I, O)``."""
    k = tl.program_id(1)
    m_ok, b, yo, xo = _pixels(tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M), B, Ho, Wo)
    o = tl.arange(0, O)
    x_block = (b * NETS + k) * I * H * W  # where network k's channels of image b start
    acc = tl.zeros((BLOCK_M, O), dtype=tl.float32)
    for t in range(9):
        y, x, ok = _tap_source(yo, xo, m_ok, t, H, W, STRIDE)
        for c0 in tl.static_range(0, I_PAD, CHUNK):  # input channels, padded to a multiple of CHUNK
            c = c0 + tl.arange(0, CHUNK)
            c_ok = c < I
            a_offset = (x_block + y * W + x)[:, None] + (c * H * W)[None, :]
            a = tl.load(x_ptr + a_offset, mask=ok[:, None] & c_ok[None, :], other=0.0)  # other=0.0: the padding
            w = tl.load(w_ptr + ((k * 9 + t) * I + c[:, None]) * O + o[None, :], mask=c_ok[:, None], other=0.0)
            acc += tl.dot(a, w)
    out_offset = ((b * NETS + k) * O * Ho * Wo + yo * Wo + xo)[:, None] + (o * Ho * Wo)[None, :]
    tl.store(out_ptr + out_offset, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None])


@_tuned()
@triton.jit
def _dgrad(
    g_ptr, w_ptr, dx_ptr, B, H, W, Ho, Wo, NETS,
    I: tl.constexpr, O: tl.constexpr, I_PAD: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """``w_ptr``: transposed tap matrices ``(K, 9, O, I)``."""
    k = tl.program_id(1)
    m_ok, b, yi, xi = _pixels(tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M), B, H, W)  # input pixels
    c = tl.arange(0, I_PAD)
    c_ok = c < I
    g_block = (b * NETS + k) * O * Ho * Wo
    acc = tl.zeros((BLOCK_M, I_PAD), dtype=tl.float32)
    for t in range(9):
        ny = yi + 1 - t // 3  # = yo * STRIDE where tap t of output pixel (yo, xo) reads this pixel
        nx = xi + 1 - t % 3
        ny_c, nx_c = tl.maximum(ny, 0), tl.maximum(nx, 0)
        yo, xo = ny_c // STRIDE, nx_c // STRIDE
        ok = m_ok & (ny >= 0) & (nx >= 0) & (ny_c % STRIDE == 0) & (nx_c % STRIDE == 0) & (yo < Ho) & (xo < Wo)
        for o0 in tl.static_range(0, O, CHUNK):  # output channels
            o = o0 + tl.arange(0, CHUNK)
            a_offset = (g_block + yo * Wo + xo)[:, None] + (o * Ho * Wo)[None, :]
            a = tl.load(g_ptr + a_offset, mask=ok[:, None], other=0.0)
            w = tl.load(w_ptr + ((k * 9 + t) * O + o[:, None]) * I + c[None, :], mask=c_ok[None, :], other=0.0)
            acc += tl.dot(a, w)
    dx_offset = ((b * NETS + k) * I * H * W + yi * W + xi)[:, None] + (c * H * W)[None, :]
    tl.store(dx_ptr + dx_offset, acc.to(dx_ptr.dtype.element_ty), mask=m_ok[:, None] & c_ok[None, :])


@_tuned()
@triton.jit
def _wgrad(
    x_ptr, g_ptr, partial_ptr, B, H, W, Ho, Wo, NETS,
    I: tl.constexpr, O: tl.constexpr, I_PAD: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr,
    SPLIT: tl.constexpr,
):  # fmt: skip
    """``partial_ptr``: float32 ``(SPLIT, K, 9, O, I)``, one slice per pixel range."""
    k, t, s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    c = tl.arange(0, I_PAD)
    c_ok = c < I
    o = tl.arange(0, O)
    per_program = tl.cdiv(tl.cdiv(B * Ho * Wo, SPLIT), BLOCK_M) * BLOCK_M
    acc = tl.zeros((O, I_PAD), dtype=tl.float32)
    for m0 in range(s * per_program, (s + 1) * per_program, BLOCK_M):
        m_ok, b, yo, xo = _pixels(m0 + tl.arange(0, BLOCK_M), B, Ho, Wo)
        g_offset = ((b * NETS + k) * O * Ho * Wo + yo * Wo + xo)[None, :] + (o * Ho * Wo)[:, None]
        g = tl.load(g_ptr + g_offset, mask=m_ok[None, :], other=0.0)
        y, x, ok = _tap_source(yo, xo, m_ok, t, H, W, STRIDE)
        x_offset = ((b * NETS + k) * I * H * W + y * W + x)[:, None] + (c * H * W)[None, :]
        a = tl.load(x_ptr + x_offset, mask=ok[:, None] & c_ok[None, :], other=0.0)
        acc += tl.dot(g, a)
    tl.store(partial_ptr + (((s * NETS + k) * 9 + t) * O + o[:, None]) * I + c[None, :], acc, mask=c_ok[None, :])


def _shapes(x_shape: torch.Size, w_shape: torch.Size, stride: int) -> tuple[int, ...]:
    nets, o, i = w_shape[:3]
    b, _, h, wd = x_shape
    return b, h, wd, (h - 1) // stride + 1, (wd - 1) // stride + 1, nets, i, o


def _channels_padded(i: int) -> int:
    return max(16, triton.next_power_of_2(i))


def conv_forward(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """Packed activations ``(B, K*I, H, W)``, packed weights ``(K, O, I, 3, 3)``, padding 1."""
    b, h, wd, ho, wo, nets, i, o = _shapes(x.shape, w.shape, stride)
    out = x.new_empty(b, nets * o, ho, wo)
    taps = w.permute(0, 3, 4, 2, 1).contiguous()  # (K, 3, 3, I, O): tap t's (I, O) matrix
    grid = lambda meta: (triton.cdiv(b * ho * wo, meta["BLOCK_M"]), nets)  # noqa: E731
    _forward[grid](x.contiguous(), taps, out, b, h, wd, ho, wo, nets, i, o, _channels_padded(i), stride)
    return out


def input_grad(g: torch.Tensor, w: torch.Tensor, x_shape: torch.Size, stride: int) -> torch.Tensor:
    b, h, wd, ho, wo, nets, i, o = _shapes(x_shape, w.shape, stride)
    dx = g.new_empty(x_shape)
    taps = w.permute(0, 3, 4, 1, 2).contiguous()  # (K, 3, 3, O, I)
    grid = lambda meta: (triton.cdiv(b * h * wd, meta["BLOCK_M"]), nets)  # noqa: E731
    _dgrad[grid](g.contiguous(), taps, dx, b, h, wd, ho, wo, nets, i, o, _channels_padded(i), stride)
    return dx


def weight_grad(x: torch.Tensor, g: torch.Tensor, w_shape: torch.Size, stride: int) -> torch.Tensor:
    """float32, summed over the pixel ranges in a fixed order."""
    b, h, wd, ho, wo, nets, i, o = _shapes(x.shape, w_shape, stride)
    partial = torch.empty(WGRAD_SPLIT, nets, 3, 3, o, i, device=x.device, dtype=torch.float32)
    grid = (nets, 9, WGRAD_SPLIT)
    args = (b, h, wd, ho, wo, nets, i, o, _channels_padded(i), stride)
    _wgrad[grid](x.contiguous(), g.contiguous(), partial, *args, SPLIT=WGRAD_SPLIT)
    return partial.sum(0).permute(0, 3, 4, 1, 2)  # (K, O, I, 3, 3)


class GroupedConv3x3(torch.autograd.Function):
    """``F.conv2d(x, w.reshape(-1, I, 3, 3), stride=stride, padding=1, groups=K)`` for ``x`` of shape
    ``(B, K*I, H, W)`` and ``w`` of shape ``(K, O, I, 3, 3)``, computed by the kernels above. Under CUDA
    autocast both run in bfloat16, as cuDNN's convolutions do there."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.bfloat16)
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.stride = stride
        return conv_forward(x, w, stride)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        dx = input_grad(g, w, x.shape, ctx.stride) if ctx.needs_input_grad[0] else None
        return dx, weight_grad(x, g, w.shape, ctx.stride).to(w.dtype), None


def grouped_conv3x3(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """Packed activations ``(B, K*I, H, W)``, packed weights ``(K, O, I, 3, 3)``, padding 1."""
    return GroupedConv3x3.apply(x, w, stride)


@contextlib.contextmanager
def packed_convs_on_triton() -> Iterator[None]:
    """Within the block, every packed 3x3 convolution of the zoo's models (padding 1, no bias) runs on these
    kernels; 1x1 shortcuts and unpacked layers stay on ``F.conv2d``. For timing whole training steps
    (``bench/packed.py --triton-conv``) without touching ``zoo/layers.py``."""
    from symzoo.zoo.layers import MaskedConv2d

    cudnn_forward = MaskedConv2d.forward

    def forward(self: MaskedConv2d, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        if w.dim() == 5 and w.shape[-2:] == (3, 3) and self.padding == (1, 1) and self.bias is None:
            return grouped_conv3x3(x, w, self.stride[0])
        return cudnn_forward(self, x)

    MaskedConv2d.forward = forward
    try:
        yield
    finally:
        MaskedConv2d.forward = cudnn_forward
