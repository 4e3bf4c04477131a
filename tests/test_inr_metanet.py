"""INR classification in `symzoo metanet` (issue 39): the class target, the split by image, permutation
augmentation of standard SIRENs, and the equivariant metanets on SIREN weight spaces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from symzoo.analysis.metanet_run import RunSpec, run_metanet, scores
from symzoo.analysis.metanets import build_metanet
from symzoo.cli import main as cli_main
from symzoo.errors import ZooError
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build
from symzoo.zoo.splits import image_split, seeded_splits
from symzoo.zoo.symmetry import FlatPermutation, structural_spec

ZOO = {
    "name": "digits_inr_mn",
    "task": "inr",
    "data": {"name": "digits", "train_per_class": 12, "test_per_class": 2},
    "model": {"arch": "siren"},
    "variants": ["standard", "w_asym", "sigma_asym"],
    "networks": 140,
    "hyperparameters": {"lr": 1e-3, "weight_decay": 0.0, "label_smoothing": 0.0, "epochs": 20},
    "execution": {"networks_per_shard": 70},
}


def image_frame(train_per_class: int, test_per_class: int, variants: int = 2) -> pd.DataFrame:
    rows = []
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for c in range(10):
            rows += [(split, c)] * per_class
    images = pd.DataFrame(rows, columns=["image_split", "image_class"]).assign(sample=lambda f: range(len(f)))
    frame = pd.concat([images] * variants).sort_values("sample", kind="stable", ignore_index=True)
    return frame.assign(model_id=range(len(frame)))


def test_an_inr_zoo_splits_by_image_test_images_test_and_a_twelfth_of_each_class_val():
    frame = image_frame(24, 5)
    by_sample = image_split(frame, seed=3)
    images = frame.drop_duplicates("sample").set_index("sample")
    split = images.index.map(by_sample)
    assert (split[images["image_split"] == "test"] == "test").all()
    assert (split[images["image_split"] == "train"] != "test").all()
    val = images[split == "val"]
    assert val.groupby("image_class").size().eq(2).all() and len(val) == 20  # 24 / 12 per class
    assert image_split(frame, seed=3) == by_sample and image_split(frame, seed=4) != by_sample
    splits = seeded_splits(frame, 3).merge(frame[["model_id", "sample"]])
    assert splits.groupby("sample")["split"].nunique().eq(1).all()  # both variants of an image in one part


def test_scores_of_logits_are_accuracy_and_cross_entropy():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]], np.float32))
    acc, nll = scores(np.array([0, 1, 1]), logits)
    assert acc == pytest.approx(2 / 3)
    assert nll == pytest.approx(-(math.log(0.7) + math.log(0.6) + math.log(0.4)) / 3, rel=1e-6)
    assert all(math.isnan(v) for v in scores(np.array([0]), np.array([[np.nan, 0.0]])))


def test_a_flat_permutation_of_a_standard_siren_computes_the_same_image():
    torch.manual_seed(0)
    model = build("siren", "standard", (2,), 1)
    layout = ParamLayout.from_model(model)
    flat = layout.flatten(model).unsqueeze(0).repeat(3, 1)
    moved = FlatPermutation(layout, structural_spec(model))(flat, torch.Generator().manual_seed(1))
    x = torch.rand(64, 2) * 2 - 1
    for row in moved:
        assert not torch.equal(row, flat[0])  # the entries moved
        twin = layout.load_into(build("siren", "standard", (2,), 1), row)
        torch.testing.assert_close(twin(x), model(x), atol=1e-6, rtol=0)
    w_asym = build("siren", "w_asym", (2,), 1)
    with pytest.raises(ValueError, match="leaves fixed entries out"):
        FlatPermutation(ParamLayout.from_model(w_asym), structural_spec(w_asym))


@pytest.mark.parametrize("metanet", ["mlp", "statnn", "deepsets"])
def test_a_class_target_run_learns_classes_written_into_the_inputs(metanet):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 240)
    inputs = rng.normal(size=(240, 40)).astype(np.float32)
    inputs[np.arange(240), labels] += 4.0  # the class is readable from the weights
    if metanet == "deepsets":  # a set function: the class as the mean of the set
        inputs = (rng.normal(size=(240, 40)) * 0.1 + labels[:, None]).astype(np.float32)
    idx = {"train": np.arange(160), "val": np.arange(160, 200), "test": np.arange(200, 240)}
    spec = RunSpec("standard", metanet, 5e-3, 1, epochs=30, batch_size=32, classes=4)
    row = run_metanet(spec, inputs, labels.astype(np.float32), np.arange(240), idx)
    assert row["test_accuracy"] > 0.8 and row["test_nll"] < 1.0
    assert len(row["curve_val_accuracy"]) == 30 and "test_r2" not in row
    assert set(row["test_pred"]) <= {0.0, 1.0, 2.0, 3.0}
    assert np.mean(np.array(row["test_pred"]) == labels[200:]) == pytest.approx(row["test_accuracy"])


def test_augmentation_needs_a_permuter_and_the_regression_baselines_refuse_classes():
    idx = {"train": np.arange(4), "val": np.arange(4, 6), "test": np.arange(6, 8)}
    x, y = np.zeros((8, 5), np.float32), np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="no permuter"):
        run_metanet(RunSpec("standard", "mlp", 1e-3, 0, epochs=1, classes=2, augment=True), x, y, np.arange(8), idx)
    with pytest.raises(ValueError, match="needs a neural metanet"):
        run_metanet(RunSpec("standard", "ridge", 1.0, 0, classes=2), x, y, np.arange(8), idx)


@pytest.mark.parametrize("metanet", ["nfn_np", "nfn_hnp", "gmn"])
def test_equivariant_metanets_read_sirens_and_ignore_their_permutations(metanet):
    pytest.importorskip("nfn")
    pytest.importorskip("torch_geometric")
    from symzoo.analysis.weight_space import WeightSpace

    torch.manual_seed(0)
    space = WeightSpace(build("siren", "standard", (2,), 1))
    flat = torch.randn(4, space.layout.size) * 0.1
    net = build_metanet(metanet, space.layout.size, space, outputs=10)
    net.fit_inputs(flat, torch.tensor([0, 1, 2, 2]))
    moved = FlatPermutation(space.layout, structural_spec(space.template))(flat, torch.Generator().manual_seed(2))
    out = net(flat)
    assert out.shape == (4, 10)
    torch.testing.assert_close(net(moved), out, atol=1e-5, rtol=1e-5)
    frequencies = torch.tensor([1, 1, 2, 0] + [0] * 6) + 1.0
    torch.testing.assert_close(net.readout[-1].bias, torch.log(frequencies / frequencies.sum()))


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    from conftest import write_zoo

    from symzoo.zoo.config import validate

    out = tmp_path_factory.mktemp("inr") / "zoo"
    write_zoo(out, validate(ZOO))
    return out


@pytest.fixture(scope="module")
def stage_out(ray_cluster, zoo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("inr_mn") / "run"
    args = ["--metanets", "mlp,statnn", "--lrs", "1e-3,1e-2", "--seeds", "2", "--epochs", "3", "--no-progress"]
    assert cli_main(["metanet", str(zoo_dir), "--out", str(out), *args]) == 0
    return out


def test_the_cli_classifies_inrs_by_image_with_permuted_standard_mlp_inputs(stage_out, zoo_dir):
    from symzoo.zoo.store import open_zoo

    frame = open_zoo(zoo_dir).frame
    table = (stage_out / "table.md").read_text()
    assert "classifying the image an INR fits" in table and "| standard acc. (%) |" in table
    assert "no published INR benchmark on digits" in table
    assert "for MLP on standard (+ perm" in table and "split: by image" in table
    predictions = pd.read_parquet(stage_out / "predictions.parquet")
    assert {"true_class", "pred_class"} <= set(predictions.columns)
    truth = predictions.merge(frame[["model_id", "image_class", "image_split"]], on="model_id")
    assert (truth["true_class"] == truth["image_class"]).all() and (truth["image_split"] == "test").all()
    assert predictions.groupby(["variant", "metanet", "seed"]).size().eq(20).all()  # the 20 test images
    runs = pd.concat(pd.read_parquet(p) for p in (stage_out / "runs").glob("*.parquet"))
    augmented = runs.loc[runs["augment"], ["variant", "metanet"]].drop_duplicates()
    assert augmented.values.tolist() == [["standard", "mlp"]]
    verdicts = pd.read_parquet(stage_out / "verdicts.parquet")
    assert len(verdicts) == 2 and verdicts["claim"].str.contains("W-Asym INRs classified better").all()
    assert (stage_out / "figures" / "confusion.png").stat().st_size > 0
    assert (stage_out / "figures" / "inr_fits.png").stat().st_size > 0


def test_auto_augmentation_leaves_a_zoo_of_one_shared_init_unpermuted(zoo_dir):
    """Permuting INRs fitted from one init throws away the alignment they share (RESULTS §15): auto does not."""
    from dataclasses import replace

    from symzoo.pipelines.metanet import MetanetOptions, augments
    from symzoo.zoo.store import open_zoo

    zoo, opts = open_zoo(zoo_dir), MetanetOptions()
    assert augments(zoo, opts, "standard", "mlp") and not augments(zoo, opts, "w_asym", "mlp")
    zoo.config["training"]["shared_seed"] = True  # this object only: the zoo on disk is untouched
    assert not augments(zoo, opts, "standard", "mlp")
    assert augments(zoo, replace(opts, augment="permutation"), "standard", "mlp")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "accuracy"], "is an INR zoo: its networks have no test accuracy; use target: class"),
        (["--metanets", "mlp,ridge"], "ridge regresses test accuracy and the target here is the image class"),
        (["--augment", "permutation", "--align", "rebasin"], "augment: permutation undoes align: rebasin"),
    ],
)
def test_class_target_misuse_is_one_line(ray_cluster, zoo_dir, tmp_path, capsys, args, message):
    assert cli_main(["metanet", str(zoo_dir), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_gmn_reads_each_sigma_asym_networks_own_f(ray_cluster, zoo_dir, tmp_path):
    pytest.importorskip("torch_geometric")
    from symzoo.analysis.metanet_inputs import ensure_inputs
    from symzoo.analysis.weight_space import WeightSpace
    from symzoo.zoo.layers import FiGLU
    from symzoo.zoo.store import open_zoo
    from symzoo.zoo.weight_cache import VariantCache

    zoo = open_zoo(zoo_dir)
    cache = VariantCache.of(zoo, "sigma_asym", "final", tmp_path / "cache")
    ensure_inputs(cache, ("gated",), zoo)
    gated, flat = cache.matrix("gated"), cache.matrix("flat")
    frame = zoo.frame[zoo.frame["variant"] == "sigma_asym"].reset_index(drop=True)
    space = WeightSpace.of_zoo(zoo, "sigma_asym")
    assert gated.shape == (len(frame), flat.shape[1] + space.n_gates) and space.n_gates == 2 * 32 * 32
    np.testing.assert_array_equal(gated[:, : flat.shape[1]], flat)
    for row in (0, 7):
        model = zoo.model(int(frame["model_id"].iloc[row]))
        own_f = torch.cat([m.gate.reshape(-1) for m in model.modules() if isinstance(m, FiGLU)])
        np.testing.assert_array_equal(gated[row, flat.shape[1] :], own_f.numpy())  # F[i, j] on edge j -> i
    assert not np.array_equal(gated[0, flat.shape[1] :], gated[7, flat.shape[1] :])
    torch.manual_seed(0)
    net = build_metanet("gmn", gated.shape[1], space, outputs=10)
    x = torch.from_numpy(np.array(gated[:4]))
    net.fit_inputs(x, torch.arange(4))
    edges = net.edge_features(x).reshape(4, -1, net.edge_features(x).shape[-1])  # (B, 2E, features)
    const_column = 3 * net.slots.shape[1]  # after trained values, fixed values and fixed flags
    for b in range(4):  # both directions of every gate edge carry the network's own F, in units of F's RMS
        for at in (net.gate_edges, net.gate_edges + net.slots.shape[0]):
            torch.testing.assert_close(edges[b, at, const_column], x[b, flat.shape[1] :] * net.gate_inverse)
    other_f = torch.cat([x[:, : flat.shape[1]], x[[1, 2, 3, 0], flat.shape[1] :]], 1)  # same weights, others' F
    assert not torch.equal(net(x), net(other_f))
    out = tmp_path / "run"
    args = ["--metanets", "gmn", "--variants", "sigma_asym", "--lrs", "1e-3", "--seeds", "1", "--epochs", "1"]
    assert cli_main(["metanet", str(zoo_dir), "--out", str(out), "--no-progress", *args]) == 0
    runs = pd.read_parquet(out / "runs")
    assert np.isfinite(runs["test_accuracy"]).all() and len(runs) == 2


def dwsnets_render(state: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """What a DWSNets INR computes (its description: coordinates (column, row) from meshgrid of x then y in
    [-1, 1], sin(30 (W x + b)) after every map but the last, + 0.5), written here independently of symzoo."""
    xs, ys = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width))
    h = torch.from_numpy(np.stack([xs.flatten(), ys.flatten()]).T).float()
    n = len(state) // 2
    for i in range(n):
        h = torch.nn.functional.linear(h, state[f"seq.{i}.weight"], state[f"seq.{i}.bias"])
        h = torch.sin(30 * h) if i < n - 1 else h
    return (h + 0.5).reshape(height, width)


def test_a_dwsnets_export_draws_the_same_images_in_the_zoos_split(ray_cluster, zoo_dir, tmp_path):
    import json

    from symzoo.zoo.inr_fit import pixel_grid
    from symzoo.zoo.store import open_zoo

    zoo = open_zoo(zoo_dir)
    out = tmp_path / "dws"
    assert cli_main(["export", str(zoo_dir), "dwsnets", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*_splits.json")) == ["standard_splits.json", "w_asym_splits.json"]
    splits = zoo.splits().set_index("model_id")["split"]
    frame = zoo.frame.set_index("model_id")
    for variant in ("standard", "w_asym"):
        listing = json.loads((out / f"{variant}_splits.json").read_text())
        assert {s: len(listing[s]["path"]) for s in listing} == {"train": 110, "val": 10, "test": 20}
        for split, part in listing.items():
            for path, label in list(zip(part["path"], part["label"], strict=True))[:3]:
                model_id = int(Path(path).stem)
                assert splits[model_id] == split and frame.loc[model_id, "image_class"] == label
                assert frame.loc[model_id, "variant"] == variant
                state = torch.load(path)
                assert list(state) == [f"seq.{i}.{k}" for i in range(3) for k in ("weight", "bias")]
                ours = zoo.model(model_id)(pixel_grid(8, 8)).reshape(8, 8)
                torch.testing.assert_close(dwsnets_render(state, 8, 8), ours.detach(), atol=1e-5, rtol=0)
    assert cli_main(["export", str(zoo_dir), "dwsnets", "--out", str(out)]) == 2  # never over an existing folder


def test_an_inr_zoo_loads_as_a_weight_dataset_of_image_classes_split_by_image(zoo_dir):
    from symzoo.zoo.dataset import WeightDataset
    from symzoo.zoo.store import open_zoo

    frame = open_zoo(zoo_dir).frame.set_index("model_id")
    test = WeightDataset(zoo_dir, split="test", variants=["standard"])
    assert test.targets == ["image_class"] and len(test) == 20
    assert (frame.loc[test.networks["model_id"], "image_split"] == "test").all()
    x, y = test[3]
    assert x.shape == (1185,) and int(y.item()) == frame.loc[int(test.networks["model_id"][3]), "image_class"]


def test_importing_a_dwsnets_export_gives_back_the_weights_split_and_images(ray_cluster, zoo_dir, tmp_path, capsys):
    from symzoo.zoo.store import open_zoo

    source = open_zoo(zoo_dir)
    exported = tmp_path / "dws"
    assert cli_main(["export", str(zoo_dir), "dwsnets", "--out", str(exported)]) == 0
    splits_file = exported / "standard_splits.json"
    out = tmp_path / "back"
    args = ["import", "dwsnets", str(splits_file), "--out", str(out), "--data", "digits", "--no-progress"]
    assert cli_main(args) == 0
    back = open_zoo(out)
    original = source.frame[source.frame["variant"] == "standard"]
    assert len(back.frame) == len(original) and (back.frame["status"] == "ok").all()
    assert back.config["task"] == "inr" and back.weight_kinds() == ["final"]
    # every imported INR is its source network: same image, class, split, and the same weights
    paired = back.frame.merge(original, on=["image_split", "image_index"], suffixes=("", "_src"))
    assert len(paired) == len(original) and (paired["image_class"] == paired["image_class_src"]).all()
    position = {model_id: i for i, model_id in enumerate(source.frame["model_id"])}  # weights() rows: id order
    src_rows = source.weights("final")[[position[i] for i in paired.sort_values("model_id")["model_id_src"]]]
    np.testing.assert_array_equal(back.weights("final"), src_rows)
    split_back = back.splits().merge(paired[["model_id", "model_id_src"]], on="model_id")
    split_src = source.splits().rename(columns={"model_id": "model_id_src", "split": "split_src"})
    assert (split_back.merge(split_src, on="model_id_src").eval("split == split_src")).all()
    for _, row in paired.iloc[[4, 100, 130]].iterrows():  # a training, a validation... and a test image
        assert back.evaluate(int(row["model_id"]))["psnr"] == pytest.approx(row["psnr_src"], rel=1e-4)
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"path": ["a.pth"]}}')
    assert cli_main(["import", "dwsnets", str(bad), "--out", str(tmp_path / "o"), "--data", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert 'is not {"path": [...], "label": [...]} of equal lengths' in err and len(err.splitlines()) == 1


def test_a_foreign_dwsnets_zoo_imports_with_its_split_and_draws_what_dwsnets_draws(ray_cluster, tmp_path, capsys):
    """Files written as DWSNets writes them (its key names, (out, in) weights; absolute paths in the JSON), with no
    symzoo export beside them: the image each INR fits is unknown, its class and split are the file's."""
    import json

    from symzoo.zoo.inr_fit import pixel_grid
    from symzoo.zoo.store import open_zoo

    torch.manual_seed(0)
    listing = {s: {"path": [], "label": []} for s in ("train", "val", "test")}
    states = {}
    for i, split in enumerate(["train"] * 4 + ["val"] * 2 + ["test"] * 2):
        state = {}
        for j, (fan_in, fan_out) in enumerate([(2, 16), (16, 16), (16, 1)]):
            state[f"seq.{j}.weight"] = torch.randn(fan_out, fan_in) * (0.5 if j == 0 else 0.05)
            state[f"seq.{j}.bias"] = torch.randn(fan_out) * 0.1
        path = tmp_path / "inrs" / f"img_{i}.pth"
        path.parent.mkdir(exist_ok=True)
        torch.save(state, path)
        states[str(path)] = state
        listing[split]["path"].append(str(path))
        listing[split]["label"].append(i % 3)
    splits_file = tmp_path / "mnist_splits.json"
    splits_file.write_text(json.dumps(listing))
    out = tmp_path / "zoo"
    assert cli_main(["import", "dwsnets", str(splits_file), "--out", str(out), "--no-progress"]) == 2
    assert "pass --data: the image data set the INRs fit" in capsys.readouterr().err
    assert cli_main(["import", "dwsnets", str(tmp_path), "--out", str(out), "--data", "digits", "--no-progress"]) == 0
    zoo = open_zoo(out)
    frame = zoo.frame
    assert zoo.config["model"]["hidden"] == 16 and (frame["image_index"] == -1).all() and frame["lr"].isna().all()
    assert frame["image_class"].tolist() == [i % 3 for i in range(8)]
    assert zoo.splits()["split"].tolist() == ["train"] * 4 + ["val"] * 2 + ["test"] * 2
    assert frame["image_split"].tolist() == ["train"] * 6 + ["test"] * 2
    with pytest.raises(ZooError, match="model_id 0's image is unknown"):
        zoo.evaluate(0)
    for model_id, path in enumerate(listing["train"]["path"][:2]):
        drawn = zoo.model(model_id)(pixel_grid(8, 8)).reshape(8, 8).detach()
        torch.testing.assert_close(drawn, dwsnets_render(states[path], 8, 8), atol=1e-5, rtol=0)


def test_the_equivariant_control_compares_error_rates_per_image_for_classes():
    from symzoo.analysis.tables import equivariant_control

    ids = {"standard": [0, 1, 2, 3], "w_asym": [10, 11, 12, 13]}
    rows = []
    for metanet, wrong in (("gmn", {"standard": [], "w_asym": []}), ("mlp", {"w_asym": [0, 1, 2]})):
        for variant in ("standard", "w_asym"):
            for k, model_id in enumerate(ids[variant]):
                bad = k in wrong.get(variant, [])
                rows.append((model_id, variant, metanet, 1, k % 2, (k + 1) % 2 if bad else k % 2))
    predictions = pd.DataFrame(rows, columns=["model_id", "variant", "metanet", "seed", "true_class", "pred_class"])
    samples = pd.DataFrame({"model_id": [0, 1, 2, 3, 10, 11, 12, 13], "sample": [0, 1, 2, 3] * 2})
    mlp_line, gmn_line = equivariant_control(predictions, samples, ["mlp", "gmn"], ["standard", "w_asym"])
    assert mlp_line.startswith("GMN on standard vs MLP on W-Asym: error rate 0.000 vs 0.750")
    assert "lower for the first on 3 of 4 test samples" in mlp_line
    assert gmn_line.endswith(
        "error rate 0.000 vs 0.000, lower for the first on 0 of 4 test samples (no test sample "
        "differs): no significant difference"
    )


def test_published_rows_sit_in_the_standard_column_or_are_named():
    from symzoo.analysis.inr_tables import classification_table
    from symzoo.analysis.tables import METANET_LABELS

    counts = {v: {"used": 1, "train": 1, "val": 1, "test": 1, "dropped": {}} for v in ("standard", "w_asym")}
    empty = pd.DataFrame(columns=["metanet", "variant"])
    both = classification_table(empty, ["mlp"], ["w_asym", "standard"], METANET_LABELS, "fashion_mnist",
                                counts, [], [], [])  # fmt: skip
    assert "| published: NFN (standard SIRENs, full downloaded zoo) | 75.6 |  |  |  |  |  |" in both
    alone = classification_table(empty, ["mlp"], ["w_asym"], METANET_LABELS, "fashion_mnist",
                                 counts, [], [], [])  # fmt: skip
    assert "| published: NFN (standard SIRENs, full downloaded zoo): 75.6 |  |  |  |" in alone
