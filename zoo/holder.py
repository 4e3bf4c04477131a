"""Who holds a directory's lock or an object store's lease: the record written into it, and the one-line message
a second writer gets. Shared by ``zoo.lock`` (local ``flock``) and ``zoo.lease`` (object-store lease)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from symzoo.errors import ZooError
from symzoo.zoo.location import Location

LOCK_FILE = ".lock"


def kernel_identity() -> str | None:
    """This kernel's boot and this process's pid namespace, ``BOOT_ID:PIDNS_INODE``; None where unknown (not Linux).

    A (host name, pid) pair does not name a process: containers commonly share a host name, and each pid namespace
    counts from 1. Two records with the same kernel identity name pids of one pid namespace of one running kernel,
    so "no such pid" there means the process is gone."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}:{namespace}"


def holder_record(command: str) -> dict:
    """Who holds a lock (or an object store's lease): recorded in it for the message a second writer gets."""
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    record = {"host": socket.gethostname(), "pid": os.getpid(), "since": since, "command": command}
    return record | {"kernel": kernel_identity()}


def describe_holder(record: object) -> str:
    try:
        return f"pid {record['pid']} on {record['host']} (running `{record['command']}` since {record['since']})"
    except (KeyError, TypeError):
        return "another process"


def busy(folder: Location, record: object) -> ZooError:
    return ZooError(f"{folder} is being written by {describe_holder(record)}; wait for it to finish, or stop it first")
