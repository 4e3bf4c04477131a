"""Zoo configs: YAML in, a validated and fully resolved dict out, or one line naming the bad field.

The resolved config (defaults filled in) is what the manifest records and hashes; the hash leaves out the
execution resources, which change where and how fast networks train but not which networks a zoo holds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from symzoo.errors import ConfigError
from symzoo.zoo.data import DATASETS, SCALINGS
from symzoo.zoo.fields import check_bool, check_choice, check_int, check_number, fail, merge
from symzoo.zoo.graph import GRAPH_DATASETS, GRAPH_DEFAULTS, is_graph_dataset
from symzoo.zoo.location import Location, location
from symzoo.zoo.models import ACTIVATIONS, ARCHS, GATES, MLP_ARCHS, VARIANTS, ConvNetShape
from symzoo.zoo.plan import DISTRIBUTIONS, HPARAM_NAMES, PAPER_TABLE8
from symzoo.zoo.train import SCHEDULES, TRAINING_METHODS

DEFAULTS: dict[str, Any] = {
    "name": "zoo",
    "seed": 0,
    "data": {
        "name": None,
        "size": None,
        "train_per_class": None,
        "test_per_class": None,
        "subset_seed": 0,
        "download": False,
        "root": None,
        # standardize: per-channel mean and std of the training images; symmetric: x / 127.5 - 1, the Small CNN
        # Zoo's input scaling
        "scaling": "standardize",
        # true: colour images as one luma channel (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B), e.g. CIFAR-10 INRs
        "grayscale": False,
        # a graph data set's construction (gnn zoos; zoo/graph.py): null for images, filled in for graphs
        "graph": None,
    },
    # hidden: an MLP's units per layer (null: 512 x width, 256 for bnn_mlp); depth: an MLP's linear layers (null: 4,
    # 8 for bnn_mlp); gate_std: sigma-Asym's F std (null: the authors' default)
    # kappa: W-Asym fixed entries' scale in every layer (null: the architecture's); fixed_head: false leaves the
    # last layer standard
    "model": {
        "arch": "resnet8",
        "width": 1,
        "gates": "network",
        "hidden": None,
        "depth": None,
        "gate_std": None,
        "kappa": None,
        "fixed_head": True,
        "fixed_structure": None,  # W-Asym masks and fixed values stored here (an imported zoo's own)
        "activation": None,  # small_cnn, convnet: relu (null), tanh, leakyrelu, sigmoid, silu or gelu
        "layers": None,  # convnet: its layers as a short spec (zoo/models.py ConvNetShape), e.g. c8k5p,c6k5p,flatten,20
        "w_asym_gates": None,  # gnn: whether W-Asym also gates with FiGLU, as the authors' W-Asym GNN (null: true)
        "output_offset": None,  # siren: added to every output (null: 0.5, DWSNets' INRs)
    },
    # classify: networks trained on the data set's labels; inr: each network (a SIREN) fits one image of it
    "task": None,
    "variants": ["standard", "w_asym"],
    "networks": None,
    "replicates": 1,
    "hyperparameters": PAPER_TABLE8,
    "training": {
        "batch_size": 512,
        "warmup_epochs": 5.0,
        "schedule": "triangular",
        "optimizer": "adamw",
        "momentum": 0.9,
        "augment": {"flip": True, "translate": 2, "cutout": 4},
        "amp": True,
        "checkpoint_epochs": [],
        "pack_size": "auto",
        "compile": "auto",
        # true: every network of replicate r shares one seed (sample 0's): one init for all (INR zoos: every image
        # fitted from the same init), and for classifiers the same data order too; false: a seed per sample
        "shared_seed": False,
        # standard: the zoo recipe; elrg: variational inference with a diagonal + low-rank Gaussian posterior
        # (the paper's Bayesian networks, docs/paper.md §6; zoo/bayes_train.py)
        "method": "standard",
        "elrg": {
            "rank": 4,
            "prior_precision": 0.01,
            "scale_prior": True,  # prior precision x layer width, as the authors' code
            "init_log_var": -10.0,
            "learn_diag": False,
            "test_samples": 25,
            "kl_copies": 8,  # KL / N with N = training images x this (the augmented copies of an image)
        },
    },
    # an imported zoo (`symzoo import`): its source format and folder, and each sample's hyperparameters as the
    # source recorded them; its plan comes from these, not from sampling
    "imported": None,
    "execution": {
        "networks_per_shard": 16,
        "cpus_per_task": 1,
        "gpus_per_task": 0,
        "max_retries": 3,
        "workers_write": "auto",  # auto: workers write their own shards where they share the driver's disk
    },
}
REQUIRED = ("data.name", "networks")
# Fields that change where and how fast networks train, not what they are: left out of the config hash.
RESOURCE_FIELDS = ("cpus_per_task", "gpus_per_task", "max_retries", "workers_write")


def _check_hyperparameters(hp: Any) -> dict:
    if not isinstance(hp, dict):
        fail("hyperparameters", f"must be a mapping with fields {', '.join(HPARAM_NAMES)}")
    for name in hp:
        if name not in HPARAM_NAMES:
            fail(f"hyperparameters.{name}", f"unknown field; allowed: {', '.join(HPARAM_NAMES)}")
    out = {**PAPER_TABLE8, **hp}
    for name, dist in out.items():
        path = f"hyperparameters.{name}"
        if isinstance(dist, (int, float)) and not isinstance(dist, bool):
            if name == "epochs":
                check_int(path, dist, 1, 100_000)  # 2.5 epochs would silently train 2
            elif name == "label_smoothing":  # a probability mass moved off the true class: 1 leaves none on it
                check_number(path, dist, 0, 0.999)
            else:
                check_number(path, dist, 0, float("inf"))  # any finite value: tests diverge on purpose at 1e30
            continue
        if not (isinstance(dist, dict) and len(dist) == 1):
            fail(path, f"{dist!r} is not allowed; a number or one of {{{' | '.join(DISTRIBUTIONS)}: [low, high]}}")
        ((kind, bounds),) = dist.items()
        check_choice(f"{path} distribution", kind, DISTRIBUTIONS)
        ok = isinstance(bounds, list) and len(bounds) == 2
        ok = ok and all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
        if not ok or bounds[0] > bounds[1] or bounds[0] < 0 or (kind == "log_uniform" and bounds[0] <= 0):
            fail(
                path, f"bounds {bounds!r} are not allowed; [low, high] with 0 <= low <= high (low > 0 for log_uniform)"
            )
        if name == "epochs" and (kind != "randint" or bounds[0] < 1 or bounds[1] > 100_000):
            fail(path, "epochs takes a whole number or randint: [low >= 1, high <= 100000]")
        if name == "label_smoothing" and bounds[1] >= 1:
            fail(path, f"bounds {bounds!r} are not allowed; label smoothing lies in [0, 1)")
    return out


def validate(raw: Any, sections: Mapping[str, Callable[[Any], dict]] | None = None) -> dict:
    """Resolve defaults and check every field; raises ``ConfigError`` on the first problem.

    ``sections`` are the stage sections a study config may hold beside the zoo's fields (``metanet:``, ``mli:``,
    ...), each with the function that checks it and fills in its defaults (``pipelines.registry`` knows them).
    Without them, as when a stored manifest is opened, any extra top-level mapping is kept as given: the zoo does
    not know its stages, and a stage checks its own section when it resolves its options."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a YAML mapping; see configs/digits_demo.yaml for an example")
    if sections is None:
        sections = {k: _unchecked_section for k in raw if k not in DEFAULTS and isinstance(raw[k], (dict, type(None)))}
    cfg = merge({**DEFAULTS, **dict.fromkeys(sections)}, raw)
    for dotted in REQUIRED:
        section, _, key = dotted.partition(".")
        value = cfg[section][key] if key else cfg[section]
        if value is None:
            fail(dotted, "is required")
    check_int("seed", cfg["seed"], 0, 2**63 - 1)
    name = cfg["name"]
    if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name in (".", ".."):
        fail("name", f"{name!r} is not allowed; a non-empty name without path separators (it names a folder)")
    d = cfg["data"]
    check_choice("data.name", d["name"], DATASETS + GRAPH_DATASETS)
    check_int("data.size", d["size"], 4, 256, allow_none=True)
    check_int("data.train_per_class", d["train_per_class"], 1, allow_none=True)
    check_int("data.test_per_class", d["test_per_class"], 1, allow_none=True)
    check_int("data.subset_seed", d["subset_seed"], 0, 2**32 - 1)
    check_bool("data.download", d["download"])
    if d["root"] is not None and not isinstance(d["root"], str):
        fail("data.root", f"{d['root']!r} is not allowed; a folder path (a string), or null for the default")
    check_choice("data.scaling", d["scaling"], SCALINGS)
    check_bool("data.grayscale", d["grayscale"])
    check_choice("model.arch", cfg["model"]["arch"], ARCHS)
    _check_graph(cfg)
    _check_inr(cfg)
    arch = cfg["model"]["arch"]
    if cfg["model"]["activation"] is not None:
        check_choice("model.activation", cfg["model"]["activation"], ACTIVATIONS)
        if arch not in ("small_cnn", "convnet"):
            fail("model.activation", "sets small_cnn's and convnet's activation; the others have their paper's")
    if arch in ("small_cnn", "convnet") and cfg["variants"] != ["standard"]:
        fail("variants", f"{arch} has the standard variant only; variants: [standard]")
    _check_convnet(cfg)
    check_int("model.width", cfg["model"]["width"], 1, 64)
    check_choice("model.gates", cfg["model"]["gates"], GATES)
    check_int("model.hidden", cfg["model"]["hidden"], 8, 8192, allow_none=True)
    check_int("model.depth", cfg["model"]["depth"], 2, 256, allow_none=True)
    if cfg["model"]["gate_std"] is not None:
        check_number("model.gate_std", cfg["model"]["gate_std"], 1e-8, 100)
    if cfg["model"]["kappa"] is not None:
        check_number("model.kappa", cfg["model"]["kappa"], 1e-8, 100)
    check_bool("model.fixed_head", cfg["model"]["fixed_head"])
    _check_fixed_structure(cfg["model"]["fixed_structure"])
    _check_imported(cfg)
    for key in ("hidden", "depth"):
        if cfg["model"][key] is not None and cfg["model"]["arch"] not in (*MLP_ARCHS, "gnn", "siren"):
            fail(f"model.{key}", "sets an MLP's or GNN's shape; ResNets take model.width (x 16/32/64 channels)")
    v = cfg["variants"]
    if not isinstance(v, list) or not v or len(set(v)) != len(v):
        fail("variants", f"must be a non-empty list of distinct names from {', '.join(VARIANTS)}")
    for i, name in enumerate(v):
        check_choice(f"variants[{i}]", name, VARIANTS)
    check_int("networks", cfg["networks"], 1, 1_000_000)
    check_int("replicates", cfg["replicates"], 1, 1000)
    if cfg["networks"] * cfg["replicates"] > 1_000_000:
        fail("replicates", f"{cfg['networks']} networks x {cfg['replicates']} replicates is over a million per variant")
    cfg["hyperparameters"] = _check_hyperparameters(cfg["hyperparameters"])
    t = cfg["training"]
    check_int("training.batch_size", t["batch_size"], 1)
    check_number("training.warmup_epochs", t["warmup_epochs"], 0, 100_000)
    check_choice("training.schedule", t["schedule"], SCHEDULES)
    check_bool("training.shared_seed", t["shared_seed"])
    check_choice("training.optimizer", t["optimizer"], ("adamw", "sgd"))
    check_number("training.momentum", t["momentum"], 0, 1)
    check_bool("training.amp", t["amp"])
    if t["compile"] != "auto" and not isinstance(t["compile"], bool):
        fail("training.compile", f"{t['compile']!r} is not allowed; auto, true or false")
    pack = t["pack_size"]
    if pack != "auto" and (isinstance(pack, bool) or not isinstance(pack, int) or not 1 <= pack <= 4096):
        fail("training.pack_size", f"{pack!r} is not allowed; auto or an integer in [1, 4096]")
    if t["pack_size"] not in ("auto", 1) and t["optimizer"] != "adamw":
        fail("training.pack_size", "packed training implements adamw only; set pack_size: 1 for sgd")
    check_bool("training.augment.flip", t["augment"]["flip"])
    check_int("training.augment.translate", t["augment"]["translate"], 0, 16)
    check_int("training.augment.cutout", t["augment"]["cutout"], 0, 64)
    check_choice("training.method", t["method"], TRAINING_METHODS)
    _check_elrg(t)
    ck = t["checkpoint_epochs"]
    if not isinstance(ck, list) or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in ck):
        fail("training.checkpoint_epochs", f"{ck!r} is not allowed; a list of epoch numbers >= 1")
    t["checkpoint_epochs"] = sorted(set(ck))
    epochs = cfg["hyperparameters"]["epochs"]
    longest = epochs if isinstance(epochs, (int, float)) else epochs["randint"][1]
    if cfg["imported"] is not None:
        longest = max(int(row[3]) for row in cfg["imported"]["hparams"])
    if t["checkpoint_epochs"] and t["checkpoint_epochs"][-1] > longest:
        fail(
            "training.checkpoint_epochs",
            f"epoch {t['checkpoint_epochs'][-1]} is after the longest training ({longest} epochs); no network has it",
        )
    e = cfg["execution"]
    check_int("execution.networks_per_shard", e["networks_per_shard"], 1, 100_000)
    check_number("execution.cpus_per_task", e["cpus_per_task"], 0.01, 1024)
    check_number("execution.gpus_per_task", e["gpus_per_task"], 0, 64)
    check_int("execution.max_retries", e["max_retries"], 0, 100)
    if e["workers_write"] not in ("auto", True, False):
        fail("execution.workers_write", f"{e['workers_write']!r} is not allowed; auto, true or false")
    for section, check in sections.items():
        cfg[section] = check(cfg[section])
    return cfg


TASKS = ("classify", "inr")


def _check_inr(cfg: dict) -> None:
    """An INR zoo (``task: inr``) fits SIRENs to single-channel images with one fixed recipe (its hyperparameters:
    ``lr``, ``weight_decay`` and ``epochs``, the fitting steps, are constants; every pixel every step)."""
    task = cfg["task"] or "classify"
    check_choice("task", task, TASKS)
    siren = cfg["model"]["arch"] == "siren"
    if task == "inr" and not siren:
        fail("task", "inr zoos fit SIRENs; set model.arch: siren")
    if siren and task != "inr":
        fail("model.arch", "siren is an implicit neural representation; set task: inr")
    if cfg["model"]["output_offset"] is not None:
        check_number("model.output_offset", cfg["model"]["output_offset"], -10, 10)
        if not siren:
            fail("model.output_offset", "applies to siren only")
    if task != "inr" or cfg["imported"] is not None:  # an imported zoo's recipe is its source's (imported.hparams)
        return
    hp = cfg["hyperparameters"]
    for name in ("lr", "weight_decay", "label_smoothing", "epochs"):
        if isinstance(hp[name], dict):
            fail(f"hyperparameters.{name}", "an INR zoo fits every image with one recipe: give a number")
    if hp["label_smoothing"] != 0:
        fail("hyperparameters.label_smoothing", "an INR fits intensities (mean squared error): 0")
    t = cfg["training"]
    if t["method"] != "standard" or t["checkpoint_epochs"]:
        fail("training", "an INR zoo stores initial and fitted weights only (method standard, no checkpoint_epochs)")


def _check_graph(cfg: dict) -> None:
    """A gnn zoo trains on a graph data set and nothing else does; a graph's construction fields, filled in."""
    d, arch = cfg["data"], cfg["model"]["arch"]
    graph = is_graph_dataset(d["name"])
    if graph != (arch == "gnn"):
        if graph:
            fail("data.name", f"{d['name']} is a graph; only model.arch gnn trains on graphs")
        fail("data.name", f"model.arch gnn trains on a graph; choose one of {', '.join(GRAPH_DATASETS)}")
    if cfg["model"]["w_asym_gates"] is not None:
        check_bool("model.w_asym_gates", cfg["model"]["w_asym_gates"])
        if arch != "gnn":
            fail("model.w_asym_gates", "applies to gnn only (the authors' W-Asym GNN also gates with FiGLU)")
    if not graph:
        if d["graph"] is not None:
            fail("data.graph", f"describes a graph's construction; {d['name']} is not a graph (remove the field)")
        return
    for key in ("size", "train_per_class", "test_per_class"):
        if d[key] is not None:
            fail(f"data.{key}", "applies to image data sets; a graph takes data.graph.nodes_per_class")
    given = d["graph"] or {}
    if not isinstance(given, dict):
        fail("data.graph", f"must be a mapping with fields {', '.join(GRAPH_DEFAULTS)}")
    d["graph"] = merge(GRAPH_DEFAULTS, given, "data.graph.")
    check_int("data.graph.nodes_per_class", d["graph"]["nodes_per_class"], 2, allow_none=True)
    check_int("data.graph.neighbours", d["graph"]["neighbours"], 1, 1000)
    check_int("data.graph.features", d["graph"]["features"], 1, 4096)
    t = cfg["training"]
    if t["pack_size"] not in ("auto", 1):
        fail("training.pack_size", "gnn networks train one at a time (full-batch on the graph); auto or 1")
    if t["method"] != "standard":
        fail("training.method", "gnn zoos train with the standard method (full-batch; no Bayesian GNN is defined)")


def _check_fixed_structure(structure: Any) -> None:
    if structure is None:
        return
    if not isinstance(structure, dict) or not structure:
        fail("model.fixed_structure", "must map weight names to their stored masks and fixed values")
    for name, entry in structure.items():
        if not isinstance(entry, dict) or set(entry) != {"shape", "trainable_bits", "fixed_values"}:
            fail(f"model.fixed_structure.{name}", "must hold shape, trainable_bits and fixed_values")


IMPORTED_FIELDS = ("format", "source", "hparams")


def _check_convnet(cfg: dict) -> None:
    """A convnet's layers parse (zoo/models.py ConvNetShape); only a convnet has them."""
    layers, arch = cfg["model"]["layers"], cfg["model"]["arch"]
    if layers is None:
        if arch == "convnet":
            fail("model.layers", "is required for a convnet, e.g. c8k5p,c6k5p,c4k2,flatten,20 (docs/zoo.md)")
        return
    if arch != "convnet":
        fail("model.layers", "describes a convnet's layers; the other architectures have fixed ones")
    if not isinstance(layers, str):
        fail("model.layers", f"{layers!r} is not allowed; a spec such as c8k5p,c6k5p,c4k2,flatten,20")
    try:
        ConvNetShape.parse(layers)
    except ValueError as e:
        fail("model.layers", str(e))


def _check_imported(cfg: dict) -> None:
    """An imported zoo's provenance and per-sample hyperparameters (one [lr, weight_decay, label_smoothing,
    epochs] row per sample, in sample order)."""
    imported = cfg["imported"]
    if imported is None:
        return
    if not isinstance(imported, dict):
        fail("imported", "must be a mapping of format, source and hparams (written by `symzoo import`)")
    for name in IMPORTED_FIELDS:
        if name not in imported:
            fail(f"imported.{name}", "is required")
    for name in ("format", "source"):
        if not isinstance(imported[name], str) or not imported[name]:
            fail(f"imported.{name}", f"{imported[name]!r} is not allowed; a non-empty string")
    rows = imported["hparams"]
    if not isinstance(rows, list) or len(rows) != cfg["networks"]:
        fail("imported.hparams", f"must hold one row per sample ({cfg['networks']})")
    for i, row in enumerate(rows):
        numbers = isinstance(row, list) and len(row) == len(HPARAM_NAMES)
        numbers = numbers and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row)
        if not numbers or not float(row[3]).is_integer():
            fail(f"imported.hparams[{i}]", f"{row!r} is not allowed; [lr, weight_decay, label_smoothing, epochs]")
    if cfg["replicates"] != 1:
        fail("replicates", "an imported zoo has one network per sample and variant; replicates: 1")


def _check_elrg(t: dict) -> None:
    """The Bayesian recipe's fields; it trains one network at a time (no packed variational training yet)."""
    e = t["elrg"]
    if not isinstance(e, dict):
        fail("training.elrg", "must be a mapping of rank, prior_precision, scale_prior, init_log_var, ...")
    for name in e:
        if name not in DEFAULTS["training"]["elrg"]:
            fail(f"training.elrg.{name}", f"unknown field; allowed: {', '.join(DEFAULTS['training']['elrg'])}")
    check_int("training.elrg.rank", e["rank"], 0, 64)
    check_number("training.elrg.prior_precision", e["prior_precision"], 1e-12, 1e12)
    check_bool("training.elrg.scale_prior", e["scale_prior"])
    check_number("training.elrg.init_log_var", e["init_log_var"], -50, 5)
    check_bool("training.elrg.learn_diag", e["learn_diag"])
    check_int("training.elrg.test_samples", e["test_samples"], 1, 10_000)
    check_int("training.elrg.kl_copies", e["kl_copies"], 1, 10_000)
    if t["method"] == "elrg" and t["pack_size"] not in ("auto", 1):
        fail("training.pack_size", "variational (elrg) training runs one network at a time; set pack_size: 1")


def _unchecked_section(given: Any) -> Any:
    return given


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error, not "the last one wins"."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ConfigError(
                    f"config key at line {key_node.start_mark.line + 1} is a {type(key).__name__}, not a name; "
                    "write keys as plain names"
                )
            if key in seen:
                raise ConfigError(
                    f"config key '{key}' appears twice (line {key_node.start_mark.line + 1}); keep one of them"
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | Location) -> dict:
    """A validated zoo config from a YAML file, local or on an object store (``s3://``, ``gs://``); stage sections
    are kept as given (``pipelines.registry.load_study_config`` checks them too)."""
    return validate(read_yaml(path))


def read_yaml(path: str | Location) -> Any:
    """A config file's YAML, each problem (missing, not text, bad syntax, a key twice) one ``ConfigError`` line."""
    path = location(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass a YAML file such as configs/digits_demo.yaml")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text (not UTF-8); pass a YAML file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    return raw


# Bumped whenever the same config would put networks into different shards; a zoo begun under another plan
# then refuses to resume (its shards would not line up) instead of duplicating or dropping networks.
PLAN_VERSION = 2  # 2: shards grouped by epoch count


def config_hash(cfg: dict) -> str:
    """Hash of everything that decides a zoo's content and shard plan (execution resources excluded)."""
    content = copy.deepcopy(cfg)
    for section in set(content) - set(DEFAULTS):  # how a zoo is analysed (its stage sections) is not what it holds
        content.pop(section)
    content["plan_version"] = PLAN_VERSION
    for key in RESOURCE_FIELDS:
        content["execution"].pop(key, None)
    if content["data"].get("scaling", "standardize") == "standardize":
        content["data"].pop("scaling", None)
    if content["data"].get("graph") is None:  # zoos from before graphs
        content["data"].pop("graph", None)
    if not content["data"].get("grayscale", False):  # and before grayscale images
        content["data"].pop("grayscale", None)
    if not content["training"].get("shared_seed", False):  # and before shared seeds
        content["training"].pop("shared_seed", None)
    if content.get("task") is None:  # and zoos from before INR zoos
        content.pop("task", None)
    older = ("hidden", "depth", "gate_std", "kappa", "activation", "w_asym_gates", "output_offset", "layers")
    for key in older:  # zoos from before each of these keys
        if content["model"].get(key) is None:
            content["model"].pop(key, None)
    if content["model"].get("fixed_head", True) is True:
        content["model"].pop("fixed_head", None)
    if content["model"].get("fixed_structure") is None:  # and from before imported zoos
        content["model"].pop("fixed_structure", None)
    if content.get("imported") is None:
        content.pop("imported", None)
    if content["training"].get("method", "standard") == "standard":  # and zoos from before Bayesian training
        content["training"].pop("method", None)
        content["training"].pop("elrg", None)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
