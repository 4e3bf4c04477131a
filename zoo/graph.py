"""Node-classification graphs for the GNN zoos (paper Table 1's GNN row; docs/paper.md §7).

A ``Graph`` holds node features, labels, a transductive split of the nodes and the mean-aggregation operator
``I + D^-1 A`` (each node's own features plus the mean of its neighbours', as the authors' ``SimpleConv(aggr='mean',
combine_root='sum')``) as one sparse matrix, so a message-passing layer is one sparse-dense product.

Two sources:
- ``ogbn-arxiv`` through the ``ogb`` package (169,343 papers, 128 features, 40 subjects, its own time split), for a
  user with a network: ``pip install ogb``; the download is ogb's.
- ``fashion_mnist_knn`` and ``digits_knn``, built here from real images this machine has: nodes are images with
  their real labels, features a PCA of their pixels, edges each node's k nearest neighbours in that space
  (symmetrised), and a seeded class-stratified split in arXiv's proportions. Deterministic and fingerprinted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from symzoo.errors import ConfigError
from symzoo.zoo.data import DataNotFoundError, balanced_subset, load_digits, load_fashion_mnist
from symzoo.zoo.location import default_data_dir

GRAPH_DATASETS = ("ogbn-arxiv", "fashion_mnist_knn", "digits_knn")
SPLITS = ("train", "valid", "test")
# ogbn-arxiv's time split is 90,941 / 29,799 / 48,603 of 169,343 nodes; the offline graphs draw the same shares
ARXIV_SHARES = (0.537, 0.176, 0.287)
GRAPH_DEFAULTS = {"nodes_per_class": None, "neighbours": 10, "features": 128}


@dataclass
class Graph:
    """One graph, all on one device. ``split_index[s]`` holds the node ids of split ``s`` (train, valid, test)."""

    name: str
    features: torch.Tensor  # float32 (N, F), standardised
    labels: torch.Tensor  # int64 (N,)
    edges: torch.Tensor  # int64 (2, E): source -> target, both directions present
    split_index: dict[str, torch.Tensor]
    num_classes: int
    aggregate: torch.Tensor = field(init=False, repr=False)  # sparse (N, N): I + D^-1 A

    def __post_init__(self) -> None:
        self.aggregate = mean_aggregation(self.edges, len(self.labels), self.features.device)

    @property
    def in_shape(self) -> tuple[int]:
        return (int(self.features.shape[1]),)

    @property
    def device(self) -> torch.device:
        return self.features.device

    # What image datasets call their train and test arrays: the zoo machinery (sizes, devices) reads these.
    @property
    def x_train(self) -> torch.Tensor:
        return self.features[self.split_index["train"]]

    @property
    def x_test(self) -> torch.Tensor:
        return self.features[self.split_index["test"]]

    def nodes(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The node ids of ``split`` and their labels."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not allowed; one of {', '.join(SPLITS)}")
        idx = self.split_index[split]
        return idx, self.labels[idx]

    def fingerprint(self) -> str:
        """Content hash of features, labels, edges and split, recorded in the manifest."""
        h = hashlib.sha256()
        for t in (self.features, self.labels, self.edges, *(self.split_index[s] for s in SPLITS)):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def to(self, device: torch.device | str) -> Graph:
        return Graph(
            self.name,
            self.features.to(device),
            self.labels.to(device),
            self.edges.to(device),
            {s: i.to(device) for s, i in self.split_index.items()},
            self.num_classes,
        )


def mean_aggregation(edges: torch.Tensor, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``I + D^-1 A`` as a sparse (COO) matrix: row i averages the features of i's in-neighbours and adds i's own (a
    node without neighbours keeps its own features only)."""
    src, dst = edges.cpu()
    degree = torch.bincount(dst, minlength=n).clamp(min=1).to(torch.float32)
    loops = torch.arange(n)
    rows = torch.cat([dst, loops])
    cols = torch.cat([src, loops])
    values = torch.cat([1.0 / degree[dst], torch.ones(n)])
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=True)
    return coo.coalesce().to(device)


# --- offline graphs from images ---------------------------------------------------------------------------------


def pca_features(x: np.ndarray, dims: int) -> np.ndarray:
    """The first ``dims`` principal components of standardised pixels (by SVD, deterministic up to sign, which is
    fixed here: each component's largest-magnitude loading is positive), standardised again."""
    x = x.reshape(len(x), -1).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    dims = min(dims, x.shape[1])
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:dims]
    signs = np.sign(comps[np.arange(dims), np.abs(comps).argmax(1)])
    z = x @ (comps * signs[:, None]).T
    return ((z - z.mean(0)) / (z.std(0) + 1e-8)).astype(np.float32)


def knn_edges(features: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Each node's ``k`` nearest other nodes (Euclidean; ties broken by the lower index), made undirected:
    ``(2, E)`` source -> target with both directions, sorted, no duplicates or self loops."""
    x = torch.from_numpy(features).double()
    sq = (x * x).sum(1)
    n = len(x)
    targets = []
    for start in range(0, n, chunk):
        block = x[start : start + chunk]
        dist = sq[start : start + chunk, None] - 2 * block @ x.T + sq[None]
        dist[torch.arange(len(block)), torch.arange(start, start + len(block))] = float("inf")
        # stable sort: equal distances keep index order, so the graph does not depend on the chunking
        targets.append(torch.sort(dist, dim=1, stable=True).indices[:, :k])
    nearest = torch.cat(targets).numpy()
    src = np.repeat(np.arange(n), k)
    dst = nearest.reshape(-1)
    pairs = np.unique(np.concatenate([np.stack([src, dst], 1), np.stack([dst, src], 1)]), axis=0)
    return pairs.T.astype(np.int64)


def stratified_split(labels: np.ndarray, seed: int, shares: tuple[float, ...] = ARXIV_SHARES) -> dict[str, np.ndarray]:
    """Each class's nodes shuffled (seeded) and cut in ``shares``: train / valid / test node ids, sorted."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut1 = int(round(shares[0] * len(idx)))
        cut2 = cut1 + int(round(shares[1] * len(idx)))
        for s, part in zip(SPLITS, (idx[:cut1], idx[cut1:cut2], idx[cut2:]), strict=True):
            parts[s].append(part)
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def image_knn_graph(name: str, images: np.ndarray, labels: np.ndarray, settings: dict, subset_seed: int) -> Graph:
    """The offline graph: ``nodes_per_class`` images of every class (all when null), PCA features, kNN edges."""
    if settings["nodes_per_class"]:
        keep = balanced_subset(labels, settings["nodes_per_class"], subset_seed, "data.graph.nodes_per_class")
        images, labels = images[keep], labels[keep]
    features = pca_features(images, settings["features"])
    edges = knn_edges(features, settings["neighbours"])
    split = stratified_split(labels, subset_seed)
    t = torch.from_numpy
    return Graph(
        name,
        t(features),
        t(labels.astype(np.int64)),
        t(edges),
        {s: t(i.astype(np.int64)) for s, i in split.items()},
        int(labels.max() + 1),
    )


def load_arxiv(root: Path) -> Graph:
    """ogbn-arxiv through ``ogb`` (its download into ``root``), undirected as the authors made it; its time split."""
    try:
        from ogb.nodeproppred import NodePropPredDataset
    except ImportError:
        raise DataNotFoundError(
            "data.name ogbn-arxiv needs the ogb package; pip install ogb (the download then needs a network), or use "
            "an offline graph (data.name: fashion_mnist_knn or digits_knn)"
        ) from None
    try:
        dataset = NodePropPredDataset(name="ogbn-arxiv", root=str(root))
    except Exception as e:  # ogb raises whatever its download raised
        raise DataNotFoundError(
            f"ogbn-arxiv could not be loaded into {root} ({type(e).__name__}: {e}); it needs a network the first "
            "time, or use an offline graph (data.name: fashion_mnist_knn or digits_knn)"
        ) from None
    g, y = dataset[0]
    split = dataset.get_idx_split()
    src, dst = g["edge_index"]
    pairs = np.unique(np.concatenate([np.stack([src, dst], 1), np.stack([dst, src], 1)]), axis=0).T
    t = torch.from_numpy
    return Graph(
        "ogbn-arxiv",
        t(g["node_feat"].astype(np.float32)),
        t(y.reshape(-1).astype(np.int64)),
        t(pairs.astype(np.int64)),
        {s: torch.as_tensor(np.asarray(split[s]), dtype=torch.int64) for s in SPLITS},  # numpy, or torch if cached
        40,
    )


def load_graph(data_cfg: dict) -> Graph:
    """The graph a zoo config's ``data`` section names."""
    name = data_cfg["name"]
    settings = {**GRAPH_DEFAULTS, **(data_cfg.get("graph") or {})}
    root = Path(data_cfg["root"]) if data_cfg.get("root") else default_data_dir()
    if name == "ogbn-arxiv":
        return load_arxiv(root)
    if name == "fashion_mnist_knn":
        xtr, ytr, xte, yte = load_fashion_mnist(root)
    elif name == "digits_knn":
        xtr, ytr, xte, yte = load_digits()
    else:
        raise ConfigError(f"config field 'data.name': {name!r} is not a graph; one of {', '.join(GRAPH_DATASETS)}")
    images, labels = np.concatenate([xtr, xte]), np.concatenate([ytr, yte])
    return image_knn_graph(name, images, labels, settings, data_cfg.get("subset_seed", 0))


def is_graph_dataset(name: str) -> bool:
    return name in GRAPH_DATASETS
