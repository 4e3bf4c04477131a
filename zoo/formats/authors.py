"""The paper's own zoo as the authors stored it (docs/zoo.md, "Bring your own zoo").

Layout, as their ``metanet/data_utils.py`` reads it: ``ROOT/<model_type>/<name><index>.pt``, each file a tuple
``(state_dict, test_acc_percent)`` written by ``torch.save``; ``index`` is the row of their ``hparams.csv``
(lr, weight_decay, label_smoothing, epochs). ``resnet8`` holds standard networks, ``sparse_resnet8`` W-Asym ones,
whose state dicts also carry each masked layer's ``.mask`` (1 where trainable) and ``.normal_mask``; a W-Asym
``weight`` already holds the fixed values at fixed positions (their forward writes them in). Their ResNet8 is
symzoo's ``resnet8`` under other names (``conv1`` / ``ln1`` / ``layer{s}.{b}`` / ``linear``).

Files are read with ``torch.load(weights_only=True)`` only: a file that needs more is refused, never unpickled.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import torch

from symzoo.errors import ZooError
from symzoo.zoo.formats.torch_files import load_tensors
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.plan import HPARAM_NAMES

MODEL_TYPES = {"resnet8": "standard", "sparse_resnet8": "w_asym"}  # their folder -> symzoo variant
# sigma-Asym networks each carry their own F (a buffer per network); symzoo zoos store one F per zoo or per sample
NOT_IMPORTED = {"sigma_asym_resnet8": "its networks each carry their own FiGLU F, which a symzoo zoo cannot store"}
FILE_NAME = re.compile(r"^(?P<name>.*?)(?P<index>\d+)\.pt$")
BUFFERS = ("mask", "normal_mask", "F_mat")  # state-dict entries that are fixed structure, not parameters
FIXED_TOLERANCE = 1e-6  # a W-Asym network's fixed entries match the zoo's to this (relative) or it is not the zoo's


def read_hparams(path: Path) -> list[list[float]]:
    """Their ``hparams.csv``: a header ``lr,weight_decay,label_smoothing,epochs``, then one row per index."""
    if not path.is_file():
        raise ZooError(
            f"no hyperparameter file {path}; pass --hparams with the authors' metanet_data/grid_runs/hparams.csv"
        )
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][:4]] != list(HPARAM_NAMES):
        raise ZooError(f"{path} does not start with the header {','.join(HPARAM_NAMES)}; pass the authors' hparams.csv")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            lr, wd, ls, epochs = (float(x) for x in row[:4])
        except ValueError:
            raise ZooError(f"{path} line {line} is not four numbers ({','.join(row)[:60]})") from None
        if not all(math.isfinite(x) for x in (lr, wd, ls, epochs)) or not epochs.is_integer():
            raise ZooError(f"{path} line {line} is not lr, weight_decay, label_smoothing, whole epochs")
        out.append([lr, wd, ls, int(epochs)])
    if not out:
        raise ZooError(f"{path} holds no hyperparameter rows")
    return out


def find_networks(root: Path) -> dict[str, dict[int, Path]]:
    """Per symzoo variant, each index's file under ``root/<model_type>/``; folders of types symzoo cannot import
    are named in one line on stderr by the caller (``unsupported_types``)."""
    if not root.is_dir():
        raise ZooError(f"{root} is not a folder; pass the folder that holds resnet8/ and sparse_resnet8/")
    found: dict[str, dict[int, Path]] = {}
    for model_type, variant in MODEL_TYPES.items():
        folder = root / model_type
        if not folder.is_dir():
            continue
        files: dict[int, Path] = {}
        for path in sorted(folder.iterdir()):
            match = FILE_NAME.match(path.name)
            if not match or not path.is_file():
                continue
            index = int(match["index"])
            if index in files:
                raise ZooError(f"{files[index]} and {path} both claim index {index}; keep one of them")
            files[index] = path
        if files:
            found[variant] = files
    if not found:
        raise ZooError(f"{root} holds no resnet8/ or sparse_resnet8/ folder of <name><index>.pt files")
    return found


def unsupported_types(root: Path) -> list[str]:
    """Their model folders under ``root`` that are not imported, each with why."""
    return [f"{t}/ ({why})" for t, why in NOT_IMPORTED.items() if (root / t).is_dir()]


def authors_name(ours: str) -> str:
    """Their state-dict key of one of symzoo's ResNet parameters (``stages.1.0.norm2.bias``: ``layer2.0.ln2.bias``)."""
    head, _, leaf = ours.rpartition(".")
    if head == "stem":
        return f"conv1.{leaf}"
    if head == "stem_norm":
        return f"ln1.{leaf}"
    if head == "head":
        return f"linear.{leaf}"
    match = re.fullmatch(r"stages\.(\d+)\.(\d+)\.(conv1|conv2|norm1|norm2|shortcut\.0|shortcut\.1)", head)
    if not match:
        raise ValueError(f"no authors' name for {ours}")
    stage, block, part = int(match[1]), match[2], match[3].replace("norm", "ln")
    return f"layer{stage + 1}.{block}.{part}.{leaf}"


def load_file(path: Path) -> tuple[dict[str, torch.Tensor], float]:
    """``(state_dict, test accuracy in [0, 1])`` of one file; one ``ZooError`` line naming it when it is damaged,
    not of this layout, or needs more than tensors to load."""
    content = load_tensors(path, "re-save it as (state_dict, test_acc)")
    ok = isinstance(content, (tuple, list)) and len(content) == 2 and isinstance(content[0], dict)
    ok = ok and isinstance(content[1], (int, float, torch.Tensor)) and not isinstance(content[1], bool)
    if not ok or not all(isinstance(v, torch.Tensor) for v in content[0].values()):
        raise ZooError(f"{path} is not a (state_dict, test_acc) pair as the authors' zoo stores them")
    return content[0], float(content[1]) / 100


def masked_weights(state: dict[str, torch.Tensor]) -> list[str]:
    """Their keys of weights that carry a ``.mask`` (W-Asym layers)."""
    return [f"{k[: -len('.mask')]}.weight" for k in state if k.endswith(".mask")]


def fixed_structure(state: dict[str, torch.Tensor], layout: ParamLayout) -> tuple[dict, dict]:
    """``(masks, fixed)`` by symzoo weight name from one W-Asym network: ``.mask`` as the trainable mask, and the
    stored weight's entries at fixed positions as the fixed values."""
    masks, fixed = {}, {}
    for slot in layout.slots:
        theirs = authors_name(slot.name)
        mask_key = f"{theirs[: -len('.weight')]}.mask"
        if slot.name.endswith(".weight") and mask_key in state:
            mask = state[mask_key].float().reshape(slot.shape)
            masks[slot.name] = mask
            fixed[slot.name] = state[theirs].float().reshape(slot.shape) * (1 - mask)
    return masks, fixed


def to_flat(
    path: Path, state: dict[str, torch.Tensor], layout: ParamLayout, structure: tuple[dict, dict] | None
) -> np.ndarray:
    """The network's parameters as symzoo's flat vector (``layout``'s order; W-Asym: zeros at fixed positions, as
    symzoo stores them). ``ZooError`` naming the file where a key is missing, extra or of another shape, or where a
    W-Asym network's mask or fixed values are not the zoo's (``structure``)."""
    wanted = {authors_name(s.name): s for s in layout.slots}
    extra = [k for k in state if k not in wanted and k.rpartition(".")[2] not in BUFFERS]
    missing = [k for k in wanted if k not in state]
    if extra or missing:
        what = f"keys {extra[:3]} that symzoo's {len(layout.slots)}-tensor network lacks" if extra else ""
        what += (" and " if extra and missing else "") + (f"no {missing[:3]}" if missing else "")
        raise ZooError(f"{path} is not a ResNet8 of the authors' layout: it holds {what}")
    parts = []
    for theirs, slot in wanted.items():
        value = state[theirs]
        if tuple(value.shape) != slot.shape:
            raise ZooError(f"{path}: {theirs} has shape {tuple(value.shape)}, symzoo's {slot.name} {slot.shape}")
        value = value.detach().float()
        if structure is not None and slot.name in structure[0]:
            mask, fixed = structure[0][slot.name], structure[1][slot.name]
            own = state.get(f"{theirs[: -len('.weight')]}.mask")
            if own is None or not torch.equal(own.float().reshape(slot.shape), mask):
                raise FixedStructureMismatch(f"its {theirs} mask is not the zoo's")
            stored = value * (1 - mask)
            if not torch.allclose(stored, fixed, rtol=FIXED_TOLERANCE, atol=FIXED_TOLERANCE) and value.isfinite().all():
                raise FixedStructureMismatch(f"its {theirs} fixed entries are not the zoo's")
            value = value * mask
        parts.append(value.reshape(-1).numpy())
    return np.concatenate(parts).astype(np.float32)


class FixedStructureMismatch(Exception):
    """A W-Asym network whose masks or fixed values differ from the zoo's: recorded as failed, not imported."""
