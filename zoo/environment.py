"""What a result was computed with: versions, the code's git commit, the processor. Recorded in every new zoo's
manifest (where the zoo was trained) and printed in a study's report (where it was analysed), because the same
config and seed give the same zoo bit for bit only on the same CPU model, torch build and thread count.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "numpy", "pyarrow", "ray", "scikit-learn")


def git_commit() -> str | None:
    """The commit of the symzoo checkout this code runs from ("+changes" when its tracked files differ), or None
    for an installed copy without git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def describe_environment() -> dict:
    """Versions (symzoo, Python, torch, numpy, pyarrow, Ray, scikit-learn), git commit, CPU model and count, GPUs."""
    from symzoo import __version__

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "symzoo": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        **versions,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "gpus": gpu_names(),
    }
