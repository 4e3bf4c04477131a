"""Shared fixtures: small real data sets, and where the offline copies of the big ones live."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import ray
import torch

from symzoo.zoo.data import load_dataset, shared_data_candidates


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def cifar_npz():
    path = next((p for p in shared_data_candidates("cifar10_jpeg.npz") if p.exists()), None)
    if path is None:
        pytest.skip("cifar10_jpeg.npz not found in ../shared/data (or $SYMZOO_SHARED_DATA); CIFAR-10 tests need it")
    return path


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for one test module (token auth on, as Ray 2.59+ starts it)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    server = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"{cmd[0]} did not start: {log.read_text()[-500:]}")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1; the environment points boto3, pyarrow and pandas at it (and at nothing
    else: fake credentials), and shortens the writer lease to 3 s."""
    boto3 = pytest.importorskip("boto3", reason="optional: pip install 'symzoo[s3]' for s3:// zoos")
    pytest.importorskip("moto.server", reason="optional: pip install 'moto[server]' (a local S3 server)")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = start_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, log)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("SYMZOO_LEASE_SECONDS", "3")
        yield boto3.client("s3")
    server.kill()
    server.wait()


@pytest.fixture
def bucket(s3) -> str:
    """A fresh bucket per test, as an ``s3://`` URL."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return f"s3://{name}"


def keys(s3, url: str) -> list[str]:
    name = url.removeprefix("s3://").split("/")[0]
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", []))


def write_zoo(out: Path, cfg: dict) -> None:
    """A zoo without Ray: every shard trained in this process, then the manifest, as generate's driver records them
    (``pipelines/local.py`` does the same)."""
    from symzoo.pipelines.manifest import finalize_manifest, prepare_manifest
    from symzoo.pipelines.shard import dataset_from, layouts_for, shard_specs, train_shard_table
    from symzoo.zoo.store import shard_path, write_shard

    data = dataset_from(cfg)
    layouts = layouts_for(cfg, data)
    shards = shard_specs(cfg)
    manifest = prepare_manifest(cfg, out, data, layouts, len(shards))
    layouts_json = {v: layout.to_json() for v, layout in layouts.items()}
    checksums = {}
    for index, specs in enumerate(shards):
        table = train_shard_table(specs, cfg, data, layouts_json)
        checksums[shard_path(out, index).name] = write_shard(out, index, table)
    finalize_manifest(out, manifest, checksums, True, len(shards))
