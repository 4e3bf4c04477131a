"""`symzoo submit`: what is checked before anything reaches a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from symzoo.cli import build_parser
from symzoo.cli import main as cli_main
from symzoo.cluster.submit import dashboard_tunnel, job_entrypoint, submission_id
from symzoo.errors import ConfigError, SymzooError

PARSE = build_parser().parse_args


def test_entrypoint_runs_the_stage_without_a_progress_bar():
    cmd = job_entrypoint(["generate", "configs/digits_demo.yaml", "--out", "/zoos/my demo"], PARSE)
    assert cmd == "python -m symzoo.cli generate configs/digits_demo.yaml --out '/zoos/my demo' --no-progress"


def test_a_bad_config_fails_locally_before_any_upload(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {name: digits}\nnetworks: -3\n")
    with pytest.raises(ConfigError, match="'networks': -3 is not allowed"):
        job_entrypoint(["generate", str(bad)], PARSE)
    with pytest.raises(SymzooError, match="stages: generate, run, import, metanet, mli, lmc"):
        job_entrypoint(["train"], PARSE)


def test_every_analysis_stage_submits_with_its_options_checked_locally():
    cmd = job_entrypoint(["metanet", "/zoos/paper", "--out", "/runs/m", "--metanets", "statnn,dmc"], PARSE)
    assert cmd == "python -m symzoo.cli metanet /zoos/paper --out /runs/m --metanets statnn,dmc --no-progress"
    assert job_entrypoint(["run", "configs/digits_study.yaml"], PARSE).endswith(
        "run configs/digits_study.yaml --no-progress"
    )
    with pytest.raises(ConfigError, match="'mli.loss': 'noisy' is not allowed"):
        job_entrypoint(["mli", "/zoos/paper", "--loss", "noisy"], PARSE)
    with pytest.raises(ConfigError, match="'lmc.alphas': 10 is not allowed; an odd number"):
        job_entrypoint(["lmc", "/zoos/paper", "--alphas", "10"], PARSE)
    with pytest.raises(SymzooError, match="submit lmc needs a zoo"):
        job_entrypoint(["lmc"], PARSE)


def test_an_import_submits_with_its_arguments_parsed_locally():
    args = ["import", "authors", "/data/cifar10_nets", "--out", "/zoos/authors", "--hparams", "/data/hparams.csv"]
    assert job_entrypoint(args, PARSE) == "python -m symzoo.cli " + " ".join(args) + " --no-progress"
    with pytest.raises(SymzooError, match="does not parse"):
        job_entrypoint(["import", "authors", "/data/cifar10_nets"], PARSE)  # no --out
    with pytest.raises(SymzooError, match="does not parse"):
        job_entrypoint(["import", "tune", "/data/x", "--out", "/zoos/x"], PARSE)  # no such format


def test_the_same_work_gets_the_same_submission_id(tmp_path):
    base = submission_id(["generate", "configs/digits_demo.yaml", "--out", "/zoos/d"], PARSE)
    assert base.startswith("symzoo-generate-") and base == submission_id(
        ["generate", "configs/digits_demo.yaml", "--out", "/zoos/d", "--no-progress"], PARSE
    )
    copy, text = tmp_path / "copy.yaml", Path("configs/digits_demo.yaml").read_text()
    copy.write_text(text)
    assert submission_id(["generate", str(copy), "--out", "/zoos/d"], PARSE) == base, (
        "the config's content, not its path"
    )
    copy.write_text(text.replace("seed: 0", "seed: 5"))
    assert submission_id(["generate", str(copy), "--out", "/zoos/d"], PARSE) != base
    assert submission_id(["generate", "configs/digits_demo.yaml", "--out", "/zoos/e"], PARSE) != base
    assert submission_id(["mli", "/zoos/d"], PARSE) != submission_id(["lmc", "/zoos/d"], PARSE)


def test_cluster_yaml_must_exist(tmp_path, capsys):
    with pytest.raises(SymzooError, match="not found; see cluster/aws-gpu.yaml"), dashboard_tunnel(str(tmp_path / "n")):
        pass
    assert cli_main(["submit", "generate", "configs/digits_demo.yaml"]) == 2
    assert "needs --address" in capsys.readouterr().err


def test_get_head_ip_failures_name_their_real_cause():
    from symzoo.cluster.submit import head_ip_failure

    boto = "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'boto3'\n"
    assert head_ip_failure("cluster/aws-gpu.yaml", boto) == (
        "`ray get-head-ip cluster/aws-gpu.yaml` needs the cloud SDK boto3 (AWS): pip install boto3"
    )
    gcp = "ModuleNotFoundError: No module named 'googleapiclient.discovery'"
    assert "google-api-python-client (GCP): pip install google-api-python-client" in head_ip_failure("c.yaml", gcp)
    assert head_ip_failure("c.yaml", "Head node of cluster (c) not found!") == (
        "no running head for c.yaml; start it with `ray up -y c.yaml`"
    )


def test_a_ray_without_its_job_sdk_is_named_as_such(capsys, monkeypatch):
    import ray.job_submission

    def plain_ray(address):  # what JobSubmissionClient raises in a venv with plain `ray`, without ray[default]
        raise RuntimeError("The Ray jobs CLI & SDK require the ray[default] installation: `pip install 'ray[default]'`")

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", plain_ray)
    assert cli_main(["submit", "--address", "http://127.0.0.1:8265", "generate", "configs/digits_demo.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs Ray's job SDK, which plain `ray` lacks: pip install 'ray[default]'" in err and "\n" not in err
    assert "cannot reach" not in err
