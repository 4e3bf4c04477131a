"""Checks for config fields: each failure is one ``ConfigError`` line naming the field and what is allowed.

Shared by the zoo config (``zoo.config``) and the stages' sections (``pipelines.stage_spec``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from symzoo.errors import ConfigError


def fail(path: str, problem: str) -> None:
    raise ConfigError(f"config field '{path}': {problem}")


def merge(defaults: dict, given: dict, prefix: str = "") -> dict:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            fail(path, f"unknown field; allowed: {', '.join(defaults)}")
        if isinstance(defaults[key], dict) and key != "hyperparameters":
            if not isinstance(value, dict):
                fail(path, f"must be a mapping with fields {', '.join(defaults[key])}")
            out[key] = merge(defaults[key], value, path + ".")
        else:
            out[key] = value
    return out


# The largest count any field takes: past it a typo (an extra zero or nine) would hang the plan or exhaust memory
# before anything could say so. Fields with a natural bound state their own.
MAX_COUNT = 10_000_000


def check_int(path: str, value: Any, low: int, high: int = MAX_COUNT, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(path, f"{value!r} is not allowed; an integer in [{low}, {high}]")


def check_number(path: str, value: Any, low: float, high: float = MAX_COUNT) -> None:
    """A finite number in [low, high]: .inf and .nan are YAML numbers too, and nothing here can use them."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        bound = f">= {low}" if high == float("inf") else f"in [{low}, {high}]"
        fail(path, f"{value!r} is not allowed; a finite number {bound}")


def check_choice(path: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(path, f"{value!r} is not allowed; choose one of {', '.join(choices)}")


def check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        fail(path, f"{value!r} is not allowed; true or false")
