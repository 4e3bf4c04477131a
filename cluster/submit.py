"""``symzoo submit``: send a stage (e.g. ``generate CONFIG``) to a Ray cluster as a Ray job.

The stage's inputs are validated here first, so a bad config fails on the laptop, not after an upload. The
cluster is named by its dashboard address or by a cluster-launcher YAML; with a YAML the job goes through an SSH
tunnel (``ray dashboard``), so the head's dashboard and job API listen on its localhost only. This checkout
travels as the job's working directory; token authentication is Ray's own (``RAY_AUTH_TOKEN`` or
``~/.ray/auth_token``, as ``ray get-auth-token`` writes it).
"""

from __future__ import annotations

import argparse
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from symzoo.errors import SymzooError
from symzoo.pipelines.registry import STAGES, load_stage_section, load_study_config, stage

REPO_ROOT = Path(__file__).resolve().parent.parent
# the CLI's parser, handed down by the CLI: a stage's arguments are parsed exactly as `symzoo` would parse them
Parse = Callable[[list[str]], argparse.Namespace]


def stages() -> tuple[str, ...]:
    """What can be submitted: generate, run and import, and every registered analysis stage."""
    return ("generate", "run", "import", *STAGES)


UPLOAD_EXCLUDES = [".git", "zoos", "runs", "data", "*.parquet", "*.npy", "*.npz", "__pycache__", ".pytest_cache"]
UPLOAD_EXCLUDES += [".ruff_cache", ".device_data"]


def check_stage_args(stage_args: list[str], parse: Parse) -> None:
    """Everything about a stage's arguments that can be checked on the laptop: the flags parse, a config is a
    valid zoo config, a stage's options are valid. (A zoo path names a directory on the cluster: not checked.)"""
    try:
        args = parse(stage_args)
    except SystemExit:
        raise SymzooError(
            f"submit: `symzoo {' '.join(stage_args)}` does not parse; see symzoo {stage_args[0]} -h"
        ) from None
    if stage_args[0] in ("generate", "run"):
        load_study_config(args.config)
        return
    if stage_args[0] == "import":  # its source folder is a path on the cluster: nothing more to check here
        return
    spec = stage(stage_args[0])
    section = load_stage_section(args.config, spec.name) if args.config else None
    spec.resolve(section, spec.overrides(args))


def job_entrypoint(stage_args: list[str], parse: Parse) -> str:
    """The command the job runs on the head node; the stage's arguments are validated before anything is sent."""
    if not stage_args or stage_args[0] not in stages():
        raise SymzooError(f"submit takes a stage and its arguments; stages: {', '.join(stages())}")
    if len(stage_args) < 2:
        what = {"generate": "a config, e.g. configs/cifar10_paper.yaml", "run": "a study config", "import": "a format"}
        what = what.get(stage_args[0], "a zoo")
        raise SymzooError(f"submit {stage_args[0]} needs {what}")
    check_stage_args(stage_args, parse)
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


def submission_id(stage_args: list[str], parse: Parse) -> str:
    """``symzoo-<stage>-<12 hex>``, a function of the stage, the content of its config (the resolved config, not
    the file's path) and its other arguments: the same work submitted twice gets the same id."""
    import hashlib
    import json

    args = parse(stage_args)
    config_path = getattr(args, "config", None)
    key = {"stage": stage_args[0], "args": [a for a in stage_args[1:] if a not in (config_path, "--no-progress")]}
    if config_path:
        key["config"] = load_study_config(config_path)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"symzoo-{stage_args[0]}-{digest}"


@dataclass
class Submission:
    job_id: str
    state: str  # "submitted", or the status of the same work's job that was already there
    address: str


MAX_ATTEMPTS = 100


def submit_once(client, entrypoint: str, base_id: str, address: str) -> Submission:
    """Submit unless the same work is already pending, running or done. A stopped or failed job of the same work
    is followed by a new attempt (``<id>-2``, ``-3``, ...): the stage resumes where that one stopped."""
    from ray.job_submission import JobStatus

    for attempt in range(1, MAX_ATTEMPTS + 1):
        job_id = base_id if attempt == 1 else f"{base_id}-{attempt}"
        status = job_status(client, job_id)
        if status is None:
            runtime_env = {"working_dir": str(REPO_ROOT), "excludes": UPLOAD_EXCLUDES}
            client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=job_id)
            return Submission(job_id, "submitted", address)
        if status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED):
            return Submission(job_id, status.value.lower(), address)
    raise SymzooError(f"{MAX_ATTEMPTS} attempts of {base_id} stopped or failed; see `ray job logs {base_id}`")


def job_status(client, job_id: str):
    """The job's status, or None when the cluster has no job of that id."""
    try:
        return client.get_job_status(job_id)
    except RuntimeError as e:
        if "does not exist" in str(e) or "404" in str(e):
            return None
        raise


def follow(client, job_id: str) -> str:
    """Stream the job's logs until it ends; returns its final status (SUCCEEDED, FAILED or STOPPED)."""
    import asyncio

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
    from ray.job_submission import JobStatus

    status = client.get_job_status(job_id)
    while status in (JobStatus.PENDING, JobStatus.RUNNING):  # the log stream can close a moment before the end
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    return status.value


def submit(
    stage_args: list[str],
    parse: Parse,
    address: str | None = None,
    cluster_yaml: str | None = None,
    wait: bool = False,
) -> tuple[Submission, str | None]:
    """Submit the stage as a Ray job (or find the same work's job); with ``wait``, stream its logs to the end and
    return its final status too."""
    entrypoint = job_entrypoint(stage_args, parse)
    base_id = submission_id(stage_args, parse)
    if not (address or cluster_yaml):
        raise SymzooError("submit needs --address http://HEAD:8265 or --cluster CLUSTER.yaml")
    with dashboard_tunnel(cluster_yaml) if address is None else nullcontext(address) as where:
        client = job_client(where)
        sub = submit_once(client, entrypoint, base_id, address or cluster_yaml)
        print(describe_submission(sub, cluster_yaml), flush=True)
        return sub, follow(client, sub.job_id) if wait else None


def describe_submission(sub: Submission, cluster_yaml: str | None) -> str:
    what = {"submitted": "submitted job", "succeeded": "this work already ran and succeeded as job"}
    head = f"{what.get(sub.state, f'this work is already {sub.state} as job')} {sub.job_id}"
    if cluster_yaml:
        where = "--address http://127.0.0.1:8265 (after `ray dashboard " + cluster_yaml + " &`)"
    else:
        where = f"--address {sub.address}"
    return f"{head}; follow it with: ray job logs --follow {sub.job_id} {where} (also: ray job status, ray job stop)"


def local_token_source() -> str | None:
    """Where Ray on this machine takes its token from (its own order), if anywhere."""
    import os

    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        if os.environ.get(var):
            return f"${var}"
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def job_client(address: str):
    """A job API client for ``address``; the failures a user meets are one line each."""
    import ray.exceptions
    from ray.job_submission import JobSubmissionClient

    AuthenticationError = getattr(ray.exceptions, "AuthenticationError", PermissionError)  # Ray >= 2.52
    try:
        return JobSubmissionClient(address)
    except AuthenticationError:
        if source := local_token_source():
            raise SymzooError(
                f"the Ray cluster at {address} refused the token in {source}; use the cluster's "
                "own (`ray get-auth-token` on its head)"
            ) from None
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
