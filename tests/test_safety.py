"""Integrity and safety (issue 23): foreign shards, lease identity, damaged shards, outputs inside a zoo, pickles
and files a shared zoo or study could smuggle in, and the last bad inputs that gave tracebacks. Each bad input
must end with exit code 2, one line, no traceback, and nothing adopted or lost."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from symzoo.cli import main as cli_main
from symzoo.errors import SymzooError, ZooError
from symzoo.pipelines.generate import generate
from symzoo.pipelines.report import markdown_to_html
from symzoo.zoo.data import read_cifar_batch
from symzoo.zoo.holder import kernel_identity
from symzoo.zoo.location import location
from symzoo.zoo.lock import directory_lock
from symzoo.zoo.store import CONFIG_HASH_KEY, open_zoo, read_manifest, shard_path, write_manifest, write_shard

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "digits", "train_per_class": 20},
    "variants": ["standard", "w_asym"],
    "networks": 2,
    "hyperparameters": {"epochs": 1, "lr": 0.01},
    "training": {"batch_size": 50, "warmup_epochs": 0, "augment": {"flip": False, "cutout": 0}},
    "execution": {"networks_per_shard": 2},
}


def write_config(folder: Path, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "zoo.yaml"
    path.write_text(yaml.safe_dump({**TINY, **overrides}))
    return path


def one_line_exit_2(argv: list[str], capsys) -> str:
    try:
        code = cli_main(argv)
    except SystemExit as e:  # argparse's own exit, as the console script would see it
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def zoos(ray_cluster, tmp_path_factory):
    """Zoo A, and zoo B from the same config with another seed (same ids, shard names and layouts' shapes)."""
    tmp = tmp_path_factory.mktemp("zoos")
    a_cfg, b_cfg = write_config(tmp / "a"), write_config(tmp / "b", seed=4)
    assert generate(a_cfg, tmp / "a" / "zoo", show_progress=False).ok
    assert generate(b_cfg, tmp / "b" / "zoo", show_progress=False).ok
    return a_cfg, tmp / "a" / "zoo", tmp / "b" / "zoo"


@pytest.fixture(scope="module")
def other_recipe_zoo(ray_cluster, tmp_path_factory):
    """Zoo A's seed, ids, hyperparameters and layouts, trained with another recipe (batch size and warm-up)."""
    tmp = tmp_path_factory.mktemp("recipe")
    training = {**TINY["training"], "batch_size": 25, "warmup_epochs": 1}
    assert generate(write_config(tmp, training=training), tmp / "zoo", show_progress=False).ok
    return tmp / "zoo"


def regenerate_with_a_foreign_shard(zoos, foreign_zoo: Path, tmp_path: Path):
    """Zoo A copied, its manifest deleted (as by a kill before the first commit), its shard 0 replaced by
    ``foreign_zoo``'s, then ``generate`` rerun: the report, and A's copy, whose shard 0 must come out as A's own."""
    a_cfg, a_zoo, _ = zoos
    zoo = tmp_path / "a"
    shutil.copytree(a_zoo, zoo)
    own = pd.read_parquet(shard_path(zoo, 0))
    (zoo / "manifest.json").unlink()
    shutil.copy(shard_path(foreign_zoo, 0), shard_path(zoo, 0))
    report = generate(a_cfg, zoo, show_progress=False)
    again = pd.read_parquet(shard_path(zoo, 0))
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), own.drop(columns="seconds"))
    return report, zoo


def test_a_shard_from_another_recipe_is_quarantined_not_adopted(zoos, other_recipe_zoo, tmp_path, capsys):
    """Same seed, so the same ids, seeds, hyperparameters and layouts: only the recipe differs, and the shard
    records the config that trained it. Adopting it would serve another recipe's networks as this zoo's."""
    report, zoo = regenerate_with_a_foreign_shard(zoos, other_recipe_zoo, tmp_path)
    assert report.ok and report.done == [0] and len(report.quarantined) == 1
    assert "was trained under another config" in capsys.readouterr().err
    shutil.copy(shard_path(other_recipe_zoo, 1), shard_path(zoo, 1))  # and put there behind the manifest's back:
    err = one_line_exit_2(["info", str(zoo)], capsys)  # opening the zoo names it
    assert "part-00001.parquet was trained under another config" in err and "symzoo generate" in err


def test_a_foreign_shard_not_in_the_manifest_is_quarantined_not_adopted(zoos, tmp_path, capsys):
    report, zoo = regenerate_with_a_foreign_shard(zoos, zoos[2], tmp_path)
    assert report.ok and report.done == [0], "the foreign shard is retrained, the rest kept"
    assert len(report.quarantined) == 1 and "seed" in capsys.readouterr().err
    assert cli_main(["info", str(zoo), "--verify"]) == 0


def test_verify_finds_another_zoos_networks_even_under_a_matching_checksum(zoos, tmp_path, capsys):
    """Another zoo's shard behind a manifest that records its checksum: the config hash it carries names it when
    the zoo opens; a shard from before shards carried one is still caught by ``--verify``'s planned rows."""
    _, a_zoo, b_zoo = zoos
    zoo = tmp_path / "a"
    shutil.copytree(a_zoo, zoo)
    shutil.copy(shard_path(b_zoo, 0), shard_path(zoo, 0))
    manifest = read_manifest(zoo)
    manifest["shards"]["part-00000.parquet"] = read_manifest(b_zoo)["shards"]["part-00000.parquet"]
    write_manifest(zoo, manifest)
    err = one_line_exit_2(["info", str(zoo)], capsys)
    assert "part-00000.parquet was trained under another config" in err and "symzoo generate" in err
    table = pq.read_table(shard_path(b_zoo, 0))
    legacy = {k: v for k, v in table.schema.metadata.items() if k != CONFIG_HASH_KEY.encode()}
    manifest["shards"]["part-00000.parquet"] = write_shard(zoo, 0, table.replace_schema_metadata(legacy))
    write_manifest(zoo, manifest)
    err = one_line_exit_2(["info", str(zoo), "--verify"], capsys)
    assert "part-00000.parquet holds model_id" in err and "symzoo generate" in err


def test_a_shard_damaged_inside_with_its_footer_intact_is_one_line(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    zoo = tmp_path / "a"
    shutil.copytree(a_zoo, zoo)
    shard = shard_path(zoo, 1)
    meta = pq.ParquetFile(shard).metadata
    column = meta.schema.to_arrow_schema().get_field_index("weights_final")
    start = meta.row_group(0).column(column).data_page_offset + 64  # inside the final weights' first page
    data = bytearray(shard.read_bytes())
    data[start : start + 4096] = b"\xff" * 4096  # raw float bytes: zstd stores them uncompressed
    shard.write_bytes(bytes(data))
    with pytest.raises(ZooError, match=r"corrupt file .*part-00001.parquet .*symzoo generate"):
        open_zoo(zoo).weights()
    # the stage announces its units, then a worker meets the damage: the error is one line naming shard and fix
    assert cli_main(["mli", str(zoo), "--out", str(tmp_path / "mli"), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("symzoo: mli of 4 networks") and len(lines) == 2 and "Traceback" not in lines[1]
    assert lines[1].startswith("symzoo: error: corrupt file ") and "part-00001.parquet" in lines[1]
    assert lines[1].endswith("rerun `symzoo generate` with the zoo's config to quarantine and retrain it")


def test_stage_output_inside_the_zoos_models_folder_is_refused(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    before = sorted(p.name for p in (a_zoo / "models").iterdir())
    for out in (a_zoo / "models" / "mli", a_zoo / "models"):
        err = one_line_exit_2(["mli", str(a_zoo), "--out", str(out), "--no-progress"], capsys)
        assert "inside the zoo's models/ folder" in err
    assert sorted(p.name for p in (a_zoo / "models").iterdir()) == before
    assert len(pd.read_parquet(a_zoo / "models", columns=["model_id"])) == 4  # the README's query still works


def test_a_second_writer_is_refused_before_ray_starts(zoos, tmp_path, capsys, monkeypatch):
    import symzoo.pipelines.analysis_stage as analysis_stage
    import symzoo.pipelines.generate as generate_module

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started before the lock was checked")

    monkeypatch.setattr(generate_module, "connect", no_ray)
    monkeypatch.setattr(analysis_stage, "connect", no_ray)
    a_cfg, a_zoo, _ = zoos
    with directory_lock(a_zoo, "symzoo generate"):
        err = one_line_exit_2(["generate", str(a_cfg), "--out", str(a_zoo)], capsys)
    assert "is being written by pid" in err
    out = tmp_path / "mli"
    with directory_lock(out, "symzoo mli"):
        err = one_line_exit_2(["mli", str(a_zoo), "--out", str(out)], capsys)
    assert "is being written by pid" in err


def test_ray_failing_to_start_is_one_line_with_what_to_do(tmp_path, capsys, monkeypatch):
    import ray

    def timed_out(*args, **kwargs):
        raise Exception("The current node timed out during startup. This could happen because some of the Ray")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", timed_out)
    out = tmp_path / "zoo"
    err = one_line_exit_2(["generate", str(write_config(tmp_path)), "--out", str(out)], capsys)
    assert "Ray could not start a local cluster (The current node timed out" in err and "ray start --head" in err
    assert not out.exists()


class Payload:
    """What a malicious "CIFAR batch" carries: a callable to run at load time."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_batches_are_read_without_running_what_they_name(tmp_path):
    good = tmp_path / "data_batch_1"
    arrays = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2], b"batch_label": b"x"}
    good.write_bytes(pickle.dumps(arrays, protocol=2))
    assert read_cifar_batch(good)[b"labels"] == [1, 2]
    evil, marker = tmp_path / "data_batch_2", tmp_path / "pwned"
    evil.write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": []}))
    with pytest.raises(SymzooError, match=r"not a CIFAR-10 batch file \(it names posix.system"):
        read_cifar_batch(evil)
    assert not marker.exists()


def test_an_opened_manifests_config_is_validated_like_a_fresh_one(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    zoo = tmp_path / "a"
    shutil.copytree(a_zoo, zoo)
    manifest = read_manifest(zoo)
    manifest["config"]["data"]["root"] = ["/", "etc"]
    write_manifest(zoo, manifest)
    err = one_line_exit_2(["info", str(zoo)], capsys)
    assert "manifest.json holds an invalid config" in err and "data.root" in err


def test_the_report_embeds_only_figures_inside_the_study(tmp_path):
    study = tmp_path / "study"
    (study / "mli" / "figures").mkdir(parents=True)
    (study / "mli" / "figures" / "curves.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "outside.png").write_bytes(b"\x89PNG secret")
    (study / "mli" / "figures" / "link.png").symlink_to(tmp_path / "outside.png")
    md = "\n".join(
        f"![{n}]({p})"
        for n, p in [
            ("ok", "mli/figures/curves.png"),
            ("host", "/etc/hostname"),
            ("up", "../outside.png"),
            ("link", "mli/figures/link.png"),
        ]
    )
    page = markdown_to_html(md, study, "t")
    assert page.count("data:image/png;base64") == 1
    for name in ("/etc/hostname", "../outside.png", "mli/figures/link.png"):
        assert f"{name} is not a figure of this study, not embedded" in page
    missing = markdown_to_html("![gone](mli/figures/deleted.png)", study, "t")  # a figure deleted by hand
    assert "mli/figures/deleted.png is missing; rerun the stage that draws it" in missing


def lease_record(**fields) -> dict:
    return {"host": socket.gethostname(), "since": "then", "command": "symzoo generate"} | fields


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_lease_from_another_pid_namespace_is_not_taken_while_it_lasts(s3, bucket):
    """Same host name, a pid that does not exist here: a container beside us, alive. Only expiry frees it."""
    from symzoo.zoo.lease import object_lease

    url = f"{bucket}/zoo"
    name, prefix = url.removeprefix("s3://").split("/", 1)
    foreign = lease_record(pid=dead_pid(), kernel="another-boot:4026531999", expires=time.time() + 3600)
    s3.put_object(Bucket=name, Key=f"{prefix}/.lock", Body=json.dumps(foreign).encode())
    with pytest.raises(ZooError, match="is being written by pid"), object_lease(location(url), "symzoo generate"):
        pass
    mine = lease_record(pid=dead_pid(), kernel=kernel_identity(), expires=time.time() + 3600)
    s3.put_object(Bucket=name, Key=f"{prefix}/.lock", Body=json.dumps(mine).encode())
    with object_lease(location(url), "symzoo generate"):  # a dead process of this very namespace: at once
        assert json.loads(location(f"{url}/.lock").read_text())["pid"] == os.getpid()


HOLDER = """
import sys, time
from symzoo.zoo.lease import object_lease
from symzoo.zoo.location import location
with object_lease(location(sys.argv[1]), "holder"):
    print("held", flush=True)
    time.sleep(8)
"""


def test_a_live_holder_in_a_real_second_pid_namespace_keeps_its_lease(s3, bucket):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here: the simulated foreign holder above covers this")
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare --pid is not permitted here: the simulated foreign holder above covers this")
    from symzoo.zoo.lease import object_lease

    url = f"{bucket}/zoo"
    holder = subprocess.Popen(
        ["unshare", "--pid", "--fork", sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        record = json.loads(location(f"{url}/.lock").read_text())
        assert record["kernel"] != kernel_identity() and record["host"] == socket.gethostname()
        with pytest.raises(ZooError, match="is being written by pid"), object_lease(location(url), "symzoo generate"):
            pass
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not text (not UTF-8); pass a YAML file"),
        (b"? [a, b]\n: 1\n", "config key at line 1 is a list, not a name"),
        (b"data: {name: digits}\nnetworks: 2\nexecution: {cpus_per_task: .inf}\n", "'execution.cpus_per_task': inf"),
        (b"data: {name: digits}\nnetworks: 2\nreplicates: 1000000000\n", "'replicates': 1000000000 is not allowed"),
        (b"data: {name: digits}\nnetworks: 2\nhyperparameters: {lr: .nan}\n", "'hyperparameters.lr': nan"),
    ],
)
def test_bad_config_files_are_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    out = tmp_path / "zoo"
    for command in (["generate", str(path), "--out", str(out)], ["plan", str(path)]):
        assert message in one_line_exit_2(command, capsys)
    assert not out.exists()


def test_bad_flags_are_one_line(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    err = one_line_exit_2(["metanet", str(a_zoo), "--lrs", "abc", "--out", str(tmp_path / "m")], capsys)
    assert "--lrs 'abc' is not a comma list of numbers" in err
    err = one_line_exit_2(
        ["submit", "--address", "http://127.0.0.1:1", "metanet", str(a_zoo), "--lrs", "1e-3,x"], capsys
    )
    assert "--lrs '1e-3,x' is not a comma list of numbers" in err
    for flag in ("--batch-size", "--epochs"):
        err = one_line_exit_2(["train-one", flag, "0"], capsys)
        assert f"argument {flag}: '0' is not allowed; a whole number >= 1" in err
    assert not (tmp_path / "m").exists()


def test_messages_point_the_right_way(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    err = one_line_exit_2(["info", str(a_zoo / "manifest.json")], capsys)
    assert "is a file, not a zoo directory" in err
    options = tmp_path / "options.yaml"
    options.write_text("mli: {alphas: 2}\n")
    err = one_line_exit_2(["mli", str(a_zoo), "--config", str(options), "--out", str(tmp_path / "o")], capsys)
    assert "mli.alphas" in err and "data.name" not in err  # the options file is read as options, not as a zoo


def test_a_local_run_opens_no_dashboard_and_no_job_server(monkeypatch):
    """What symzoo controls of a local cluster's network surface: no dashboard, hence no job API, on any
    interface (Ray's other services are token-protected; the README says how to keep them off the network)."""
    import ray

    from symzoo.pipelines import stage

    seen: dict = {}
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs))
    stage.connect(None)
    assert seen["include_dashboard"] is False


def test_every_writer_replaces_a_link_at_its_path(zoos, tmp_path):
    """Figures, tables and JSON records go through one atomic writer (temporary file, then rename), so a link at
    the destination is replaced and the file it points to is left alone."""
    from symzoo.analysis.plots import plot_accuracy
    from symzoo.zoo.location import atomic_write_bytes

    _, a_zoo, _ = zoos
    target = tmp_path / "elsewhere.txt"
    target.write_text("not ours")
    for name, write in (
        ("figure.png", lambda p: plot_accuracy(open_zoo(a_zoo).frame, p, "tiny")),
        ("table.md", lambda p: atomic_write_bytes(p, b"# table\n")),
    ):
        link = tmp_path / name
        link.symlink_to(target)
        write(link)
        assert target.read_text() == "not ours" and not link.is_symlink() and link.stat().st_size > 0, name


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["layouts"]["w_asym"].update(size=100), "a layout does not parse"),
        (lambda m: m["config"].pop("variants"), "its config has no variants"),
        (lambda m: m.update(n_shards="2"), "n_shards '2' is not a count"),
        (lambda m: m.update(layouts={}), "no layouts"),
        (lambda m: m["layouts"].pop("w_asym"), "layouts for standard, the config's variants are standard, w_asym"),
    ],
)
def test_an_edited_manifest_is_one_line_never_other_networks_bytes(zoos, tmp_path, capsys, edit, message):
    """A layout's size edited made Zoo.weights cut other networks' bytes into rows; other edits were tracebacks."""
    a_cfg, a_zoo, _ = zoos
    zoo = tmp_path / "a"
    shutil.copytree(a_zoo, zoo)
    manifest = read_manifest(zoo)
    edit(manifest)
    write_manifest(zoo, manifest)
    err = one_line_exit_2(["info", str(zoo)], capsys)
    assert message in err and "symzoo generate" in err, err
    with pytest.raises(ZooError, match="damaged"):
        open_zoo(zoo, verify=False).weights("final")
    report = generate(a_cfg, zoo, show_progress=False)  # as the message says: the manifest is rebuilt
    assert report.ok and not report.done and "rebuilding the manifest" in capsys.readouterr().err
    np.testing.assert_array_equal(open_zoo(zoo).weights("final"), open_zoo(a_zoo).weights("final"))


def test_weight_vectors_of_another_width_than_the_layout_are_refused(zoos, tmp_path):
    """Whatever the manifest says, a stored vector is never reshaped into rows of another width."""
    from symzoo.zoo.store import fixed_size_to_numpy

    _, a_zoo, _ = zoos
    column = pq.read_table(shard_path(a_zoo, 0), columns=["weights_final"])["weights_final"]
    size = open_zoo(a_zoo).n_params
    assert fixed_size_to_numpy(column, size).shape == (column.length(), size)
    with pytest.raises(ZooError, match=f"hold {size} values where the manifest's layout says 100"):
        fixed_size_to_numpy(column, 100)


@pytest.mark.parametrize("execution", [{"cpus_per_task": 64}, {"gpus_per_task": 1}])
def test_a_task_no_node_can_hold_is_refused_not_left_waiting(zoos, tmp_path, capsys, execution):
    """Ray keeps such a task pending forever for an autoscaler a local cluster does not have: refused in one line
    naming what the nodes have, before anything is written."""
    config = write_config(tmp_path, execution={**TINY["execution"], **execution})
    err = one_line_exit_2(["generate", str(config), "--out", str(tmp_path / "zoo"), "--no-progress"], capsys)
    assert "no node of this Ray cluster has that many (nodes: 2 CPUs, 0 GPUs)" in err and "cpus_per_task" in err
    assert not (tmp_path / "zoo").exists()


def test_an_analysis_task_no_node_can_hold_is_refused(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    section = tmp_path / "mli.yaml"
    section.write_text(yaml.safe_dump({"mli": {"cpus_per_task": 64, "alphas": 3}}))
    argv = ["mli", str(a_zoo), "--out", str(tmp_path / "mli"), "--config", str(section), "--no-progress"]
    err = one_line_exit_2(argv, capsys)
    assert "each mli task asks for 64 CPUs and 0 GPUs" in err and not (tmp_path / "mli").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train-one", "--lr", "nan"], "argument --lr: 'nan' is not allowed; a finite number in (0, 10]"),
        (["train-one", "--lr", "-1"], "argument --lr: '-1' is not allowed"),
        (["train-one", "--weight-decay", "-1"], "argument --weight-decay: '-1' is not allowed"),
        (["train-one", "--label-smoothing", "2"], "argument --label-smoothing: '2' is not allowed"),
        (["train-one", "--device", "foo"], "argument --device: 'foo' is not a device; cpu, cuda or cuda:N"),
        (["train-one", "--size", "1000"], "argument --size: '1000' is not allowed; a whole number in [4, 256]"),
        (["generate", "configs/digits_demo.yaml", "--out", ""], "argument --out: is empty; pass a directory"),
        (["mli", "zoos/x", "--out", " "], "argument --out: is empty"),
        (["splits", "zoos/x", "--seed", "-1", "--replace"], "argument --seed: '-1' is not allowed"),
    ],
)
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert message in one_line_exit_2(argv, capsys)


def test_a_cuda_device_on_a_machine_without_one_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert "this machine has no such CUDA device; use --device cpu" in one_line_exit_2(
        ["train-one", "--device", "cuda"], capsys
    )


def test_bad_plot_paths_are_one_line(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    err = one_line_exit_2(["info", str(a_zoo), "--plot", str(tmp_path)], capsys)
    assert "is a folder; name a file in it" in err and not (tmp_path.parent / f"{tmp_path.name}.png").exists()
    assert "is not a .png file name" in one_line_exit_2(["info", str(a_zoo), "--plot", str(tmp_path / "a.txt")], capsys)
    err = one_line_exit_2(["info", str(a_zoo), "--plot", str(tmp_path / "no" / "such" / "a.png")], capsys)
    assert "cannot write" in err and "choose a path you can write to" in err


def test_label_smoothing_of_one_or_more_is_refused(tmp_path, capsys):
    config = write_config(tmp_path, hyperparameters={"epochs": 1, "label_smoothing": 1.5})
    err = one_line_exit_2(["generate", str(config), "--out", str(tmp_path / "zoo")], capsys)
    assert "'hyperparameters.label_smoothing': 1.5 is not allowed" in err
    config = write_config(tmp_path, hyperparameters={"epochs": 1, "label_smoothing": {"uniform": [0.5, 1.0]}})
    err = one_line_exit_2(["generate", str(config), "--out", str(tmp_path / "zoo")], capsys)
    assert "label smoothing lies in [0, 1)" in err and not (tmp_path / "zoo").exists()


def test_a_zoo_inside_another_zoos_models_folder_is_refused(zoos, tmp_path, capsys):
    a_cfg, a_zoo, _ = zoos
    err = one_line_exit_2(["generate", str(a_cfg), "--out", str(a_zoo / "models" / "inner")], capsys)
    assert "is inside the zoo" in err and "models/ folder" in err
    assert not (a_zoo / "models" / "inner").exists()


def test_split_files_and_seeds_that_are_no_ids_are_one_line(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    zoo = tmp_path / "a"
    shutil.copytree(a_zoo, zoo)
    mine = tmp_path / "mine.csv"
    mine.write_text("model_id,split\nabc,train\n")
    err = one_line_exit_2(["splits", str(zoo), "--from", str(mine), "--replace"], capsys)
    assert "model_id 'abc' is not a network id (a whole number)" in err
    from symzoo.zoo.dataset import WeightDataset

    with pytest.raises(ZooError, match="split seed -1 is not allowed"):
        WeightDataset(zoo, split_seed=-1, cache_dir=tmp_path / "cache")


def test_an_incomplete_zoo_says_so_in_its_card_and_its_dataset(zoos, tmp_path, capsys):
    from symzoo.zoo.dataset import WeightDataset

    _, a_zoo, _ = zoos
    zoo = tmp_path / "a"
    shutil.copytree(a_zoo, zoo)
    shard_path(zoo, 1).unlink()
    (zoo / "splits.parquet").unlink()
    assert cli_main(["card", str(zoo)]) == 0
    assert "**Incomplete**: 2 of 4 planned networks are stored" in (zoo / "README.md").read_text()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        WeightDataset(zoo, cache_dir=tmp_path / "cache")
    said = [str(w.message) for w in caught]
    assert any("is an incomplete zoo (2 networks so far)" in m for m in said), said
    assert any("stores no splits.parquet: the split is seed 0's" in m for m in said), said


def test_verify_is_a_command_of_its_own(zoos, tmp_path, capsys):
    _, a_zoo, _ = zoos
    assert cli_main(["verify", str(a_zoo)]) == 0
    assert "2 shards and 4 networks verified" in capsys.readouterr().out
    zoo = tmp_path / "a"
    shutil.copytree(a_zoo, zoo)
    data = bytearray(shard_path(zoo, 0).read_bytes())
    data[len(data) // 3] ^= 1
    shard_path(zoo, 0).write_bytes(bytes(data))
    assert "part-00000.parquet" in one_line_exit_2(["verify", str(zoo)], capsys)


def test_a_killed_commands_local_cluster_does_not_outlive_it(tmp_path):
    """kill -9 of a driver left Ray's dashboard and runtime-env agents running (two more per killed run): the
    watchdog beside every local cluster a command starts stops what holds the session's files once it is gone."""
    from symzoo.pipelines.reaper import session_processes

    config = write_config(tmp_path, networks=8, hyperparameters={"epochs": 300, "lr": 0.01})  # killed long before
    cmd = [sys.executable, "-m", "symzoo.cli", "generate", str(config), "--out", str(tmp_path / "zoo"), "--no-progress"]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session, deadline = None, time.time() + 120
    while session is None and time.time() < deadline and driver.poll() is None:
        listed = subprocess.run(["pgrep", "-af", "symzoo.pipelines.reaper"], capture_output=True, text=True).stdout
        session = next((ln.split()[-1] for ln in listed.splitlines() if ln.split()[-2] == str(driver.pid)), None)
        time.sleep(0.5)
    assert session is not None, "no watchdog beside the local cluster"
    time.sleep(5)  # the cluster's agents are up and training runs
    assert session_processes(session + "/"), "the session's processes are found by its files"
    driver.kill()
    driver.wait()
    deadline = time.time() + 30
    while session_processes(session + "/") and time.time() < deadline:
        time.sleep(1)
    assert not session_processes(session + "/"), "processes of the killed driver's cluster are still running"
