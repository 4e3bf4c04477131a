"""Registers per thread of the Triton conv kernels (bench/triton_conv.py), compiled for a GPU on a machine without one.

    python bench/triton_registers.py [--arch 90]

For every ResNet8 conv shape, kernel (forward, dgrad, wgrad) and autotuning config: registers per thread, bytes
spilled to local memory, the tensor-core instruction used (wgmma on Hopper, mma before), and the warps that fit
on one multiprocessor (65,536 registers). The gathers of an implicit-GEMM convolution wait on memory; a kernel
hides that wait with other warps, so more resident warps is better. Compilation only: no timing, no GPU needed
(Triton's NVIDIA backend ships its own ptxas and cuobjdump).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

import triton
import triton_conv
from packed_kernels import SHAPES
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

REGISTERS_PER_SM = 65_536
MAX_WARPS_PER_SM = 64
KERNELS = {"forward": triton_conv._forward, "dgrad": triton_conv._dgrad, "wgrad": triton_conv._wgrad}


def compile_for(kernel, constexprs: dict, config: triton.Config, arch: int):
    jit = kernel.fn  # the function under the autotuner
    signature = {}
    for name in jit.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*fp32" if name == "partial_ptr" else "*bf16"
        else:
            signature[name] = "i32"
    source = ASTSource(jit, signature, constexprs={(jit.arg_names.index(k),): v for k, v in constexprs.items()})
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def resources(compiled) -> tuple[int, int]:
    """Registers per thread and local (spill) bytes, as cuobjdump reads them from the cubin."""
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"REG:(\d+)", usage).group(1)), int(re.search(r"LOCAL:(\d+)", usage).group(1))


def describe(kernel, constexprs: dict, config: triton.Config, arch: int) -> str:
    compiled = compile_for(kernel, constexprs, config, arch)
    registers, spilled = resources(compiled)
    ptx = compiled.asm["ptx"]
    unit = "wgmma" if "wgmma" in ptx else "mma" if "mma.sync" in ptx else "fma"
    warps = min(REGISTERS_PER_SM // (registers * 32 * config.num_warps), MAX_WARPS_PER_SM // config.num_warps)
    spill = f" spills {spilled} B" if spilled else ""
    return f"{registers:3d} regs{spill} {unit:5s} {warps * config.num_warps:2d} warps/SM"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, 90 for an H100")
    args = parser.parse_args()
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    labels = [f"M{c.kwargs['BLOCK_M']}/w{c.num_warps}" for c in triton_conv.CONFIGS]
    print(f"sm_{args.arch}, bf16; configs (pixels per program / warps): {', '.join(labels)}")
    for name, kernel in KERNELS.items():
        for c_in, c_out, _side, stride in SHAPES:
            constexprs = {"I": c_in, "O": c_out, "I_PAD": triton_conv._channels_padded(c_in), "STRIDE": stride}
            if name == "wgrad":
                constexprs["SPLIT"] = triton_conv.WGRAD_SPLIT
            cells = [describe(kernel, constexprs | c.kwargs, c, args.arch) for c in triton_conv.CONFIGS]
            print(f"{name:7s} {c_in:>2}->{c_out:<2} s{stride}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
