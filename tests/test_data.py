"""Data registry and batched augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from symzoo.zoo.augment import AugmentConfig, EpochDraw, augment, draw_epoch
from symzoo.zoo.data import DataNotFoundError, load_dataset


def test_digits_is_uint8_balanced_and_normalised(digits):
    assert digits.x_train.dtype == torch.uint8 and digits.x_train.shape[1:] == (1, 8, 8)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    z = digits.normalize(digits.x_train)
    assert abs(z.mean().item()) < 1e-4 and abs(z.std().item() - 1) < 1e-2


def test_subsets_are_class_balanced_and_seeded():
    a = load_dataset("digits", train_per_class=20, test_per_class=5, subset_seed=1)
    b = load_dataset("digits", train_per_class=20, test_per_class=5, subset_seed=1)
    assert torch.bincount(a.y_train).tolist() == [20] * 10
    assert torch.bincount(a.y_test).tolist() == [5] * 10
    assert torch.equal(a.x_train, b.x_train) and a.fingerprint() == b.fingerprint()
    with pytest.raises(ValueError, match="only"):
        load_dataset("digits", train_per_class=1000)


def test_missing_cifar_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMZOO_SHARED_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("symzoo.zoo.data.REPO_ROOT", tmp_path)
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and "SYMZOO_CIFAR10_NPZ" in msg


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="cifar10, cifar100, fashion_mnist, digits"):
        load_dataset("imagenet")


def test_cifar10_from_standard_batches_folder(tmp_path):
    """The real pickle layout of cifar-10-batches-py, written here with tiny batches."""
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": list(range(10)) * 2}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    data = load_dataset("cifar10", root=tmp_path)
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    assert data.mean == (125.307, 122.961, 113.8575)


@pytest.mark.slow
def test_cifar10_from_the_offline_jpeg_copy(cifar_npz, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMZOO_CIFAR10_NPZ", str(cifar_npz))
    data = load_dataset(
        "cifar10", root=Path.home() / ".cache" / "symzoo", train_per_class=100, test_per_class=50, size=16
    )
    assert data.x_train.shape == (1000, 3, 16, 16) and torch.bincount(data.y_test).tolist() == [50] * 10
    mean = data.x_train.float().mean(dim=(0, 2, 3)) / 255
    full = load_dataset("cifar10", root=Path.home() / ".cache" / "symzoo")
    assert full.x_train.shape == (50_000, 3, 32, 32) and len(full.y_test) == 10_000
    assert len(torch.unique(full.y_train[:100])) == 10, "rows must be mixed, not sorted by class"
    assert torch.allclose(mean, torch.tensor([0.4913, 0.4821, 0.4465]), atol=0.03)


def test_fashion_mnist_idx_files():
    if not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    data = load_dataset("fashion_mnist", test_per_class=10)
    assert data.x_train.shape == (60_000, 1, 28, 28) and len(data.x_test) == 100


def _draw(n: int, **fields) -> EpochDraw:
    zero = torch.zeros(n, dtype=torch.long)
    base = {
        "order": torch.arange(n),
        "flip": torch.zeros(n, dtype=torch.bool),
        "dy": zero,
        "dx": zero,
        "cy": zero,
        "cx": zero,
    }
    return EpochDraw(**(base | fields))


def test_augment_flip_translate_cutout_exactly():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float).view(2, 1, 6, 6) + 1
    off = AugmentConfig(flip=False, translate=0, cutout=0)
    assert torch.equal(augment(x, _draw(2), off), x)
    flipped = augment(x, _draw(2, flip=torch.tensor([True, False])), AugmentConfig(True, 0, 0))
    assert torch.equal(flipped[0], x[0].flip(-1)) and torch.equal(flipped[1], x[1])
    shifted = augment(x, _draw(2, dy=torch.tensor([1, -2]), dx=torch.tensor([2, 0])), AugmentConfig(False, 2, 0))
    assert torch.equal(shifted[0, 0, 1:, 2:], x[0, 0, :-1, :-2])
    assert (shifted[0, 0, 0] == 0).all() and (shifted[0, 0, :, :2] == 0).all()  # mean fill
    assert torch.equal(shifted[1, 0, :-2], x[1, 0, 2:]) and (shifted[1, 0, -2:] == 0).all()
    cut = augment(x, _draw(2, cy=torch.tensor([0, 2]), cx=torch.tensor([2, 1])), AugmentConfig(False, 0, 4))
    assert (cut[0, 0, 0:4, 2:6] == 0).all() and (cut[1, 0, 2:6, 1:5] == 0).all()
    assert (cut != 0).sum().item() == 2 * 36 - 2 * 16


def test_epoch_draw_is_per_generator_and_drops_last():
    aug = AugmentConfig()
    a = draw_epoch(torch.Generator().manual_seed(1), 1000, 128, (32, 32), aug)
    b = draw_epoch(torch.Generator().manual_seed(1), 1000, 128, (32, 32), aug)
    c = draw_epoch(torch.Generator().manual_seed(2), 1000, 128, (32, 32), aug)
    assert a.order.shape == (7, 128) and len(set(a.order.flatten().tolist())) == 7 * 128
    assert torch.equal(a.order, b.order) and not torch.equal(a.order, c.order)
    assert a.dy.min() >= -2 and a.dy.max() <= 2 and a.cy.max() <= 28


def test_head_keeps_normalisation_and_classes(digits):
    head = digits.head(10, 5)
    assert head.x_train.shape == (10, 1, 8, 8) and len(head.y_test) == 5
    assert (head.mean, head.std, head.num_classes) == (digits.mean, digits.std, digits.num_classes)
    assert torch.equal(head.x_train, digits.x_train[:10])
