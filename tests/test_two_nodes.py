"""A real two-node Ray cluster on 127.0.0.1 with token authentication: `symzoo submit` through its job API, a
worker node killed mid-run, and submissions without the token or with a wrong one refused."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, keys

from symzoo.zoo.store import MODELS, open_zoo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ray") is None, reason="the `ray` command is not installed"),
    pytest.mark.skipif(
        importlib.util.find_spec("aiohttp") is None,
        reason="a head with a job API needs ray[default]: pip install -e .[cluster]",
    ),
]

CONFIG = """name: two_nodes
seed: 3
data: {name: digits}
model: {arch: resnet8}
variants: [standard, w_asym]
networks: 12
hyperparameters: {epochs: {randint: [4, 6]}}
training: {batch_size: 128, warmup_epochs: 1, augment: {flip: false, translate: 1, cutout: 0}}
execution: {networks_per_shard: 2, cpus_per_task: 1, max_retries: 3}
"""


def ray_env(home: Path, token: str | None) -> dict[str, str]:
    """A client's environment: its own HOME (no ~/.ray/auth_token of this machine's user) and the given token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"HOME": str(home), "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    return env


@pytest.fixture
def two_nodes(tmp_path):
    """A head with 1 CPU and a worker node with 2, both on 127.0.0.1, sharing a fresh token."""
    token = secrets.token_hex(32)
    home = tmp_path / "home"
    home.mkdir()
    env = ray_env(home, token)
    gcs, dashboard, worker_port = free_port(), free_port(), free_port()
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = ["ray", "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"]
    head += ["--num-cpus=1", "--include-dashboard=true", *common]
    worker = ["ray", "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=2", f"--node-manager-port={worker_port}"]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([*worker, *common], env=env, check=True, capture_output=True, timeout=120)
        yield {
            "address": f"http://127.0.0.1:{dashboard}",
            "gcs": f"127.0.0.1:{gcs}",
            "token": token,
            "home": home,
            "worker_port": worker_port,
        }
    finally:  # `ray stop` has no way to name one cluster: it stops every Ray instance of the machine (README)
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def raylet_pid(node_manager_port: int) -> int:
    """The raylet of the node started with ``node_manager_port``."""
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if cmd and cmd[0].endswith(b"raylet") and f"--node_manager_port={node_manager_port}".encode() in cmd:
            return int(proc.name)
    raise AssertionError(f"no raylet with node manager port {node_manager_port}")


def symzoo_submit(cluster: dict, args: list[str], token: str | None, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "symzoo.cli", "submit", "--address", cluster["address"], *args]
    return subprocess.run(cmd, env=ray_env(cluster["home"], token), capture_output=True, text=True, **kw)


FORWARDER = """#!{python}
# A stand-in for `ray dashboard CLUSTER.yaml --port P`: the SSH tunnel, as a TCP forwarder from 127.0.0.1:P to the
# head's dashboard (the real command reaches the head over SSH; the job API sees the same bytes).
import socket, sys, threading
port = int(sys.argv[sys.argv.index("--port") + 1])
server = socket.create_server(("127.0.0.1", port))

def pipe(a, b):
    while data := a.recv(65536):
        b.sendall(data)
    b.close()

while True:
    client, _ = server.accept()
    upstream = socket.create_connection(("127.0.0.1", {dashboard_port}))
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
"""


def test_joining_the_cluster_without_its_token_is_one_line(two_nodes, tmp_path):
    """--address to a token-protected GCS without the token: one line naming the token, not Ray's retry log."""
    config, out, home = tmp_path / "two_nodes.yaml", tmp_path / "zoo", tmp_path / "elsewhere"
    config.write_text(CONFIG)
    home.mkdir()
    for token in (None, "0" * 64):
        done = subprocess.run(
            [sys.executable, "-m", "symzoo.cli", "generate", str(config), "--out", str(out), "--no-progress"]
            + ["--address", two_nodes["gcs"]],
            env=ray_env(home, token),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused this client's token" in lines[0], done.stderr
    assert not out.exists()


def test_a_job_survives_a_killed_worker_node_and_the_token_guards_the_job_api(two_nodes, tmp_path):
    config, out = tmp_path / "two_nodes.yaml", tmp_path / "zoo"
    config.write_text(CONFIG)
    stage = ["generate", str(config), "--out", str(out)]

    for token, why in ((None, "no token"), ("0" * 64, "a wrong token")):
        refused = symzoo_submit(two_nodes, stage, token, timeout=120)
        assert refused.returncode == 2, (why, refused.stdout, refused.stderr)
        assert "wants its auth token" in refused.stderr or "auth" in refused.stderr.lower(), (why, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1, (why, refused.stderr)
    assert not out.exists(), "a refused submission runs nothing"

    follower = subprocess.Popen(
        [sys.executable, "-m", "symzoo.cli", "submit", "--address", two_nodes["address"], "--wait", *stage],
        env=ray_env(two_nodes["home"], two_nodes["token"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while len(list((out / MODELS).glob("part-*.parquet"))) < 2:  # under way: some shards written, most to come
        assert time.monotonic() < deadline and follower.poll() is None, "the job never wrote its first shards"
        time.sleep(0.2)
    written_before_kill = len(list((out / MODELS).glob("part-*.parquet")))
    os.kill(raylet_pid(two_nodes["worker_port"]), signal.SIGKILL)
    output, _ = follower.communicate(timeout=600)
    assert follower.returncode == 0, output
    assert "submitted job symzoo-generate-" in output and "trained" in output, output
    assert written_before_kill < 12, "the node was killed while shards were still to come"
    assert "will be retried" in output, "a shard that ran on the killed node was retried elsewhere"

    zoo = open_zoo(out)
    ids = zoo.frame["model_id"].tolist()
    assert zoo.complete and sorted(ids) == list(range(24)), "every network exactly once"
    again = symzoo_submit(two_nodes, stage, two_nodes["token"], timeout=120)
    assert again.returncode == 0 and "already ran and succeeded as job symzoo-generate-" in again.stdout, again

    # an analysis stage through --cluster: the dashboard reached through the tunnel `ray dashboard` opens
    bindir = tmp_path / "bin"
    bindir.mkdir()
    dashboard_port = int(two_nodes["address"].rsplit(":", 1)[1])
    (bindir / "ray").write_text(FORWARDER.format(python=sys.executable, dashboard_port=dashboard_port))
    (bindir / "ray").chmod(0o755)
    (tmp_path / "cluster.yaml").write_text("cluster_name: local-test\n")
    env = ray_env(two_nodes["home"], two_nodes["token"]) | {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    mli = ["mli", str(out), "--out", str(tmp_path / "mli"), "--alphas", "3", "--loss", "clean"]
    cmd = [sys.executable, "-m", "symzoo.cli", "submit", "--cluster", str(tmp_path / "cluster.yaml"), "--wait", *mli]
    via_tunnel = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert via_tunnel.returncode == 0, via_tunnel.stdout + via_tunnel.stderr
    assert "submitted job symzoo-mli-" in via_tunnel.stdout and "ray dashboard" in via_tunnel.stdout
    assert (tmp_path / "mli" / "done.json").exists() and (tmp_path / "mli" / "table.md").exists()


SMALL = """name: to_s3
seed: 5
data: {name: digits}
variants: [standard]
networks: 4
hyperparameters: {epochs: {randint: [2, 3]}}
training: {batch_size: 128, warmup_epochs: 1, augment: {flip: false, cutout: 0}}
execution: {networks_per_shard: 2, cpus_per_task: 1}
"""


def test_a_job_writes_its_zoo_to_s3_and_the_laptop_reads_it_there(s3, bucket, two_nodes, tmp_path):
    """The cluster's nodes (started with the object store's endpoint and credentials in their environment, as an
    instance role would give them) write the zoo; the submitting machine opens the same zoo, with no copy."""
    config = tmp_path / "to_s3.yaml"
    config.write_text(SMALL)
    url = f"{bucket}/zoos/to_s3"
    done = symzoo_submit(two_nodes, ["--wait", "generate", str(config), "--out", url], two_nodes["token"], timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"-> {url}" in done.stdout and "trained 4 networks" in done.stdout
    zoo = open_zoo(url)
    assert zoo.complete and sorted(zoo.frame["model_id"]) == [0, 1, 2, 3]
    assert not [k for k in keys(s3, url) if k.endswith(".lock") or ".tmp-" in k]
