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

# Table 1 midpoint test-loss barriers: setting -> (standard, Git Re-Basin, sigma-Asym, W-Asym). Re-Basin is weight
# matching in the MLP and ResNet rows and activation matching in the GNN row (the authors' gnn/main_arxiv.py).
TABLE1: dict[str, tuple[float, float, float, float]] = {
    "mlp_mnist": (0.188, -0.006, 0.117, -0.012),
    "resnet20_cifar10": (3.287, 2.041, 2.521, 0.934),
    "resnet20x8_cifar10": (2.640, 0.509, 1.492, 0.031),
    "gnn_arxiv": (1.475, 0.269, 0.901, 0.095),
}
# Appendix A on the GNNs (ogbn-arXiv, docs/paper.md §7): distance per parameter between replicates and their barrier,
# and train / validation accuracy (%), per variant (the paper gives no sigma-Asym distance).
APPENDIX_A_GNN: dict[str, dict[str, float]] = {
    "standard": {"distance": 0.000174, "barrier": 1.448, "train_acc": 84.6, "valid_acc": 71.6},
    "sigma_asym": {"train_acc": 70.8, "valid_acc": 70.1},
    "w_asym": {"distance": 0.000159, "barrier": 0.069, "train_acc": 70.7, "valid_acc": 70.06},
}


# Table 2 (Bayesian networks, 10 instances each, 50 epochs): row -> variant -> column -> (mean, std); test
# accuracies in %, the last after 25 epochs.
TABLE2_COLUMNS = ("train_loss", "test_loss", "test_ece", "test_acc", "test_acc_half")
_T2 = {
    "mlp8": (
        ((1.34, 0.00), (1.24, 0.01), (0.039, 0.009), (56.37, 0.31), (52.87, 0.2)),
        ((1.31, 0.01), (1.22, 0.01), (0.042, 0.009), (57.08, 0.50), (54.15, 0.2)),
    ),
    "mlp16": (
        ((2.29, 0.02), (2.28, 0.03), (0.026, 0.017), (13.54, 2.0), (13.34, 2.7)),
        ((1.39, 0.01), (1.27, 0.01), (0.045, 0.009), (55.16, 0.44), (51.42, 0.3)),
    ),
    "resnet20": (
        ((0.596, 0.01), (0.535, 0.03), (0.045, 0.007), (81.98, 1.2), (72.37, 1.0)),
        ((0.600, 0.02), (0.535, 0.01), (0.044, 0.004), (81.94, 0.6), (73.64, 1.5)),
    ),
    "resnet110": (
        ((0.803, 0.08), (0.706, 0.08), (0.052, 0.007), (75.71, 2.8), (59.85, 3.9)),
        ((0.745, 0.07), (0.658, 0.06), (0.049, 0.004), (77.40, 2.4), (63.20, 3.0)),
    ),
    "resnet20_bn_cifar100": (
        ((1.68, 0.03), (1.57, 0.02), (0.078, 0.004), (56.83, 0.62), (46.80, 0.9)),
        ((1.62, 0.02), (1.50, 0.03), (0.076, 0.006), (58.40, 0.62), (49.29, 0.4)),
    ),
    "resnet20_ln_cifar100": (
        ((1.97, 0.02), (1.88, 0.02), (0.090, 0.007), (50.02, 0.54), (37.24, 1.1)),
        ((1.91, 0.03), (1.82, 0.02), (0.086, 0.006), (51.20, 0.47), (39.03, 1.0)),
    ),
}
TABLE2_VARIANTS = ("standard", "w_asym")
TABLE2: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    row: {v: dict(zip(TABLE2_COLUMNS, cells, strict=True)) for v, cells in zip(TABLE2_VARIANTS, pair, strict=True)}
    for row, pair in _T2.items()
}
TABLE2_LABELS = {
    "mlp8": "MLP-8",
    "mlp16": "MLP-16",
    "resnet20": "ResNet20",
    "resnet110": "ResNet110",
    "resnet20_bn_cifar100": "ResNet20 (BN, CIFAR-100)",
    "resnet20_ln_cifar100": "ResNet20 (LN, CIFAR-100)",
}


def table2_row(config: dict) -> str | None:
    """The Table 2 row a Bayesian zoo's networks are (same model on the paper's data), else None. The paper's
    CIFAR-100 rows are ResNet20s at width 2 with a standard last layer; symzoo's ResNets are its "LN" row."""
    model, data = config["model"], config["data"]
    if data["size"] not in (None, 32):
        return None
    if data["name"] == "cifar100":
        wide = model["arch"] == "resnet20" and model["width"] == 2 and not model.get("fixed_head", True)
        return "resnet20_ln_cifar100" if wide else None
    if data["name"] != "cifar10":
        return None
    if model["arch"] == "bnn_mlp" and model.get("depth") in (8, 16) and model.get("hidden") in (None, 256):
        return f"mlp{model['depth']}"
    if model["arch"] in ("resnet20", "resnet110") and model["width"] == 1:
        return model["arch"]
    return None


def is_paper_resnet8_zoo(config: dict) -> bool:
    """Table 3 and 4 compare with CIFAR-10 ResNet8 zoos at full resolution only."""
    data = config["data"]
    return config["model"]["arch"] == "resnet8" and data["name"] == "cifar10" and data["size"] in (None, 32)


# The INR classification benchmarks (not the paper's: it has no INR experiment): test accuracy (%) of metanets
# classifying the image a SIREN fits, on the downloaded MNIST / Fashion-MNIST INR zoos (one standard SIREN
# 2 -> 32 -> 32 -> 1 per image, 55,000 / 5,000 / 10,000 images), as DWSNets (Navon et al. 2023), NFN (Zhou et al.
# 2023) and ScaleGMN (Kalogeropoulos et al. 2024) report them. docs/paper.md §8.
INR_PUBLISHED: dict[str, dict[str, float]] = {
    "fashion_mnist": {"DWSNets": 67.1, "NFN": 75.6, "ScaleGMN": 80.8},
    "mnist": {"DWSNets": 85.7, "NFN": 92.9, "ScaleGMN": 96.6},
}
