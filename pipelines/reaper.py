"""Stops what a local Ray cluster left behind when the command that started it was killed (``kill -9``).

Ray's raylet and GCS die with their driver, but some of its agents (the dashboard agent, the runtime-env agent)
outlive it, and each killed run would add two more. ``symzoo`` starts this watchdog beside every local cluster it
starts: it waits for the driver to end, then stops every process that still holds a file of that cluster's
session folder open. Only that session's processes: another cluster's, or a cluster the user started, are never
touched. Linux only (it reads ``/proc``); elsewhere it exits at once.

    python -m symzoo.pipelines.reaper DRIVER_PID SESSION_DIR
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 3.0  # Ray's own shutdown first; then SIGTERM, and SIGKILL for what is still there after this long


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_processes(session: str) -> list[int]:
    """Every process but this one with a file open under ``session`` (its logs, sockets)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
            if any(os.readlink(fd).startswith(session) for fd in fds):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def stop(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):  # gone already
            os.kill(pid, sig)


def main(argv: list[str]) -> None:
    driver, session = int(argv[0]), argv[1].rstrip("/") + "/"
    if not Path("/proc").is_dir():
        return
    while alive(driver):
        time.sleep(POLL_S)
    time.sleep(GRACE_S)
    left = session_processes(session)
    stop(left, signal.SIGTERM)
    deadline = time.time() + GRACE_S
    while time.time() < deadline and any(alive(p) for p in left):
        time.sleep(POLL_S)
    stop([p for p in left if alive(p)], signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1:])
