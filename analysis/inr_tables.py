"""The INR classification table: which image a SIREN fits, read from its weights, per metanet and variant.

The paper has no INR experiment; its question carried there is whether a plain MLP metanet on W-Asym (or
sigma-Asym) INRs classifies as well as an equivariant metanet on standard ones. The published rows are the INR
benchmarks' (``analysis.paper.INR_PUBLISHED``): standard SIRENs only, full-size downloaded zoos, GPU-sized metanets.
"""

from __future__ import annotations

import math

import pandas as pd

from symzoo.analysis.naming import in_paper_order, label
from symzoo.analysis.paper import INR_PUBLISHED, TABLE3
from symzoo.analysis.stats import mean_std, pm, welch_t
from symzoo.analysis.tables import counts_lines
from symzoo.analysis.verdicts import Verdict, outcome_of


def classification_table(
    summary: pd.DataFrame,
    metanets: list[str],
    variants: list[str],
    labels: dict[str, str],
    dataset: str,
    counts: dict[str, dict],
    notes: list[str],
    verdicts: list[Verdict],
    control: list[str],
) -> str:
    """A row per metanet: test accuracy (%) and cross-entropy per variant, the chosen lr (``+ perm`` where its
    training networks were permuted); the INR benchmarks' published rows for the dataset below."""
    variants = in_paper_order(variants)
    header = ["metanet"]
    for v in variants:
        header += [f"{label(v)} acc. (%)", f"{label(v)} test CE", f"{label(v)} chosen"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in metanets:
        cells = [labels[m]]
        for v in variants:
            hit = summary[(summary["metanet"] == m) & (summary["variant"] == v)]
            if hit.empty:
                cells += ["not run", "", ""]
                continue
            s = hit.iloc[0]
            acc = pm(100 * s["accuracy"], 100 * s["accuracy_std"], digits=1, n=s["seeds"])
            if s["seeds"] < s["runs"]:
                acc += f" ({s['runs'] - s['seeds']} of {s['runs']} seeds diverged)"
            chosen = f"lr {s['hparam']:g}" + (" + perm" if s["augment"] else "")
            cells += [acc, pm(s["nll"], s["nll_std"], n=s["seeds"]), chosen]
        lines.append("| " + " | ".join(cells) + " |")
    published = INR_PUBLISHED.get(dataset)
    for name, value in (published or {}).items():  # standard SIRENs: in the standard column, or named
        cells = [f"published: {name} (standard SIRENs, full downloaded zoo)"]
        for v in variants:
            cells += [f"{value:.1f}" if v == "standard" else "", "", ""]
        if "standard" not in variants:
            cells[0] += f": {value:.1f}"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if published is None:
        lines.append(f"- no published INR benchmark on {dataset} ({', '.join(INR_PUBLISHED)} have one)")
    lines += counts_lines(counts, variants, "INRs")
    lines += [f"- verdict: {v.text}" for v in verdicts]
    lines += [f"- equivariant control: {c}" for c in control]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def classification_verdicts(
    final: pd.DataFrame, metanets: list[str], variants: list[str], labels: dict[str, str]
) -> list[Verdict]:
    """Per metanet: does W-Asym's test accuracy exceed standard's, as W-Asym's R² exceeded standard's in the
    paper's Table 3 (where the paper has that metanet; the direction it predicts)? Welch's t over seeds."""
    if not {"standard", "w_asym"} <= set(variants):
        return []
    out = []
    for m in metanets:
        runs = final[final["metanet"] == m]
        acc = {v: runs.loc[runs["variant"] == v, "test_accuracy"] for v in ("standard", "w_asym")}
        (a, _, na), (b, _, nb) = mean_std(acc["standard"]), mean_std(acc["w_asym"])
        if not (na and nb):
            continue
        _, p = welch_t(acc["w_asym"], acc["standard"])
        paper = (
            f"Table 3 R² {TABLE3[m]['w_asym'][0]:.3f} vs {TABLE3[m]['standard'][0]:.3f} (classifier zoos)"
            if m in TABLE3
            else "not in the paper; the direction of its Table 3"
        )
        test = "Welch" if math.isfinite(p) else f"none: {min(na, nb)} seed(s)"
        p_text = f"Welch p = {p:.2g}" if math.isfinite(p) else f"no test: {min(na, nb)} seed(s)"
        text = (
            f"{labels[m]}: W-Asym accuracy {100 * b:.1f}% vs standard {100 * a:.1f}% ({100 * (b - a):+.1f} points; "
            f"{p_text}): {outcome_of(b > a, p)}"
        )
        claim = f"{labels[m]} metanet: W-Asym INRs classified better than standard ones"
        ours = f"{100 * b:.1f}% vs {100 * a:.1f}%"
        out.append(Verdict.from_direction(claim, paper, ours, test, p, b > a, text=text))
    return out
