"""``symzoo submit``: send a stage (e.g. ``generate CONFIG``) to a Ray cluster as a Ray job.

The stage's inputs are validated here first, so a bad config fails on the laptop, not after an upload. The
cluster is named by its dashboard address or by a cluster-launcher YAML; with a YAML the job goes through an SSH
tunnel (``ray dashboard``), so the head's dashboard and job API listen on its localhost only. This checkout
travels as the job's working directory; token authentication is Ray's own (``RAY_AUTH_TOKEN`` or
``~/.ray/auth_token``, as ``ray get-auth-token`` writes it).
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from symzoo.errors import SymzooError

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES = ("generate", "run", "metanet", "mli", "lmc")
UPLOAD_EXCLUDES = [".git", "zoos", "runs", "data", "*.parquet", "*.npy", "*.npz", "__pycache__", ".pytest_cache"]
UPLOAD_EXCLUDES += [".ruff_cache", ".device_data"]


def check_stage_args(stage_args: list[str]) -> None:
    """Everything about a stage's arguments that can be checked on the laptop: the flags parse, a config is a
    valid zoo config, a stage's options are valid. (A zoo path names a directory on the cluster: not checked.)"""
    from symzoo.cli import build_parser
    from zoo.config import load_config

    try:
        args = build_parser().parse_args(stage_args)
    except SystemExit:
        raise SymzooError(
            f"submit: `symzoo {' '.join(stage_args)}` does not parse; see symzoo {stage_args[0]} -h"
        ) from None
    if stage_args[0] in ("generate", "run"):
        load_config(args.config)
        return
    from analysis.options import resolve
    from symzoo.cli import stage_overrides, stage_section

    stage = stage_args[0]
    resolve(stage, stage_section(args.config, stage), stage_overrides(stage, args))


def job_entrypoint(stage_args: list[str]) -> str:
    """The command the job runs on the head node; the stage's arguments are validated before anything is sent."""
    if not stage_args or stage_args[0] not in STAGES:
        raise SymzooError(f"submit takes a stage and its arguments; stages: {', '.join(STAGES)}")
    if len(stage_args) < 2:
        what = "a config, e.g. configs/cifar10_paper.yaml" if stage_args[0] in ("generate", "run") else "a zoo"
        raise SymzooError(f"submit {stage_args[0]} needs {what}")
    check_stage_args(stage_args)
    return "python -m symzoo.cli " + " ".join(shlex.quote(a) for a in [*stage_args, "--no-progress"])


CLOUD_SDKS = {"boto3": "boto3 (AWS)", "botocore": "boto3 (AWS)", "googleapiclient": "google-api-python-client (GCP)"}
CLOUD_SDKS |= {"google": "google-api-python-client (GCP)", "kubernetes": "kubernetes (KubeRay)"}


def head_ip_failure(cluster_yaml: str, stderr: str) -> str:
    """Why ``ray get-head-ip`` found no head, from its error output: a missing cloud SDK, or no running head."""
    missing = re.search(r"No module named '([\w.]+)'", stderr)
    if missing:
        module = missing.group(1).split(".")[0]
        sdk = CLOUD_SDKS.get(module, module)
        return f"`ray get-head-ip {cluster_yaml}` needs the cloud SDK {sdk}: pip install {sdk.split()[0]}"
    return f"no running head for {cluster_yaml}; start it with `ray up -y {cluster_yaml}`"


TUNNEL_WAIT_S = 60


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard_tunnel(cluster_yaml: str, wait_s: float = TUNNEL_WAIT_S) -> Iterator[str]:
    """``ray dashboard CLUSTER.yaml``: an SSH tunnel from a local port to the head's dashboard, which listens on the
    head's localhost only (the launcher configs here start it so); yields the local address, closes on exit."""
    if not Path(cluster_yaml).is_file():
        raise SymzooError(f"cluster config {cluster_yaml} not found; see cluster/aws-gpu.yaml")
    port = free_local_port()
    try:
        tunnel = subprocess.Popen(
            ["ray", "dashboard", cluster_yaml, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        raise SymzooError("the `ray` command is not on PATH; pip install -e '.[cluster]' in this environment") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if tunnel.poll() is not None:
                    raise SymzooError(head_ip_failure(cluster_yaml, tunnel.stderr.read())) from None
                if time.monotonic() > deadline:
                    raise SymzooError(
                        f"`ray dashboard {cluster_yaml}` opened no tunnel in {wait_s:.0f} s; is the head up "
                        f"(`ray up -y {cluster_yaml}`) and reachable over SSH?"
                    ) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        tunnel.terminate()
        try:
            tunnel.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tunnel.kill()


def submit(stage_args: list[str], address: str | None = None, cluster_yaml: str | None = None) -> tuple[str, str]:
    """Submit the stage as a Ray job; returns the job id and a shell command that follows its logs."""
    entrypoint = job_entrypoint(stage_args)
    if not (address or cluster_yaml):
        raise SymzooError("submit needs --address http://HEAD:8265 or --cluster CLUSTER.yaml")
    if address is None:
        with dashboard_tunnel(cluster_yaml) as tunnel:
            job = submit_entrypoint(entrypoint, tunnel)
        return job, f"ray dashboard {cluster_yaml} & ray job logs --follow {job} --address http://127.0.0.1:8265"
    job = submit_entrypoint(entrypoint, address)
    return job, f"ray job logs --follow {job} --address {address}"


def submit_entrypoint(entrypoint: str, address: str) -> str:
    """Send a validated entrypoint with this checkout to the job API at ``address``; returns the job id."""
    import ray.exceptions
    from ray.job_submission import JobSubmissionClient

    AuthenticationError = getattr(ray.exceptions, "AuthenticationError", PermissionError)  # Ray >= 2.52
    try:
        client = JobSubmissionClient(address)
    except AuthenticationError:
        raise SymzooError(
            f"the Ray cluster at {address} wants its auth token; export RAY_AUTH_MODE=token and put "
            "the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as e:
        if "ray[default]" in str(e):
            raise SymzooError(
                "symzoo submit needs Ray's job SDK, which plain `ray` lacks: pip install 'ray[default]' "
                "(or pip install -e '.[cluster]')"
            ) from None
        raise SymzooError(
            f"cannot reach the Ray dashboard at {address} ({str(e).splitlines()[0][:120]}); "
            "check the address and that the cluster is up"
        ) from None
    runtime_env = {"working_dir": str(REPO_ROOT), "excludes": UPLOAD_EXCLUDES}
    return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
