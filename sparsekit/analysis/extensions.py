"""Claims 9 and 10, the paper's two extensions, tested on a View's n:m and pruned-pretrained
runs with the uniform rules of `analysis.rules`.

9. n:m patterns at 50% (2:4, 4:8) behave close to unstructured 50% sparsity: per pattern, a
   bound claim on the gap n:m - unstructured (at most CLOSE x what unstructured gains over
   dense at the same points).
10. Pruning a pretrained dense model beats sparse training from scratch at the same N: a
   direction claim on the data ratio (from-scratch D over the pruning run's D), whose interval
   is the ratio at the pruned-pretrained loss moved by the seed SD's 95% t-quantile either way,
   with smallest relevant effect SHARE of the paper's ratio on a log scale.

Units: S the fraction of zero weights; N non-zero non-embedding parameters; D tokens (T5) or
images (ViT); losses, gaps and seed SDs in nats; the data ratio is from-scratch D over the
pruning run's D.
"""

from __future__ import annotations

import math

import numpy as np

from sparsekit.analysis.claim import Claim, Verdict, pct
from sparsekit.analysis.evidence import SHARE, Effect, matched_gaps, mean_effect
from sparsekit.analysis.figures import count
from sparsekit.analysis.patterns import UNSTRUCTURED, cells, gaps
from sparsekit.analysis.pretrained import PAPER_RATIOS, ratio_table, stage_two
from sparsekit.analysis.regime import in_range
from sparsekit.analysis.rules import UNDETERMINED, UNTESTABLE, Interval, at_most, combine, direction
from sparsekit.analysis.runs import Runs
from sparsekit.analysis.tables import number
from sparsekit.analysis.views import View

CLOSE = 0.25  # a pattern is close to unstructured when it gives up at most this share of its gain
HALF = 0.5  # the sparsity of claim 9's patterns


def rule_close_pattern(gap: Effect, gain: Effect) -> str:
    """Claim 9, one pattern: `gap` (n:m minus unstructured) and `gain` (dense minus
    unstructured) at the same points. A bound claim: the gap is at most CLOSE x the gain;
    undetermined when the gain's interval does not exclude zero (no gain to be close to)."""
    gain_iv = gain.interval()
    if not (gap.interval().known and gain_iv.known):
        return UNTESTABLE
    if not gain_iv.low > 0:
        return UNDETERMINED
    return at_most(gap.interval(), CLOSE * gain.value)


def rule_pretrained(ratio: Interval, paper: float) -> str:
    """Claim 10, one sparsity: a direction claim on ln(data ratio), holding above ln 1 = 0,
    with smallest relevant effect SHARE x ln(paper's ratio)."""
    if not (ratio.known and ratio.low > 0 and paper > 1):
        return UNTESTABLE
    log = Interval(math.log(ratio.estimate), math.log(ratio.low), math.log(ratio.high),
                   ratio.df)
    return direction(log, SHARE * math.log(paper), +1.0)


def pattern_effects(runs: Runs, noise: float, df: float
                    ) -> dict[str, tuple[Effect, Effect, int]]:
    """Per 50% pattern of `runs` (n:m runs with their unstructured and dense twins in their
    own setting, `patterns.pattern_runs`): (mean gap over unstructured, unstructured's mean
    gain over the dense runs at the same N_target and D, points), their SEs from the seed SD
    `noise` at `df` degrees of freedom. Points without a dense run are left out."""
    cell_table = cells(runs)
    gap_table = gaps(cell_table, noise)
    ours = cell_table[cell_table["pattern"] == UNSTRUCTURED]  # unstructured and dense cells
    gains = matched_gaps(ours, ["N_target", "D"], ours["S"] == 0, noise)  # unstructured - dense
    gap_table = gap_table.merge(gains[["S", "N_target", "D", "gap", "se"]],
                                on=["S", "N_target", "D"], suffixes=("", " dense"))
    out = {}
    for pattern, rows in gap_table[np.isclose(gap_table["S"], HALF)].groupby("pattern"):
        out[str(pattern)] = (mean_effect(rows["gap"], rows["gap SE"], df),
                             mean_effect(-rows["gap dense"], rows["se"], df), len(rows))
    return out


def _test_9(v: View) -> Verdict:
    if v.patterns is None:
        return Verdict(UNTESTABLE, "no n:m runs (in this range)")
    effects = pattern_effects(v.patterns, v.noise, v.noise_df)
    if not effects:
        return Verdict(UNTESTABLE, "no 50% n:m run with unstructured and dense twins")
    parts, verdicts = [], []
    for pattern, (gap, gain, points) in effects.items():
        verdicts.append(rule_close_pattern(gap, gain))
        parts.append(f"{pattern}: gap {gap.interval()}, unstructured gain {gain.interval()}, "
                     f"bound {CLOSE:g} x gain {CLOSE * gain.value:.2g}, over {points} points")
    return Verdict(combine(verdicts), "; ".join(parts))


CLOSE_PATTERNS = Claim(
    9,
    "n:m patterns at 50% (2:4, 4:8) are close to unstructured 50% sparsity.",
    f"per 50% pattern, over the points with an unstructured twin and a dense run (same N "
    f"target and D): the mean gap n:m - unstructured and unstructured's mean gain over dense, "
    f"each with its 95% t-interval from the seed SD. Undetermined unless the gain's interval "
    f"is above 0; then holds if the gap's interval lies at or below {CLOSE:g} x the gain, does "
    f"not hold if it lies wholly above, undetermined otherwise. Combined over patterns",
    lambda family: "close to unstructured at 50% (no numbers confirmed)",
    _test_9,
)  # the n:m chapter shows the gaps


def _test_10(v: View) -> Verdict:
    if v.pretrained is None or not len(stage_two(v.pretrained)):
        return Verdict(UNTESTABLE, "no pruned-pretrained runs")
    if not np.isfinite(v.noise):
        return Verdict(UNTESTABLE, "no seed SD for these runs")
    margin = Interval.t(0.0, v.noise, v.noise_df).high  # the seed SD's 95% t-quantile
    table = ratio_table(v.pretrained, [v.runs], margin=margin)
    table = table[in_range(table["D prune"], table["N"], v.floor)]
    if not len(table):
        return Verdict(UNTESTABLE, "no pruned-pretrained runs in this range")
    parts, verdicts = [], []
    for s, rows in table.groupby("S"):
        paper = PAPER_RATIOS.get(float(s), np.nan)
        levels = []
        for _, r in rows.iterrows():
            ratio = Interval(r["data ratio"], r["ratio low"], r["ratio high"], v.noise_df)
            levels.append(rule_pretrained(ratio, paper))
            parts.append(f"{pct(s)}, N {number(r['N_target'], 3)}, D {count(r['D prune'])}: "
                         f"{r['data ratio']:.3g}x [{r['ratio low']:.3g}, "
                         f"{r['ratio high']:.3g}], R x{paper ** SHARE:.3g}")
        verdicts.append(combine(levels))
    return Verdict(combine(verdicts), "; ".join(parts) + f" (paper {_paper_10('t5')})")


def _paper_10(family: str) -> str:
    return ", ".join(f"{pct(s)} {r:g}x" for s, r in PAPER_RATIOS.items())


PRETRAINED = Claim(
    10,
    "Pruning a pretrained dense model beats sparse training from scratch: from scratch needs "
    + " / ".join(f"{r:.2f}" for r in PAPER_RATIOS.values()) + "x more data at "
    + " / ".join(f"{100 * s:g}" for s in PAPER_RATIOS) + "%.",
    f"per sparsity, the data ratio (the from-scratch data that reaches the pruned-pretrained "
    f"loss, interpolated in log D and log loss, over the pruning run's data) with its 95% "
    f"interval (that loss moved by the seed SD's t-quantile either way): holds above 1, does "
    f"not hold below R = the paper's ratio to the power {SHARE:g}, undetermined otherwise; "
    f"not testable where the curve does not bracket the loss. Combined over sparsities",
    _paper_10,
    _test_10,
)  # the pretrained chapter shows the curves
