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
    with pytest.raises(SymzooError, match="stages: generate"):
        job_entrypoint(["train"])


def test_cluster_yaml_must_exist(tmp_path, capsys):
    with pytest.raises(SymzooError, match="not found; see cluster/aws-gpu.yaml"):
        head_address(str(tmp_path / "none.yaml"))
    assert cli_main(["submit", "generate", "configs/digits_demo.yaml"]) == 2
    assert "needs --address" in capsys.readouterr().err
