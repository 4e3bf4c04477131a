"""``symzoo import ray-tune``: Ray Tune trial folders in the ModelZoos' layout in, an ordinary symzoo zoo out
(issue 38).

The fixture is written by code of its own: each network is a ``module_list`` CNN as the ModelZoos define theirs
(Conv2d, MaxPool2d, activation, Dropout, ..., Flatten, Linear), saved with ``torch.save(state_dict)`` as
``checkpoint_<E:06d>/checkpoints`` beside ``params.json`` and ``result.json`` lines; the expected logits are that
module's own. Nothing of symzoo's model or importer writes or checks it.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from symzoo.analysis.rebasin import activation_sites
from symzoo.cli import main as cli_main
from symzoo.zoo.models import ConvNetShape, build
from symzoo.zoo.store import open_zoo
from symzoo.zoo.symmetry import permutation_spec, permute

EPOCHS = 3
NONLIN = {"leakyrelu": nn.LeakyReLU, "tanh": nn.Tanh, "relu": nn.ReLU}


def module_list_cnn(nlin: str, dropout: float, seed: int) -> nn.Module:
    """The ModelZoos' CNN for 28x28 images (their def_net.py, written again), in eval mode: dropout shifts the
    layer indices. (bench/tune_zoo.py trains it with Ray Tune.)"""
    torch.manual_seed(seed)
    act, drop = NONLIN[nlin], ([nn.Dropout(dropout)] if dropout > 0 else [])
    net = nn.Module()
    net.module_list = nn.ModuleList([
        nn.Conv2d(1, 8, 5), nn.MaxPool2d(2, 2), act(), *drop,
        nn.Conv2d(8, 6, 5), nn.MaxPool2d(2, 2), act(), *drop,
        nn.Conv2d(6, 4, 2), act(), nn.Flatten(),
        nn.Linear(36, 20), act(), *[nn.Dropout(dropout) for _ in drop],
        nn.Linear(20, 10),
    ])  # fmt: skip
    return net.eval()


def run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for layer in net.module_list:
        x = layer(x)
    return x


def write_trial(folder, params: dict, states: dict[int, dict], metrics: dict[int, dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    lines = [json.dumps({"training_iteration": e, "trial_id": folder.name, **m}) for e, m in sorted(metrics.items())]
    (folder / "result.json").write_text("\n".join(lines) + "\n")
    for epoch, state in states.items():  # Ray < 2.7: folders by iteration, each marked as a checkpoint
        (folder / f"checkpoint_{epoch:06d}").mkdir()
        torch.save(state, folder / f"checkpoint_{epoch:06d}" / "checkpoints")
        (folder / f"checkpoint_{epoch:06d}" / ".is_checkpoint").touch()


def trial_metrics(n: int) -> dict[int, dict]:
    """Iteration 0 tests the untrained network (train metrics -999, as the ModelZoos report them)."""
    out = {0: {"train_loss": -999, "train_acc": -999, "test_loss": 2.3, "test_acc": 0.1}}
    for e in range(1, EPOCHS + 1):
        out[e] = {"train_loss": 2.0 - 0.1 * e - 0.01 * n, "train_acc": 0.2 * e, "test_loss": 2.1 - 0.1 * e,
                  "test_acc": 0.3 + 0.1 * e + 0.01 * n}  # fmt: skip
    return out


def write_tune_zoo(root):
    """Trials 0-3: CNN, leakyrelu (trial 2's last checkpoint NaN, trial 3 never checkpointed); trial 4: tanh.
    Returns each trial's networks by iteration (state dicts as saved)."""
    saved = {}
    for n in range(5):
        nlin = "tanh" if n == 4 else "leakyrelu"
        net = module_list_cnn(nlin, 0.1 * (n % 2), seed=n)
        states = {}
        for epoch in range(EPOCHS + 1):
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(100 * n + epoch)) * 0.05)
            states[epoch] = {k: v.clone() for k, v in net.state_dict().items()}
        if n == 2:
            states[EPOCHS]["module_list.0.weight"][0, 0, 0, 0] = float("nan")
        if n == 3:
            states = {}
        params = {"model::type": "CNN", "model::nlin": nlin, "model::dropout": 0.1 * (n % 2), "model::channels_in": 1,
                  "model::init_type": "kaiming_uniform", "optim::optimizer": "adam", "optim::lr": 1e-4 * (n + 1),
                  "optim::wd": 1e-3 * n, "training::epochs_train": EPOCHS, "seed": n, "training::batchsize": 32,
                  "model::h_dim": [30, 15]}  # fmt: skip
        write_trial(root / "tune_zoo" / f"NN_tune_trainable_{n:05d}_{n}_seed={n}", params, states, trial_metrics(n))
        saved[n] = (nlin, 0.1 * (n % 2), states)
    return saved


@pytest.fixture(scope="module")
def imported(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune") / "experiment"
    saved = write_tune_zoo(root)
    out = tmp_path_factory.mktemp("zoos") / "tune"
    args = ["import", "ray-tune", str(root), "--out", str(out), "--data", "digits", "--data-size", "28"]
    assert cli_main([*args, "--activation", "leakyrelu", "--no-progress"]) == 0
    return open_zoo(out), saved, root, out


def test_logits_equal_the_source_networks_at_every_checkpoint(imported):
    zoo, saved, _, _ = imported
    assert zoo.config["model"] == zoo.config["model"] | {"arch": "convnet", "layers": "c8k5p,c6k5p,c4k2,flatten,20"}
    data = zoo.dataset()
    x = data.normalize(data.x_test[:32])
    for model_id in (0, 1):  # dropout 0 and 0.1: the source's layer indices differ, the networks do not
        nlin, dropout, states = saved[model_id]
        for epoch, which in ((0, "init"), (1, "epoch_1"), (2, "epoch_2"), (EPOCHS, "final")):
            source = module_list_cnn(nlin, dropout, seed=0)
            source.load_state_dict(states[epoch])
            with torch.no_grad():
                expected, ours = run(source, x), zoo.model(model_id, which)(x)
            assert torch.allclose(ours, expected, atol=1e-5), (model_id, which)


def test_rows_carry_the_trials_hyperparameters_metrics_and_status(imported):
    zoo, _, _, out = imported
    frame = zoo.frame
    assert len(frame) == 4 and zoo.complete and zoo.config["model"]["activation"] == "leakyrelu"
    assert frame["lr"].tolist() == pytest.approx([1e-4, 2e-4, 3e-4, 4e-4])
    assert frame["weight_decay"].tolist() == pytest.approx([0.0, 1e-3, 2e-3, 3e-3])
    assert frame["epochs"].tolist() == [EPOCHS] * 4
    assert frame["status"].tolist() == ["ok", "ok", "diverged", "failed"]  # recorded, never dropped
    assert "has no checkpoint" in frame["reason"].iloc[3]
    assert frame["test_acc"].iloc[:3].tolist() == pytest.approx([0.3 + 0.1 * EPOCHS + 0.01 * n for n in range(3)])
    assert math.isnan(frame["test_acc"].iloc[3])
    assert list(frame["history_train_loss"].iloc[1]) == pytest.approx([2.0 - 0.1 * e - 0.01 for e in (1, 2, 3)])
    assert zoo.weight_kinds() == ["init", "final", "epoch_1", "epoch_2"]
    source = pd.read_parquet(out / "source.parquet")
    assert source["model_id"].tolist() == [0, 1, 2, 3]
    assert source["trial"].str.startswith("tune_zoo/NN_tune_trainable_0000").all()
    assert source["config.model::dropout"].tolist() == pytest.approx([0.0, 0.1, 0.0, 0.1])
    assert source["config.model::h_dim"].iloc[0] == "[30, 15]"
    assert 'zoo.weights("final", variant="standard"' in (out / "README.md").read_text()  # a variant it has


def test_mixed_trials_need_a_choice_in_one_line(imported, tmp_path, capsys):
    _, _, root, _ = imported
    args = ["import", "ray-tune", str(root), "--out", str(tmp_path / "z"), "--data", "digits", "--data-size", "28"]
    assert cli_main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "4 x CNN with leakyrelu, 1 x CNN with tanh" in err and "--activation" in err
    assert not (tmp_path / "z").exists()


def write_custom_trial(root, name: str, states: dict, params: dict | None = None) -> None:
    write_trial(root / name, params or {"optim::lr": 0.01, "model::nlin": "relu"}, states, trial_metrics(0))


def test_an_unnamed_architecture_is_read_off_the_checkpoint_shapes(ray_cluster, tmp_path):
    """No model::type: on 8x8 digits, c4k3 -> 6x6 -> c6k2 -> 5x5 -> flatten 150 is the only fit (a pool
    anywhere leaves 24 or 6 features)."""
    torch.manual_seed(0)
    net = nn.Module()
    net.module_list = nn.ModuleList([nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 2), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(150, 12), nn.ReLU(), nn.Linear(12, 10)])  # fmt: skip
    write_custom_trial(tmp_path / "src", "trial_a", {0: net.state_dict(), 1: net.state_dict()})
    assert cli_main(["import", "ray-tune", str(tmp_path / "src"), "--out", str(tmp_path / "z"), "--data", "digits",
                     "--no-progress"]) == 0  # fmt: skip
    zoo = open_zoo(tmp_path / "z")
    assert zoo.config["model"]["layers"] == "c4k3,c6k2,flatten,12"
    x = zoo.dataset().normalize(zoo.dataset().x_test[:16])
    with torch.no_grad():
        assert torch.allclose(zoo.model(0)(x), run(net, x), atol=1e-5)


def test_an_ambiguous_shape_asks_for_the_spec_in_one_line(ray_cluster, tmp_path, capsys):
    """c8k5/c6k5/c4k2 with a 36-wide dense on 28x28 fits pooling after convs 1 and 2, or after 1 and 3."""
    net = module_list_cnn("relu", 0.0, seed=0)
    write_custom_trial(tmp_path / "src", "trial_a", {1: net.state_dict()})
    args = ["import", "ray-tune", str(tmp_path / "src"), "--data", "digits", "--data-size", "28", "--no-progress"]
    assert cli_main([*args, "--out", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "c8k5p,c6k5p,c4k2,flatten,20" in err and "c8k5p,c6k5,c4k2p" in err
    assert "--arch" in err
    assert cli_main([*args, "--out", str(tmp_path / "z"), "--arch", "c8k5p,c6k5p,c4k2,flatten,20"]) == 0


def test_damaged_trials_are_one_line_naming_the_file(ray_cluster, tmp_path, capsys):
    net = module_list_cnn("relu", 0.0, seed=0)
    src = tmp_path / "src"
    write_custom_trial(src, "trial_a", {1: net.state_dict()}, {"model::type": "CNN", "model::nlin": "relu"})
    checkpoint = src / "trial_a" / "checkpoint_000001" / "checkpoints"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[:200])
    args = ["import", "ray-tune", str(src), "--data", "digits", "--data-size", "28", "--no-progress"]
    with pytest.raises(SystemExit) as failed:  # the shard's task failed: one line, exit status 1
        cli_main([*args, "--out", str(tmp_path / "z")])
    line = str(failed.value)
    assert "\n" not in line and "checkpoint_000001/checkpoints is truncated or not a torch.save file" in line
    torch.save({"module_list.0.weight": Payload()}, checkpoint)  # an object beyond tensors: refused, never run
    with pytest.raises(SystemExit) as failed:
        cli_main([*args, "--out", str(tmp_path / "z")])
    assert "checkpoints holds Python objects beyond tensors" in str(failed.value)
    assert not os.path.exists("/tmp/symzoo-should-not-exist")
    checkpoint.write_bytes(whole)  # the file restored: the rerun imports it
    assert cli_main([*args, "--out", str(tmp_path / "z")]) == 0 and open_zoo(tmp_path / "z").frame["status"][0] == "ok"
    (src / "trial_a" / "result.json").write_text('{"training_iteration": 0}\n{oops\n')
    assert cli_main([*args, "--out", str(tmp_path / "z2")]) == 2
    assert "result.json line 2 is no JSON result with a training_iteration" in capsys.readouterr().err
    (src / "trial_a" / "params.json").write_text("{not json")
    assert cli_main([*args, "--out", str(tmp_path / "z3")]) == 2
    assert "params.json is not JSON" in capsys.readouterr().err
    assert not (tmp_path / "z3").exists()


def test_checkpoints_numbered_by_count_map_to_their_iterations(ray_cluster, tmp_path, capsys):
    """Ray 2.7+ numbers checkpoint folders 0, 1, ... as saved, without markers: one per iteration maps the k-th
    to the k-th reported iteration; fewer needs --checkpoint-every, and says so in one line."""
    nets = [module_list_cnn("relu", 0.0, seed=s) for s in range(3)]
    src = tmp_path / "src"
    folder = src / "T_00000"
    write_trial(folder, {"model::type": "CNN", "model::nlin": "relu"}, {}, {e: trial_metrics(0)[e] for e in (1, 2, 3)})
    for k, net in enumerate(nets):
        (folder / f"checkpoint_{k:06d}").mkdir()
        torch.save(net.state_dict(), folder / f"checkpoint_{k:06d}" / "checkpoints")
    args = ["import", "ray-tune", str(src), "--data", "digits", "--data-size", "28", "--no-progress"]
    assert cli_main([*args, "--out", str(tmp_path / "z")]) == 0
    zoo = open_zoo(tmp_path / "z")
    assert zoo.weight_kinds() == ["init", "final", "epoch_1", "epoch_2"] and zoo.frame["epochs_done"][0] == 3
    x = zoo.dataset().normalize(zoo.dataset().x_test[:8])
    with torch.no_grad():
        for k, which in ((0, "epoch_1"), (1, "epoch_2"), (2, "final")):
            assert torch.allclose(zoo.model(0, which)(x), run(nets[k], x), atol=1e-5)
    assert zoo.frame["test_acc"][0] == pytest.approx(trial_metrics(0)[3]["test_acc"])
    (folder / "result.json").write_text("".join(
        json.dumps({"training_iteration": e, **trial_metrics(0)[3]}) + "\n" for e in range(1, 7)))  # fmt: skip
    assert cli_main([*args, "--out", str(tmp_path / "z2")]) == 2
    assert "3 checkpoints for 6 reported iterations" in capsys.readouterr().err
    assert cli_main([*args, "--out", str(tmp_path / "z2"), "--checkpoint-every", "2"]) == 0
    assert open_zoo(tmp_path / "z2").weight_kinds() == ["init", "final", "epoch_2", "epoch_4"]


class Payload:
    """An object whose unpickling would run code: torch.load(weights_only=True) must refuse it."""

    def __reduce__(self):
        return (open, ("/tmp/symzoo-should-not-exist", "w"))


@pytest.mark.parametrize("spec", ["c5k3p,c7k2,flatten,9", "c5k3s2,c7k2,mean,9,6", "flatten,11"])
def test_a_convnets_permutation_spec_leaves_its_function_unchanged(spec):
    model = build("convnet", "standard", (2, 12, 12), 4, init_seed=3, layers=spec, activation="tanh").eval()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec_axes = permutation_spec(model)
    sites = activation_sites(model)  # where activation matching reads each permutation's features
    assert set(sites) == set(spec_axes.perm_to_axes)
    assert all(m in dict(model.named_modules()) for names in sites.values() for m in names)
    rng = np.random.default_rng(0)
    perms = {p: rng.permutation(params[name].shape[axis]) for p, [(name, axis), *_] in spec_axes.perm_to_axes.items()}
    assert perms
    x = torch.randn(5, 2, 12, 12)
    moved = permute(spec_axes, perms, params)
    with torch.no_grad():
        before = model(x)
        model.load_state_dict(moved)
        assert torch.allclose(model(x), before, atol=1e-5)
        assert any(not torch.equal(moved[n], params[n]) for n in params)


def test_convnet_specs_parse_and_refuse_in_one_line():
    shape = ConvNetShape.parse("c8k5p, c6k5p, c4k2, flatten, 20")
    assert str(shape) == "c8k5p,c6k5p,c4k2,flatten,20" and shape.features((1, 28, 28)) == 36
    assert sum(p.numel() for p in build("convnet", "standard", (1, 28, 28), 10, layers=str(shape)).parameters()) == 2464
    refusals = (("c8k5,c6,flatten", "is no convolution"), ("c8k5,20", "exactly one readout"), ("mean,x", "numbers"))
    for bad, why in refusals:
        with pytest.raises(ValueError, match=why):
            ConvNetShape.parse(bad)
    with pytest.raises(ValueError, match="leaves nothing of a 8x8 image"):
        ConvNetShape.parse("c4k5p,c4k3,flatten").features((1, 8, 8))
