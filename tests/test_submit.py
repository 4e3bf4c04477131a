"""`symzoo submit`: what is checked before anything reaches a cluster."""

from __future__ import annotations

import pytest

from cluster.submit import head_address, job_entrypoint
from symzoo.cli import main as cli_main
from symzoo.errors import ConfigError, SymzooError


def test_entrypoint_runs_the_stage_without_a_progress_bar():
    cmd = job_entrypoint(["generate", "configs/digits_demo.yaml", "--out", "/zoos/my demo"])
    assert cmd == "python -m symzoo.cli generate configs/digits_demo.yaml --out '/zoos/my demo' --no-progress"


def test_a_bad_config_fails_locally_before_any_upload(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {name: digits}\nnetworks: -3\n")
    with pytest.raises(ConfigError, match="'networks': -3 is not allowed"):
        job_entrypoint(["generate", str(bad)])
    with pytest.raises(SymzooError, match="stages: generate, run, metanet, mli, lmc"):
        job_entrypoint(["train"])


def test_every_analysis_stage_submits_with_its_options_checked_locally():
    cmd = job_entrypoint(["metanet", "/zoos/paper", "--out", "/runs/m", "--metanets", "statnn,dmc"])
    assert cmd == "python -m symzoo.cli metanet /zoos/paper --out /runs/m --metanets statnn,dmc --no-progress"
    assert job_entrypoint(["run", "configs/digits_study.yaml"]).endswith("run configs/digits_study.yaml --no-progress")
    with pytest.raises(ConfigError, match="'mli.loss': 'noisy' is not allowed"):
        job_entrypoint(["mli", "/zoos/paper", "--loss", "noisy"])
    with pytest.raises(ConfigError, match="'lmc.alphas': 10 is not allowed; an odd number"):
        job_entrypoint(["lmc", "/zoos/paper", "--alphas", "10"])
    with pytest.raises(SymzooError, match="submit lmc needs a zoo"):
        job_entrypoint(["lmc"])


def test_cluster_yaml_must_exist(tmp_path, capsys):
    with pytest.raises(SymzooError, match="not found; see cluster/aws-gpu.yaml"):
        head_address(str(tmp_path / "none.yaml"))
    assert cli_main(["submit", "generate", "configs/digits_demo.yaml"]) == 2
    assert "needs --address" in capsys.readouterr().err
