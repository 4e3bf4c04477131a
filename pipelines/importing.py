"""``symzoo import``: another project's zoo as an ordinary symzoo zoo, converted on Ray one shard per work unit
(written where it runs, resumable after a kill, with progress), exactly as ``symzoo generate`` writes a zoo.

Formats (docs/zoo.md, "Bring your own zoo"): ``authors``, the paper's own ResNet8 zoo (``zoo/formats/authors.py``);
``small-cnn-zoo`` (``zoo/formats/small_cnn_zoo.py``); ``dwsnets``, DWSNets' INR layout (``zoo/formats/dwsnets.py``);
``ray-tune``, Ray Tune trial folders as the ModelZoos store them (``zoo/formats/ray_tune.py``).
The imported zoo's config records the format, the source folder and each sample's hyperparameters
(``imported``), so its plan, its config hash and its rerun follow from the manifest as a generated zoo's do.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from symzoo.errors import ZooError
from symzoo.pipelines.generate import ShardJob, _generate_locked, check_not_inside_a_zoo, written_or_table
from symzoo.pipelines.shard import layouts_for
from symzoo.pipelines.units import WorkUnit
from symzoo.zoo.config import config_hash, validate
from symzoo.zoo.formats import FORMATS, authors, ray_tune, small_cnn_zoo
from symzoo.zoo.layers import encode_fixed_structure
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.location import Location, location
from symzoo.zoo.lock import directory_lock
from symzoo.zoo.plan import NetSpec, plan_configured
from symzoo.zoo.sources import load_configured
from symzoo.zoo.splits import write_splits
from symzoo.zoo.store import rows_to_table, shard_path

SOURCE_METADATA = "source.parquet"  # an imported zoo's per-network metadata beyond symzoo's columns
NETWORKS_PER_SHARD = 64


def import_zoo(
    fmt: str,
    source: str | Path,
    out: str | Location,
    data: str | None = None,
    data_root: str | None = None,
    hparams: str | Path | None = None,
    address: str | None = None,
    show_progress: bool = True,
    networks_per_shard: int = NETWORKS_PER_SHARD,
    activation: str | None = None,
    data_size: int | None = None,
    arch: str | None = None,
    checkpoint_every: int | None = None,
):
    """Import ``source`` (a folder in format ``fmt``) into the zoo ``out``; a rerun finishes what a killed one left.
    ``activation`` picks the networks of one activation (small-cnn-zoo: relu by default; ray-tune: where the
    trials mix several); ``arch`` (ray-tune) names their architecture where their params.json does not."""
    if fmt not in FORMATS:
        raise ZooError(f"unknown zoo format {fmt!r}; choose one of {', '.join(FORMATS)}")
    root = Path(source).expanduser().resolve()
    if not (root.is_dir() or (fmt == "dwsnets" and root.is_file())):
        what = "the folder or the splits JSON" if fmt == "dwsnets" else "the folder"
        raise ZooError(f"{root} is not a folder; pass {what} that holds the {fmt} zoo")
    metadata = None  # the source's own columns per network, where it has more than symzoo's
    splits = None  # the source's own train / val / test, where it has one
    if fmt == "authors":
        raw, sources = authors_config(root, data or "cifar10", data_root, hparams)
    elif fmt == "dwsnets":
        raw, sources, splits = dwsnets_config(root, data, data_root)
    elif fmt == "ray-tune":
        raw, sources, metadata = ray_tune_config(root, data, data_root, arch, activation, data_size, checkpoint_every)
    else:
        raw, sources, metadata = small_cnn_config(root, data, data_root, activation or "relu")
    if data_size is not None or "size" not in raw["data"]:  # a symzoo export's data section keeps its own
        raw["data"]["size"] = data_size
    raw["execution"] = {"networks_per_shard": networks_per_shard}
    dataset = load_configured(validate(raw)["data"])  # before anything is written: missing data fails here
    if fmt == "small-cnn-zoo":
        channels = next(shape[2] for name, _, _, shape in sources["layout"] if name == "conv1.weight")
        if dataset.in_shape[0] != channels:
            raise ZooError(
                f"--data {raw['data']['name']} has {dataset.in_shape[0]} channels, the zoo's networks take {channels}; "
                "pass a data set of their input's shape"
            )
    if fmt == "authors" and "w_asym" in sources:
        template = validate(raw)
        layout = layouts_for({**template, "variants": ["standard"]}, dataset)["standard"]  # names and shapes
        raw["model"]["fixed_structure"] = zoo_structure({i: Path(p) for i, p in sources["w_asym"].items()}, layout)
    cfg = validate(raw)
    out = location(out)
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file; pass a new or existing zoo directory")
    check_not_inside_a_zoo(out)
    layouts = layouts_for(cfg, dataset)
    units = plan_units(cfg, out)
    job = ShardJob(import_shard, sources, "imported")
    with directory_lock(out, "symzoo import"):
        report = _generate_locked(cfg, out, dataset, layouts, units, show_progress, address, job)
        if metadata is not None:  # after the manifest check: never into another zoo's folder
            write_source_metadata(out, metadata)
        if splits is not None:
            write_splits(out, splits, f"file {sources['splits_file']}")
        return report


def authors_config(root: Path, data: str, data_root: str | None, hparams: str | Path | None) -> tuple[dict, dict]:
    """The imported zoo's config and the files each task reads: ``{variant: {index: path}}``."""
    found = authors.find_networks(root)
    for skipped in authors.unsupported_types(root):
        print(f"symzoo: warning: not importing {skipped}", file=sys.stderr)
    hparams_path = Path(hparams) if hparams else root / "hparams.csv"
    rows = authors.read_hparams(hparams_path)
    beyond = sorted(i for files in found.values() for i in files if i >= len(rows))
    if beyond:
        raise ZooError(f"{hparams_path} has {len(rows)} rows but {root} holds index {beyond[0]}; pass its hparams.csv")
    raw = {
        "name": root.name or "imported",
        "data": {"name": data, "root": data_root},
        "model": {"arch": "resnet8"},
        "variants": [v for v in ("standard", "w_asym") if v in found],
        "networks": len(rows),
        "imported": {"format": "authors", "source": str(root), "hparams": rows},
    }
    return raw, {v: {i: str(p) for i, p in files.items()} for v, files in found.items()}


def small_cnn_config(root: Path, data: str | None, data_root: str | None, activation: str):
    """The imported zoo's config (one network per ``modeldir`` of the chosen activation, its checkpoints as
    ``epoch_E`` weights), what each task reads (the folder, the layout, each sample's rows by step and its final
    metrics) and the source's rows at each network's final step, for ``source.parquet``."""
    metrics = small_cnn_zoo.read_metrics(root)
    weights = small_cnn_zoo.open_weights(root, len(metrics))
    layout_rows = small_cnn_zoo.read_layout(root, weights.shape[1])
    chosen = metrics[metrics["config.activation"].astype(str) == activation]
    others = metrics.loc[metrics["config.activation"].astype(str) != activation].groupby("config.activation")
    for other, group in others:
        print(
            f"symzoo: warning: not importing {group['modeldir'].nunique()} networks with activation {other} "
            f"(a zoo has one architecture): import them into another zoo with --activation {other}",
            file=sys.stderr,
        )
    if chosen.empty:
        raise ZooError(f"{root} has no network with activation {activation!r}; pass --activation with one it has")
    if data is None:
        named = str(chosen["config.dataset"].iloc[0]) if "config.dataset" in chosen else ""
        if named != "fashion_mnist":  # symzoo loads CIFAR-10 in colour, the zoo's CIFAR-10-GS networks take grey
            raise ZooError(f"pass --data: the zoo's data set ({named or 'not recorded'}) is none symzoo loads as it")
        data = named
    runs = chosen.groupby(chosen["modeldir"].astype(str))  # sample i: the i-th run by name (groupby sorts)
    networks = list(runs.groups)
    rows = {i: dict(zip(run["step"].astype(int), run.index.astype(int), strict=True)) for i, (_, run) in
            enumerate(runs)}  # fmt: skip
    last = int(chosen["step"].max())
    hparams = [
        [float(run["config.learning_rate"].iloc[0]), float(run["config.l2reg"].iloc[0]), 0.0, int(run["step"].max())]
        for _, run in runs
    ]
    finals = metrics.loc[[by_step[max(by_step)] for _, by_step in sorted(rows.items())]].reset_index(drop=True)
    results = {  # each network's final metrics, carried to the tasks so that none reads the metrics file again
        i: {name: float(row[src]) if src in row else float("nan") for src, name in small_cnn_zoo.RESULT_METRICS.items()}
        for i, row in finals.iterrows()
    }
    raw = {
        "name": root.name or "imported",
        "data": {"name": data, "root": data_root, "scaling": "symmetric"},
        "model": {"arch": "small_cnn", "activation": activation},
        "variants": ["standard"],
        "networks": len(networks),
        "imported": {"format": "small-cnn-zoo", "source": str(root), "hparams": hparams},
        "training": {"checkpoint_epochs": sorted({int(s) for s in chosen["step"]} - {0, last})},
    }
    sources = {"root": str(root), "layout": layout_rows, "rows": rows, "modeldirs": networks, "results": results}
    return raw, sources, finals.assign(model_id=range(len(finals)))


def dwsnets_config(source: Path, data: str | None, data_root: str | None):
    """An INR zoo's config from DWSNets' splits JSON (one standard SIREN per entry, samples in the file's order:
    train, val, test), what each task reads (each sample's file, label, split and image), and the file's split."""
    from symzoo.zoo.formats import dwsnets

    splits_file = dwsnets.find_splits_file(source)
    entries = dwsnets.read_splits(splits_file)
    first = Path(entries["path"].iloc[0])
    n_in, hidden, depth = dwsnets.siren_shape(dwsnets.load_state(first))
    if n_in != 2:
        raise ZooError(f"{first} maps {n_in} coordinates; symzoo's INR zoos fit 2-D images")
    exported = splits_file.parent / "data.json"  # symzoo's export: the zoo's data section
    data_section = json.loads(exported.read_text()) if exported.is_file() else {"name": data}
    if data is not None and data != data_section["name"]:
        raise ZooError(f"--data {data}: these INRs fit {data_section['name']} images ({exported}); leave --data out")
    if data_section["name"] is None:
        raise ZooError("pass --data: the image data set the INRs fit (fashion_mnist, digits, ...), for their images")
    if data_root is not None:
        data_section["root"] = data_root
    images = splits_file.parent / "images.csv"  # symzoo's export says which image each INR fits
    by_stem = pd.read_csv(images).set_index("model_id") if images.is_file() else None
    known = [by_stem.loc[int(Path(p).stem)] if by_stem is not None else None for p in entries["path"]]
    image_index = [int(k["image_index"]) if k is not None else -1 for k in known]
    unknown = [float("nan"), float("nan"), 0.0, 0]  # a DWSNets download does not say how its INRs were fitted
    recipe = [[float(k["lr"]), float(k["weight_decay"]), 0.0, int(k["epochs"])] if k is not None and "lr" in k
              else unknown for k in known]  # fmt: skip
    raw = {
        "name": splits_file.stem.removesuffix("_splits") or "imported",
        "task": "inr",
        "data": data_section,
        "model": {"arch": "siren", "hidden": hidden, "depth": depth, "output_offset": dwsnets.OFFSET},
        "variants": ["standard"],
        "networks": len(entries),
        "imported": {"format": "dwsnets", "source": str(splits_file), "hparams": recipe},
    }
    sources = {
        "splits_file": str(splits_file),
        "paths": entries["path"].tolist(),
        "labels": entries["label"].tolist(),
        "splits": entries["split"].tolist(),
        "image_index": image_index,
    }
    split = pd.DataFrame({"model_id": range(len(entries)), "split": entries["split"]})
    return raw, sources, split


def dwsnets_row(cfg: dict, spec: NetSpec, sources: dict, layout: ParamLayout) -> dict:
    """One DWSNets INR: its weights as final (the source keeps no initial ones), its class and split; fit
    quality unknown (NaN)."""
    from symzoo.zoo.formats import dwsnets

    i = spec.sample
    path = Path(sources["paths"][i])
    flat = dwsnets.to_flat(dwsnets.load_state(path), layout, path)
    finite = bool(np.isfinite(flat).all())
    return spec.row() | {
        "arch": "siren",
        "dataset": cfg["data"]["name"],
        "status": "ok" if finite else "diverged",
        "reason": "" if finite else f"{path.name} holds non-finite weights",
        "epochs_done": 0,
        "seconds": float("nan"),
        "history_train_loss": [],
        "history_train_acc": [],
        "weights_init": None,
        "weights_final": flat,
        **dict.fromkeys(["train_loss", "train_acc", "test_loss", "test_acc", "psnr"], float("nan")),
        "image_split": "test" if sources["splits"][i] == "test" else "train",
        "image_index": sources["image_index"][i],
        "image_class": sources["labels"][i],
    }


def ray_tune_config(
    root: Path,
    data: str | None,
    data_root: str | None,
    arch: str | None,
    activation: str | None,
    size: int | None,
    every: int | None,
):
    """The imported zoo's config (one convnet per chosen trial, in path order; every checkpoint as ``epoch_E``
    weights), what each task reads (the trial folders) and each trial's config entries, for ``source.parquet``."""
    trials = ray_tune.find_trials(root)
    configs = [ray_tune.read_json(t / ray_tune.PARAMS) for t in trials]
    chosen = ray_tune.choose(trials, configs, arch, activation)
    if len(chosen) < len(trials):
        print(f"symzoo: warning: importing {len(chosen)} of {len(trials)} trials (one kind per zoo)", file=sys.stderr)
    trials, configs = [trials[i] for i in chosen], [configs[i] for i in chosen]
    if data is None:
        raise ZooError("pass --data: the data set the trials trained on (fashion_mnist, cifar10, ...)")
    data_section = {"name": data, "root": data_root, "size": size}

    def in_shape() -> tuple[int, ...]:  # the images' shape, loaded only where the checkpoints' shapes are read
        return tuple(load_configured(validate({"data": data_section, "networks": 1})["data"]).in_shape)

    shape = ray_tune.resolve_shape(trials[0], configs[0], arch, in_shape)
    checkpoints = [ray_tune.find_checkpoints(t, ray_tune.read_results(t), every) for t in trials]
    named_activation = ray_tune.activation_of(configs[0])
    epochs = {e for found in checkpoints for e in found}
    last = max(epochs, default=0)
    hparams = [
        [ray_tune.hparam(c, "lr", float("nan")), ray_tune.hparam(c, "weight_decay", float("nan")), 0.0,
         int(ray_tune.hparam(c, "epochs", max(found, default=0)))]
        for c, found in zip(configs, checkpoints, strict=True)
    ]  # fmt: skip
    raw = {
        "name": root.name or "imported",
        "data": data_section,
        "model": {"arch": "convnet", "layers": str(shape), "activation": named_activation or activation},
        "variants": ["standard"],
        "networks": len(trials),
        "imported": {"format": "ray-tune", "source": str(root), "hparams": hparams},
        "training": {"checkpoint_epochs": sorted(epochs - {0, last})},
    }
    metadata = pd.DataFrame(
        [{"model_id": i, "trial": str(t.relative_to(root))} | ray_tune.flat_params(c) for i, (t, c) in
         enumerate(zip(trials, configs, strict=True))]
    )  # fmt: skip
    files = [{e: str(p) for e, p in found.items()} for found in checkpoints]  # the tasks map them no second time
    return raw, {"trials": [str(t) for t in trials], "checkpoints": files}, metadata


def ray_tune_row(cfg: dict, spec: NetSpec, sources: dict, layout: ParamLayout) -> dict:
    """One trial: checkpoint 0 as its initial weights, its last as final with that iteration's metrics, the
    others as ``epoch_E``; per-epoch train loss and accuracy from ``result.json``; no checkpoint: failed."""
    trial = Path(sources["trials"][spec.sample])
    results = ray_tune.read_results(trial)
    checkpoints = sources["checkpoints"][spec.sample]  # iteration -> file, as the config found them

    def flat(epoch: int):
        path = Path(checkpoints[epoch]) if epoch in checkpoints else None
        return None if path is None else ray_tune.to_flat(ray_tune.load_state(path), layout, path)

    last = max(checkpoints, default=None)
    final = None if last is None else flat(last)
    finite = final is not None and bool(np.isfinite(final).all())
    status, reason = "ok", ""
    if final is None:
        status, reason = "failed", f"{trial.name} has no checkpoint_<E>/{ray_tune.CHECKPOINT_FILE}"
    elif not finite:
        status, reason = "diverged", f"non-finite weights at iteration {last} ({trial.name})"
    return spec.row() | {
        "arch": "convnet",
        "dataset": cfg["data"]["name"],
        "status": status,
        "reason": reason,
        "epochs_done": last or 0,
        "seconds": float("nan"),
        "history_train_loss": ray_tune.history(results, "train_loss"),
        "history_train_acc": ray_tune.history(results, "train_acc"),
        "weights_init": flat(0),
        "weights_final": final,
        **{f"weights_epoch_{e}": flat(e) for e in cfg["training"]["checkpoint_epochs"]},
        **{name: ray_tune.metric(results.get(last), name) for name in ray_tune.METRICS},
    }


def write_source_metadata(out: Location, metadata) -> None:
    """``source.parquet``: every imported network's row of the source's metrics at its final checkpoint (all its
    ``config.*`` hyperparameters: optimizer, dropout, initialisation, ...), with its model_id, for pandas joins."""
    import pyarrow as pa

    from symzoo.zoo.parquet_io import write_parquet_atomically

    frame = metadata[["model_id", *(c for c in metadata.columns if c != "model_id")]]
    write_parquet_atomically(out / SOURCE_METADATA, pa.Table.from_pandas(frame, preserve_index=False))


def zoo_structure(files: dict[int, Path], layout: ParamLayout) -> dict:
    """The zoo's W-Asym masks and fixed values, from its first W-Asym network whose weights are finite (their
    masks are files shared by the whole zoo; ``authors.to_flat`` checks every network against this one)."""
    for index in sorted(files):
        state, _ = authors.load_file(files[index])
        if all(v.isfinite().all() for v in state.values()):
            masks, fixed = authors.fixed_structure(state, layout)
            if not masks:
                raise ZooError(f"{files[index]} has no .mask entries: it is no W-Asym (sparse_resnet8) network")
            return encode_fixed_structure(masks, fixed)
    raise ZooError("every W-Asym network holds NaN or infinite weights; there is no fixed structure to read")


def plan_units(cfg: dict, out: Location) -> list[WorkUnit]:
    """Shards of neighbouring samples (every variant of a sample in one shard), in plan order."""
    specs = plan_configured(cfg)
    per = cfg["execution"]["networks_per_shard"] * len(cfg["variants"])
    chunks = [specs[i : i + per] for i in range(0, len(specs), per)]
    return [WorkUnit(i, shard_path(out, i), chunk, len(chunk)) for i, chunk in enumerate(chunks)]


def import_shard(  # a Ray task, like generate's train_shard; plain Python without Ray
    specs: list[NetSpec],
    cfg: dict,
    sources: dict[str, dict[int, str]],
    layouts_json: dict,
    write_to: Location | None,
    progress,
    unit: int,
):
    """Convert one shard's networks; returns a ``Written`` receipt where this worker wrote it, else the table."""
    torch.set_num_threads(1)
    table = import_shard_table(specs, cfg, sources, layouts_json, lambda n: progress.set.remote(unit, n))
    return written_or_table(write_to, unit, table)


def import_shard_table(specs: list[NetSpec], cfg: dict, sources: dict, layouts_json: dict, on_progress=None):
    """The shard's rows as the Arrow table a zoo stores (no Ray): every planned network, imported, diverged
    (non-finite weights, kept as they are) or failed (no file, or not the zoo's fixed structure)."""
    layouts = {v: ParamLayout.from_json(j) for v, j in layouts_json.items()}
    fmt = cfg["imported"]["format"]
    small_cnn = fmt == "small-cnn-zoo"
    structure = None if fmt != "authors" else stored_structure(cfg, layouts)
    weights = small_cnn_zoo.open_weights(Path(sources["root"]), None) if small_cnn else None
    rows = []
    for done, spec in enumerate(specs, start=1):
        if small_cnn:
            rows.append(small_cnn_row(cfg, spec, weights, sources, layouts[spec.variant]))
        elif fmt == "dwsnets":
            rows.append(dwsnets_row(cfg, spec, sources, layouts[spec.variant]))
        elif fmt == "ray-tune":
            rows.append(ray_tune_row(cfg, spec, sources, layouts[spec.variant]))
        else:
            path = sources.get(spec.variant, {}).get(spec.sample)
            rows.append(network_row(cfg, spec, Path(path) if path else None, layouts[spec.variant], structure))
        if on_progress and done % 8 == 0:
            on_progress(done)
    inr = cfg.get("task") == "inr"
    return rows_to_table(rows, layouts_json, cfg["training"]["checkpoint_epochs"], config_hash(cfg), inr=inr)


def stored_structure(cfg: dict, layouts: dict[str, ParamLayout]) -> tuple[dict, dict] | None:
    """The zoo's W-Asym masks and fixed values by weight name, decoded from its config, or None."""
    from symzoo.zoo.layers import decode_fixed_structure

    entries = cfg["model"].get("fixed_structure")
    if not entries or "w_asym" not in layouts:
        return None
    shapes = {s.name: s.shape for s in layouts["w_asym"].slots}
    decoded = {name: decode_fixed_structure(e, torch.Size(shapes[name])) for name, e in entries.items()}
    return {n: m for n, (m, _) in decoded.items()}, {n: f for n, (_, f) in decoded.items()}


def network_row(
    cfg: dict, spec: NetSpec, path: Path | None, layout: ParamLayout, structure: tuple[dict, dict] | None
) -> dict:
    """One network's row. The source stores final weights and test accuracy only: no initial weights (null), no
    losses or training history (NaN, empty); its epochs are taken as trained (``epochs_done``)."""
    row = spec.row() | {
        "arch": cfg["model"]["arch"],
        "dataset": cfg["data"]["name"],
        "weights_init": None,
        "weights_final": None,
        "epochs_done": 0,
        "seconds": float("nan"),
        "history_train_loss": [],
        "history_train_acc": [],
        **dict.fromkeys(["train_loss", "train_acc", "test_loss", "test_acc"], float("nan")),
    }
    if path is None:
        return row | {"status": "failed", "reason": f"no file for index {spec.sample} in the source"}
    state, test_acc = authors.load_file(path)
    own = structure if spec.variant == "w_asym" else None
    try:
        flat = authors.to_flat(path, state, layout, own)
    except authors.FixedStructureMismatch as e:
        return row | {"status": "failed", "reason": f"{path.name}: {e}"}
    finite = bool(np.isfinite(flat).all())
    return row | {
        "status": "ok" if finite else "diverged",
        "reason": "" if finite else f"{path.name} holds non-finite weights",
        "epochs_done": spec.hparams.epochs,
        "test_acc": test_acc,
        "weights_final": flat,
    }


def small_cnn_row(cfg: dict, spec: NetSpec, weights, sources: dict, layout: ParamLayout) -> dict:
    """One Small CNN Zoo network: step 0 as its initial weights, the others as ``epoch_E`` checkpoints, the last
    as its final weights and metrics; non-finite final weights are kept as ``diverged``."""
    by_step = {int(s): r for s, r in sources["rows"][spec.sample].items()}
    last = max(by_step)

    def flat(step: int):
        row = by_step.get(step)
        return None if row is None else small_cnn_zoo.to_flat(weights[row], sources["layout"], layout)

    final = flat(last)
    finite = bool(np.isfinite(final).all())
    row = spec.row() | {
        "arch": cfg["model"]["arch"],
        "dataset": cfg["data"]["name"],
        "status": "ok" if finite else "diverged",
        "reason": "" if finite else f"non-finite weights at step {last} ({sources['modeldirs'][spec.sample]})",
        "epochs_done": last,
        "seconds": float("nan"),
        "history_train_loss": [],
        "history_train_acc": [],
        "weights_init": flat(0),
        "weights_final": final,
        **{f"weights_epoch_{e}": flat(e) for e in cfg["training"]["checkpoint_epochs"]},
    }
    return row | sources["results"][spec.sample]
