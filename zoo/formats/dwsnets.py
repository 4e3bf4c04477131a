"""The DWSNets INR layout (Navon et al. 2023, "Equivariant Architectures for Learning in Deep Weight Spaces";
docs/zoo.md "Take a zoo elsewhere"): one ``.pth`` state dict per INR and a splits JSON, as its ``INRDataset`` reads.

- A state dict: ``seq.{i}.weight`` (out, in) and ``seq.{i}.bias`` per linear map, in order; the network computes
  ``sin(30 (W x + b))`` after every map but the last, then adds 0.5 (its undocumented output offset).
- Its coordinates are ``(column, row)`` in [-1, 1] (``np.meshgrid`` of x then y), where symzoo's are ``(row,
  column)``: an exported first layer has its two input columns swapped, so the INR draws the same image.
- The splits file: ``{"train" | "val" | "test": {"path": [...], "label": [...]}}``, absolute paths.

symzoo writes the weights a network computes with: a W-Asym layer's trainable entries plus its fixed ones.
sigma-Asym's gates have no place in that network, and such variants are refused.
"""

from __future__ import annotations

import torch

from symzoo.errors import ZooError
from symzoo.zoo.models import SIREN

OMEGA, OFFSET = 30.0, 0.5  # what a DWSNets INR computes with


def state_dict(model: SIREN) -> dict[str, torch.Tensor]:
    """A symzoo SIREN as the DWSNets INR that draws the same image (effective weights, swapped coordinates)."""
    if any(sine.omega != OMEGA for sine in model.layers) or model.output_offset != OFFSET:
        raise ZooError(
            f"a DWSNets INR computes sin({OMEGA:g} x) and adds {OFFSET:g}; this zoo's SIRENs use omega "
            f"{model.layers[0].omega:g} and offset {model.output_offset:g}, which its loader cannot represent"
        )
    if any(not isinstance(sine.act, torch.nn.Identity) for sine in model.layers):
        raise ZooError("sigma-Asym SIRENs gate their sines (FiGLU), which a DWSNets INR cannot represent")
    linears = [sine.linear for sine in model.layers] + [model.head]
    out = {}
    for i, linear in enumerate(linears):
        weight = linear.effective_weight().detach().clone()
        out[f"seq.{i}.weight"] = weight[:, [1, 0]].contiguous() if i == 0 else weight
        out[f"seq.{i}.bias"] = linear.bias.detach().clone()
    return out
