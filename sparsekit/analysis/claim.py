"""What a claim is: a statement of the paper, its value there, a rule fixed in advance, a test
of one View that gives a `Verdict`, and the figures that show it.

Like optax's `GradientTransformation`, a `Claim` is a small frozen record of functions, so
every claim is used the same way (`claim.test(view)`, `claim.paper(family)`,
`claim.figures(views, smoke)`) and one contract suite (tests/test_claims.py) runs them all.
The claims themselves are in `claims_cells` (1-4, matched runs), `claims_laws` (5-8, law
fits) and `extensions` (9-10), gathered in the registry `claims.CLAIMS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sparsekit.analysis.rules import VERDICTS
from sparsekit.analysis.views import View

Views = Mapping[str, Mapping[str, View]]  # family -> view label -> View


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict on one View: `verdict` one of `rules.VERDICTS`, and `evidence`, the
    numbers behind it (each statistic with its interval, degrees of freedom and thresholds)."""

    verdict: str
    evidence: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def no_figures(views: Views, smoke: bool) -> list[Any]:
    """A claim shown by another claim's figures or another chapter."""
    return []


@dataclass(frozen=True)
class Claim:
    """One claim of the paper.

    number: 1-10, its place in the Findings chapter; statement: the claim in words; rule: the
    test in words, made from the constants the test uses; paper: family -> the paper's value
    ("" where it gives none); test: View -> Verdict; figures: (family -> label -> View,
    smoke) -> what shows the claim (plotly figures, tables, Markdown)."""

    number: int
    statement: str
    rule: str
    paper: Callable[[str], str]
    test: Callable[[View], Verdict]
    figures: Callable[[Views, bool], list[Any]] = no_figures


def pct(s: float) -> str:
    """A sparsity as a percentage, e.g. '87.5%'."""
    return f"{100 * s:g}%"
