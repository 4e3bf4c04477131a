"""The Small CNN Zoo (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights"; docs/zoo.md).

Layout: ``weights.npy`` (rows x 4,970 float32), row-aligned with ``metrics.csv`` (or ``metrics.csv.gz``): the
run's hyperparameters as ``config.*`` columns (activation, learning_rate, l2reg, optimizer, dropout, init_std,
w_init, b_init, train_fraction, ...), ``modeldir`` (one training run), ``step`` (the checkpoint's epoch: 0, 1, 2,
3, 20, 40, 60, 80 and the final 86), ``test_accuracy``, ``test_loss``, ``train_accuracy``, ``train_loss``; and
``layout.csv`` (varname, start_idx, end_idx, shape), each layer's bias before its kernel, kernels in TensorFlow's
order (conv HWIO, dense IO). The network is symzoo's ``small_cnn``: its Keras original has three
``Conv2D(16, 3, strides=2)`` (valid padding), dropout after each (inactive at evaluation), global average pooling
and a ``Dense(10)``, on grayscale images scaled to [-1, 1] (``data.scaling: symmetric``).

``weights.npy`` is read with ``allow_pickle=False`` and as a memory map: only the rows asked for are read.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd

from symzoo.errors import ZooError
from symzoo.zoo.layout import ParamLayout

WEIGHTS, LAYOUT = "weights.npy", "layout.csv"
METRICS = ("metrics.csv", "metrics.csv.gz")
REQUIRED_METRICS = ("modeldir", "step", "config.activation", "config.learning_rate", "config.l2reg")
RESULT_METRICS = {"train_loss": "train_loss", "train_accuracy": "train_acc", "test_loss": "test_loss",
                  "test_accuracy": "test_acc"}  # fmt: skip
SYMZOO_NAMES = ("conv1", "conv2", "conv3", "head")  # small_cnn's layers, in the order the source lists them


def read_metrics(root: Path) -> pd.DataFrame:
    """``metrics.csv`` (or ``.csv.gz``) with the columns symzoo needs; one ``ZooError`` line where it is absent
    or lacks one."""
    path = next((root / name for name in METRICS if (root / name).is_file()), None)
    if path is None:
        raise ZooError(f"{root} has no metrics.csv or metrics.csv.gz; pass the folder of one Small CNN Zoo data set")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, EOFError) as e:
        raise ZooError(f"{path} is not a readable CSV ({type(e).__name__}); download it again") from None
    if missing := [c for c in REQUIRED_METRICS if c not in frame.columns]:
        raise ZooError(f"{path} has no column {missing[0]}; it is not a Small CNN Zoo metrics file")
    return frame


def open_weights(root: Path, rows: int | None) -> np.ndarray:
    """``weights.npy`` as a read-only memory map (of ``rows`` rows, as many as the metrics file has, when given)."""
    path = root / WEIGHTS
    if not path.is_file():
        raise ZooError(f"{root} has no {WEIGHTS}; pass the folder of one Small CNN Zoo data set")
    try:
        weights = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        why = str(e).splitlines()[0][:80]
        raise ZooError(f"{path} is truncated or no .npy array ({why}); download it again") from None
    if weights.ndim != 2 or (rows is not None and weights.shape[0] != rows):
        raise ZooError(f"{path} holds an array of shape {weights.shape}; its metrics file describes {rows} rows")
    return weights


def read_layout(root: Path, width: int) -> list[tuple[str, int, int, tuple[int, ...]]]:
    """``layout.csv``'s rows as (symzoo name, start, end, TensorFlow shape), checked against ``width`` columns."""
    path = root / LAYOUT
    if not path.is_file():
        raise ZooError(f"{root} has no {LAYOUT}; pass the folder of one Small CNN Zoo data set")
    frame = pd.read_csv(path)
    if missing := [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in frame.columns]:
        raise ZooError(f"{path} has no column {missing[0]}")
    layers: list[str] = []  # source layer names in order of appearance
    out = []
    for row in frame.itertuples(index=False):
        layer, _, leaf = str(row.varname).rpartition("/")
        kind = "weight" if leaf.startswith("kernel") else "bias" if leaf.startswith("bias") else None
        if kind is None:
            raise ZooError(f"{path}: {row.varname} is neither a kernel nor a bias")
        if layer not in layers:
            layers.append(layer)
        index = layers.index(layer)
        if index >= len(SYMZOO_NAMES):
            raise ZooError(f"{path} lists more than {len(SYMZOO_NAMES)} layers; the Small CNN Zoo's network has 4")
        shape = tuple(int(d) for d in ast.literal_eval(str(row.shape)))
        start, end = int(row.start_idx), int(row.end_idx)
        if end - start != math.prod(shape) or end > width:
            raise ZooError(f"{path}: {row.varname} spans [{start}, {end}) but has shape {shape} in {width} columns")
        out.append((f"{SYMZOO_NAMES[index]}.{kind}", start, end, shape))
    return out


def to_flat(row: np.ndarray, layout_rows: list, layout: ParamLayout) -> np.ndarray:
    """One source row as symzoo's flat vector: kernels to PyTorch's order (conv HWIO -> OIHW, dense IO -> OI)."""
    tensors = {}
    for name, start, end, shape in layout_rows:
        value = np.asarray(row[start:end], np.float32).reshape(shape)
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        elif value.ndim == 2:
            value = value.T
        tensors[name] = value
    parts = []
    for slot in layout.slots:
        if slot.name not in tensors or tensors[slot.name].shape != slot.shape:
            got = tensors[slot.name].shape if slot.name in tensors else "nothing"
            raise ZooError(f"the source's {slot.name} is {got}; symzoo's small_cnn has {slot.shape} (another network?)")
        parts.append(tensors[slot.name].reshape(-1))
    return np.concatenate(parts)


# The variable names a Keras ``Sequential`` of three Conv2D and a Dense gives (what layout.csv lists), by layer.
KERAS_NAMES = {"conv1": "sequential/conv2d", "conv2": "sequential/conv2d_1", "conv3": "sequential/conv2d_2",
               "head": "sequential/dense"}  # fmt: skip


def keras_layout(layout: ParamLayout) -> pd.DataFrame:
    """``layout.csv`` for symzoo's small_cnn in the Small CNN Zoo's order (each layer's bias, then its kernel)."""
    rows, start = [], 0
    for layer in SYMZOO_NAMES:
        for kind in ("bias", "weight"):
            slot = next(s for s in layout.slots if s.name == f"{layer}.{kind}")
            shape = slot.shape if kind == "bias" else tf_shape(slot.shape)
            leaf = "bias:0" if kind == "bias" else "kernel:0"
            rows.append({"varname": f"{KERAS_NAMES[layer]}/{leaf}", "start_idx": start,
                         "end_idx": start + slot.size, "shape": str(tuple(shape))})  # fmt: skip
            start += slot.size
    return pd.DataFrame(rows)


def tf_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A PyTorch kernel's shape in TensorFlow's order (OIHW -> HWIO, OI -> IO)."""
    return (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else (shape[1], shape[0])


def from_flat(flat: np.ndarray, layout: ParamLayout) -> np.ndarray:
    """symzoo's flat vectors ``(N, P)`` as Small CNN Zoo rows: ``to_flat``'s inverse."""
    tensors = layout.unflatten(np.asarray(flat, np.float32))
    parts = []
    for layer in SYMZOO_NAMES:
        parts.append(tensors[f"{layer}.bias"].reshape(len(flat), -1))
        kernel = tensors[f"{layer}.weight"]
        kernel = kernel.permute(0, 3, 4, 2, 1) if kernel.dim() == 5 else kernel.permute(0, 2, 1)
        parts.append(kernel.reshape(len(flat), -1))
    return np.concatenate([p.numpy() for p in parts], axis=1)
