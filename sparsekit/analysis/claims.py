"""The registry of the paper's claims, and their verdicts on a View as table rows.

`CLAIMS` maps 1-10 to `Claim`s (`analysis.claim`): 1, 2, 4 from matched runs
(`claims_cells`), 3 and 5-8 from law fits (`claims_laws`), 9 and 10 the extensions
(`extensions`). `verdicts(view)` tests a View on every claim, one row each with the columns of
`findings.findings`: claim, family, statement, evidence, paper, verdict and rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sparsekit.analysis.claim import Claim, Verdict
from sparsekit.analysis.claims_cells import CONSTANT_GAP, FALLS, SATURATES
from sparsekit.analysis.claims_laws import (
    DENSE_EQUIVALENT,
    EXTRAPOLATES,
    FITS,
    ONE_EXPONENT,
    SOPT,
)
from sparsekit.analysis.extensions import CLOSE_PATTERNS, PRETRAINED
from sparsekit.analysis.rules import UNTESTABLE
from sparsekit.analysis.views import View

CLAIMS: dict[int, Claim] = {c.number: c for c in (
    FALLS, SATURATES, ONE_EXPONENT, CONSTANT_GAP, FITS, EXTRAPOLATES, SOPT, DENSE_EQUIVALENT,
    CLOSE_PATTERNS, PRETRAINED)}
PAPER_CLAIMS = tuple(range(1, 9))  # the claims of the paper's law (1-8); 9, 10: its extensions


def check_claims(claims: Sequence[int]) -> tuple[int, ...]:
    """The claim numbers, checked: ValueError naming `claims` unless a non-empty list of
    numbers in CLAIMS."""
    if isinstance(claims, str | bytes) or not claims or not set(claims) <= set(CLAIMS):
        raise ValueError(f"claims must be a non-empty list of {list(CLAIMS)}, got {claims!r}")
    return tuple(claims)


def row(claim: int, family: str, verdict: Verdict) -> dict[str, Any]:
    """One row of a verdict table (the columns of `findings.findings`)."""
    c = CLAIMS[claim]
    return {"claim": claim, "family": family, "statement": c.statement,
            "evidence": verdict.evidence, "paper": c.paper(family),
            "verdict": verdict.verdict, "rule": c.rule}


def not_testable(family: str, reason: str, claims: Sequence[int] = tuple(CLAIMS)
                 ) -> pd.DataFrame:
    """The verdict table of a family whose runs cannot test anything, saying why."""
    return pd.DataFrame([row(k, family, Verdict(UNTESTABLE, reason)) for k in claims])


def verdicts(view: View, claims: Sequence[int] = tuple(CLAIMS)) -> pd.DataFrame:
    """Every claim in `claims` tested on `view`: one row per claim (the columns of
    `findings.findings`); the fits no listed claim needs are not made."""
    if not len(view.runs):
        return not_testable(view.family, "no runs", claims)
    return pd.DataFrame([row(k, view.family, CLAIMS[k].test(view)) for k in claims])
