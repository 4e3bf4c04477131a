"""The paper's own numbers (docs/paper.md §2-5), printed beside ours in every table."""

from __future__ import annotations

# Mean train / test accuracy (%) of the paper's CIFAR-10 ResNet8 zoos (§2); the paper gives none for sigma-Asym.
ZOO_ACCURACY: dict[str, tuple[float, float]] = {
    "standard": (74.8, 73.8),
    "w_asym": (64.0, 64.0),
    "sigma_asym": (float("nan"), float("nan")),
}

# Table 3 (CIFAR-10 ResNet8 zoos): metanet -> variant -> (R^2 mean, std, tau mean, std)
TABLE3: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "mlp": {"standard": (-0.171, 0.11, 0.311, 0.02), "w_asym": (0.594, 0.12, 0.864, 0.01)},
    "dmc": {"standard": (0.950, 0.01, 0.787, 0.02), "w_asym": (0.967, 0.01, 0.911, 0.01)},
    "deepsets": {"standard": (0.855, 0.01, 0.617, 0.03), "w_asym": (0.936, 0.00, 0.858, 0.00)},
    "statnn": {"standard": (0.976, 0.00, 0.866, 0.00), "w_asym": (0.978, 0.00, 0.935, 0.01)},
}
# The authors' chosen metanet LRs (their Table 9 / scripts), standard / W-Asym.
TABLE3_LRS: dict[str, dict[str, float]] = {
    "mlp": {"standard": 1e-4, "w_asym": 1e-4},
    "dmc": {"standard": 1e-3, "w_asym": 5e-3},
    "deepsets": {"standard": 1e-2, "w_asym": 5e-3},
    "statnn": {"standard": 1e-3, "w_asym": 1e-2},
}

# Table 4 (300 CIFAR-10 ResNet8s per family): metric -> variant -> (mean, std); monotonic as a fraction.
TABLE4: dict[str, dict[str, tuple[float, float | None]]] = {
    "delta": {"standard": (0.079, 0.109), "sigma_asym": (0.004, 0.047), "w_asym": (-0.027, 0.026)},
    "monotonic": {"standard": (0.263, None), "sigma_asym": (0.873, None), "w_asym": (1.0, None)},
    "local_convexity": {"standard": (0.548, 0.139), "sigma_asym": (0.675, 0.143), "w_asym": (0.769, 0.165)},
    "global_convexity": {"standard": (0.823, 0.229), "sigma_asym": (0.976, 0.098), "w_asym": (1.0, 0.0)},
}

# Table 1 midpoint test-loss barriers: setting -> (standard, Git Re-Basin, sigma-Asym, W-Asym).
TABLE1: dict[str, tuple[float, float, float, float]] = {
    "mlp_mnist": (0.188, -0.006, 0.117, -0.012),
    "resnet20_cifar10": (3.287, 2.041, 2.521, 0.934),
    "resnet20x8_cifar10": (2.640, 0.509, 1.492, 0.031),
    "gnn_arxiv": (1.475, 0.269, 0.901, 0.095),
}


def is_paper_resnet8_zoo(config: dict) -> bool:
    """Table 3 and 4 compare with CIFAR-10 ResNet8 zoos at full resolution only."""
    data = config["data"]
    return config["model"]["arch"] == "resnet8" and data["name"] == "cifar10" and data["size"] in (None, 32)
