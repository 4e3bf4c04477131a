"""The generic stage runner: retries after a worker dies, reports a unit that keeps failing, skips finished ones."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import ray

from symzoo.errors import ZooError
from symzoo.pipelines.stage import WorkUnit, run_stage

# The runner submits plain functions; Ray pickles a function of an importable module by reference, and workers
# cannot import a test module: these travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def crash_once(payload: dict, progress, unit: int) -> str:
    """Kills its own worker process on the first attempt (as a node or OOM failure would), then succeeds."""
    marker = Path(payload["marker"])
    if payload.get("always_crash") or not marker.exists():
        marker.touch()
        os._exit(1)
    progress.set.remote(unit, 1)
    return f"result {unit}"


def _run(units, tmp_path, retries=2):
    written = {}

    def check(unit):
        if unit.output.read_text() == "corrupt":
            raise ZooError(f"corrupt shard {unit.output}")

    def write(unit, result):
        unit.output.write_text(result)
        written[unit.index] = result
        return "sha"

    def quarantine(unit):
        dest = tmp_path / f"q-{unit.output.name}"
        unit.output.rename(dest)
        return dest

    report = run_stage(
        units,
        crash_once,
        (),
        check,
        write,
        quarantine,
        {"num_cpus": 1, "max_retries": retries},
        desc="test",
        show_progress=False,
    )
    return report, written


def test_a_dead_worker_is_retried_and_finished_units_are_skipped(ray_cluster, tmp_path):
    (tmp_path / "out-1").write_text("done before")
    (tmp_path / "out-2").write_text("corrupt")
    units = [WorkUnit(i, tmp_path / f"out-{i}", {"marker": str(tmp_path / f"m{i}")}, 1) for i in range(3)]
    report, written = _run(units, tmp_path)
    assert report.ok and sorted(report.done) == [0, 2] and report.skipped == [1]
    assert written == {0: "result 0", 2: "result 2"}
    assert (tmp_path / "out-1").read_text() == "done before"
    assert report.quarantined == [tmp_path / "q-out-2"] and (tmp_path / "q-out-2").read_text() == "corrupt"


def test_a_unit_that_keeps_failing_is_reported_not_fatal(ray_cluster, tmp_path):
    units = [
        WorkUnit(0, tmp_path / "a", {"marker": str(tmp_path / "m0"), "always_crash": True}, 1),
        WorkUnit(1, tmp_path / "b", {"marker": str(tmp_path / "m1")}, 1),
    ]
    report, written = _run(units, tmp_path, retries=1)
    assert not report.ok and list(report.failed) == [0] and written == {1: "result 1"}
    assert not (tmp_path / "a").exists()


def kill_progress_then_work(payload: dict, progress, unit: int) -> str:
    """Kills the run's progress actor (as an OOM kill of that process would), then reports to it anyway."""
    ray.kill(progress)
    time.sleep(1.5)  # the driver polls the dead actor meanwhile
    progress.set.remote(unit, 1)
    return f"result {unit}"


def test_a_dead_progress_actor_loses_the_bar_not_the_run(ray_cluster, tmp_path, capsys):
    # more units than are in flight at once: those submitted after a death get a live actor (a two-node run whose
    # progress actor died with its node once handed later tasks none, and they failed)
    units = [WorkUnit(i, tmp_path / f"out-{i}", {}, 1) for i in range(6)]
    written = {}

    def write(unit, result):
        unit.output.write_text(result)
        written[unit.index] = result
        return "sha"

    report = run_stage(
        units, kill_progress_then_work, (), lambda u: None, write, None, {"num_cpus": 1}, "test", show_progress=False
    )
    assert report.ok and written == {i: f"result {i}" for i in range(6)}
    assert "the progress actor died" in capsys.readouterr().err


def test_an_address_without_a_cluster_is_one_line_with_the_fix(monkeypatch):
    from symzoo.pipelines import stage

    def no_cluster(**kwargs):  # what ray.init(address="auto") raises when no cluster runs on this machine
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.")

    monkeypatch.setattr(stage.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(stage.ray, "init", no_cluster)
    with pytest.raises(ZooError, match="no Ray cluster at --address auto .Could not find.*; start one .ray start"):
        stage.connect("auto")


def sleepy_unit(payload: dict, progress, unit: int):
    """A unit that takes a moment; with ``payload["receipt"]`` it wrote its output itself and says so."""
    from symzoo.pipelines.stage import Written

    time.sleep(0.05)
    return Written(f"receipt-{unit}") if payload.get("receipt") else f"result-{unit}"


class CountingTask:
    """Stands in for ``ray.remote`` in the runner: ``sleepy_unit`` as ``run_pending`` submits it, recording at every
    submission how many submitted units the driver has not yet written (``taken`` is counted by the test's
    ``write_output``)."""

    def __init__(self) -> None:
        self.submitted = self.taken = self.most_outstanding = 0
        self.real_remote = ray.remote

    def __call__(self, function):  # ray.remote(function)
        self.function = self.real_remote(function)
        return self

    def options(self, **resources):
        self.inner = self.function.options(**resources)
        return self

    def remote(self, *args):
        self.submitted += 1
        self.most_outstanding = max(self.most_outstanding, self.submitted - self.taken)
        return self.inner.remote(*args)


def test_in_flight_tasks_are_bounded(ray_cluster, tmp_path, monkeypatch):
    from symzoo.pipelines import stage
    from symzoo.pipelines.stage import IN_FLIGHT_PER_SLOT, StageReport, run_pending, slots

    task = CountingTask()
    units = [WorkUnit(i, tmp_path / f"u{i}", {}, 1) for i in range(30)]

    def write(unit, result):
        task.taken += 1
        return f"sha-{unit.index}"

    resources = {"num_cpus": 1, "num_gpus": 0, "max_retries": 0}
    monkeypatch.setattr(stage.ray, "remote", task)
    report = run_pending(units, units, StageReport(), sleepy_unit, (), write, resources, "t", False)
    monkeypatch.undo()
    assert task.submitted == 30 and sorted(report.done) == list(range(30))
    assert task.most_outstanding <= IN_FLIGHT_PER_SLOT * slots(resources) == 4  # 2 CPUs, 1 per task


def test_a_unit_that_wrote_its_own_output_is_recorded_by_its_receipt(ray_cluster, tmp_path):
    from symzoo.pipelines.stage import StageReport, run_pending

    units = [WorkUnit(i, tmp_path / f"u{i}", {"receipt": i % 2 == 1}, 1) for i in range(6)]
    written = []

    def write(unit, result):
        written.append(result)
        return f"sha-{unit.index}"

    resources = {"num_cpus": 1, "num_gpus": 0, "max_retries": 0}
    report = run_pending(units, units, StageReport(), sleepy_unit, (), write, resources, "t", False)
    assert sorted(written) == ["result-0", "result-2", "result-4"]  # the driver wrote only what came back
    assert report.checksums == {f"u{i}": f"receipt-{i}" if i % 2 else f"sha-{i}" for i in range(6)}


def raise_zoo_error() -> None:
    raise ZooError("corrupt file part-00001.parquet (a page's checksum); rerun `symzoo generate`")


def test_a_tasks_own_error_comes_back_as_one_line_not_rays_traceback(ray_cluster):
    """A damaged shard met by a task outside the unit runner (the metanet cache): its one line, not Ray's text."""
    from symzoo.pipelines.stage import get_results

    with pytest.raises(ZooError) as raised:
        get_results([ray.remote(raise_zoo_error).remote()])
    assert str(raised.value) == "corrupt file part-00001.parquet (a page's checksum); rerun `symzoo generate`"
