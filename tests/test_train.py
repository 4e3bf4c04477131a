"""The training recipe: learning, determinism, schedule, divergence."""

from __future__ import annotations

import math

import torch

from symzoo.zoo.augment import AugmentConfig
from symzoo.zoo.models import build
from symzoo.zoo.plan import PAPER_TABLE8, plan_zoo, sample_hparams
from symzoo.zoo.train import HParams, Recipe, lr_factor, smoothed_cross_entropy, train_network

DIGITS_RECIPE = Recipe(batch_size=128, warmup_epochs=1, augment=AugmentConfig(flip=False, translate=1, cutout=0))


def test_resnet8_on_digits_clearly_beats_chance(digits):
    model = build("resnet8", "standard", digits.in_shape, 10, init_seed=0)
    result = train_network(model, digits, HParams(0.01, 1e-4, 0.1, 4), DIGITS_RECIPE, seed=0)
    assert result.status == "ok"
    assert result.test_acc > 0.6, result
    assert len(result.history["train_loss"]) == 4
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]


def test_same_seed_gives_identical_weights_on_cpu(digits):
    def run(seed: int) -> torch.Tensor:
        model = build("resnet8", "w_asym", digits.in_shape, 10, asym_seed=1, init_seed=seed)
        return train_network(model, digits, HParams(0.01, 1e-3, 0.1, 2), DIGITS_RECIPE, seed=seed).final_weights

    a, b, c = run(4), run(4), run(5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_divergence_is_recorded_not_raised(digits):
    model = build("resnet8", "sigma_asym", digits.in_shape, 10)
    result = train_network(model, digits, HParams(1e30, 0.0, 0.0, 3), DIGITS_RECIPE, seed=0)
    assert result.status == "diverged" and "non-finite" in result.reason
    assert result.epochs_done < 3 and math.isnan(result.test_acc)


def test_triangular_schedule_peaks_at_warmup_and_ends_near_zero():
    total, warm = 100, 20
    f = [lr_factor(s, total, warm) for s in range(total)]
    assert max(f) == 1.0 and f.index(1.0) == warm - 1
    assert f[0] == 1 / warm and f[-1] == 1 / (total - warm)
    assert all(a <= b for a, b in zip(f[:warm], f[1:warm], strict=False))


def test_smoothed_ce_matches_torch_and_broadcasts_over_networks():
    logits, y = torch.randn(3, 8, 10), torch.randint(0, 10, (3, 8))
    ls = torch.tensor([0.0, 0.1, 0.2])
    ours = smoothed_cross_entropy(logits, y, ls)
    for k in range(3):
        ref = torch.nn.functional.cross_entropy(logits[k], y[k], label_smoothing=float(ls[k]))
        assert torch.allclose(ours[k], ref, atol=1e-6)


def test_table8_sampling_ranges_and_pairing():
    hps = [sample_hparams(PAPER_TABLE8, 0, i) for i in range(500)]
    assert all(0.005 <= h.lr <= 0.5 and 1e-5 <= h.weight_decay <= 0.1 for h in hps)
    assert all(0 <= h.label_smoothing <= 0.2 and 10 <= h.epochs <= 40 for h in hps)
    assert {h.epochs for h in hps} == set(range(10, 41))
    plan = plan_zoo(3, ["standard", "w_asym"], replicates=2, zoo_seed=1)
    assert [s.model_id for s in plan] == list(range(12))
    by_sample = {}
    for s in plan:
        by_sample.setdefault(s.sample, set()).add(s.hparams)
    assert all(len(v) == 1 for v in by_sample.values())
    pair = [s for s in plan if s.sample == 0 and s.replicate == 0]
    assert pair[0].seed == pair[1].seed and pair[0].variant != pair[1].variant
    assert plan[0].seed != plan[2].seed  # replicates differ in seed
    assert plan_zoo(3, ["standard"], zoo_seed=1)[0].hparams == plan[0].hparams


def test_train_one_cli_prints_its_metrics(capsys):
    import json

    from symzoo.cli import main

    assert (
        main(["train-one", "--dataset", "digits", "--variant", "w_asym", "--epochs", "2", "--batch-size", "128"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "ok" and summary["epochs_done"] == 2 and 0 <= summary["test_acc"] <= 1
