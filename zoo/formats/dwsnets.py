"""The DWSNets INR layout (Navon et al. 2023, "Equivariant Architectures for Learning in Deep Weight Spaces";
docs/zoo.md "Take a zoo elsewhere"): one ``.pth`` state dict per INR and a splits JSON, as its ``INRDataset`` reads.

- A state dict: ``seq.{i}.weight`` (out, in) and ``seq.{i}.bias`` per linear map, in order; the network computes
  ``sin(30 (W x + b))`` after every map but the last, then adds 0.5 (its undocumented output offset).
- Its coordinates are ``(column, row)`` in [-1, 1] (``np.meshgrid`` of x then y), where symzoo's are ``(row,
  column)``: an exported first layer has its two input columns swapped, so the INR draws the same image.
- The splits file: ``{"train" | "val" | "test": {"path": [...], "label": [...]}}``, absolute paths.

symzoo writes the weights a network computes with: a W-Asym layer's trainable entries plus its fixed ones.
sigma-Asym's gates have no place in that network, and such variants are refused. Read back (``symzoo import
dwsnets``), every INR is a standard SIREN with those weights; its image is known where ``images.csv`` (symzoo's
export) lies beside the splits file, else only its class and split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from symzoo.errors import ZooError
from symzoo.zoo.formats.torch_files import load_tensors
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import SIREN

SPLITS = ("train", "val", "test")

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


def find_splits_file(source: Path) -> Path:
    """The splits JSON: ``source`` itself, or the one ``*splits.json`` in the folder ``source``."""
    if source.is_file():
        return source
    found = sorted(source.glob("*splits.json"))
    if len(found) != 1:
        named = ", ".join(p.name for p in found) or "none"
        raise ZooError(f"{source} holds {len(found)} *splits.json files ({named}); pass the one to import")
    return found[0]


def read_splits(path: Path) -> pd.DataFrame:
    """One row per INR in file order (train, val, test): split, path, label; a malformed file is one line."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ZooError(f"{path} is not a readable JSON file ({type(e).__name__}); pass DWSNets' splits file") from None
    rows = []
    for split in SPLITS:
        part = content.get(split) if isinstance(content, dict) else None
        if split == "val" and part is None:
            continue
        ok = isinstance(part, dict) and isinstance(part.get("path"), list) and isinstance(part.get("label"), list)
        if not ok or len(part["path"]) != len(part["label"]):
            raise ZooError(f'{path}: \'{split}\' is not {{"path": [...], "label": [...]}} of equal lengths')
        for file, label in zip(part["path"], part["label"], strict=True):
            rows.append((split, str(file), int(label)))
    if not rows:
        raise ZooError(f"{path} names no INR")
    return pd.DataFrame(rows, columns=["split", "path", "label"])


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """One INR's state dict (``seq.{i}.weight`` / ``.bias``); anything else is one line naming the file."""
    state = load_tensors(path, "re-save it as a state dict of tensors")
    n = len(state) // 2 if isinstance(state, dict) else 0
    expected = [f"seq.{i}.{k}" for i in range(n) for k in ("weight", "bias")]
    if not isinstance(state, dict) or n < 2 or list(state) != expected:
        keys = list(state)[:4] if isinstance(state, dict) else type(state).__name__
        raise ZooError(f"{path} is not a DWSNets INR state dict (seq.0.weight, seq.0.bias, ...; it has {keys})")
    return state


def siren_shape(state: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(inputs, hidden width, linear maps) of a DWSNets INR."""
    return int(state["seq.0.weight"].shape[1]), int(state["seq.0.weight"].shape[0]), len(state) // 2


def to_flat(state: dict[str, torch.Tensor], layout: ParamLayout, path: Path) -> np.ndarray:
    """A DWSNets INR as a symzoo SIREN's flat vector: its maps as ``layers.{i}.linear`` and ``head``, the first
    map's input columns swapped back to symzoo's (row, column) coordinates."""
    n = len(state) // 2
    names = [f"layers.{i}.linear" for i in range(n - 1)] + ["head"]
    params = {}
    for i, name in enumerate(names):
        weight = state[f"seq.{i}.weight"]
        params[f"{name}.weight"] = weight[:, [1, 0]] if i == 0 else weight
        params[f"{name}.bias"] = state[f"seq.{i}.bias"]
    shapes = {s.name: tuple(s.shape) for s in layout.slots}
    if {k: tuple(v.shape) for k, v in params.items()} != shapes:
        raise ZooError(f"{path} is not an INR of the zoo's shape (the first file's): {siren_shape(state)}")
    return layout.flatten({k: v.float() for k, v in params.items()}).numpy()
