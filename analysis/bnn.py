"""Table 2 and Figure 4 of the paper (Bayesian networks, docs/paper.md §6) from a Bayesian zoo's stored history.

Everything here reads the zoo's frame only (``training.method: elrg`` zoos record per-epoch training NLL, test
NLL, accuracy and ECE of the posterior predictive): no network is evaluated again.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from symzoo.analysis.naming import label
from symzoo.analysis.paper import TABLE2, TABLE2_COLUMNS, TABLE2_LABELS
from symzoo.analysis.stats import mean_std, welch_t
from symzoo.analysis.verdicts import Verdict

HEADERS = {
    "train_loss": "train loss",
    "test_loss": "test loss",
    "test_ece": "ECE",
    "test_acc": "test acc (%)",
    "test_acc_half": "test acc (%), half the epochs",
}
DIGITS = {"train_loss": 3, "test_loss": 3, "test_ece": 3, "test_acc": 2, "test_acc_half": 2}


def at_epoch(history: np.ndarray | list, epoch: int) -> float:
    """A history's value after ``epoch`` epochs (1-based); NaN where the network did not get that far."""
    return float(history[epoch - 1]) if 1 <= epoch <= len(history) else math.nan


def per_network(frame: pd.DataFrame, epoch: int, half: int) -> pd.DataFrame:
    """One row per network: Table 2's columns at ``epoch`` (accuracies in %) and the test accuracy at ``half``;
    a diverged network keeps NaNs (it is counted, not averaged)."""
    rows = []
    for r in frame.itertuples(index=False):
        rows.append(
            {
                "model_id": r.model_id,
                "variant": r.variant,
                "replicate": r.replicate,
                "status": r.status,
                "train_loss": at_epoch(r.history_train_loss, epoch),
                "test_loss": at_epoch(r.history_test_loss, epoch),
                "test_ece": at_epoch(r.history_test_ece, epoch),
                "test_acc": 100 * at_epoch(r.history_test_acc, epoch),
                "test_acc_half": 100 * at_epoch(r.history_test_acc, half),
            }
        )
    return pd.DataFrame(rows)


def summary(networks: pd.DataFrame, variants: list[str]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """variant -> column -> (mean, std, n) over the variant's networks."""
    return {
        v: {c: mean_std(networks.loc[networks["variant"] == v, c]) for c in TABLE2_COLUMNS}
        for v in variants
        if (networks["variant"] == v).any()
    }


def better(column: str, a: tuple, b: tuple) -> int:
    """The paper's marking rule for one column of a pair: +1 where ``a`` is better than ``b`` by more than a
    standard deviation (the larger of the two), -1 where ``b`` is, 0 otherwise. Lower is better for losses and
    ECE, higher for accuracy."""
    (ma, sa, *_), (mb, sb, *_) = a, b
    if not (math.isfinite(ma) and math.isfinite(mb)):
        return 0
    sign = 1 if column.startswith("test_acc") else -1
    gap, spread = sign * (ma - mb), max(sa if math.isfinite(sa) else 0, sb if math.isfinite(sb) else 0)
    return 1 if gap > spread else -1 if -gap > spread else 0


def cell(column: str, stats: tuple, marked: bool) -> str:
    mean, std, *rest = stats
    if not math.isfinite(mean):
        return "n/a"
    digits = DIGITS[column]
    text = f"{mean:.{digits}f}" if (rest and rest[0] == 1) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"**{text}**" if marked else text


def marked_rows(stats: dict[str, dict[str, tuple]], name: str) -> list[list[str]]:
    """A pair's two rows with each column's better value in bold by the paper's rule (``better``)."""
    variants = list(stats)
    out = []
    for v in variants:
        other = next((o for o in variants if o != v), None)
        cells = []
        for c in TABLE2_COLUMNS:
            mark = other is not None and better(c, stats[v][c], stats[other][c]) > 0
            cells.append(cell(c, stats[v][c], mark))
        prefix = "" if v == "standard" else f"{label(v)} "
        out.append([f"{prefix}{name}", *cells])
    return out


def table2(networks: pd.DataFrame, variants: list[str], name: str, paper_row: str | None, epoch: int, half: int) -> str:
    """Table 2's layout for this zoo: its rows (mean ± std over instances), then the paper's for the same model."""
    ours = summary(networks, variants)
    head = [*(HEADERS[c] for c in TABLE2_COLUMNS)]
    head[-1] = f"test acc (%) at epoch {half}"
    lines = [
        f"| model ({epoch} epochs) | " + " | ".join(head) + " | networks |",
        "|---" * (len(head) + 2) + "|",
    ]
    counts = {v: int((networks["variant"] == v).sum()) for v in ours}
    for v, row in zip(ours, marked_rows(ours, name), strict=True):
        lines.append("| " + " | ".join(row) + f" | {counts[v]} |")
    if paper_row is not None:
        paper = {v: {c: (*TABLE2[paper_row][v][c], 10) for c in TABLE2_COLUMNS} for v in ("standard", "w_asym")}
        for row in marked_rows(paper, f"{TABLE2_LABELS[paper_row]}, paper (50 epochs; last: 25)"):
            lines.append("| " + " | ".join(row) + " | 10 |")
    return "\n".join(lines)


def verdicts(networks: pd.DataFrame, paper_row: str | None, name: str = "") -> list[Verdict]:
    """Does W-Asym's test accuracy exceed standard's, as in the paper's row? Welch's t-test over instances."""
    if not {"standard", "w_asym"} <= set(networks["variant"]):
        return []
    out = []
    for column, what in (("test_acc", "final test accuracy"), ("test_acc_half", "test accuracy at half time")):
        a = networks.loc[networks["variant"] == "standard", column]
        b = networks.loc[networks["variant"] == "w_asym", column]
        (ma, _, na), (mb, _, nb) = mean_std(a), mean_std(b)
        if not (na and nb):
            continue
        _, p = welch_t(b, a)
        test = f"Welch p = {p:.2g}" if math.isfinite(p) else f"no test: {min(na, nb)} instance(s) per side"
        text = f"{what}: W-Asym {mb:.2f}% vs standard {ma:.2f}% ({mb - ma:+.2f} points; {test})"
        paper, same = "no row for this model", mb > ma
        if paper_row is not None:
            t2 = TABLE2[paper_row]
            paper = f"{t2['w_asym'][column][0]:.2f}% vs {t2['standard'][column][0]:.2f}%"
            same = (mb - ma) * (t2["w_asym"][column][0] - t2["standard"][column][0]) > 0
        claim = f"BNN {name}: W-Asym {what} above standard".replace("  ", " ")
        verdict = Verdict.from_direction(claim, paper, f"{mb:.2f}% vs {ma:.2f}%", "Welch", p, same)
        out.append(dataclasses.replace(verdict, text=f"{text}; paper {paper}: {verdict.outcome}"))
    return out


def chance_note(networks: pd.DataFrame, num_classes: int) -> str:
    """Which variant's networks did not train (test accuracy within 5 points of chance), the paper's MLP-16 row."""
    chance = 100 / num_classes
    parts = []
    for v, group in networks.groupby("variant", sort=False):
        stuck = int((group["test_acc"] < chance + 5).sum())
        parts.append(f"{label(v)} {stuck} of {len(group)}")
    return f"networks within 5 points of chance ({chance:.0f}%) at the last epoch: " + ", ".join(parts)


def loss_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Long table of per-epoch training NLL: variant, model_id, epoch, train_loss (Figure 4's data)."""
    rows = [
        {"variant": r.variant, "model_id": r.model_id, "epoch": e + 1, "train_loss": float(v)}
        for r in frame.itertuples(index=False)
        for e, v in enumerate(r.history_train_loss)
    ]
    return pd.DataFrame(rows, columns=["variant", "model_id", "epoch", "train_loss"])
