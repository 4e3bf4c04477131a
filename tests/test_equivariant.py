"""Equivariant metanetworks (NFN NP/HNP, the graph metanetwork): the parameter graph, invariance where the
networks have the symmetry and its absence where they do not, parameter counts, and the stage end to end."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("nfn", reason="the equivariant metanetworks need the [equivariant] extra (nfn)")
pytest.importorskip("torch_geometric", reason="the equivariant metanetworks need the [equivariant] extra")

from symzoo.analysis.equivariant import build_equivariant  # noqa: E402
from symzoo.analysis.metanets import count_parameters  # noqa: E402
from symzoo.analysis.weight_space import EDGE_TYPES, WeightSpace, parameter_graph  # noqa: E402
from symzoo.cli import main as cli_main  # noqa: E402
from symzoo.zoo.layout import ParamLayout  # noqa: E402
from symzoo.zoo.models import build  # noqa: E402
from symzoo.zoo.symmetry import permute, structural_spec  # noqa: E402

MLP_SHAPE = (1, 14, 14)


def _network(arch: str, variant: str, seed: int = 3) -> torch.nn.Module:
    shape = MLP_SHAPE if arch == "mlp" else (1, 8, 8)
    return build(arch, variant, shape, 10, asym_seed=0, init_seed=seed, hidden=32 if arch == "mlp" else None)


def _random_hidden_permutation(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The model's parameters with every hidden unit permuted (the map is a symmetry of standard networks only)."""
    spec = structural_spec(model)
    params = {k: p.detach() for k, p in model.named_parameters()}
    sizes = {p: params[name].shape[axis] for name, axes in spec.axes.items() for axis, p in enumerate(axes) if p}
    g = torch.Generator().manual_seed(seed)
    return permute(spec, {p: torch.randperm(n, generator=g).numpy() for p, n in sizes.items()}, params)


def _trainable(space: WeightSpace, params: dict[str, torch.Tensor]) -> torch.Tensor:
    return space.layout.flatten(params)[space.trainable_index]


def _loaded(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> torch.nn.Module:
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in other.named_parameters():
            p.copy_(params[name])
    return other.eval()


def test_the_resnet8_graph_has_a_node_per_channel_and_every_parameter_on_one_edge():
    model = _network("resnet8", "standard")
    layout = ParamLayout.from_model(model)
    graph = parameter_graph(model, layout)
    # 1 input channel, the stem's 16, each block's inner and output channels, 10 outputs
    assert graph.n_nodes == 1 + 16 + (16 + 16) + (32 + 32) + (64 + 64) + 10
    shapes = {s.name: s.shape for s in layout.slots}
    pairs = sum(s[0] * s[1] for s in shapes.values() if len(s) >= 2)  # one edge per (out, in) of a weight
    per_node = sum(s[0] for s in shapes.values() if len(s) == 1)  # biases and norm affines: self-loops
    residual = 16  # the first block's identity shortcut: one edge per channel
    assert graph.n_edges == pairs + per_node + residual
    used = graph.slots[graph.slots >= 0]
    assert sorted(used.tolist()) == list(range(layout.size)), "every parameter on exactly one edge"
    kinds = graph.edge_const[:, 2:].argmax(1)
    assert int((kinds == EDGE_TYPES.index("residual")).sum()) == residual
    assert torch.all(graph.edge_const[kinds == EDGE_TYPES.index("residual"), 0] == 1.0)


def test_sigma_asym_gates_are_constant_edges_within_a_layer():
    model = _network("resnet8", "sigma_asym")
    graph = parameter_graph(model)
    gates = graph.edge_const[:, 2 + EDGE_TYPES.index("gate")] == 1
    assert int(gates.sum()) == sum(c * c for c in (16, 16, 16, 32, 32, 64, 64))  # stem, two per block
    stem_gate = next(m for n, m in model.named_modules() if n == "stem_act").gate
    assert torch.allclose(graph.edge_const[gates, 0][: 16 * 16], stem_gate.reshape(-1))
    assert torch.all(graph.slots[gates] == -1), "F is a feature of the variant, not a trainable input"


def test_w_asym_fixed_values_enter_as_effective_weights_and_are_flagged():
    model = _network("mlp", "w_asym")
    space = WeightSpace(model)
    flat = _trainable(space, dict(model.named_parameters()))[None]
    full = (space.trained(flat) + space.base)[0]  # what the metanetworks read: trained entries plus base
    first = model.layers[0]
    slot = next(s for s in space.layout.slots if s.name == "layers.0.weight")
    assert torch.allclose(full[slot.offset : slot.offset + slot.size], first.effective_weight().reshape(-1))
    assert int(space.fixed.sum()) == space.layout.size - space.layout.n_trainable > 0


@pytest.mark.parametrize("arch, metanet", [("mlp", "nfn_np"), ("mlp", "nfn_hnp"), ("mlp", "gmn"), ("resnet8", "gmn")])
def test_a_standard_networks_hidden_permutation_leaves_the_prediction_unchanged(arch, metanet):
    model = _network(arch, "standard")
    permuted = _random_hidden_permutation(model)
    x = torch.randn(4, *(MLP_SHAPE if arch == "mlp" else (1, 8, 8)))
    assert torch.allclose(model.eval()(x), _loaded(model, permuted)(x), atol=1e-5), "the same function"
    space = WeightSpace(model)
    inputs = torch.stack([_trainable(space, dict(model.named_parameters())), _trainable(space, permuted)])
    assert not torch.equal(inputs[0], inputs[1])
    torch.manual_seed(0)
    net = build_equivariant(metanet, space).eval()
    others = [_network(arch, "standard", seed) for seed in (5, 6, 7)]  # a training split to fit the input scale on
    net.fit_inputs(torch.stack([_trainable(space, dict(o.named_parameters())) for o in others]), torch.rand(3))
    with torch.no_grad():
        pred = net(inputs)
    assert abs(float(pred[0] - pred[1])) < 1e-5


@pytest.mark.parametrize("metanet", ["nfn_np", "gmn"])
def test_fitting_the_inputs_puts_each_tensor_at_unit_rms_and_the_output_at_the_targets_mean(metanet):
    """``TensorScale``: every tensor's trained entries over the training networks have RMS 1 after scaling, the W-Asym
    fixed values are in the same units as their tensor's trained ones, and the head starts at the targets' mean."""
    models = [_network("mlp", "w_asym", seed) for seed in (1, 2, 3)]
    space = WeightSpace(models[0])
    flat = torch.stack([_trainable(space, dict(m.named_parameters())) for m in models])
    net = build_equivariant(metanet, space)
    net.fit_inputs(flat, torch.tensor([0.2, 0.4, 0.9]))
    scaled, fixed = net.scale(space.trained(flat)), space.fixed > 0
    for slot in space.layout.slots:
        part = slice(slot.offset, slot.offset + slot.size)
        trained = scaled[:, part][:, ~fixed[part]]
        raw_rms = space.trained(flat)[:, part][:, ~fixed[part]].pow(2).mean().sqrt()
        if raw_rms == 0:  # freshly built networks: zero biases stay zero (no division by 0)
            assert not trained.any()
            continue
        assert torch.allclose(trained.pow(2).mean().sqrt(), torch.tensor(1.0), atol=1e-5), slot.name
        assert torch.allclose(net.scale(space.base)[part], space.base[part] / raw_rms, atol=1e-6)
    assert float(net.readout[-1].bias.detach()) == pytest.approx(0.5)


@pytest.mark.parametrize("arch, metanet", [("mlp", "nfn_np"), ("mlp", "gmn"), ("resnet8", "gmn")])
def test_on_w_asym_networks_the_same_permutation_changes_the_network_and_the_prediction(arch, metanet):
    """The fixed entries stay where they are, so the permuted parameters are another network: its outputs
    change, and so does an invariant metanetwork's prediction (in float64, where a symmetry moves it by < 1e-12)."""
    model = _network(arch, "w_asym").double()
    permuted = _random_hidden_permutation(model)
    x = torch.randn(4, *(MLP_SHAPE if arch == "mlp" else (1, 8, 8)), dtype=torch.float64)
    assert (model.eval()(x) - _loaded(model, permuted)(x)).abs().max() > 1e-3, "another function"
    space = WeightSpace(model)
    space.base = space.base.double()
    inputs = torch.stack([_trainable(space, dict(model.named_parameters())), _trainable(space, permuted)]).double()
    torch.manual_seed(0)
    net = build_equivariant(metanet, space).double().eval()
    with torch.no_grad():
        pred = net(inputs)
    assert abs(float(pred[0] - pred[1])) > 1e-9
    standard = _network(arch, "standard").double()
    same = _random_hidden_permutation(standard)
    s_space = WeightSpace(standard)
    s_inputs = torch.stack([_trainable(s_space, dict(standard.named_parameters())), _trainable(s_space, same)])
    torch.manual_seed(0)
    s_net = build_equivariant(metanet, s_space).double().eval()
    with torch.no_grad():
        s_pred = s_net(s_inputs.double())
    assert abs(float(s_pred[0] - s_pred[1])) < 1e-12


@pytest.mark.parametrize(
    "arch, metanet, expected",
    [("mlp", "nfn_np", 73_033), ("mlp", "nfn_hnp", 13_629_857), ("mlp", "gmn", 7_025), ("resnet8", "gmn", 7_409)],
)
def test_parameter_counts(arch, metanet, expected):
    """On the 196-32-32-32-10 MLPs of configs/fashion_mlp_metanet.yaml, HNP's input and output layers keep their
    neurons' identities, so its parameters grow with 196 inputs squared: 13.6M at 8 channels against NP's 73k at
    16. A GMN's size depends only on its edge features: a ResNet's edges carry 3x3 kernels (9 trained values, 9
    fixed values, 9 flags) where an MLP's carry one of each, 24 x 16 more weights in its edge encoder."""
    assert count_parameters(build_equivariant(metanet, WeightSpace(_network(arch, "standard")))) == expected


def test_nfn_refuses_a_resnet():
    with pytest.raises(ValueError, match="reads MLP and SIREN zoos"):
        build_equivariant("nfn_np", WeightSpace(_network("resnet8", "standard")))


ZOO = {
    "name": "eq",
    "seed": 2,
    "data": {"name": "digits"},
    "model": {"arch": "mlp", "hidden": 16},
    "variants": ["standard", "w_asym"],
    "networks": 10,
    "hyperparameters": {"lr": 0.003, "epochs": {"randint": [1, 3]}},
    "training": {"batch_size": 100, "warmup_epochs": 0, "augment": {"flip": False, "translate": 0, "cutout": 0}},
    "execution": {"networks_per_shard": 10},
}


@pytest.fixture(scope="module")
def mlp_zoo(tmp_path_factory):
    from conftest import write_zoo

    from symzoo.zoo.config import validate

    out = tmp_path_factory.mktemp("eqzoo") / "zoo"
    write_zoo(out, validate(ZOO))
    return out


def test_the_stage_trains_equivariant_metanets_beside_the_others(mlp_zoo, ray_cluster, tmp_path):
    out = tmp_path / "metanet"
    args = ["metanet", str(mlp_zoo), "--out", str(out), "--no-progress", "--metanets", "mlp,nfn_np,nfn_hnp,gmn"]
    assert cli_main([*args, "--lrs", "1e-3", "--seeds", "1", "--epochs", "2"]) == 0
    table = (out / "table.md").read_text()
    for label in ("| MLP |", "| NFN (NP) |", "| NFN (HNP) |", "| GMN |"):
        assert label in table
    assert "- equivariant control: GMN on standard vs MLP on W-Asym: squared error over the test accuracies'" in table
    runs = pd.read_parquet(out / "runs")
    assert set(runs["metanet"]) == {"mlp", "nfn_np", "nfn_hnp", "gmn"}
    assert np.isfinite(runs["test_r2"]).all()


@pytest.mark.parametrize(
    "zoo_patch, metanets, message",
    [
        ({"model": {"arch": "resnet8"}}, "nfn_np", "nfn_np reads MLP and SIREN zoos"),
        ({"variants": ["standard", "sigma_asym"]}, "nfn_hnp", "no place for sigma-Asym's gate matrix"),
    ],
)
def test_what_an_equivariant_metanet_cannot_read_is_one_line_and_exit_2(tmp_path, capsys, zoo_patch, metanets, message):
    from conftest import write_zoo

    from symzoo.zoo.config import validate

    cfg = {**ZOO, **zoo_patch, "networks": 4, "hyperparameters": {"lr": 0.003, "epochs": 1}}
    if cfg["model"]["arch"] != "mlp":
        cfg["model"] = {"arch": "resnet8"}
    write_zoo(tmp_path / "zoo", validate(cfg))
    code = cli_main(["metanet", str(tmp_path / "zoo"), "--out", str(tmp_path / "o"), "--metanets", metanets])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_model_hidden_sizes_an_mlp_and_leaves_older_zoos_hashes_alone():
    from symzoo.errors import ConfigError
    from symzoo.zoo.config import config_hash, validate

    cfg = validate({"data": {"name": "digits"}, "networks": 2, "model": {"arch": "mlp"}})
    older = {**cfg, "model": {k: v for k, v in cfg["model"].items() if k != "hidden"}}  # a manifest from before
    assert config_hash(cfg) == config_hash(older)
    small = validate({"data": {"name": "digits"}, "networks": 2, "model": {"arch": "mlp", "hidden": 16}})
    assert config_hash(small) != config_hash(cfg)
    assert [m.out_features for m in _network("mlp", "w_asym").layers if hasattr(m, "out_features")] == [32] * 3 + [10]
    with pytest.raises(ConfigError, match="model.hidden"):
        validate({"data": {"name": "digits"}, "networks": 2, "model": {"arch": "resnet8", "hidden": 16}})


def test_a_missing_extra_is_one_line_before_anything_runs(mlp_zoo, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch_geometric", None)  # as if the [equivariant] extra were not installed
    code = cli_main(["metanet", str(mlp_zoo), "--out", str(tmp_path / "o"), "--metanets", "mlp,gmn"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "symzoo: error: gmn needs the torch_geometric package: pip install 'symzoo[equivariant]'"
    ]
    assert not (tmp_path / "o").exists()


def test_the_equivariant_control_pairs_test_samples_across_variants():
    from symzoo.analysis.tables import equivariant_control

    rng = np.random.default_rng(0)
    rows, samples = [], []
    for s in range(12):
        true = float(rng.uniform(0.3, 0.9))
        for variant, offset in (("standard", 0), ("w_asym", 100)):
            samples.append({"model_id": s + offset, "sample": s})
            for metanet, noise in (("gmn", 0.01), ("mlp", 0.2)):
                for seed in (1, 2):
                    pred = true + noise * (1 if s % 2 else -1)
                    rows.append((s + offset, variant, metanet, seed, true, pred))
    predictions = pd.DataFrame(rows, columns=["model_id", "variant", "metanet", "seed", "true_acc", "pred_acc"])
    lines = equivariant_control(predictions, pd.DataFrame(samples), ["mlp", "gmn"], ["standard", "w_asym"])
    variance = pd.Series([r[4] for r in rows if r[1] == "standard" and r[3] == 1 and r[2] == "gmn"]).var(ddof=0)
    head = f"GMN on standard vs MLP on W-Asym: squared error over the test accuracies' variance {1e-4 / variance:.3f}"
    assert lines[0].startswith(f"{head} vs {0.04 / variance:.3f} (1 - R²)")
    assert "lower for the first on 12 of 12 test samples" in lines[0] and "GMN on standard predicts better" in lines[0]
    assert lines[1].startswith("GMN on standard vs GMN on W-Asym") and "no significant difference" in lines[1]


@pytest.mark.parametrize("variant", ["standard", "w_asym", "sigma_asym"])
def test_the_resnet20_graph_holds_every_parameter_once(variant):
    """ResNet20 (three blocks a stage, projection shortcuts where the width changes) at CIFAR-10's shape."""
    model = build("resnet20", variant, (3, 32, 32), 10, asym_seed=0, init_seed=0)
    layout = ParamLayout.from_model(model)
    graph = parameter_graph(model, layout)
    assert graph.n_nodes == 3 + 16 + 2 * (3 * 16 + 3 * 32 + 3 * 64) + 10  # inputs, stem, inner + out per block
    assert sorted(graph.slots[graph.slots >= 0].tolist()) == list(range(layout.size))
    kinds = graph.edge_const[:, 2:].argmax(1)
    assert int((kinds == EDGE_TYPES.index("residual")).sum()) == 16 * 3 + 32 * 2 + 64 * 2  # identity shortcuts
    assert int((kinds == EDGE_TYPES.index("gate")).sum()) == (
        0 if variant != "sigma_asym" else sum(c * c for c in [16] + [16, 16] * 3 + [32, 32] * 3 + [64, 64] * 3)
    )


def test_gmn_reads_each_sigma_asym_mlps_own_f_through_the_stage(ray_cluster, tmp_path):
    """A classifier zoo that draws F per network (model.gates: network, the default): the GMN's input ends with
    each network's F, which differs from network to network, and the stage runs on it."""
    from conftest import write_zoo

    from symzoo.analysis.metanet_inputs import ensure_inputs
    from symzoo.zoo.config import validate
    from symzoo.zoo.layers import FiGLU
    from symzoo.zoo.store import open_zoo
    from symzoo.zoo.weight_cache import VariantCache

    write_zoo(tmp_path / "zoo", validate({**ZOO, "variants": ["sigma_asym"]}))
    zoo = open_zoo(tmp_path / "zoo")
    cache = VariantCache.of(zoo, "sigma_asym", "final", tmp_path / "cache")
    ensure_inputs(cache, ("gated",), zoo)
    gated, n = cache.matrix("gated"), zoo.layout("sigma_asym").n_trainable
    for row, model_id in enumerate(zoo.frame["model_id"][:3]):
        gates = [m.gate.reshape(-1) for m in zoo.model(int(model_id)).modules() if isinstance(m, FiGLU)]
        np.testing.assert_array_equal(gated[row, n:], torch.cat(gates).numpy())
    assert not np.array_equal(gated[0, n:], gated[1, n:])
    out = tmp_path / "run"
    args = ["--metanets", "gmn", "--lrs", "1e-3", "--seeds", "1", "--epochs", "1", "--no-progress"]
    assert cli_main(["metanet", str(tmp_path / "zoo"), "--out", str(out), *args]) == 0
    assert np.isfinite(pd.read_parquet(out / "runs")["test_r2"]).all()
