"""A stage's work unit: what one task computes and where its output lands. Plain data, importable without Ray, so
every stage's plan and evaluate functions run on a machine that has no Ray (``pipelines/shard.py`` for training,
``pipelines/local.py`` for a zoo and its MLI on one GPU box)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from symzoo.zoo.location import Location


@dataclass
class WorkUnit:
    index: int
    output: Location
    payload: Any
    size: int  # items (networks) in the unit, for progress
