"""``symzoo export ZOO FORMAT --out DIR``: a symzoo zoo in another project's layout, for its own loader.

Formats (docs/zoo.md, "Take a zoo elsewhere"): ``nfn``, the Small CNN Zoo layout that NFN's ``ZooDataset`` reads
(``weights.npy``, ``metrics.csv.gz``, ``layout.csv``) with the order file it shuffles by, for ``small_cnn`` zoos;
``dwsnets``, DWSNets' INR layout (a ``.pth`` per INR and a splits JSON per variant), for INR zoos.
The folder is written beside its final name and renamed into place: an export is whole or absent.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from symzoo.errors import ZooError
from symzoo.zoo.formats import small_cnn_zoo
from symzoo.zoo.store import open_zoo

FORMATS = ("nfn", "dwsnets")
ARCH_OF = {"nfn": "small_cnn", "dwsnets": "siren"}
NFN_FINAL_STEP = 86  # NFN's loader keeps the rows whose step is 86, the Small CNN Zoo's last checkpoint
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def export_zoo(zoo_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the zoo at ``zoo_dir`` to the new folder ``out`` in format ``fmt``; returns ``out``."""
    if fmt not in FORMATS:
        raise ZooError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists():
        raise ZooError(f"--out {out} exists; an export writes a new folder, so pass one that does not exist yet")
    zoo = open_zoo(zoo_dir)
    arch = zoo.config["model"]["arch"]
    if arch != ARCH_OF[fmt]:
        why = {
            "nfn": "the nfn layout (the Small CNN Zoo's) carries small_cnn networks only (its loader reads conv and "
            "dense kernels and biases, no norms)",
            "dwsnets": "the dwsnets layout carries INR zoos' SIRENs only (task: inr)",
        }
        raise ZooError(f"{zoo.path} holds {arch} networks; {why[fmt]}")
    partial = out.with_name(f".{out.name}.partial-{int(time.time())}")
    partial.mkdir(parents=True)
    try:
        (write_nfn if fmt == "nfn" else write_dwsnets)(zoo, partial, out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def write_dwsnets(zoo, folder: Path, final: Path) -> None:
    """Per variant that a DWSNets INR can represent (standard, W-Asym): ``VARIANT/SPLIT/CLASS/MODEL_ID.pth`` for
    every finished INR and ``VARIANT_splits.json`` naming them (absolute paths under ``final``, the folder's name
    once in place) in symzoo's split by image; ``images.csv`` maps model_id to image, split, PSNR and the fitting
    recipe (lr, weight_decay, epochs: the steps), and ``data.json`` the zoo's data section (which images
    ``image_index`` counts), both of which ``symzoo import dwsnets`` reads back."""
    import json

    import torch

    from symzoo.zoo.formats import dwsnets

    frame = zoo.frame
    splits = zoo.splits().set_index("model_id")["split"]
    variants = [v for v in zoo.layouts if v != "sigma_asym"]
    if "sigma_asym" in zoo.layouts:
        print("symzoo: warning: sigma-Asym INRs are left out (a DWSNets INR has no gates)", file=sys.stderr)
    ok = frame[(frame["status"] == "ok") & frame["variant"].isin(variants)]
    if len(ok) < int(frame["variant"].isin(variants).sum()):
        print(f"symzoo: warning: {int(frame['variant'].isin(variants).sum()) - len(ok)} unfinished INRs are left out",
              file=sys.stderr)  # fmt: skip
    for variant in variants:
        listing: dict[str, dict[str, list]] = {s: {"path": [], "label": []} for s in SPLIT_ORDER}
        rows = ok[ok["variant"] == variant].sort_values("model_id")
        # one network of the variant (its fixed structure is the zoo's), loaded with each INR's weights in turn:
        # the variant's weights are read once, not once per INR
        network = zoo.model(int(rows["model_id"].iloc[0])) if len(rows) else None
        layout = zoo.layout(variant)
        weights = zoo.weights("final", model_ids=rows["model_id"].tolist()) if len(rows) else []  # model_id order
        for flat, model_id, label in zip(weights, rows["model_id"], rows["image_class"], strict=True):
            split = splits[model_id]
            relative = Path(variant) / split / str(int(label)) / f"{int(model_id)}.pth"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            torch.save(dwsnets.state_dict(layout.load_into(network, flat)), folder / relative)
            listing[split]["path"].append(str(final.resolve() / relative))
            listing[split]["label"].append(int(label))
        (folder / f"{variant}_splits.json").write_text(json.dumps(listing))
    columns = ["model_id", "variant", "image_split", "image_index", "image_class", "psnr", "lr", "weight_decay"]
    columns += ["epochs"]
    images = ok[columns].assign(split=ok["model_id"].map(splits))
    images.to_csv(folder / "images.csv", index=False)
    (folder / "data.json").write_text(json.dumps(zoo.config["data"]))  # which images image_index counts


def write_nfn(zoo, folder: Path, final: Path | None = None) -> None:
    """One row per network and stored checkpoint (the final one at step 86, as NFN's loader expects), in
    symzoo's split order (train, val, test), and ``nfn_order.csv``: NFN's ``idcs_file``, the identity over that
    order. NFN's loader then takes the later half of the final rows as its test set, which holds every network of
    symzoo's test split; ``splits.csv`` keeps symzoo's own split for loaders that take one."""
    frame = zoo.frame
    layout = zoo.layout("standard")
    splits = zoo.splits().set_index("model_id")["split"]
    final = zoo.weights("final")  # model_id order, as the frame; read once, used for the check and the rows
    position = {model_id: i for i, model_id in enumerate(frame["model_id"])}
    finite = np.isfinite(final).all(1)
    if not finite.all():
        print(
            f"symzoo: warning: {int((~finite).sum())} networks with non-finite final weights are left out "
            "(NFN's loader refuses any); the zoo keeps them as diverged",
            file=sys.stderr,
        )
    order = sorted(frame["model_id"][finite], key=lambda i: (SPLIT_ORDER[splits[i]], i))
    frame = frame.set_index("model_id").loc[order]
    activation = zoo.config["model"].get("activation") or "relu"
    last_epoch = max(frame["epochs"])
    if last_epoch > NFN_FINAL_STEP or any(e >= NFN_FINAL_STEP for e in zoo.config["training"]["checkpoint_epochs"]):
        print(f"symzoo: warning: checkpoints at or past epoch {NFN_FINAL_STEP} are left out", file=sys.stderr)
    kinds = [("final", NFN_FINAL_STEP)]
    kinds += [(k, int(k.removeprefix("epoch_"))) for k in zoo.weight_kinds() if k.startswith("epoch_")]
    kinds += [("init", 0)] if "init" in zoo.weight_kinds() else []
    kinds = [(k, s) for k, s in kinds if k == "final" or s < NFN_FINAL_STEP]
    blocks, metrics = [], []
    for kind, step in kinds:
        weights = final if kind == "final" else zoo.weights(kind)
        blocks.append(small_cnn_zoo.from_flat(weights[[position[i] for i in order]], layout))
        is_final = kind == "final"
        metrics.append(pd.DataFrame({
            "modeldir": [f"model_{i:06d}" for i in order],
            "step": step,
            "config.activation": activation,
            "config.learning_rate": frame["lr"].to_numpy(),
            "config.l2reg": frame["weight_decay"].to_numpy(),
            "config.label_smoothing": frame["label_smoothing"].to_numpy(),
            "config.epochs": frame["epochs"].to_numpy(),
            "config.dataset": zoo.config["data"]["name"],
            "symzoo.model_id": order,
            "symzoo.status": frame["status"].to_numpy(),
            "test_accuracy": frame["test_acc"].to_numpy() if is_final else np.nan,
            "test_loss": frame["test_loss"].to_numpy() if is_final else np.nan,
            "train_accuracy": frame["train_acc"].to_numpy() if is_final else np.nan,
            "train_loss": frame["train_loss"].to_numpy() if is_final else np.nan,
        }))  # fmt: skip
    np.save(folder / small_cnn_zoo.WEIGHTS, np.concatenate(blocks).astype(np.float32))
    pd.concat(metrics, ignore_index=True).to_csv(folder / "metrics.csv.gz", index=False, compression="gzip")
    small_cnn_zoo.keras_layout(layout).to_csv(folder / small_cnn_zoo.LAYOUT, index=False)
    rows = sum(len(b) for b in blocks)
    pd.DataFrame(np.arange(rows)).to_csv(folder / "nfn_order.csv", index=False, header=False)
    pd.DataFrame({"model_id": order, "split": [splits[i] for i in order], "row": range(len(order))}).to_csv(
        folder / "splits.csv", index=False
    )
