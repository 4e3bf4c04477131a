"""The data a zoo config names: an image data set (``zoo.data``) or a graph (``zoo.graph``). Generation and every
later stage load a zoo's data through ``load_configured``."""

from __future__ import annotations

from symzoo.zoo.data import Dataset, load_images
from symzoo.zoo.graph import Graph, is_graph_dataset, load_graph


def load_configured(data_cfg: dict) -> Dataset | Graph:
    """The data set a zoo config's ``data`` section names, as its manifest's fingerprint records it."""
    return load_graph(data_cfg) if is_graph_dataset(data_cfg["name"]) else load_images(data_cfg)
