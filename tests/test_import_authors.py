"""``symzoo import authors``: the paper's own zoo layout in, an ordinary symzoo zoo out (issue 38).

The fixture is written by code of its own: the authors' key names and file naming spelled out here, their
W-Asym convention (``.mask``, ``.normal_mask``, fixed values written into ``weight``), and a plain functional
forward pass of their ResNet8 that reads their keys; nothing of symzoo's models or importer is used to write it.
"""

from __future__ import annotations

import argparse
import csv
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from symzoo.cli import main as cli_main
from symzoo.errors import ZooError
from symzoo.zoo.dataset import WeightDataset
from symzoo.zoo.store import open_zoo

CHANNELS = (16, 32, 64)
N_SAMPLES = 5
KAPPA = 2.0


def authors_shapes(in_channels: int = 1, classes: int = 10) -> dict[str, tuple[int, ...]]:
    """Their ResNet8's parameters by their names: conv1/ln1, layer{1,2,3}.0 with conv1, ln1, conv2, ln2 and a
    1x1 shortcut conv + GroupNorm where the width changes, then linear."""
    shapes = {"conv1.weight": (16, in_channels, 3, 3), "ln1.weight": (16,), "ln1.bias": (16,)}
    c_in = 16
    for layer, c in enumerate(CHANNELS, start=1):
        p = f"layer{layer}.0."
        shapes |= {p + "conv1.weight": (c, c_in, 3, 3), p + "ln1.weight": (c,), p + "ln1.bias": (c,)}
        shapes |= {p + "conv2.weight": (c, c, 3, 3), p + "ln2.weight": (c,), p + "ln2.bias": (c,)}
        if c != c_in:
            shapes |= {p + "shortcut.0.weight": (c, c_in, 1, 1), p + "shortcut.1.weight": (c,)}
            shapes |= {p + "shortcut.1.bias": (c,)}
        c_in = c
    return shapes | {"linear.weight": (classes, 64), "linear.bias": (classes,)}


def authors_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Their ResNet8's logits from their state dict (a W-Asym weight already holds its fixed values)."""

    def gn(h, name):
        return F.group_norm(h, 1, sd[name + ".weight"], sd[name + ".bias"])

    out = F.relu(gn(F.conv2d(x, sd["conv1.weight"], padding=1), "ln1"))
    for layer, stride in ((1, 1), (2, 2), (3, 2)):
        p = f"layer{layer}.0."
        h = F.relu(gn(F.conv2d(out, sd[p + "conv1.weight"], stride=stride, padding=1), p + "ln1"))
        h = gn(F.conv2d(h, sd[p + "conv2.weight"], padding=1), p + "ln2")
        skip = out
        if p + "shortcut.0.weight" in sd:
            skip = gn(F.conv2d(out, sd[p + "shortcut.0.weight"], stride=stride), p + "shortcut.1")
        out = F.relu(h + skip)
    return F.linear(out.mean((2, 3)), sd["linear.weight"], sd["linear.bias"])


def random_state(shapes, g: torch.Generator) -> dict[str, torch.Tensor]:
    sd = {}
    for name, shape in shapes.items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        scale = 1 / math.sqrt(fan_in) if len(shape) > 1 else 0.2
        base = 1.0 if name.endswith("weight") and len(shape) == 1 else 0.0
        sd[name] = base + scale * torch.randn(shape, generator=g)
    return sd


def authors_masks(shapes, g: torch.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One (mask, normal_mask) per conv and linear weight, shared by every W-Asym network, as their mask files are:
    6 fixed entries per output row."""
    out = {}
    for name, shape in shapes.items():
        if len(shape) < 2:
            continue
        rows, per_row = shape[0], math.prod(shape[1:])
        mask = torch.ones(rows, per_row)
        for r in range(rows):
            mask[r, torch.randperm(per_row, generator=g)[: min(6, per_row)]] = 0
        out[name] = (mask.reshape(shape), torch.randn(shape, generator=g))
    return out


def source_accuracy(i: int, variant: str) -> float:
    """The test accuracy (%) the fixture file of index ``i`` records."""
    return 10.0 + (7 * i) % 80 + (5 if variant == "w_asym" else 0)


def write_authors_zoo(root, n: int = N_SAMPLES, nan_index: int | None = None, missing: tuple = ()):
    """ROOT/resnet8/<name><i>.pt and ROOT/sparse_resnet8/<name><i>.pt as (state_dict, test_acc %), and the
    hparams.csv their loader reads; returns what was written, for the assertions."""
    g = torch.Generator().manual_seed(0)
    shapes = authors_shapes()
    masks = authors_masks(shapes, g)
    written = {"standard": {}, "w_asym": {}}
    for folder, variant in (("resnet8", "standard"), ("sparse_resnet8", "w_asym")):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            if (variant, i) in missing:
                continue
            sd = random_state(shapes, g)
            if variant == "w_asym":
                for name, (mask, normal) in masks.items():
                    sd[name] = sd[name] * mask + (1 - mask) * KAPPA * normal
                    base = name[: -len(".weight")]
                    sd[base + ".mask"], sd[base + ".normal_mask"] = mask.clone(), normal.clone()
            if i == nan_index and variant == "standard":
                sd["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
            acc = source_accuracy(i, variant)
            torch.save((sd, acc), root / folder / f"net{i}.pt")
            written[variant][i] = (sd, acc)
    with (root / "hparams.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lr", "weight_decay", "label_smoothing", "epochs"])
        for i in range(n):
            w.writerow([0.01 * (i + 1), 1e-4 * (i + 1), 0.02 * i, 10 + i])
    return written, masks


@pytest.fixture(scope="module")
def imported(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("authors")
    written, masks = write_authors_zoo(root, nan_index=3, missing=(("w_asym", 4),))
    out = tmp_path_factory.mktemp("zoos") / "imported"
    args = ["import", "authors", str(root), "--out", str(out), "--data", "digits", "--no-progress"]
    assert cli_main(args) == 0
    return open_zoo(out), written, masks, root, out


def test_logits_equal_the_source_networks(imported, digits):
    zoo, written, _, _, _ = imported
    x = digits.normalize(digits.x_test[:64])
    frame = zoo.frame.set_index("model_id")
    checked = 0
    for model_id, row in frame.iterrows():
        if row["status"] != "ok":
            continue
        sd, _ = written[row["variant"]][row["sample"]]
        params = {k: v for k, v in sd.items() if not k.endswith(("mask", "normal_mask"))}
        with torch.no_grad():
            ours = zoo.model(model_id)(x)
        assert torch.allclose(ours, authors_forward(params, x), atol=1e-5), (model_id, row["variant"])
        checked += 1
    assert checked == 2 * N_SAMPLES - 2


def test_rows_carry_the_sources_hyperparameters_accuracy_and_status(imported):
    zoo, _, _, _, _ = imported
    frame = zoo.frame
    assert len(frame) == 2 * N_SAMPLES and zoo.complete
    for i in range(N_SAMPLES):
        rows = frame[frame["sample"] == i]
        assert sorted(rows["variant"]) == ["standard", "w_asym"]
        assert rows["lr"].tolist() == pytest.approx([0.01 * (i + 1)] * 2)
        assert rows["weight_decay"].tolist() == pytest.approx([1e-4 * (i + 1)] * 2)
        assert rows["label_smoothing"].tolist() == pytest.approx([0.02 * i] * 2)
        assert rows["epochs"].tolist() == [10 + i] * 2
    ok = frame[frame["status"] == "ok"]
    expected = np.array([source_accuracy(s, v) for s, v in zip(ok["sample"], ok["variant"], strict=True)]) / 100
    assert ok["test_acc"].to_numpy() == pytest.approx(expected)
    status = frame.set_index(["variant", "sample"])["status"]
    assert status[("standard", 3)] == "diverged"  # NaN weights: recorded, never dropped
    assert status[("w_asym", 4)] == "failed"  # no file for that index
    assert "no file for index 4" in frame.set_index(["variant", "sample"])["reason"][("w_asym", 4)]
    with pytest.raises(ZooError, match="no weights 'init'; this zoo stores final"):
        zoo.weights("init")  # the source kept no initial weights
    diverged = frame.index[(frame["variant"] == "standard") & (frame["sample"] == 3)][0]
    assert np.isnan(zoo.weights("final")[diverged]).sum() == 1


def test_w_asym_structure_is_the_sources_own(imported):
    """The stored masks (not symzoo's seeded ones) decide which entries are trainable and what the fixed ones hold."""
    zoo, _, masks, _, _ = imported
    layout = zoo.layout("w_asym")
    assert layout.n_trainable == layout.size - 6 * sum(m.shape[0] for m, _ in masks.values())
    model = zoo.model(int(zoo.frame.query("variant == 'w_asym' and status == 'ok'")["model_id"].iloc[0]))
    fixed = model.head.weight_fixed
    mask, normal = masks["linear.weight"]
    assert torch.equal(model.head.weight_mask, mask)
    assert torch.allclose(fixed, (1 - mask) * KAPPA * normal)
    assert "stored with the zoo" in __import__("symzoo.zoo.models", fromlist=["x"]).describe_fixed_structure(zoo.config)


def test_an_imported_zoo_loads_as_a_dataset_with_paired_splits(imported):
    zoo, _, _, _, out = imported
    data = WeightDataset(out, split="train", variants=["standard"])
    assert len(data) > 0
    splits = zoo.splits().merge(zoo.frame[["model_id", "sample"]])
    assert (splits.groupby("sample")["split"].nunique() == 1).all()  # both variants of a sample in one split


def test_a_rerun_is_a_no_op_and_a_lost_shard_is_reimported_the_same(imported, capsys):
    zoo, _, _, root, out = imported
    before = zoo.weights("final")
    shard = sorted((out / "models").glob("part-*.parquet"))[0]
    shard.unlink()
    args = ["import", "authors", str(root), "--out", str(out), "--data", "digits", "--no-progress"]
    assert cli_main(args) == 0
    assert "imported 10 networks" in capsys.readouterr().err
    assert np.array_equal(open_zoo(out).weights("final"), before, equal_nan=True)


def test_a_truncated_file_is_one_line_naming_it(ray_cluster, tmp_path, capsys):
    root = tmp_path / "src"
    write_authors_zoo(root, n=2)
    bad = root / "resnet8" / "net1.pt"
    bad.write_bytes(bad.read_bytes()[:200])
    args = ["import", "authors", str(root), "--out", str(tmp_path / "z"), "--data", "digits", "--no-progress"]
    with pytest.raises(SystemExit) as failed:  # the shard's task failed: one line, exit status 1
        cli_main(args)
    line = str(failed.value)
    assert "\n" not in line and "net1.pt is truncated or not a torch.save file" in line and "rerun" in line
    write_authors_zoo(tmp_path / "fixed", n=2)  # the file restored: the rerun imports the rest
    bad.write_bytes((tmp_path / "fixed" / "resnet8" / "net1.pt").read_bytes())
    assert cli_main(args) == 0
    assert len(open_zoo(tmp_path / "z").frame) == 4


class Payload:
    """An object whose unpickling would run code: torch.load(weights_only=True) must refuse it."""

    def __reduce__(self):
        return (open, ("/tmp/symzoo-should-not-exist", "w"))


def test_a_file_that_needs_more_than_tensors_is_refused_without_running_it(ray_cluster, tmp_path):
    root = tmp_path / "src"
    write_authors_zoo(root, n=2)
    target = root / "resnet8" / "net0.pt"
    torch.save(({"conv1.weight": torch.zeros(1)}, Payload()), target)
    with pytest.raises(SystemExit) as failed:
        cli_main(["import", "authors", str(root), "--out", str(tmp_path / "z"), "--data", "digits", "--no-progress"])
    assert "net0.pt holds Python objects beyond tensors" in str(failed.value)
    assert not os.path.exists("/tmp/symzoo-should-not-exist")


def test_bad_sources_exit_2_with_one_line(tmp_path, capsys):
    assert cli_main(["import", "authors", str(tmp_path / "nope"), "--out", str(tmp_path / "z")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    root = tmp_path / "src"
    write_authors_zoo(root, n=2)
    (root / "hparams.csv").write_text("lr,wd\n1,2\n")
    assert cli_main(["import", "authors", str(root), "--out", str(tmp_path / "z"), "--data", "digits"]) == 2
    assert "does not start with the header lr,weight_decay,label_smoothing,epochs" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


@pytest.mark.slow
def test_an_import_killed_mid_way_resumes_to_the_same_zoo(tmp_path):
    """kill -9 of the importing process once some shards are written; the rerun keeps them and converts the rest,
    and the zoo equals one imported in one go."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "src"
    write_authors_zoo(root, n=48)
    base = [sys.executable, "-m", "symzoo.cli", "import", "authors", str(root), "--data", "digits", "--no-progress"]
    base += ["--networks-per-shard", "2"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*base, "--out", str(killed)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((killed / "models").glob("part-*.parquet"))) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list((killed / "models").glob("part-*.parquet")))
    assert 3 <= written < 24, "the import was not caught mid-way"
    rerun = subprocess.run([*base, "--out", str(killed)], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "shards were already done" in rerun.stderr
    whole = tmp_path / "whole"
    assert subprocess.run([*base, "--out", str(whole)], capture_output=True, timeout=600).returncode == 0
    a, b = open_zoo(killed), open_zoo(whole)
    assert a.complete and b.complete
    assert np.array_equal(a.weights("final"), b.weights("final"), equal_nan=True)
    assert a.frame.drop(columns="seconds").equals(b.frame.drop(columns="seconds"))


def test_a_stored_fixed_structure_rebuilds_the_same_network_and_refuses_a_wrong_one():
    """encode -> config -> build: the masks and fixed values come back exactly, whatever the zoo seed; a structure
    for other layers or shapes is one ValueError naming the layer."""
    from symzoo.zoo.layers import AsymmetricWeight, encode_fixed_structure
    from symzoo.zoo.models import build

    source = build("resnet8", "w_asym", (1, 8, 8), 10, asym_seed=7)
    layers = {f"{n}.weight": m for n, m in source.named_modules() if isinstance(m, AsymmetricWeight) and m.fix}
    structure = encode_fixed_structure(
        {n: m.weight_mask for n, m in layers.items()}, {n: m.weight_fixed for n, m in layers.items()}
    )
    rebuilt = build("resnet8", "w_asym", (1, 8, 8), 10, asym_seed=0, fixed_structure=structure)
    seeded = build("resnet8", "w_asym", (1, 8, 8), 10, asym_seed=0)
    for name, module in rebuilt.named_modules():
        if isinstance(module, AsymmetricWeight) and module.fix:
            original = layers[f"{name}.weight"]
            assert torch.equal(module.weight_mask, original.weight_mask)
            assert torch.equal(module.weight_fixed, original.weight_fixed)
            assert not torch.equal(module.weight_fixed, dict(seeded.named_modules())[name].weight_fixed)
            assert not (module.weight * (1 - module.weight_mask)).any()  # fixed positions hold no trainable value
    wrong = dict(structure)
    wrong["head.weight"] = structure["stem.weight"]
    with pytest.raises(ValueError, match="stored fixed structure of head.weight: its shape"):
        build("resnet8", "w_asym", (1, 8, 8), 10, fixed_structure=wrong)
    with pytest.raises(ValueError, match="lacks \\['head.weight'\\]"):
        build(
            "resnet8",
            "w_asym",
            (1, 8, 8),
            10,
            fixed_structure={k: v for k, v in structure.items() if k != "head.weight"},
        )


def test_the_import_command_offers_exactly_the_formats_symzoo_reads():
    from symzoo.cli import build_parser
    from symzoo.zoo.formats import FORMATS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    fmt = next(a for a in sub.choices["import"]._actions if a.dest == "format")
    assert tuple(fmt.choices) == FORMATS
