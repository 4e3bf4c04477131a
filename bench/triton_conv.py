"""An experiment: grouped 3x3 convolutions for packed networks as Triton implicit GEMMs, forward and backward.

The profile of a compiled pack on an H100 (bench/RESULTS.md) puts 69% of the step in cuDNN's grouped convolutions,
nearly half of that in cuDNN's own NCHW <-> NHWC transposes. These kernels read the packed activations
``(B, K*C, H, W)`` where they lie, one program per block of output pixels and network, with fp32 accumulation:

- forward: ``out[m, o] = sum_r patch[m, r] w[o, r]`` (m: output pixels, r: input channel x 3x3 tap);
- dgrad: the same gather run backwards (strides 1 and 2, masks for the taps a stride skips);
- wgrad: ``dw[o, r] = sum_m g[m, o] patch[m, r]``, split over pixel ranges and summed with atomics.

Bench only (``bench/packed_kernels.py --methods grouped,triton``); needs the ``triton`` package, and runs on CPUs
under ``TRITON_INTERPRET=1`` (tests/test_triton_conv.py checks it against ``F.conv2d`` there).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


@triton.jit
def _pixels(m, B, H, W):
    """Flat pixel indices of ``(B, H, W)`` images: in range?, image, row, column."""
    b, p = m // (H * W), m % (H * W)
    return m < B * H * W, b, p // W, p % W


@triton.jit
def _patch(x_ptr, b, yo, xo, m_ok, r, r_ok, ch0, n_ch, H, W, STRIDE: tl.constexpr):
    """The (pixels, input channel x tap) tile of 3x3 patches, padding 1, for one network's channels."""
    i = r // 9
    t = r % 9
    yi = yo[:, None] * STRIDE + (t // 3)[None, :] - 1
    xi = xo[:, None] * STRIDE + (t % 3)[None, :] - 1
    ok = m_ok[:, None] & r_ok[None, :] & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
    offset = ((b[:, None] * n_ch + ch0 + i[None, :]) * H + yi) * W + xi
    return tl.load(x_ptr + offset, mask=ok, other=0.0)


# Tile shapes tried per layer shape (triton.autotune keeps the fastest; the first GPU run, before autotuning,
# used BLOCK_M 128 or 64 with BLOCK_R 32 and 4 warps: bench/RESULTS.md)
CONFIGS = [
    triton.Config({"BLOCK_M": m, "BLOCK_R": r}, num_warps=w)
    for m, r, w in [(64, 32, 4), (128, 32, 4), (256, 32, 8), (64, 64, 4), (128, 64, 4), (128, 16, 4)]
]
SHAPE_KEY = ["H", "W", "NETS", "I", "O", "STRIDE"]
WGRAD_SPLIT = 16  # pixel ranges per network whose partial weight gradients are summed with atomics
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
INTERPRETER_CONFIG = dict(CONFIGS[0].kwargs)  # the CPU interpreter has nothing to time: tests choose a config


def _tuned(**autotune_options):
    """Autotuned on a GPU; under the interpreter, the tile shape of ``INTERPRETER_CONFIG`` (read at each call)."""
    if INTERPRETING:
        return triton.heuristics({name: (lambda _, name=name: INTERPRETER_CONFIG[name]) for name in INTERPRETER_CONFIG})
    return triton.autotune(CONFIGS, key=SHAPE_KEY, **autotune_options)


@_tuned()
@triton.jit
def _forward(
    x_ptr, w_ptr, out_ptr, B, H, W, Ho, Wo, NETS,
    I: tl.constexpr, O: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    k = tl.program_id(1)
    m_ok, b, yo, xo = _pixels(tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M), B, Ho, Wo)
    o = tl.arange(0, O)
    acc = tl.zeros((BLOCK_M, O), dtype=tl.float32)
    for r0 in tl.static_range(0, I * 9, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        r_ok = r < I * 9
        a = _patch(x_ptr, b, yo, xo, m_ok, r, r_ok, k * I, NETS * I, H, W, STRIDE)
        w = tl.load(w_ptr + (k * O + o[None, :]) * (I * 9) + r[:, None], mask=r_ok[:, None], other=0.0)
        acc += tl.dot(a, w)
    offset = ((b[:, None] * (NETS * O) + k * O + o[None, :]) * Ho + yo[:, None]) * Wo + xo[:, None]
    tl.store(out_ptr + offset, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None])


@_tuned()
@triton.jit
def _dgrad(
    g_ptr, w_ptr, dx_ptr, B, H, W, Ho, Wo, NETS,
    I: tl.constexpr, O: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
    I_PAD: tl.constexpr,
):  # fmt: skip
    k = tl.program_id(1)
    m_ok, b, yi, xi = _pixels(tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M), B, H, W)  # input pixels
    c = tl.arange(0, I_PAD)  # input channels, padded to a power of two of at least 16 for tl.dot
    c_ok = c < I
    acc = tl.zeros((BLOCK_M, I_PAD), dtype=tl.float32)
    for r0 in tl.static_range(0, O * 9, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)  # output channel x tap
        r_ok = r < O * 9
        o, t = r // 9, r % 9
        ny = yi[:, None] + 1 - (t // 3)[None, :]  # = yo * STRIDE where the tap reaches this pixel
        nx = xi[:, None] + 1 - (t % 3)[None, :]
        ny_c, nx_c = tl.maximum(ny, 0), tl.maximum(nx, 0)
        yo, xo = ny_c // STRIDE, nx_c // STRIDE
        ok = (ny >= 0) & (nx >= 0) & (ny_c % STRIDE == 0) & (nx_c % STRIDE == 0) & (yo < Ho) & (xo < Wo)
        ok = ok & m_ok[:, None] & r_ok[None, :]
        g_offset = ((b[:, None] * (NETS * O) + k * O + o[None, :]) * Ho + yo) * Wo + xo
        a = tl.load(g_ptr + g_offset, mask=ok, other=0.0)
        w_offset = ((k * O + o[:, None]) * I + c[None, :]) * 9 + t[:, None]
        w = tl.load(w_ptr + w_offset, mask=r_ok[:, None] & c_ok[None, :], other=0.0)
        acc += tl.dot(a, w)
    offset = ((b[:, None] * (NETS * I) + k * I + c[None, :]) * H + yi[:, None]) * W + xi[:, None]
    tl.store(dx_ptr + offset, acc.to(dx_ptr.dtype.element_ty), mask=m_ok[:, None] & c_ok[None, :])


@_tuned(reset_to_zero=["dw_ptr"])  # each timing trial adds into dw
@triton.jit
def _wgrad(
    x_ptr, g_ptr, dw_ptr, B, H, W, Ho, Wo, NETS,
    I: tl.constexpr, O: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
    SPLIT: tl.constexpr,
):  # fmt: skip
    k = tl.program_id(0)
    M_PER_PROGRAM = tl.cdiv(tl.cdiv(B * Ho * Wo, SPLIT), BLOCK_M) * BLOCK_M
    r = tl.program_id(2) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_ok = r < I * 9
    o = tl.arange(0, O)
    acc = tl.zeros((O, BLOCK_R), dtype=tl.float32)
    start = tl.program_id(1) * M_PER_PROGRAM
    for m0 in range(start, start + M_PER_PROGRAM, BLOCK_M):
        m_ok, b, yo, xo = _pixels(m0 + tl.arange(0, BLOCK_M), B, Ho, Wo)
        g_offset = ((b[None, :] * (NETS * O) + k * O + o[:, None]) * Ho + yo[None, :]) * Wo + xo[None, :]
        g = tl.load(g_ptr + g_offset, mask=m_ok[None, :], other=0.0)
        a = _patch(x_ptr, b, yo, xo, m_ok, r, r_ok, k * I, NETS * I, H, W, STRIDE)
        acc += tl.dot(g, a)
    tl.atomic_add(dw_ptr + (k * O + o[:, None]) * (I * 9) + r[None, :], acc, mask=r_ok[None, :])


def _shapes(x_shape: torch.Size, w_shape: torch.Size, stride: int) -> tuple[int, ...]:
    nets, o, i = w_shape[:3]
    b, _, h, wd = x_shape
    return b, h, wd, (h - 1) // stride + 1, (wd - 1) // stride + 1, nets, i, o


def conv_forward(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """Packed activations ``(B, K*I, H, W)``, packed weights ``(K, O, I, 3, 3)``, padding 1."""
    b, h, wd, ho, wo, nets, i, o = _shapes(x.shape, w.shape, stride)
    out = x.new_empty(b, nets * o, ho, wo)
    grid = lambda meta: (triton.cdiv(b * ho * wo, meta["BLOCK_M"]), nets)  # noqa: E731
    _forward[grid](x.contiguous(), w.contiguous(), out, b, h, wd, ho, wo, nets, i, o, stride)
    return out


def input_grad(g: torch.Tensor, w: torch.Tensor, x_shape: torch.Size, stride: int) -> torch.Tensor:
    b, h, wd, ho, wo, nets, i, o = _shapes(x_shape, w.shape, stride)
    dx = g.new_empty(x_shape)
    grid = lambda meta: (triton.cdiv(b * h * wd, meta["BLOCK_M"]), nets)  # noqa: E731
    i_pad = max(16, triton.next_power_of_2(i))
    _dgrad[grid](g.contiguous(), w.contiguous(), dx, b, h, wd, ho, wo, nets, i, o, stride, I_PAD=i_pad)
    return dx


def weight_grad(x: torch.Tensor, g: torch.Tensor, w_shape: torch.Size, stride: int) -> torch.Tensor:
    """float32: the atomics add partial sums in float32."""
    b, h, wd, ho, wo, nets, i, o = _shapes(x.shape, w_shape, stride)
    dw = torch.zeros(w_shape, device=x.device, dtype=torch.float32)
    grid = lambda meta: (nets, WGRAD_SPLIT, triton.cdiv(i * 9, meta["BLOCK_R"]))  # noqa: E731
    _wgrad[grid](x.contiguous(), g.contiguous(), dw, b, h, wd, ho, wo, nets, i, o, stride, SPLIT=WGRAD_SPLIT)
    return dw


class GroupedConv3x3(torch.autograd.Function):
    """``F.conv2d(x, w.reshape(-1, I, 3, 3), stride=stride, padding=1, groups=K)`` for ``x`` of shape
    ``(B, K*I, H, W)`` and ``w`` of shape ``(K, O, I, 3, 3)``, computed by the kernels above."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.stride = stride
        return conv_forward(x, w, stride)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        dx = input_grad(g, w, x.shape, ctx.stride) if ctx.needs_input_grad[0] else None
        return dx, weight_grad(x, g, w.shape, ctx.stride).to(w.dtype), None


def grouped_conv3x3(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """Packed activations ``(B, K*I, H, W)``, packed weights ``(K, O, I, 3, 3)``, padding 1."""
    return GroupedConv3x3.apply(x, w, stride)
