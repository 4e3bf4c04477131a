"""MLI and LMC: the statistics on hand-made curves, interpolation endpoints, weight matching, both CLIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from symzoo.analysis.landscape import evaluate_flat, interpolate, midpoint_barrier, mli_stats
from symzoo.analysis.lmc import barriers, lmc_curves, replicate_pairs
from symzoo.analysis.mli import mli_curves
from symzoo.analysis.rebasin import permutation_spec, permute, rebasin, weight_matching
from symzoo.cli import main as cli_main
from symzoo.pipelines.generate import generate
from symzoo.pipelines.lmc import lmc_stage
from symzoo.pipelines.mli import mli_stage
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import build
from symzoo.zoo.store import open_zoo

ALPHAS = np.linspace(0, 1, 25)


def test_a_convex_decreasing_curve_scores_as_convex_and_monotonic():
    s = mli_stats(ALPHAS, (1 - ALPHAS) ** 2)
    assert s.monotonic and s.delta < 0
    assert s.local_convexity == s.global_convexity == s.global_convexity_authors == 1.0


def test_a_monotone_concave_curve_is_nonconvex_as_defined_but_convex_in_the_authors_code():
    s = mli_stats(ALPHAS, 1 - ALPHAS**2)
    assert s.monotonic and s.local_convexity == 0.0
    assert s.global_convexity == 0.0  # every interior point lies above the chord from L(0) to L(1)
    assert s.global_convexity_authors == 1.0


def test_the_authors_global_convexity_is_one_on_any_non_increasing_curve():
    rng = np.random.default_rng(0)
    for _ in range(50):
        curve = np.cumsum(-rng.exponential(size=25) * (rng.random(25) < 0.7))
        assert mli_stats(ALPHAS, curve).global_convexity_authors == 1.0
    bumpy = (1 - ALPHAS) + 0.2 * np.sin(6 * np.pi * ALPHAS) ** 2
    s = mli_stats(ALPHAS, bumpy)
    assert not s.monotonic and s.delta == pytest.approx(np.max(np.diff(bumpy)))
    assert 0 < s.local_convexity < 1 and s.global_convexity < 1


def test_the_midpoint_barrier_needs_the_midpoint():
    assert midpoint_barrier(ALPHAS, 1 + np.sin(np.pi * ALPHAS)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd number of alphas"):
        midpoint_barrier(np.linspace(0, 1, 24), np.zeros(24))


def _standard_pair(arch: str = "resnet8"):
    a = build(arch, "standard", (1, 8, 8), 10, init_seed=1)
    spec = permutation_spec(a)
    rng = np.random.default_rng(3)
    params = {n: p.detach() for n, p in a.named_parameters()}
    perms = {p: rng.permutation(params[ax[0][0]].shape[ax[0][1]]) for p, ax in spec.perm_to_axes.items()}
    b = build(arch, "standard", (1, 8, 8), 10, init_seed=2)
    ParamLayout.from_model(b).load_into(b, ParamLayout.from_model(a).flatten(permute(spec, perms, params)))
    return a, b


@pytest.mark.parametrize("arch", ["resnet8", "resnet20", "mlp"])
def test_weight_matching_recovers_a_random_permutation_exactly(arch):
    a, b = _standard_pair(arch)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)  # the permuted copy computes the same function
    assert not all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters(), strict=True))
    back = rebasin(a, b)
    assert all(torch.equal(back[n], p.detach()) for n, p in a.named_parameters())
    spec = permutation_spec(a)
    params = dict(a.named_parameters())
    identity = weight_matching(spec, params, params)
    assert all(np.array_equal(p, np.arange(len(p))) for p in identity.values())


def test_asymmetric_networks_have_no_permutation_spec():
    for variant in ("w_asym", "sigma_asym"):
        with pytest.raises(ValueError, match="not permutation symmetric"):
            permutation_spec(build("resnet8", variant, (1, 8, 8), 10))


def test_replicates_pair_up_within_a_sample_and_variant():
    frame = pd.DataFrame(
        {
            "model_id": range(8),
            "sample": [0, 0, 0, 0, 1, 1, 1, 1],
            "replicate": [0, 0, 1, 1, 0, 0, 1, 1],
            "variant": ["s", "w"] * 4,
            "status": ["ok"] * 7 + ["diverged"],
        }
    )
    pairs = replicate_pairs(frame)
    assert pairs[["sample", "variant", "model_a", "model_b"]].values.tolist() == [
        [0, "s", 0, 2],
        [0, "w", 1, 3],
        [1, "s", 4, 6],
    ]


TINY = {
    "name": "land",
    "seed": 2,
    "data": {"name": "digits"},
    "variants": ["standard", "w_asym"],
    "networks": 2,
    "replicates": 2,
    "hyperparameters": {"epochs": {"randint": [2, 3]}, "lr": {"log_uniform": [0.005, 0.02]}},
    "training": {"batch_size": 100, "warmup_epochs": 1, "augment": {"flip": False, "cutout": 0}},
    "execution": {"networks_per_shard": 8},
}


@pytest.fixture(scope="module")
def zoo_dir(ray_cluster, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("landzoo")
    (tmp / "zoo.yaml").write_text(yaml.safe_dump(TINY))
    assert generate(tmp / "zoo.yaml", tmp / "zoo", show_progress=False).ok
    return tmp / "zoo"


def test_interpolation_endpoints_reproduce_the_stored_networks(zoo_dir):
    zoo = open_zoo(zoo_dir)
    data = zoo.dataset()
    rows = zoo.frame.iloc[:2]
    for _, row in rows.iterrows():
        layout = zoo.layout(row["variant"])
        template = zoo.model(int(row["model_id"]))
        final = torch.from_numpy(np.array(zoo.weights("final", model_ids=[int(row["model_id"])])))
        loss, acc = evaluate_flat(template, layout, final, data, "test", torch.zeros(1), 512)
        assert float(loss[0]) == pytest.approx(row["test_loss"], rel=1e-5)
        assert float(acc[0]) == pytest.approx(row["test_acc"], abs=1e-6)
    init = zoo.weights("init", model_ids=rows["model_id"].tolist())
    final = zoo.weights("final", model_ids=rows["model_id"].tolist())
    one = rows.iloc[:1]
    curves = mli_curves(one, init[:1], final[:1], zoo.config, data, 5, ["clean", "augmented"], 512)
    clean = curves[curves["measurement"] == "clean"].sort_values("alpha")
    layout = zoo.layout(one["variant"].iloc[0])
    ends = interpolate(torch.from_numpy(init[:1].copy()), torch.from_numpy(final[:1].copy()), torch.tensor([0.0, 1.0]))
    smoothing = torch.full((2,), float(one["label_smoothing"].iloc[0]))
    want, _ = evaluate_flat(zoo.model(int(one["model_id"].iloc[0])), layout, ends, data, "train", smoothing, 512)
    np.testing.assert_allclose(clean["loss"].to_numpy()[[0, -1]], want.numpy(), rtol=1e-6)
    again = mli_curves(one, init[:1], final[:1], zoo.config, data, 5, ["augmented"], 512)
    aug = curves[curves["measurement"] == "augmented"].reset_index(drop=True)
    np.testing.assert_array_equal(aug["loss"].to_numpy(), again["loss"].to_numpy())  # seeded per network
    assert not np.allclose(aug["loss"].to_numpy(), clean["loss"].to_numpy())


def test_the_barrier_to_a_permuted_copy_vanishes_after_rebasin(zoo_dir):
    zoo = open_zoo(zoo_dir)
    data = zoo.dataset()
    a = zoo.model(0)
    spec = permutation_spec(a)
    params = {n: p.detach() for n, p in a.named_parameters()}
    rng = np.random.default_rng(0)
    perms = {p: rng.permutation(params[ax[0][0]].shape[ax[0][1]]) for p, ax in spec.perm_to_axes.items()}
    layout = zoo.layout("standard")
    wa, wb = layout.flatten(a).numpy(), layout.flatten(permute(spec, perms, params)).numpy()
    pair = pd.DataFrame({"sample": [0], "variant": ["standard"], "model_a": [0], "model_b": [0]})
    methods = ["standard+rebasin", "standard+activations"]
    curves = lmc_curves(pair, wa[None], wb[None], zoo.config, data, 5, 512, methods)
    b = barriers(curves).set_index("method")["loss_barrier"]
    assert b["standard+rebasin"] == pytest.approx(0.0, abs=1e-5)
    assert b["standard+activations"] == pytest.approx(0.0, abs=1e-5)  # activation matching finds it too
    assert b["standard"] > 0.05  # a permuted copy is far away in weight space


def test_mli_cli_writes_curves_table_and_figures_and_a_rerun_evaluates_nothing(zoo_dir, tmp_path, capsys):
    out = tmp_path / "mli"
    assert cli_main(["mli", str(zoo_dir), "--out", str(out), "--alphas", "5", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "### clean" in printed and "### augmented" in printed and "as in the authors' code" in printed
    curves = pd.read_parquet(out / "curves.parquet")
    assert list(curves.columns) == ["model_id", "variant", "measurement", "alpha", "loss", "accuracy"]
    assert len(curves) == 8 * 2 * 5 and curves.groupby(["model_id", "measurement"]).size().eq(5).all()
    assert "monotonic: Fisher's exact test; the rest: Welch's t-test" in (out / "table.md").read_text()
    for name in ("mli_curves_clean", "mli_curves_augmented", "delta_hist_clean", "delta_hist_augmented"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    again = mli_stage(zoo_dir, out, overrides={"alphas": 5}, show_progress=False)
    assert again.ran == 0 and again.kept == 4


def test_lmc_cli_pairs_replicates_with_rebasin_and_a_rerun_evaluates_nothing(zoo_dir, tmp_path, capsys):
    out = tmp_path / "lmc"
    assert cli_main(["lmc", str(zoo_dir), "--out", str(out), "--alphas", "5", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "standard + Git Re-Basin" in table and "W-Asym" in table
    curves = pd.read_parquet(out / "curves.parquet")
    assert set(curves["method"]) == {"standard", "standard+rebasin", "w_asym"}
    assert len(curves) == 3 * 2 * 5  # 2 pairs per method
    assert (out / "figures" / "lmc_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_parquet(out / "barriers.parquet")) == 6
    assert lmc_stage(zoo_dir, out, overrides={"alphas": 5}, show_progress=False).ran == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["mli", "--loss", "noisy"], "'mli.loss': 'noisy' is not allowed; choose one of clean, augmented, both"),
        (["lmc", "--alphas", "24"], "'lmc.alphas': 24 is not allowed; an odd number"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_write_nothing(zoo_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert cli_main([args[0], str(zoo_dir), "--out", str(out), *args[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


def test_lmc_needs_replicates_and_both_need_a_zoo(zoo_dir, tmp_path, capsys):
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump(TINY | {"replicates": 1, "variants": ["standard"]}))
    assert generate(single, tmp_path / "single", show_progress=False).ok
    capsys.readouterr()
    assert cli_main(["lmc", str(tmp_path / "single"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no replicates (replicates: 1)" in err and "\n" not in err
    assert cli_main(["mli", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _poisoned_copy(zoo_dir: Path, dest: Path, model_id: int) -> Path:
    """A copy of the zoo in which one finished network's final weights hold an inf (its status still ok), stored
    as training would store it: the row's checksum matches."""
    import shutil

    import pyarrow as pa

    from symzoo.zoo.store import ROW_GROUP_SIZE, read_parquet, row_checksums, write_parquet_atomically

    shutil.copytree(zoo_dir, dest)
    for shard in sorted((dest / "models").glob("part-*.parquet")):
        table = read_parquet(shard)
        ids = table["model_id"].to_pylist()
        if model_id in ids:
            column = table["weights_final"].to_pylist()
            values = np.frombuffer(column[ids.index(model_id)], "<f4").copy()
            values[3] = np.inf
            column[ids.index(model_id)] = values.tobytes()
            at = table.schema.get_field_index("weights_final")
            table = table.set_column(at, table.schema.field(at), pa.array(column, table.schema.field(at).type))
            sums = table["checksum_weights_final"].to_pylist()
            sums[ids.index(model_id)] = int(row_checksums(values[None])[0])
            at = table.schema.get_field_index("checksum_weights_final")
            table = table.set_column(at, table.schema.field(at), pa.array(sums, pa.uint64()))
            write_parquet_atomically(shard, table, ROW_GROUP_SIZE, "variant")
            return dest
    raise AssertionError(f"model {model_id} is in no shard")


@pytest.mark.parametrize("workers_read", [True, False])
def test_diverged_and_non_finite_networks_are_skipped_and_counted(zoo_dir, tmp_path, workers_read, monkeypatch):
    """Whether a task reads its rows itself or the driver sends them, a network whose stored weights are not
    finite is left out of the curves and counted under the table. Where tasks read, the driver reads no weight."""
    from symzoo.analysis.selection import finished_networks
    from symzoo.zoo.store import StoredRows

    if workers_read:  # this process is the driver; Ray's workers are other processes
        monkeypatch.setattr(StoredRows, "read_into", lambda *a, **k: pytest.fail("the driver read weights"))

    frame = pd.DataFrame({"model_id": range(3), "variant": ["s", "s", "w"], "status": ["ok", "diverged", "ok"]})
    networks, skipped = finished_networks(frame)
    assert networks["model_id"].tolist() == [0, 2] and skipped == {"s": {"diverged": 1}, "w": {}}

    poisoned = _poisoned_copy(zoo_dir, tmp_path / "zoo", model_id=0)  # standard, sample 0, replicate 0
    opts = {"alphas": 5, "workers_read": workers_read}
    mli = mli_stage(poisoned, tmp_path / "mli", overrides=opts | {"loss": "clean"}, show_progress=False)
    curves = pd.read_parquet(tmp_path / "mli" / "curves.parquet")
    assert sorted(set(curves["model_id"])) == [1, 2, 3, 4, 5, 6, 7] and curves["alpha"].notna().all()
    assert "skipped: standard: 1 networks with non-finite weights; W-Asym: none" in mli.table
    lmc = lmc_stage(poisoned, tmp_path / "lmc", overrides=opts, show_progress=False)
    curves = pd.read_parquet(tmp_path / "lmc" / "curves.parquet")
    assert 0 not in set(curves["model_a"])  # standard pair 0-2 is left out; pair 4-6 (with and without Re-Basin)
    assert len(curves) == 4 * 5  # and the two W-Asym pairs remain
    assert "standard: 1 pairs with non-finite weights" in lmc.table


def test_tables_print_the_papers_rows_flags_and_computed_verdicts():
    from symzoo.analysis.lmc import lmc_table
    from symzoo.analysis.mli import mli_table

    table_barriers = pd.DataFrame(
        {
            "method": ["standard", "standard+rebasin", "sigma_asym", "w_asym"] * 2,
            "sample": [0] * 4 + [1] * 4,
            "loss_barrier": [0.4, 0.1, 0.7, 0.0, 0.5, 0.1, 0.6, 0.0],
            "acc_drop": [0.1] * 8,
            "endpoint_loss": [0.3, 0.3, 0.3, 1.1] * 2,  # W-Asym's endpoints are weak
            "endpoint_acc": [0.9, 0.9, 0.9, 0.6] * 2,
        }
    )
    mlp = {"model": {"arch": "mlp", "width": 1}, "data": {"name": "fashion_mnist", "size": None}}
    table = lmc_table(table_barriers, mlp)
    assert "| MLP on Fashion-MNIST (the paper's row: MLP on MNIST" in table
    assert "| 0.450 ± 0.071 [-0.185, 1.085] (2) | 0.100 ± 0.000 [0.100, 0.100] (2) |" in table  # t with 1 dof
    assert "| paper | 0.188 | -0.006 | 0.117 | -0.012 |" in table
    assert "| endpoint test loss | 0.300 ± 0.000 | 0.300 ± 0.000 | 0.300 ± 0.000 | 1.100 ± 0.000 |" in table
    assert "- ⚠ W-Asym's endpoints are weak (test loss 1.100 against 0.300" in table
    verdict = "- verdict: σ-Asym barrier 0.650 vs standard 0.450 (Welch p = 0.11); paper 0.117 vs 0.188: direction NOT"
    assert verdict in table
    assert "- verdict: W-Asym barrier 0.000 vs standard 0.450 (Welch p = 0.07); paper -0.012 vs 0.188: same " in table
    digits = {"model": {"arch": "resnet8", "width": 1}, "data": {"name": "digits", "size": None}}
    other = lmc_table(table_barriers, digits)
    assert "| paper |" not in other and "| paper: ResNet20 x1 on CIFAR-10 (another setting) | 3.287 |" in other
    stats = pd.DataFrame(
        {
            "variant": ["standard", "standard", "w_asym", "w_asym"],
            "measurement": ["augmented"] * 4,
            "delta": [0.1, -0.1, -0.02, -0.03],
            "monotonic": [False, True, True, True],
            "local_convexity": [0.5, 0.6, 0.8, 0.7],
            "global_convexity": [0.8, 0.9, 1.0, 1.0],
            "global_convexity_authors": [1.0, 1.0, 1.0, 1.0],
        }
    )
    for with_paper in (True, False):  # variants as rows, as the paper's Table 4; the paper's rows either way
        table = mli_table(stats, ["w_asym", "standard"], "augmented", with_paper=with_paper)
        rows = [line for line in table.splitlines() if line.startswith("| ")]
        assert rows[1].startswith("| standard | 2 | 0.000 ± 0.141 [-1.271, 1.271] | 50.0% [9.5, 90.5] |")
        assert rows[2].startswith("| W-Asym | 2 | -0.025 ± 0.007 [-0.089, 0.039] | 100.0% [34.2, 100.0] |")
        setting = "" if with_paper else ", another setting"
        assert rows[3].startswith(f"| paper: standard (CIFAR-10 ResNet8{setting}) | 300 | 0.079 ± 0.109 | 26.3% |")
    verdict = "- verdict (augmented): monotonic: W-Asym 100.0% vs standard 50.0% (p = 1); paper: W-Asym higher "
    assert verdict + "(100.0% vs 26.3%): same direction, not significant" in table
    assert "every network of every variant has global convexity, as in the authors' code (1.000)" in table


def test_a_zoo_missing_a_shard_is_refused_though_its_manifest_says_complete(zoo_dir, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "zoo"
    shutil.copytree(zoo_dir, damaged)
    next((damaged / "models").glob("part-*.parquet")).unlink()
    assert cli_main(["mli", str(damaged), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is an incomplete zoo (0 networks so far)" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
