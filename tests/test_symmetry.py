"""Symmetries as data: which maps preserve each variant's function, measured on logits, and the specs recorded."""

from __future__ import annotations

import copy

import pytest
import torch

from symzoo.errors import ZooError
from symzoo.zoo.models import build
from symzoo.zoo.symmetry import NeuronPermutation, PositiveScaling, describe_symmetries, permutation_spec

VARIANTS = ("standard", "w_asym", "sigma_asym")


def logit_change(model: torch.nn.Module, transform, variant: str) -> float:
    """Max |logit difference| on random inputs after ``transform`` of the model's parameters."""
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    moved = copy.deepcopy(model)
    mapped = transform(dict(model.named_parameters()), variant)
    with torch.no_grad():
        for name, p in moved.named_parameters():
            p.copy_(mapped[name])
        return float((moved(x) - model(x)).abs().max())


@pytest.mark.parametrize("arch", ["mlp", "resnet8"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_map_preserves_the_function_exactly_where_it_is_a_symmetry_and_changes_it_elsewhere(arch, variant):
    model = build(arch, variant, (1, 8, 8), 10, init_seed=1).eval()
    symmetries = {variant: describe_symmetries(model)}
    for kind in (NeuronPermutation, PositiveScaling):
        transform = kind(symmetries, allow_function_change=True, generator=torch.Generator().manual_seed(3))
        change = logit_change(model, transform, variant)
        if not transform.is_symmetry(variant):
            assert change > 0.1, f"{transform.kind} of a {variant} {arch} should change its function"
            with pytest.raises(ZooError, match=f"a {transform.kind} is not a symmetry of {variant} networks"):
                kind(symmetries)(dict(model.named_parameters()), variant)
        elif kind is NeuronPermutation:
            assert change < 1e-5  # float rounding only
        else:
            assert change < 1e-3  # up to the norm's eps: c z / sqrt(c^2 var + eps) is not quite z / sqrt(var + eps)
            for module in model.modules():
                if hasattr(module, "eps"):
                    module.eps = 0.0
            assert logit_change(model, transform, variant) < 1e-5  # and exact without it
    expected = {"standard": (True, True), "w_asym": (False, False), "sigma_asym": (False, True)}[variant]
    assert (transform.symmetries[variant]["permutation_is_symmetry"], transform.is_symmetry(variant)) == expected


def test_the_recorded_spec_is_the_one_git_rebasin_uses():
    model = build("resnet8", "standard", (1, 8, 8), 10, init_seed=1)
    recorded = describe_symmetries(model)
    assert {n: tuple(a) for n, a in recorded["permutations"].items()} == permutation_spec(model).axes
    assert recorded["permutations"]["head.weight"] == [None, "stream.stage2"]
    assert ["stem.weight"] in recorded["scale_groups"] and len(recorded["scale_groups"]) == 1 + 3 * 2 + 2
