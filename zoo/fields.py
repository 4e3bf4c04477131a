"""Checks for config fields: each failure is one ``ConfigError`` line naming the field and what is allowed.

Shared by the zoo config (``zoo.config``) and the analysis stages' sections (``analysis.options``).
"""

from __future__ import annotations

import copy
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


def check_int(path: str, value: Any, low: int, high: float = float("inf"), allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        bound = f">= {low}" if high == float("inf") else f"in [{low}, {high}]"
        fail(path, f"{value!r} is not allowed; an integer {bound}")


def check_number(path: str, value: Any, low: float, high: float = float("inf")) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        fail(path, f"{value!r} is not allowed; a number in [{low}, {high}]")


def check_choice(path: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(path, f"{value!r} is not allowed; choose one of {', '.join(choices)}")


def check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        fail(path, f"{value!r} is not allowed; true or false")
