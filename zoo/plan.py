"""The zoo plan: one ``NetSpec`` per network, a pure function of the config, identical in every process.

Paired design: every variant of hyperparameter sample ``i`` shares its hyperparameters and its seed (hence
data order and augmentation). Replicates of a sample differ only in seed, which is what LMC pairs need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from symzoo.zoo.layers import stable_seed

# Paper Table 8: lr = 0.5 * 10^-U(0,2), wd = 10^-U(1,5), ls = U(0, 0.2), epochs = RandInt(10, 40) inclusive.
PAPER_TABLE8: dict[str, Any] = {
    "lr": {"log_uniform": [0.005, 0.5]},
    "weight_decay": {"log_uniform": [1e-5, 1e-1]},
    "label_smoothing": {"uniform": [0.0, 0.2]},
    "epochs": {"randint": [10, 40]},
}
HPARAM_NAMES = tuple(PAPER_TABLE8)
DISTRIBUTIONS = ("log_uniform", "uniform", "randint")


@dataclass(frozen=True)
class HParams:
    lr: float
    weight_decay: float
    label_smoothing: float
    epochs: int


@dataclass(frozen=True)
class NetSpec:
    model_id: int
    sample: int
    replicate: int
    variant: str
    seed: int
    hparams: HParams

    def row(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "hparams"}
        return out | asdict(self.hparams)


IMPORTED_SEED = -1  # an imported network's seed: the source did not record one


def plan_configured(cfg: dict) -> list[NetSpec]:
    """The plan of the zoo that a validated config describes; an imported zoo's from the hyperparameters its
    source recorded (``imported.hparams``), one network per sample and variant, seeds unknown."""
    imported = cfg.get("imported")
    if imported is not None:
        return plan_rows(imported["hparams"], cfg["variants"])
    shared = cfg["training"].get("shared_seed", False)
    return plan_zoo(cfg["networks"], cfg["variants"], cfg["replicates"], cfg["seed"], cfg["hyperparameters"], shared)


def plan_rows(rows: list[list[float]], variants: list[str]) -> list[NetSpec]:
    """Sample ``i`` has the hyperparameters ``rows[i]`` (lr, weight_decay, label_smoothing, epochs)."""
    specs = []
    for s, (lr, wd, ls, epochs) in enumerate(rows):
        hp = HParams(float(lr), float(wd), float(ls), int(epochs))
        for v in variants:
            specs.append(NetSpec(len(specs), s, 0, v, IMPORTED_SEED, hp))
    return specs


# What a stored row shares with its plan entry: a shard whose rows differ here holds another zoo's networks.
PLANNED_COLUMNS = ("model_id", "sample", "replicate", "variant", "seed", *HPARAM_NAMES)


def plan_difference(rows: dict[str, list], planned: list[NetSpec]) -> str | None:
    """None when ``rows`` (a shard's ``PLANNED_COLUMNS``, in any row order: schema 2 groups a shard's rows by
    variant) are exactly the ``planned`` networks; otherwise the first difference, worded for a message. Ids alone
    are not enough: a zoo made from the same config with another seed numbers its networks the same way."""
    order = sorted(range(len(rows["model_id"])), key=lambda i: rows["model_id"][i])
    rows = {column: [values[i] for i in order] for column, values in rows.items()}
    planned = sorted(planned, key=lambda s: s.model_id)
    ids = rows["model_id"]
    if list(ids) != [s.model_id for s in planned]:
        return f"model ids {list(ids)[:3]}... instead of the planned {[s.model_id for s in planned][:3]}..."
    for i, spec in enumerate(planned):
        expected = spec.row()
        for column in PLANNED_COLUMNS:
            if rows[column][i] != expected[column]:
                return (
                    f"model_id {spec.model_id} with {column} {rows[column][i]!r} where this zoo's plan has "
                    f"{expected[column]!r} (a shard of another zoo?)"
                )
    return None


def draw(dist: Any, rng: np.random.Generator) -> float:
    """One value from a distribution spec: a constant, or ``{log_uniform|uniform|randint: [lo, hi]}``."""
    if isinstance(dist, (int, float)):
        return dist
    ((kind, (lo, hi)),) = dist.items()
    if kind == "log_uniform":
        return float(10 ** rng.uniform(np.log10(lo), np.log10(hi)))
    if kind == "uniform":
        return float(rng.uniform(lo, hi))
    if kind == "randint":
        return int(rng.integers(lo, hi + 1))
    raise ValueError(f"unknown distribution {kind!r}; choose one of {', '.join(DISTRIBUTIONS)}")


def sample_hparams(dists: dict[str, Any], zoo_seed: int, sample: int) -> HParams:
    rng = np.random.default_rng(stable_seed("symzoo-hparams", zoo_seed, sample))
    values = {name: draw(dists[name], rng) for name in HPARAM_NAMES}
    values["epochs"] = int(values["epochs"])
    return HParams(**values)


def plan_zoo(
    n_samples: int,
    variants: list[str],
    replicates: int = 1,
    zoo_seed: int = 0,
    dists: dict[str, Any] | None = None,
    shared_seed: bool = False,
) -> list[NetSpec]:
    """Ordered sample-major, so any prefix of the plan is itself a complete paired zoo. ``shared_seed``: every
    sample takes sample 0's seed for its replicate (one init for the whole zoo, per replicate)."""
    dists = {**PAPER_TABLE8, **(dists or {})}
    specs = []
    for s in range(n_samples):
        hp = sample_hparams(dists, zoo_seed, s)
        for r in range(replicates):
            seed = stable_seed("symzoo-net", zoo_seed, 0 if shared_seed else s, r) % (2**31)
            for v in variants:
                specs.append(NetSpec(len(specs), s, r, v, seed, hp))
    return specs
