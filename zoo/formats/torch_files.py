"""Reading another project's ``torch.save`` files safely: tensors and numbers only, one line naming a bad file."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from symzoo.errors import ZooError


def load_tensors(path: Path, fix: str):
    """``torch.load(path, weights_only=True)`` on the CPU: nothing in the file is executed. A file that needs more
    than tensors and numbers, or is truncated or not a torch file, is one ``ZooError`` naming it (``fix``: how
    that file should have been saved)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ZooError(
            f"{path} holds Python objects beyond tensors and numbers, which torch.load(weights_only=True) refuses; "
            f"symzoo never unpickles them: {fix}"
        ) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError) as e:
        why = str(e).strip().splitlines()[0][:80] if str(e).strip() else type(e).__name__
        raise ZooError(f"{path} is truncated or not a torch.save file ({why}); download it again") from None
