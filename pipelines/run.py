"""``symzoo run``: the whole study from one config: generate, then the analysis stages it asks for, then the report.

Everything lands under one directory: ``zoo/`` (the zoo), ``metanet/``, ``mli/``, ``lmc/`` (each stage's outputs)
and ``report.md`` / ``report.html``. Each step is skipped when its outputs are complete, so a rerun after a crash
or a kill continues where it stopped; ``symzoo report DIR`` rebuilds the report from stored outputs alone.
"""

from __future__ import annotations

import json
import sys
import time

from symzoo.errors import ZooError
from symzoo.pipelines.generate import generate
from symzoo.pipelines.outputs import check_out_dir, mark_done
from symzoo.pipelines.registry import STAGES, load_study_config, study_stages
from symzoo.pipelines.report import build_report, read_timings
from symzoo.pipelines.stage import describe_cluster
from symzoo.zoo.config import config_hash
from symzoo.zoo.location import Location, atomic_write_bytes, location
from symzoo.zoo.lock import directory_lock, holds_anything
from symzoo.zoo.store import open_zoo

STUDY_FILE = "study.json"


def zoo_complete(zoo_dir: Location, cfg: dict) -> bool:
    """The zoo of this config is there and complete (generate would do nothing)."""
    try:
        zoo = open_zoo(zoo_dir, verify=False)
    except ZooError:  # absent or damaged: generate creates or repairs it
        return False
    return zoo.manifest["config_hash"] == config_hash(cfg) and zoo.complete


def run_study(config_path: str, out: str | Location, address: str | None = None, show_progress: bool = True):
    """Run every step that is not complete yet, then write the report; returns the report's HTML path."""
    cfg = load_study_config(config_path)
    out = location(out)
    check_out_dir(out)
    study = out / STUDY_FILE
    if study.exists() and json.loads(study.read_text()).get("config_hash") != config_hash(cfg):
        raise ZooError(f"{out} holds a study of another config; use another --out or that config")
    if not study.exists() and holds_anything(out):
        raise ZooError(f"{out} exists and is not a symzoo study; choose an empty or new --out")
    stages = study_stages(cfg)
    for name in stages:
        if reason := STAGES[name].needs(cfg):
            raise ZooError(f"config field 'study.stages': {reason}; change the zoo's config or leave {name} out")
    with directory_lock(out, "symzoo run"):  # one study writer; generate and each stage lock their own folders
        return _run_locked(config_path, cfg, out, stages, address, show_progress)


def _run_locked(
    config_path: str, cfg: dict, out: Location, stages: list[str], address: str | None, show_progress: bool
) -> Location:
    study = out / STUDY_FILE
    zoo_dir = out / "zoo"
    # the study's identity first: a run killed while generating resumes as this study, never as a foreign folder
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        study, json.dumps({"config": str(config_path), "config_hash": config_hash(cfg), "stages": stages}).encode()
    )
    if zoo_complete(zoo_dir, cfg):
        print(f"symzoo: run: the zoo in {zoo_dir} is complete", file=sys.stderr)
    else:
        start = time.perf_counter()
        report = generate(config_path, zoo_dir, address, show_progress)
        if not report.ok:
            raise ZooError(f"{len(report.failed)} zoo shard(s) failed; rerun the same command to retry them")
        mark_done(zoo_dir, {"config_hash": config_hash(cfg)}, time.perf_counter() - start, describe_cluster())
    for stage in stages:
        STAGES[stage].run(zoo_dir, out / stage, cfg[stage], None, address, show_progress)
    return write_study_report(out)


def write_study_report(out: str | Location) -> Location:
    """report.md and report.html from what ``out`` holds; no training."""
    out = location(out)
    if not (out / STUDY_FILE).exists():
        raise ZooError(f"{out} is not a symzoo study (no {STUDY_FILE}); pass the --out directory of `symzoo run`")
    stages = json.loads((out / STUDY_FILE).read_text())["stages"]
    zoo = open_zoo(out / "zoo")
    _, html_path = build_report(out, zoo, stages, read_timings(out, stages))
    return html_path
