"""Fidelity to the authors' networks (issue 22): each architecture's own init, fixed structure independent of
torch's default dtype, and FiGLU gates drawn per zoo or per hyperparameter sample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from symzoo.analysis.lmc import lmc_curves
from symzoo.analysis.mli import mli_curves
from symzoo.errors import ConfigError
from symzoo.zoo.augment import AugmentConfig
from symzoo.zoo.config import validate
from symzoo.zoo.data import Dataset
from symzoo.zoo.layers import FiGLU, MaskedConv2d, MaskedLinear
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build, build_configured
from symzoo.zoo.packed import train_pack
from symzoo.zoo.plan import HParams
from symzoo.zoo.train import Recipe, lr_factor, train_network


def scaled_std(layer: torch.nn.Module) -> float:
    """std of the trainable weight entries times sqrt(fan_in): 1/sqrt(3) for U(+-1/sqrt(fan_in)), sqrt(2) for
    Kaiming normal with ReLU gain."""
    w = layer.weight.detach()[layer.trainable_mask()]
    return float(w.std() * math.sqrt(layer.weight[0].numel()))


UNIFORM, KAIMING = 1 / math.sqrt(3), math.sqrt(2)


@pytest.mark.parametrize(
    ("arch", "variant", "expected"),
    [
        ("mlp", "standard", UNIFORM),
        ("mlp", "sigma_asym", UNIFORM),
        ("mlp", "w_asym", UNIFORM),
        ("resnet8", "standard", KAIMING),
        ("resnet8", "sigma_asym", KAIMING),
        ("resnet8", "w_asym", UNIFORM),
    ],
)
def test_each_architecture_starts_from_its_authors_init(arch, variant, expected):
    """MLPs: PyTorch's nn.Linear default in every variant; ResNets: Kaiming normal (W-Asym trainable entries
    uniform). The widest layer of each has enough entries to tell std 0.577 from 1.414 with room to spare."""
    model = build(arch, variant, (1, 28, 28) if arch == "mlp" else (3, 32, 32), 10, init_seed=3)
    layers = [m for m in model.modules() if isinstance(m, (MaskedLinear, MaskedConv2d)) and m.trainable_mask().any()]
    widest = max(layers, key=lambda m: int(m.trainable_mask().sum()))
    assert scaled_std(widest) == pytest.approx(expected, rel=0.03)
    fan_in = widest.weight[0].numel()
    if expected == UNIFORM:  # bounded by 1/sqrt(fan_in), as a uniform draw must be
        assert float(widest.weight.detach().abs().max()) <= 1 / math.sqrt(fan_in)
    for m in layers:
        if m.bias is not None:
            assert float(m.bias.detach().abs().max()) <= 1 / math.sqrt(m.weight[0].numel())


@pytest.mark.parametrize(("arch", "shape"), [("mlp", (1, 8, 8)), ("resnet8", (1, 8, 8))])
@pytest.mark.parametrize("variant", ["standard", "w_asym", "sigma_asym"])
def test_the_default_dtype_does_not_change_the_network(arch, shape, variant):
    """A zoo rebuilt under float64 (as tests that prove equivalences do) is the network that was trained."""
    kwargs = dict(asym_seed=5, init_seed=7, gate_sample=2)
    ref = build(arch, variant, shape, 10, **kwargs)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        wide = build(arch, variant, shape, 10, **kwargs)
    finally:
        torch.set_default_dtype(previous)
    assert next(wide.parameters()).dtype == torch.float64
    for (name, a), (_, b) in zip(ref.state_dict().items(), wide.state_dict().items(), strict=True):
        assert torch.equal(a.double(), b), f"{name} differs under float64"
    x = torch.randn(4, *shape)
    assert torch.allclose(ref(x).double(), wide(x.double()), atol=1e-4)


def gates(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.gate for m in model.modules() if isinstance(m, FiGLU)]


def config(gates_choice: str | None, arch: str = "resnet8") -> dict:
    raw = {"data": {"name": "digits"}, "networks": 4, "variants": ["standard", "sigma_asym"], "model": {"arch": arch}}
    if gates_choice is not None:
        raw["model"]["gates"] = gates_choice
    return validate(raw)


def test_gates_per_zoo_or_per_sample_and_replicates_share():
    zoo = config("zoo")
    assert config(None)["model"]["gates"] == "network"  # the default: the authors' zoo had one F per network
    a, b = (build_configured(zoo, "sigma_asym", (1, 8, 8), 10, init_seed=s, sample=s) for s in (1, 2))
    assert all(torch.equal(x, y) for x, y in zip(gates(a), gates(b), strict=True))
    per = config("network")
    s0r0, s0r1, s1 = (build_configured(per, "sigma_asym", (1, 8, 8), 10, seed, sample) for seed, sample in
                      ((1, 0), (2, 0), (3, 1)))  # fmt: skip
    assert all(torch.equal(x, y) for x, y in zip(gates(s0r0), gates(s0r1), strict=True)), "replicates share F"
    assert not any(torch.equal(x, y) for x, y in zip(gates(s0r0), gates(s1), strict=True)), "samples differ"
    assert not any(torch.equal(x, y) for x, y in zip(gates(s0r0), gates(a), strict=True)), "not the zoo's F"
    # masks and every other variant are untouched by the choice
    std = [build_configured(c, "standard", (1, 8, 8), 10, 1, 0).state_dict() for c in (zoo, per)]
    assert all(torch.equal(std[0][k], std[1][k]) for k in std[0])
    with pytest.raises(ValueError, match="pass sample="):
        build_configured(per, "sigma_asym", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="model.gates"):
        config("layer")


def tiny_data(n_train: int = 64, n_test: int = 32) -> Dataset:
    g = torch.Generator().manual_seed(0)
    return Dataset(
        "toy",
        torch.randint(0, 255, (n_train, 1, 8, 8), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n_train,), generator=g),
        torch.randint(0, 255, (n_test, 1, 8, 8), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n_test,), generator=g),
        mean=(127.0,),
        std=(60.0,),
        num_classes=10,
    )


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # rounding noise cannot grow into visible differences
    yield
    torch.set_default_dtype(previous)


def test_packed_training_with_per_network_gates_matches_one_at_a_time(float64):
    """Each network of a pack computes with its own F (stacked gates), exactly as trained alone."""
    cfg = config("network")
    data = tiny_data()
    recipe = Recipe(batch_size=16, warmup_epochs=1, augment=AugmentConfig(False, 0, 0), amp=False)
    hps = [HParams(0.01, 1e-3, 0.1, 2), HParams(0.02, 1e-4, 0.0, 3)]
    build_pair = [build_configured(cfg, "sigma_asym", (1, 8, 8), 10, seed, sample) for seed, sample in ((1, 0), (2, 1))]
    packed = train_pack(build_pair, data, hps, [1, 2], recipe)
    for (seed, sample), hp, res in zip(((1, 0), (2, 1)), hps, packed, strict=True):
        alone = train_network(build_configured(cfg, "sigma_asym", (1, 8, 8), 10, seed, sample), data, hp, recipe, seed)
        assert torch.allclose(res.final_weights, alone.final_weights, atol=1e-9, rtol=0)
        assert res.test_acc == alone.test_acc
    # the control: the same pack under the zoo's one F trains other networks
    shared = [build_configured(config("zoo"), "sigma_asym", (1, 8, 8), 10, seed, 0) for seed in (1, 2)]
    other = train_pack(shared, data, hps, [1, 2], recipe)
    assert not torch.allclose(other[1].final_weights, packed[1].final_weights, atol=1e-3)


def test_mli_and_lmc_use_each_samples_own_gates():
    """The analyses rebuild a per-sample F: evaluating with the zoo's F instead gives other losses."""
    data = tiny_data()
    per, zoo = config("network"), config("zoo")
    nets = [build_configured(per, "sigma_asym", (1, 8, 8), 10, seed, sample) for seed, sample in ((1, 0), (2, 1))]
    layout = ParamLayout.from_model(nets[0])
    init = np.stack([layout.flatten(m).numpy() for m in nets])
    final = init * 1.5
    frame = pd.DataFrame(
        {"model_id": [0, 1], "variant": "sigma_asym", "sample": [0, 1], "seed": [1, 2], "label_smoothing": 0.0}
    )
    curves = mli_curves(frame, init, final, per, data, 3, ["clean"], 64)
    direct = []
    for net, w in zip(nets, final, strict=True):
        layout.load_into(net, w).eval()
        with torch.no_grad():
            direct.append(float(torch.nn.functional.cross_entropy(net(data.normalize(data.x_train)), data.y_train)))
    ends = curves[curves["alpha"] == 1.0].sort_values("model_id")["loss"].to_numpy()
    assert ends == pytest.approx(direct, abs=1e-5)
    other = mli_curves(frame, init, final, zoo, data, 3, ["clean"], 64)
    assert not np.allclose(other["loss"], curves["loss"])
    pairs = pd.DataFrame({"sample": [1], "variant": ["sigma_asym"], "model_a": [0], "model_b": [1]})
    lmc = lmc_curves(pairs, final[:1], final[:1], per, data, 3, 64, methods=[])
    net = layout.load_into(build_configured(per, "sigma_asym", (1, 8, 8), 10, 9, 1), final[0]).eval()
    with torch.no_grad():
        expected = float(torch.nn.functional.cross_entropy(net(data.normalize(data.x_test)), data.y_test))
    assert lmc["test_loss"].to_numpy() == pytest.approx([expected] * 3, abs=1e-5)


def test_constant_schedule_keeps_the_peak_learning_rate():
    assert [lr_factor(s, 10, 2, "constant") for s in range(10)] == [1.0] * 10
    assert lr_factor(0, 10, 2) == 0.5 and lr_factor(9, 10, 2) == pytest.approx(1 / 8)
    assert validate({"data": {"name": "digits"}, "networks": 1, "training": {"schedule": "constant"}})
    with pytest.raises(ConfigError, match="training.schedule"):
        validate({"data": {"name": "digits"}, "networks": 1, "training": {"schedule": "cosine"}})


@pytest.mark.parametrize("arch, shape, default", [("mlp", (1, 8, 8), 1.0), ("resnet8", (1, 8, 8), None)])
def test_gate_std_sets_fs_scale_and_leaves_older_zoos_alone(arch, shape, default):
    """model.gate_std draws F ~ N(0, std^2) in every FiGLU; unset, each architecture keeps its authors' scale
    (1 in their MLPs, 1/sqrt(C) in their ResNets) and the config hash of a zoo made before the field existed."""
    from symzoo.zoo.config import config_hash

    base = {"data": {"name": "digits"}, "networks": 2, "variants": ["sigma_asym"], "model": {"arch": arch}}
    plain = validate(base)
    scaled = validate({**base, "model": {"arch": arch, "gate_std": 0.01}})
    for cfg, want in ((plain, default), (scaled, 0.01)):
        for gate in (
            m for m in build_configured(cfg, "sigma_asym", shape, 10, sample=0).modules() if isinstance(m, FiGLU)
        ):
            expected = want if want is not None else 1 / math.sqrt(gate.channels)
            assert gate.gate.std().item() == pytest.approx(expected, rel=0.25)
    older = {**plain, "model": {k: v for k, v in plain["model"].items() if k != "gate_std"}}
    assert config_hash(plain) == config_hash(older) != config_hash(scaled)
    with pytest.raises(ConfigError, match="model.gate_std"):
        validate({**base, "model": {"arch": arch, "gate_std": -1}})
