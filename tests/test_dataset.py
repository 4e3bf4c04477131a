"""The zoo as a weight-space dataset: views against Zoo.weights and the layout, stored paired splits, DataLoader
workers that share one memory-mapped copy. No Ray: the zoo is trained in this process."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_zoo

from symzoo.cli import main as cli_main
from symzoo.errors import ZooError
from symzoo.zoo.config import validate
from symzoo.zoo.dataset import WeightDataset
from symzoo.zoo.split_files import store_splits
from symzoo.zoo.splits import SPLITS_FILE
from symzoo.zoo.store import open_zoo

CONFIG = {
    "name": "weightspace",
    "seed": 3,
    "data": {"name": "digits", "train_per_class": 10},
    "model": {"arch": "mlp"},
    "variants": ["standard", "w_asym", "sigma_asym"],
    "networks": 8,
    "hyperparameters": {"epochs": 1},
    "training": {"batch_size": 50, "warmup_epochs": 0.5, "augment": {"flip": False, "cutout": 0}, "amp": False},
    "execution": {"networks_per_shard": 12},
}


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weightspace") / "zoo"
    write_zoo(out, validate(CONFIG))
    return out


@pytest.fixture()
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def test_the_flat_view_is_the_trainable_weights_and_targets_are_metadata(zoo_dir, cache):
    zoo = open_zoo(zoo_dir)
    ds = WeightDataset(zoo, view="flat", targets=["test_acc", "lr"], cache_dir=cache)
    assert len(ds) == 24 and list(ds.networks.columns[:4]) == ["model_id", "variant", "sample", "split"]
    for variant in ("standard", "w_asym"):
        expected = zoo.weights("final", variant=variant, trainable_only=True)
        items = ds.networks.index[ds.networks["variant"] == variant]
        for row, i in enumerate(items):
            x, y = ds[i]
            np.testing.assert_array_equal(x.numpy(), expected[row])
            meta = zoo.frame.set_index("model_id").loc[ds.networks.at[i, "model_id"]]
            np.testing.assert_allclose(y.numpy(), [meta["test_acc"], meta["lr"]], rtol=1e-6)
    assert ds[int(items[0])][0].shape == (zoo.layout("w_asym").n_trainable,) != (zoo.n_params,)


def test_the_layer_views_follow_the_layout_and_restore_w_asym_fixed_entries(zoo_dir, cache):
    zoo = open_zoo(zoo_dir)
    layers = WeightDataset(zoo, view="layers", variants=["w_asym"], cache_dir=cache)
    full = zoo.weights("final", variant="w_asym")
    layout = zoo.layout("w_asym")
    for i in range(len(layers)):
        tensors, _ = layers[i]
        assert [(n, tuple(t.shape)) for n, t in tensors.items()] == [(s.name, s.shape) for s in layout.slots]
        np.testing.assert_array_equal(layout.flatten(tensors).numpy(), full[i])  # fixed entries included
    nfn = WeightDataset(zoo, view="nfn", variants=["standard"], cache_dir=cache)
    (weights, biases), _ = nfn[0]
    assert [tuple(w.shape) for w in weights] == [(1, 512, 64), (1, 512, 512), (1, 512, 512), (1, 10, 512)]
    assert [tuple(b.shape) for b in biases] == [(1, 512), (1, 512), (1, 512), (1, 10)]
    assert nfn.left_out == [f"layers.{i}.{p}" for i in (1, 4, 7) for p in ("weight", "bias")]  # the LayerNorms


def test_the_stats_view_is_statnn(zoo_dir, cache):
    from symzoo.zoo.weight_cache import statnn_features

    zoo = open_zoo(zoo_dir)
    ds = WeightDataset(zoo, view="stats", variants=["sigma_asym"], cache_dir=cache)
    weights = zoo.weights("final", variant="sigma_asym", trainable_only=True)
    expected = statnn_features(weights, zoo.layout("sigma_asym"))
    np.testing.assert_allclose(torch.stack([ds[i][0] for i in range(len(ds))]).numpy(), expected, rtol=1e-6)


def test_generate_stores_a_paired_seed_0_split_that_the_dataset_reads(zoo_dir, cache):
    zoo = open_zoo(zoo_dir)
    assert (zoo_dir / SPLITS_FILE).exists()
    written = (zoo_dir / SPLITS_FILE).read_bytes()
    store_splits(zoo_dir, 0, None, replace=False)  # the same split again: accepted, the file unchanged
    assert (zoo_dir / SPLITS_FILE).read_bytes() == written
    stored = pd.read_parquet(zoo_dir / SPLITS_FILE)
    assert stored.equals(zoo.splits(0)) and stored.equals(zoo.splits("stored"))
    parts = {s: WeightDataset(zoo, split=s, cache_dir=cache).networks for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [12, 6, 6]  # 8 samples: 4 / 2 / 2, times 3 variants
    ids = [set(p["model_id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for part in parts.values():  # paired: each variant holds the same samples in each part
        per_variant = part.groupby("variant")["sample"].apply(frozenset)
        assert per_variant.nunique() == 1


def test_a_users_split_is_checked_stored_and_followed(zoo_dir, tmp_path, cache, capsys):
    import shutil

    zoo_copy = tmp_path / "zoo"
    shutil.copytree(zoo_dir, zoo_copy)
    frame = open_zoo(zoo_copy).frame
    split = np.select([frame["sample"] < 6, frame["sample"] == 6], ["train", "val"], "test")
    mine = pd.DataFrame({"model_id": frame["model_id"], "split": split})
    (tmp_path / "mine.csv").write_text(mine.to_csv(index=False))
    with pytest.raises(ZooError, match="already stores another split .seed 0.; pass --replace"):
        store_splits(zoo_copy, None, str(tmp_path / "mine.csv"), replace=False)
    assert cli_main(["splits", str(zoo_copy), "--from", str(tmp_path / "mine.csv"), "--replace"]) == 0
    assert "networks per variant and split" in capsys.readouterr().out
    test = WeightDataset(zoo_copy, split="test", cache_dir=cache).networks
    assert sorted(set(test["sample"])) == [7]
    unpaired = mine.copy()
    unpaired.loc[0, "split"] = "val" if unpaired.loc[0, "split"] != "val" else "train"
    (tmp_path / "unpaired.csv").write_text(unpaired.to_csv(index=False))
    code = cli_main(["splits", str(zoo_copy), "--from", str(tmp_path / "unpaired.csv"), "--replace"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "in different splits" in err and "\n" not in err
    assert pd.read_parquet(zoo_copy / SPLITS_FILE)["split"].tolist() == mine["split"].tolist()  # kept


def test_dataloader_workers_share_the_map_and_see_each_network_once(zoo_dir, cache):
    ds = WeightDataset(zoo_dir, view="flat", variants=["standard"], cache_dir=cache)
    _ = ds[0]  # this process has mapped its file ...
    assert ds._maps and not pickle.loads(pickle.dumps(ds))._maps  # ... but a worker gets none and maps its own
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=True, num_workers=2)
    seen = []
    for x, _ in loader:
        seen.extend(x[:, 0].tolist())
    first_entries = [float(ds[i][0][0]) for i in range(len(ds))]
    assert sorted(seen) == sorted(first_entries)


def test_bad_requests_are_named(zoo_dir, cache):
    with pytest.raises(ZooError, match="view 'graph' is not one of flat, layers, nfn, stats"):
        WeightDataset(zoo_dir, view="graph", cache_dir=cache)
    with pytest.raises(ZooError, match="target 'status' is not a numeric metadata column"):
        WeightDataset(zoo_dir, targets=["status"], cache_dir=cache)
    with pytest.raises(ZooError, match="variant 'relu' is not in this zoo"):
        WeightDataset(zoo_dir, variants=["relu"], cache_dir=cache)
    with pytest.raises(ZooError, match="no weights 'epoch_3'"):
        WeightDataset(zoo_dir, which="epoch_3", cache_dir=cache)


def test_a_symmetry_transform_keeps_trained_networks_functions_and_the_control_changes_them(zoo_dir, cache):
    """On the zoo's trained networks: a random neuron permutation of a standard MLP moves its weights but not its
    logits; on W-Asym it is refused unless asked for, and then changes the function."""
    from symzoo.zoo.symmetry import NeuronPermutation

    zoo = open_zoo(zoo_dir)
    data = zoo.dataset()
    x = data.normalize(data.x_test[:256]).double()

    def logits(model_id: int, tensors: dict) -> torch.Tensor:
        """In float64: these briefly trained MLPs reach logits of ~100, where float32 rounding alone is ~1e-5."""
        model = zoo.model(model_id).double()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(tensors[name])
            return model(x)

    for variant, allow in (("standard", False), ("w_asym", True)):
        permute = NeuronPermutation(zoo.symmetries, allow, torch.Generator().manual_seed(0))
        moved = WeightDataset(zoo, view="layers", variants=[variant], transform=permute, cache_dir=cache)
        plain = WeightDataset(zoo, view="layers", variants=[variant], cache_dir=cache)
        model_id = int(plain.networks.at[0, "model_id"])
        before, after = plain[0][0], moved[0][0]
        assert not torch.equal(before["layers.3.weight"], after["layers.3.weight"])
        change = float((logits(model_id, after) - logits(model_id, before)).abs().max())
        assert change < 1e-5 if variant == "standard" else change > 0.1
    with pytest.raises(ZooError, match="a permutation is not a symmetry of w_asym networks"):
        WeightDataset(zoo, variants=["w_asym"], transform=NeuronPermutation(zoo.symmetries), cache_dir=cache)[0]


def test_the_zoo_card_parses_and_hugging_face_datasets_reads_the_zoo_and_its_splits(zoo_dir, tmp_path, monkeypatch):
    import yaml

    text = (zoo_dir / "README.md").read_text()  # written by generate (finalize_manifest) when the zoo completed
    front = yaml.safe_load(text.split("---\n")[1])
    assert [c["config_name"] for c in front["configs"]] == ["models", "splits"] and front["size_categories"] == ["n<1K"]
    zoo = open_zoo(zoo_dir)
    assert f"config hash `{zoo.manifest['config_hash']}`" in text and zoo.manifest["dataset_fingerprint"] in text
    assert "| w_asym | 8 | " in text and "| weights_init, weights_final, weights_epoch_E |" in text
    assert "- sigma_asym: hidden-unit permutations are not symmetries; positive scaling of each of its 3 " in text
    assert "- w_asym: hidden-unit permutations are not symmetries;" in text and "is not (its fixed entries" in text
    assert yaml.safe_load(text.split("```yaml\n")[1].split("```")[0]) == zoo.config  # the generator config

    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is the [hf] extra")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    from symzoo.zoo.card import HF_LOAD_MODELS, HF_LOAD_SPLITS

    assert HF_LOAD_MODELS in text and HF_LOAD_SPLITS in text  # the card's own snippet, as run here
    models = eval(HF_LOAD_MODELS.replace("ZOO", str(zoo_dir)), {"datasets": datasets})
    splits = eval(HF_LOAD_SPLITS.replace("ZOO", str(zoo_dir)), {"datasets": datasets})
    row = models[int(np.argmax(np.array(models["model_id"]) == 5))]
    np.testing.assert_array_equal(np.frombuffer(row["weights_final"], "<f4"), zoo.weights("final", model_ids=[5])[0])
    assert splits.to_pandas().equals(zoo.splits("stored"))
