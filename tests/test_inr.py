"""INR groundwork (issue 39): the SIREN in three variants and batched fitting of many INRs at once."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from symzoo.zoo.data import load_digits
from symzoo.zoo.inr_fit import FitSettings, fit_inrs, fit_one, pixel_grid
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build
from symzoo.zoo.symmetry import permute, structural_spec


def digit_images(n: int) -> torch.Tensor:
    return torch.from_numpy(load_digits()[0][:n, 0])  # uint8 (n, 8, 8)


@pytest.mark.parametrize("variant", ["standard", "w_asym", "sigma_asym"])
def test_the_dwsnets_siren_has_1185_parameters(variant):
    model = build("siren", variant, (2,), 1)
    assert sum(p.numel() for p in model.parameters()) == 2 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    fixed = 32 * 1 + 32 * 4 + 16  # first layer 1 per row, hidden 32 / 8, head 32 / 2
    assert ParamLayout.from_model(model).n_trainable == 1185 - (fixed if variant == "w_asym" else 0)


def test_siren_init_is_sitzmann_et_als():
    model = build("siren", "standard", (2,), 1, hidden=256, init_seed=1)
    first, hidden = model.layers[0].linear.weight, model.layers[1].linear.weight
    assert first.abs().max() <= 1 / 2 and first.std().item() == pytest.approx(0.5 / math.sqrt(3), rel=0.1)
    bound = math.sqrt(6 / 256) / 30
    assert hidden.abs().max() <= bound and hidden.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    w_asym = build("siren", "w_asym", (2,), 1, hidden=256)
    fixed = w_asym.layers[1].linear.weight_fixed
    assert fixed[fixed != 0].std().item() == pytest.approx(bound, rel=0.1)  # fixed entries at the layer's scale


def test_pixel_grid_is_row_major_in_minus_one_to_one():
    grid = pixel_grid(2, 3)
    assert grid.tolist() == [[-1, -1], [-1, 0], [-1, 1], [1, -1], [1, 0], [1, 1]]


def test_permuting_hidden_units_is_a_symmetry_of_standard_sirens_only():
    x = pixel_grid(5, 5)
    for variant, symmetric in (("standard", True), ("w_asym", False), ("sigma_asym", False)):
        model = build("siren", variant, (2,), 1, init_seed=3)
        spec = structural_spec(model)
        params = {n: p.detach() for n, p in model.named_parameters()}
        rng = np.random.default_rng(0)
        perms = {p: rng.permutation(32) for p in spec.perm_to_axes}
        out = torch.func.functional_call(model, permute(spec, perms, params), (x,))
        assert torch.allclose(out, model(x), atol=1e-6) == symmetric, variant


def test_batched_fitting_equals_one_at_a_time_in_float64():
    torch.set_default_dtype(torch.float64)
    try:
        images = digit_images(3)
        for variant in ("standard", "w_asym", "sigma_asym"):
            batched = fit_inrs(
                [build("siren", variant, (2,), 1, init_seed=i) for i in range(3)], images, FitSettings(25)
            )
            for i in range(3):
                alone = fit_one(build("siren", variant, (2,), 1, init_seed=i), images[i], FitSettings(25))
                torch.testing.assert_close(batched.weights[i], alone.weights[0], rtol=0, atol=1e-12)
                torch.testing.assert_close(batched.loss_history[:, i], alone.loss_history[:, 0], rtol=0, atol=1e-14)
    finally:
        torch.set_default_dtype(torch.float32)


def test_fitting_reconstructs_the_image_and_leaves_fixed_entries_fixed():
    images = digit_images(4)
    models = [build("siren", "w_asym", (2,), 1, init_seed=i) for i in range(4)]
    layout = ParamLayout.from_model(models[0])
    before = torch.stack([layout.flatten(m) for m in models])
    result = fit_inrs(models, images, FitSettings(steps=300, lr=1e-3))
    assert (result.psnr > 30).all()  # 1,185 parameters for 64 pixels
    assert (result.loss_history[-1] < result.loss_history[0] / 100).all()
    fixed = ~torch.from_numpy(layout.trainable)
    assert torch.equal(result.weights[:, fixed], before[:, fixed])  # zeros where the fixed values live
    rebuilt = build("siren", "w_asym", (2,), 1)
    layout.load_into(rebuilt, result.weights[2])
    mse = ((rebuilt(pixel_grid(8, 8)) - images[2].reshape(-1, 1).float() / 255) ** 2).mean()
    assert mse.item() == pytest.approx(result.mse[2].item(), rel=1e-4)


INR_ZOO = {
    "name": "digits_inr",
    "task": "inr",
    "data": {"name": "digits", "train_per_class": 3, "test_per_class": 1},
    "model": {"arch": "siren"},
    "variants": ["standard", "w_asym", "sigma_asym"],
    "networks": 40,
    "hyperparameters": {"lr": 1e-3, "weight_decay": 0.0, "label_smoothing": 0.0, "epochs": 60},
    "execution": {"networks_per_shard": 20},
}


def test_an_inr_zoo_fits_each_image_once_per_variant_and_records_it(tmp_path):
    from conftest import write_zoo

    from symzoo.zoo.config import validate
    from symzoo.zoo.data import load_images
    from symzoo.zoo.store import open_zoo

    cfg = validate(INR_ZOO)
    write_zoo(tmp_path / "zoo", cfg)
    zoo = open_zoo(tmp_path / "zoo")
    frame = zoo.frame
    assert len(frame) == 120 and (frame["status"] == "ok").all()
    data = load_images(cfg["data"])
    assert (frame["image_split"] == "train").sum() == 90 and (frame["image_split"] == "test").sum() == 30
    for _, row in frame.iloc[[0, 4, 119]].iterrows():
        labels = data.y_train if row["image_split"] == "train" else data.y_test
        assert row["image_class"] == int(labels[row["image_index"]])
        assert zoo.evaluate(int(row["model_id"]))["psnr"] == pytest.approx(row["psnr"], rel=1e-3)
    assert frame.groupby("sample")["image_index"].nunique().eq(1).all()  # every variant fits the same image
    assert (frame["psnr"] > 25).all() and len(frame["history_train_loss"].iloc[0]) == 60
    again = tmp_path / "again"
    write_zoo(again, cfg)
    np.testing.assert_array_equal(zoo.weights("final"), open_zoo(again).weights("final"))
    from symzoo.zoo.card import write_card
    from symzoo.zoo.info import describe

    assert "INR fits of finished networks: PSNR (dB)" in describe(zoo)
    assert "implicit neural representation of one digits image" in write_card(zoo).read_text()
    from symzoo.pipelines.local import summary_lines  # what the Ray-less runner prints: PSNR, no accuracy

    psnr = frame.groupby("variant", sort=False)["psnr"]
    assert summary_lines(tmp_path / "zoo") == [
        f"{v:10s} {psnr.size()[v]:4d} INRs  PSNR median {psnr.median()[v]:5.1f} dB  mean {psnr.mean()[v]:5.1f} dB"
        "  diverged 0  failed 0"
        for v in psnr.median().index
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"arch": "mlp"}}, "'task': inr zoos fit SIRENs; set model.arch: siren"),
        ({"task": None}, "'model.arch': siren is an implicit neural representation; set task: inr"),
        ({"hyperparameters": {"lr": {"log_uniform": [1e-4, 1e-2]}}}, "'hyperparameters.lr': an INR zoo fits"),
        ({"data": {"name": "digits_knn"}}, "'data.name': digits_knn is a graph; only model.arch gnn"),
        ({"training": {"checkpoint_epochs": [5]}}, "'training': an INR zoo stores initial and fitted weights only"),
    ],
)
def test_inr_config_errors_are_one_line_naming_the_field(change, message):
    from symzoo.errors import ConfigError
    from symzoo.zoo.config import validate

    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in INR_ZOO.items()}
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as e:
        validate(raw)
    assert "\n" not in str(e.value)


def test_generate_refuses_an_inr_zoo_whose_networks_are_not_its_images(tmp_path, capsys):
    import yaml

    from symzoo.cli import main as cli_main

    (tmp_path / "inr.yaml").write_text(yaml.safe_dump(INR_ZOO | {"networks": 39}))
    assert cli_main(["generate", str(tmp_path / "inr.yaml"), "--out", str(tmp_path / "z")]) == 2
    assert "'networks': 39 is not allowed; an INR zoo has one network per image and the data has 40" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "z").exists()


def test_the_shipped_inr_configs_validate():
    from symzoo.zoo.config import load_config

    for name in ("digits_inr", "fashion_inr", "fashion_inr_shared"):
        cfg = load_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
        assert cfg["task"] == "inr" and cfg["model"]["arch"] == "siren"


def test_luma_is_bt601_rounded_and_leaves_gray_images_alone():
    from symzoo.zoo.data import to_luma

    x = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30], [255, 255, 255]], dtype=torch.uint8)
    rgb = x.T.reshape(1, 3, 1, 5)
    luma = to_luma(rgb).reshape(-1).tolist()
    assert luma == [round(0.299 * 255), round(0.587 * 255), round(0.114 * 255), 18, 255]  # 10*.299+20*.587+30*.114
    gray = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    assert to_luma(gray) is gray


def test_a_cifar10_inr_zoo_fits_grayscale_images(cifar_npz, tmp_path, monkeypatch):
    from conftest import write_zoo

    from symzoo.errors import ConfigError
    from symzoo.pipelines.shard import dataset_from
    from symzoo.zoo.config import config_hash, validate
    from symzoo.zoo.data import load_images
    from symzoo.zoo.inr_fit import check_inr_data
    from symzoo.zoo.store import open_zoo

    monkeypatch.setenv("SYMZOO_CIFAR10_NPZ", str(cifar_npz))
    data = {"name": "cifar10", "train_per_class": 1, "test_per_class": 1, "root": str(tmp_path / "cache")}
    cfg = {**INR_ZOO, "data": data, "networks": 20, "hyperparameters": {**INR_ZOO["hyperparameters"], "epochs": 5}}
    with pytest.raises(ConfigError, match="has 3 channels; an INR zoo fits single-channel images: set data.grayscale"):
        check_inr_data(validate(cfg), dataset_from(validate(cfg)))
    gray_cfg = validate({**cfg, "data": {**data, "grayscale": True}})
    assert config_hash(gray_cfg) != config_hash(validate(cfg))
    images = load_images(gray_cfg["data"])
    assert images.x_train.shape == (10, 1, 32, 32)
    write_zoo(tmp_path / "zoo", gray_cfg)
    zoo = open_zoo(tmp_path / "zoo")
    assert len(zoo.frame) == 60 and (zoo.frame["status"] == "ok").all()
    row = zoo.frame.iloc[5]
    assert zoo.evaluate(int(row["model_id"]))["psnr"] == pytest.approx(row["psnr"], rel=1e-3)


def test_shared_seed_fits_every_image_from_one_init_and_changes_the_zoos_hash(tmp_path):
    from conftest import write_zoo

    from symzoo.zoo.config import config_hash, validate
    from symzoo.zoo.plan import plan_configured
    from symzoo.zoo.store import open_zoo

    own = validate(INR_ZOO)
    shared = validate({**INR_ZOO, "training": {"shared_seed": True}})
    assert config_hash(shared) != config_hash(own)
    assert len({s.seed for s in plan_configured(shared)}) == 1 and len({s.seed for s in plan_configured(own)}) == 40
    write_zoo(tmp_path / "zoo", shared)
    zoo = open_zoo(tmp_path / "zoo")
    standard = zoo.frame[zoo.frame["variant"] == "standard"]["model_id"].tolist()
    init, final = zoo.weights("init", model_ids=standard), zoo.weights("final", model_ids=standard)
    assert (init == init[0]).all() and not (final == final[0]).all()  # one start, each image its own fit
