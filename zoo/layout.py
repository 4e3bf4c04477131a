"""The one flattening of parameters: names, shapes, offsets and which entries are trainable.

Storage writes flat vectors in this order, metanetworks read them, MLI/LMC interpolate them, and rebuilding a
module goes back through ``unflatten``. Buffers (masks, fixed values, FiGLU gates) are not parameters: they are
rebuilt from the zoo seed, so a flat vector holds exactly ``model.parameters()`` in state-dict order.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from symzoo.zoo.layers import AsymmetricWeight


@dataclass(frozen=True)
class TensorSlot:
    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class ParamLayout:
    slots: tuple[TensorSlot, ...]
    trainable: np.ndarray = field(repr=False)  # bool (P,)

    @classmethod
    def from_model(cls, model: nn.Module) -> ParamLayout:
        masks = {
            f"{name}.weight" if name else "weight": m.trainable_mask()
            for name, m in model.named_modules()
            if isinstance(m, AsymmetricWeight)
        }
        slots, parts, offset = [], [], 0
        for name, p in model.named_parameters():
            slots.append(TensorSlot(name, tuple(p.shape), offset))
            offset += p.numel()
            mask = masks.get(name)
            parts.append(np.ones(p.numel(), bool) if mask is None else mask.reshape(-1).cpu().numpy().astype(bool))
        return cls(tuple(slots), np.concatenate(parts))

    @property
    def size(self) -> int:
        return int(self.trainable.size)

    @property
    def n_trainable(self) -> int:
        return int(self.trainable.sum())

    @property
    def trainable_index(self) -> np.ndarray:
        return np.flatnonzero(self.trainable)

    def flatten(self, params: dict[str, torch.Tensor] | nn.Module) -> torch.Tensor:
        """Flat float32 vector of a module's (or a name->tensor dict's) parameters; a leading batch dim is kept."""
        if isinstance(params, nn.Module):
            params = dict(params.named_parameters())
        first = params[self.slots[0].name]
        batch = first.shape[: first.dim() - len(self.slots[0].shape)]
        flat = [params[s.name].detach().reshape(*batch, s.size) for s in self.slots]
        return torch.cat(flat, dim=-1).float()

    def unflatten(self, flat: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        if isinstance(flat, np.ndarray) and not flat.flags.writeable:
            flat = flat.copy()  # Arrow-backed arrays are read-only; torch wants to own writable memory
        flat = torch.as_tensor(flat)
        if flat.shape[-1] != self.size:
            raise ValueError(f"flat vector has {flat.shape[-1]} entries, layout expects {self.size}")
        batch = flat.shape[:-1]
        return {s.name: flat[..., s.offset : s.offset + s.size].reshape(*batch, *s.shape) for s in self.slots}

    def load_into(self, model: nn.Module, flat: torch.Tensor | np.ndarray) -> nn.Module:
        """Copy a flat vector into ``model``'s parameters (fixed structure stays the model's own)."""
        tensors = self.unflatten(flat)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(tensors[name])
        return model

    def to_json(self) -> dict:
        return {
            "size": self.size,
            "n_trainable": self.n_trainable,
            "tensors": [{"name": s.name, "shape": list(s.shape), "offset": s.offset} for s in self.slots],
            "trainable_packbits_b64": base64.b64encode(np.packbits(self.trainable).tobytes()).decode(),
        }

    @classmethod
    def from_json(cls, data: dict) -> ParamLayout:
        bits = np.frombuffer(base64.b64decode(data["trainable_packbits_b64"]), np.uint8)
        trainable = np.unpackbits(bits)[: data["size"]].astype(bool)
        slots = tuple(TensorSlot(t["name"], tuple(t["shape"]), t["offset"]) for t in data["tensors"])
        if sum(s.size for s in slots) != data["size"] or trainable.size != data["size"]:  # a recorded one, edited
            raise ValueError(f"its tensors hold {sum(s.size for s in slots)} values, its size says {data['size']}")
        return cls(slots, trainable)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ParamLayout)
            and self.slots == other.slots
            and np.array_equal(self.trainable, other.trainable)
        )

    __hash__ = None  # type: ignore[assignment]


def count_trainable(model: nn.Module) -> int:
    """Parameters that training changes: all of them, less the fixed entries of W-Asym layers."""
    return ParamLayout.from_model(model).n_trainable
