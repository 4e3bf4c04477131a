"""The experimental Triton grouped convolution (bench/triton_conv.py) is F.conv2d with groups=K, both ways.

Runs under Triton's CPU interpreter; skipped where the optional ``triton`` package is absent (CI installs only
what the zoo needs).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
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


BLOCK_SIZES = sorted({config.kwargs["BLOCK_M"] for config in TRITON_CONV.CONFIGS})


def run_both(conv, x, w, stride, nets, c_in):
    out = conv(x, w, stride)
    ref = F.conv2d(x, w.reshape(-1, c_in, 3, 3), stride=stride, padding=1, groups=nets)
    return out, ref


@pytest.mark.parametrize(
    ("shape", "block_m"),
    [(s, BLOCK_SIZES[0]) for s in SHAPES] + [(s, m) for s in (SHAPES[1], SHAPES[3]) for m in BLOCK_SIZES[1:]],
)
def test_triton_grouped_conv_matches_conv2d(shape, block_m, monkeypatch):
    """Every shape of ResNet8's convs, and every pixel tile the GPU autotuner may pick on two of them."""
    c_in, c_out, stride, side = shape
    monkeypatch.setattr(TRITON_CONV, "INTERPRETER_CONFIG", {"BLOCK_M": block_m})
    torch.manual_seed(0)
    nets, batch = 2, 3
    x = torch.randn(batch, nets * c_in, side, side, requires_grad=True)
    w = torch.randn(nets, c_out, c_in, 3, 3, requires_grad=True)
    out, ref = run_both(TRITON_CONV.grouped_conv3x3, x, w, stride, nets, c_in)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(ref)
    for mine, theirs in zip(torch.autograd.grad(out, (x, w), g), torch.autograd.grad(ref, (x, w), g), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-4, rtol=1e-4)


def test_half_precision_inputs_give_half_precision_results_within_rounding():
    """The GPU path runs in 16-bit (bf16 under autocast): fp32 accumulation, outputs and gradients cast back. The
    interpreter computes bfloat16 wrongly (numpy has none), so float16 stands in for it here."""
    torch.manual_seed(0)
    nets, c_in, c_out = 2, 16, 32
    x = torch.randn(3, nets * c_in, 8, 8).half().requires_grad_()
    w = torch.randn(nets, c_out, c_in, 3, 3).half().requires_grad_()
    out = TRITON_CONV.grouped_conv3x3(x, w, 2)
    x32, w32 = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    ref = F.conv2d(x32, w32.reshape(-1, c_in, 3, 3), stride=2, padding=1, groups=nets)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (x, w), g.half())
    assert out.dtype == grads[0].dtype == grads[1].dtype == torch.float16
    for mine, theirs in zip((out, *grads), (ref, *torch.autograd.grad(ref, (x32, w32), g)), strict=True):
        assert ((mine.float() - theirs).norm() / theirs.norm()).item() < 2e-3  # float16 rounding, not a wrong sum


def test_every_masked_load_says_what_fills_the_masked_lanes():
    """On a GPU a masked ``tl.load`` without ``other`` leaves masked lanes undefined (the padding of a conv must
    be 0); the CPU interpreter fills them with zeros, so only the source can show the omission."""
    tree = ast.parse(Path(TRITON_CONV.__file__).read_text())
    loads = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "tl.load"]
    masked = [n for n in loads if any(k.arg == "mask" for k in n.keywords)]
    assert masked and all(any(k.arg == "other" for k in n.keywords) for n in masked), [
        n.lineno for n in masked if not any(k.arg == "other" for k in n.keywords)
    ]


def test_triton_conv_keeps_a_nan_network_to_itself():
    """A diverged network of a pack (NaN weights) must leave the others' outputs and gradients finite."""
    torch.manual_seed(1)
    nets, c_in, c_out = 3, 16, 16
    x = torch.randn(2, nets * c_in, 6, 6, requires_grad=True)
    w = torch.randn(nets, c_out, c_in, 3, 3)
    w[1, 0, 0, 1, 1] = float("nan")
    w.requires_grad_(True)
    out = TRITON_CONV.grouped_conv3x3(x, w, 1)
    dx, dw = torch.autograd.grad(out, (x, w), torch.ones_like(out))
    per_network = out.view(2, nets, c_out, 6, 6)
    assert per_network[:, 1].isnan().any()
    assert per_network[:, [0, 2]].isfinite().all()
    assert dx.view(2, nets, c_in, 6, 6)[:, [0, 2]].isfinite().all() and dw[[0, 2]].isfinite().all()


@pytest.mark.parametrize("variant", ["standard", "w_asym"])
def test_packed_resnet8_on_triton_convs_matches_cudnn_path(variant, monkeypatch):
    """Routed through ``packed_convs_on_triton``, a pack of ResNet8s gives the logits and parameter gradients of
    the ``F.conv2d`` path (stride-2 convs, 1x1 shortcuts left on F.conv2d, W-Asym fixed entries)."""
    from symzoo.zoo.models import build
    from symzoo.zoo.packed import packed_logits, stack_parameters

    models = [build("resnet8", variant, (3, 8, 8), init_seed=i) for i in range(2)]
    params = stack_parameters(models)
    buffers = dict(models[0].named_buffers())
    x = torch.randn(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def logits_and_grads():
        logits = packed_logits(models[0], params, buffers, x)
        return logits, torch.autograd.grad(logits.square().sum(), list(params.values()))

    ref_logits, ref_grads = logits_and_grads()
    calls = []
    kernel = TRITON_CONV.conv_forward
    monkeypatch.setattr(TRITON_CONV, "conv_forward", lambda *args: calls.append(args[2]) or kernel(*args))
    with TRITON_CONV.packed_convs_on_triton():
        logits, grads = logits_and_grads()
    assert calls == [1, 1, 1, 2, 1, 2, 1]  # ResNet8's seven 3x3 convs (two downsampling), no 1x1 shortcut
    assert torch.allclose(logits, ref_logits, atol=1e-4, rtol=1e-4)
    for mine, theirs in zip(grads, ref_grads, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-3, rtol=1e-4)


def test_every_kernel_and_config_compiles_for_an_h100():
    """The interpreter skips GPU compilation, where tile shapes, dtypes and tensor-core rules are enforced:
    compile every kernel and autotuning config for sm_90 (no GPU needed), in a process not interpreting."""
    bench = Path(__file__).resolve().parent.parent / "bench"
    script = (
        f"import sys; sys.path.insert(0, {str(bench)!r}); import triton_conv as tc, triton_registers as tr; "
        "shape = {'I': 32, 'O': 64, 'I_PAD': 32, 'STRIDE': 2}; "
        "[print(name, tr.describe(k, shape | ({'SPLIT': 8} if name == 'wgrad' else {}) | c.kwargs, c, 90)) "
        "for name, k in tr.KERNELS.items() for c in tc.CONFIGS]"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 3 * len(TRITON_CONV.CONFIGS) and all("regs" in line for line in lines)
