"""``symzoo import small-cnn-zoo``: a Small CNN Zoo data set in, an ordinary symzoo zoo out (issue 38).

The fixture is written by code of its own in the zoo's layout (weights.npy rows of TensorFlow-order kernels, bias
before kernel, metrics.csv with config.* columns and steps, layout.csv), and its networks' logits are computed by
a plain numpy forward pass of the Keras network (valid 3x3 convolutions of stride 2, global average pooling, dense)
on images scaled to [-1, 1]; nothing of symzoo's model or importer writes or checks it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from symzoo.cli import main as cli_main
from symzoo.zoo.store import open_zoo

STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)
SHAPES = [  # the source's variables in its layout.csv order: each layer's bias, then its kernel (HWIO / IO)
    ("sequential/conv2d/bias:0", (16,)),
    ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
    ("sequential/conv2d_1/bias:0", (16,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_2/bias:0", (16,)),
    ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
    ("sequential/dense/bias:0", (10,)),
    ("sequential/dense/kernel:0", (16, 10)),
]


def numpy_forward(row: np.ndarray, images: np.ndarray, activation: str) -> np.ndarray:
    """The Keras network's logits: ``images`` (N, H, W, 1) already in [-1, 1]."""
    tensors, offset = {}, 0
    for name, shape in SHAPES:
        size = int(np.prod(shape))
        tensors[name] = row[offset : offset + size].reshape(shape).astype(np.float64)
        offset += size
    act = np.tanh if activation == "tanh" else (lambda v: np.maximum(v, 0))
    x = images.astype(np.float64)
    for layer in ("conv2d", "conv2d_1", "conv2d_2"):
        k, b = tensors[f"sequential/{layer}/kernel:0"], tensors[f"sequential/{layer}/bias:0"]
        oh, ow = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
        out = np.zeros((x.shape[0], oh, ow, k.shape[3]))
        for i in range(3):
            for j in range(3):
                out += x[:, i : i + 2 * oh : 2, j : j + 2 * ow : 2, :] @ k[i, j]
        x = act(out + b)
    pooled = x.mean((1, 2))
    return pooled @ tensors["sequential/dense/kernel:0"] + tensors["sequential/dense/bias:0"]


def write_small_cnn_zoo(root, relu: int = 4, tanh: int = 2, nan_network: int | None = 1):
    """``relu`` + ``tanh`` runs of 9 checkpoints each, rows shuffled; returns (weights, metrics) as written."""
    rng = np.random.default_rng(0)
    width = sum(int(np.prod(s)) for _, s in SHAPES)
    rows, weights = [], []
    for n in range(relu + tanh):
        activation = "relu" if n < relu else "tanh"
        for step in STEPS:
            weights.append(rng.normal(0, 0.3, width).astype(np.float32))
            if n == nan_network and step == STEPS[-1]:
                weights[-1][5] = np.nan
            rows.append({
                "config.activation": activation, "config.learning_rate": 0.001 * (n + 1), "config.l2reg": 1e-5 * n,
                "config.optimizer": "adam" if n % 2 else "sgd", "config.dropout": 0.1 * (n % 3),
                "config.dataset": "digits", "modeldir": f"run_{n:03d}", "step": step,
                "test_accuracy": 0.5 + 0.01 * n + step / 1000, "test_loss": 1.0 - step / 200,
                "train_accuracy": 0.6 + 0.01 * n, "train_loss": 0.9 - step / 200,
            })  # fmt: skip
    order = rng.permutation(len(rows))
    metrics = pd.DataFrame(rows).iloc[order].reset_index(drop=True)
    matrix = np.stack(weights)[order]
    root.mkdir(parents=True)
    np.save(root / "weights.npy", matrix)
    metrics.to_csv(root / "metrics.csv", index=False)
    starts = np.cumsum([0] + [int(np.prod(s)) for _, s in SHAPES])
    layout = pd.DataFrame(
        {
            "varname": [n for n, _ in SHAPES],
            "start_idx": starts[:-1],
            "end_idx": starts[1:],
            "shape": [str(s) for _, s in SHAPES],
        }  # fmt: skip
    )
    layout.to_csv(root / "layout.csv", index=False)
    return matrix, metrics


@pytest.fixture(scope="module")
def imported(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("scz") / "fashion"
    matrix, metrics = write_small_cnn_zoo(root)
    out = tmp_path_factory.mktemp("zoos") / "scz"
    args = ["import", "small-cnn-zoo", str(root), "--out", str(out), "--data", "digits", "--data-size", "28"]
    assert cli_main([*args, "--no-progress"]) == 0
    return open_zoo(out), matrix, metrics, root, out


def test_logits_equal_the_source_networks_at_every_checkpoint(imported):
    zoo, matrix, metrics, _, _ = imported
    data = zoo.dataset()
    images = data.x_test[:32]
    scaled = (images.double() / 127.5 - 1).permute(0, 2, 3, 1).numpy()  # the Small CNN Zoo's input scaling
    assert zoo.config["data"]["scaling"] == "symmetric"
    for model_id, run in ((0, "run_000"), (2, "run_002")):  # sample i: the i-th relu run by name
        for step, which in ((0, "init"), (20, "epoch_20"), (86, "final")):
            source_row = metrics.index[(metrics["modeldir"] == run) & (metrics["step"] == step)][0]
            expected = numpy_forward(matrix[source_row], scaled, "relu")
            with torch.no_grad():
                ours = zoo.model(model_id, which)(data.normalize(images)).double().numpy()
            assert np.allclose(ours, expected, atol=1e-5), (run, step)


def test_rows_metadata_and_the_networks_left_out(imported, capsys):
    zoo, _, metrics, _, out = imported
    frame = zoo.frame
    assert len(frame) == 4 and zoo.complete and zoo.config["model"]["activation"] == "relu"
    assert frame["lr"].tolist() == pytest.approx([0.001, 0.002, 0.003, 0.004])
    assert frame["weight_decay"].tolist() == pytest.approx([0.0, 1e-5, 2e-5, 3e-5])
    assert frame["epochs"].tolist() == [86] * 4
    assert frame["status"].tolist() == ["ok", "diverged", "ok", "ok"]  # the NaN run is kept, not dropped
    assert frame["test_acc"].tolist() == pytest.approx([0.5 + 0.01 * n + 0.086 for n in range(4)])
    assert zoo.weight_kinds() == ["init", "final", *(f"epoch_{s}" for s in STEPS[1:-1])]
    source = pd.read_parquet(out / "source.parquet")
    assert source["model_id"].tolist() == [0, 1, 2, 3]
    assert source["modeldir"].tolist() == ["run_000", "run_001", "run_002", "run_003"]
    assert source["config.optimizer"].tolist() == ["sgd", "adam", "sgd", "adam"]
    assert (source["step"] == 86).all()


def test_the_other_activation_is_its_own_zoo(ray_cluster, imported, tmp_path, capsys):
    _, _, _, root, _ = imported
    args = ["import", "small-cnn-zoo", str(root), "--out", str(tmp_path / "tanh"), "--data", "digits"]
    assert cli_main([*args, "--data-size", "28", "--activation", "tanh", "--no-progress"]) == 0
    assert "not importing 4 networks with activation relu" in capsys.readouterr().err
    zoo = open_zoo(tmp_path / "tanh")
    assert len(zoo.frame) == 2 and zoo.config["model"]["activation"] == "tanh"


def test_a_damaged_source_is_one_line(tmp_path, capsys):
    root = tmp_path / "src"
    write_small_cnn_zoo(root, relu=1, tanh=0, nan_network=None)
    (root / "weights.npy").write_bytes((root / "weights.npy").read_bytes()[:300])
    args = ["import", "small-cnn-zoo", str(root), "--out", str(tmp_path / "z"), "--data", "digits"]
    assert cli_main([*args, "--data-size", "28"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "weights.npy is truncated" in err
    assert not (tmp_path / "z").exists()


def test_an_nfn_export_reads_back_as_the_same_networks_and_split(ray_cluster, imported, tmp_path):
    """Export to NFN's layout, import the export: every finite network's weights at every checkpoint, its
    hyperparameters and accuracy come back; NFN's own reading (final rows at step 86, its order file, the later
    half as test) puts every network of symzoo's test split in its test set."""
    zoo, _, _, _, _ = imported
    exported = tmp_path / "nfn"
    assert cli_main(["export", str(zoo.path), "nfn", "--out", str(exported)]) == 0
    assert sorted(p.name for p in exported.iterdir()) == [
        "layout.csv", "metrics.csv.gz", "nfn_order.csv", "splits.csv", "weights.npy"
    ]  # fmt: skip
    args = ["import", "small-cnn-zoo", str(exported), "--out", str(tmp_path / "back"), "--data", "digits"]
    assert cli_main([*args, "--data-size", "28", "--no-progress"]) == 0
    back = open_zoo(tmp_path / "back")
    source = pd.read_parquet(tmp_path / "back" / "source.parquet").set_index("model_id")["symzoo.model_id"]
    assert len(back.frame) == 3  # the diverged network is left out: NFN's loader refuses non-finite weights
    for kind in zoo.weight_kinds():
        original = zoo.weights(kind)
        again = back.weights(kind)
        for new_id, old_id in source.items():
            assert np.array_equal(again[new_id], original[old_id]), (kind, old_id)
    old = zoo.frame.set_index("model_id")
    for new_id, old_id in source.items():
        row = back.frame.set_index("model_id").loc[new_id]
        assert row["lr"] == old.loc[old_id, "lr"] and row["test_acc"] == pytest.approx(old.loc[old_id, "test_acc"])
    # NFN's ZooDataset: rows in order-file order, finals (step 86) only, the later half is its test set
    order = pd.read_csv(exported / "nfn_order.csv", header=None).values.flatten()
    metrics = pd.read_csv(exported / "metrics.csv.gz").iloc[order]
    finals = metrics[metrics["step"] == 86].reset_index(drop=True)
    nfn_test = set(finals["symzoo.model_id"][len(finals) // 2 :])
    symzoo_test = set(zoo.splits().query("split == 'test'")["model_id"]) & set(source)
    assert symzoo_test and symzoo_test <= nfn_test, (symzoo_test, nfn_test)
    assert cli_main(["export", str(zoo.path), "nfn", "--out", str(exported)]) == 2  # never over an existing folder


def test_two_zoos_in_folders_of_one_name_load_as_themselves_through_the_cards_snippet(
    ray_cluster, imported, tmp_path, monkeypatch
):
    """Wrong data is never served: datasets' cache of a folder build is keyed by the folder's name, so the card
    names the files; two zoos both called zoo/ (4 and 2 networks) each load their own rows from one cache."""
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is the [hf] extra")
    from symzoo.zoo.card import HF_LOAD_MODELS

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    _, _, _, root, _ = imported
    counts = {}
    for activation in ("relu", "tanh"):
        out = tmp_path / activation / "zoo"
        args = ["import", "small-cnn-zoo", str(root), "--out", str(out), "--data", "digits", "--data-size", "28"]
        assert cli_main([*args, "--activation", activation, "--no-progress"]) == 0
        assert HF_LOAD_MODELS in (out / "README.md").read_text()
        loaded = eval(HF_LOAD_MODELS.replace("ZOO", str(out)), {"datasets": datasets})
        counts[activation] = sorted(loaded["model_id"])
    assert counts == {"relu": [0, 1, 2, 3], "tanh": [0, 1]}
