"""What every metanetwork's readout returns, shared by the paper's metanets and the equivariant ones."""

from __future__ import annotations

import torch


def squeeze_scalar(out: torch.Tensor) -> torch.Tensor:
    """(B, 1) -> (B,) for the accuracy target; (B, K) class logits stay as they are."""
    return out.squeeze(-1) if out.shape[-1] == 1 else out
