"""Claims 1, 2 and 4: what runs in matched cells say directly, without a law fit.

A cell is one (S, nominal size, D) averaged over seeds (`evidence.cells`); a claim compares
cells that differ only in S (or, for claim 4, the gap to the dense cell at each D). Each
comparison is a mean over cells with a 95% t-interval (`evidence.mean_effect`: the larger
of the seed-noise SE and the paired spread over cells, at its degrees of freedom), weighed by
the uniform rules of `analysis.rules` against R, the smallest relevant effect
(`View.relevant`: SHARE of what the paper's law predicts, in these runs' own units).

Units: losses, gaps and R in nats; D tokens (T5) or images (ViT).
"""

from __future__ import annotations

import itertools
from typing import Any

import plotly.graph_objects as go

from sparsekit.analysis.claim import Claim, Verdict, Views, no_figures, pct
from sparsekit.analysis.evidence import (
    SHARE,
    curvatures,
    gap_trend,
    rule_constant_gap,
    rule_falls,
    rule_no_gain,
    rule_shrinks,
    steps,
)
from sparsekit.analysis.figures import gap_figure
from sparsekit.analysis.fits import ALL_RUNS, PAPER, PAPER_LEVELS
from sparsekit.analysis.rules import HOLDS, combine
from sparsekit.analysis.views import View

R_TEXT = (f"R = {SHARE:g} x the paper's predicted effect in this family's units: the runs' "
          f"dense slope dL/dln N times ln m, m the paper's dense-equivalent multiple")


def size_factors(family: str) -> list[float]:
    """The paper's size-term factor m(S)^-b_N of the family's law at S = 0 and the paper's
    levels (1 at S = 0): how much of the dense size term a sparse model keeps (nats scale)."""
    law = PAPER[family]
    return [float(law.dense_equivalent(s) ** -law.b_N) for s in (0.0, *PAPER_LEVELS)]


def _gap_figures(views: Views, against: str, what: str) -> list[go.Figure]:
    out = []
    for both in views.values():
        v = both[ALL_RUNS]
        out.append(gap_figure(v.gaps, against, unit=v.runs.unit,
                              title=f"{v.runs.label}: {what}, all runs"))
    return out


def _paper_1(family: str) -> str:
    if family not in PAPER:
        return ""
    return ("size term x " + " / ".join(f"{f:.3f}" for f in size_factors(family)[1:])
            + " of dense (Table 1)")


def _test_1(v: View) -> Verdict:
    parts = [(f"{pct(x)}->{pct(y)}: {e.interval()}, R {v.relevant(x, y):.2g}",
              rule_falls(e, v.relevant(x, y)))
             for x, y, e in steps(v.cells, v.noise, v.noise_df)]
    return Verdict(combine([p for _, p in parts]),
                   "; ".join(t for t, _ in parts) or "one sparsity level")


FALLS = Claim(
    1,
    "At fixed N and D, the loss falls as S rises through 0.5, 0.75, 0.875.",
    f"each step between consecutive sparsities: the mean loss change over matched (N, D) "
    f"cells, 95% t-interval; holds below 0, does not hold above -R (too small or reversed), "
    f"undetermined otherwise; {R_TEXT} of the step. Combined over steps",
    _paper_1,
    _test_1,
    lambda views, smoke: _gap_figures(views, "S", "loss relative to dense"),
)


def _paper_2(family: str) -> str:
    if family not in PAPER:
        return ""
    f = size_factors(family)
    return ("size-term drops " + " / ".join(f"{x - y:.3f}" for x, y in itertools.pairwise(f))
            + " (shrinking)")


def _test_2(v: View) -> Verdict:
    st = steps(v.cells, v.noise, v.noise_df)
    parts = []
    for (x, y, first), (_, z, second), c in zip(st, st[1:],
                                                 curvatures(v.cells, v.noise, v.noise_df),
                                                 strict=False):
        r = abs(v.relevant(x, y) - v.relevant(y, z))
        text = f"{pct(x)}->{pct(y)}->{pct(z)}: L_k - 2 L_k+1 + L_k+2 {c.interval()}, R {r:.2g}"
        if rule_no_gain(first, v.relevant(x, y)) == rule_no_gain(second, v.relevant(y, z)) == HOLDS:
            parts.append((text + " (saturated: neither step gains R)", HOLDS))
        else:
            parts.append((text, rule_shrinks(c, r)))
    return Verdict(combine([p for _, p in parts]),
                   "; ".join(t for t, _ in parts) or "fewer than 3 sparsity levels")


SATURATES = Claim(
    2,
    "The gains shrink with each halving of density (the sparsity factor saturates).",
    "for consecutive steps: the mean of L_k - 2 L_k+1 + L_k+2 over matched cells, 95% "
    "t-interval; holds above 0 (the second step gains less), does not hold below R, "
    "undetermined otherwise; R the difference of the two steps' R. A pair whose two steps "
    "both change the loss by less than their own R (each step's interval within ±R) has "
    "saturated: holds. Combined over pairs",
    _paper_2,
    _test_2,
    no_figures,  # read off claim 1's figure: a line that flattens as S rises
)


def _test_4(v: View) -> Verdict:
    texts, verdicts = [], []
    for s, level in v.gaps.groupby("S"):
        gap, change = gap_trend(level, v.noise_df)
        r = SHARE * abs(gap.value)
        texts.append(f"{pct(s)}: gap {gap.interval()}, per doubling of D {change.interval()}, "
                     f"R {r:.2g}")
        verdicts.append(rule_constant_gap(change, r))
    return Verdict(combine(verdicts), "; ".join(texts) or "no sparse cell beside a dense one")


def _figures_4(views: Views, smoke: bool) -> list[Any]:
    return _gap_figures(views, "D", "loss relative to dense against data")


CONSTANT_GAP = Claim(
    4,
    "The data term does not depend on S: at fixed N, the sparse-dense gap is constant in D.",
    f"per sparse level, the change of the gap L(S) - L(0) per doubling of D (slope in log2 D "
    f"per size, averaged), 95% t-interval: holds within ±R, does not hold wholly beyond, "
    f"undetermined otherwise; R = {SHARE:g} x the level's mean gap. Combined over levels",
    lambda family: "constant (the data term has no S)",
    _test_4,
    _figures_4,
)

