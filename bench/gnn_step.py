"""How a GNN zoo's message passing is computed: one sparse-dense product (``I + D^-1 A``, zoo/graph.py) against
torch-geometric's ``SimpleConv(aggr='mean', combine_root='sum')``, the authors' layer.

    python bench/gnn_step.py [--nodes-per-class 1000] [--steps 20]

Builds the offline Fashion-MNIST graph of configs/fashion_gnn_lmc.yaml, checks that both aggregations give the same
features (max difference printed), then times, best of three, a full training step of the paper's GNN (forward on
every node, loss on the training nodes, backward, AdamW) with each: seconds per step and the ratio
torch-geometric / sparse (above 1: the sparse product is faster). torch-geometric is the ``[equivariant]`` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes-per-class", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    from torch_geometric.nn import SimpleConv
    from weight_encoding import best_of

    from symzoo.zoo.graph import load_graph
    from symzoo.zoo.models import build

    torch.set_num_threads(1)  # as a Ray worker with cpus_per_task: 1
    graph = load_graph({"name": "fashion_mnist_knn", "root": None, "graph": {"nodes_per_class": args.nodes_per_class}})
    conv = SimpleConv(aggr="mean", combine_root="sum")
    edge_index = graph.edges  # source -> target, as torch-geometric reads it
    x = graph.features
    diff = (torch.sparse.mm(graph.aggregate, x) - conv(x, edge_index)).abs().max().item()

    def step_with(aggregate_fn):
        model = build("gnn", "standard", graph.in_shape, graph.num_classes, init_seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0)
        idx, y = graph.nodes("train")
        original = torch.sparse.mm

        def run():
            torch.sparse.mm = aggregate_fn  # the only place GraphLayer touches the graph
            try:
                for _ in range(args.steps):
                    loss = torch.nn.functional.cross_entropy(model(graph.features, graph.aggregate)[idx], y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            finally:
                torch.sparse.mm = original

        return best_of(run) / args.steps

    sparse = step_with(torch.sparse.mm)
    pyg = step_with(lambda _aggregate, features: conv(features, edge_index))
    n, e = len(graph.labels), graph.edges.shape[1]
    print(f"graph: {n} nodes, {e} directed edges, {graph.in_shape[0]} features; one thread")
    print(f"aggregations agree to {diff:.2e}")
    print(f"training step, sparse product (symzoo):       {sparse * 1e3:8.1f} ms")
    print(f"training step, torch-geometric SimpleConv:    {pyg * 1e3:8.1f} ms")
    print(f"ratio torch-geometric / sparse: {pyg / sparse:.2f}")
    print(f"500 epochs (the paper's): {500 * sparse:.0f} s per network with the sparse product")


if __name__ == "__main__":
    main()
