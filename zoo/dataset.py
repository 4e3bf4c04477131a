"""A zoo as a ``torch.utils.data.Dataset``: networks as inputs, any metadata columns as targets, the zoo's split.

Weights come from the metanet stage's own cache (``zoo.weight_cache.VariantCache``): each variant's trainable
entries decoded once, a shard at a time, into a local ``.npy`` that every item reads through a memory map. A
``DataLoader`` with worker processes therefore shares one copy in the page cache: no worker loads the zoo, and a
process holds only the rows it touches. Four views of a network:

- ``flat``: the trainable entries (all of them for standard and sigma-Asym; W-Asym's fixed entries left out);
- ``layers``: every parameter tensor in its shape, ``{name: tensor}`` in layout order (a W-Asym parameter holds
  zeros where its layer's fixed values are added: those live in the variant's buffers, the same in every network);
- ``nfn``: NFN's convention (Zhou et al. 2023), ``(weights, biases)`` tuples with a channel dimension, for each
  layer with a matrix or convolution weight; norm parameters have no place there and are listed in ``left_out``;
- ``stats``: the StatNN statistics (Unterthiner et al. 2020), 7 per tensor.

``transform`` (``zoo.symmetry``: ``NeuronPermutation``, ``PositiveScaling``) maps each item's parameter tensors
before the view is taken: augmentation by the zoo's symmetries, or, on asymmetric variants, the control.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from symzoo.errors import ZooError
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.splits import stored_source
from symzoo.zoo.store import Zoo, open_zoo

VIEWS = ("flat", "layers", "nfn", "stats")


def default_cache_dir() -> Path:
    from symzoo.zoo.location import default_data_dir

    return default_data_dir() / "weights"


class WeightDataset(torch.utils.data.Dataset):
    """Item ``i``: ``(x, y)``, ``x`` the network in ``view``, ``y`` a float32 tensor of its ``targets`` columns.

    ``networks`` is the metadata of the items in order (model_id, variant, sample, split, targets): finished
    networks with every target known, of ``variants`` (default all) and ``split`` (train / val / test, from
    ``Zoo.splits(split_seed)``; default all). ``targets`` default: ``test_acc``, or on an INR zoo ``image_class``
    (the class of the image each network fits; as a float, ``y.long()`` for cross-entropy)."""

    def __init__(
        self,
        zoo: Zoo | str | Path,
        which: str = "final",
        view: str = "flat",
        targets: tuple[str, ...] | list[str] | None = None,
        split: str | None = None,
        variants: list[str] | None = None,
        split_seed: int | str = "stored",
        cache_dir: str | Path | None = None,
        transform: Callable[[dict[str, torch.Tensor], str], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        from symzoo.zoo.weight_cache import VariantCache

        zoo = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
        zoo.check_weight_kind(which)
        if not zoo.complete:
            warnings.warn(
                f"{zoo.path} is an incomplete zoo ({len(zoo.frame)} networks so far): this dataset serves those; "
                "finish it with `symzoo generate` and its config",
                stacklevel=2,
            )
        if split_seed == "stored" and stored_source(zoo.path) is None:
            warnings.warn(
                f"{zoo.path} stores no splits.parquet: the split is seed 0's; store one with `symzoo splits`",
                stacklevel=2,
            )
        if view not in VIEWS:
            raise ZooError(f"view {view!r} is not one of {', '.join(VIEWS)}")
        if targets is None:
            targets = ["image_class"] if zoo.config.get("task") == "inr" else ["test_acc"]
        targets = list(targets)
        numeric = [c for c in zoo.frame.columns if pd.api.types.is_numeric_dtype(zoo.frame[c])]
        unknown = [t for t in targets if t not in numeric]
        if unknown:
            raise ZooError(f"target {unknown[0]!r} is not a numeric metadata column; choose from {', '.join(numeric)}")
        variants = variants or list(zoo.layouts)
        for v in variants:
            zoo.layout(v)
        frame = zoo.frame.merge(zoo.splits(split_seed), on="model_id")
        frame["row"] = frame.groupby("variant").cumcount()  # position in its variant's cache (model_id order)
        keep = frame["variant"].isin(variants) & (frame["status"] == "ok") & frame[targets].notna().all(axis=1)
        if split is not None:
            if split not in ("train", "val", "test"):
                raise ZooError(f"split {split!r} is not one of train, val, test")
            keep &= frame["split"] == split
        self.networks = frame.loc[keep, ["model_id", "variant", "sample", "split", "row", *targets]]
        self.networks = self.networks.reset_index(drop=True)
        self.view, self.targets, self.transform = view, targets, transform
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        kinds = ("flat", "stats") if view == "stats" else ("flat",)
        self.caches = {v: VariantCache.of(zoo, v, which, cache_dir) for v in variants}
        self.layouts = {v: zoo.layout(v) for v in variants}
        self.fixed = {}  # per variant: a full vector holding the entries that are not trained (W-Asym's: zeros)
        for v in variants:
            finite = self.caches[v].ensure(kinds, zoo)
            mine = self.networks["variant"] == v
            bad = mine & ~pd.Series(finite[self.networks["row"].where(mine, 0)], index=self.networks.index)
            self.networks = self.networks[~bad].reset_index(drop=True)  # a non-finite network is left out
            if not self.layouts[v].trainable.all():
                first = zoo.frame.loc[zoo.frame["variant"] == v, "model_id"].iloc[0]
                self.fixed[v] = zoo.weights(which, model_ids=[int(first)])[0]
        self.left_out = nfn_left_out(next(iter(self.layouts.values()))) if view == "nfn" else []
        if view == "nfn" and len({len(layout.slots) for layout in self.layouts.values()}) > 1:
            raise ZooError("the nfn view needs variants of one architecture")
        self._maps: dict[str, np.ndarray] = {}  # opened lazily in each process (DataLoader workers included)
        self._variant_of = self.networks["variant"].to_numpy(object)  # plain arrays: an item costs no pandas lookup
        self._row_of = self.networks["row"].to_numpy(np.int64)
        self._y = torch.from_numpy(np.array(self.networks[targets].to_numpy(np.float32)))

    def __len__(self) -> int:
        return len(self.networks)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}  # a worker maps the files itself: nothing large is pickled

    def _matrix(self, variant: str, kind: str) -> np.ndarray:
        key = f"{variant}/{kind}"
        if key not in self._maps:
            self._maps[key] = self.caches[variant].matrix(kind)
        return self._maps[key]

    def __getitem__(self, i: int):
        variant, row = self._variant_of[i], int(self._row_of[i])
        if self.transform is None and self.view in ("flat", "stats"):  # straight from the cache
            return torch.from_numpy(np.array(self._matrix(variant, self.view)[row])), self._y[i]
        tensors = self.full_tensors(variant, np.array(self._matrix(variant, "flat")[row]))
        if self.transform is not None:
            tensors = self.transform(tensors, variant)
        return self.view_of(tensors, variant), self._y[i]

    def view_of(self, tensors: dict[str, torch.Tensor], variant: str):
        """A network's parameter tensors in this dataset's view."""
        if self.view == "layers":
            return tensors
        if self.view == "nfn":
            return nfn_view(tensors)
        layout = self.layouts[variant]
        flat = layout.flatten(tensors)[torch.from_numpy(layout.trainable_index)]
        if self.view == "flat":
            return flat
        from symzoo.zoo.weight_cache import statnn_features

        return torch.from_numpy(statnn_features(flat[None].numpy(), layout)[0])

    def full_vector(self, variant: str, flat: np.ndarray) -> np.ndarray:
        """A network's full parameter vector from its trainable entries (untrained entries from the variant)."""
        layout = self.layouts[variant]
        if variant not in self.fixed:
            return flat
        full = self.fixed[variant].copy()
        full[layout.trainable_index] = flat
        return full

    def full_tensors(self, variant: str, flat: np.ndarray) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` of every parameter, in layout order and shape."""
        return self.layouts[variant].unflatten(self.full_vector(variant, flat))


def is_layer_weight(name: str, shape: tuple[int, ...]) -> bool:
    """A matrix or convolution kernel: what NFN's weight space holds (norm scales are 1-D)."""
    return (name == "weight" or name.endswith(".weight")) and len(shape) >= 2


def nfn_left_out(layout: ParamLayout) -> list[str]:
    """The parameters the nfn view does not carry (norm scales and shifts)."""
    kept = set()
    for s in layout.slots:
        if is_layer_weight(s.name, s.shape):
            kept |= {s.name, s.name[: -len("weight")] + "bias"}
    return [s.name for s in layout.slots if s.name not in kept]


def nfn_view(tensors: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """NFN's ``(weights, biases)``: weights ``(1, out, in[, kh, kw])``, biases ``(1, out)`` (zeros where a layer
    has none), one channel per network as NFN's ``WeightSpaceFeatures`` expects before batching."""
    weights, biases = [], []
    for name, w in tensors.items():
        if is_layer_weight(name, tuple(w.shape)):
            b = tensors.get(name[: -len("weight")] + "bias", torch.zeros(w.shape[0], dtype=w.dtype))
            weights.append(w.unsqueeze(0))
            biases.append(b.unsqueeze(0))
    return tuple(weights), tuple(biases)
