"""The metanetwork stage: exact architectures, features, the paired split, and `symzoo metanet` end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from symzoo.analysis.metanet_inputs import VariantWeights, check_split_sizes, split_indices
from symzoo.analysis.metanet_run import RunSpec, run_metanet
from symzoo.analysis.metanets import DMC, build_metanet, count_parameters
from symzoo.cli import main as cli_main
from symzoo.errors import ConfigError, ZooError
from symzoo.pipelines.generate import generate
from symzoo.pipelines.metanet import chosen_values, metanet_stage
from symzoo.pipelines.registry import STAGES
from symzoo.zoo.config import config_hash, load_config
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build
from symzoo.zoo.splits import paired_split, seeded_splits
from symzoo.zoo.weight_cache import statnn_features

ZOO = {
    "name": "mn",
    "seed": 5,
    "data": {"name": "digits"},
    "variants": ["standard", "w_asym"],
    "networks": 10,
    "hyperparameters": {"epochs": {"randint": [1, 2]}},
    "training": {"batch_size": 100, "warmup_epochs": 1, "augment": {"flip": False, "cutout": 0}},
    "execution": {"networks_per_shard": 10},
}
QUICK = ["--metanets", "mlp,statnn,ridge,gbt", "--lrs", "1e-3,1e-2", "--seeds", "2", "--epochs", "2"]


@pytest.mark.parametrize(
    "name, dim, expected",
    [("mlp", 78_042, 4_994_945), ("mlp", 60_634, 3_880_833), ("dmc", 78_042, 105_357), ("deepsets", 78_042, 8_897)]
    + [("statnn", 203, 119_297)],
)
def test_metanets_have_the_papers_parameter_counts(name, dim, expected):
    assert count_parameters(build_metanet(name, dim)) == expected


def test_dmc_refuses_vectors_too_short_for_its_pools():
    assert DMC()(torch.randn(2, DMC.min_length())).shape == (2,)
    with pytest.raises(ValueError, match="at least 2044 entries"):
        build_metanet("dmc", 2000)


def test_statnn_features_equal_a_direct_computation():
    layout = ParamLayout.from_model(build("resnet8", "w_asym", (1, 8, 8), 10))
    rng = np.random.default_rng(0)
    full = rng.normal(size=(3, layout.size)).astype(np.float32)
    feats = statnn_features(full[:, layout.trainable], layout)
    assert feats.shape == (3, 7 * len(layout.slots))
    for t, slot in enumerate(layout.slots):
        entries = np.arange(slot.offset, slot.offset + slot.size)
        kept = entries[layout.trainable[entries]]
        for n in range(3):
            got = feats[n, 7 * t : 7 * t + 7]
            if len(kept) == 0:  # the W-Asym stem: every filter fixed
                assert slot.name == "stem.weight" and not got.any()
                continue
            x = full[n, kept].astype(np.float64)
            want = [x.mean(), x.var(ddof=1), x.min(), x.max(), *np.percentile(x, [25, 50, 75])]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_split_is_disjoint_seeded_and_paired_across_variants():
    samples = np.repeat(np.arange(40), 3)  # three variants (or replicates) per hyperparameter sample
    split = paired_split(samples, seed=7)
    assert paired_split(samples, seed=7) == split and paired_split(samples, seed=8) != split
    names = [split[s] for s in range(40)]
    assert names.count("train") == 20 and names.count("val") == 10 and names.count("test") == 10
    frame = pd.DataFrame({"model_id": range(120), "sample": samples, "variant": ["a", "b", "c"] * 40})
    splits = seeded_splits(frame, 7)
    assert (splits["split"] == frame["sample"].map(split)).all()
    per_variant = {}
    for v, g in frame.groupby("variant"):
        vw = VariantWeights(v, g.reset_index(drop=True), np.zeros((40, 1)), np.ones(40, bool))
        idx = split_indices(vw, splits)
        assert sum(len(i) for i in idx.values()) == 40 and len(np.intersect1d(idx["train"], idx["test"])) == 0
        per_variant[v] = {k: set(g["sample"].to_numpy()[i]) for k, i in idx.items()}
    assert per_variant["a"] == per_variant["b"] == per_variant["c"]


def test_too_few_usable_networks_say_how_many_are_needed():
    frame = pd.DataFrame({"model_id": range(6), "sample": range(6), "status": ["ok"] * 5 + ["diverged"]})
    vw = VariantWeights("standard", frame, np.zeros((6, 1)), np.array([True] * 5 + [False]))
    with pytest.raises(ZooError, match="has 5 usable networks .1 dropped.*needs at least 2 in each"):
        check_split_sizes(vw, split_indices(vw, seeded_splits(frame, 0)))
    assert vw.drop_reasons() == {"diverged": 1}


@pytest.mark.parametrize("metanet", ["mlp", "dmc", "deepsets", "statnn", "ridge", "gbt"])
def test_a_run_reports_best_validation_epoch_and_its_predictions(metanet):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 2100)).astype(np.float32)
    y = (x[:, :50].mean(1) * 3 + 0.5).astype(np.float32)
    idx = {"train": np.arange(12), "val": np.arange(12, 18), "test": np.arange(18, 24)}
    spec = RunSpec("standard", metanet, 1e-3 if metanet != "ridge" else 1.0, seed=1, epochs=3, batch_size=4)
    row = run_metanet(spec, x, y, np.arange(100, 124), idx)
    again = run_metanet(spec, x, y, np.arange(100, 124), idx)
    assert row["test_pred"] == again["test_pred"], "a run is a pure function of its seed"
    n_epochs = 1 if metanet in ("ridge", "gbt") else 3
    assert len(row["curve_val_r2"]) == n_epochs and row["test_model_id"] == list(range(118, 124))
    best = row["best_epoch"]
    assert row["val_r2"] == max(row["curve_val_r2"]) == row["curve_val_r2"][best - 1]
    assert row["test_r2"] == row["curve_test_r2"][best - 1]


def test_the_sweep_picks_the_best_validation_r2_and_nan_loses():
    sweep = pd.DataFrame(
        {
            "variant": ["s"] * 3 + ["w"] * 2,
            "metanet": ["mlp"] * 5,
            "hparam": [1e-3, 1e-2, 1e-1, 1e-3, 1e-2],
            "val_r2": [0.2, 0.5, np.nan, np.nan, -3.0],
        }
    )
    assert chosen_values(sweep) == {("s", "mlp"): 1e-2, ("w", "mlp"): 1e-2}


def test_metanet_options_are_validated_and_outside_the_zoo_hash(tmp_path):
    base = tmp_path / "a.yaml"
    base.write_text(yaml.safe_dump(ZOO))
    with_section = tmp_path / "b.yaml"
    with_section.write_text(yaml.safe_dump(ZOO | {"metanet": {"metanets": ["statnn"], "epochs": 3}}))
    assert config_hash(load_config(base)) == config_hash(load_config(with_section))
    assert load_config(with_section)["metanet"]["epochs"] == 3
    with pytest.raises(ConfigError, match="'metanet.metanets\\[0\\]': 'cnn' is not allowed; choose one of mlp"):
        STAGES["metanet"].validate({"metanets": ["cnn"]})
    with pytest.raises(ConfigError, match="'metanet.weights': 'best' is not allowed"):
        STAGES["metanet"].validate({"weights": "best"})
    with pytest.raises(ConfigError, match="'metanet.depth': unknown field"):
        STAGES["metanet"].validate({"depth": 3})


@pytest.fixture(scope="module")
def zoo_dir(ray_cluster, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("mnzoo")
    (tmp / "zoo.yaml").write_text(yaml.safe_dump(ZOO))
    assert generate(tmp / "zoo.yaml", tmp / "zoo", show_progress=False).ok
    return tmp / "zoo"


@pytest.fixture(scope="module")
def stage_out(zoo_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mnout") / "metanet"
    assert cli_main(["metanet", str(zoo_dir), "--out", str(out), "--no-progress", *QUICK]) == 0
    return out


def test_cli_writes_table_runs_predictions_and_figures(stage_out):
    table = (stage_out / "table.md").read_text()
    for label in ("| MLP |", "| StatNN |", "| Ridge (flat weights) |", "| GBT (StatNN features) |"):
        assert label in table
    assert "standard R²" in table and "W-Asym τ" in table and "5 train / 2 val / 3 test" in table
    assert "- ⚠ test split of 3 for standard, 3 for W-Asym networks" in table
    runs = pd.read_parquet(stage_out / "runs")
    sweep, final = runs[runs["seed"] == 0], runs[runs["seed"] > 0]
    assert len(sweep) == 2 * (2 + 2 + 9 + 4) and len(final) == 2 * 4 * 2
    assert runs["key"].is_unique and {"curve_val_r2", "best_epoch", "test_r2", "seconds", "device"} <= set(runs)
    for _, g in final.groupby(["variant", "metanet"]):
        assert g["hparam"].nunique() == 1  # the chosen value
    preds = pd.read_parquet(stage_out / "predictions.parquet")
    assert list(preds.columns) == ["model_id", "variant", "metanet", "seed", "true_acc", "pred_acc"]
    assert len(preds) == len(final) * 3  # 3 test networks per variant
    std_ids = set(preds.loc[preds["variant"] == "standard", "model_id"])
    w_ids = set(preds.loc[preds["variant"] == "w_asym", "model_id"])
    assert {i - 1 for i in w_ids} == std_ids, "paired: the same samples are tested in both variants"
    for fig in ("predicted_vs_true.png", "val_r2_vs_lr.png"):
        assert (stage_out / "figures" / fig).read_bytes()[:4] == b"\x89PNG"
    # per variant, decoded once: weights, their finite-row flags, StatNN statistics
    assert len(list((stage_out / "cache").glob("*.npy"))) == 6


def test_a_rerun_trains_nothing(stage_out, zoo_dir, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (stage_out / "runs").iterdir()}
    result = metanet_stage(zoo_dir, stage_out, overrides=_overrides(), show_progress=False)
    assert result.ran == 0 and result.kept == len(before)
    assert {p.name: p.stat().st_mtime_ns for p in (stage_out / "runs").iterdir()} == before


def test_a_driver_that_reads_for_its_workers_gives_the_same_runs(stage_out, zoo_dir, tmp_path):
    """``workers_read: false`` (workers that cannot reach the zoo): the driver builds the cache and sends the
    matrices; every run's predictions are those of the runs that read the cache themselves."""
    overrides = _overrides() | {"metanets": ["statnn", "ridge"], "workers_read": False}
    metanet_stage(zoo_dir, tmp_path / "metanet", overrides=overrides, show_progress=False)
    sent = pd.read_parquet(tmp_path / "metanet" / "runs").set_index("key")
    read = pd.read_parquet(stage_out / "runs").set_index("key").loc[sent.index]
    assert len(sent) == 2 * (2 + 9) + 2 * 2 * 2
    for key in sent.index:
        np.testing.assert_array_equal(sent.loc[key, "test_pred"], read.loc[key, "test_pred"])


def test_the_driver_reads_no_weight_where_workers_reach_the_zoo(zoo_dir, tmp_path, monkeypatch):
    from symzoo.zoo.store import StoredRows

    monkeypatch.setattr(StoredRows, "read_into", lambda *a, **k: pytest.fail("the driver read weights"))
    overrides = _overrides() | {"metanets": ["ridge"]}
    assert metanet_stage(zoo_dir, tmp_path / "metanet", overrides=overrides, show_progress=False).ran == 22


def _overrides() -> dict:
    return {"metanets": ["mlp", "statnn", "ridge", "gbt"], "lrs": [1e-3, 1e-2], "seeds": 2, "epochs": 2}


def test_other_options_in_the_same_directory_are_refused(stage_out, zoo_dir, capsys):
    code = cli_main(["metanet", str(zoo_dir), "--out", str(stage_out), "--no-progress", *QUICK[:-1], "3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "differs in: epochs" in err and "\n" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metanets", "cnn"], "'cnn' is not allowed; choose one of mlp, dmc"),
        (["--variants", "sigma_asym"], "variant 'sigma_asym' is not in this zoo; it holds standard, w_asym"),
        (["--weights", "epoch_3"], "no weights 'epoch_3'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(zoo_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert cli_main(["metanet", str(zoo_dir), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not out.exists()


def test_not_a_zoo_and_a_too_small_zoo_are_refused(ray_cluster, tmp_path, capsys):
    assert cli_main(["metanet", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "is not a zoo" in capsys.readouterr().err
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(ZOO | {"networks": 5, "variants": ["standard"]}))
    assert generate(tmp_path / "small.yaml", tmp_path / "small", show_progress=False).ok
    assert cli_main(["metanet", str(tmp_path / "small"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has 5 usable networks" in err and "networks: 8 or more" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_table(zoo_dir, stage_out, tmp_path):
    out = tmp_path / "metanet"
    cmd = [sys.executable, "-m", "symzoo.cli", "metanet", str(zoo_dir), "--out", str(out), "--no-progress", *QUICK]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "runs").glob("*.parquet"))) < 3:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = {p.name: p.read_bytes() for p in (out / "runs").glob("*.parquet")}
    assert 3 <= len(survivors) < 50, "the kill should land mid-run"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(list((out / "runs").glob("*.parquet"))) == 50
    for name, data in survivors.items():
        assert (out / "runs" / name).read_bytes() == data, "finished runs must not be retrained"
    assert (out / "table.md").read_text() == (stage_out / "table.md").read_text()


def test_the_table_puts_the_papers_rows_below_ours_with_flags_and_a_verdict():
    from symzoo.analysis.paper import is_paper_resnet8_zoo
    from symzoo.analysis.tables import metanet_summary, metanet_table

    runs = pd.DataFrame(
        {
            "metanet": ["statnn"] * 4 + ["mlp"] * 2,
            "variant": ["standard", "standard", "w_asym", "w_asym", "standard", "w_asym"],
            "hparam_name": ["lr"] * 6,
            "hparam": [1e-3, 1e-3, 1e-2, 1e-2, 1e-5, 1e-3],
            "test_r2": [0.9, 0.8, 0.95, np.nan, 0.2, 0.6],
            "test_tau": [0.7, 0.6, 0.9, np.nan, 0.3, 0.5],
        }
    )
    summary = metanet_summary(runs)
    counts = {
        v: {"used": 8, "train": 4, "val": 2, "test": 2, "dropped": {"diverged": 1}} for v in ("standard", "w_asym")
    }
    grids = {"statnn": [1e-5, 1e-3, 1e-2], "mlp": [1e-5, 1e-3, 1e-2]}
    table = metanet_table(summary, ["statnn", "mlp"], ["w_asym", "standard"], False, counts, ["note"], grids, runs)
    lines = table.splitlines()
    assert lines[0] == "| metanet | standard R² | standard τ | standard chosen | W-Asym R² | W-Asym τ | W-Asym chosen |"
    statnn = next(line for line in lines if line.startswith("| StatNN |"))
    assert "| 0.850 ± 0.071 | 0.650 ± 0.071 | lr 0.001 |" in statnn
    assert "| 0.950 (1 of 2 seeds diverged) | 0.900 | lr 0.01 ⚠ edge of grid |" in statnn  # one seed: no "± 0.000"
    mlp = next(line for line in lines if line.startswith("| MLP |"))
    assert "| 0.200 | 0.300 | lr 1e-05 ⚠ edge of grid |" in mlp
    paper = next(line for line in lines if line.startswith("| paper: StatNN"))
    assert paper.startswith("| paper: StatNN (CIFAR-10 ResNet8, another setting) | 0.976 ± 0.000 | 0.866 ± 0.000 |")
    assert "- ⚠ test split of 2 for standard, 2 for W-Asym networks: R² and Kendall τ" in table
    assert "- ⚠ chosen at the edge of its grid: StatNN on W-Asym, MLP on standard" in table
    assert (
        "- verdict: StatNN: W-Asym R² 0.950 vs standard 0.850 (+0.100; no test: 1 seed(s)); paper +0.002: "
        "same direction, untested" in table
    )
    assert "dropped: 1 diverged" in table
    with_paper = metanet_table(summary, ["statnn"], ["standard", "w_asym"], True, counts, [])
    assert "| paper: StatNN (CIFAR-10 ResNet8) |" in with_paper
    paper = {"model": {"arch": "resnet8"}, "data": {"name": "cifar10", "size": None}}
    assert is_paper_resnet8_zoo(paper) and not is_paper_resnet8_zoo(paper | {"data": {"name": "cifar10", "size": 16}})


def test_accuracies_that_barely_spread_flag_the_r2_cell_and_its_verdict():
    """R² divides by the variance of the test accuracies: on 0.96 ± 0.03 it reads -194 while τ still means
    something. The table says so, and the summary's verdict carries the flag."""
    from symzoo.analysis.tables import metanet_summary, metanet_table, metanet_verdicts

    runs = pd.DataFrame(
        {
            "metanet": ["statnn"] * 4,
            "variant": ["standard", "standard", "w_asym", "w_asym"],
            "hparam_name": ["lr"] * 4,
            "hparam": [1e-3] * 4,
            "test_r2": [0.9, 0.8, -190.0, -200.0],
            "test_tau": [0.7, 0.6, 0.5, 0.4],
        }
    )
    counts = {
        "standard": {
            "used": 8,
            "train": 4,
            "val": 2,
            "test": 40,
            "dropped": {},
            "test_acc_mean": 0.5,
            "test_acc_std": 0.2,
        },
        "w_asym": {
            "used": 8,
            "train": 4,
            "val": 2,
            "test": 40,
            "dropped": {},
            "test_acc_mean": 0.96,
            "test_acc_std": 0.03,
        },
    }
    table = metanet_table(metanet_summary(runs), ["statnn"], ["standard", "w_asym"], False, counts, [], None, runs)
    assert "- ⚠ W-Asym test accuracies 0.96 ± 0.03: too little spread for R² to mean much; read τ" in table
    assert "standard test accuracies" not in table
    (verdict,) = metanet_verdicts(runs, ["statnn"], ["standard", "w_asym"], counts)
    assert verdict.flag == "W-Asym test accuracies 0.96 ± 0.03: R² unreliable"
    assert verdict.outcome == "NOT reproduced" and verdict.claim == "StatNN metanet: W-Asym R² above standard"
