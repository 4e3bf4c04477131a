"""One writer per directory: a second writer is refused with the holder's name, a dead holder's lock is taken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from symzoo.errors import ZooError
from symzoo.zoo.lock import LOCK_FILE, directory_lock

CONFIG = {
    "name": "locked",
    "seed": 4,
    "data": {"name": "digits"},
    "variants": ["standard"],
    "networks": 12,  # long enough to outlast the second's start-up (imports, Ray) on a busy machine
    "hyperparameters": {"epochs": {"randint": [6, 8]}},
    "training": {"batch_size": 100, "warmup_epochs": 1, "augment": {"flip": False, "cutout": 0}},
    "execution": {"networks_per_shard": 1},
}


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    with directory_lock(tmp_path / "d", "symzoo generate"):
        info = json.loads((tmp_path / "d" / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "symzoo generate"
        refused = pytest.raises(ZooError, match=f"is being written by pid {os.getpid()} on .* `symzoo generate` since")
        with refused, directory_lock(tmp_path / "d", "symzoo metanet"):
            pass
    assert not (tmp_path / "d").exists(), "a lock that guarded nothing leaves nothing behind"


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    stale = {"host": "gone", "pid": 999999, "since": "yesterday", "command": "symzoo generate"}
    (folder / LOCK_FILE).write_text(json.dumps(stale))  # its process died: the kernel dropped its flock
    with directory_lock(folder, "symzoo generate"):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_FILE).exists() and (folder / "manifest.json").exists()


def test_two_generates_into_one_zoo_one_is_refused_the_other_completes(tmp_path):
    cfg = tmp_path / "zoo.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "symzoo.cli", "generate", str(cfg), "--out", str(out), "--no-progress"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "manifest.json").exists():
        time.sleep(0.1)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    err = second.stderr.strip().splitlines()[-1]
    assert second.returncode == 2 and f"is being written by pid {first.pid}" in err, second.stderr
    check = subprocess.run(
        [sys.executable, "-m", "symzoo.cli", "info", str(out), "--verify"], capture_output=True, text=True
    )
    assert check.returncode == 0 and "12 of 12 networks, complete" in check.stdout, check.stderr
    assert not (out / LOCK_FILE).exists()
