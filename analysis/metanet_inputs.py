"""What a metanetwork learns from: a variant's usable networks, their split, and (optionally) its standard
networks aligned onto one reference by Git Re-Basin before the flat metanets read them.

The matrices themselves come from ``zoo.weight_cache.VariantCache``; this module says which rows count and how
they are split, and adds the cached kinds that need analysis: ``aligned`` and ``gated``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from symzoo.errors import ZooError
from symzoo.zoo.store import Zoo
from symzoo.zoo.weight_cache import VariantCache, temporary_beside

SPLITS = ("train", "val", "test")
MIN_PER_SPLIT = {"train": 2, "val": 2, "test": 2}


@dataclass
class VariantWeights:
    """One variant's networks: metadata rows (model_id order), weights (N, D) and which rows are usable."""

    variant: str
    frame: pd.DataFrame  # model_id, sample, replicate, status, test_acc, ...
    weights: np.ndarray  # (N, D) float32, possibly a read-only memory map
    usable: np.ndarray  # bool (N,): status ok and every weight finite

    def drop_reasons(self) -> dict[str, int]:
        """How many networks were left out and why (non-ok status by name, non-finite weights)."""
        reasons: dict[str, int] = {}
        for status, n in self.frame.loc[self.frame["status"] != "ok", "status"].value_counts().items():
            reasons[str(status)] = int(n)
        nonfinite = int(((self.frame["status"] == "ok").to_numpy() & ~self.usable).sum())
        if nonfinite:
            reasons["non-finite weights"] = nonfinite
        return reasons


def usable_rows(frame: pd.DataFrame, finite: np.ndarray, target: str = "test_acc") -> np.ndarray:
    """Finished, with finite weights and a target (``target``: the column, test accuracy or an INR's image class):
    what a metanet can learn from."""
    return (frame["status"] == "ok").to_numpy() & finite & frame[target].notna().to_numpy()


def split_indices(vw: VariantWeights, splits: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices of the usable networks in each split (``splits``: model_id -> split, as ``Zoo.splits``)."""
    where = vw.frame["model_id"].map(splits.set_index("model_id")["split"]).to_numpy()
    return {name: np.flatnonzero(vw.usable & (where == name)) for name in SPLITS}


def check_split_sizes(vw: VariantWeights, idx: dict[str, np.ndarray]) -> None:
    """A metanet needs a few networks in every split; say how many there are and how many are needed."""
    short = [name for name in SPLITS if len(idx[name]) < MIN_PER_SPLIT[name]]
    if short:
        counts = ", ".join(f"{len(idx[n])} {n}" for n in SPLITS)
        dropped = sum(vw.drop_reasons().values())
        raise ZooError(
            f"variant {vw.variant} has {int(vw.usable.sum())} usable networks ({dropped} dropped), split {counts}; "
            f"the metanet split (50/25/25 of samples) needs at least 2 in each: train a zoo of at least 8 "
            f"hyperparameter samples (networks: 8 or more)"
        )


def ensure_inputs(cache: VariantCache, kinds: tuple[str, ...], zoo: Zoo | None = None) -> np.ndarray:
    """``cache.ensure`` with the metanet's own derived kinds, ``aligned`` and ``gated``; returns which rows are
    finite."""
    return cache.ensure(kinds, zoo, {"aligned": build_aligned, "gated": build_gated})


def build_gated(cache: VariantCache, zoo: Zoo, path: Path) -> None:
    """Each network's trainable entries followed by its own F, in the parameter graph's gate-edge order (what the
    graph metanetwork reads where a sigma-Asym zoo draws F per network, ``model.gates: network``): F is no
    parameter and is stored in no network, so it is rebuilt from the zoo seed and the network's sample."""
    import torch

    from symzoo.analysis.weight_space import parameter_graph
    from symzoo.zoo.models import build_configured

    flat = cache.matrix("flat")
    frame = zoo.frame[zoo.frame["variant"] == cache.variant].reset_index(drop=True)
    layout = zoo.layout(cache.variant)
    shape, classes = tuple(zoo.manifest["in_shape"]), zoo.manifest["num_classes"]

    def gates(sample: int) -> np.ndarray:
        model = build_configured(zoo.config, cache.variant, shape, classes, sample=sample)
        return parameter_graph(model, layout).gate_values().numpy()

    n_gates = len(gates(int(frame["sample"].iloc[0])))
    with torch.no_grad():
        rows = (np.concatenate([np.asarray(flat[i]), gates(int(s))]) for i, s in enumerate(frame["sample"]))
        write_rows_atomically(path, (len(flat), flat.shape[1] + n_gates), rows)


def write_rows_atomically(path: Path, shape: tuple[int, int], rows: Iterable[np.ndarray]) -> None:
    """A float32 ``.npy`` of ``shape`` written row by row (a memory map: one row in memory at a time) beside
    ``path``, then renamed into place; a failed build leaves no temporary behind."""
    tmp = temporary_beside(path)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for i, row in enumerate(rows):
            out[i] = row
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_aligned(cache: VariantCache, zoo: Zoo, path: Path) -> None:
    """Every network of a permutation-symmetric variant permuted onto one reference by Git Re-Basin's weight
    matching (SANE canonicalises a zoo this way), written row by row to the ``.npy`` at ``path``: the reference is
    the first network with finite weights, chosen without looking at any target. Rows with non-finite weights are
    copied as they are (the metanet leaves them out anyway)."""
    import torch

    from symzoo.analysis.rebasin import weight_matching
    from symzoo.zoo.symmetry import permute, recorded_spec

    variant = cache.variant
    symmetries = zoo.symmetries[variant]
    if not symmetries["permutation_is_symmetry"]:
        raise ZooError(
            f"{variant} networks have no permutation symmetry to align: metanet.align applies to standard ones"
        )
    flat, finite = cache.matrix("flat"), np.load(cache.path("finite"))
    layout = zoo.layout(variant)
    spec = recorded_spec(symmetries)
    reference = layout.unflatten(torch.from_numpy(np.array(flat[int(np.argmax(finite))]))) if finite.any() else None

    def aligned(i: int) -> np.ndarray:
        row = np.array(flat[i])
        if not finite[i]:
            return row
        params = layout.unflatten(torch.from_numpy(row))
        perms = weight_matching(spec, reference, params, seed=0)
        return layout.flatten(permute(spec, perms, params)).numpy()

    write_rows_atomically(path, flat.shape, (aligned(i) for i in range(len(flat))))
