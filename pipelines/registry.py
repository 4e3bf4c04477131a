"""The analysis stages symzoo offers, and the one place the CLI, ``symzoo run``, ``symzoo submit``, the study
config and the report look them up.

Adding a stage: write its module (options, checks, flags, plan, Ray task, outputs, a ``SPEC = StageSpec(...)``),
then add that ``SPEC`` to ``STAGES`` below (or call ``register`` from a plugin). Its config section, its command,
its place in ``study.stages`` and in the report follow from the spec.
"""

from __future__ import annotations

from typing import Any

from symzoo.errors import ZooError
from symzoo.pipelines import bnn, lmc, metanet, mli
from symzoo.pipelines.stage_spec import StageSpec
from symzoo.zoo.config import read_yaml, validate
from symzoo.zoo.fields import check_choice, fail
from symzoo.zoo.location import Location

STAGES: dict[str, StageSpec] = {spec.name: spec for spec in (metanet.SPEC, mli.SPEC, lmc.SPEC, bnn.SPEC)}
STUDY = "study"  # the section of ``symzoo run``: which stages follow generate
STUDY_DEFAULTS = {"stages": "auto"}  # auto: every registered stage the zoo's config allows (``StageSpec.needs``)


def register(spec: StageSpec) -> StageSpec:
    """Offer one more stage (a plugin's): its command, config section, place in studies and report section."""
    if spec.name in STAGES or spec.name == STUDY:
        raise ValueError(f"a stage named {spec.name!r} exists already")
    STAGES[spec.name] = spec
    return spec


def stage(name: str) -> StageSpec:
    try:
        return STAGES[name]
    except KeyError:
        raise ZooError(f"no stage {name!r}; the stages are {', '.join(STAGES)}") from None


def validate_study(given: Any) -> dict:
    if given is None:
        given = {}
    if not isinstance(given, dict) or set(given) - set(STUDY_DEFAULTS):
        fail(STUDY, f"must be a mapping with fields {', '.join(STUDY_DEFAULTS)}")
    opts = {**STUDY_DEFAULTS, **given}
    stages = opts["stages"]
    if stages != "auto":
        if not isinstance(stages, list) or len(set(stages)) != len(stages):
            fail(
                "study.stages",
                f"{stages!r} is not allowed; auto or a list of distinct stages from {', '.join(STAGES)}",
            )
        for i, name in enumerate(stages):
            check_choice(f"study.stages[{i}]", name, tuple(STAGES))
    return opts


def section_validators() -> dict:
    """Every section a study config may hold beside the zoo's own fields, with the function that checks it."""
    return {**{name: spec.validate for name, spec in STAGES.items()}, STUDY: validate_study}


def load_study_config(path: str | Location) -> dict:
    """A zoo config with its stage sections, every field checked and every default filled in."""
    return validate(read_yaml(path), section_validators())


def load_stage_section(path: str | Location, name: str) -> dict:
    """The ``name`` section of a ``--config`` file: a whole zoo config, validated as one, or a file that holds only
    stage sections (options to rerun a stage with), validated section by section."""
    raw = read_yaml(path)
    sections = section_validators()
    if isinstance(raw, dict) and raw and set(raw) <= set(sections):
        return {section: check(raw.get(section)) for section, check in sections.items()}[name]
    return validate(raw, sections)[name]


def study_stages(cfg: dict) -> list[str]:
    """The stages ``symzoo run`` runs after generate, in registry order."""
    chosen = cfg[STUDY]["stages"]
    if chosen == "auto":
        return [name for name, spec in STAGES.items() if spec.needs(cfg) is None]
    return [name for name in STAGES if name in chosen]
