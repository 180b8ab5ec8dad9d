"""The paper's two extension claims, each with a verdict from the runs (the Findings chapter).

9. n:m patterns at 50% (2:4, 4:8) behave close to unstructured 50% sparsity.
10. Pruning a pretrained dense model beats sparse training from scratch at the same N: from
    scratch needs the paper's ratios (`pretrained.PAPER_RATIOS`) more data to reach its loss.

Their rules (`rule_close_pattern`, `rule_pretrained`) follow those of `evidence`: an effect
counts when it exceeds Z standard errors, from the seed SD of the runs; a claim made of parts
(patterns, sparsities) combines them (`evidence.combine`). The rows have the columns of
`findings.findings`, so they join its tables.

Units: S the fraction of zero weights; N non-zero non-embedding parameters; D tokens (T5) or
images (ViT); losses, gaps and seed SDs in nats; the data ratio is from-scratch D over the
pruning run's D.
"""

from __future__ import annotations

import numpy as np

from sparsekit.analysis.evidence import FAILS, HOLDS, UNTESTABLE, Effect, Z, combine, mean_effect
from sparsekit.analysis.figures import count
from sparsekit.analysis.patterns import cells, gaps
from sparsekit.analysis.pretrained import PAPER_RATIOS, ratio_table, stage_two
from sparsekit.analysis.runs import Runs
from sparsekit.analysis.tables import number

CLOSE = 0.25  # a pattern is close to unstructured when it gives up at most this share of its gain
HALF = 0.5  # the sparsity of claim 9's patterns

_RATIOS = " / ".join(f"{r:.2f}" for r in PAPER_RATIOS.values())
_LEVELS = " / ".join(f"{100 * s:g}" for s in PAPER_RATIOS)
EXTENSION_CLAIMS = {
    9: "n:m patterns at 50% (2:4, 4:8) are close to unstructured 50% sparsity.",
    10: f"Pruning a pretrained dense model beats sparse training from scratch: from scratch "
        f"needs {_RATIOS}x more data at {_LEVELS}%.",
}
EXTENSION_RULES = {
    9: f"per 50% pattern, over the points with an unstructured twin and a dense run (same N "
       f"target and D): the mean gap n:m - unstructured and unstructured's mean gain over dense, "
       f"each with its SE from the seed SD. Not testable unless the gain exceeds {Z:g} SE; holds "
       f"if the gap is not above {Z:g} SE or is at most {CLOSE:g} x the gain; does not hold "
       f"otherwise. Combined over patterns",
    10: f"per sparsity, the data ratio (the from-scratch data that reaches the pruned-pretrained "
        f"loss, interpolated in log D and log loss, over the pruning run's data) and its range "
        f"with that loss moved by {Z:g} seed SDs either way: holds if the whole range is above 1, "
        f"does not hold if it is at or below 1, not testable if it straddles 1 or the curve does "
        f"not bracket the loss. Combined over sparsities",
}
EXTENSION_PAPER = {
    9: "close to unstructured at 50% (no numbers confirmed)",
    10: f"{_RATIOS}x",
}


def rule_close_pattern(gap: Effect, gain: Effect) -> str:
    """Claim 9, one pattern: `gap` (n:m minus unstructured) and `gain` (dense minus
    unstructured) at the same points. Not testable unless the gain is resolved above zero;
    holds if the gap is not resolved above zero or is at most CLOSE x the gain."""
    if not (np.isfinite(gap.se) and np.isfinite(gain.se)) or not gain.above():
        return UNTESTABLE
    return HOLDS if not gap.above() or gap.value <= CLOSE * gain.value else FAILS


def rule_pretrained(low: float, high: float) -> str:
    """Claim 10, one sparsity: the range of the data ratio. Holds above 1, does not hold at or
    below 1, not testable when it straddles 1 or is unknown (NaN)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return UNTESTABLE
    if low > 1:
        return HOLDS
    return FAILS if high <= 1 else UNTESTABLE


def pattern_effects(runs: Runs, grid: Runs, noise: float) -> dict[str, tuple[Effect, Effect, int]]:
    """Per 50% pattern of `runs` (n:m runs and their unstructured twins,
    `patterns.pattern_runs`): (mean gap over unstructured, unstructured's mean gain over the
    grid's dense run at the same N target and D, points). Points without a dense run are left
    out."""
    gap_table = gaps(cells(runs), noise)
    dense = grid.table[np.isclose(grid.table["sparsity"], 0.0)]
    dense = dense.groupby(["N_target", "D"])["loss"].agg(dense="mean", dense_runs="count")
    gap_table = gap_table.join(dense, on=["N target", "D"], how="inner")
    out = {}
    for pattern, rows in gap_table[np.isclose(gap_table["S"], HALF)].groupby("pattern"):
        gain = rows["dense"] - rows["unstructured"]
        gain_se = noise * np.sqrt(1 / rows["dense_runs"] + 1 / rows["unstructured runs"])
        out[str(pattern)] = (mean_effect(rows["gap"], rows["gap SE"]),
                             mean_effect(gain, gain_se), len(rows))
    return out


def claim_9(runs: Runs | None, grid: Runs, noise: float) -> tuple[str, str]:
    """(evidence, verdict) of claim 9 on the n:m runs `runs` (None: none stored)."""
    if runs is None or not len(runs):
        return "no n:m runs (in this range)", UNTESTABLE
    effects = pattern_effects(runs, grid, noise)
    if not effects:
        return "no 50% n:m run with unstructured and dense twins", UNTESTABLE
    parts, verdicts = [], []
    for pattern, (gap, gain, points) in effects.items():
        verdicts.append(rule_close_pattern(gap, gain))
        parts.append(f"{pattern}: gap {gap.text()}, unstructured gain {gain.text()} over "
                     f"{points} points")
    return "; ".join(parts), combine(verdicts)


def claim_10(pretrained: Runs | None, grid: Runs, noise: float,
             floor: float | None = None) -> tuple[str, str]:
    """(evidence, verdict) of claim 10: the `pretrained.ratio_table` of the pruned-pretrained
    runs in `pretrained` (a store holding both stages; None: none) on the from-scratch curves
    of `grid` (the view's runs), with each ratio's range for the loss moved by Z x `noise`
    either way, over the pruning runs with D/N >= `floor` (None: all)."""
    if pretrained is None or not len(stage_two(pretrained)):
        return "no pruned-pretrained runs", UNTESTABLE
    if not np.isfinite(noise):
        return "no seed SD for these runs", UNTESTABLE
    table = ratio_table(pretrained, [grid], margin=Z * noise)
    if floor is not None:
        table = table[table["D prune"] / table["N"] >= floor]
    if not len(table):
        return "no pruned-pretrained runs in this range", UNTESTABLE
    parts, verdicts = [], []
    for s, rows in table.groupby("S"):
        levels = []
        for _, r in rows.iterrows():
            levels.append(rule_pretrained(r["ratio low"], r["ratio high"]))
            parts.append(f"{100 * s:g}%, N {number(r['N target'], 3)}, "
                         f"D {count(r['D prune'])}: "
                         f"{r['data ratio']:.3g}x "
                         f"[{r['ratio low']:.3g}, {r['ratio high']:.3g}]")
        verdicts.append(combine(levels))
    paper = ", ".join(f"{100 * s:g}% {v:g}x" for s, v in PAPER_RATIOS.items())
    return "; ".join(parts) + f" (paper {paper})", combine(verdicts)


def extension_verdicts(*, patterns: Runs | None, grid: Runs, noise: float,
                       pretrained: Runs | None = None,
                       floor: float | None = None) -> dict[int, tuple[str, str]]:
    """Claims 9 and 10 for one family and view: claim -> (evidence, verdict). `patterns`: the
    view's n:m runs and their twins; `grid`: the view's runs (dense twins, from-scratch
    curves); `pretrained`: the runs of both pretrained stages; `noise`: the view's seed SD;
    `floor`: the view's D/N floor (None: all runs)."""
    return {9: claim_9(patterns, grid, noise), 10: claim_10(pretrained, grid, noise, floor)}
