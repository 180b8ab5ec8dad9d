"""The rules behind the Findings chapter's verdicts, and the numbers they weigh.

A rule (`rule_*`) turns an effect and its uncertainty into a verdict with the uniform rules
of `analysis.rules`: a 95% interval (t-quantiles at the degrees of freedom there are, or
bootstrap percentiles) against thresholds named in advance. A direction claim (the loss
falls with S) holds when its interval excludes zero in the claimed direction and does not
hold when it excludes the smallest relevant effect: SHARE of what the paper's law predicts,
in the runs' own units (`relevant_gain`). An absence claim (one exponent, a constant gap)
holds within that size and does not hold wholly beyond it. A magnitude claim (the dense
equivalent) holds when its interval contains the paper's value and is undetermined when it
is too wide to mean anything. Anything else is undetermined. Claims 5 and 6 bound a fit's
error against the seed SD."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import pandas as pd

from sparsekit import fitting
from sparsekit.analysis.fits import DELTA, HOLD_OUT_WITHIN, LOG, PAPER, unsupported
from sparsekit.analysis.noise import sd_interval
from sparsekit.analysis.rules import (
    UNTESTABLE,
    Interval,
    absence,
    at_most,
    combine,
    direction,
    magnitude,
)
from sparsekit.analysis.runs import Runs
from sparsekit.laws import Law

SHARE = 0.25  # the smallest relevant effect: this share of what the paper's law predicts
SOPT_RISE = 0.05  # claim 7: a rise of S_opt under this (absolute S) is too small to count
FIT_TOLERANCE = 2.0  # a law fits "within the noise" when its RMSE is at most this x the seed SD
PAPER_ERROR = 0.01  # the paper's bar: mean |relative error| below 1% (fit and extrapolation)
PARALLEL = (0.5, 2.0)  # claim 7: a slope ratio interval holding both is too wide to say "parallel"
STEP = 0.05  # natural-log step of the finite differences on the S_opt map
S_MAX = 0.99  # the largest sparsity the S_opt search allows (`Law.optimal_sparsity`'s s_max)


class Effect(NamedTuple):
    """A measured effect, its standard error (NaN when unknown), in nats or its unit, and
    the degrees of freedom of that SE (inf: known or normal)."""

    value: float
    se: float
    df: float = math.inf

    def interval(self) -> Interval:
        """Its 95% t-interval (`rules.Interval.t`)."""
        return Interval.t(self.value, self.se, self.df)


# --- the rules ------------------------------------------------------------------------------
# Claims 1-4, 7 and 8 use the uniform rules of `analysis.rules`; 5 and 6 weigh a fit's error
# against the seed SD.


def relevant_gain(family: str, slope: float, s_from: float, s_to: float) -> float:
    """SHARE x the loss change in nats the paper's law predicts from S = s_from to s_to, in
    this family's own units: |slope| ln(m(s_to) / m(s_from)), m the paper's dense-equivalent
    size multiple (m(0) = 1) and `slope` the runs' own dense dL/dln N (`size_slope`)."""
    m = PAPER[family].dense_equivalent(np.array([s_from, s_to]))
    return SHARE * abs(slope) * float(np.log(m[1] / m[0]))


def size_slope(table: pd.DataFrame, size: str, loss: str) -> float:
    """dL/dln size of dense rows (nats per e-fold): a least-squares line in ln size at each D
    with two or more sizes, averaged over those D; NaN if there is none."""
    slopes = [np.polyfit(np.log(g[size].to_numpy(float)), g[loss].to_numpy(float), 1)[0]
              for _, g in table.groupby("D") if g[size].nunique() >= 2]
    return float(np.mean(slopes)) if slopes else np.nan


def rule_falls(step: Effect, relevant: float) -> str:
    """Claim 1, one sparsity step: a direction claim (the loss falls) with smallest
    relevant change `relevant` (`relevant_gain`)."""
    return direction(step.interval(), relevant, -1.0)


def rule_shrinks(shrink: Effect, relevant: float) -> str:
    """Claim 2, two consecutive steps: L_k - 2 L_k+1 + L_k+2 > 0 (the second gains less), a
    direction claim with smallest relevant shrinkage `relevant`."""
    return direction(shrink.interval(), relevant, +1.0)


def rule_no_gain(step: Effect, relevant: float) -> str:
    """Claim 2, one sparsity step: an absence claim (the step changes the loss by less than
    `relevant` either way): two such steps in a row are a saturated factor, not a failure
    of the gains to shrink."""
    return absence(step.interval(), relevant)


def rule_same_exponent(difference: Effect, reference: float) -> str:
    """Claim 3, one level: its size exponent minus the dense one (`reference`), an absence
    claim within SHARE x reference."""
    if not np.isfinite(reference):
        return UNTESTABLE
    return absence(difference.interval(), SHARE * abs(reference))


def rule_constant_gap(change: Effect, relevant: float) -> str:
    """Claim 4, one level: the gap's change per doubling of D, an absence claim within
    `relevant` (SHARE x the level's own mean gap: a gap constant to a quarter of itself)."""
    return absence(change.interval(), relevant)


def rule_within_noise(rmse: float, noise: float, df: float) -> str:
    """Claims 5 and 6: a law's RMSE (nats) over the seed SD `noise`, a bound claim of at most
    FIT_TOLERANCE; the ratio's 95% interval is that of the SD at its `df` degrees of freedom
    (`noise.sd_interval`: a point for df = inf). Not testable without a seed SD."""
    low, high = sd_interval(noise, df)
    if not (np.isfinite(rmse) and np.isfinite(low)):
        return UNTESTABLE
    return at_most(Interval(rmse / noise, rmse / high, rmse / low, df), FIT_TOLERANCE)


def rule_sopt(rise: tuple[float, float], ratio: tuple[float, float]) -> str:
    """Claim 7, two parts from 95% bootstrap intervals: S_opt(largest C) - S_opt(smallest
    C) at fixed N (`rise`), a direction claim with smallest relevant rise SOPT_RISE; and the
    contour slope over the frontier slope (`ratio`), a magnitude claim of 1 (parallel),
    undetermined when the interval holds both ends of PARALLEL. Combined."""
    rising = direction(Interval(math.nan, *rise, math.inf), SOPT_RISE, +1.0)
    parallel = magnitude(Interval(math.nan, *ratio, math.inf), 1.0, PARALLEL)
    return combine([rising, parallel])


def rule_dense_equivalent(interval: tuple[float, float], paper: float) -> str:
    """Claim 8, one level: the 95% bootstrap interval of m(S), a magnitude claim of the
    paper's value, undetermined when it cannot tell that value from no gain (it holds both
    1 and the paper's value: the sparse law's form keeps m >= 1, so refits piled at that
    bound put 1 in the interval)."""
    if not np.isfinite(paper):
        return UNTESTABLE
    return magnitude(Interval(math.nan, *interval, math.inf), paper, (1.0, paper))


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


def matched_gaps(table: pd.DataFrame, on: Sequence[str], reference: pd.Series,
                 sd: float | pd.Series, names: tuple[str, str] = ("loss0", "runs0")
                 ) -> pd.DataFrame:
    """Each cell of a cells table (one row per cell: the mean `loss` of its `runs` seeds)
    that is not a `reference` cell (a boolean Series on `table`'s rows) beside the reference
    cell with the same `on` keys, where there is one: the reference's loss and runs (columns
    `names`), gap = loss - reference loss (nats) and its SE from the seed SD `sd` (nats: one
    number, or a Series on `table`'s rows), sd sqrt(1 / runs + 1 / reference runs).

    The one home of a matched gap: sparse against dense (`gaps`: claims 1, 2, 4) and n:m
    against unstructured (`patterns.gaps`: claim 9)."""
    loss0, runs0 = names
    sd = pd.Series(sd, index=table.index, dtype=float)
    ref = table[reference].set_index(list(on))[["loss", "runs"]]
    ref = ref.rename(columns={"loss": loss0, "runs": runs0})
    ours = table[~reference].join(ref, on=list(on)).dropna(subset=[loss0])
    return ours.assign(
        gap=ours["loss"] - ours[loss0],
        se=sd.loc[ours.index] * np.sqrt(1 / ours["runs"] + 1 / ours[runs0]),
    ).reset_index(drop=True)


def gaps(table: pd.DataFrame, noise: float = np.nan) -> pd.DataFrame:
    """The sparse-dense gap of a `cells` table: one row per sparse cell with a dense cell at
    the same size and D, gap = L(S) - L(0) (nats) and its noise SE from the seed SD `noise`
    (`matched_gaps`)."""
    return matched_gaps(table, ["size", "D"], table["S"] == 0, noise)


def mean_effect(values: np.ndarray, se: np.ndarray, df: float = math.inf) -> Effect:
    """Mean of per-cell effects with the larger of two SEs: the cells' noise SEs propagated
    (at the seed SD's `df`), and (for 3 or more cells) the paired SE, SD / sqrt(m), at m - 1
    degrees of freedom; NaN SE when neither is known."""
    values, se = np.asarray(values, float), np.asarray(se, float)
    m = values.size
    if not m:
        return Effect(np.nan, np.nan)
    noise = np.sqrt(np.sum(se**2)) / m
    paired = np.std(values, ddof=1) / np.sqrt(m) if m >= 3 else np.nan
    both = [(x, d) for x, d in ((noise, df), (paired, m - 1)) if np.isfinite(x)]
    if not both:
        return Effect(float(np.mean(values)), np.nan)
    se_max, df_max = max(both)
    return Effect(float(np.mean(values)), float(se_max), float(df_max))


def _levels(table: pd.DataFrame) -> list[float]:
    return sorted(table["S"].unique())


def _wide(table: pd.DataFrame, column: str) -> pd.DataFrame:
    return table.pivot_table(index=["size", "D"], columns="S", values=column)


def steps(table: pd.DataFrame, noise: float, df: float = math.inf
          ) -> list[tuple[float, float, Effect]]:
    """(S_a, S_b, mean loss change from S_a to the next level S_b over the cells with both);
    `noise` the seed SD, at `df` degrees of freedom."""
    loss, count = _wide(table, "loss"), _wide(table, "runs")
    out = []
    for a, b in itertools.pairwise(_levels(table)):
        both = loss[[a, b]].dropna().index
        se = noise * np.sqrt(1 / count.loc[both, a] + 1 / count.loc[both, b])
        out.append((a, b, mean_effect(loss.loc[both, b] - loss.loc[both, a], se, df)))
    return out


def curvatures(table: pd.DataFrame, noise: float, df: float = math.inf) -> list[Effect]:
    """For consecutive levels a, b, c: the mean of L_a - 2 L_b + L_c over the cells with all
    three (positive: the gain of step a->b exceeds that of b->c)."""
    loss, count = _wide(table, "loss"), _wide(table, "runs")
    levels = _levels(table)
    out = []
    for a, b, c in zip(levels, levels[1:], levels[2:], strict=False):
        at = loss[[a, b, c]].dropna().index
        se = noise * np.sqrt(1 / count.loc[at, a] + 4 / count.loc[at, b] + 1 / count.loc[at, c])
        out.append(mean_effect(loss.loc[at, a] - 2 * loss.loc[at, b] + loss.loc[at, c], se, df))
    return out


def gap_trend(level: pd.DataFrame, df: float = math.inf) -> tuple[Effect, Effect]:
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
    return mean_effect(level["gap"], level["se"], df), mean_effect(slopes, slope_se, df)


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
