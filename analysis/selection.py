"""Which networks an interpolation stage evaluates: the finished ones, optionally a seeded sample per variant."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd


def sample_per_variant(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows of each variant, drawn without replacement by ``seed`` (each variant from its own stream,
    seeded by its name, so adding a variant leaves the others' draws alone) and kept in their original order; all
    rows when ``n`` is None. How the paper's MLI analyses 300 networks per family of a larger zoo."""
    if n is None:
        return frame
    keep = []
    for variant, g in frame.groupby("variant", sort=True):
        rng = np.random.default_rng([seed, zlib.crc32(str(variant).encode())])
        keep.extend(g.index[np.sort(rng.choice(len(g), min(n, len(g)), replace=False))])
    return frame.loc[sorted(keep)]


def finished_networks(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """The networks whose status is ok, and per variant how many were not and why (a diverged or failed network
    is reported, never fatal). Metadata only: whether the weights are finite is found where they are read."""
    skipped = {
        str(v): {str(s): int(n) for s, n in g.loc[g["status"] != "ok", "status"].value_counts().items()}
        for v, g in frame.groupby("variant")
    }
    return frame[frame["status"] == "ok"].reset_index(drop=True), skipped
