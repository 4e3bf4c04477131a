"""Is F's scale why sigma-Asym MLPs are not linearly connected here? (issue 22) The F-scale sweep.

Trains `configs/fashion_mlp_lmc.yaml` as it is (standard, W-Asym and sigma-Asym with the authors' F ~ N(0, 1)) and
its sigma-Asym networks again with F drawn at smaller scales, through the real commands (`symzoo generate`, then
`symzoo lmc`), and prints per scale: test accuracy, the share of saturated gates at init (|F x| > 4, from
bench/figlu_saturation.py), and the LMC midpoint barrier beside standard's and W-Asym's. Every zoo is the same
config but for `model.gate_std` and its variants; nothing else changes between rows.

    python bench/gate_scale.py OUT [--stds 1.0,0.0442,0.000442]

0.0442 = 1/sqrt(512) is the convention of the authors' ResNets (N(0, 1/C)); 0.000442 = 0.01/sqrt(512) that of their
GNN ("small standard deviation helped with training and interpolation").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from figlu_saturation import saturated_shares  # noqa: E402

from symzoo.zoo.config import load_config  # noqa: E402
from symzoo.zoo.data import load_images  # noqa: E402
from symzoo.zoo.models import build_configured  # noqa: E402
from symzoo.zoo.store import open_zoo  # noqa: E402

CONFIG = Path(__file__).parent.parent / "configs" / "fashion_mlp_lmc.yaml"


def run(*args: str) -> None:
    subprocess.run(["symzoo", *args, "--no-progress"], check=True)


def init_saturation(cfg: dict, x: torch.Tensor) -> float:
    """Mean share of saturated gates over the FiGLU layers of a fresh sigma-Asym network of this config."""
    model = build_configured(cfg, "sigma_asym", tuple(x.shape[1:]), 10, sample=0)
    return float(np.mean(saturated_shares(model, x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--stds", default=f"1.0,{1 / 512**0.5:.4g},{0.01 / 512**0.5:.4g}")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(CONFIG.read_text())
    base.pop("lmc", None)
    rows = []
    for i, std in enumerate(float(s) for s in args.stds.split(",")):
        cfg = {**base, "name": f"{base['name']}_gate{std:g}", "model": {**base["model"], "gate_std": std}}
        if i > 0:  # the first scale is the reference zoo: all three variants
            cfg["variants"] = ["sigma_asym"]
        path = args.out / f"gate{std:g}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        zoo_dir, lmc_dir = args.out / f"zoo_gate{std:g}", args.out / f"lmc_gate{std:g}"
        run("generate", str(path), "--out", str(zoo_dir))
        run("lmc", str(zoo_dir), "--out", str(lmc_dir))
        barriers = pd.read_parquet(lmc_dir / "barriers.parquet")
        frame = open_zoo(zoo_dir).frame
        data = load_images(load_config(path)["data"])
        x = data.normalize(data.x_test[:2000].float())
        for method, g in barriers.groupby("method", sort=False):  # a variant, or standard+rebasin
            variant = method.split("+")[0]
            acc = frame.loc[frame["variant"] == variant, "test_acc"]
            sigma = variant == "sigma_asym"
            rows.append(
                [
                    method,
                    f"{std:g}" if sigma else "",
                    str(len(g)),
                    f"{acc.mean():.3f}",
                    f"{init_saturation(load_config(path), x):.3f}" if sigma else "",
                    f"{g['loss_barrier'].mean():.3f} +- {g['loss_barrier'].std():.3f}",
                ]
            )
    header = ["networks", "F std", "pairs", "test acc", "saturated gates at init", "LMC midpoint barrier"]
    table = "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows])
    print(table)
    (args.out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
