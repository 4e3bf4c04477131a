"""Packed training is the one-by-one recipe, computed for K networks at once."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from symzoo.zoo.augment import AugmentConfig
from symzoo.zoo.data import load_dataset
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build
from symzoo.zoo.packed import PackedAdamW, group_into_packs, packed_logits, rows_to_keep, stack_parameters, train_pack
from symzoo.zoo.plan import HParams
from symzoo.zoo.train import Recipe, smoothed_cross_entropy, train_network

RECIPE = Recipe(batch_size=100, warmup_epochs=1, augment=AugmentConfig(flip=True, translate=1, cutout=2))
# Networks that learn; each has its own lr, weight decay, smoothing and epoch count.
HPARAMS = [HParams(0.01, 1e-3, 0.1, 3), HParams(0.005, 1e-2, 0.05, 2), HParams(0.005, 1e-4, 0.2, 4)]
SEEDS = [11, 12, 13]


@pytest.fixture(scope="module")
def small_digits():
    return load_dataset("digits", train_per_class=50)


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize(
    ("arch", "variant"),
    [
        ("resnet8", "standard"),
        ("resnet8", "w_asym"),
        ("resnet8", "sigma_asym"),
        ("mlp", "w_asym"),
        ("mlp", "sigma_asym"),
    ],
)
def test_pack_equals_one_by_one_exactly_in_float64(digits, float64, arch, variant):
    """In float64 rounding noise cannot grow into visible differences, so the two must agree exactly.

    These hyperparameters include a network whose float32 trajectory is chaotic (Adam turns rounding-level
    gradient differences into +-lr steps early on): in float32 even the thread count moves its weights.
    """
    hps = [HParams(0.037, 0.016, 0.165, 3), HParams(0.0076, 0.00106, 0.07, 3), HParams(0.05, 0.08, 0.168, 2)]
    if arch == "mlp":  # the MLP's N(0, 1) FiGLU gates saturate, so a near-tie can flip a gate: from PyTorch's
        # default init, lr 0.0076 already turns float64 rounding into 2e-4 in 3 epochs; these stay at rounding level
        hps = [HParams(0.003, 0.016, 0.165, 3), HParams(0.002, 0.00106, 0.07, 3), HParams(0.003, 0.08, 0.168, 2)]
    seeds = [5, 6, 7]
    recipe = Recipe(batch_size=100, warmup_epochs=1, augment=AugmentConfig(flip=False, translate=2, cutout=0))

    def nets():
        return [build(arch, variant, digits.in_shape, 10, asym_seed=2, init_seed=s) for s in seeds]

    alone = [train_network(m, digits, hp, recipe, s, [1]) for m, hp, s in zip(nets(), hps, seeds, strict=True)]
    packed = train_pack(nets(), digits, hps, seeds, recipe, [1])
    for a, b in zip(alone, packed, strict=True):
        assert (a.status, a.epochs_done, a.test_acc) == (b.status, b.epochs_done, b.test_acc)
        assert torch.allclose(a.final_weights, b.final_weights, atol=1e-6, rtol=0)
        assert torch.allclose(a.checkpoints[1], b.checkpoints[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", ["standard", "w_asym", "sigma_asym"])
def test_pack_matches_one_by_one_in_float32(small_digits, variant):
    def nets():
        return [build("resnet8", variant, small_digits.in_shape, 10, asym_seed=1, init_seed=s) for s in SEEDS]

    alone = [
        train_network(m, small_digits, hp, RECIPE, s, [1]) for m, hp, s in zip(nets(), HPARAMS, SEEDS, strict=True)
    ]
    packed = train_pack(nets(), small_digits, HPARAMS, SEEDS, RECIPE, [1])
    for a, b in zip(alone, packed, strict=True):
        assert b.status == a.status == "ok" and b.epochs_done == a.epochs_done
        assert torch.allclose(a.final_weights, b.final_weights, atol=1e-4, rtol=1e-4)
        assert torch.allclose(a.checkpoints[1], b.checkpoints[1], atol=1e-4, rtol=1e-4)
        assert b.test_acc == pytest.approx(a.test_acc, abs=1.5 / len(small_digits.y_test))
        assert b.test_loss == pytest.approx(a.test_loss, rel=1e-3)
        assert b.history["train_loss"] == pytest.approx(a.history["train_loss"], rel=1e-4)
    assert [len(r.history["train_loss"]) for r in packed] == [3, 2, 4]


def test_w_asym_fixed_entries_stay_fixed_in_a_pack(small_digits):
    models = [build("resnet8", "w_asym", small_digits.in_shape, 10, asym_seed=1, init_seed=s) for s in SEEDS]
    fixed = torch.from_numpy(~ParamLayout.from_model(models[0]).trainable)
    assert fixed.sum() == 17_120  # digits: 1-channel stem (144) all fixed, the rest as on CIFAR-10
    for r in train_pack(models, small_digits, HPARAMS, SEEDS, RECIPE):
        assert torch.all(r.final_weights[fixed] == 0)  # raw entries under the mask never move


def test_a_diverging_network_does_not_poison_its_pack(small_digits):
    hps = [HPARAMS[0], HParams(1e30, 0.0, 0.0, 3), HPARAMS[2]]

    def nets():
        return [build("resnet8", "sigma_asym", small_digits.in_shape, 10, asym_seed=1, init_seed=s) for s in SEEDS]

    packed = train_pack(nets(), small_digits, hps, SEEDS, RECIPE)
    assert [r.status for r in packed] == ["ok", "diverged", "ok"]
    assert math.isnan(packed[1].test_acc) and packed[1].epochs_done == 1
    for k in (0, 2):
        alone = train_network(nets()[k], small_digits, hps[k], RECIPE, SEEDS[k])
        assert torch.allclose(alone.final_weights, packed[k].final_weights, atol=1e-4, rtol=1e-4)


def test_compiled_packs_shrink_to_powers_of_two():
    assert rows_to_keep([True, False, True], fixed_sizes=False) == [0, 2]
    assert rows_to_keep([True] * 15 + [False], fixed_sizes=True) == list(range(16))  # 15 live: stays at 16
    assert rows_to_keep([False] * 13 + [True] * 3 + [True] * 16, fixed_sizes=True) == list(range(13)) + list(
        range(13, 32)
    )  # 19 live of 32: no change
    assert rows_to_keep([False] * 20 + [True] * 12, fixed_sizes=True) == [0, 1, 2, 3] + list(range(20, 32))
    assert rows_to_keep([False, True, False] * 8, fixed_sizes=True) == list(range(1, 24, 3))  # 8 live of 24
    assert rows_to_keep([True, False, True, True, False] * 2, fixed_sizes=True) == [0, 1, 2, 3, 4, 5, 7, 8]
    assert rows_to_keep([True, False, True, False, False] * 2, fixed_sizes=True) == [0, 2, 5, 7]  # eager below 8
    assert rows_to_keep([False, False], fixed_sizes=True) == []


def test_passengers_of_a_fixed_size_pack_change_nothing(digits, float64):
    """A network that finished (or diverged) rides along at lr 0 while the pack keeps its size; the others train
    exactly as alone. Epochs 3, 2, 4 (x3) and a diverging one: after epoch 1 the diverged row stays as a passenger
    (7 live of 8), after epoch 2 too (6 live), after epoch 3 the pack runs eager on its 3 live rows."""
    hps = [HParams(0.037, 0.016, 0.165, 3), HParams(0.0076, 0.00106, 0.07, 2), HParams(0.02, 0.01, 0.1, 4)]
    hps += [HParams(0.01, 0.001, 0.0, 4), HParams(0.003, 0.0, 0.1, 4), HParams(0.02, 0.05, 0.0, 3)]
    hps += [HParams(0.005, 0.01, 0.05, 3), HParams(1e300, 0.0, 0.0, 4)]  # float64: weights near 1e300 overflow
    seeds = [5, 6, 7, 8, 9, 10, 11, 12]
    recipe = Recipe(batch_size=100, warmup_epochs=1, augment=AugmentConfig(flip=True, translate=2, cutout=2))

    def nets():
        return [build("resnet8", "standard", digits.in_shape, 10, init_seed=s) for s in seeds]

    packed = train_pack(nets(), digits, hps, seeds, recipe, fixed_sizes=True)
    assert [r.status for r in packed] == ["ok"] * 7 + ["diverged"]
    assert [len(r.history["train_loss"]) for r in packed] == [3, 2, 4, 4, 4, 3, 3, 1]
    for k in range(7):
        alone = train_network(nets()[k], digits, hps[k], recipe, seeds[k])
        assert alone.test_acc == packed[k].test_acc
        assert torch.allclose(alone.final_weights, packed[k].final_weights, atol=1e-6, rtol=0)


def test_one_packed_step_equals_torch_adamw_per_network():
    """Gradients of the packed forward agree to float32 precision, and the optimizer step is torch's AdamW."""
    models = [build("resnet8", "w_asym", (1, 8, 8), 10, init_seed=s) for s in SEEDS]
    x, y = torch.randn(3, 32, 1, 8, 8), torch.randint(0, 10, (3, 32))
    params, buffers = stack_parameters(models), dict(models[0].named_buffers())
    logits = packed_logits(models[0], params, buffers, x)
    smoothed_cross_entropy(logits, y, torch.tensor([0.0, 0.1, 0.2])).sum().backward()
    lr = torch.tensor([0.01, 0.02, 0.03], dtype=torch.float64)
    wd = torch.tensor([0.1, 0.01, 0.0], dtype=torch.float64)
    optimizer = PackedAdamW(params)
    for _ in range(2):
        optimizer.step(params, lr, wd)
    for k, m in enumerate(models):
        smoothed_cross_entropy(m(x[k]), y[k], [0.0, 0.1, 0.2][k]).backward()
        for name, p in m.named_parameters():
            assert torch.allclose(params[name].grad[k], p.grad, atol=1e-6, rtol=1e-4), name
        torch_adamw = torch.optim.AdamW(m.parameters(), lr=float(lr[k]), weight_decay=float(wd[k]))
        for _ in range(2):
            for name, p in m.named_parameters():
                p.grad = params[name].grad[k].clone()  # same gradients: the update alone is compared
            torch_adamw.step()
        for name, p in m.named_parameters():
            assert torch.equal(params[name].detach()[k], p.detach()), name


def test_packed_rejects_sgd(small_digits):
    with pytest.raises(ValueError, match="packed training implements adamw"):
        train_pack(
            [build("resnet8", "standard", (1, 8, 8))], small_digits, HPARAMS[:1], SEEDS[:1], Recipe(optimizer="sgd")
        )


def pack_with(variant: str, data, **recipe_changes) -> list:
    """The three test networks trained as one pack under RECIPE with ``recipe_changes``."""
    models = [build("resnet8", variant, data.in_shape, 10, asym_seed=1, init_seed=s) for s in SEEDS]
    return train_pack(models, data, HPARAMS, SEEDS, dataclasses.replace(RECIPE, **recipe_changes))


@pytest.mark.slow
def test_compiled_packs_match_eager_with_each_zoos_fixed_structure(small_digits, float64, monkeypatch):
    """torch.compile of the packed forward (the GPU default) changes nothing but speed, passengers included; the
    graph that a worker builds for one pack serves later packs, and another zoo's masks are its own, not the
    first pack's. Eight networks: smaller packs run eager (``MIN_COMPILED_PACK``)."""
    compiled_calls = []
    real_compile = torch.compile

    def counting_compile(fn, **options):
        compiled = real_compile(fn, **options)
        return lambda *args: compiled_calls.append(1) or compiled(*args)

    monkeypatch.setattr(torch, "compile", counting_compile)
    hps = [HParams(0.01 * (1 + i % 3), 1e-3, 0.1, 1 if i < 3 else 2) for i in range(8)]  # 3 become passengers
    seeds = list(range(20, 28))

    def pack(asym_seed: int, compile: bool) -> list:
        models = [build("resnet8", "w_asym", small_digits.in_shape, 10, asym_seed, init_seed=s) for s in seeds]
        return train_pack(models, small_digits, hps, seeds, dataclasses.replace(RECIPE, compile=compile))

    for asym_seed in (1, 2):
        compiled, eager = pack(asym_seed, compile=True), pack(asym_seed, compile=False)
        for a, b in zip(compiled, eager, strict=True):
            assert a.epochs_done == b.epochs_done
            assert torch.allclose(a.final_weights, b.final_weights, atol=1e-9, rtol=0)
    assert len(compiled_calls) == 2 * 2 * small_digits.x_train.shape[0] // RECIPE.batch_size  # 2 packs, 2 epochs


@pytest.mark.slow
def test_a_worker_compiles_every_pack_past_torchs_default_graph_limit(small_digits, monkeypatch):
    """A long-running GPU worker needs a graph per variant and pack size, more than torch's default limit (8 per
    function), past which torch would train every further pack eager; a limit of 1 stands in for it here."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    graphs_before = counters["stats"]["unique_graphs"]
    hps, seeds = [HParams(0.01, 1e-3, 0.1, 1)] * 8, list(range(8))
    for variant in ("standard", "w_asym"):
        models = [build("mlp", variant, small_digits.in_shape, 10, asym_seed=1, init_seed=s) for s in seeds]
        train_pack(models, small_digits, hps, seeds, dataclasses.replace(RECIPE, compile=True))
    assert counters["stats"]["unique_graphs"] - graphs_before == 2


def test_packs_hold_one_variant_in_the_given_order():
    from symzoo.zoo.plan import plan_zoo

    specs = plan_zoo(10, ["standard", "w_asym"], zoo_seed=3)
    groups = group_into_packs(specs, 4)
    assert [len(g) for g in groups] == [4, 4, 2, 4, 4, 2]
    assert all(len({s.variant for s in g}) == 1 for g in groups)
    assert [s.model_id for g in groups for s in g] == [
        s.model_id for v in ("standard", "w_asym") for s in specs if s.variant == v
    ]


def test_channels_last_changes_nothing_but_memory_layout(small_digits, float64):
    """NHWC convolutions round differently; in float64 that cannot show, so the trainings must agree."""
    plain, nhwc = pack_with("sigma_asym", small_digits), pack_with("sigma_asym", small_digits, channels_last=True)
    for a, b in zip(plain, nhwc, strict=True):
        assert a.test_acc == b.test_acc
        assert torch.allclose(a.final_weights, b.final_weights, atol=1e-6, rtol=0)
