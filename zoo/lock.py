"""One writer per directory: an exclusive lock held for a whole run of a stage.

On a local disk the lock is an ``flock`` on ``DIR/.lock``, which also records the holder (host, pid, start time)
for the message a second writer gets. The kernel drops an ``flock`` when its process dies, however it dies, so a
lock left by a killed run is stale by construction and the next run simply takes it over. On an object store it is
a lease object (``zoo/lease.py``).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from symzoo.zoo.holder import LOCK_FILE, busy, holder_record
from symzoo.zoo.lease import object_lease
from symzoo.zoo.location import Location, ObjectPath


def holds_anything(folder: Location) -> bool:
    """True when ``folder`` exists and holds anything besides a lock file."""
    return folder.is_dir() and any(p.name != LOCK_FILE for p in folder.iterdir())


def _holder(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def directory_lock(folder: Location, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the ``with`` block; a live holder gets a one-line ``ZooError`` naming it.

    On an object store (no ``flock`` there) the lock is a lease object: ``zoo/lease.py``.
    """
    if isinstance(folder, ObjectPath):
        with object_lease(folder, command):
            yield
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise busy(folder, _holder(path)) from None
        try:  # the file may have been removed by the holder we waited on: lock the one that is there now
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder_record(command)).encode())
    try:
        yield
    finally:
        os.unlink(path)  # before releasing: nobody can lock a file that is about to disappear
        os.close(fd)
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a run that wrote nothing leaves nothing
