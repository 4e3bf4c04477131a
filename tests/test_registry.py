"""Adding a stage is one module and one registry line: a toy stage, registered here, is a command of its own
(`symzoo toy ZOO`), a section of the study config, a step of `symzoo run` and a section of its report."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest
import ray
import yaml

from symzoo.cli import main as cli_main
from symzoo.pipelines import registry
from symzoo.pipelines.analysis_stage import AnalysisStage
from symzoo.pipelines.stage_spec import StageOptions, StageSpec, check_resources
from symzoo.zoo.fields import check_int

TOY_CONFIG = {
    "name": "toy_study",
    "seed": 3,
    "data": {"name": "digits"},
    "variants": ["standard"],
    "networks": 2,
    "hyperparameters": {"epochs": 1},
    "training": {"batch_size": 200, "warmup_epochs": 0, "augment": {"flip": False, "cutout": 0}},
    "study": {"stages": ["toy"]},
    "toy": {"digits": 3},
}


def toy_stage(zoo_dir, out, config_section=None, overrides=None, address=None, show_progress=True):
    """Mean test accuracy per variant, rounded to ``digits``: a stage through the same runner as the real ones."""
    stage = AnalysisStage.open(TOY, zoo_dir, out, config_section, overrides)
    if done := stage.finished():
        return done
    with stage.running(address):
        means = stage.zoo.frame.groupby("variant")["test_acc"].mean()
        rows = [f"| {v} | {m:.{stage.opts.digits}f} |" for v, m in means.items()]
        table = "# Toy\n\n| variant | mean test accuracy |\n|---|---|\n" + "\n".join(rows) + "\n"
        (stage.out / "table.md").write_text(table)
        return stage.finish(table)


@dataclass(frozen=True)
class ToyOptions(StageOptions):
    digits: int = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--digits", type=int, default=None)


def check(o: dict) -> None:
    check_int("toy.digits", o["digits"], 1, 6)
    check_resources("toy", o)


TOY = StageSpec(
    name="toy",
    title="Toy: mean test accuracy by variant",
    help="a toy stage",
    item="variant",
    options=ToyOptions,
    check=check,
    identity=("digits",),
    seed_options=("digits",),
    run=toy_stage,
    add_arguments=add_arguments,
    overrides=lambda args: {"digits": args.digits},
)


@pytest.fixture
def toy_registered():
    registry.register(TOY)
    yield
    del registry.STAGES["toy"]
    ray.shutdown()  # the commands ran in this process and started Ray here: later modules start their own


@pytest.mark.slow
def test_a_registered_stage_runs_as_a_command_in_a_study_and_in_its_report(toy_registered, tmp_path, capsys):
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(TOY_CONFIG))
    out = tmp_path / "study"
    assert cli_main(["run", str(config), "--out", str(out), "--no-progress"]) == 0
    table = (out / "toy" / "table.md").read_text()
    assert "| standard | " in table and len(table.split("| standard | ")[1].split(" |")[0]) == 5  # 3 digits
    report = (out / "report.md").read_text()
    assert "## Toy: mean test accuracy by variant" in report and "- toy: digits 3" in report
    assert json.loads((out / "toy" / "done.json").read_text())["options"]["digits"] == 3
    capsys.readouterr()
    again = tmp_path / "again"
    assert cli_main(["toy", str(out / "zoo"), "--out", str(again), "--digits", "4", "--no-progress"]) == 0
    assert len((again / "table.md").read_text().split("| standard | ")[1].split(" |")[0]) == 6
    assert cli_main(["toy", str(out / "zoo"), "--out", str(again), "--digits", "9", "--no-progress"]) == 2
    assert "'toy.digits': 9 is not allowed" in capsys.readouterr().err


def test_a_stage_section_of_an_unregistered_stage_is_an_unknown_field(tmp_path, capsys):
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(TOY_CONFIG))
    assert cli_main(["plan", str(config)]) == 2
    assert "'toy': unknown field" in capsys.readouterr().err


def test_two_stages_of_one_name_are_refused(toy_registered):
    with pytest.raises(ValueError, match="a stage named 'toy' exists already"):
        registry.register(TOY)
