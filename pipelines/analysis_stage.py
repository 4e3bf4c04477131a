"""What every analysis stage (metanet, mli, lmc) does around its own work: open and check the zoo, resolve the
options, own the output directory, skip when complete, run units on Ray, record completion and timing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray

from symzoo.analysis.payloads import with_weights
from symzoo.errors import ZooError
from symzoo.pipelines.outputs import (
    check_out_dir,
    check_stage_dir,
    claim_stage_dir,
    is_done,
    mark_done,
    read_unit_files,
    remove_stale_temporaries,
    stage_identity,
)
from symzoo.pipelines.stage import (
    StageReport,
    WorkUnit,
    analysis_resources,
    check_fits,
    connect,
    describe_cluster,
    run_unit_files,
    workers_reach,
)
from symzoo.pipelines.stage_spec import StageOptions, StageResult, StageSpec
from symzoo.zoo.location import Location, is_within, location
from symzoo.zoo.lock import directory_lock
from symzoo.zoo.store import MODELS, Zoo, open_zoo


@dataclass
class AnalysisStage:
    """One call of an analysis stage on one zoo and output directory."""

    spec: StageSpec
    zoo: Zoo
    out: Location
    opts: StageOptions
    identity: dict  # what makes every result what it is: another identity in ``out`` is refused
    units_folder: str
    start: float = field(default_factory=time.perf_counter)
    reports: list[StageReport] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        spec: StageSpec,
        zoo_dir: str | Location,
        out: str | Location,
        config_section: dict | None,
        overrides: dict | None,
        units_folder: str = "units",
    ) -> AnalysisStage:
        """Open the zoo and resolve options (stored section, ``--config`` section, flags); nothing is written."""
        out = location(out)
        check_out_dir(out)
        zoo = open_zoo(zoo_dir)
        if is_within(out, zoo.path / MODELS):
            raise ZooError(
                f"--out {out} is inside the zoo's {MODELS}/ folder, where every Parquet file is read as a shard "
                "(pandas, Polars, DuckDB); put stage outputs beside the zoo, e.g. --out runs/NAME"
            )
        opts = spec.resolve(zoo.config.get(spec.name), config_section, overrides)
        if not zoo.complete:
            raise ZooError(
                f"{zoo.path} is an incomplete zoo ({len(zoo.frame)} networks so far); finish it with "
                "`symzoo generate` and its config before analysing it"
            )
        identity = stage_identity(zoo, opts.as_dict(), spec.identity)
        check_stage_dir(out, spec.name, identity)
        return cls(spec, zoo, out, opts, identity, units_folder)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def done_key(self) -> dict:
        return self.opts.results_key()

    @property
    def units_dir(self) -> Location:
        return self.out / self.units_folder

    def require_weights(self, kind: str) -> None:
        if kind not in self.zoo.weight_kinds():
            raise ZooError(f"{self.zoo.path} stores no {kind} weights; the {self.name} stage needs them")

    def finished(self) -> StageResult | None:
        """The stored result when ``out`` already holds this stage's complete outputs for these options."""
        if not is_done(self.out, self.done_key):
            return None
        print(f"symzoo: {self.out} already holds the complete {self.name} results; nothing to do", file=sys.stderr)
        kept = len(list(self.units_dir.glob("*.parquet")))
        return StageResult(self.out, (self.out / "table.md").read_text(), 0, kept)

    @contextmanager
    def running(self, address: str | None, uses_ray: bool = True) -> Iterator[None]:
        """Hold ``out``'s lock (a second writer is refused at once, before Ray starts), join or start Ray (a wrong
        address leaves no trace) unless the stage runs no task (``uses_ray``), and own ``out`` while the block runs."""
        with directory_lock(self.out, f"symzoo {self.name}"):
            if uses_ray:
                connect(address)
                # a unit no node can hold would wait forever: refused before anything is written
                check_fits(analysis_resources(self.opts.cpus_per_task, self.opts.gpus_per_task, 1.0), self.name)
            claim_stage_dir(self.out, self.name, self.identity)
            self.units_dir.mkdir(exist_ok=True)
            remove_stale_temporaries(self.units_dir)
            self.start = time.perf_counter()
            yield

    def run(
        self,
        units: list[WorkUnit],
        task: Any,
        task_args: tuple,
        key_of: Callable[[WorkUnit], str],
        gpu_share: float,
        desc: str,
        show_progress: bool,
        prepare: Callable[[WorkUnit], Any] | None = None,
    ):
        """Run the units without a finished file; returns every unit's stored frame (``key`` column dropped)."""
        resources = analysis_resources(self.opts.cpus_per_task, self.opts.gpus_per_task, gpu_share)
        item = self.spec.item
        self.reports.append(
            run_unit_files(units, task, task_args, self.out, key_of, resources, desc, show_progress, item, prepare)
        )
        return read_unit_files([u.output for u in units]).drop(columns="key")

    def workers_read(self) -> bool:
        """Whether tasks read their networks' weights from the zoo themselves (the ``workers_read`` option); else
        the driver reads each unit's rows as it sends the unit. Needs Ray connected."""
        return workers_reach(self.zoo.path, self.opts.workers_read)

    def run_on_data(self, units: list[WorkUnit], task: Any, data: Any, kinds: tuple[str, ...], show_progress: bool):
        """``run`` for the stages whose units carry their ``key`` and ``rows`` (``StoredRows``) in the payload and
        whose tasks take the zoo's config, its data set (put in Ray's object store once) and the options: mli and
        lmc. Workers that cannot reach the zoo get the ``kinds`` of weights read by the driver instead."""
        task_args = (self.zoo.config, ray.put(data), self.opts)
        prepare = None if self.workers_read() else lambda u: with_weights(u.payload, kinds)
        return self.run(units, task, task_args, lambda u: u.payload["key"], 0.5, self.name, show_progress, prepare)

    def finish(self, table: str) -> StageResult:
        """Record completion (options, seconds, where) and say what this call did."""
        seconds = time.perf_counter() - self.start
        mark_done(self.out, self.done_key, seconds, describe_cluster())
        ran = sum(len(r.done) for r in self.reports)
        kept = sum(len(r.skipped) for r in self.reports)
        print(f"symzoo: {self.name}: {ran} units run in {seconds:.0f} s, {kept} were already done", file=sys.stderr)
        return StageResult(self.out, table, ran, kept)
