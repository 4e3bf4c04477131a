"""GNN zoos (paper Table 1's GNN row): the network, the offline graph, full-batch training, activation matching and
LMC with BatchNorm re-estimation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import write_zoo

from symzoo.analysis.lmc import barriers, graph_line, lmc_curves
from symzoo.analysis.rebasin import activation_matching
from symzoo.cli import main as cli_main
from symzoo.errors import ConfigError
from symzoo.zoo.config import validate
from symzoo.zoo.graph import Graph, knn_edges, load_graph, mean_aggregation
from symzoo.zoo.graph_train import estimate_batchnorm, graph_metrics, train_graph_network
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build
from symzoo.zoo.plan import HParams
from symzoo.zoo.store import open_zoo
from symzoo.zoo.symmetry import permutation_spec, permute, structural_spec
from symzoo.zoo.train import Recipe

DIGITS_GRAPH = {"name": "digits_knn", "root": None, "graph": {"nodes_per_class": 60, "neighbours": 5, "features": 32}}


@pytest.fixture(scope="module")
def graph() -> Graph:
    return load_graph(DIGITS_GRAPH)


def random_graph(n: int = 40, features: int = 6, seed: int = 0) -> Graph:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    edges = torch.from_numpy(knn_edges(x.numpy(), 3))
    split = {"train": torch.arange(0, 20), "valid": torch.arange(20, 30), "test": torch.arange(30, n)}
    return Graph("random", x, torch.randint(0, 4, (n,), generator=g), edges, split, 4)


@pytest.mark.parametrize("variant", ["standard", "w_asym", "sigma_asym"])
def test_the_papers_gnn_has_176424_parameters_on_arxivs_shapes(variant):
    model = build("gnn", variant, (128,), 40)
    assert sum(p.numel() for p in model.parameters()) == 176_424  # the paper's count (128 features, 40 classes)
    fixed = 6 * (3 * 256 + 40)  # 6 fixed entries in every row of every linear map, the head's included
    assert ParamLayout.from_model(model).n_trainable == 176_424 - (fixed if variant == "w_asym" else 0)


def test_w_asym_gnn_gates_as_the_authors_unless_told_not_to():
    from symzoo.zoo.layers import FiGLU

    def gates(**kw):
        return sum(isinstance(m, FiGLU) for m in build("gnn", "w_asym", (8,), 3, **kw).modules())

    assert gates() == 3 and gates(w_asym_gates=False) == 0
    sigma = build("gnn", "sigma_asym", (8,), 3, hidden=64)
    stds = [m.gate.std().item() for m in sigma.modules() if isinstance(m, FiGLU)]
    assert all(s == pytest.approx(0.01 / 8, rel=0.05) for s in stds)  # F ~ N(0, (0.01 / sqrt(64))^2)


def test_the_offline_graph_is_deterministic_symmetric_and_split_by_class(graph):
    again = load_graph(DIGITS_GRAPH)
    assert graph.fingerprint() == again.fingerprint()
    assert graph.features.shape == (600, 32) and graph.num_classes == 10
    src, dst = graph.edges
    assert not (src == dst).any()
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert all((d, s) in pairs for s, d in pairs)  # undirected
    assert (torch.bincount(src, minlength=600) >= 5).all()  # every node keeps its 5 nearest
    ids = torch.cat([graph.split_index[s] for s in ("train", "valid", "test")])
    assert sorted(ids.tolist()) == list(range(600))
    for s, share in (("train", 0.537), ("valid", 0.176)):
        counts = torch.bincount(graph.labels[graph.split_index[s]], minlength=10)
        assert (counts == round(60 * share)).all()
    other = load_graph({**DIGITS_GRAPH, "subset_seed": 1})
    assert other.fingerprint() != graph.fingerprint()


def test_mean_aggregation_adds_each_nodes_own_features_to_its_neighbours_mean():
    edges = torch.tensor([[1, 2, 0], [0, 0, 1]])  # 1 -> 0, 2 -> 0, 0 -> 1; node 2 has no in-neighbour
    x = torch.tensor([[1.0], [2.0], [4.0]])
    out = torch.sparse.mm(mean_aggregation(edges, 3), x)
    assert out.squeeze(1).tolist() == [1 + (2 + 4) / 2, 2 + 1, 4]


def test_permuting_hidden_features_is_a_symmetry_of_standard_gnns_only():
    g = random_graph()
    for variant, symmetric in (("standard", True), ("w_asym", False), ("sigma_asym", False)):
        model = build("gnn", variant, (6,), 4, hidden=16, depth=2, init_seed=1)
        spec = structural_spec(model)
        params = {n: p.detach() for n, p in model.named_parameters()}
        rng = np.random.default_rng(0)
        perms = {p: rng.permutation(16) for p in spec.perm_to_axes}
        permuted = build("gnn", variant, (6,), 4, hidden=16, depth=2)
        ParamLayout.from_model(model).load_into(
            permuted, ParamLayout.from_model(model).flatten(permute(spec, perms, params))
        )
        estimate_batchnorm(model, g)
        estimate_batchnorm(permuted, g)
        out, out_p = model(g.features, g.aggregate), permuted(g.features, g.aggregate)
        assert torch.allclose(out, out_p, atol=1e-5) == symmetric, variant


def test_activation_matching_recovers_a_planted_permutation_exactly():
    g = random_graph(n=60)
    model = build("gnn", "standard", (6,), 4, hidden=16, depth=3, init_seed=2)
    estimate_batchnorm(model, g)
    spec = permutation_spec(model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    rng = np.random.default_rng(1)
    planted = {p: rng.permutation(16) for p in spec.perm_to_axes}
    other = build("gnn", "standard", (6,), 4, hidden=16, depth=3)
    layout = ParamLayout.from_model(model)
    layout.load_into(other, layout.flatten(permute(spec, planted, params)))
    estimate_batchnorm(other, g)
    found = activation_matching(model, other, [(g.features, g.aggregate)])
    for p, perm in found.items():  # other's unit perm[i] is model's unit i
        np.testing.assert_array_equal(planted[p][perm], np.arange(16))
    restored = permute(spec, found, dict(other.named_parameters()))
    for name, w in params.items():
        assert torch.equal(restored[name], w)


def test_activation_matching_recovers_a_planted_permutation_of_an_mlp_and_a_resnet():
    torch.manual_seed(0)
    for arch, shape in (("mlp", (1, 4, 4)), ("resnet8", (3, 8, 8))):
        model = build(arch, "standard", shape, 5, init_seed=3, hidden=24 if arch == "mlp" else None)
        spec = permutation_spec(model)
        params = {n: p.detach() for n, p in model.named_parameters()}
        rng = np.random.default_rng(2)
        planted = {p: rng.permutation(params[ax[0][0]].shape[ax[0][1]]) for p, ax in spec.perm_to_axes.items()}
        other = build(arch, "standard", shape, 5, hidden=24 if arch == "mlp" else None)
        layout = ParamLayout.from_model(model)
        layout.load_into(other, layout.flatten(permute(spec, planted, params)))
        x = torch.randn(64, *shape)
        found = activation_matching(model, other, [(x[:32],), (x[32:],)])
        assert set(found) == set(spec.perm_to_axes)
        restored = permute(spec, found, dict(other.named_parameters()))
        for name, w in params.items():
            assert torch.equal(restored[name], w), (arch, name)


def test_training_then_reestimation_gives_the_endpoints_their_own_loss(graph):
    model = build("gnn", "standard", graph.in_shape, 10, hidden=32, depth=2, init_seed=4)
    result = train_graph_network(
        model, graph, HParams(1e-2, 0.0, 0.0, 20), Recipe(schedule="warmup_constant", warmup_epochs=5)
    )
    assert result.status == "ok" and result.test_acc > 0.5 and len(result.history["train_loss"]) == 20
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    layout = ParamLayout.from_model(model)
    other = build("gnn", "standard", graph.in_shape, 10, hidden=32, depth=2, init_seed=5)
    train_graph_network(other, graph, HParams(1e-2, 0.0, 0.0, 20), Recipe(schedule="warmup_constant", warmup_epochs=5))
    wa, wb = layout.flatten(model), layout.flatten(other)
    line = graph_line(model, layout, wa, wb, torch.tensor([0.0, 0.5, 1.0]), graph, "reestimate")
    assert line["test_loss"][0] == pytest.approx(result.test_loss, abs=1e-6)
    assert line["test_loss"][-1] == pytest.approx(graph_metrics(other, graph)["test"][0], abs=1e-6)
    plain = graph_line(model, layout, wa, wb, torch.tensor([0.0, 0.5, 1.0]), graph, "interpolate")
    assert plain["test_loss"][0] == pytest.approx(line["test_loss"][0], abs=1e-6)  # the same ends, another middle
    assert plain["test_loss"][1] != pytest.approx(line["test_loss"][1], abs=1e-4)


def test_a_diverged_gnn_is_recorded_not_raised(graph):
    model = build("gnn", "standard", graph.in_shape, 10, hidden=16, depth=2)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    result = train_graph_network(model, graph, HParams(1e-3, 0.0, 0.0, 5), Recipe())
    assert result.status == "diverged" and "epoch 1" in result.reason


GNN_ZOO = {
    "name": "gnn_tiny",
    "data": {"name": "digits_knn", "graph": DIGITS_GRAPH["graph"]},
    "model": {"arch": "gnn", "hidden": 32, "depth": 2},
    "variants": ["standard", "w_asym"],
    "networks": 1,
    "replicates": 2,
    "hyperparameters": {"lr": 0.01, "weight_decay": 0.0, "label_smoothing": 0.0, "epochs": 15},
    "training": {"schedule": "warmup_constant", "warmup_epochs": 3, "checkpoint_epochs": [5]},
    "execution": {"networks_per_shard": 2},
}


@pytest.fixture(scope="module")
def gnn_zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("gnn") / "zoo"
    write_zoo(path, validate(GNN_ZOO))
    return path


def test_a_gnn_zoo_is_stored_rebuilt_and_evaluated_like_any_zoo(gnn_zoo, tmp_path):
    cfg = validate(GNN_ZOO)
    zoo = open_zoo(gnn_zoo)
    frame = zoo.frame
    assert (frame["status"] == "ok").all() and len(frame) == 4
    assert set(zoo.weight_kinds()) >= {"init", "epoch_5", "final"}
    for model_id in (0, 1):
        row = frame[frame["model_id"] == model_id].iloc[0]
        assert zoo.evaluate(model_id)["loss"] == pytest.approx(row["test_loss"], abs=1e-6)
        assert zoo.evaluate(model_id, "train")["accuracy"] == pytest.approx(row["train_acc"], abs=1e-6)
    assert 0 < zoo.evaluate(0, "valid")["accuracy"] <= 1
    again = tmp_path / "again"
    write_zoo(again, cfg)  # deterministic by seed
    np.testing.assert_array_equal(zoo.weights("final"), open_zoo(again).weights("final"))
    with pytest.raises(Exception, match="split 'val' is not allowed; one of train, valid, test"):
        zoo.evaluate(0, "val")
    from symzoo.zoo.card import write_card

    card = write_card(zoo).read_text()
    assert "model(graph.features, graph.aggregate)" in card and "inputs (32,), 10 classes" in card


def test_lmc_on_a_gnn_zoo_matches_activations_and_reports_appendix_a(ray_cluster, gnn_zoo, tmp_path, capsys):
    zoo = open_zoo(gnn_zoo)
    pair = pd.DataFrame({"sample": [0], "variant": ["standard"], "model_a": [0], "model_b": [2]})
    wa, wb = zoo.weights("final", model_ids=[0]), zoo.weights("final", model_ids=[2])
    methods = ["standard+rebasin", "standard+activations"]
    curves = lmc_curves(pair, wa, wb, zoo.config, zoo.dataset(), 3, 512, methods)
    assert set(curves["method"]) == {"standard", *methods}
    assert {"train_acc", "valid_acc", "distance"} <= set(curves.columns)
    ends = curves[curves["alpha"].isin([0.0, 1.0])].groupby("alpha")["test_loss"]
    assert (ends.max() - ends.min()).max() < 1e-5  # a permuted B computes what B computes
    table = barriers(curves).set_index("method")
    assert table.loc["standard+activations", "distance"] < table.loc["standard", "distance"]
    out = tmp_path / "lmc"
    assert cli_main(["lmc", str(gnn_zoo), "--out", str(out), "--alphas", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| paper: GNN on ogbn-arXiv (another graph) | 1.475 | 0.269 | 0.095 |" in printed
    assert "endpoint validation accuracy" in printed and "distance per trainable parameter" in printed
    assert set(pd.read_parquet(out / "curves.parquet")["method"]) == {"standard", "standard+activations", "w_asym"}


def test_mli_refuses_a_gnn_zoo_in_one_line(gnn_zoo, tmp_path, capsys):
    assert cli_main(["mli", str(gnn_zoo), "--out", str(tmp_path / "mli")]) == 2
    assert "mli is not implemented for graph networks (lmc is" in capsys.readouterr().err
    assert not (tmp_path / "mli").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"arch": "mlp"}}, "'data.name': digits_knn is a graph; only model.arch gnn trains on graphs"),
        ({"data": {"name": "digits"}}, "'data.name': model.arch gnn trains on a graph; choose one of ogbn-arxiv"),
        ({"data": {"name": "digits_knn", "size": 8}}, "'data.size': applies to image data sets"),
        ({"data": {"name": "digits_knn", "graph": {"neighbors": 3}}}, "'data.graph.neighbors': unknown field"),
        ({"training": {"pack_size": 4}}, "'training.pack_size': gnn networks train one at a time"),
        (
            {"model": {"arch": "mlp", "w_asym_gates": False}, "data": {"name": "digits"}},
            "'model.w_asym_gates': applies to gnn",
        ),
    ],
)
def test_graph_config_errors_are_one_line_naming_the_field(change, message):
    raw = {"name": "g", "data": {"name": "digits_knn"}, "model": {"arch": "gnn"}, "networks": 1}
    for key, value in change.items():
        raw[key] = {**raw.get(key, {}), **value}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        validate(raw)
    assert "\n" not in str(e.value)


def test_ogbn_arxiv_without_ogb_is_one_line_naming_the_fix(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ogb(name, *args, **kwargs):
        if name.startswith("ogb"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ogb)
    with pytest.raises(FileNotFoundError, match="ogbn-arxiv needs the ogb package; pip install ogb"):
        load_graph({"name": "ogbn-arxiv", "root": None})


def test_ogbn_arxiv_is_read_through_ogb_made_undirected_with_its_own_split(monkeypatch):
    import sys
    import types

    class FakeArxiv:  # what ogb's NodePropPredDataset returns for ogbn-arxiv, in miniature
        def __init__(self, name, root):
            assert name == "ogbn-arxiv"

        def __getitem__(self, i):
            graph = {"edge_index": np.array([[0, 1, 2], [1, 2, 3]]), "node_feat": np.ones((4, 128), np.float32)}
            return graph, np.array([[0], [39], [5], [5]])

        def get_idx_split(self):
            return {"train": np.array([0, 1]), "valid": np.array([2]), "test": np.array([3])}

    fake = types.ModuleType("ogb.nodeproppred")
    fake.NodePropPredDataset = FakeArxiv
    monkeypatch.setitem(sys.modules, "ogb", types.ModuleType("ogb"))
    monkeypatch.setitem(sys.modules, "ogb.nodeproppred", fake)
    g = load_graph({"name": "ogbn-arxiv", "root": None})
    assert g.num_classes == 40 and g.in_shape == (128,) and g.labels.tolist() == [0, 39, 5, 5]
    assert sorted(zip(*g.edges.tolist(), strict=True)) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]
    assert g.split_index["test"].tolist() == [3]
    model = build("gnn", "standard", g.in_shape, g.num_classes)
    assert model(g.features, g.aggregate).shape == (4, 40)


def test_the_shipped_gnn_configs_validate():
    for name in ("fashion_gnn_lmc", "digits_gnn_lmc"):
        with open(Path(__file__).parent.parent / "configs" / f"{name}.yaml") as f:
            cfg = validate(yaml.safe_load(f))
        assert cfg["model"]["arch"] == "gnn" and cfg["replicates"] == 2
