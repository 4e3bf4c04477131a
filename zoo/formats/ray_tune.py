"""Zoos trained with Ray Tune, one trial folder per network (the ModelZoos of Schuerholt et al. 2022 and the
Phase-Transition zoos; docs/zoo.md, "Bring your own zoo").

Layout, as their ``checkpoints_to_datasets`` reads it: under the source folder, every folder that holds a
``params.json`` is a trial: ``params.json`` (the trial's config: ``model::type``, ``model::nlin``, ``optim::lr``,
``optim::wd``, ``training::epochs_train``, ``seed``, ...), ``result.json`` (JSON lines, one per reported
iteration: ``training_iteration``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``) and
``checkpoint_<E>/checkpoints`` (``checkpoint_<E:06d>`` too): a ``torch.save``d state dict of the network at
iteration ``E`` (Ray 2.7 and later number them by count instead: ``find_checkpoints``), whose metrics are the
result line of that iteration. The network is a ``module_list`` of
``Conv2d`` and ``Linear`` layers (keys ``module_list.{i}.weight``/``.bias``) with pooling, activations and dropout
between them; symzoo's ``convnet`` (``zoo/models.py``) computes it layer for layer, given its short spec: the
ModelZoos' named types (``KNOWN_TYPES``), ``--arch``, or read off the checkpoint's shapes (``candidate_shapes``).

Files are read with ``torch.load(weights_only=True)`` only; JSON with the standard library; nothing is executed.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from symzoo.errors import ZooError
from symzoo.zoo.formats.torch_files import load_tensors
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.models import ConvLayer, ConvNetShape

# The ModelZoos' CNNs (their def_net.py) as symzoo convnet specs: conv -> 2x2 max pool -> activation, flatten,
# a dense layer of 20, the head. CNN takes 28x28 images (2,464 parameters on one channel), CNN3 32x32.
KNOWN_TYPES = {
    "CNN": "c8k5p,c6k5p,c4k2,flatten,20",
    "CNN2": "c6k5p,c9k5p,c6k2,flatten,20",
    "CNN3": "c16k3p,c32k3p,c15k3p,flatten,20",
}
PARAMS, RESULTS, CHECKPOINT_FILE = "params.json", "result.json", "checkpoints"
CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
RAY_1_MARKERS = (".is_checkpoint", ".tune_metadata")  # files Ray < 2.7 wrote into each checkpoint folder
# where each of symzoo's hyperparameter columns is found in params.json, first match wins
HPARAM_KEYS = {
    "lr": ("optim::lr", "lr", "learning_rate"),
    "weight_decay": ("optim::wd", "weight_decay", "wd"),
    "epochs": ("training::epochs_train", "epochs"),
}
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
NO_VALUE = -999  # the ModelZoos' train metrics of iteration 0 (before any training)


def find_trials(root: Path) -> list[Path]:
    """Every trial folder under ``root`` (one holding ``params.json``), sorted by its path below ``root``."""
    trials = sorted(p.parent for p in root.rglob(PARAMS) if p.is_file())
    if not trials:
        raise ZooError(f"{root} holds no trial folder (a folder with {PARAMS}); pass the Ray Tune experiment folder")
    return trials


def read_json(path: Path) -> dict:
    """One JSON object; a ``ZooError`` line naming the file where it is missing or malformed."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooError(f"{path} is missing; every trial folder needs one") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooError(f"{path} is not JSON ({str(e)[:60]}); the trial folder is damaged") from None
    if not isinstance(value, dict):
        raise ZooError(f"{path} is not a JSON object of the trial's config")
    return value


def read_results(trial: Path) -> dict[int, dict]:
    """``result.json``'s lines by ``training_iteration`` (the last line of an iteration wins); none where the
    trial never reported. A malformed line is one ``ZooError`` naming the file and line."""
    path = trial / RESULTS
    if not path.is_file():
        return {}
    out = {}
    with path.open() as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                iteration = int(entry["training_iteration"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ZooError(f"{path} line {number} is no JSON result with a training_iteration") from None
            out[iteration] = entry
    return out


def metric(entry: dict | None, name: str) -> float:
    """A result's metric as a float; NaN where absent, not a number, or the ModelZoos' -999 for 'not measured'."""
    value = None if entry is None else entry.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value == NO_VALUE:
        return float("nan")
    return float(value)


def find_checkpoints(trial: Path, results: dict[int, dict], every: int | None = None) -> dict[int, Path]:
    """The trial's checkpoint files by training iteration. Ray before 2.7 (the ModelZoos) named each folder
    ``checkpoint_<iteration>`` and marked it with ``.is_checkpoint`` / ``.tune_metadata``; Ray 2.7 and later
    numbers them 0, 1, 2, ... in the order they were saved, with no marker: the k-th is then iteration
    ``(k + 1) * every`` (``--checkpoint-every``), or, where the trial saved one per reported iteration, the k-th
    reported iteration. Anything else is one ``ZooError`` line asking for ``--checkpoint-every``."""
    numbered: dict[int, Path] = {}
    marked = False
    for folder in trial.iterdir():
        match = CHECKPOINT_DIR.match(folder.name)
        if match and (folder / CHECKPOINT_FILE).is_file():
            numbered[int(match[1])] = folder / CHECKPOINT_FILE
            marked = marked or any((folder / m).exists() for m in RAY_1_MARKERS)
    numbered = dict(sorted(numbered.items()))
    if marked or not numbered:
        return numbered
    iterations = sorted(i for i in results if i >= 1)
    if every is not None:
        return {(k + 1) * every: path for k, path in enumerate(numbered.values())}
    if list(numbered) == list(range(len(iterations))):
        return dict(zip(iterations, numbered.values(), strict=True))
    raise ZooError(
        f"{trial} holds {len(numbered)} checkpoints for {len(iterations)} reported iterations, numbered by count "
        "(Ray 2.7 or later): pass --checkpoint-every with the trials' checkpoint frequency"
    )


def hparam(params: dict, name: str, default: float) -> float:
    """One of symzoo's hyperparameter columns from the trial's config (``HPARAM_KEYS``), or ``default``."""
    for key in HPARAM_KEYS[name]:
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


def flat_params(params: dict) -> dict[str, object]:
    """The trial's scalar config entries (strings, numbers, booleans), for ``source.parquet``; lists as JSON."""
    out: dict[str, object] = {}
    for key, value in params.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[f"config.{key}"] = value
        elif isinstance(value, (list, tuple)):
            out[f"config.{key}"] = json.dumps(value)
    return out


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict (tensors only); one ``ZooError`` line naming the file otherwise."""
    state = load_tensors(path, "re-save it as the network's state_dict()")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ZooError(f"{path} is not a state dict of tensors, as a Ray Tune trial's checkpoints file holds")
    return state


def layer_shapes(state: dict[str, torch.Tensor], path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """``(prefix, weight shape)`` of each Conv2d (4-d) and Linear (2-d) layer in the state dict's order. A
    layer without a bias, or any other entry (a norm's statistics), is one line: symzoo's convnet has neither."""
    layers = []
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf == "weight" and value.dim() in (2, 4):
            if f"{prefix}.bias" not in state:
                raise ZooError(f"{path}: {key} has no bias; symzoo's convnet layers all have one")
            layers.append((prefix, tuple(value.shape)))
        elif leaf != "bias" or f"{prefix}.weight" not in state:
            raise ZooError(f"{path} holds {key} ({tuple(value.shape)}): symzoo reads conv and linear layers only")
    if not layers:
        raise ZooError(f"{path} holds no conv or linear layer")
    return layers


def candidate_shapes(layers: list[tuple[str, tuple[int, ...]]], in_shape: tuple[int, ...]) -> list[ConvNetShape]:
    """Every convnet that fits these layer shapes on images of ``in_shape``: the channels, kernels and widths
    are in the shapes; which convs pool (2x2 max) and the readout are not, so each choice is tried against the
    first dense layer's input width (stride 1, no padding, as the ModelZoos' convs)."""
    convs = [shape for _, shape in layers if len(shape) == 4]
    dense = [shape for _, shape in layers if len(shape) == 2]
    if not dense or [len(s) for _, s in layers] != [4] * len(convs) + [2] * len(dense):
        return []
    hidden = tuple(s[0] for s in dense[:-1])
    found = []
    for pools in itertools.product((False, True), repeat=len(convs)):
        convs_ = tuple(ConvLayer(s[0], s[2], 1, p) for s, p in zip(convs, pools, strict=True))
        for readout in ("flatten", "mean") if convs else ("flatten",):
            shape = ConvNetShape(convs_, readout, hidden)
            try:
                if shape.features(in_shape) == dense[0][1]:
                    found.append(shape)
            except ValueError:
                continue
    return found


def activation_of(params: dict) -> str | None:
    return params["model::nlin"] if isinstance(params.get("model::nlin"), str) else None


def choose(trials: list[Path], configs: list[dict], arch: str | None, activation: str | None) -> list[int]:
    """The trials of one architecture and activation (a zoo holds one kind of network): those asked for by
    ``--arch`` (a ModelZoos type) and ``--activation``, or all where they agree; a ``ZooError`` listing the kinds
    where the source mixes several and nothing says which."""
    activations = [activation_of(c) or activation for c in configs]
    if None in activations:
        unnamed = trials[activations.index(None)] / PARAMS
        raise ZooError(f"{unnamed} names no model::nlin; pass --activation with the networks' activation")
    types = [str(c.get("model::type", "?")) for c in configs]
    wanted = [
        i
        for i in range(len(configs))
        if (activation is None or activations[i] == activation) and (arch not in KNOWN_TYPES or types[i] == arch)
    ]
    if not wanted:
        asked = " and ".join(x for x in (arch and f"type {arch}", activation and f"activation {activation}") if x)
        raise ZooError(f"no trial has {asked}; pass --arch and --activation as the trials' params.json name them")
    kinds = Counter((arch or types[i], activations[i]) for i in wanted)
    if len(kinds) > 1:
        listed = ", ".join(f"{n} x {kind} with {act}" for (kind, act), n in kinds.most_common())
        raise ZooError(
            f"the trials hold several kinds of network ({listed}): import one kind per zoo, with --arch (a type or "
            "a spec) and --activation"
        )
    return wanted


def resolve_shape(first: Path, params: dict, arch: str | None, in_shape: Callable[[], tuple[int, ...]]) -> ConvNetShape:
    """The chosen trials' convnet: ``--arch`` (a ModelZoos type or a spec), else their ``model::type`` where
    symzoo knows it, else the one shape that fits ``first``'s checkpoint on images of ``in_shape()`` (called only
    then: it loads the data set); one line where none or several do."""
    named = arch if arch is not None else params.get("model::type")
    if isinstance(named, str) and named in KNOWN_TYPES:
        return ConvNetShape.parse(KNOWN_TYPES[named])
    if arch is not None:
        try:
            return ConvNetShape.parse(arch)
        except ValueError as e:
            raise ZooError(f"--arch {arch}: {e}; or a ModelZoos type ({', '.join(KNOWN_TYPES)})") from None
    checkpoints = find_checkpoints(first, read_results(first), every=1)  # any one will do for the shapes
    if not checkpoints:
        raise ZooError(f"{first} has no checkpoint_<E>/{CHECKPOINT_FILE} to read the architecture from; pass --arch")
    path = next(iter(checkpoints.values()))
    shape = in_shape()
    found = candidate_shapes(layer_shapes(load_state(path), path), shape)
    if len(found) != 1:
        what = "no convnet fits" if not found else f"{len(found)} convnets fit ({' | '.join(map(str, found))})"
        raise ZooError(f"{what} the layers of {path} on {shape} images; pass --arch with its spec (docs/zoo.md)")
    return found[0]


def to_flat(state: dict[str, torch.Tensor], layout: ParamLayout, path: Path) -> np.ndarray:
    """The state dict as symzoo's flat vector: its i-th conv/linear layer is the convnet's i-th (``conv1..``,
    ``dense1..``, ``head``); a ``ZooError`` naming the file where the layers are not the zoo's."""
    layers = layer_shapes(state, path)
    ours = [slot for slot in layout.slots if slot.name.endswith(".weight")]
    if [shape for _, shape in layers] != [slot.shape for slot in ours]:
        raise ZooError(
            f"{path} has layers {[s for _, s in layers]}, the zoo's convnet {[s.shape for s in ours]}: another "
            "architecture (import it into its own zoo, with --arch)"
        )
    by_name = {}
    for (prefix, _), slot in zip(layers, ours, strict=True):
        ours_prefix = slot.name.removesuffix(".weight")
        by_name[f"{ours_prefix}.weight"] = state[f"{prefix}.weight"]
        by_name[f"{ours_prefix}.bias"] = state[f"{prefix}.bias"]
    return np.concatenate([by_name[s.name].detach().float().reshape(-1).numpy() for s in layout.slots]).astype(
        np.float32
    )


def history(results: dict[int, dict], name: str) -> list[float]:
    """A metric per trained epoch (iterations 1, 2, ...: iteration 0 is the untrained network)."""
    return [metric(results[i], name) for i in sorted(results) if i >= 1]
