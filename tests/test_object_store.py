"""Zoos and stage outputs on object storage, against real S3 and GCS protocol servers started on 127.0.0.1.

S3 is moto's standalone server (which enforces conditional writes, so the writer lease is tested for exclusion);
GCS is gcp-storage-emulator, which stores and lists objects faithfully but ignores generation preconditions, so on
gs:// only the data path and the lease's take/release round trip are tested here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import free_port, keys, start_server
from test_generate import write_config  # its tiny zoo: 3 samples x 2 variants in 3 shards

from symzoo.cli import main as cli_main
from symzoo.errors import ZooError
from symzoo.pipelines.generate import generate
from symzoo.zoo.holder import kernel_identity
from symzoo.zoo.location import ObjectPath, location
from symzoo.zoo.store import open_zoo

boto3 = pytest.importorskip("boto3", reason="optional: pip install 'symzoo[s3]' for s3:// zoos")


def test_paths_are_local_or_in_an_object_store_and_other_schemes_are_one_line():
    assert location("zoos/x") == Path("zoos/x")
    p = location("s3://bucket/zoo/")
    assert isinstance(p, ObjectPath) and str(p / "models" / "part-00000.parquet") == (
        "s3://bucket/zoo/models/part-00000.parquet"
    )
    assert p.name == "zoo" and str(p.parent) == "s3://bucket"
    with pytest.raises(ZooError, match="local directories, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"):
        location("ftp://host/zoo")
    with pytest.raises(ZooError, match="names no bucket and prefix; write s3://BUCKET/PREFIX"):
        location("s3://")


def test_a_zoo_on_s3_equals_the_local_one_and_pandas_reads_it(ray_cluster, s3, bucket, tmp_path):
    cfg = write_config(tmp_path)
    generate(cfg, tmp_path / "local", show_progress=False)
    url = f"{bucket}/zoos/tiny"
    assert cli_main(["generate", str(cfg), "--out", url, "--no-progress"]) == 0
    stored = keys(s3, url)
    assert f"{url.split('/', 3)[3]}/manifest.json" in stored
    assert not [k for k in stored if ".tmp-" in k or k.endswith(".lock")], "no temporaries, no lease left behind"
    local, remote = open_zoo(tmp_path / "local"), open_zoo(url)
    assert remote.complete and remote.manifest["config_hash"] == local.manifest["config_hash"]
    pd.testing.assert_frame_equal(remote.frame.drop(columns="seconds"), local.frame.drop(columns="seconds"))
    for which in ("init", "final", "epoch_1"):  # the same seed gives the same zoo, wherever it is stored
        np.testing.assert_array_equal(remote.weights(which), local.weights(which))
    frame = pd.read_parquet(f"{url}/models", columns=["model_id", "variant", "test_acc"])
    assert sorted(frame["model_id"]) == list(range(6))
    assert cli_main(["info", url, "--verify"]) == 0
    prefix = url.split("/", 3)[3]
    assert {f"{prefix}/splits.parquet", f"{prefix}/README.md"} <= set(stored)  # the split and the card travel
    from symzoo.zoo.dataset import WeightDataset

    dataset = WeightDataset(url, view="flat", variants=["w_asym"], cache_dir=tmp_path / "cache")
    items = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    np.testing.assert_array_equal(items, local.weights("final", variant="w_asym", trainable_only=True))


def test_a_damaged_zoo_on_s3_is_quarantined_and_resumed(ray_cluster, s3, bucket, tmp_path, capsys):
    cfg = write_config(tmp_path)
    url = f"{bucket}/zoo"
    generate(cfg, url, show_progress=False)
    name, prefix = url.removeprefix("s3://").split("/")
    good = pd.read_parquet(f"{url}/models/part-00001.parquet", columns=["model_id", "test_acc"])
    s3.put_object(Bucket=name, Key=f"{prefix}/models/part-00001.parquet", Body=b"not parquet")
    s3.delete_object(Bucket=name, Key=f"{prefix}/models/part-00002.parquet")
    s3.put_object(Bucket=name, Key=f"{prefix}/models/.part-00002.parquet.tmp-0badcafe", Body=b"half a shard")
    assert cli_main(["info", url]) == 2
    assert "corrupt shard s3://" in capsys.readouterr().err
    report = generate(cfg, url, show_progress=False)
    assert sorted(report.done) == [1, 2] and report.skipped == [0] and len(report.quarantined) == 1
    stored = keys(s3, url)
    assert [k for k in stored if "/quarantine/part-00001.parquet." in k], "the bad bytes are kept, not deleted"
    assert not [k for k in stored if ".tmp-" in k]
    again = pd.read_parquet(f"{url}/models/part-00001.parquet", columns=["model_id", "test_acc"])
    pd.testing.assert_frame_equal(again, good)
    assert cli_main(["info", url, "--verify"]) == 0


def test_an_analysis_stage_writes_to_s3_and_a_rerun_does_nothing(ray_cluster, s3, bucket, tmp_path, capsys):
    url = f"{bucket}/zoo"
    generate(write_config(tmp_path), url, show_progress=False)
    out = f"{bucket}/mli"
    assert cli_main(["mli", url, "--out", out, "--alphas", "5", "--no-progress"]) == 0
    stored = keys(s3, out)
    assert {"mli/table.md", "mli/curves.parquet", "mli/stage.json", "mli/done.json"} <= set(stored)
    assert [k for k in stored if k.startswith("mli/figures/") and k.endswith(".png")]
    assert pd.read_parquet(f"{out}/curves.parquet")["model_id"].nunique() == 6
    capsys.readouterr()
    assert cli_main(["mli", url, "--out", out, "--alphas", "5", "--no-progress"]) == 0
    assert "already holds the complete mli results" in capsys.readouterr().err


def test_a_killed_generate_on_s3_resumes_at_once_without_losing_or_duplicating(s3, bucket, tmp_path):
    """kill -9 the whole `symzoo generate` after its first shard lands: its lease stays behind, held by a dead pid
    on this host, so the rerun takes it over at once, keeps the finished shards and trains the rest."""
    cfg = write_config(tmp_path, networks=6)
    url = f"{bucket}/zoo"
    cmd = [sys.executable, "-m", "symzoo.cli", "generate", str(cfg), "--out", url, "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not [k for k in keys(s3, url) if k.endswith(".parquet")]:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = {k: location(f"{bucket}/{k}").read_bytes() for k in keys(s3, url) if k.endswith(".parquet")}
    assert 1 <= len(survivors) < 6 and "zoo/.lock" in keys(s3, url), "the kill should land mid-run"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "took over the stale lease of pid" in done.stderr
    assert sorted(pd.read_parquet(f"{url}/models", columns=["model_id"])["model_id"]) == list(range(12))
    for key, data in survivors.items():
        assert location(f"{bucket}/{key}").read_bytes() == data, "finished shards must not be retrained"
    assert open_zoo(url).manifest["complete"] and "zoo/.lock" not in keys(s3, url)


def test_a_held_lease_refuses_a_second_writer_and_names_the_first(s3, bucket):
    from symzoo.zoo.lease import object_lease

    folder = location(f"{bucket}/zoo")
    with object_lease(folder, "symzoo generate"):
        record = json.loads((folder / ".lock").read_text())
        assert record["pid"] == os.getpid() and record["command"] == "symzoo generate"
        refused = pytest.raises(ZooError, match=f"is being written by pid {os.getpid()} on .* `symzoo generate`")
        with refused, object_lease(folder, "symzoo mli"):
            pass
    assert not (folder / ".lock").exists(), "released: the lease object is gone"


def test_a_generate_into_a_leased_zoo_is_refused_in_one_line(ray_cluster, s3, bucket, tmp_path, capsys):
    from symzoo.zoo.lease import object_lease

    url = f"{bucket}/zoo"
    with object_lease(location(url), "symzoo generate"):
        assert cli_main(["generate", str(write_config(tmp_path)), "--out", url, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("symzoo: error: s3://") and "is being written by pid" in err
    assert keys(s3, url) == [], "the refused run wrote nothing"


def _put_lease(s3, url: str, record: dict) -> None:
    name, prefix = url.removeprefix("s3://").split("/", 1)
    s3.put_object(Bucket=name, Key=f"{prefix}/.lock", Body=json.dumps(record).encode())


def test_a_dead_holders_lease_is_taken_over_at_once(s3, bucket, capsys):
    from symzoo.zoo.lease import object_lease

    url = f"{bucket}/zoo"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"host": socket.gethostname(), "pid": int(dead.stdout), "since": "then", "command": "symzoo generate"}
    stale["kernel"] = kernel_identity()  # a process of this very pid namespace: provably gone
    _put_lease(s3, url, stale | {"expires": time.time() + 3600})
    start = time.time()
    with object_lease(location(url), "symzoo generate"):
        assert json.loads(location(f"{url}/.lock").read_text())["pid"] == os.getpid()
    assert time.time() - start < 2 and "took over the stale lease" in capsys.readouterr().err


def test_an_expired_lease_is_taken_over_only_if_nobody_renews_it(s3, bucket):
    from symzoo.zoo.lease import object_lease

    url = f"{bucket}/zoo"
    other = {"host": "elsewhere", "pid": 1, "since": "then", "command": "symzoo generate"}
    _put_lease(s3, url, other | {"expires": time.time() - 1})  # expired by our clock, nobody renewing
    with object_lease(location(url), "symzoo generate"):
        assert json.loads(location(f"{url}/.lock").read_text())["pid"] == os.getpid()


RACER = """
import sys, time
from symzoo.errors import ZooError
from symzoo.zoo.lease import object_lease
from symzoo.zoo.location import location
try:
    with object_lease(location(sys.argv[1]), "racer"):
        print("held", flush=True)
        time.sleep(4)
except ZooError as e:
    print("refused", e)
"""


def test_of_writers_racing_for_one_lease_exactly_one_wins(s3, bucket):
    url = f"{bucket}/zoo"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, url], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outcomes = [r.communicate(timeout=60)[0].split()[0] for r in racers]
    assert sorted(outcomes) == ["held", "refused", "refused", "refused"], outcomes


def test_a_writer_that_lost_its_lease_commits_nothing_more(s3, bucket, capsys):
    from symzoo.zoo.lease import object_lease

    url = f"{bucket}/zoo"
    folder = location(url)
    with object_lease(folder, "symzoo generate"):
        (folder / "first.json").write_text("{}")
        # another writer took the lease over (as it would after this one stalled for longer than the lease)
        _put_lease(s3, url, {"host": "elsewhere", "pid": 1, "since": "now", "command": "x", "expires": 1e12})
        time.sleep(2)  # one renewal interval (lease 3 s, renewed every second)
        with pytest.raises(ZooError, match="lost the writer lease on s3://.* to another writer"):
            (folder / "second.json").write_text("{}")
    assert "taken over by another writer" in capsys.readouterr().err
    assert not (folder / "second.json").exists()
    assert json.loads((folder / ".lock").read_text())["host"] == "elsewhere", "the new holder's lease is kept"


def test_a_writer_that_slept_past_its_lease_checks_it_before_committing(s3, bucket):
    from symzoo.zoo.lease import object_lease

    url = f"{bucket}/zoo"
    folder = location(url)
    with object_lease(folder, "symzoo generate") as lease:
        lease.renewed_at -= 100  # as after a suspended process wakes up, before its renewal thread runs again
        _put_lease(s3, url, {"host": "elsewhere", "pid": 1, "since": "now", "command": "x", "expires": 1e12})
        with pytest.raises(ZooError, match="lost the writer lease"):
            (folder / "late.json").write_text("{}")  # at once: the commit itself renews a stale lease first
        assert not (folder / "late.json").exists()
    with object_lease(location(f"{bucket}/other"), "symzoo generate") as lease:
        lease.renewed_at -= 100
        (location(f"{bucket}/other") / "fine.json").write_text("{}")  # still its own: renewed, committed
        assert lease.fresh and not lease.lost


def test_without_the_s3_extra_a_write_is_refused_in_one_line_naming_it(ray_cluster, s3, bucket, tmp_path, capsys):
    sys.modules["boto3"] = None  # as if `pip install 'symzoo[s3]'` had not been run
    try:
        code = cli_main(["generate", str(write_config(tmp_path)), "--out", f"{bucket}/zoo", "--no-progress"])
    finally:
        sys.modules["boto3"] = boto3
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "symzoo: error: s3:// paths need boto3 for their writer lease; pip install 'symzoo[s3]'"
    )
    assert keys(s3, f"{bucket}/zoo") == []


def test_plan_reads_a_config_and_what_a_zoo_on_s3_already_holds(ray_cluster, s3, bucket, tmp_path, capsys):
    cfg = write_config(tmp_path)
    generate(cfg, f"{bucket}/zoo", show_progress=False)
    location(f"{bucket}/zoo.yaml").write_text(cfg.read_text())
    assert cli_main(["plan", f"{bucket}/zoo.yaml", "--out", f"{bucket}/zoo"]) == 0
    assert f"3 of 3 shards already in {bucket}/zoo" in capsys.readouterr().out
    assert cli_main(["plan", f"{bucket}/nothing.yaml"]) == 2
    assert f"config file {bucket}/nothing.yaml not found" in capsys.readouterr().err


def test_a_store_that_stops_answering_mid_read_is_one_line_not_a_corrupt_shard(ray_cluster, tmp_path, monkeypatch):
    """An S3 server of this test's own dies while a shard's footer is read: the error names the store and the fix;
    the shard is not called corrupt (which would quarantine good data and retrain it)."""
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = start_server(cmd, port, tmp_path / "moto.log")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "t")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "t")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    generate(write_config(tmp_path), f"s3://{name}/zoo", show_progress=False)

    from symzoo.zoo import store

    def dies_mid_read(*args, **kwargs):
        server.kill()
        server.wait()
        raise OSError("AWS Error NETWORK_CONNECTION during GetObject operation")  # what the read then sees

    monkeypatch.setattr(store.pq, "ParquetFile", dies_mid_read)
    with pytest.raises(ZooError, match="check the path, your credentials and the network") as refused:
        open_zoo(f"s3://{name}/zoo")
    assert "corrupt" not in str(refused.value)


def test_a_bucket_that_does_not_exist_is_one_line(ray_cluster, s3, tmp_path, capsys):
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/zoo"
    assert cli_main(["info", missing]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "symzoo: error:" in err
    assert cli_main(["generate", str(write_config(tmp_path)), "--out", missing, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"symzoo: error: cannot take the writer lease on {missing} (") and "bucket" in err


@pytest.mark.slow
def test_a_whole_study_runs_on_s3_and_its_report_embeds_the_figures(s3, bucket, tmp_path):
    from test_study import STUDY

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY))
    out = f"{bucket}/study"
    cmd = [sys.executable, "-m", "symzoo.cli", "run", str(config), "--out", out, "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "headlines:" in done.stdout and "lmc: verdict: W-Asym barrier" in done.stdout  # read from the store
    stored = set(keys(s3, out))
    for stage in ("metanet", "mli", "lmc"):
        assert f"study/{stage}/table.md" in stored and f"study/{stage}/done.json" in stored
    html = location(f"{out}/report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 5 and "Table 3" in html
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "the zoo in s3://" in again.stderr and "nothing to do" in again.stderr


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    pytest.importorskip("google.cloud.storage", reason="optional: pip install 'symzoo[gcs]' for gs:// zoos")
    pytest.importorskip("gcp_storage_emulator", reason="optional: pip install gcp-storage-emulator")
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "gcs.log"
    cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"]
    server = start_server(cmd, port, log)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        from google.cloud import storage

        yield storage.Client.create_anonymous_client()
    server.kill()
    server.wait()


def test_a_zoo_on_gcs_round_trips_and_its_lease_is_taken_and_released(ray_cluster, gcs, tmp_path):
    name = f"t-{uuid.uuid4().hex[:12]}"
    gcs.project = "test"
    gcs.create_bucket(name)
    url = f"gs://{name}/zoo"
    cfg = write_config(tmp_path)
    report = generate(cfg, url, show_progress=False)
    assert report.ok and len(report.done) == 3
    zoo = open_zoo(url)
    assert zoo.complete and sorted(zoo.frame["model_id"]) == list(range(6))
    assert not (location(url) / ".lock").exists(), "the lease was released"
    rerun = generate(cfg, url, show_progress=False)
    assert rerun.done == [] and len(rerun.skipped) == 3
    assert cli_main(["info", url, "--verify"]) == 0
