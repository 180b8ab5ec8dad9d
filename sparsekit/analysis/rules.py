"""Verdict rules fixed in advance: a 95% interval weighed against numbers the rule names.

Every rule takes an `Interval` (an estimate with t-quantile bounds at the degrees of freedom
there are) and thresholds stated before the data are seen, and says one of four things:

- a **direction** claim ("the loss falls with S") names a smallest relevant effect R > 0. It
  *holds* when the interval excludes zero in the claimed direction, *does not hold* when it
  excludes R (every value in it is smaller than R in the claimed direction: the effect is
  absent, too small or reversed), and is *undetermined* otherwise. An interval that does both
  (a real effect, but smaller than R) does not hold: too small to count.
- an **absence** claim ("the gap does not change with D") names the largest irrelevant change
  R. It *holds* when the interval lies within [-R, R], *does not hold* when it lies wholly
  outside, and is *undetermined* otherwise.
- a **magnitude** claim ("about 1.6x") names the paper's value and a range too wide to mean
  anything (for example 1 and twice the paper's value). It is *undetermined* when the
  interval contains both ends of that range, and otherwise *holds* when it contains the
  paper's value and *does not hold* when it excludes it.
- a **bound** claim ("within about 2x the noise") names the bound B. It *holds* when the
  interval lies at or below B, *does not hold* when it lies wholly above B, and is
  *undetermined* otherwise.

A claim made of parts (steps between sparsities) combines them (`combine`): *partly* only
when some parts hold. Data that are absent make a claim (or a part) *not testable*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special  # its t quantile; scipy.stats takes ~2 s to import

HOLDS, FAILS, UNDETERMINED = "holds", "does not hold", "undetermined"
PARTLY, UNTESTABLE = "partly", "not testable"
VERDICTS = (HOLDS, PARTLY, FAILS, UNDETERMINED, UNTESTABLE)
LEVEL = 0.95  # every interval's coverage


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided `LEVEL` interval; `df`: the degrees of freedom of its
    t-quantile (inf for a normal one)."""

    estimate: float
    low: float
    high: float
    df: float

    @classmethod
    def t(cls, estimate: float, se: float, df: float) -> Interval:
        """estimate +- t_{df}(0.975) se (NaN bounds when se or df is unknown or df < 1)."""
        if not (math.isfinite(se) and df >= 1):
            return cls(float(estimate), math.nan, math.nan, float(df))
        half = float(special.stdtrit(df, 0.5 + LEVEL / 2)) * se  # t_{df} quantile
        return cls(float(estimate), estimate - half, estimate + half, float(df))

    @property
    def known(self) -> bool:
        """Whether the bounds are known (an unbounded side, +-inf, is known)."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    def scaled(self, sign: float) -> Interval:
        """The interval of sign * estimate."""
        a, b = sorted((sign * self.low, sign * self.high))
        return Interval(sign * self.estimate, a, b, self.df)

    def __str__(self) -> str:
        df = "" if math.isinf(self.df) else f", {self.df:g} df"
        return f"{self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}{df}]"


def resolved(interval: Interval) -> bool | None:
    """Whether the interval excludes zero (None when its bounds are unknown): the one meaning
    of "resolved" in this package, e.g. an n:m gap that seeds can order (`patterns.gaps`)."""
    if not interval.known:
        return None
    return interval.low > 0 or interval.high < 0


def direction(interval: Interval, relevant: float, sign: float = -1.0) -> str:
    """Verdict on a claimed effect of sign `sign` (-1: the value falls) with smallest
    relevant size `relevant` > 0 (see the module docstring); not testable when either is
    unknown (NaN)."""
    if not interval.known or math.isnan(relevant):
        return UNTESTABLE
    if not relevant > 0:
        raise ValueError(f"relevant must be > 0, got {relevant!r}")
    iv = interval.scaled(sign)  # now the claim is "positive"
    if iv.high < relevant:
        return FAILS
    if iv.low > 0:
        return HOLDS
    return UNDETERMINED


def absence(interval: Interval, relevant: float) -> str:
    """Verdict on a claimed absence: no change beyond `relevant` > 0 either way; not
    testable when either is unknown (NaN)."""
    if not interval.known or math.isnan(relevant):
        return UNTESTABLE
    if not relevant > 0:
        raise ValueError(f"relevant must be > 0, got {relevant!r}")
    if -relevant <= interval.low and interval.high <= relevant:
        return HOLDS
    if interval.low > relevant or interval.high < -relevant:
        return FAILS
    return UNDETERMINED


def magnitude(interval: Interval, paper: float, wide: tuple[float, float]) -> str:
    """Verdict on a claimed value `paper`; an interval holding both ends of `wide` is too
    wide to mean anything."""
    if not interval.known:
        return UNTESTABLE
    if interval.low <= min(wide) and max(wide) <= interval.high:
        return UNDETERMINED
    if interval.low <= paper <= interval.high:
        return HOLDS
    return FAILS


def at_most(interval: Interval, bound: float) -> str:
    """Verdict on a claimed upper bound: the value is at most `bound`; not testable when the
    interval or the bound is unknown (NaN)."""
    if not interval.known or math.isnan(bound):
        return UNTESTABLE
    if interval.high <= bound:
        return HOLDS
    if interval.low > bound:
        return FAILS
    return UNDETERMINED


def combine(parts: Sequence[str]) -> str:
    """One verdict for a claim made of parts: holds when every part holds; does not hold
    when every part tested does not; partly when some part holds (a part left untested
    means not all of it holds); undetermined when no part holds and some could not be
    decided; not testable when no part could be tested."""
    tested = [p for p in parts if p != UNTESTABLE]
    if not tested:
        return UNTESTABLE
    if all(p == HOLDS for p in parts):
        return HOLDS
    if all(p == FAILS for p in tested):
        return FAILS
    if HOLDS in tested:
        return PARTLY
    return UNDETERMINED
