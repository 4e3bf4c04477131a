"""Architectures, parameter counts and the symmetry properties of docs/paper.md §1."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from symzoo.zoo.layers import FiGLU, FixSpec, MaskedConv2d, MaskedLinear, sample_row_masks, seeded_generator
from symzoo.zoo.layout import ParamLayout, count_trainable
from symzoo.zoo.models import build


@pytest.mark.parametrize(
    ("variant", "total", "trainable"),
    [("standard", 78_042, 78_042), ("w_asym", 78_042, 60_634), ("sigma_asym", 78_042, 78_042)],
)
def test_resnet8_cifar_parameter_counts(variant, total, trainable):
    model = build("resnet8", variant, (3, 32, 32), 10)
    layout = ParamLayout.from_model(model)
    assert sum(p.numel() for p in model.parameters()) == total
    assert len(layout.slots) == 29
    assert count_trainable(model) == trainable


def test_resnet8_w_asym_fixes_the_whole_stem_and_eight_filters_per_channel():
    model = build("resnet8", "w_asym")
    assert model.stem.trainable_mask().sum() == 0
    mask = model.stages[1][0].conv2.trainable_mask()  # 32 -> 32 channels, 3x3
    fixed_filters = (~mask).all(dim=(2, 3)).sum(dim=1)
    assert torch.equal(fixed_filters, torch.full((32,), 8))
    rows = {tuple(r.tolist()) for r in mask.flatten(1)}
    assert len(rows) == 32, "rows of a mask must be pairwise distinct"
    assert (~model.head.trainable_mask()).sum(1).tolist() == [8] * 10


def test_other_sizes_and_architectures_run():
    assert build("resnet8", "w_asym", (1, 8, 8), 10)(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert build("resnet8", "standard", (3, 16, 16), 10)(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    r20 = build("resnet20", "w_asym", (3, 32, 32), 10)
    assert sum(p.numel() for p in r20.parameters()) == 272_474
    assert (~r20.stem.trainable_mask()).flatten(1).sum(1).tolist() == [12] * 16
    r20x8 = build("resnet20", "w_asym", width=8)
    assert (~r20x8.stem.trainable_mask()).flatten(1).sum(1).tolist() == [27] * 128  # 36 capped at 3*3*3
    mlp = build("mlp", "w_asym", (1, 28, 28), 10)
    fixed_per_row = [int((~m.trainable_mask()).sum(1)[0]) for m in mlp.modules() if isinstance(m, MaskedLinear)]
    assert fixed_per_row == [64, 64, 64, 256]
    assert build("mlp", "sigma_asym", (1, 28, 28))(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_bad_arch_or_variant_names_the_choices():
    with pytest.raises(ValueError, match="choose one of resnet8, resnet20, resnet110, mlp"):
        build("resnet9", "standard")
    with pytest.raises(ValueError, match="standard, w_asym, sigma_asym"):
        build("resnet8", "asym")


def permute_stage1_channels(model: torch.nn.Module, perm: torch.Tensor) -> None:
    """Permute the hidden channels inside stage 1's block (conv1 out, norm1, conv2 in), with their affines."""
    block = model.stages[0][0]
    with torch.no_grad():
        block.conv1.weight.copy_(block.conv1.weight[perm])
        block.norm1.weight.copy_(block.norm1.weight[perm])
        block.norm1.bias.copy_(block.norm1.bias[perm])
        block.conv2.weight.copy_(block.conv2.weight[:, perm])


def test_permuting_hidden_channels_is_a_symmetry_of_standard_nets_only():
    x = torch.randn(4, 3, 32, 32)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    for variant, invariant in (("standard", True), ("w_asym", False)):
        model = build("resnet8", variant, init_seed=3).eval()
        before = model(x)
        permute_stage1_channels(model, perm)
        after = model(x)
        assert torch.allclose(before, after, atol=1e-5) is invariant, variant


@pytest.mark.parametrize(("fix", "invariant"), [(None, True), (FixSpec(2, 1.0), False)])
def test_positive_scaling_is_a_symmetry_of_relu_layers_only_without_fixed_entries(fix, invariant):
    """Scaling hidden unit j by s > 0 into and 1/s out of a ReLU is a symmetry of standard layers; W-Asym's fixed
    entries do not scale, so the same move changes the function."""
    lin1, lin2 = MaskedLinear(5, 7, fix=fix), MaskedLinear(7, 3, fix=fix)
    for i, layer in enumerate((lin1, lin2)):
        layer.init_fixed(seeded_generator("scale", i))
        layer.init_parameters(seeded_generator("scale-init", i))
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    before = lin2(torch.relu(lin1(x)))
    scale = torch.rand(7, generator=torch.Generator().manual_seed(1)) + 0.5
    with torch.no_grad():
        lin1.weight.mul_(scale[:, None])
        lin1.bias.mul_(scale)
        lin2.weight.div_(scale[None, :])
    assert torch.allclose(before, lin2(torch.relu(lin1(x))), atol=1e-5) is invariant


def test_figlu_is_not_permutation_or_diagonal_equivariant():
    act = FiGLU(16)
    act.init_fixed(seeded_generator("test", 1))
    x = torch.randn(8, 16)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(act(x[:, perm]), act(x)[:, perm], atol=1e-4)
    scale = torch.rand(16) + 0.5
    assert not torch.allclose(act(x * scale), act(x) * scale, atol=1e-4)
    relu = torch.nn.ReLU()
    assert torch.allclose(relu(x[:, perm]), relu(x)[:, perm])


def test_fixed_entries_stay_bit_identical_under_adamw_with_weight_decay():
    model = build("resnet8", "w_asym", (1, 8, 8), 10, init_seed=1)
    layers = [m for m in model.modules() if isinstance(m, (MaskedConv2d, MaskedLinear))]
    before = [m.effective_weight().detach().clone() for m in layers]
    trainable_before = ParamLayout.from_model(model).flatten(model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.5)
    for _ in range(30):
        loss = model(torch.randn(16, 1, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for m, w0 in zip(layers, before, strict=True):
        fixed = ~m.trainable_mask()
        assert torch.equal(m.effective_weight().detach()[fixed], w0[fixed])
        assert torch.all(m.weight.detach()[fixed] == 0)
    layout = ParamLayout.from_model(model)
    moved = layout.flatten(model) != trainable_before
    assert moved[torch.from_numpy(layout.trainable)].float().mean() > 0.9, "trainable entries must train"


def test_row_masks_are_distinct_and_deterministic():
    a = sample_row_masks(64, 16, 8, seeded_generator("x", 1))
    b = sample_row_masks(64, 16, 8, seeded_generator("x", 1))
    assert torch.equal(a, b)
    assert (~a).sum(1).tolist() == [8] * 64
    assert len({tuple(r.tolist()) for r in a}) == 64


MASK_DIGEST = (
    "import hashlib, sys, torch; from zoo.models import build;"
    "m = build('resnet8', sys.argv[1], asym_seed=int(sys.argv[2]));"
    "h = hashlib.sha256(); [h.update(b.numpy().tobytes()) for b in m.buffers()]; print(h.hexdigest())"
)


def test_two_processes_with_the_same_seed_build_identical_fixed_structure():
    def digest(variant: str, seed: int) -> str:
        out = subprocess.run(
            [sys.executable, "-c", MASK_DIGEST, variant, str(seed)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": "random", "PATH": ""},
            cwd=".",
        )
        return out.stdout.strip()

    for variant in ("w_asym", "sigma_asym"):
        assert digest(variant, 7) == digest(variant, 7)
        assert digest(variant, 7) != digest(variant, 8)


def test_same_seeds_build_the_same_network_and_init_seed_changes_only_trainables():
    a, b = build("resnet8", "w_asym", asym_seed=1, init_seed=5), build("resnet8", "w_asym", asym_seed=1, init_seed=5)
    layout = ParamLayout.from_model(a)
    assert torch.equal(layout.flatten(a), layout.flatten(b))
    c = build("resnet8", "w_asym", asym_seed=1, init_seed=6)
    assert not torch.equal(layout.flatten(a), layout.flatten(c))
    assert all(torch.equal(x, y) for x, y in zip(a.buffers(), c.buffers(), strict=True))


def test_layout_round_trip_and_json():
    model = build("resnet8", "w_asym", init_seed=2)
    layout = ParamLayout.from_model(model)
    flat = layout.flatten(model)
    other = layout.load_into(build("resnet8", "w_asym", init_seed=9), flat)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), other.eval()(x))
    assert ParamLayout.from_json(layout.to_json()) == layout
    batched = layout.unflatten(torch.stack([flat, flat * 2]))
    assert batched["stem.weight"].shape == (2, 16, 3, 3, 3)
    assert torch.equal(layout.flatten(batched)[1], flat * 2)
    with pytest.raises(ValueError, match="layout expects 78042"):
        layout.unflatten(torch.zeros(5))
