"""Bayesian zoos (training.method: elrg) and `symzoo bnn`: what is stored, that fixed entries stay fixed and
variance-free, determinism, the Table 2 stage, and resuming after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import write_zoo

from symzoo.cli import main as cli_main
from symzoo.zoo.bayes import posterior_size
from symzoo.zoo.config import validate
from symzoo.zoo.models import build
from symzoo.zoo.store import open_zoo

BNN = {
    "name": "bnn",
    "seed": 1,
    "data": {"name": "digits"},
    "model": {"arch": "bnn_mlp", "depth": 4, "hidden": 32},
    "variants": ["standard", "w_asym"],
    "networks": 1,
    "replicates": 2,
    "hyperparameters": {"lr": 5e-3, "weight_decay": 0.0, "label_smoothing": 0.0, "epochs": 3},
    "training": {
        "method": "elrg",
        "batch_size": 100,
        "schedule": "constant",
        "warmup_epochs": 0,
        "augment": {"flip": False, "translate": 1, "cutout": 0},
        "elrg": {"test_samples": 3},
    },
    "execution": {"networks_per_shard": 1},
}


@pytest.fixture(scope="module")
def bnn_zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bnn") / "zoo"
    torch.set_num_threads(1)
    write_zoo(out, validate(BNN))
    return out


def test_the_bnn_mlp_is_the_authors_network():
    """Flatten, Linear(3072, 256), LN, ReLU, depth - 1 more blocks... Linear(256, 10); W-Asym fixes 8 entries per
    row of every layer at kappa 0.5."""
    model = build("bnn_mlp", "w_asym", (3, 32, 32), 10, depth=16)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(256, 3072)] + [(256, 256)] * 14 + [(10, 256)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 15
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules()) == 15
    for m in linears:
        assert ((~m.weight_mask.bool()).sum(1) == 8).all()
        fixed = m.weight_fixed[~m.weight_mask.bool()]
        assert 0.3 < float(fixed.std()) < 0.7  # kappa 0.5 times a standard normal
    plain = sum(p.numel() for p in build("bnn_mlp", "standard", (3, 32, 32), 10, depth=8).parameters())
    assert plain == 3072 * 256 + 256 + 6 * (256 * 256 + 256) + 256 * 10 + 10 + 7 * 2 * 256


def test_a_bayesian_zoo_stores_means_variances_and_the_history_of_table_2(bnn_zoo):
    zoo = open_zoo(bnn_zoo)
    frame = zoo.frame
    assert zoo.bayesian and len(frame) == 4 and (frame["status"] == "ok").all()
    for column in ("history_train_loss", "history_train_kl", "history_test_loss", "history_test_acc"):
        assert all(len(h) == 3 for h in frame[column]), column
    last = np.array([h[-1] for h in frame["history_test_ece"]])
    np.testing.assert_allclose(frame["test_ece"], last, rtol=1e-6)  # the scalar is the last epoch's
    assert ((frame["test_ece"] > 0) & (frame["test_ece"] < 1)).all()
    model = build("bnn_mlp", "standard", (1, 8, 8), 10, depth=4, hidden=32)
    assert zoo.posterior().shape == (4, posterior_size(model, 4)) == (4, 5 * (64 * 32 + 32 + 2 * (32 * 32 + 32) + 330))
    # the stored weights are the posterior mean: a network rebuilt from them predicts as well as the history says
    row = frame.iloc[1]
    mean_net = zoo.evaluate(int(row["model_id"]))
    assert mean_net["accuracy"] > 0.3


def test_w_asym_fixed_entries_stay_fixed_and_carry_no_variance_after_training(bnn_zoo):
    zoo = open_zoo(bnn_zoo)
    model_id = int(zoo.frame.loc[zoo.frame["variant"] == "w_asym", "model_id"].iloc[0])
    model, posterior = zoo.bayesian_model(model_id)
    init = zoo.layout("w_asym").unflatten(zoo.weights("init", model_ids=[model_id])[0])
    for name, layer in posterior.layers.items():
        linear = layer.layer[0]
        fixed = ~linear.weight_mask.bool()
        assert fixed.sum() == 8 * linear.weight.shape[0]
        assert torch.all(linear.weight[fixed] == 0) and torch.all(init[name.replace("/", ".") + ".weight"][fixed] == 0)
        assert torch.all(layer.factors[:, fixed] == 0), "no low-rank variance at fixed entries"
        assert torch.all(layer.variance()[fixed] == 0), "no diagonal variance at fixed entries"
        assert torch.all(layer.factors[:, ~fixed].abs().sum(0) > 0)  # trainable entries do carry it
    # the effective weights keep the zoo's constants
    fresh = build("bnn_mlp", "w_asym", (1, 8, 8), 10, asym_seed=BNN["seed"], depth=4, hidden=32)
    for (name, a), b in zip(model.named_buffers(), fresh.buffers(), strict=True):
        assert torch.equal(a, b), name


def test_the_stored_posterior_round_trips_into_a_network(bnn_zoo):
    zoo = open_zoo(bnn_zoo)
    model, posterior = zoo.bayesian_model(0)
    np.testing.assert_array_equal(posterior.state_vector().numpy(), zoo.posterior(model_ids=[0])[0])


def test_the_same_config_gives_the_same_bayesian_zoo(bnn_zoo, tmp_path):
    torch.set_num_threads(1)
    write_zoo(tmp_path / "again", validate(BNN))
    cols = ["model_id", "test_loss", "test_ece", "weights_final", "posterior_final"]
    a = pd.read_parquet(bnn_zoo / "models", columns=cols).sort_values("model_id", ignore_index=True)
    b = pd.read_parquet(tmp_path / "again" / "models", columns=cols).sort_values("model_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b)


def test_the_bnn_stage_prints_table_2_with_verdicts_and_figure_4(bnn_zoo, tmp_path, capsys):
    out = tmp_path / "bnn"
    assert cli_main(["bnn", str(bnn_zoo), "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "| MLP-4 (32 units) |" in table and "| W-Asym MLP-4 (32 units) |" in table
    assert "test accuracy at half time" in table and "Welch p" in table
    assert (out / "figures" / "training_loss.png").stat().st_size > 10_000
    networks = pd.read_parquet(out / "networks.parquet")
    zoo = open_zoo(bnn_zoo)
    np.testing.assert_allclose(networks["test_acc"] / 100, zoo.frame["test_acc"], rtol=1e-6)
    capsys.readouterr()
    assert cli_main(["bnn", str(bnn_zoo), "--out", str(tmp_path / "late"), "--epoch", "9"]) == 2
    assert "--epoch 9 is after the zoo's last epoch (3); pass at most 3" in capsys.readouterr().err
    assert not (tmp_path / "late").exists()


def test_the_bnn_stage_refuses_a_zoo_that_is_not_bayesian(tmp_path, capsys):
    cfg = validate({**BNN, "training": {**BNN["training"], "method": "standard"}, "replicates": 1})
    write_zoo(tmp_path / "plain", cfg)
    assert cli_main(["bnn", str(tmp_path / "plain"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot have the bnn stage: its networks are not Bayesian (set training.method: elrg)" in err
    assert not (tmp_path / "out").exists()


def test_bayesian_training_refuses_packs_with_one_line(tmp_path, capsys):
    path = tmp_path / "packed.yaml"
    path.write_text(yaml.safe_dump({**BNN, "training": {**BNN["training"], "pack_size": 4}}))
    assert cli_main(["generate", str(path), "--out", str(tmp_path / "zoo")]) == 2
    assert "variational (elrg) training runs one network at a time; set pack_size: 1" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_bayesian_zoo_resumes_bit_identical(bnn_zoo, tmp_path):
    """kill -9 of the whole `symzoo generate` after its first shard lands; the rerun trains only what is missing,
    and every network (means, variances, history) is the one an uninterrupted run stores."""
    cfg = tmp_path / "bnn.yaml"
    cfg.write_text(yaml.safe_dump({**BNN, "replicates": 4}))
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "symzoo.cli", "generate", str(cfg), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "models").glob("part-*.parquet")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = {p.name: p.read_bytes() for p in (out / "models").glob("part-*.parquet")}
    assert 1 <= len(survivors) < 8, "the kill should land mid-run"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for name, data in survivors.items():
        assert (out / "models" / name).read_bytes() == data, "finished shards must not be retrained"
    cols = ["model_id", "history_test_acc", "weights_final", "posterior_final"]
    resumed = pd.read_parquet(out / "models", columns=cols).sort_values("model_id", ignore_index=True)
    assert list(resumed["model_id"]) == list(range(8))
    # the first two replicates of each variant are the fixture zoo's networks (same seeds): bit-identical
    reference = pd.read_parquet(bnn_zoo / "models", columns=cols)
    zoo = open_zoo(out)
    for ref in reference.itertuples(index=False):
        spec = open_zoo(bnn_zoo).frame.set_index("model_id").loc[ref.model_id]
        match = zoo.frame[(zoo.frame["variant"] == spec["variant"]) & (zoo.frame["seed"] == spec["seed"])]
        row = resumed.set_index("model_id").loc[int(match["model_id"].iloc[0])]
        assert row["weights_final"] == ref.weights_final and row["posterior_final"] == ref.posterior_final
    assert zoo.manifest["complete"]


def test_resnet110_and_the_bayesian_resnet_options():
    """ResNet110: 18 basic blocks per stage (1,730,714 parameters at width 1, He et al.'s 1.7M); ``model.kappa``
    sets every fixed entry's scale and ``model.fixed_head: false`` leaves the head standard (the CIFAR-100 rows)."""

    def count(c_in: int, c_out: int, k: int) -> int:
        return c_in * c_out * k * k  # convolutions without bias, a norm after each

    expected = count(3, 16, 3) + 2 * 16  # stem conv and its norm
    c_in = 16
    for c in (16, 32, 64):
        for _ in range(18):
            expected += count(c_in, c, 3) + count(c, c, 3) + 4 * c
            if c_in != c:
                expected += count(c_in, c, 1) + 2 * c  # projection shortcut and its norm
            c_in = c
    expected += 64 * 10 + 10
    model = build("resnet110", "standard", (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == expected == 1_730_714
    asym = build("resnet20", "w_asym", (3, 32, 32), 100, width=2, kappa=0.5, fixed_head=False)
    convs = [m for m in asym.modules() if getattr(m, "weight_mask", None) is not None]
    assert asym.head.weight_mask is None and bool(asym.head.trainable_mask().all()), "a standard last layer"
    fixed = torch.cat([m.weight_fixed[~m.weight_mask.bool()] for m in convs])
    assert 0.45 < float(fixed.std()) < 0.55  # kappa 0.5 (Table 6's default is 2)


def test_variational_training_of_a_convolutional_network(digits):
    """The posterior also covers convolutions (factors start at zero, as the authors'), through the same trainer."""
    from symzoo.zoo.bayes_train import ElrgSettings, train_elrg
    from symzoo.zoo.plan import HParams
    from symzoo.zoo.train import Recipe

    model = build("resnet8", "w_asym", digits.in_shape, 10, init_seed=0)
    hp = HParams(lr=1e-3, weight_decay=0.0, label_smoothing=0.0, epochs=2)
    recipe = Recipe(batch_size=200, warmup_epochs=0, schedule="constant", amp=False)
    result = train_elrg(model, digits.head(600, 200), hp, recipe, ElrgSettings(test_samples=2, init_log_var=-12), 0)
    assert result.status == "ok" and len(result.history["test_ece"]) == 2
    assert result.posterior.numel() == posterior_size(model, 4)
    assert result.test_acc > 0.15  # above chance after two short epochs


def test_cifar100_loads_from_its_standard_folder_and_is_named_when_absent(tmp_path):
    import pickle

    from symzoo.errors import SymzooError
    from symzoo.zoo.data import load_dataset

    with pytest.raises(SymzooError, match="cifar100 not found .* unpack cifar-100-python.tar.gz"):
        load_dataset("cifar100", root=tmp_path)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 300), ("test", 100)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": list(range(100)) * (n // 100),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    data = load_dataset("cifar100", root=tmp_path, train_per_class=2)
    assert data.num_classes == 100 and tuple(data.x_train.shape) == (200, 3, 32, 32) and len(data.y_test) == 100
    (folder / "test").write_bytes(pickle.dumps({b"data": b"", b"labels": []}))
    with pytest.raises(SymzooError, match="is not a CIFAR-100 batch file"):
        load_dataset("cifar100", root=tmp_path)


def test_the_papers_table_2_rows_are_found_for_their_models():
    from symzoo.analysis.paper import table2_row

    def row(**patch):
        cfg = validate({**BNN, "data": {"name": "cifar10"}, "model": patch})
        return table2_row(cfg)

    assert row(arch="bnn_mlp", depth=16) == "mlp16" and row(arch="bnn_mlp", depth=8) == "mlp8"
    assert row(arch="bnn_mlp", depth=16, hidden=64) is None and row(arch="resnet110") == "resnet110"
    cifar100 = validate(
        {**BNN, "data": {"name": "cifar100"}, "model": {"arch": "resnet20", "width": 2, "fixed_head": False}}
    )
    assert table2_row(cifar100) == "resnet20_ln_cifar100"
