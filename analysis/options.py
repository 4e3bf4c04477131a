"""Options of the analysis stages: the ``metanet:``, ``mli:`` and ``lmc:`` sections of a zoo config.

They are validated like every zoo field but left out of the zoo's config hash, so adding or changing them never
invalidates a stored zoo. A stage resolves its options as: defaults, then the section stored in the zoo's
manifest, then a section from ``--config YAML``, then command-line flags.
"""

from __future__ import annotations

from typing import Any

from symzoo.zoo.fields import check_bool, check_choice, check_int, check_number, fail, merge

PAPER_METANETS = ("mlp", "dmc", "deepsets", "statnn", "ridge", "gbt")  # paper Table 3 and the CPU baselines
EQUIVARIANT_METANETS = ("nfn_np", "nfn_hnp", "gmn")  # the control the paper lacks (analysis.equivariant)
METANETS = (*PAPER_METANETS, *EQUIVARIANT_METANETS)
PAPER_LRS = [1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2]  # SPEC section 3: one run per LR, picked on validation R^2
LOSS_MEASUREMENTS = ("clean", "augmented")

ANALYSIS_DEFAULTS: dict[str, dict[str, Any]] = {
    "metanet": {
        "metanets": list(PAPER_METANETS),
        "lrs": PAPER_LRS,
        "seeds": 5,
        "epochs": 50,
        "batch_size": 128,
        "weight_decay": 1e-2,
        "weights": "final",
        "split_seed": 0,  # or "stored": the zoo's splits.parquet, whatever made it (symzoo splits)
        "align": "none",  # rebasin: permute every standard network onto one reference before the flat metanets
        "variants": None,  # all the zoo holds
        "cpus_per_task": 1,
        "gpus_per_task": "auto",  # a quarter GPU per run where the cluster has GPUs, else none
        "workers_read": "auto",  # tasks read the zoo themselves where they reach it (see pipelines.stage)
    },
    "mli": {
        "alphas": 25,
        "loss": "both",
        "batch_size": 512,
        "networks_per_unit": 16,
        "sample": None,  # networks per variant, drawn by sample_seed (the paper analyses 300); null: all
        "sample_seed": 0,
        "cpus_per_task": 1,
        "gpus_per_task": "auto",
        "workers_read": "auto",
    },
    "lmc": {
        "alphas": 25,
        "rebasin": True,
        "batch_size": 512,
        "pairs_per_unit": 4,
        "sample": None,  # replicate pairs per variant, drawn by sample_seed; null: all
        "sample_seed": 0,
        "cpus_per_task": 1,
        "gpus_per_task": "auto",
        "workers_read": "auto",
    },
}
ANALYSIS_DEFAULTS["study"] = {"stages": "auto"}  # symzoo run: auto = metanet, mli, and lmc when replicates >= 2
STUDY_STAGES = ("metanet", "mli", "lmc")
ANALYSIS_SECTIONS = tuple(ANALYSIS_DEFAULTS)


def _check_resources(section: str, opts: dict) -> None:
    check_number(f"{section}.cpus_per_task", opts["cpus_per_task"], 0.01)
    if opts["gpus_per_task"] != "auto":
        check_number(f"{section}.gpus_per_task", opts["gpus_per_task"], 0)
    if opts["workers_read"] not in ("auto", True, False):
        fail(f"{section}.workers_read", f"{opts['workers_read']!r} is not allowed; auto, true or false")


def _check_metanet(o: dict) -> None:
    names = o["metanets"]
    if not isinstance(names, list) or not names or len(set(names)) != len(names):
        fail("metanet.metanets", f"must be a non-empty list of distinct names from {', '.join(METANETS)}")
    for i, name in enumerate(names):
        check_choice(f"metanet.metanets[{i}]", name, METANETS)
    lrs = o["lrs"]
    if not isinstance(lrs, list) or not lrs or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in lrs):
        fail("metanet.lrs", f"{lrs!r} is not allowed; a non-empty list of learning rates > 0")
    for i, v in enumerate(lrs):
        check_number(f"metanet.lrs[{i}]", v, 1e-12, 10)
    o["lrs"] = sorted({float(v) for v in lrs})
    check_int("metanet.seeds", o["seeds"], 1, 100)
    check_int("metanet.epochs", o["epochs"], 1, 10_000)
    check_int("metanet.batch_size", o["batch_size"], 1)
    check_number("metanet.weight_decay", o["weight_decay"], 0)
    w = o["weights"]
    if not isinstance(w, str) or not (w in ("final", "init") or (w.startswith("epoch_") and w[6:].isdigit())):
        fail("metanet.weights", f"{w!r} is not allowed; final, init or epoch_E (a checkpoint epoch of the zoo)")
    if o["split_seed"] != "stored":
        check_int("metanet.split_seed", o["split_seed"], 0, 2**32 - 1)
    check_choice("metanet.align", o["align"], ("none", "rebasin"))
    v = o["variants"]
    if v is not None and (not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v)):
        fail("metanet.variants", f"{v!r} is not allowed; a list of the zoo's variants, or null for all")
    _check_resources("metanet", o)


def _check_mli(o: dict) -> None:
    check_int("mli.alphas", o["alphas"], 3, 1001)
    check_choice("mli.loss", o["loss"], (*LOSS_MEASUREMENTS, "both"))
    check_int("mli.batch_size", o["batch_size"], 1)
    check_int("mli.networks_per_unit", o["networks_per_unit"], 1)
    check_int("mli.sample", o["sample"], 1, allow_none=True)
    check_int("mli.sample_seed", o["sample_seed"], 0, 2**32 - 1)
    _check_resources("mli", o)


def _check_lmc(o: dict) -> None:
    check_int("lmc.alphas", o["alphas"], 3, 1001)
    if o["alphas"] % 2 == 0:
        fail(
            "lmc.alphas",
            f"{o['alphas']} is not allowed; an odd number, so that the midpoint alpha = 0.5 is on the line",
        )
    check_bool("lmc.rebasin", o["rebasin"])
    check_int("lmc.batch_size", o["batch_size"], 1)
    check_int("lmc.pairs_per_unit", o["pairs_per_unit"], 1)
    check_int("lmc.sample", o["sample"], 1, allow_none=True)
    check_int("lmc.sample_seed", o["sample_seed"], 0, 2**32 - 1)
    _check_resources("lmc", o)


def _check_study(o: dict) -> None:
    stages = o["stages"]
    if stages == "auto":
        return
    if not isinstance(stages, list) or len(set(stages)) != len(stages):
        fail(
            "study.stages",
            f"{stages!r} is not allowed; auto or a list of distinct stages from {', '.join(STUDY_STAGES)}",
        )
    for i, stage in enumerate(stages):
        check_choice(f"study.stages[{i}]", stage, STUDY_STAGES)


def study_stages(cfg: dict) -> list[str]:
    """The analysis stages ``symzoo run`` runs after generate, in order."""
    stages = cfg["study"]["stages"]
    if stages == "auto":
        return ["metanet", "mli", *(["lmc"] if cfg["replicates"] >= 2 else [])]
    return [s for s in STUDY_STAGES if s in stages]


CHECKS = {"metanet": _check_metanet, "mli": _check_mli, "lmc": _check_lmc, "study": _check_study}


def validate_section(section: str, given: Any) -> dict:
    """Defaults merged with ``given`` (a mapping or None), every field checked."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        fail(section, f"must be a mapping with fields {', '.join(ANALYSIS_DEFAULTS[section])}")
    opts = merge(ANALYSIS_DEFAULTS[section], given, section + ".")
    CHECKS[section](opts)
    return opts


def resolve(section: str, *layers: dict | None) -> dict:
    """Options of one stage from successive layers (stored section, a YAML's section, CLI flags); later wins."""
    combined: dict = {}
    for layer in layers:
        combined.update({k: v for k, v in (layer or {}).items() if v is not None})
    return validate_section(section, combined)
