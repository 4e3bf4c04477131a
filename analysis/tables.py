"""The paper's table layouts filled with our numbers, the paper's beside them where the setting matches."""

from __future__ import annotations

import math

import pandas as pd

from symzoo.analysis.metanets import EQUIVARIANT as EQUIVARIANT_METANETS
from symzoo.analysis.naming import in_paper_order, label
from symzoo.analysis.paper import TABLE3, TABLE3_LRS
from symzoo.analysis.stats import mean_std, pm, welch_t, wilcoxon_paired
from symzoo.analysis.verdicts import NOT_REPRODUCED, REPRODUCED, Verdict, outcome_of

METANET_LABELS = {
    "mlp": "MLP",
    "dmc": "DMC",
    "deepsets": "DeepSets",
    "statnn": "StatNN",
    "ridge": "Ridge (flat weights)",
    "gbt": "GBT (StatNN features)",
    "nfn_np": "NFN (NP)",
    "nfn_hnp": "NFN (HNP)",
    "gmn": "GMN",
}


def skipped_note(skipped: dict[str, dict[str, int]]) -> str:
    """ "skipped: standard: 2 diverged; W-Asym: none": what a stage left out, per variant and why."""
    per_variant = (
        f"{label(v)}: " + (", ".join(f"{n} {why}" for why, n in r.items()) or "none") for v, r in skipped.items()
    )
    return "skipped: " + "; ".join(per_variant)


def sample_note(sample: int | None, sample_seed: int, zoo, what: str) -> str:
    """Where a stage analysed a seeded sample (``sample`` option), how large and from how many; else nothing."""
    if sample is None:
        return ""
    return (
        f"a seeded sample (sample_seed {sample_seed}) of at most {sample} {what} per variant, "
        f"drawn from the zoo's {len(zoo.frame)} networks"
    )


def metanet_summary(final_runs: pd.DataFrame, metrics: tuple[str, str] = ("r2", "tau")) -> pd.DataFrame:
    """Per (metanet, variant): chosen hyperparameter, each test metric (R² and τ; accuracy and cross-entropy for
    the class target) mean +- std over seeds as ``{metric}`` and ``{metric}_std``, seeds counted (the first
    metric's finite values), runs, and whether the runs permuted their training networks."""
    rows = []
    for (metanet, variant), g in final_runs.groupby(["metanet", "variant"], sort=False):
        row = {
            "metanet": metanet,
            "variant": variant,
            "hparam_name": g["hparam_name"].iloc[0],
            "hparam": float(g["hparam"].iloc[0]),
        }
        for i, metric in enumerate(metrics):
            mean, std, n = mean_std(g[f"test_{metric}"])
            row |= {metric: mean, f"{metric}_std": std} | ({"seeds": n} if i == 0 else {})
        augment = bool(g["augment"].iloc[0]) if "augment" in g else False
        rows.append(row | {"runs": len(g), "augment": augment})
    return pd.DataFrame(rows)


def counts_lines(counts: dict[str, dict], variants: list[str], what: str = "networks") -> list[str]:
    """A table note per variant: how many networks (INRs) each split used, and which were dropped and why."""
    lines = []
    for v in variants:
        c = counts[v]
        dropped = ", ".join(f"{n} {why}" for why, n in c["dropped"].items()) or "none"
        lines.append(
            f"- {label(v)}: {c['used']} {what} used ({c['train']} train / {c['val']} val / {c['test']} test), "
            f"dropped: {dropped}"
        )
    return lines


TINY_TEST_SPLIT = 20  # fewer test networks than this: R^2 and Kendall tau swing with a handful of networks


def metanet_table(
    summary: pd.DataFrame,
    metanets: list[str],
    variants: list[str],
    with_paper: bool,
    counts: dict[str, dict[str, int]],
    notes: list[str],
    grids: dict[str, list[float]] | None = None,
    final: pd.DataFrame | None = None,
    control: list[str] | None = None,
) -> str:
    """Table 3's layout in Markdown: a row per metanet, R² / τ / chosen value per variant, the paper's rows below
    (marked as another setting unless the zoo is the paper's), flags, then a verdict per metanet computed from the
    runs (``final``) against the paper's direction, and ``control`` (``equivariant_control``) where run."""
    variants = in_paper_order(variants)
    header = ["metanet"]
    for v in variants:
        header += [f"{label(v)} R²", f"{label(v)} τ", f"{label(v)} chosen"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    edges = []
    for m in metanets:
        cells = [METANET_LABELS[m]]
        for v in variants:
            hit = summary[(summary["metanet"] == m) & (summary["variant"] == v)]
            if hit.empty:
                cells += ["not run", "", ""]
                continue
            s = hit.iloc[0]
            r2, tau = pm(s["r2"], s["r2_std"], n=s["seeds"]), pm(s["tau"], s["tau_std"], n=s["seeds"])
            if s["seeds"] < s["runs"]:
                r2 += f" ({s['runs'] - s['seeds']} of {s['runs']} seeds diverged)"
            chosen = f"{s['hparam_name']} {s['hparam']:g}"
            grid = (grids or {}).get(m)
            if grid and len(grid) > 1 and s["hparam"] in (min(grid), max(grid)):
                chosen += " ⚠ edge of grid"
                edges.append(f"{METANET_LABELS[m]} on {label(v)}")
            cells += [r2, tau, chosen]
        lines.append("| " + " | ".join(cells) + " |")
    setting = "" if with_paper else ", another setting"
    for m in (m for m in metanets if m in TABLE3):
        cells = [f"paper: {METANET_LABELS[m]} (CIFAR-10 ResNet8{setting})"]
        for v in variants:
            paper = TABLE3[m].get(v)
            lr = TABLE3_LRS.get(m, {}).get(v)
            cells += [pm(paper[0], paper[1]), pm(paper[2], paper[3]), f"lr {lr:g}"] if paper else ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += counts_lines(counts, variants)
    lines += [f"- ⚠ {w}" for w in metanet_warnings(counts, edges)]
    if final is not None:
        lines += [f"- verdict: {v.text}" for v in metanet_verdicts(final, metanets, variants, counts)]
    lines += [f"- equivariant control: {c}" for c in control or []]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def sample_errors(predictions: pd.DataFrame, samples: pd.DataFrame, metanet: str, variant: str) -> pd.Series:
    """Per test hyperparameter sample: the squared error of the predictions over the variance of the variant's
    test accuracies (their mean is 1 - R²: variants whose accuracies spread more are not penalised for it),
    averaged over seeds (as the table's R² is; an average of the seeds' predictions would credit a metanet whose
    seeds err in opposite directions) and the sample's networks (its replicates). Samples pair the variants: the
    split puts a sample on one side for all. Class predictions (an INR zoo): the error rate instead."""
    p = predictions[(predictions["metanet"] == metanet) & (predictions["variant"] == variant)]
    if "pred_class" in p.columns:
        wrong = (p["pred_class"] != p["true_class"]).astype(float).groupby(p["model_id"]).mean().rename("sq")
        return wrong.to_frame().join(samples.set_index("model_id")["sample"]).groupby("sample")["sq"].mean()
    variance = p.groupby("model_id")["true_acc"].first().var(ddof=0)
    sq = ((p["pred_acc"] - p["true_acc"]) ** 2 / variance).groupby(p["model_id"]).mean().rename("sq")
    return sq.to_frame().join(samples.set_index("model_id")["sample"]).groupby("sample")["sq"].mean()


def equivariant_control(
    predictions: pd.DataFrame, samples: pd.DataFrame, metanets: list[str], variants: list[str]
) -> list[str]:
    """The control the paper lacks: does an equivariant metanet on standard networks predict as well as the MLP
    metanet on W-Asym ones? And does it gain from W-Asym networks itself? Paired by test sample, Wilcoxon."""
    if not {"standard", "w_asym"} <= set(variants):
        return []
    out = []

    def compare(a: tuple[str, str], b: tuple[str, str]) -> str:
        ea, eb = sample_errors(predictions, samples, *a), sample_errors(predictions, samples, *b)
        both = ea.index.intersection(eb.index)
        ea, eb = ea.loc[both], eb.loc[both]
        p = wilcoxon_paired(ea, eb)
        name = {k: f"{METANET_LABELS[k[0]]} on {label(k[1])}" for k in (a, b)}
        wins = int((ea < eb).sum())
        error = (
            "error rate" if "pred_class" in predictions.columns else "squared error over the test accuracies' variance"
        )
        suffix = "" if "pred_class" in predictions.columns else " (1 - R²)"
        if math.isfinite(p):
            test = f"Wilcoxon signed-rank p = {p:.2g}"
        else:  # no test: every pair equal (e.g. two constant predictors), or too few pairs
            test = "no test sample differs" if len(both) and (ea == eb).all() else "too few samples to test"
        if math.isfinite(p) and p < 0.05:
            better = name[a] if ea.mean() < eb.mean() else name[b]
            outcome = f"{better} predicts better"
        else:
            outcome = "no significant difference"
        return (
            f"{name[a]} vs {name[b]}: {error} {ea.mean():.3f} vs {eb.mean():.3f}{suffix}, lower for the first on "
            f"{wins} of {len(both)} test samples ({test}): {outcome}"
        )

    for e in (m for m in metanets if m in EQUIVARIANT_METANETS):
        if "mlp" in metanets:
            out.append(compare((e, "standard"), ("mlp", "w_asym")))
        out.append(compare((e, "standard"), (e, "w_asym")))
    return out


def metanet_warnings(counts: dict[str, dict[str, int]], edges: list[str]) -> list[str]:
    """What makes a cell of the table unreliable: a tiny test split, accuracies that barely spread, a value chosen
    at the edge of its grid."""
    out = [f for v, c in counts.items() if (f := spread_flag(c, v))]
    tiny = {v: c["test"] for v, c in counts.items() if c["test"] < TINY_TEST_SPLIT}
    if tiny:
        sizes = ", ".join(f"{n} for {label(v)}" for v, n in tiny.items())
        out.append(
            f"test split of {sizes} networks: R² and Kendall τ on so few networks swing from run to run (with 2 "
            "networks τ is always ±1); train a zoo of at least 80 samples for numbers to compare"
        )
    if edges:
        out.append(
            f"chosen at the edge of its grid: {', '.join(edges)} (a ridge alpha at the top predicts nearly a "
            "constant, an lr at the bottom barely trains): widen the grid (metanet.lrs) before reading that cell"
        )
    return out


def metanet_verdicts(
    final: pd.DataFrame, metanets: list[str], variants: list[str], counts: dict | None = None
) -> list[Verdict]:
    """Per metanet with paper values: does W-Asym's R² exceed standard's, as in the paper? Welch's t-test over
    seeds where there are at least two per side; the direction alone otherwise. A variant whose test accuracies
    barely spread is flagged (``spread_flag``)."""
    out = []
    if not {"standard", "w_asym"} <= set(variants):
        return out
    flags = [f for v in ("standard", "w_asym") if (f := spread_flag((counts or {}).get(v), v, short=True))]
    for m in (m for m in metanets if m in TABLE3):
        runs = final[final["metanet"] == m]
        r2 = {v: runs.loc[runs["variant"] == v, "test_r2"] for v in ("standard", "w_asym")}
        (a, _, na), (b, _, nb) = mean_std(r2["standard"]), mean_std(r2["w_asym"])
        if not (na and nb):
            continue
        paper_gap = TABLE3[m]["w_asym"][0] - TABLE3[m]["standard"][0]
        _, p = welch_t(r2["w_asym"], r2["standard"])
        same = (b - a) * paper_gap > 0
        test = f"Welch p = {p:.2g}" if math.isfinite(p) else f"no test: {min(na, nb)} seed(s)"
        outcome = outcome_of(same, p)
        text = (
            f"{METANET_LABELS[m]}: W-Asym R² {b:.3f} vs standard {a:.3f} ({b - a:+.3f}; {test}); paper "
            f"{paper_gap:+.3f}: {'direction ' if outcome in (REPRODUCED, NOT_REPRODUCED) else ''}{outcome}"
        )
        paper = f"{TABLE3[m]['w_asym'][0]:.3f} vs {TABLE3[m]['standard'][0]:.3f}"
        out.append(
            Verdict(
                f"{METANET_LABELS[m]} metanet: W-Asym R² above standard",
                paper,
                f"{b:.3f} vs {a:.3f}",
                "Welch" if math.isfinite(p) else f"none: {min(na, nb)} seed(s)",
                p,
                outcome,
                "; ".join(flags),
                text,
            )
        )
    return out


LOW_SPREAD = 0.05  # test accuracies with a smaller std: R² divides by their variance and swings wildly


def spread_flag(count: dict | None, variant: str, short: bool = False) -> str:
    """Why a variant's R² means little: its test networks' accuracies hardly differ (R² is one minus the error over
    their variance: 0.96 ± 0.03 gave R² of -194 ± 118 in the README study, where Kendall τ still reads)."""
    if not count or "test_acc_std" not in count or count["test_acc_std"] >= LOW_SPREAD:
        return ""
    spread = f"{label(variant)} test accuracies {count['test_acc_mean']:.2f} ± {count['test_acc_std']:.2f}"
    return f"{spread}: R² unreliable" if short else f"{spread}: too little spread for R² to mean much; read τ"
