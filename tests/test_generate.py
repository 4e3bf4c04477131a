"""`symzoo generate` on a real local Ray cluster: contents, round trips, resume, corruption, bad configs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from symzoo.cli import main as cli_main
from symzoo.errors import ZooError
from symzoo.pipelines.generate import generate
from symzoo.zoo.store import CONFIG_HASH_KEY, open_zoo
from symzoo.zoo.train import evaluate

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "digits"},
    "variants": ["standard", "w_asym"],
    "networks": 3,
    "hyperparameters": {"epochs": {"randint": [2, 3]}, "lr": {"log_uniform": [0.005, 0.02]}},
    "training": {
        "batch_size": 100,
        "warmup_epochs": 1,
        "augment": {"flip": False, "cutout": 0},
        "checkpoint_epochs": [1],
    },
    "execution": {"networks_per_shard": 2},
}


def write_config(tmp_path: Path, **overrides) -> Path:
    cfg = {**TINY, **overrides}
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def tiny_zoo(ray_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    out = tmp / "zoo"
    report = generate(write_config(tmp), out, show_progress=False)
    assert report.ok and len(report.done) == 3
    return out


def test_zoo_has_every_planned_network_once(tiny_zoo):
    df = pd.read_parquet(tiny_zoo / "models", columns=["model_id", "variant", "sample", "test_acc"])
    assert sorted(df["model_id"]) == list(range(6))
    assert df.groupby("sample")["variant"].apply(sorted).tolist() == [["standard", "w_asym"]] * 3
    zoo = open_zoo(tiny_zoo)
    assert zoo.manifest["complete"] and zoo.manifest["counts"] == {"standard/ok": 3, "w_asym/ok": 3}
    assert len(zoo.manifest["shards"]) == 3


def test_schema_scalars_first_weights_fixed_size(tiny_zoo):
    schema = pq.read_schema(next((tiny_zoo / "models").glob("*.parquet")))
    names = schema.names
    assert names[:4] == ["model_id", "sample", "replicate", "variant"]
    weights = ["weights_init", "weights_final", "weights_epoch_1"]
    assert names[-6:] == weights + [f"checksum_{w}" for w in weights]  # each weight column's row checksums
    assert schema.field("weights_final").type.byte_width == 4 * 77_754  # float32 little-endian, as it says
    assert schema.field("weights_final").metadata == {b"symzoo.values": b"<f4", b"symzoo.size": b"77754"}
    assert schema.field("checksum_weights_final").type == pa.uint64()
    assert schema.metadata[b"symzoo.schema_version"] == b"3"
    frame = open_zoo(tiny_zoo).frame
    assert "weights_final" not in frame.columns
    assert all(len(h) == e for h, e in zip(frame["history_train_loss"], frame["epochs"], strict=True))


def test_paired_networks_share_hyperparameters_and_seed(tiny_zoo):
    frame = open_zoo(tiny_zoo).frame
    for _, pair in frame.groupby("sample"):
        assert pair[["lr", "weight_decay", "label_smoothing", "epochs", "seed"]].nunique().max() == 1


def test_rows_rebuild_into_modules_with_the_stored_accuracy(tiny_zoo):
    zoo = open_zoo(tiny_zoo)
    data = zoo.dataset()
    for model_id in (0, 1):
        model = zoo.model(model_id)
        loss, acc = evaluate(model, data, data.x_test, data.y_test, 1000)
        stored = zoo.frame.set_index("model_id").loc[model_id]
        assert float(acc) == pytest.approx(stored["test_acc"], abs=1e-9)
        assert float(loss) == pytest.approx(stored["test_loss"], rel=1e-5)
    w = zoo.weights("final", variant="w_asym", trainable_only=True)
    assert w.shape == (3, 60_634) and w.dtype == np.float32
    init = zoo.weights("init", variant="w_asym")
    fixed = ~zoo.layout("w_asym").trainable
    assert np.all(init[:, fixed] == 0) and np.all(zoo.weights("final", variant="w_asym")[:, fixed] == 0)
    with pytest.raises(ZooError, match="needs a variant"):
        zoo.weights("final", trainable_only=True)
    with pytest.raises(ZooError, match="stores init, final, epoch_1"):
        zoo.weights("epoch_7")


def test_same_config_gives_the_same_zoo(ray_cluster, tiny_zoo, tmp_path):
    again = tmp_path / "again"
    generate(write_config(tmp_path), again, show_progress=False)
    a, b = open_zoo(tiny_zoo), open_zoo(again)
    assert np.array_equal(a.weights("final"), b.weights("final"))
    cols = ["model_id", "variant", "lr", "test_acc", "train_loss"]
    pd.testing.assert_frame_equal(a.frame[cols], b.frame[cols])


def test_rerun_skips_finished_shards_and_rejects_another_config(ray_cluster, tiny_zoo, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (tiny_zoo / "models").iterdir()}
    report = generate(write_config(tmp_path), tiny_zoo, show_progress=False)
    assert report.done == [] and len(report.skipped) == 3
    assert {p.name: p.stat().st_mtime_ns for p in (tiny_zoo / "models").iterdir()} == before
    with pytest.raises(ZooError, match="different config"):
        generate(write_config(tmp_path, networks=4), tiny_zoo, show_progress=False)


def test_corrupt_shard_is_named_then_quarantined_and_retrained(ray_cluster, tmp_path):
    out = tmp_path / "zoo"
    cfg = write_config(tmp_path, networks=1)
    generate(cfg, out, show_progress=False)
    shard = out / "models" / "part-00000.parquet"
    good = pd.read_parquet(shard, columns=["model_id", "test_acc"])
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # truncated copy
    with pytest.raises(ZooError, match="corrupt shard .*part-00000.parquet"):
        open_zoo(out)
    assert cli_main(["info", str(out)]) == 2  # the CLI names it in one line too
    generate(cfg, out, show_progress=False)
    assert len(list((out / "quarantine").iterdir())) == 1  # the bad bytes are kept, not deleted
    pd.testing.assert_frame_equal(pd.read_parquet(shard, columns=["model_id", "test_acc"]), good)


def _flip_a_weight_bit(shard: Path) -> None:
    """Change one stored weight in place, footer and ids intact (as a bad disk or a stray write would)."""
    table = pq.read_table(shard)
    weights = table["weights_final"].combine_chunks()
    values = np.frombuffer(weights.buffers()[1], "<f4").copy()
    values[5] = np.nextafter(values[5], np.float32(np.inf))
    column = pa.FixedSizeBinaryArray.from_buffers(weights.type, len(weights), [None, pa.py_buffer(values.tobytes())])
    field = table.schema.field("weights_final")
    table = table.set_column(table.schema.get_field_index("weights_final"), field, column)
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), shard, row_group_size=32)


def test_a_changed_shard_is_caught_by_its_checksum_quarantined_and_retrained(ray_cluster, tiny_zoo, tmp_path):
    out = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, out)
    shard = out / "models" / "part-00001.parquet"
    original = pq.read_table(shard).drop(["seconds"])
    _flip_a_weight_bit(shard)
    assert cli_main(["info", str(out), "--verify"]) == 2
    report = generate(write_config(tmp_path), out, show_progress=False)
    assert report.done == [1] and len(report.quarantined) == 1
    assert pq.read_table(shard).drop(["seconds"]).equals(original)  # retrained: the same rows but the wall time
    assert cli_main(["info", str(out), "--verify"]) == 0


def test_info_calls_a_zoo_with_a_missing_shard_incomplete(tiny_zoo, tmp_path, capsys):
    out = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, out)
    assert cli_main(["info", str(out)]) == 0
    assert "6 of 6 networks, complete; 3 of 3 shards (footers checked" in capsys.readouterr().out
    (out / "models" / "part-00002.parquet").unlink()
    assert cli_main(["info", str(out)]) == 0
    assert "4 of 6 networks, incomplete; 2 of 3 shards" in capsys.readouterr().out


def test_stray_and_foreign_shards_are_never_adopted(ray_cluster, tiny_zoo, tmp_path, capsys):
    out = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, out)
    models = out / "models"
    shutil.copy(models / "part-00000.parquet", models / "part-00099.parquet")  # unplanned
    assert len(open_zoo(out).frame) == 6  # the stray file is not read as part of the zoo
    shutil.copy(models / "part-00000.parquet", models / "part-00002.parquet")  # another shard's rows
    with pytest.raises(ZooError, match="holds model_id 0 more than once"):
        _ = open_zoo(out).frame
    pq.write_table(pa.table({"x": [1, 2]}), models / "part-00001.parquet")  # a Parquet file, but no shard
    report = generate(write_config(tmp_path), out, show_progress=False)
    assert report.ok and sorted(report.done) == [1, 2]
    assert "part-00099.parquet is not a shard of this zoo's plan" in capsys.readouterr().err
    assert len(list((out / "quarantine").iterdir())) == 3  # all kept for a person to look at
    assert sorted(open_zoo(out).frame["model_id"]) == list(range(6))
    assert cli_main(["info", str(out), "--verify"]) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": ["standard", "asym"]}, "variants[1]': 'asym' is not allowed; choose one of standard, w_asym"),
        ({"networks": 0}, "'networks': 0 is not allowed; an integer in [1, 1000000]"),
        ({"data": {"name": "mnist"}}, "'data.name': 'mnist' is not allowed; choose one of cifar10, cifar100, fashion"),
        ({"trainig": {}}, "'trainig': unknown field; allowed: name, seed, data"),
        ({"training": {"optimizer": "adam"}}, "'training.optimizer': 'adam' is not allowed; choose one of adamw, sgd"),
        ({"hyperparameters": {"lr": {"normal": [0, 1]}}}, "choose one of log_uniform, uniform, randint"),
        ({"execution": {"gpus_per_task": -1}}, "'execution.gpus_per_task'"),
        ({"training": {"batch_size": 5000}}, "'training.batch_size': 5000 exceeds the 1442 training images"),
        ({"training": {"augment": {"rotate": 1}}}, "'training.augment.rotate': unknown field; allowed: flip"),
        ({"training": {"pack_size": "big"}}, "'training.pack_size': 'big' is not allowed; auto or an integer"),
        ({"training": {"pack_size": 8, "optimizer": "sgd"}}, "packed training implements adamw only"),
        ({"training": {"compile": "yes"}}, "'training.compile': 'yes' is not allowed; auto, true or false"),
        ({"hyperparameters": {"epochs": 2.5}}, "'hyperparameters.epochs': 2.5 is not allowed; an integer in [1,"),
        ({"data": {"name": "digits", "root": 123}}, "'data.root': 123 is not allowed; a folder path"),
        ({"data": {"name": "digits", "train_per_class": 500}}, "'data.train_per_class': 500 is not allowed; the"),
        ({"name": "../../escape"}, "'name': '../../escape' is not allowed; a non-empty name without path separators"),
        ({"networks": 10**9}, "'networks': 1000000000 is not allowed; an integer in [1, 1000000]"),
        (
            {"training": {"checkpoint_epochs": [7]}},
            "'training.checkpoint_epochs': epoch 7 is after the longest training (3 epochs)",
        ),
    ],
)
def test_bad_configs_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, change, message):
    out = tmp_path / "zoo"
    code = cli_main(["generate", str(write_config(tmp_path, **change)), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err, err
    assert not out.exists()


def test_a_key_given_twice_is_an_error_not_the_last_one_winning(tmp_path, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\ndata: {name: digits}\nnetworks: 2\nnetworks: 3\n")
    assert cli_main(["generate", str(path), "--out", str(tmp_path / "zoo")]) == 2
    err = capsys.readouterr().err.strip()
    assert "config key 'networks' appears twice (line 4); keep one of them" in err and "\n" not in err
    assert not (tmp_path / "zoo").exists()


def test_out_at_a_file_is_refused_before_ray_starts(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert cli_main(["generate", str(write_config(tmp_path)), "--out", str(tmp_path / "file")]) == 2
    assert "--out " in capsys.readouterr().err and (tmp_path / "file").read_text() == "mine"


def test_wrong_paths_exit_2_with_the_fix(tmp_path, capsys):
    assert cli_main(["generate", str(tmp_path / "nope.yaml")]) == 2
    assert "not found; pass a YAML file" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("networks: [1,\n")
    assert cli_main(["generate", str(tmp_path / "bad.yaml")]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err
    assert cli_main(["info", str(tmp_path)]) == 2
    assert "is not a zoo" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_duplicating(tmp_path):
    """Kill the whole `symzoo generate` process group after its first shard lands, then rerun to completion."""
    cfg = write_config(tmp_path, networks=6, execution={"networks_per_shard": 2})
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "symzoo.cli", "generate", str(cfg), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "models").glob("part-*.parquet")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = {p.name: p.read_bytes() for p in (out / "models").glob("part-*.parquet")}
    assert 1 <= len(survivors) < 6, "the kill should land mid-run"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ids = pd.read_parquet(out / "models", columns=["model_id"])["model_id"]
    assert sorted(ids) == list(range(12))
    for name, data in survivors.items():
        assert (out / "models" / name).read_bytes() == data, "finished shards must not be retrained"
    assert open_zoo(out).manifest["complete"]


def test_divergence_is_a_row_not_a_crash(ray_cluster, tmp_path):
    cfg = write_config(
        tmp_path, networks=1, variants=["sigma_asym"], hyperparameters={"lr": 1.0e30, "epochs": 2, "weight_decay": 0.0}
    )
    out = tmp_path / "zoo"
    assert generate(cfg, out, show_progress=False).ok
    row = open_zoo(out).frame.iloc[0]
    assert row["status"] == "diverged" and "non-finite" in row["reason"]
    assert torch.isnan(torch.tensor(row["test_acc"]))


def test_packed_generation_writes_the_same_zoo(ray_cluster, tiny_zoo, tmp_path):
    """Same schema, ids, inits and statuses; exact equality of the training itself is shown in float64 by
    tests/test_packed.py (float32 rounding differs between batched and plain kernels)."""
    out = tmp_path / "packed"
    training = {**TINY["training"], "pack_size": 4}
    assert generate(write_config(tmp_path, training=training), out, show_progress=False).ok
    single, packed = open_zoo(tiny_zoo), open_zoo(out)
    schemas = [pq.read_schema(next((z / "models").glob("*.parquet"))) for z in (out, tiny_zoo)]
    assert schemas[0].equals(schemas[1], check_metadata=False)
    metadata = [{k: v for k, v in s.metadata.items() if k != CONFIG_HASH_KEY.encode()} for s in schemas]
    assert metadata[0] == metadata[1], "the same layouts and schema version; only the recipe's hash differs"
    assert schemas[0].metadata[CONFIG_HASH_KEY.encode()] != schemas[1].metadata[CONFIG_HASH_KEY.encode()]
    assert np.array_equal(single.weights("init"), packed.weights("init"))
    cols = ["model_id", "variant", "status", "epochs_done", "lr"]
    pd.testing.assert_frame_equal(single.frame[cols], packed.frame[cols])
    assert np.allclose(single.frame["test_acc"], packed.frame["test_acc"], atol=0.05)


def test_auto_pack_size_packs_only_adamw_on_gpus():
    import torch

    from symzoo.pipelines.shard import resolve_pack_size

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_pack_size({"pack_size": "auto", "optimizer": "adamw"}, cpu) == 1
    assert resolve_pack_size({"pack_size": "auto", "optimizer": "adamw"}, gpu) == 32
    assert resolve_pack_size({"pack_size": "auto", "optimizer": "sgd"}, gpu) == 1
    assert resolve_pack_size({"pack_size": 8, "optimizer": "adamw"}, cpu) == 8
    assert resolve_pack_size({"pack_size": "auto", "optimizer": "adamw"}, cpu, inr=True) == 16
    assert resolve_pack_size({"pack_size": "auto", "optimizer": "adamw"}, gpu, inr=True) == 1024


def test_auto_compile_only_for_packs_on_gpus():
    from symzoo.pipelines.shard import resolve_compile

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    auto = {"pack_size": "auto", "optimizer": "adamw", "compile": "auto"}
    assert resolve_compile(auto, gpu) is True
    assert resolve_compile(auto, cpu) is False
    assert resolve_compile({**auto, "pack_size": 1}, gpu) is False  # the one-network trainer is never compiled
    assert resolve_compile({**auto, "compile": False}, gpu) is False
    assert resolve_compile({**auto, "compile": True, "pack_size": 4}, cpu) is True


def test_weights_are_read_without_extra_copies(tiny_zoo):
    """One shard, no filter: a view of Arrow's buffer; several shards: one array, filled once."""
    import pyarrow as pa

    from symzoo.zoo.store import fixed_size_to_numpy

    shard = next((tiny_zoo / "models").glob("*.parquet"))
    column = pq.read_table(shard, columns=["weights_final"])["weights_final"].combine_chunks()
    view = fixed_size_to_numpy(pa.chunked_array([column]), column.type.byte_width // 4)
    assert not view.flags.owndata and not view.flags.writeable
    zoo = open_zoo(tiny_zoo)
    full, some = zoo.weights("final"), zoo.weights("final", variant="w_asym", trainable_only=True)
    assert np.array_equal(some, full[1::2][:, zoo.layout("w_asym").trainable_index])
    assert np.array_equal(zoo.weights("final", model_ids=[4, 1]), full[[1, 4]])


def test_a_failed_network_has_nan_final_weights(tmp_path):
    from symzoo.pipelines.shard import layouts_for, result_row
    from symzoo.zoo.config import validate
    from symzoo.zoo.data import load_dataset
    from symzoo.zoo.plan import plan_zoo
    from symzoo.zoo.store import fixed_size_to_numpy, rows_to_table

    cfg = validate({**TINY, "networks": 1, "variants": ["standard"]})
    data = load_dataset("digits")
    spec = plan_zoo(1, ["standard"], zoo_seed=3)[0]
    layouts = {v: lay.to_json() for v, lay in layouts_for(cfg, data).items()}
    init = torch.zeros(layouts["standard"]["size"])
    table = rows_to_table([result_row(cfg, spec, init, None, "RuntimeError: out of memory")], layouts, [1])
    assert table["status"].to_pylist() == ["failed"] and "out of memory" in table["reason"][0].as_py()
    assert np.isnan(fixed_size_to_numpy(table["weights_final"], layouts["standard"]["size"])).all()
    assert not np.isnan(fixed_size_to_numpy(table["weights_init"], layouts["standard"]["size"])).any()


def test_info_prints_tables_and_writes_a_plot(tiny_zoo, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (pip install -e '.[plots]')")
    png = tmp_path / "acc.png"
    assert cli_main(["info", str(tiny_zoo), "--verify", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert (
        "6 of 6 networks, complete" in out
        and "w_asym: 60634 trainable" in out
        and "stratified_mean" in out
        and "median" in out
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_an_unreachable_cluster_address_fails_fast_and_writes_nothing(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a loopback port that nobody serves
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "zoo"
    assert cli_main(["generate", str(write_config(tmp_path)), "--out", str(out), "--address", f"127.0.0.1:{port}"]) == 2
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in capsys.readouterr().err
    assert not out.exists()


def test_missing_data_exits_2_with_where_it_looked_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYMZOO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SYMZOO_SHARED_DATA", str(tmp_path / "nowhere"))
    monkeypatch.delenv("SYMZOO_CIFAR10_NPZ", raising=False)
    monkeypatch.setattr("symzoo.zoo.data.REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "zoo"
    config = write_config(tmp_path, data={"name": "cifar10", "size": 16})
    assert cli_main(["generate", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("symzoo: error: cifar10 not found") and "SYMZOO_CIFAR10_NPZ" in err and "\n" not in err
    assert not out.exists()


def test_plan_says_what_generate_would_do(tiny_zoo, tmp_path, capsys):
    config = write_config(tmp_path)
    assert cli_main(["plan", str(config), "--out", str(tiny_zoo)]) == 0
    out = capsys.readouterr().out
    assert "6 networks = 3 samples x 1 replicate(s) x 2 variant(s)" in out and "3 of 3 shards already" in out
    assert "generate would refuse" not in out
    assert cli_main(["plan", str(write_config(tmp_path, networks=4)), "--out", str(tiny_zoo)]) == 0
    assert "generate would refuse" in capsys.readouterr().out
    (tmp_path / "a file").write_text("x")
    assert cli_main(["plan", str(config), "--out", str(tmp_path / "a file")]) == 0
    assert "is a file: generate would refuse it" in capsys.readouterr().out
    (tmp_path / "other" / "sub").mkdir(parents=True)
    assert cli_main(["plan", str(config), "--out", str(tmp_path / "other")]) == 0
    assert "holds files but no zoo: generate would refuse it" in capsys.readouterr().out


def test_a_stored_network_evaluates_in_one_call_to_its_recorded_accuracy(tiny_zoo):
    zoo = open_zoo(tiny_zoo)
    row = zoo.frame.iloc[1]
    got = zoo.evaluate(int(row["model_id"]))
    assert got["accuracy"] == pytest.approx(row["test_acc"], abs=1e-6)
    assert got["loss"] == pytest.approx(row["test_loss"], rel=1e-5)
    assert zoo.evaluate(int(row["model_id"]), split="train")["accuracy"] == pytest.approx(row["train_acc"], abs=1e-6)


def test_shards_group_networks_of_similar_length(tmp_path):
    """A GPU pack runs as long as its longest network: shards hold neighbouring epoch counts, ids keep plan order."""
    from symzoo.pipelines.generate import plan_units
    from symzoo.zoo.config import load_config

    cfg = load_config(write_config(tmp_path, networks=20, hyperparameters={"epochs": {"randint": [10, 40]}}))
    units = plan_units(cfg, tmp_path / "zoo")
    specs = [s for u in units for s in u.payload]
    assert sorted(s.model_id for s in specs) == list(range(40))
    epochs = [s.hparams.epochs for s in specs]
    assert epochs == sorted(epochs) and len(set(epochs)) > 5
    for u in units:  # among equal lengths, plan order
        ids = [s.model_id for s in u.payload]
        pairs = zip(u.payload, u.payload[1:], strict=False)
        assert all(a.model_id < b.model_id for a, b in pairs if a.hparams.epochs == b.hparams.epochs), ids


def test_shard_code_without_ray_stores_what_the_ray_zoo_stores(tiny_zoo, tmp_path):
    """``python -m symzoo.pipelines.local zoo`` (for GPU boxes without Ray) runs the workers' shard code with Ray
    unimportable and writes the same rows, weights included, as ``symzoo generate`` through Ray: a zoo that opens."""
    out = tmp_path / "no_ray"
    script = (
        "import sys, torch; sys.modules['ray'] = None; torch.set_num_threads(1); "  # as a 1-CPU Ray task
        "from symzoo.pipelines.local import main; "
        f"main(['zoo', {str(write_config(tmp_path))!r}, '--device', 'cpu', '--out', {str(out)!r}])"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "networks/hour" in run.stdout and "paper 74.8% / 73.8%" in run.stdout
    cols = ["model_id", "variant", "status", "test_acc", "weights_final"]
    mine = pd.read_parquet(out / "models", columns=cols).sort_values("model_id").reset_index(drop=True)
    theirs = pd.read_parquet(tiny_zoo / "models", columns=cols).sort_values("model_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.drop(columns="weights_final"), theirs.drop(columns="weights_final"))
    assert all(np.array_equal(a, b) for a, b in zip(mine.weights_final, theirs.weights_final, strict=True))
    assert (
        open_zoo(out).complete and open_zoo(out).manifest["config_hash"] == open_zoo(tiny_zoo).manifest["config_hash"]
    )


def test_a_pack_out_of_gpu_memory_is_retried_in_smaller_packs(tmp_path, monkeypatch, capsys):
    """A pack too big for the GPU is split, not lost: every network trains, the shard's later packs start at the
    size that fitted, and the rows are those of a run with room to spare (float64: rounding cannot hide a change).
    """
    import symzoo.pipelines.shard as shard
    from symzoo.zoo.config import load_config

    training = {**TINY["training"], "pack_size": 8}
    cfg = load_config(write_config(tmp_path, networks=5, training=training, execution={"networks_per_shard": 10}))
    (specs,) = shard.shard_specs(cfg)
    real_train_pack, pack_sizes = shard.train_pack, []

    def train_pack_on_a_small_gpu(models, *args, **kwargs):
        pack_sizes.append(len(models))
        if len(models) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_train_pack(models, *args, **kwargs)

    torch.set_default_dtype(torch.float64)
    try:
        data = shard.dataset_from(cfg)
        roomy = shard.train_specs(specs, cfg, data)
        monkeypatch.setattr(shard, "train_pack", train_pack_on_a_small_gpu)
        cramped = shard.train_specs(specs, cfg, data)
    finally:
        torch.set_default_dtype(torch.float32)
    assert pack_sizes == [5, 2, 2, 1, 2, 2, 1]  # standard: 5 fails, then 2+2+1; w_asym starts at 2
    assert "a pack of 5 ran out of GPU memory; retrying in packs of 2" in capsys.readouterr().err
    assert [r["status"] for r in cramped] == ["ok"] * 10
    for a, b in zip(roomy, cramped, strict=True):
        assert (a["model_id"], a["epochs_done"], a["test_acc"]) == (b["model_id"], b["epochs_done"], b["test_acc"])
        assert np.allclose(a["weights_final"], b["weights_final"], atol=1e-6, rtol=0)


def test_plan_names_the_pack_sizes_a_compiled_worker_builds_graphs_for(tmp_path, monkeypatch):
    """The plan's preview of compiled graphs is what training does: packs start full (or at a shard's
    remainder) and shrink through powers of two as networks finish. Compilation is recorded, not run."""
    from symzoo.pipelines.shard import compiled_pack_sizes, dataset_from, shard_specs, train_specs, training_line
    from symzoo.zoo import packed
    from symzoo.zoo.config import load_config

    sizes_run = set()

    def recording_compile(forward):
        def run(params, buffers, x):
            sizes_run.add(x.shape[0])  # (K, B, ...): the pack size a graph would be built for
            return forward(params, buffers, x)

        return run

    monkeypatch.setattr(packed, "compile_packed", recording_compile)
    training = {**TINY["training"], "pack_size": 16, "compile": True}
    hyperparameters = {**TINY["hyperparameters"], "epochs": {"randint": [1, 5]}}
    cfg = load_config(
        write_config(
            tmp_path,
            networks=25,
            hyperparameters=hyperparameters,
            training=training,
            data={"name": "digits", "train_per_class": 10},
            execution={"networks_per_shard": 32},
        )
    )
    data = dataset_from(cfg)
    for shard in shard_specs(cfg):
        train_specs(shard, cfg, data)
    predicted = compiled_pack_sizes(cfg, 16)
    assert predicted == sorted(sizes_run) and 16 in predicted and 9 in predicted  # 9 per variant in the last shard
    assert f"up to {2 * len(predicted)} graphs" in training_line(
        cfg | {"execution": {**cfg["execution"], "gpus_per_task": 1}}
    )


def test_a_full_disk_is_one_line_leaves_no_temporary_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    from symzoo.zoo import location as store

    target = tmp_path / "manifest.json"
    target.write_text("old")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", disk_full)
    with pytest.raises(ZooError, match="no space left on the device writing .*manifest.json; free some and rerun"):
        store.atomic_write_bytes(target, b"new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m.write_text("{}"),
        lambda m: m.write_bytes(b"\x89\xff\x00binary"),
        lambda m: m.write_text(m.read_text()[:200]),
        lambda m: m.unlink(),
    ],
    ids=["emptied", "binary", "truncated", "deleted"],
)
def test_a_damaged_manifest_is_named_and_rebuilt_from_the_shards(ray_cluster, tiny_zoo, tmp_path, capsys, damage):
    out = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, out)
    damage(out / "manifest.json")
    assert cli_main(["info", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"rebuild it from the shards with `symzoo generate <the zoo's config> --out {out}`" in err
    assert "\n" not in err
    report = generate(write_config(tmp_path), out, show_progress=False)
    assert report.done == [] and len(report.skipped) == 3  # every shard passed its checks: nothing retrained
    assert cli_main(["info", str(out), "--verify"]) == 0
    assert "6 of 6 networks, complete" in capsys.readouterr().out


@pytest.mark.slow
def test_sigterm_mid_run_ends_in_one_line_and_the_rerun_resumes(tmp_path):
    """SIGTERM once Ray is up: Ray's own handler would abort with a C++ stack dump; symzoo stops as on Ctrl-C
    (exit 143, one line), shuts Ray down, keeps the shards that landed, and a rerun finishes the zoo."""
    cfg = write_config(tmp_path, networks=6, execution={"networks_per_shard": 2})
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "symzoo.cli", "generate", str(cfg), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "models").glob("part-*.parquet")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "symzoo: terminated; rerun the same command to resume", err
    assert "SIGTERM received" not in err and "Traceback" not in err
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sorted(pd.read_parquet(out / "models", columns=["model_id"])["model_id"]) == list(range(12))
