"""The rules behind the Findings chapter's verdicts, and the numbers they weigh.

A rule (`rule_*`) turns an effect and its uncertainty into a verdict (`VERDICTS`): an effect
within Z = 2 standard errors of zero (about 95%) is no effect, and what the runs cannot decide
is "not testable". A claim of absence (one exponent, a constant gap) also needs the absence to
be resolved: a difference under RELEVANT of its reference is too small to count against it, and
an uncertainty too wide to exclude a large one leaves the claim not testable. A claim made of
parts (sparsity steps, levels) combines its parts' verdicts (`combine`).

The numbers: `cells` averages the runs over seeds at each (S, nominal size, D); `steps`,
`curvatures` and `gaps` compare matched cells, and `mean_effect` averages a comparison over
cells with the larger of its propagated seed noise and its paired spread across cells;
`form_fit` fits one sparsity level alone; `contour_slope` and `frontier_slope` read the
optimal-sparsity map of a fitted law.

Units: S is the fraction of zero weights; N non-zero non-embedding parameters; D tokens (T5)
or images (ViT); losses and seed SDs in nats; C training FLOPs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import pandas as pd

from sparsekit import fitting
from sparsekit.analysis.fits import DELTA, HOLD_OUT_WITHIN, LOG, unsupported
from sparsekit.analysis.runs import Runs
from sparsekit.laws import Law

HOLDS, PARTLY, FAILS, UNTESTABLE = "holds", "partly", "does not hold", "not testable"
VERDICTS = (HOLDS, PARTLY, FAILS, UNTESTABLE)
Z = 2.0  # an effect counts when it exceeds Z standard errors (about 95%)
RELEVANT = 0.1  # a difference under this fraction of its reference does not count against a claim
FIT_TOLERANCE = 2.0  # a law fits "within the noise" when its RMSE is at most this x the seed SD
PAPER_ERROR = 0.01  # the paper's bar: mean |relative error| below 1% (fit and extrapolation)
ABOUT = 0.1  # "about" the paper's dense equivalent: within 10% of it
PARALLEL = (0.5, 2.0)  # "parallel": the slope ratio's 95% interval lies within a factor 2 of 1
STEP = 0.05  # natural-log step of the finite differences on the S_opt map
S_MAX = 0.99  # the largest sparsity the S_opt search allows (`Law.optimal_sparsity`'s s_max)


class Effect(NamedTuple):
    """A measured effect and its standard error (NaN when unknown), in nats or its unit."""

    value: float
    se: float

    def above(self) -> bool:
        """The effect is positive by more than Z standard errors."""
        return bool(self.value > Z * self.se)

    def below(self) -> bool:
        """The effect is negative by more than Z standard errors."""
        return bool(self.value < -Z * self.se)

    def resolved(self) -> bool:
        """The effect differs from 0 by more than Z standard errors."""
        return self.above() or self.below()

    def text(self, digits: int = 2) -> str:
        """'value ± Z SE' for the evidence column."""
        return f"{self.value:+.{digits}g} ± {Z * self.se:.{digits}g}"


# --- the rules ------------------------------------------------------------------------------


def combine(verdicts: Sequence[str]) -> str:
    """One verdict from a claim's parts: holds if every part holds, not testable if no part
    could be tested, does not hold if every part tested does not hold, partly otherwise (so
    parts that hold beside untestable ones make "partly")."""
    tested = [v for v in verdicts if v != UNTESTABLE]
    if not tested:
        return UNTESTABLE
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if all(v == FAILS for v in tested):
        return FAILS
    return PARTLY


def rule_falls(step: Effect) -> str:
    """Claim 1, one sparsity step: holds if the loss change is below -Z SE."""
    if not np.isfinite(step.se):
        return UNTESTABLE
    return HOLDS if step.below() else FAILS


def rule_shrinks(gain: Effect, shrink: Effect) -> str:
    """Claim 2, two consecutive steps: holds if the first step gains (above Z SE) and the
    gain shrinks (L_k - 2 L_k+1 + L_k+2 above Z SE)."""
    if not (np.isfinite(gain.se) and np.isfinite(shrink.se)):
        return UNTESTABLE
    return HOLDS if gain.above() and shrink.above() else FAILS


def rule_same_exponent(difference: Effect, reference: float) -> str:
    """Claim 3, one level: its size exponent minus the dense one (`reference`), with the SE
    of the two independent fits. Does not hold if the difference is resolved and over
    RELEVANT x reference; not testable if Z SE exceeds half the reference (such a test cannot
    tell an exponent from its half); holds otherwise."""
    if not (np.isfinite(difference.se) and np.isfinite(reference)):
        return UNTESTABLE
    if difference.resolved() and abs(difference.value) > RELEVANT * reference:
        return FAILS
    return UNTESTABLE if Z * difference.se > reference / 2 else HOLDS


def rule_constant_gap(gap: Effect, change: Effect) -> str:
    """Claim 4, one level: the sparse-dense gap and its change per doubling of D. Not
    testable unless the gap is resolved; does not hold if the change is resolved and over
    RELEVANT x the gap; not testable if Z SE of the change exceeds a quarter of the gap (a
    change that large could hide in the noise); holds otherwise."""
    if not (np.isfinite(gap.se) and np.isfinite(change.se)) or not gap.resolved():
        return UNTESTABLE
    if change.resolved() and abs(change.value) > RELEVANT * abs(gap.value):
        return FAILS
    return UNTESTABLE if Z * change.se > abs(gap.value) / 4 else HOLDS


def rule_fit_error(rmse: float, mean_error: float, noise: float) -> str:
    """Claim 5: holds if the RMSE is at most FIT_TOLERANCE x the seed SD `noise`; partly if
    not, but the mean |relative error| is below PAPER_ERROR; not testable without noise."""
    if not (np.isfinite(noise) and np.isfinite(rmse)):
        return UNTESTABLE
    if rmse <= FIT_TOLERANCE * noise:
        return HOLDS
    return PARTLY if mean_error < PAPER_ERROR else FAILS


def rule_extrapolation(rmse: float, mean_error: float, noise: float) -> str:
    """Claim 6, one held-out level: holds if its RMSE is at most FIT_TOLERANCE x the seed
    SD (when known) or its mean |relative error| at most PAPER_ERROR."""
    if not np.isfinite(rmse):
        return UNTESTABLE
    within_noise = np.isfinite(noise) and rmse <= FIT_TOLERANCE * noise
    return HOLDS if within_noise or mean_error <= PAPER_ERROR else FAILS


def rule_sopt(rise: tuple[float, float], ratio: tuple[float, float]) -> str:
    """Claim 7: `rise` is the 95% interval of S_opt(largest C) - S_opt(smallest C) at fixed
    N, `ratio` that of the contour slope over the frontier slope. Does not hold unless S_opt
    rises (lo > 0); holds if the ratio interval contains 1 and lies within PARALLEL; partly
    otherwise (not parallel, or too uncertain to tell)."""
    if not np.isfinite(rise[0]):
        return UNTESTABLE
    if not rise[0] > 0:
        return FAILS
    lo, hi = ratio
    parallel = PARALLEL[0] <= lo <= 1.0 <= hi <= PARALLEL[1]
    return HOLDS if parallel else PARTLY


def rule_dense_equivalent(interval: tuple[float, float], paper: float) -> str:
    """Claim 8, one level: the 95% interval of m(S). Does not hold unless it lies above
    1 + RELEVANT: the sparse law's coefficients are non-negative, so m(S) >= 1 always and
    noise alone lifts it a little above 1. Holds if it also overlaps the paper's value within
    ABOUT; partly otherwise (a gain, not the paper's)."""
    lo, hi = interval
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return UNTESTABLE
    if lo <= 1.0 + RELEVANT:
        return FAILS
    matches = np.isfinite(paper) and lo <= paper * (1 + ABOUT) and hi >= paper / (1 + ABOUT)
    return HOLDS if matches else PARTLY


# --- cells: the runs averaged over seeds at each (S, size, D) ---------------------------------


def nominal_sizes(N: np.ndarray) -> np.ndarray:
    """Each run's size group: sizes within a factor HOLD_OUT_WITHIN of the smallest of their
    group (runs of one nominal size whose non-zero counts differ by sparsity) share the
    group's geometric-mean size."""
    groups: list[list[float]] = []
    for n in np.unique(N):
        if groups and n < groups[-1][0] * HOLD_OUT_WITHIN:
            groups[-1].append(n)
        else:
            groups.append([n])
    label = {n: float(np.exp(np.mean(np.log(g)))) for g in groups for n in g}
    return np.array([label[n] for n in N])


def cells(runs: Runs) -> pd.DataFrame:
    """The runs averaged over seeds per cell: one row per (S, size, D) with the mean loss and
    the number of runs; `size` is the run's nominal size (`nominal_sizes` of `Runs.size`)."""
    table = pd.DataFrame(
        {"S": runs.S, "size": nominal_sizes(runs.size), "D": runs.D, "loss": runs.loss}
    )
    grouped = table.groupby(["S", "size", "D"], as_index=False)["loss"]
    return grouped.agg(loss="mean", runs="count")


def gaps(table: pd.DataFrame, noise: float = np.nan) -> pd.DataFrame:
    """The sparse-dense gap of a `cells` table: one row per sparse cell with a dense cell at
    the same size and D, gap = L(S) - L(0) (nats) and its noise SE from the seed SD `noise`."""
    dense = table[table["S"] == 0].set_index(["size", "D"])
    dense = dense[["loss", "runs"]].rename(columns={"loss": "loss0", "runs": "runs0"})
    sparse = table[table["S"] > 0].join(dense, on=["size", "D"]).dropna(subset=["loss0"])
    return sparse.assign(
        gap=sparse["loss"] - sparse["loss0"],
        se=noise * np.sqrt(1 / sparse["runs"] + 1 / sparse["runs0"]),
    ).reset_index(drop=True)


def mean_effect(values: np.ndarray, se: np.ndarray) -> Effect:
    """Mean of per-cell effects with the larger of two SEs: the cells' noise SEs propagated,
    and (for 3 or more cells) the paired SE, SD / sqrt(m); NaN SE when neither is known."""
    values, se = np.asarray(values, float), np.asarray(se, float)
    m = values.size
    if not m:
        return Effect(np.nan, np.nan)
    noise = np.sqrt(np.sum(se**2)) / m
    paired = np.std(values, ddof=1) / np.sqrt(m) if m >= 3 else np.nan
    both = [x for x in (noise, paired) if np.isfinite(x)]
    return Effect(float(np.mean(values)), max(both) if both else np.nan)


def _levels(table: pd.DataFrame) -> list[float]:
    return sorted(table["S"].unique())


def _wide(table: pd.DataFrame, column: str) -> pd.DataFrame:
    return table.pivot_table(index=["size", "D"], columns="S", values=column)


def steps(table: pd.DataFrame, noise: float) -> list[tuple[float, float, Effect]]:
    """(S_a, S_b, mean loss change from S_a to the next level S_b over the cells with both)."""
    loss, count = _wide(table, "loss"), _wide(table, "runs")
    out = []
    for a, b in itertools.pairwise(_levels(table)):
        both = loss[[a, b]].dropna().index
        se = noise * np.sqrt(1 / count.loc[both, a] + 1 / count.loc[both, b])
        out.append((a, b, mean_effect(loss.loc[both, b] - loss.loc[both, a], se)))
    return out


def curvatures(table: pd.DataFrame, noise: float) -> list[Effect]:
    """For consecutive levels a, b, c: the mean of L_a - 2 L_b + L_c over the cells with all
    three (positive: the gain of step a->b exceeds that of b->c)."""
    loss, count = _wide(table, "loss"), _wide(table, "runs")
    levels = _levels(table)
    out = []
    for a, b, c in zip(levels, levels[1:], levels[2:], strict=False):
        at = loss[[a, b, c]].dropna().index
        se = noise * np.sqrt(1 / count.loc[at, a] + 4 / count.loc[at, b] + 1 / count.loc[at, c])
        out.append(mean_effect(loss.loc[at, a] - 2 * loss.loc[at, b] + loss.loc[at, c], se))
    return out


def gap_trend(level: pd.DataFrame) -> tuple[Effect, Effect]:
    """(mean gap, its mean change per doubling of D) of one sparse level of a `gaps` table:
    a least-squares slope of the gap in log2 D for each size with 2 or more D, averaged."""
    slopes, slope_se = [], []
    for _, g in level.groupby("size"):
        x = np.log2(g["D"].to_numpy())
        if np.unique(x).size < 2:
            continue
        w = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
        slopes.append(float(np.sum(w * g["gap"].to_numpy())))
        slope_se.append(float(np.sqrt(np.sum(w**2 * g["se"].to_numpy() ** 2))))
    return mean_effect(level["gap"], level["se"]), mean_effect(slopes, slope_se)


# --- the fits -------------------------------------------------------------------------------


def undetermined_exponent(fit: fitting.FitResult | str | None,
                          names: Sequence[str] = ("alpha",)) -> str:
    """Why exponents `names` of a `form_fit` cannot be read: no fit, or one at the fit's search
    bound or not determined by the runs (`FitResult.at_bounds`, `undetermined`); "" when
    they can."""
    if not isinstance(fit, fitting.FitResult):
        return fit or "no runs"
    bad = [n for n in names if n in fit.at_bounds or n in fit.undetermined]
    if bad:
        values = ", ".join(f"{n} {fit.law.as_dict()[n]:.3g}" for n in bad)
        return f"{values} at the search bound or not determined"
    return ""


def form_fit(runs: Runs, bootstrap: int, seed: int) -> fitting.FitResult | str:
    """The Chinchilla form A / N^alpha + B / D^beta + E (the sparse law at one fixed S) fitted
    to the runs of one sparsity level, or why it cannot be. The `bootstrap` refits are made
    only when alpha is determined (`undetermined_exponent`): otherwise nothing reads them."""
    level = replace(runs, table=runs.table.assign(sparsity=0.0))
    reason = unsupported(level, "chinchilla")
    if reason:
        return reason
    data = (level.S, level.N, level.D, level.loss)
    try:
        with np.errstate(all="ignore"):
            fit = fitting.fit(*data, delta=DELTA, log=LOG, law="chinchilla")
            if bootstrap and not undetermined_exponent(fit):
                fit = fitting.fit(*data, delta=DELTA, log=LOG, law="chinchilla",
                                  bootstrap=bootstrap, seed=seed)
    except ValueError as e:
        return str(e)
    return fit


def interval(draws: Sequence[float], need: float = 0.95) -> tuple[float, float]:
    """95% percentile interval of bootstrap draws (`fitting.fit`'s, for draws that may be
    NaN where a law has no value); NaNs if fewer than a fraction `need` are finite."""
    draws = np.asarray(draws, dtype=float)
    finite = draws[np.isfinite(draws)]
    if not draws.size or finite.size < need * draws.size:
        return (np.nan, np.nan)
    return tuple(float(q) for q in np.percentile(finite, [2.5, 97.5]))


def bootstrap_sd(fit: fitting.FitResult, name: str = "alpha") -> float:
    """Bootstrap SD of a fitted parameter (NaN with fewer than 2 refits)."""
    draws = [law.as_dict()[name] for law in fit.bootstrap_laws]
    return float(np.std(draws, ddof=1)) if len(draws) >= 2 else np.nan


def contour_slope(law: Law, N: float, C: float) -> float:
    """d log N / d log C along the contour of S_opt (dense cost) through (N, C), by central
    differences of `law.optimal_sparsity`; NaN where S_opt is clipped (0 or its maximum)."""
    h = STEP
    n, c = N * np.exp([h, -h, 0, 0]), C * np.exp([0, 0, h, -h])
    s = law.optimal_sparsity(n, c, cost="dense", s_max=S_MAX)
    if np.any(s <= 0) or np.any(s >= S_MAX):
        return np.nan
    return float(-(s[2] - s[3]) / (s[0] - s[1]))


def frontier_slope(law: Law, C: float) -> float:
    """d log N_opt / d log C of the law's dense compute-optimal frontier at C."""
    n_opt, _ = law.dense_frontier(C * np.exp([STEP, -STEP]))
    return float(np.log(n_opt[0] / n_opt[1]) / (2 * STEP))
