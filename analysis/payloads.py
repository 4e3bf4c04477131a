"""A work unit's payload for the interpolation stages (MLI, LMC): its networks' weights, sent with it or read where
it runs, and the record of what it could not evaluate (non-finite stored weights)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from symzoo.zoo.weight_cache import rows_finite

NOT_EVALUATED = "non-finite weights"


def with_weights(payload: dict, kinds: tuple[str, ...]) -> dict:
    """The payload with its rows' weights read (``weights``: kind -> array, rows in ``model_ids`` order) in place of
    where they lie."""
    rows = payload["rows"]
    read = {"weights": {k: rows.read(k) for k in kinds}, "model_ids": rows.model_ids}
    return {k: v for k, v in payload.items() if k != "rows"} | read


def unit_weights(payload: dict, kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A unit's weights of each kind (rows in model_id order): as sent with it, or read here from the zoo."""
    if "weights" in payload:
        return payload["weights"]
    return {k: payload["rows"].read(k) for k in kinds}


def finite_rows(weights: dict[str, np.ndarray]) -> np.ndarray:
    """Rows finite in every kind of weights."""
    masks = [rows_finite(w) for w in weights.values()]
    return np.logical_and.reduce(masks) if masks else np.zeros(0, bool)


def unevaluated_rows(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A unit's record of the items it could not evaluate (non-finite stored weights): one row each, its ``alpha``
    and measures NaN. The stage drops them from the curves and counts them (``take_unevaluated``)."""
    marks = pd.DataFrame({c: frame[c].to_numpy() if c in frame else np.nan for c in columns})
    return marks.astype({c: "float64" for c in columns if c not in frame})


def take_unevaluated(curves: pd.DataFrame, key: str, skipped: dict[str, dict[str, int]], what: str) -> pd.DataFrame:
    """The curves without the units' not-evaluated rows, each counted (distinct ``key``) into ``skipped``."""
    marked = curves["alpha"].isna()
    for variant, g in curves[marked].groupby("variant"):
        skipped.setdefault(str(variant), {})[f"{what} with {NOT_EVALUATED}"] = int(g[key].nunique())
    return curves[~marked].reset_index(drop=True)
