"""How saturated are FiGLU gates? (issue 22) The share of gate inputs with |F x| > 4, where the sigmoid is below
0.018 or above 0.982 and the gate is a hard on/off switch, per FiGLU layer, on 2,000 held-out inputs.

    python bench/figlu_saturation.py ZOO [N]        # N stored sigma-Asym networks of a zoo, initial and final
    python bench/figlu_saturation.py --mlp-init     # a fresh Fashion-MNIST MLP (F ~ N(0, 1), width 512)
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from symzoo.zoo.layers import FiGLU


def saturated_shares(model: torch.nn.Module, x: torch.Tensor) -> list[float]:
    """Per FiGLU layer: the share of |F x| > 4 over the batch (and pixels, for convolutional networks)."""
    inputs: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: inputs.append(torch.einsum("oc,bc...->bo...", mod.gate, inp[0])))
        for m in model.modules()
        if isinstance(m, FiGLU)
    ]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return [float((p.abs() > 4).float().mean()) for p in inputs]


def main() -> None:
    if sys.argv[1:] == ["--mlp-init"]:
        from symzoo.zoo.config import validate
        from symzoo.zoo.data import load_images
        from symzoo.zoo.models import build_configured

        cfg = validate({"data": {"name": "fashion_mnist"}, "networks": 1, "model": {"arch": "mlp"}})
        data = load_images(cfg["data"])
        model = build_configured(cfg, "sigma_asym", data.in_shape, data.num_classes, 1, 0)
        print(
            "MLP sigma-Asym at init, share |Fx| > 4 per layer:",
            np.round(saturated_shares(model, data.normalize(data.x_test[:2000])), 3),
        )
        return
    from symzoo.zoo.store import open_zoo

    zoo = open_zoo(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    data = zoo.dataset()
    x = data.normalize(data.x_test[:2000])
    ids = zoo.frame.query("variant == 'sigma_asym' and status == 'ok'")["model_id"].head(n)
    for which in ("init", "final"):
        shares = np.array([saturated_shares(zoo.model(int(i), which), x) for i in ids])
        print(
            f"{zoo.config['name']} {which}, {len(ids)} networks, share |Fx| > 4 per layer:", np.round(shares.mean(0), 3)
        )


if __name__ == "__main__":
    main()
