"""The one runner behind every stage: for each work unit whose output is missing, run a Ray task and record its
result atomically; finally report.

Resume, retries, progress and error reporting therefore behave the same in generation and every analysis stage.
A task either returns its result to the driver (through Ray's object store), which writes it, or, where workers
reach the output's storage, writes it itself and returns only a ``Written`` receipt. At most a few tasks per free
slot are in flight, so the driver's memory follows the work unit, not the number of units.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from tqdm import tqdm

from symzoo.errors import ZooError
from symzoo.pipelines.units import WorkUnit
from symzoo.zoo.location import Location


@dataclass
class StageReport:
    done: list[int] = field(default_factory=list)  # units finished in this run
    skipped: list[int] = field(default_factory=list)  # units whose output already existed
    quarantined: list[Location] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # unit -> first line of the error
    checksums: dict[str, str] = field(default_factory=dict)  # output file name -> sha256

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class Written:
    """A task's receipt for an output it wrote itself (atomically, as the driver would have): its sha256."""

    checksum: str


ZOO_ERROR = "ZooError: "  # a failure's text that is our own one-line error, as the task raised it
IN_FLIGHT_PER_SLOT = 2  # tasks queued per slot the cluster has: one running, one ready to start


@ray.remote(num_cpus=0)
class Progress:
    """Items finished per unit; set (not added) so a retried task does not count twice."""

    def __init__(self) -> None:
        self.per_unit: dict[int, int] = {}

    def set(self, unit: int, n: int) -> None:
        self.per_unit[unit] = n

    def total(self) -> int:
        return sum(self.per_unit.values())


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with the fix, where ``ray.init`` would wait minutes on a HOST:PORT nobody serves."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        raise ZooError(
            f"no Ray cluster answers at {address}; start one (ray start --head) or fix --address / RAY_ADDRESS"
        ) from None


AUTH_REFUSALS = ("InvalidAuthToken", "UNAUTHENTICATED", "Unauthenticated", "authentication token")


class HeldStderr:
    """What the process wrote to file descriptor 2 while held (C++ logs included), for ``stderr_held``."""

    def __init__(self, file) -> None:
        self.file = file
        self.keep = False  # set before re-raising an error that is not ours: the held text is then shown

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read().decode(errors="replace")


@contextmanager
def stderr_held() -> Iterator[HeldStderr]:
    """Hold file descriptor 2 in a temporary file for the block, then pass it through unless the block raised
    an error that says it all in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as file:
        os.dup2(file.fileno(), 2)
        held, finished = HeldStderr(file), False
        try:
            yield held
            finished = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if finished or held.keep:
                os.write(2, held.text().encode())


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: a stage stops as on Ctrl-C (finished units stay written, nothing half
    written is kept) and its ``finally`` blocks run, so a rerun resumes."""


_received: list[int] = []  # SIGTERM seen: Ray's get() re-raises a plain KeyboardInterrupt in its place


def _raise_terminated(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Terminated()


def was_terminated(error: BaseException) -> bool:
    """Whether an interruption came from SIGTERM (whatever Ray made of the exception on its way up)."""
    return isinstance(error, Terminated) or bool(_received)


def stop_on_sigterm() -> None:
    """Make SIGTERM raise ``Terminated``. Ray replaces the handler while a local cluster starts (its own ends the
    process within seconds) and, once up, leaves one that aborts with a C++ stack dump: ours goes back after."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local one (token auth stays on)."""
    stop_on_sigterm()
    try:
        _connect(address, num_cpus)
    finally:
        stop_on_sigterm()


_JOINED: list[str] = []  # the address of a cluster this process joined (one it did not start), if any


def _connect(address: str | None, num_cpus: int | None) -> None:
    address = address or os.environ.get("RAY_ADDRESS")
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        print(
            "symzoo: warning: RAY_AUTH_MODE=disabled: this Ray cluster runs WITHOUT token authentication; anyone who "
            "can reach its ports can run code on it",
            file=sys.stderr,
        )
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return
    if address:
        _JOINED[:] = [address]
        with stderr_held() as held:  # Ray's core logs each refused retry; one line says what they mean
            try:
                ray.init(address=address, log_to_driver=True)
            except Exception as e:
                refused = any(word in held.text() + str(e) for word in AUTH_REFUSALS)
                why = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
                if refused:
                    raise ZooError(
                        f"the Ray cluster at {address} refused this client's token ({why}); set RAY_AUTH_TOKEN to the "
                        "cluster's token (`ray get-auth-token` on the head) and keep RAY_AUTH_MODE=token"
                    ) from None
                if isinstance(e, ConnectionError):
                    raise ZooError(
                        f"no Ray cluster at --address {address} ({why}); start one (ray start --head) or leave "
                        "--address out for a local cluster"
                    ) from None
                held.keep = True
                raise
    else:
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
            start_reaper()
        except Exception as e:  # Ray raises bare Exceptions (e.g. "timed out during startup" on a loaded machine)
            ray.shutdown()  # whatever half-started is stopped, so a retry starts clean
            why = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            raise ZooError(
                f"Ray could not start a local cluster ({why}); rerun when the machine is less busy, or start one "
                "yourself (ray start --head) and pass --address auto"
            ) from None


def start_reaper() -> None:
    """Beside a local cluster this process started: a watchdog that stops what the cluster leaves behind if this
    process is killed (``pipelines/reaper.py``); it ends by itself once this process has."""
    node = getattr(ray._private.worker, "_global_node", None)  # Ray's own node handle: no public API names it
    if node is None:
        return
    subprocess.Popen(
        [sys.executable, "-m", "symzoo.pipelines.reaper", str(os.getpid()), node.get_session_dir_path()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in this process's group: a kill of the group leaves the watchdog to clean up
    )


def sort_units(
    units: list[WorkUnit],
    check_output: Callable[[WorkUnit], None],
    quarantine_output: Callable[[WorkUnit], Location],
) -> tuple[StageReport, list[WorkUnit]]:
    """Units whose output exists and passes ``check_output`` are skipped; a corrupt output (``ZooError``) is moved
    aside and its unit redone, never read. Returns the report so far and the units to run. No Ray in here."""
    report = StageReport()
    pending: list[WorkUnit] = []
    for unit in units:
        if unit.output.exists():
            try:
                check_output(unit)
                report.skipped.append(unit.index)
                continue
            except ZooError as e:
                moved = quarantine_output(unit)
                report.quarantined.append(moved)
                print(f"symzoo: warning: {e}; moved to {moved}; running it again", file=sys.stderr)
        pending.append(unit)
    return report, pending


def run_stage(
    units: list[WorkUnit],
    task: Callable[..., Any],
    task_args: tuple,
    check_output: Callable[[WorkUnit], None],
    write_output: Callable[[WorkUnit, Any], str],
    quarantine_output: Callable[[WorkUnit], Location],
    resources: dict[str, Any],
    desc: str,
    show_progress: bool = True,
    item: str = "net",
    prepare: Callable[[WorkUnit], Any] | None = None,
) -> StageReport:
    """Run ``task(unit.payload, *task_args, progress, unit.index)`` as a Ray task for every unit without a sound
    output."""
    report, pending = sort_units(units, check_output, quarantine_output)
    return run_pending(
        units, pending, report, task, task_args, write_output, resources, desc, show_progress, item, prepare
    )


def get_results(refs: list) -> list:
    """``ray.get`` of tasks outside the unit runner: a task's own ``ZooError`` (bad input it found: a damaged shard)
    comes back as that one line, not as Ray's error text with the worker's traceback."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, ZooError):
            raise ZooError(str(e.cause)) from None
        raise


def check_fits(resources: dict[str, Any], desc: str) -> None:
    """A task that no node can hold waits forever on a fixed cluster (Ray's scheduler keeps it pending for an
    autoscaler): on a local cluster that is an error, one line saying what the nodes have; on a joined cluster,
    whose autoscaler may add such a node, a warning."""
    cpus, gpus = resources.get("num_cpus") or 0, resources.get("num_gpus") or 0
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        return
    have = "; ".join(sorted({f"{r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs" for r in nodes})) or "no node"
    message = (
        f"each {desc} task asks for {cpus:g} CPUs and {gpus:g} GPUs, and no node of this Ray cluster has that many "
        f"(nodes: {have}); set cpus_per_task / gpus_per_task to what a node has (in the config's execution section "
        "for generate, in the stage's section for an analysis stage)"
    )
    if not _JOINED:
        raise ZooError(message)
    print(f"symzoo: warning: {message}; waiting for the cluster's autoscaler to add such a node", file=sys.stderr)


def slots(resources: dict[str, Any]) -> int:
    """How many of these tasks the cluster runs at once now (at least 1: an autoscaler may add nodes)."""
    have = ray.cluster_resources()
    fits = [have.get("CPU", 0) / resources["num_cpus"]] if resources.get("num_cpus") else []
    fits += [have.get("GPU", 0) / resources["num_gpus"]] if resources.get("num_gpus") else []
    return max(1, int(min(fits))) if fits else max(1, int(have.get("CPU", 1)))


def run_pending(
    units: list[WorkUnit],
    pending: list[WorkUnit],
    report: StageReport,
    task: Callable[..., Any],
    task_args: tuple,
    write_output: Callable[[WorkUnit, Any], str],
    resources: dict[str, Any],
    desc: str,
    show_progress: bool = True,
    item: str = "net",
    prepare: Callable[[WorkUnit], Any] | None = None,
) -> StageReport:
    """Run the ``pending`` units (``IN_FLIGHT_PER_SLOT`` per slot at a time) and record each result as it comes:
    ``write_output`` stores a returned result and gives its checksum; a ``Written`` receipt is recorded as is.
    ``prepare(unit)``, when given, makes the payload sent, just before it is sent (a driver that reads a unit's
    weights for workers that cannot therefore holds only the units in flight)."""
    total = sum(u.size for u in units)
    already = sum(u.size for u in units if u.index in report.skipped)
    if not pending:
        return report
    check_fits(resources, desc)
    progress = Progress.remote()
    remote = ray.remote(task).options(**resources)  # a plain function: stage modules import without Ray
    queue = list(pending)
    running: dict[Any, WorkUnit] = {}
    bar = tqdm(total=total, initial=already, desc=desc, unit=f" {item}", disable=not show_progress, file=sys.stderr)
    finished_items = 0
    try:
        while running or queue:
            limit = IN_FLIGHT_PER_SLOT * slots(resources)
            while queue and len(running) < limit:
                unit = queue.pop(0)
                payload = prepare(unit) if prepare else unit.payload
                running[remote.remote(payload, *task_args, progress, unit.index)] = unit
                payload = None
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                unit = running.pop(ref)
                try:
                    result = ray.get(ref)
                    written = isinstance(result, Written)
                    report.checksums[unit.output.name] = result.checksum if written else write_output(unit, result)
                    report.done.append(unit.index)
                    finished_items += unit.size
                except (ray.exceptions.RayError, OSError) as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, ZooError):  # bad input the task found (a damaged shard): named as such
                        report.failed[unit.index] = f"{ZOO_ERROR}{cause}"
                    else:
                        report.failed[unit.index] = str(e).strip().splitlines()[-1][:300]
                result = None  # the driver keeps no finished result: its memory follows the units in flight
            in_flight = 0
            try:
                in_flight = ray.get(progress.total.remote())
            except ray.exceptions.RayActorError:  # its node left: tasks submitted from now on get a new one
                progress = Progress.remote()
                print("symzoo: warning: the progress actor died; counting on a new one", file=sys.stderr)
            bar.n = already + max(finished_items, in_flight)
            bar.refresh()
    finally:
        bar.close()
        for ref in running:
            ray.cancel(ref, force=True)
        ray.kill(progress)
    return report


def workers_reach(path: Location, workers_write: bool | str = "auto") -> bool:
    """Whether Ray workers read or write ``path`` themselves (generate's ``workers_write``, the analysis stages'
    ``workers_read``). ``auto``: where they share the driver's disk (a local path on a one-node cluster). ``true``
    also trusts an object store or a filesystem every node mounts (workers then need the store's credentials and
    endpoint); ``false``: the driver reads and writes everything."""
    from symzoo.zoo.location import ObjectPath

    if workers_write != "auto":
        return bool(workers_write)
    if isinstance(path, ObjectPath):
        return False
    alive = {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}
    return len(alive) == 1 and ray.util.get_node_ip_address() in alive


def analysis_resources(cpus_per_task: float, gpus_per_task: float | str, gpu_share: float) -> dict[str, Any]:
    """Ray resources of an analysis task: ``gpus_per_task: auto`` takes ``gpu_share`` of a GPU where the cluster
    has GPUs and none otherwise."""
    gpus = gpus_per_task
    if gpus == "auto":
        gpus = gpu_share if ray.cluster_resources().get("GPU", 0) > 0 else 0
    return {"num_cpus": cpus_per_task, "num_gpus": gpus, "max_retries": 2}


def run_unit_files(
    units: list[WorkUnit],
    task: Callable[..., Any],
    task_args: tuple,
    out: Location,
    key_of: Callable[[WorkUnit], str],
    resources: dict[str, Any],
    desc: str,
    show_progress: bool,
    item: str,
    prepare: Callable[[WorkUnit], Any] | None = None,
) -> StageReport:
    """An analysis stage's units: each task returns a DataFrame, stored as the unit's Parquet file with a ``key``
    column naming the unit (so a file is recognised as the unit's own). Failures end the stage with the fix."""
    from symzoo.pipelines.outputs import check_unit_file, write_parquet
    from symzoo.zoo.store import quarantine

    def check(unit: WorkUnit) -> None:
        check_unit_file(unit.output, "key", key_of(unit))

    def write(unit: WorkUnit, frame) -> str:
        return write_parquet(unit.output, frame.assign(key=key_of(unit)))

    report = run_stage(
        units,
        task,
        task_args,
        check,
        write,
        lambda u: quarantine(out, u.output),
        resources,
        desc,
        show_progress,
        item,
        prepare,
    )
    if not report.ok:
        ours = [e for e in report.failed.values() if e.startswith(ZOO_ERROR)]
        if ours:  # a damaged shard or the like: retrying will not help, its own message says what will
            raise ZooError(ours[0].removeprefix(ZOO_ERROR))
        index, error = next(iter(report.failed.items()))
        first = next(u for u in units if u.index == index)
        raise ZooError(
            f"{len(report.failed)} {desc} unit(s) failed (first: {key_of(first)}: {error}); "
            "rerun the same command to retry them"
        )
    return report


def describe_cluster() -> str:
    """Where a stage's tasks ran, for its report: the cluster's nodes, CPUs and GPUs (a stage that ran no task,
    in this process)."""
    if not ray.is_initialized():
        return "this process (no Ray tasks)"
    res = ray.cluster_resources()
    gpus = f", {res['GPU']:g} GPUs" if res.get("GPU") else ""
    return f"Ray, {len(ray.nodes())} node(s), {res.get('CPU', 0):g} CPUs{gpus}"


def device_for_task() -> torch.device:
    return torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")
