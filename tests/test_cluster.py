"""The shipped cluster configs parse and hold what `ray up` / KubeRay need; the dashboard tunnel opens and closes."""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
from pathlib import Path

import pytest
import yaml

from symzoo.cluster.submit import dashboard_tunnel
from symzoo.errors import SymzooError

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"
LAUNCHER_CONFIGS = sorted(p for p in CLUSTER.glob("*.yaml") if "provider" in yaml.safe_load(p.read_text()))
SECRET = re.compile(r"(aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY|AKIA[0-9A-Z]{16}|\"private_key\"|auth_token:)")


def test_every_cloud_and_onprem_provider_ships():
    types = {yaml.safe_load(p.read_text())["provider"]["type"] for p in LAUNCHER_CONFIGS}
    assert types == {"aws", "gcp", "local"}


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_configs_hold_what_ray_up_needs(path):
    cfg = yaml.safe_load(path.read_text())
    for key in ("cluster_name", "provider", "auth", "setup_commands", "head_start_ray_commands"):
        assert key in cfg, f"{path.name} lacks {key}"
    assert "worker_start_ray_commands" in cfg and cfg["auth"]["ssh_user"]
    if cfg["provider"]["type"] == "local":
        assert cfg["provider"]["head_ip"] and cfg["provider"]["worker_ips"]
    else:
        assert cfg["head_node_type"] in cfg["available_node_types"]
        assert all("node_config" in node for node in cfg["available_node_types"].values())
    extras = [re.search(r"symzoo\[([a-z0-9,]+)\]", c) for c in cfg["setup_commands"]]
    assert any(m and "cluster" in m.group(1).split(",") for m in extras), "the head serves the job API: ray[default]"
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c), "token auth stays on"
    assert not any("--dashboard-host" in c for c in starts), "the dashboard stays on the head's localhost"


@pytest.mark.parametrize("path", sorted(CLUSTER.glob("*.yaml")) + [CLUSTER / "Dockerfile"], ids=lambda p: p.name)
def test_no_secret_is_committed(path):
    assert not SECRET.search(path.read_text())


def test_the_rayjob_runs_the_image_the_dockerfile_builds():
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["rayClusterSpec"]["authOptions"]["mode"] == "token"
    assert job["spec"]["entrypoint"].startswith("symzoo ")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"-t {head} ." in dockerfile and 'pip install --no-cache-dir -e ".[cluster,s3,gcs]"' in dockerfile


def fake_ray(tmp_path: Path, body: str, monkeypatch) -> None:
    """A `ray` on PATH that runs ``body`` (Python) with sys.argv as `ray` would get it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "ray"
    script.write_text(f"#!{sys.executable}\nimport socket, sys, time\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_the_tunnel_yields_a_local_address_and_closes(tmp_path, monkeypatch):
    fake_ray(
        tmp_path,
        "port = int(sys.argv[sys.argv.index('--port') + 1])\n"
        "server = socket.create_server(('127.0.0.1', port))\ntime.sleep(60)",
        monkeypatch,
    )
    (tmp_path / "c.yaml").write_text("cluster_name: c\n")
    with dashboard_tunnel(str(tmp_path / "c.yaml")) as address:
        port = int(address.rsplit(":", 1)[1])
        assert address.startswith("http://127.0.0.1:")
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_tunnel_that_fails_names_its_cause(tmp_path, monkeypatch):
    fake_ray(
        tmp_path, "sys.stderr.write(\"ModuleNotFoundError: No module named 'boto3'\\n\"); sys.exit(1)", monkeypatch
    )
    (tmp_path / "c.yaml").write_text("cluster_name: c\n")
    with (
        pytest.raises(SymzooError, match="needs the cloud SDK boto3 .AWS.: pip install boto3"),
        dashboard_tunnel(str(tmp_path / "c.yaml")),
    ):
        pass
