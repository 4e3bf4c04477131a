"""A zoo's README.md: a Hugging Face dataset card that says what the zoo is, how it was made and how to load it.

Shared zoos are only as useful as what travels with them: users of published zoos keep asking for the exact data,
configs and splits. The card carries them: YAML front matter that the Hub's viewer reads, how to load the zoo with
``datasets.load_dataset("parquet", data_files=...)`` (no Hub needed), a column dictionary, the generator config and
its hash, the data fingerprint, the code version and the hardware the zoo was trained on, per-variant symmetries,
counts. It is derived from the manifest and the shards alone, so ``symzoo card`` rewrites the same card for the
same zoo.
"""

from __future__ import annotations

import json

import yaml

from symzoo.zoo.environment import PACKAGES
from symzoo.zoo.info import IMPORTED_KEEPS
from symzoo.zoo.location import Location, atomic_write_bytes
from symzoo.zoo.splits import SPLITS_FILE, stored_source
from symzoo.zoo.store import MODELS, Zoo, open_zoo

CARD = "README.md"
COLUMNS = {
    "model_id": "the network's id, 0..N-1, unique in the zoo",
    "sample": "its hyperparameter sample (variants and replicates of one sample share lr, weight decay, ...)",
    "replicate": "which replicate of the sample (another init seed and data order)",
    "variant": "standard, w_asym (W-Asymmetric) or sigma_asym (sigma-Asymmetric)",
    "seed": "the seed of its initialisation and data order",
    "arch, dataset": "architecture and training data",
    "lr, weight_decay, label_smoothing, epochs": "its training hyperparameters (paper Table 8 distributions)",
    "status": "ok, diverged (a non-finite loss; recorded, weights kept as they were) or failed",
    "reason": "why, where not ok",
    "epochs_done": "epochs trained",
    "train_loss, train_acc, test_loss, test_acc": "plain cross-entropy and accuracy, un-augmented",
    "seconds": "training time",
    "history_train_loss, history_train_acc": "running (augmented, label-smoothed) training loss and accuracy per epoch",
    "weights_init, weights_final, weights_epoch_E": "the flat parameter vector: fixed_size_binary of P little-endian "
    "float32 in the layout's order (np.frombuffer(value, '<f4')); W-Asym fixed entries hold 0 and are rebuilt from "
    "the zoo's seed",
    "checksum_weights_init, checksum_weights_final, ...": "each weight value's row checksum (uint64; "
    "symzoo.zoo.store.row_checksums), checked on every read by symzoo; null where the weights are",
}
BAYES_COLUMNS = {  # a Bayesian zoo's (training.method: elrg), docs/zoo.md
    "test_loss, test_acc, test_ece": "of the posterior predictive (the mean probabilities of the configured number of "
    "posterior samples); train_loss and train_acc: the last epoch's sampled networks on augmented batches",
    "history_train_kl, history_test_loss, history_test_acc, history_test_ece": "per epoch: KL / N and the posterior "
    "predictive's test NLL, accuracy and calibration error",
    "weights_*": "the posterior mean",
    "posterior_final": "the variance parameters (fixed_size_binary of little-endian float32): per linear and conv "
    "layer its log-variances (weight, then bias), then its rank factors; symzoo's Zoo.posterior and bayesian_model "
    "read them",
}


def size_category(n: int) -> str:
    """Hugging Face's size_categories bucket."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def front_matter(zoo: Zoo) -> dict:
    cfg = zoo.config
    configs = [{"config_name": "models", "data_files": [{"split": "zoo", "path": f"{MODELS}/part-*.parquet"}]}]
    configs[0]["default"] = True
    if stored_source(zoo.path) is not None:
        configs.append({"config_name": "splits", "data_files": [{"split": "zoo", "path": SPLITS_FILE}]})
    return {
        "pretty_name": f"symzoo model zoo {cfg['name']}",
        "license": "other",
        "license_name": "same-as-training-data",
        "tags": ["model-zoo", "weight-space-learning", "parameter-symmetries", "symzoo", cfg["model"]["arch"]],
        "task_categories": ["tabular-regression"],
        "size_categories": [size_category(len(zoo.frame))],
        "configs": configs,
    }


def incomplete_note(zoo: Zoo) -> list[str]:
    """A card of an unfinished zoo says so first: its numbers describe the networks trained so far."""
    if zoo.complete:
        return []
    cfg = zoo.config
    planned = cfg["networks"] * cfg["replicates"] * len(cfg["variants"])
    return [
        f"**Incomplete**: {len(zoo.frame)} of {planned} planned networks are stored; every number below is of "
        "those. Finish it with `symzoo generate <its config> --out ZOO` (it resumes).",
        "",
    ]


# How the card loads a zoo with Hugging Face datasets: by its files, which key datasets' cache (ZOO: the zoo's path)
HF_LOAD_MODELS = f'datasets.load_dataset("parquet", data_files={{"zoo": "ZOO/{MODELS}/part-*.parquet"}}, split="zoo")'
HF_LOAD_SPLITS = f'datasets.load_dataset("parquet", data_files={{"zoo": "ZOO/{SPLITS_FILE}"}}, split="zoo")'


def imported_note(cfg: dict) -> list[str]:
    """Where an imported zoo's networks come from, and what its source did not keep."""
    imported = cfg.get("imported")
    if not imported:
        return []
    return [
        f"Imported by `symzoo import {imported['format']}` from `{imported['source']}`: the networks were trained "
        "elsewhere; their weights, metrics and hyperparameters are the source's (kept: "
        f"{IMPORTED_KEEPS.get(imported['format'], 'what the source stored')}); `seed` is -1.",
        "",
    ]


def graph_note(cfg: dict) -> list[str]:
    """How a GNN zoo's networks run: on the zoo's graph, BatchNorm statistics recomputed (they are not stored)."""
    if cfg["model"]["arch"] != "gnn":
        return []
    return [
        f"The networks classify the nodes of one graph ({cfg['data']['name']}; symzoo's docs/paper.md §7). Run one "
        "with `graph = zoo.dataset(); model = zoo.model(model_id, graph=graph); logits = model(graph.features, "
        "graph.aggregate)`: its BatchNorm statistics are recomputed on the whole graph from its weights (they are "
        "not stored; a full-batch network's are a function of its weights). `zoo.evaluate(model_id, split)` takes "
        "train, valid or test nodes.",
        "",
    ]


def inr_note(cfg: dict) -> list[str]:
    """What an INR zoo's networks are: one SIREN per image, and how to run one."""
    if cfg.get("task") != "inr":
        return []
    return [
        f"Each network is an implicit neural representation of one {cfg['data']['name']} image (a SIREN: pixel "
        "coordinates in [-1, 1] to intensity in [0, 1]; symzoo's docs/zoo.md, INR zoos). `image_split`, "
        "`image_index` and `image_class` name the image, `psnr` the fit. Run one with `zoo.model(model_id)"
        "(symzoo.zoo.inr_fit.pixel_grid(H, W))`; the mean test accuracy column below is the mean PSNR (dB).",
        "",
    ]


def card_text(zoo: Zoo) -> str:
    """The card's Markdown, front matter first."""
    cfg, manifest, frame = zoo.config, zoo.manifest, zoo.frame
    env = manifest.get("environment") or {}
    example_variant = "w_asym" if "w_asym" in cfg["variants"] else cfg["variants"][0]  # one this zoo has
    lines = ["---", yaml.safe_dump(front_matter(zoo), sort_keys=False).rstrip(), "---", ""]
    lines += [
        f"# {cfg['name']}: {len(frame)} trained {cfg['model']['arch']} networks on {cfg['data']['name']}",
        "",
        f"A model zoo made by symzoo {manifest.get('symzoo_version', '?')} for studying parameter symmetries "
        '(Lim et al., "The Empirical Impact of Neural Parameter Symmetries, or Lack Thereof"): '
        f"{cfg['networks']} hyperparameter samples x {cfg['replicates']} replicate(s) x variants "
        f"{', '.join(cfg['variants'])}. One Parquet row per network in `{MODELS}/`, its metadata and its flat "
        f"weights; `{SPLITS_FILE}` assigns each network to train / val / test, every variant and replicate of a "
        "sample in one part. The training data's own terms apply to the weights.",
        "",
        *imported_note(cfg),
        *graph_note(cfg),
        *inr_note(cfg),
        *incomplete_note(zoo),
        "## Load it",
        "",
        "```python",
        "import pandas as pd",
        f'frame = pd.read_parquet("ZOO/{MODELS}", columns=["model_id", "variant", "lr", "test_acc"])',
        "",
        "from symzoo.zoo import open_zoo  # pip install symzoo",
        'zoo = open_zoo("ZOO")',
        f'weights = zoo.weights("final", variant="{example_variant}", trainable_only=True)  # (N, trainable) float32',
        "",
        "from symzoo.zoo.dataset import WeightDataset  # a torch Dataset: flat, layers, nfn or stats views",
        'train = WeightDataset(zoo, view="flat", split="train")',
        "",
        "import datasets  # Hugging Face, no Hub needed",
        f"models = {HF_LOAD_MODELS}",
        f"splits = {HF_LOAD_SPLITS}",
        "```",
        "",
        'Name the files as above rather than the folder (`datasets.load_dataset("ZOO", "models")`, which reads '
        "this card's `configs`): `datasets` caches a folder's build under the folder's name and the card's "
        "configs, the same for every zoo, so a second zoo in a folder of the same name would be served the first "
        "one's rows from the cache (seen with datasets 5.2). Named files key the cache on the files themselves.",
        "",
        "symzoo checks every weight row it reads against its stored checksum, and `symzoo verify ZOO` checks every "
        "shard against the manifest's sha256. pandas, Polars, DuckDB and Hugging Face `datasets` do not verify "
        "Parquet's page checksums by default: read with `pyarrow.parquet.read_table(path, "
        "page_checksum_verification=True)` (every page carries a CRC) when a flipped bit must not pass unseen.",
        "",
        "## Contents",
        "",
        "| variant | networks | ok | diverged | failed | mean test accuracy | parameters | trainable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, layout in zoo.layouts.items():
        g = frame[frame["variant"] == variant]
        counts = g["status"].value_counts()
        acc = g.loc[g["status"] == "ok", "psnr" if cfg.get("task") == "inr" else "test_acc"].mean()
        lines.append(
            f"| {variant} | {len(g)} | {counts.get('ok', 0)} | {counts.get('diverged', 0)} | {counts.get('failed', 0)} "
            f"| {acc:.4f} | {layout.size:,} | {layout.n_trainable:,} |"
        )
    split_counts = zoo.splits("stored")["split"].value_counts()
    lines += [
        "",
        f"Split ({stored_source(zoo.path) or 'seed 0, not stored'}): "
        + ", ".join(f"{split_counts.get(s, 0)} {s}" for s in ("train", "val", "test"))
        + " networks.",
        "",
        "## Columns",
        "",
        "| column | meaning |",
        "|---|---|",
        *(f"| {name} | {meaning} |" for name, meaning in (COLUMNS | (BAYES_COLUMNS if zoo.bayesian else {})).items()),
        "",
        "Each variant's parameter layout (tensor names, shapes, offsets, which entries are trainable) is in "
        "`manifest.json` (`layouts`), and so is each variant's symmetries (`symmetries`):",
        "",
    ]
    for variant, sym in zoo.symmetries.items():
        scaling = "is one" if sym["scaling_is_symmetry"] else "is not (its fixed entries cannot scale)"
        lines.append(
            f"- {variant}: hidden-unit permutations {'are' if sym['permutation_is_symmetry'] else 'are not'} "
            f"symmetries; positive scaling of each of its {len(sym['scale_groups'])} layers that a norm follows "
            f"{scaling}"
        )
    versions = {name: env[name] for name in ("python", *PACKAGES) if env.get(name)}
    lines += [
        "",
        "## How it was made",
        "",
        f"- config hash `{manifest['config_hash']}`; data fingerprint `{manifest['dataset_fingerprint']}` "
        f"({cfg['data']['name']}, inputs {tuple(manifest['in_shape'])}, {manifest['num_classes']} classes)",
        f"- code: symzoo {manifest.get('symzoo_version', '?')}, git commit {env.get('git_commit') or 'unknown'}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- hardware where generation started: {env.get('cpu', 'unknown')} ({env.get('cpus', '?')} CPUs)"
        + (f", GPUs {', '.join(env['gpus'])}" if env.get("gpus") else ", no GPU"),
        "- the same config and seed give the same zoo bit for bit on the same CPU model, torch build and "
        "`cpus_per_task`; another CPU gives another (equally valid) zoo",
        "",
        "The generator config (`symzoo generate config.yaml --out ZOO` with this file rebuilds the zoo):",
        "",
        "```yaml",
        yaml.safe_dump(json.loads(json.dumps(cfg)), sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(zoo: Zoo | str | Location) -> Location:
    """``ZOO/README.md`` from the zoo's manifest and shards."""
    zoo = zoo if isinstance(zoo, Zoo) else open_zoo(zoo, verify=False)
    path = zoo.path / CARD
    atomic_write_bytes(path, card_text(zoo).encode())
    return path
