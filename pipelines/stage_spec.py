"""What a stage is, in one place: the ``StageSpec`` each stage module declares (its options with their defaults
and checks, which options change its results, its command-line flags, how it runs, its report heading), and how
a stage's options are resolved from defaults, the zoo's stored section, a ``--config`` section and flags.

The registry (``pipelines.registry``) collects the specs; the CLI, ``symzoo run``, ``symzoo submit``, the study
config and the report look stages up there and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from symzoo.errors import SymzooError
from symzoo.zoo.fields import check_number, fail, merge
from symzoo.zoo.location import Location


@dataclass(frozen=True, kw_only=True)
class StageOptions:
    """A stage's options, typed: each stage subclasses it with its own fields (checked by its ``check`` before
    this is built). These three say where its units run, not what they compute: none is part of its identity."""

    cpus_per_task: float = 1
    gpus_per_task: float | str = "auto"  # a share of a GPU per unit where the cluster has GPUs, else none
    workers_read: bool | str = "auto"  # tasks read the zoo themselves where they reach it (see pipelines.stage)

    def as_dict(self) -> dict[str, Any]:
        """The options as a config section holds them: the stage's own first, then the resources."""
        values = dataclasses.asdict(self)
        own = {k: v for k, v in values.items() if k not in RESOURCE_OPTIONS}
        return own | {k: values[k] for k in RESOURCE_OPTIONS}

    def results_key(self) -> dict[str, Any]:
        """Every option but the resources: what ``done.json`` records (another value means other results)."""
        return {k: v for k, v in self.as_dict().items() if k not in RESOURCE_OPTIONS}


RESOURCE_OPTIONS = ("cpus_per_task", "gpus_per_task", "workers_read")


@dataclass
class StageResult:
    """What one call of a stage did."""

    out: Location
    table: str  # table.md as written
    ran: int  # units (runs) done in this call
    kept: int  # units found finished


@dataclass(frozen=True)
class StageSpec:
    """One analysis stage: everything the rest of symzoo needs to know to offer, check, run and report it."""

    name: str  # the command (``symzoo NAME``), its config section and its folder in a study
    title: str  # its section heading in the study report
    help: str  # one line for ``symzoo -h``
    item: str  # what its progress bar counts
    options: type[StageOptions]  # its options, with their defaults
    check: Callable[[dict], None]  # checks merged options in place (may normalise them), one line per problem
    identity: tuple[str, ...]  # options that change its results: an output folder made with others is refused
    seed_options: tuple[str, ...]  # named in the report's reproducibility section
    run: Callable[..., Any]  # (zoo_dir, out, config_section, overrides, address, show_progress) -> StageResult
    add_arguments: Callable[[argparse.ArgumentParser], None]  # its own flags
    overrides: Callable[[argparse.Namespace], dict]  # those flags as options (None: not given)
    needs: Callable[[dict], str | None] = lambda cfg: None  # why a zoo of this config cannot have it, else None

    @property
    def defaults(self) -> dict[str, Any]:
        return self.options().as_dict()

    def validate(self, given: Any) -> dict:
        """Its config section: defaults merged with ``given`` (a mapping or None), every option checked."""
        if given is None:
            given = {}
        if not isinstance(given, dict):
            fail(self.name, f"must be a mapping with fields {', '.join(self.defaults)}")
        opts = merge(self.defaults, given, self.name + ".")
        self.check(opts)
        return opts

    def resolve(self, *layers: dict | None) -> StageOptions:
        """Options from successive layers (stored section, a YAML's section, CLI flags; a later one wins), checked
        and typed."""
        combined: dict = {}
        for layer in layers:
            combined.update({k: v for k, v in (layer or {}).items() if v is not None})
        return self.options(**self.validate(combined))


def check_resources(section: str, opts: dict) -> None:
    """The resource options of ``StageOptions``, as every stage takes them."""
    check_number(f"{section}.cpus_per_task", opts["cpus_per_task"], 0.01)
    if opts["gpus_per_task"] != "auto":
        check_number(f"{section}.gpus_per_task", opts["gpus_per_task"], 0)
    if opts["workers_read"] not in ("auto", True, False):
        fail(f"{section}.workers_read", f"{opts['workers_read']!r} is not allowed; auto, true or false")


def csv_flag(text: str | None, kind: type = str, flag: str = "") -> list | None:
    """A comma list from the command line; an entry that is not a ``kind`` is one line naming the flag."""
    if text is None:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SymzooError(f"{flag} {text!r} is not a comma list of numbers; pass e.g. {flag} 1e-4,1e-3") from None
