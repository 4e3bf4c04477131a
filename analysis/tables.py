"""The paper's table layouts filled with our numbers, the paper's beside them where the setting matches."""

from __future__ import annotations

import pandas as pd

from symzoo.analysis.paper import TABLE3, TABLE3_LRS
from symzoo.analysis.stats import mean_std, pm

METANET_LABELS = {
    "mlp": "MLP",
    "dmc": "DMC",
    "deepsets": "DeepSets",
    "statnn": "StatNN",
    "ridge": "Ridge (flat weights)",
    "gbt": "GBT (StatNN features)",
}


def skipped_note(skipped: dict[str, dict[str, int]]) -> str:
    """ "skipped: standard: 2 diverged; w_asym: none": what a stage left out, per variant and why."""
    per_variant = (f"{v}: " + (", ".join(f"{n} {why}" for why, n in r.items()) or "none") for v, r in skipped.items())
    return "skipped: " + "; ".join(per_variant)


def sample_note(opts: dict, zoo, what: str) -> str:
    """Where a stage analysed a seeded sample (``sample`` option), how large and from how many; else nothing."""
    if opts.get("sample") is None:
        return ""
    return (
        f"a seeded sample (sample_seed {opts['sample_seed']}) of at most {opts['sample']} {what} per variant, "
        f"drawn from the zoo's {len(zoo.frame)} networks"
    )


def metanet_summary(final_runs: pd.DataFrame) -> pd.DataFrame:
    """Per (metanet, variant): chosen hyperparameter, test R^2 and tau mean +- std over seeds, and seeds counted."""
    rows = []
    for (metanet, variant), g in final_runs.groupby(["metanet", "variant"], sort=False):
        r2, r2_sd, n = mean_std(g["test_r2"])
        tau, tau_sd, _ = mean_std(g["test_tau"])
        rows.append(
            {
                "metanet": metanet,
                "variant": variant,
                "hparam_name": g["hparam_name"].iloc[0],
                "hparam": float(g["hparam"].iloc[0]),
                "r2": r2,
                "r2_std": r2_sd,
                "tau": tau,
                "tau_std": tau_sd,
                "seeds": n,
                "runs": len(g),
            }
        )
    return pd.DataFrame(rows)


def metanet_table(
    summary: pd.DataFrame,
    metanets: list[str],
    variants: list[str],
    with_paper: bool,
    counts: dict[str, dict[str, int]],
    notes: list[str],
) -> str:
    """Table 3's layout in Markdown: a row per metanet, R^2 / tau / chosen LR per variant."""
    header = ["metanet"]
    for v in variants:
        header += [f"{v} R^2", f"{v} tau", f"{v} LR"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in metanets:
        cells = [METANET_LABELS[m]]
        for v in variants:
            hit = summary[(summary["metanet"] == m) & (summary["variant"] == v)]
            if hit.empty:
                cells += ["not run", "", ""]
                continue
            s = hit.iloc[0]
            r2, tau = pm(s["r2"], s["r2_std"]), pm(s["tau"], s["tau_std"])
            if s["seeds"] < s["runs"]:
                r2 += f" ({s['runs'] - s['seeds']} of {s['runs']} seeds diverged)"
            paper = TABLE3.get(m, {}).get(v) if with_paper else None
            if paper:
                r2 += f" (paper {pm(paper[0], paper[1])})"
                tau += f" (paper {pm(paper[2], paper[3])})"
            lr = f"{s['hparam_name']} {s['hparam']:g}"
            paper_lr = TABLE3_LRS.get(m, {}).get(v) if with_paper else None
            if paper_lr:
                lr += f" (paper {paper_lr:g})"
            cells += [r2, tau, lr]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for v in variants:
        c = counts[v]
        dropped = ", ".join(f"{n} {why}" for why, n in c["dropped"].items()) or "none"
        lines.append(
            f"- {v}: {c['used']} networks used ({c['train']} train / {c['val']} val / {c['test']} test), "
            f"dropped: {dropped}"
        )
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
