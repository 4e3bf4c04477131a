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

import torch
import triton
import triton.language as tl


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


@triton.jit
def _forward(
    x_ptr, w_ptr, out_ptr, B, H, W, Ho, Wo, NETS,
    I: tl.constexpr, O: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    k = tl.program_id(1)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = m < B * Ho * Wo
    b, p = m // (Ho * Wo), m % (Ho * Wo)
    yo, xo = p // Wo, p % Wo
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


@triton.jit
def _dgrad(
    g_ptr, w_ptr, dx_ptr, B, H, W, Ho, Wo, NETS,
    I: tl.constexpr, O: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
    I_PAD: tl.constexpr,
):  # fmt: skip
    k = tl.program_id(1)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # input pixels
    m_ok = m < B * H * W
    b, p = m // (H * W), m % (H * W)
    yi, xi = p // W, p % W
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


@triton.jit
def _wgrad(
    x_ptr, g_ptr, dw_ptr, B, H, W, Ho, Wo, NETS, M_PER_PROGRAM,
    I: tl.constexpr, O: tl.constexpr, STRIDE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    k = tl.program_id(0)
    r = tl.program_id(2) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_ok = r < I * 9
    o = tl.arange(0, O)
    acc = tl.zeros((O, BLOCK_R), dtype=tl.float32)
    start = tl.program_id(1) * M_PER_PROGRAM
    for m0 in range(start, start + M_PER_PROGRAM, BLOCK_M):
        m = m0 + tl.arange(0, BLOCK_M)
        m_ok = m < B * Ho * Wo
        b, p = m // (Ho * Wo), m % (Ho * Wo)
        yo, xo = p // Wo, p % Wo
        g_offset = ((b[None, :] * (NETS * O) + k * O + o[:, None]) * Ho + yo[None, :]) * Wo + xo[None, :]
        g = tl.load(g_ptr + g_offset, mask=m_ok[None, :], other=0.0)
        a = _patch(x_ptr, b, yo, xo, m_ok, r, r_ok, k * I, NETS * I, H, W, STRIDE)
        acc += tl.dot(g, a)
    tl.atomic_add(dw_ptr + (k * O + o[:, None]) * (I * 9) + r[None, :], acc, mask=r_ok[None, :])


BLOCK_R, WGRAD_SPLIT = 32, 16


def _shapes(x: torch.Tensor, w: torch.Tensor, stride: int) -> tuple[int, ...]:
    nets, o, i = w.shape[:3]
    b, _, h, wd = x.shape
    return b, h, wd, (h - 1) // stride + 1, (wd - 1) // stride + 1, nets, i, o


class GroupedConv3x3(torch.autograd.Function):
    """``F.conv2d(x, w.reshape(-1, I, 3, 3), stride=stride, padding=1, groups=K)`` for ``x`` of shape
    ``(B, K*I, H, W)`` and ``w`` of shape ``(K, O, I, 3, 3)``, computed by the kernels above."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, stride: int, block_m: int = 128) -> torch.Tensor:
        x, w = x.contiguous(), w.contiguous()
        b, h, wd, ho, wo, nets, i, o = _shapes(x, w, stride)
        out = x.new_empty(b, nets * o, ho, wo)
        grid = (triton.cdiv(b * ho * wo, block_m), nets)
        _forward[grid](x, w, out, b, h, wd, ho, wo, nets, i, o, stride, block_m, BLOCK_R)
        ctx.save_for_backward(x, w)
        ctx.stride, ctx.block_m = stride, block_m
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        g = g.contiguous()
        b, h, wd, ho, wo, nets, i, o = _shapes(x, w, ctx.stride)
        block_m = ctx.block_m
        dx = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty_like(x)
            grid = (triton.cdiv(b * h * wd, block_m), nets)
            i_pad = max(16, triton.next_power_of_2(i))
            _dgrad[grid](g, w, dx, b, h, wd, ho, wo, nets, i, o, ctx.stride, block_m, BLOCK_R, i_pad)
        dw = torch.zeros(w.shape, device=w.device, dtype=torch.float32)
        per_program = triton.cdiv(triton.cdiv(b * ho * wo, WGRAD_SPLIT), block_m) * block_m
        grid = (nets, triton.cdiv(b * ho * wo, per_program), triton.cdiv(i * 9, BLOCK_R))
        _wgrad[grid](x, g, dw, b, h, wd, ho, wo, nets, per_program, i, o, ctx.stride, block_m, BLOCK_R)
        return dx, dw.to(w.dtype), None, None


def grouped_conv3x3(x: torch.Tensor, w: torch.Tensor, stride: int, block_m: int = 128) -> torch.Tensor:
    """Packed activations ``(B, K*I, H, W)``, packed weights ``(K, O, I, 3, 3)``, padding 1."""
    return GroupedConv3x3.apply(x, w, stride, block_m)
