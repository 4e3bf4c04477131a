"""One name and one colour per variant (and LMC method) in every table and figure, as the paper writes them."""

from __future__ import annotations

METHOD_LABELS = {
    "standard": "standard",
    "standard+rebasin": "standard + Git Re-Basin",
    "standard+activations": "standard + Re-Basin (activations)",
    "sigma_asym": "σ-Asym",
    "w_asym": "W-Asym",
}
# matplotlib's tab10 blue, green, orange, purple: the same variant is the same colour in every figure
COLORS = {
    "standard": "#1f77b4",
    "standard+rebasin": "#9467bd",
    "standard+activations": "#8c564b",
    "sigma_asym": "#2ca02c",
    "w_asym": "#ff7f0e",
}
PAPER_ORDER = ("standard", "sigma_asym", "w_asym")  # the paper's rows in Table 4, columns in Table 1


def label(variant: str) -> str:
    """The printed name of a variant or LMC method (unknown names print as they are)."""
    return METHOD_LABELS.get(variant, variant)


def color(variant: str) -> str:
    return COLORS.get(variant, "#7f7f7f")


def in_paper_order(variants) -> list[str]:
    """Variants in the paper's order (standard, σ-Asym, W-Asym), others after them as given."""
    variants = list(dict.fromkeys(variants))
    return [v for v in PAPER_ORDER if v in variants] + [v for v in variants if v not in PAPER_ORDER]
