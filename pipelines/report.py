"""The study's report: the zoo, Tables 3, 4 and 1 beside the paper's, figures, what was dropped, timings.

Built from stored outputs alone (``symzoo report DIR`` rebuilds it without training): ``report.md`` links the
figures; ``report.html`` embeds them (base64), so it opens from disk with no server.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path, PurePosixPath

import pandas as pd
import yaml

from symzoo.analysis import appendix_a
from symzoo.analysis.naming import label
from symzoo.analysis.paper import is_paper_resnet8_zoo
from symzoo.analysis.plots import plot_accuracy
from symzoo.analysis.verdicts import COLUMNS, NOT_REPRODUCED, REPRODUCED, verdict_frame, verdict_table
from symzoo.pipelines.registry import STAGES
from symzoo.zoo.info import summarise_test_accuracy
from symzoo.zoo.location import Location, atomic_write_bytes, is_within
from symzoo.zoo.parquet_io import read_parquet
from symzoo.zoo.store import Zoo

REWRITE = "delete it and rerun that stage"  # a damaged verdicts.parquet
RERUN_LMC = "delete it and rerun `symzoo lmc`"

CITATION = (
    'Reproducing Lim, Putterman, Walters, Maron and Jegelka, "The Empirical Impact of Neural Parameter Symmetries, '
    "or Lack Thereof\" (NeurIPS 2024): its Tables 3, 4, 1 and 2 and its section 5.5 on this zoo, with the paper's "
    "numbers beside ours."
)


def zoo_section(zoo: Zoo, figure: Path) -> str:
    """Counts by variant and status, accuracy summaries, the accuracy figure, the config and its hash."""
    frame, m = zoo.frame, zoo.manifest
    counts = frame.pivot_table(index="variant", columns="status", values="model_id", aggfunc="count", fill_value=0)
    acc = summarise_test_accuracy(frame, zoo.config["hyperparameters"])
    counts, acc = (t.rename(index=label).rename_axis("variant") for t in (counts, acc))
    plot_accuracy(frame, figure, zoo.config["name"])
    dropped = frame[frame["status"] != "ok"]
    reasons = dropped.groupby(["variant", "status", "reason"]).size().reset_index(name="networks")
    lines = [
        "## The zoo",
        "",
        f"- {zoo.config['name']}: {len(frame)} networks, {zoo.config['model']['arch']} on "
        f"{zoo.config['data']['name']} {tuple(m['in_shape'])}, {zoo.n_params} parameters per network",
        f"- config hash `{m['config_hash']}`, data fingerprint `{m['dataset_fingerprint']}`, symzoo "
        f"{m['symzoo_version']}, {'complete' if m.get('complete') else 'incomplete'}",
        "",
        "Networks by variant and status:",
        "",
        _frame_md(counts.reset_index()),
        "",
        "Test accuracy of finished networks (stratified_mean: the mean over the quartiles of lr x wd under the "
        "config's distributions, each weighted by its population share; NaN while a quartile holds no network):",
        "",
        _frame_md(acc.reset_index()),
        "",
        f"![accuracy by variant and learning rate]({figure.name})",
        "",
    ]
    if len(reasons):
        lines += ["Dropped networks (never fatal; left out of every analysis):", "", _frame_md(reasons), ""]
    else:
        lines += ["No network diverged or failed.", ""]
    cfg_text = yaml.safe_dump(zoo.config, sort_keys=False)
    lines += ["The resolved config:", "", "```", cfg_text.rstrip(), "```", ""]
    return "\n".join(lines)


def _frame_md(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(str(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join(rows)


def stage_section(stage: str, stage_dir: Path, report_dir: Path) -> str:
    """A stage's table (demoted one heading level) and its figures, linked relative to the report."""
    table = (stage_dir / "table.md").read_text()
    table = re.sub(r"^# .*\n", "", table)  # the stage's own title; the section has one
    table = re.sub(r"^### ", "#### ", table, flags=re.M)
    figures = sorted((stage_dir / "figures").glob("*.png"))
    lines = [f"## {STAGES[stage].title}", "", table.strip(), ""]
    lines += [f"![{f.stem}]({f.relative_to(report_dir).as_posix()})" for f in figures]
    return "\n".join(lines) + "\n"


def headlines(out: Path, stages: list[str]) -> list[str]:
    """Each stage's computed verdicts and warnings, from its table.md: the study's findings in a few lines."""
    lines = []
    for stage in stages:
        table = out / stage / "table.md"
        if not table.exists():
            continue
        for line in table.read_text().splitlines():
            if line.startswith(("- verdict", "- ⚠ ")):
                lines.append(f"{stage}: {line[2:]}")
    return lines


def stage_verdicts(out: Path, stages: list[str]) -> pd.DataFrame:
    """Every stage's ``verdicts.parquet`` (what its table's verdict lines say, as records), with its stage."""
    frames = []
    for stage in stages:
        path = out / stage / "verdicts.parquet"
        if path.exists():
            frames.append(read_parquet(path, REWRITE).to_pandas().assign(stage=stage))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*COLUMNS, "stage"])


def summary_section(out: Path, stages: list[str], more: pd.DataFrame | None = None) -> str:
    """The study at a glance: one table of the paper's claims as checked here (claim, paper, this zoo, test, p,
    verdict; ``more``: the report's own, §5.5), then each stage's warnings."""
    verdicts = stage_verdicts(out, stages)
    if more is not None and len(more):
        verdicts = pd.concat([verdicts, more], ignore_index=True)
    warnings = [h for h in headlines(out, stages) if ": ⚠ " in h]
    untabled = [  # stages whose outputs predate verdicts.parquet: their verdict lines as they are
        h
        for h in headlines(out, stages)
        if ": verdict" in h and not (out / h.split(":")[0] / "verdicts.parquet").exists()
    ]
    if verdicts.empty and not warnings and not untabled:
        return ""
    lines = ["## Summary: the paper's claims, checked", ""]
    if len(verdicts):
        lines += [verdict_table(verdicts), ""]
        counts = verdicts["outcome"].value_counts()
        lines += [
            f"{counts.get(REPRODUCED, 0)} of {len(verdicts)} claims reproduced (same direction, p < 0.05), "
            f"{counts.get(NOT_REPRODUCED, 0)} not reproduced, the rest pointing the paper's way without "
            "significance or a test. Each is computed from the stage's numbers; ⚠ marks a cell to distrust.",
            "",
        ]
    if untabled:
        lines += [*(f"- {h}" for h in untabled), ""]
    if warnings:
        lines += ["Warnings:", "", *[f"- {w}" for w in warnings]]
    return "\n".join(lines) + "\n"


def appendix_a_section(out: Path, zoo: Zoo) -> tuple[str, pd.DataFrame]:
    """§5.5 / Appendix A of the paper on this zoo (``analysis.appendix_a``), and its verdicts for the summary."""
    barriers_path = out / "lmc" / "barriers.parquet"
    barriers = read_parquet(barriers_path, RERUN_LMC).to_pandas() if barriers_path.exists() else None
    text, verdicts = appendix_a.section(zoo, barriers, is_paper_resnet8_zoo(zoo.config))
    heading = "## Training and generalisation (paper §5.5, Appendix A)"
    return f"{heading}\n\n{text}", verdict_frame(verdicts).assign(stage="zoo")


def timings_section(timings: dict[str, dict]) -> str:
    lines = ["## How long each stage took", "", "| stage | seconds | where | finished |", "|---|---|---|---|"]
    for stage, t in timings.items():
        lines.append(
            f"| {stage} | {t.get('seconds', float('nan')):.0f} | {t.get('where', '')} | {t.get('finished', '')} |"
        )
    lines += ["", "Seconds are those of the call that completed each stage (a resumed stage counts its last call)."]
    return "\n".join(lines) + "\n"


def _environment_line(env: dict | None) -> str:
    if not env:
        return "not recorded (the zoo predates symzoo recording it)"
    gpus = ", ".join(env.get("gpus") or []) or "no GPU"
    packages = ", ".join(f"{k} {env.get(k)}" for k in ("torch", "numpy", "pyarrow", "ray", "scikit-learn"))
    return (
        f"symzoo {env.get('symzoo')} at commit `{env.get('git_commit') or 'unknown (no git checkout)'}`, Python "
        f"{env.get('python')}, {packages}; {env.get('cpu')} ({env.get('cpus')} CPUs), {gpus}; {env.get('platform')}"
    )


def reproducibility_section(zoo: Zoo, stages: list[str], timings: dict[str, dict]) -> str:
    """Where and with what the zoo was trained and the report built, every seed, and what rerunning gives."""
    from symzoo.zoo.environment import describe_environment

    cfg = zoo.config
    lines = [
        "## Reproducing this study",
        "",
        f"- zoo generated with: {_environment_line(zoo.manifest.get('environment'))}",
        f"- report built with: {_environment_line(describe_environment())}",
        f"- seeds: zoo seed {cfg['seed']} (hyperparameter draws, init seeds and data order, W-Asym masks, "
        f"sigma-Asym F), data subset seed {cfg['data']['subset_seed']}",
    ]
    for stage in stages:
        options = timings.get(stage, {}).get("options", {})
        if options:
            named = ", ".join(f"{k} {options.get(k)}" for k in STAGES[stage].seed_options)
            lines.append(f"- {stage}: {named}")
    lines += [
        f"- config hash `{zoo.manifest['config_hash']}` (the config is printed above); rerun with `symzoo run "
        "<that config> --out <new dir>`",
        "- what is bit-identical: the same config and seed give the same zoo, bit for bit, on the same CPU model, "
        "torch build and `cpus_per_task` (thread counts change float rounding, which a few chaotic networks "
        "amplify); another CPU model or a GPU gives another draw of the same distribution, so compare tables, not "
        "networks. Analysis stages are deterministic given the zoo and their options on the same machine.",
        "",
    ]
    return "\n".join(lines)


def build_report(out: Path, zoo: Zoo, stages: list[str], timings: dict[str, dict]) -> tuple[Path, Path]:
    """Write ``report.md`` and the self-contained ``report.html`` into ``out``; returns both paths."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    parts = [f"# symzoo study: {zoo.config['name']}", "", CITATION, ""]
    appendix, appendix_verdicts = appendix_a_section(out, zoo)
    if summary := summary_section(out, stages, appendix_verdicts):
        parts.append(summary)
    parts.append(zoo_section(zoo, figures / "zoo_accuracy.png"))
    parts[-1] = parts[-1].replace("](zoo_accuracy.png)", "](figures/zoo_accuracy.png)")
    parts.append(appendix)
    for stage in stages:
        if (out / stage / "table.md").exists():
            parts.append(stage_section(stage, out / stage, out))
        else:
            parts.append(f"## {STAGES[stage].title}\n\nNot run yet: rerun `symzoo run` to finish it.\n")
    parts.append(timings_section(timings))
    parts.append(reproducibility_section(zoo, stages, timings))
    md = "\n".join(parts)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_bytes(md_path, md.encode())  # by rename: a link at the path is replaced, never written through
    atomic_write_bytes(html_path, markdown_to_html(md, out, title=f"symzoo study: {zoo.config['name']}").encode())
    return md_path, html_path


def embeddable(base: Location, name: str) -> bool:
    """Only PNG figures inside the study are embedded: a table that names ``/etc/hostname`` or ``../x.png`` (a
    stage output from elsewhere, a shared study) must not carry other files into a report meant to be shared."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or relative.suffix.lower() != ".png":
        return False
    return is_within(base / name, base)  # a link inside the study may still point out of it


def _inline(text: str, base: Path) -> str:
    """Escape, then render images (embedded as base64), inline code and bold."""
    text = html.escape(text, quote=False)

    def image(m: re.Match) -> str:
        if not embeddable(base, m.group(2)):
            return f"[{m.group(1)}: {m.group(2)} is not a figure of this study, not embedded]"
        if not (base / m.group(2)).is_file():
            return f"[{m.group(1)}: {m.group(2)} is missing; rerun the stage that draws it]"
        data = base64.b64encode((base / m.group(2)).read_bytes()).decode()
        return f'<img alt="{m.group(1)}" src="data:image/png;base64,{data}">'

    text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", image, text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def markdown_to_html(md: str, base: Path, title: str) -> str:
    """The Markdown subset the report uses (headings, tables, lists, code blocks, images, paragraphs)."""
    body, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            block = "<pre>" + html.escape("\n".join(lines[i + 1 : j])) + "</pre>"
            body.append(f"<details><summary>show ({j - i - 1} lines)</summary>{block}</details>")
            i = j + 1
        elif m := re.match(r"^(#{1,6}) (.*)", line):
            level = len(m.group(1))
            body.append(f"<h{level}>{_inline(m.group(2), base)}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, data = rows[0], [r for r in rows[1:] if not all(set(c) <= {"-", ":"} for c in r)]
            table = "<table><thead><tr>" + "".join(f"<th>{_inline(c, base)}</th>" for c in head) + "</tr></thead>"
            table += "<tbody>" + "".join(
                "<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in r) + "</tr>" for r in data
            )
            body.append(table + "</tbody></table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:], base)}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        elif line.strip():
            body.append(f"<p>{_inline(line, base)}</p>")
            i += 1
        else:
            i += 1
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1em;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f2f2f2}"
        "img{max-width:100%;display:block;margin:0.5em 0}pre{background:#f7f7f7;padding:0.8em;overflow:auto}"
        "code{background:#f2f2f2;padding:0 3px}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def read_timings(out: Path, stages: list[str]) -> dict[str, dict]:
    """Each stage's ``done.json`` (and the zoo's, written by ``symzoo run``)."""
    timings = {}
    for stage in ["zoo", *stages]:
        path = out / stage / "done.json"
        if path.exists():
            timings[stage] = json.loads(path.read_text())
    return timings
