"""A verdict: one of the paper's claims checked on a zoo, as a record (claim, paper, this zoo, test, p, outcome)
and as the line a stage's table prints. Every stage writes its verdicts to ``verdicts.parquet``; the study report
opens with them as one table."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

REPRODUCED = "reproduced"
NOT_SIGNIFICANT = "same direction, not significant"
NOT_REPRODUCED = "NOT reproduced"
UNTESTED = "same direction, untested"  # too few seeds or networks for a test
COLUMNS = ["claim", "paper", "ours", "test", "p", "outcome", "flag", "text"]


def outcome_of(same_direction: bool, p: float) -> str:
    """Reproduced: ours points the paper's way at p < 0.05; the same way without significance, or where no test
    could run, is said so; the other way is not reproduced."""
    if not same_direction:
        return NOT_REPRODUCED
    if not math.isfinite(p):
        return UNTESTED
    return REPRODUCED if p < 0.05 else NOT_SIGNIFICANT


@dataclass(frozen=True)
class Verdict:
    claim: str  # the paper's claim as a comparison, e.g. "MLP metanet: W-Asym R² above standard"
    paper: str  # the paper's numbers for it
    ours: str  # this zoo's
    test: str  # the test's name, or why there is none
    p: float  # NaN where no test could run
    outcome: str  # REPRODUCED, NOT_SIGNIFICANT or NOT_REPRODUCED
    flag: str = ""  # why a reader should distrust the cell (too few networks, too little spread), else ""
    text: str = ""  # the line the stage's table prints

    @classmethod
    def from_direction(
        cls, claim: str, paper: str, ours: str, test: str, p: float, same: bool, flag: str = "", text: str = ""
    ) -> Verdict:
        outcome = outcome_of(same, p)
        p_text = f"p = {p:.2g}" if math.isfinite(p) else "no test"
        return cls(
            claim,
            paper,
            ours,
            test,
            p,
            outcome,
            flag,
            text or f"{claim}: {ours} ({test} {p_text}); paper {paper}: {outcome}",
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def verdict_frame(verdicts: list[Verdict] | list[dict]) -> pd.DataFrame:
    rows = [v.as_dict() if isinstance(v, Verdict) else v for v in verdicts]
    return pd.DataFrame(rows, columns=COLUMNS).astype({"p": "float64"})


def verdict_table(frame: pd.DataFrame) -> str:
    """The report's summary: a row per claim (stage, claim, paper, this zoo, test, p, verdict), flags in the cell."""
    lines = ["| stage | claim | paper | this zoo | test | p | verdict |", "|---|---|---|---|---|---|---|"]
    for r in frame.itertuples(index=False):
        p = f"{r.p:.2g}" if math.isfinite(r.p) else "–"
        ours = f"{r.ours} ⚠ {r.flag}" if r.flag else r.ours
        mark = {REPRODUCED: "✅ ", NOT_REPRODUCED: "❌ "}.get(r.outcome, "")
        cells = [r.stage, r.claim, r.paper, ours, r.test, p, f"{mark}{r.outcome}"]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
