"""The experimental Triton grouped convolution (bench/triton_conv.py) is F.conv2d with groups=K, both ways.

Runs under Triton's CPU interpreter; skipped where the optional ``triton`` package is absent (CI installs only
what the zoo needs).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: kernels run on the CPU
pytest.importorskip("triton", reason="optional: pip install triton to check the experimental Triton conv")


def load_triton_conv():
    path = Path(__file__).resolve().parent.parent / "bench" / "triton_conv.py"
    spec = importlib.util.spec_from_file_location("triton_conv", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRITON_CONV = load_triton_conv()
SHAPES = [(3, 16, 1, 8), (16, 16, 1, 8), (16, 32, 2, 8), (32, 64, 2, 7)]


@pytest.mark.parametrize(
    ("shape", "config"),
    [(s, 0) for s in SHAPES] + [(s, c) for s in (SHAPES[1], SHAPES[3]) for c in range(1, len(TRITON_CONV.CONFIGS))],
)
def test_triton_grouped_conv_matches_conv2d(shape, config, monkeypatch):
    """Every shape of ResNet8's convs, and every tile shape the GPU autotuner may pick on two of them."""
    c_in, c_out, stride, side = shape
    monkeypatch.setattr(TRITON_CONV, "INTERPRETER_CONFIG", dict(TRITON_CONV.CONFIGS[config].kwargs))
    conv = TRITON_CONV.grouped_conv3x3
    torch.manual_seed(0)
    nets, batch = 2, 3
    x = torch.randn(batch, nets * c_in, side, side, requires_grad=True)
    w = torch.randn(nets, c_out, c_in, 3, 3, requires_grad=True)
    out = conv(x, w, stride)
    ref = F.conv2d(x, w.reshape(-1, c_in, 3, 3), stride=stride, padding=1, groups=nets)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(ref)
    for mine, theirs in zip(torch.autograd.grad(out, (x, w), g), torch.autograd.grad(ref, (x, w), g), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-4, rtol=1e-4)
