"""The paper's claims, each with a verdict computed from the runs (the Findings chapter).

`findings(frame)` gives one row per (claim, family): the claim, the evidence from the runs, the
paper's value, a verdict ("holds", "partly", "does not hold", "not testable") and the rule that
decided it (`RULES`, in words; the rules themselves are the `rule_*` functions of
`analysis.evidence`). `Assessment` does the same for one family's `Runs` and keeps the fits
behind the verdicts for the chapter's figures; `heldout_comparison` says which law form
predicts runs it has not seen best.

Uncertainty comes from two places:
- the seed noise, a seed SD in nats (given per family, or pooled over the frame's points run
  with several seeds), for direct comparisons of runs in matched cells (same S, nominal size,
  D; claims 1, 2, 4), together with the paired spread of a comparison across cells;
- bootstrap refits of the laws (runs resampled within each sparsity level, `fitting.fit`) for
  what a fit says (claims 3, 7, 8); a law's errors are judged against the seed SD (5, 6).

Units: S is the fraction of zero weights; N non-zero non-embedding parameters; D tokens (T5)
or images (ViT); losses in nats; C = 6 N D / (1 - S) FLOPs (the paper's dense cost model).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sparsekit import fitting
from sparsekit.analysis.checks import store_parameter
from sparsekit.analysis.evidence import (
    FIT_TOLERANCE,
    PAPER_ERROR,
    PARALLEL,
    SHARE,
    SOPT_RISE,
    Effect,
    bootstrap_sd,
    cells,
    contour_slope,
    curvatures,
    form_fit,
    frontier_slope,
    gap_trend,
    gaps,
    interval,
    nominal_sizes,
    relevant_gain,
    rule_constant_gap,
    rule_dense_equivalent,
    rule_extrapolation,
    rule_falls,
    rule_fit_error,
    rule_same_exponent,
    rule_shrinks,
    rule_sopt,
    size_slope,
    steps,
    undetermined_exponent,
)
from sparsekit.analysis.extensions import EXTENSION_CLAIMS, EXTENSION_PAPER, EXTENSION_RULES
from sparsekit.analysis.fits import (
    ALL_RUNS,
    LAW_LABELS,
    PAPER,
    PAPER_LEVELS,
    LawFits,
    fit_laws,
    heldout_table,
    in_range_label,
)
from sparsekit.analysis.regime import within
from sparsekit.analysis.rules import (
    FAILS,
    HOLDS,
    PARTLY,
    UNDETERMINED,
    UNTESTABLE,
    VERDICTS,
    combine,
)
from sparsekit.analysis.runs import (
    Runs,
    load_stores,
    noise_points,
    pooled_df,
    pooled_sd,
    seed_spread,
    stores_with_runs,
)
from sparsekit.analysis.tables import number, styled
from sparsekit.costs import dense_cost
from sparsekit.laws import AverageParamLaw, Law

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

REQUIRED = ("family", "sparsity", "N", "D", "loss")  # the columns of a findings frame
UNITS = {"t5": "tokens", "vit": "images"}  # what D counts, when the frame has no `unit`

CLAIMS = {
    1: "At fixed N and D, the loss falls as S rises through 0.5, 0.75, 0.875.",
    2: "The gains shrink with each halving of density (the sparsity factor saturates).",
    3: "Sparsity multiplies the size term: one b_N fits every S.",
    4: "The data term does not depend on S: at fixed N, the sparse-dense gap is constant in D.",
    5: "One law fits with small error: RMSE within about 2x the noise floor.",
    6: "The law extrapolates to larger N: fitted without them, it predicts larger models.",
    7: "For fixed N, the optimal sparsity rises with compute, its contours parallel to the "
       "dense compute-optimal frontier.",
    8: "A sparse model matches a dense one about "
       + " / ".join(f"{float(PAPER['t5'].dense_equivalent(s)):.2g}" for s in PAPER_LEVELS)
       + "x its size at " + " / ".join(f"{100 * s:g}" for s in PAPER_LEVELS) + "%.",
}
STATEMENTS = {**CLAIMS, **EXTENSION_CLAIMS}  # every claim the chapter gives a verdict
_R = (f"R = {SHARE:g} x the paper's predicted effect in this family's units: the runs' dense "
      f"slope dL/dln N times ln m, m the paper's dense-equivalent multiple")
RULES = {
    1: f"each step between consecutive sparsities: the mean loss change over matched (N, D) "
       f"cells, 95% t-interval; holds below 0, does not hold above -R (too small or "
       f"reversed), undetermined otherwise; {_R} of the step. Combined over steps",
    2: "for consecutive steps: the mean of L_k - 2 L_k+1 + L_k+2 over matched cells, 95% "
       "t-interval; holds above 0 (the second step gains less), does not hold below R, "
       "undetermined otherwise; R the difference of the two steps' R. Combined over pairs",
    3: f"the Chinchilla form A/N^a + B/D^b + E fitted to each sparsity level alone; per level, "
       f"a(S) - a(0), 95% interval from the two fits' bootstrap SDs: holds within "
       f"±{SHARE:g} a(0), does not hold wholly beyond it, undetermined otherwise; not "
       f"testable when an exponent sits at the fit's search bound. Combined over levels",
    4: f"per sparse level, the change of the gap L(S) - L(0) per doubling of D (slope in "
       f"log2 D per size, averaged), 95% t-interval: holds within ±R, does not hold wholly "
       f"beyond, undetermined otherwise; R = {SHARE:g} x the level's mean gap. Combined over "
       f"levels",
    5: f"the sparse law fitted to every run: holds if its RMSE is at most {FIT_TOLERANCE:g} x "
       f"the seed SD; partly if not, but its mean |relative error| is under "
       f"{100 * PAPER_ERROR:g}% (the paper's bar); not testable without a seed SD",
    6: f"the sparse law fitted without the held-out runs (the held-out store, or else the "
       f"largest size) predicts them; per sparsity level, holds if the RMSE is at most "
       f"{FIT_TOLERANCE:g} x the seed SD or the mean |relative error| at most "
       f"{100 * PAPER_ERROR:g}%. Combined over levels",
    7: f"sparse law, dense cost model, at the runs' geometric-mean N, two parts from 95% "
       f"bootstrap intervals: S_opt's rise from the runs' smallest to largest compute C "
       f"(holds above 0, does not hold below {SOPT_RISE:g}); the slope d log N / d log C of "
       f"the S_opt contour at the largest C over that of the dense frontier (holds if the "
       f"interval contains 1, undetermined if it contains both {PARALLEL[0]:g} and "
       f"{PARALLEL[1]:g}, does not hold otherwise). Combined",
    8: "the sparse law's m(S) with its 95% bootstrap interval at the paper's sparsities the "
       "runs have: per level, undetermined if the interval contains both 1 (no gain; the "
       "law's form keeps m >= 1) and the paper's value, else holds if it contains the "
       "paper's value and does not hold if it excludes it. Combined over levels",
}


# --- one family ---------------------------------------------------------------------------


def _pct(s: float) -> str:
    return f"{100 * s:g}%"


def _average_multiplier(S: float) -> float:
    """m(S) of the average-parameter law: set by the pruning schedule alone, so the law's
    fitted coefficients (here placeholders) do not enter."""
    return float(AverageParamLaw(A=1.0, alpha=1.0, B=1.0, beta=1.0, E=0.0).dense_equivalent(S))


def paper_values(family: str) -> dict[int, str]:
    """The paper's value of each claim, from its Table 1 fit of the family ("" if none)."""
    if family not in PAPER:
        return dict.fromkeys(CLAIMS, "")
    law = PAPER[family]
    factor = [float(law.dense_equivalent(s) ** -law.b_N) for s in (0.0, *PAPER_LEVELS)]
    m = " / ".join(f"{float(law.dense_equivalent(s)):.2f}" for s in PAPER_LEVELS)
    m_avg = " / ".join(f"{_average_multiplier(s):.3g}" for s in PAPER_LEVELS)
    drops = itertools.pairwise(factor)
    return {
        1: "size term x " + " / ".join(f"{f:.3f}" for f in factor[1:]) + " of dense (Table 1)",
        2: "size-term drops " + " / ".join(f"{x - y:.3f}" for x, y in drops) + " (shrinking)",
        3: f"one b_N = {law.b_N:.3g} (by the law's form)",
        4: "constant (the data term has no S)",
        5: f"mean |error| < {100 * PAPER_ERROR:g}% on its data",
        6: "-0.98% at 6.75x N (T5, 75%)" if family == "t5" else "",
        7: f"parallel: both slopes b_D / (b_N + b_D) = {law.b_D / (law.b_N + law.b_D):.2f}",
        8: f"{m}x; average-parameter law {m_avg}x",
    }


def claim_row(claim: int, family: str, evidence: str, verdict: str) -> dict[str, Any]:
    """One row of a verdict table (the columns of `findings`), for claims 1-8 and the
    extension claims (`extensions`)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    paper = paper_values(family).get(claim, EXTENSION_PAPER.get(claim, ""))
    return {"claim": claim, "family": family, "statement": STATEMENTS[claim],
            "evidence": evidence, "paper": paper, "verdict": verdict,
            "rule": {**RULES, **EXTENSION_RULES}[claim]}


def not_testable(family: str, reason: str, claims: Sequence[int] = tuple(CLAIMS)) -> pd.DataFrame:
    """The verdict table of a family whose runs cannot test anything, saying why."""
    return pd.DataFrame([claim_row(k, family, reason, UNTESTABLE) for k in claims])


@dataclass(frozen=True, eq=False)
class Assessment:
    """The claims tested on one family's runs. The fits behind them are computed when first
    needed (`table` computes only those its claims need) and kept for the figures."""

    runs: Runs  # the runs tested (after any D/N floor)
    noise: float = np.nan  # seed SD (nats); NaN when unknown
    noise_df: float = np.inf  # its degrees of freedom (inf: treated as known)
    heldout: Runs | None = None  # runs never fitted, predicted for claim 6 (None: largest N)
    bootstrap: int = 100  # refits behind every interval
    seed: int = 0  # of the bootstrap resampling

    @cached_property
    def cells(self) -> pd.DataFrame:
        """The runs averaged over seeds per (S, size, D) (`cells`)."""
        return cells(self.runs)

    @cached_property
    def slope(self) -> float:
        """The dense runs' dL/dln N (`evidence.size_slope` of the dense cells): the unit in
        which the paper's predicted effects become nats here (`evidence.relevant_gain`)."""
        dense = self.cells[self.cells["S"] == 0]
        return size_slope(dense, "size", "loss")

    def relevant(self, s_from: float, s_to: float) -> float:
        """The smallest relevant loss change from s_from to s_to (`relevant_gain`)."""
        if self.runs.family not in PAPER:
            return np.nan
        return relevant_gain(self.runs.family, self.slope, s_from, s_to)

    @property
    def gaps(self) -> pd.DataFrame:
        """The sparse-dense gaps of `cells`, with their seed-noise SEs (`evidence.gaps`)."""
        return gaps(self.cells, self.noise)

    @cached_property
    def sparse(self) -> LawFits:
        """The sparse law, bootstrapped, and (without a held-out store) refitted without the
        largest size."""
        with np.errstate(all="ignore"):
            return fit_laws(self.runs, ["sparse"], bootstrap=self.bootstrap, seed=self.seed,
                            extrapolate=self.heldout is None)

    @cached_property
    def levels(self) -> dict[float, fitting.FitResult | str]:
        """S -> the Chinchilla form fitted to that level's runs (`form_fit`), or why not."""
        return {float(s): form_fit(self.runs.at_sparsity(s), self.bootstrap, self.seed)
                for s in np.unique(self.runs.S)}

    @property
    def fit(self) -> fitting.FitResult | None:
        """The sparse law's fit to every run, if the runs support one."""
        return self.sparse.fits.get("sparse")

    def extrapolation(self) -> tuple[Runs, Law] | None:
        """(held-out runs, the law that predicts them) of claim 6: the held-out store and the
        fit to every run, or the largest size and the fit without it; None if neither."""
        if self.fit is not None and self.heldout is not None:
            return self.heldout, self.fit.law
        e = self.sparse.extrapolations.get("sparse")
        return (self.runs.select(e.held_out), e.fit.law) if e is not None else None

    def law_comparison(self) -> pd.DataFrame:
        """Which law form predicts runs it has not seen best: one row per law (sparse,
        average-parameter, effective-multiplier) with what was held out, how many runs, the
        RMSE (nats), RMSE / seed SD, mean error (%) and max |error| (%), best (lowest RMSE)
        first. Fits to every run predict `heldout`; without it, each law refitted without the
        largest size predicts that size. A law that cannot be fitted, or cannot predict a
        run (a multiplier at a level it has not seen), is left out."""
        with np.errstate(all="ignore"):  # the sparse law's fits are the claims' own
            other = fit_laws(self.runs, ["average", "multiplier"],
                             extrapolate=self.heldout is None)
        fits = replace(other, fits=self.sparse.fits | other.fits,
                       extrapolations=self.sparse.extrapolations | other.extrapolations)
        if self.heldout is not None:
            table = heldout_table({"all runs": fits}, self.heldout, self.noise)
            errors = dict(list(table.groupby("law"))) if len(table) else {}
            what = "held-out runs"
        else:
            errors = {}
            for law, e in fits.extrapolations.items():
                held = self.runs.select(e.held_out)
                errors[LAW_LABELS[law]] = pd.DataFrame({"error": e.predicted - held.loss,
                                                        "measured": held.loss})
            what = "largest size held out"
        rows = {}
        for law, g in errors.items():
            rmse = float(np.sqrt(np.mean(g["error"] ** 2)))
            relative = 100 * g["error"] / g["measured"]
            rows[law] = {"held out": what, "runs": len(g), "RMSE": rmse,
                         "RMSE / seed SD": rmse / self.noise, "mean error (%)": relative.mean(),
                         "max |error| (%)": relative.abs().max()}
        table = pd.DataFrame.from_dict(rows, orient="index")
        return table.sort_values("RMSE") if rows else table

    def table(self, claims: Sequence[int] = tuple(CLAIMS)) -> pd.DataFrame:
        """One row per claim (the columns of `findings`)."""
        if not len(self.runs):
            return not_testable(self.runs.family, "no runs", claims)
        return pd.DataFrame([claim_row(k, self.runs.family, *TESTS[k](self)) for k in claims])


def _claim_1(a: Assessment) -> tuple[str, str]:
    st = steps(a.cells, a.noise, a.noise_df)
    parts = [(f"{_pct(x)}->{_pct(y)}: {e.interval()}, R {a.relevant(x, y):.2g}",
              rule_falls(e, a.relevant(x, y))) for x, y, e in st]
    return ("; ".join(t for t, _ in parts) or "one sparsity level",
            combine([v for _, v in parts]))


def _claim_2(a: Assessment) -> tuple[str, str]:
    st = steps(a.cells, a.noise, a.noise_df)
    parts = []
    for (x, y, _), (_, z, _), c in zip(st, st[1:], curvatures(a.cells, a.noise, a.noise_df),
                                        strict=False):
        r = abs(a.relevant(x, y) - a.relevant(y, z))
        parts.append((f"{_pct(x)}->{_pct(y)}->{_pct(z)}: L_k - 2 L_k+1 + L_k+2 "
                      f"{c.interval()}, R {r:.2g}", rule_shrinks(c, r)))
    return ("; ".join(t for t, _ in parts) or "fewer than 3 sparsity levels",
            combine([v for _, v in parts]))


def _claim_3(a: Assessment) -> tuple[str, str]:
    dense = a.levels.get(0.0)
    if undetermined_exponent(dense):
        return f"dense: {undetermined_exponent(dense)}", UNTESTABLE
    texts, verdicts = [f"a(0) {dense.law.alpha:.3g}"], []
    for s, f in a.levels.items():
        if s == 0:
            continue
        if undetermined_exponent(f):
            texts.append(f"{_pct(s)}: {undetermined_exponent(f)}")
            verdicts.append(UNTESTABLE)
            continue
        diff = Effect(f.law.alpha - dense.law.alpha, np.hypot(bootstrap_sd(f), bootstrap_sd(dense)))
        texts.append(f"{_pct(s)}: {f.law.alpha:.3g} (minus a(0): {diff.interval()})")
        verdicts.append(rule_same_exponent(diff, dense.law.alpha))
    return "; ".join(texts), combine(verdicts)


def _claim_4(a: Assessment) -> tuple[str, str]:
    texts, verdicts = [], []
    for s, level in a.gaps.groupby("S"):
        gap, change = gap_trend(level, a.noise_df)
        r = SHARE * abs(gap.value)
        texts.append(f"{_pct(s)}: gap {gap.interval()}, per doubling of D {change.interval()}, "
                     f"R {r:.2g}")
        verdicts.append(rule_constant_gap(change, r))
    return "; ".join(texts) or "no sparse cell beside a dense one", combine(verdicts)


def _no_fit(a: Assessment) -> tuple[str, str]:
    return f"sparse law {a.sparse.notes.get('sparse', 'not fitted')}", UNTESTABLE


def _claim_5(a: Assessment) -> tuple[str, str]:
    if a.fit is None:
        return _no_fit(a)
    d = a.fit.diagnostics
    mean_error = float(np.mean(np.abs(d.relative_error)))
    note = f" ({a.sparse.notes['sparse']})" if "sparse" in a.sparse.notes else ""
    evidence = (f"RMSE {d.rmse:.3g} nats, seed SD {a.noise:.3g}; mean |error| "
                f"{100 * mean_error:.2g}%{note}")
    return evidence, rule_fit_error(d.rmse, mean_error, a.noise)


def _claim_6(a: Assessment) -> tuple[str, str]:
    if a.fit is None:
        return _no_fit(a)
    if a.extrapolation() is None:
        return f"no extrapolation: {a.sparse.notes.get('sparse', '')}", UNTESTABLE
    runs, law = a.extrapolation()
    what = "held-out runs" if a.heldout is not None else "largest size held out"
    texts, verdicts = [], []
    for s in np.unique(runs.S):
        level = runs.at_sparsity(s)
        relative = fitting.diagnose(law, level.S, level.N, level.D, level.loss).relative_error
        rmse = float(np.sqrt(np.mean((relative * level.loss) ** 2)))
        texts.append(f"{_pct(s)}: mean error {100 * np.mean(relative):+.2g}%, RMSE {rmse:.2g}")
        verdicts.append(rule_extrapolation(rmse, float(np.mean(np.abs(relative))), a.noise))
    sizes = "/".join(number(n, 3) for n in np.unique(nominal_sizes(runs.size)))
    return f"{what} (N {sizes}): " + "; ".join(texts), combine(verdicts)


def _claim_7(a: Assessment) -> tuple[str, str]:
    if a.fit is None:
        return _no_fit(a)
    runs, law = a.runs, a.fit.law
    C = 6.0 * runs.N * runs.D * dense_cost(runs.S)
    N0, C_lo, C_hi = float(np.exp(np.mean(np.log(runs.N)))), float(C.min()), float(C.max())

    def s_opt(x: Law) -> np.ndarray:
        return x.optimal_sparsity(N0, np.array([C_lo, C_hi]), cost="dense")

    rise = interval([float(np.diff(s_opt(x))[0]) for x in a.fit.bootstrap_laws])
    lo, hi = s_opt(law)
    text = (f"S_opt at N {number(N0, 3)}: {lo:.2f} -> {hi:.2f} from C {number(C_lo, 2)} to "
            f"{number(C_hi, 2)} "
            f"(rise in [{rise[0]:.2g}, {rise[1]:.2g}])")
    dense, ratio = a.levels.get(0.0), (np.nan, np.nan)
    frontier = undetermined_exponent(dense, ("alpha", "beta"))
    if not frontier and len(dense.bootstrap_laws) == len(a.fit.bootstrap_laws):
        with np.errstate(all="ignore"):
            ratio = interval([contour_slope(x, N0, C_hi) / frontier_slope(y, C_hi) for x, y in
                               zip(a.fit.bootstrap_laws, dense.bootstrap_laws, strict=True)])
            slopes = contour_slope(law, N0, C_hi), frontier_slope(dense.law, C_hi)
        spread = (f"ratio in [{ratio[0]:.2g}, {ratio[1]:.2g}]" if np.isfinite(ratio[0]) else
                  "ratio undetermined: S_opt is clipped at 0 or its maximum around the contour "
                  "in over 5% of bootstrap fits")
        slope = f"{slopes[0]:.2g}" if np.isfinite(slopes[0]) else "undefined"
        text += f"; contour slope {slope}, dense frontier {slopes[1]:.2g} ({spread})"
    else:
        text += f"; no dense frontier: {frontier or 'no bootstrap'}"
    return text, rule_sopt(rise, ratio)


def _claim_8(a: Assessment) -> tuple[str, str]:
    if a.fit is None:
        return _no_fit(a)
    texts, verdicts = [], []
    paper = PAPER.get(a.runs.family)
    for s in (s for s in PAPER_LEVELS if np.isclose(a.runs.S, s).any()):
        lo, hi = a.fit.intervals.get(f"dense_equivalent[S={s:g}]", (np.nan, np.nan))
        m = float(a.fit.law.dense_equivalent(s))
        draws = np.array([float(x.dense_equivalent(s)) for x in a.fit.bootstrap_laws])
        bound = (f", m = 1 (the form's bound) in {100 * np.mean(np.isclose(draws, 1.0)):.0f}% "
                 f"of {draws.size} refits" if draws.size and np.isclose(draws, 1.0).any() else "")
        texts.append(f"{_pct(s)}: {m:.3g}x [{lo:.3g}, {hi:.3g}]{bound}")
        value = float(paper.dense_equivalent(s)) if paper else np.nan
        verdicts.append(rule_dense_equivalent((lo, hi), value))
    return "; ".join(texts) or "none of 50 / 75 / 87.5%", combine(verdicts)


TESTS: dict[int, Callable[[Assessment], tuple[str, str]]] = {
    1: _claim_1, 2: _claim_2, 3: _claim_3, 4: _claim_4,
    5: _claim_5, 6: _claim_6, 7: _claim_7, 8: _claim_8,
}


# --- frames ----------------------------------------------------------------------------------


def frame_spread(table: pd.DataFrame) -> pd.DataFrame:
    """The points (sparsity, N, D) a frame holds with two or more distinct seeds: their
    number of seeds (`runs`) and loss SD (`SD`); empty without a `seed` column."""
    if "seed" not in table or table.empty:
        return pd.DataFrame({"runs": [], "SD": []})
    groups = table.groupby(["sparsity", "N", "D"])
    spread = pd.DataFrame({"runs": groups["seed"].nunique(), "SD": groups["loss"].std()})
    return spread[spread["runs"] >= 2]


def frame_noise(table: pd.DataFrame) -> float:
    """The seed SD pooled over `frame_spread` (`runs.pooled_sd`); NaN without such points."""
    return pooled_sd(frame_spread(table))


FRAME_CHECKS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "sparsity": (lambda x: (x >= 0) & (x < 1), "finite, in [0, 1)"),
    "N": (lambda x: x > 0, "finite, > 0 (non-zero parameters)"),
    "D": (lambda x: x > 0, "finite, > 0 (tokens or images)"),
    "loss": (lambda x: x > 0, "finite, > 0 (nats)"),
}


def _check_frame(name: str, frame: Any) -> None:
    """ValueError naming `name` unless it is a frame of runs the claims can use."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise ValueError(f"{name} is missing the column(s) {missing}; it needs {list(REQUIRED)} "
                         "(and optionally seed, loss_se), one row per run")
    if frame.empty:
        raise ValueError(f"{name} has no runs (it needs at least one row)")
    for column, (ok, allowed) in FRAME_CHECKS.items():
        x = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~(np.isfinite(x) & ok(x))  # NaN compares False: no warning
        if bad.any():
            raise ValueError(f"{name}: column {column} must be {allowed}; rows "
                             f"{list(frame.index[bad][:5])} are not (values {list(x[bad][:5])})")


def _per_family(name: str, value: Any, families: Sequence[str]) -> dict[str, float | None]:
    """A per-family setting given as None, one number, or a mapping family -> number."""
    if value is None or isinstance(value, Mapping):
        value = dict(value or {})
        unknown = set(value) - set(families)
        if unknown:
            raise ValueError(f"{name}: no runs of family {sorted(unknown)} (the frame has "
                             f"{sorted(families)})")
        return {f: value.get(f) for f in families}
    return dict.fromkeys(families, value)


def _frame_runs(frame: pd.DataFrame, family: str) -> Runs:
    table = frame[frame["family"] == family].reset_index(drop=True)
    unit = str(table["unit"].iat[0]) if "unit" in table else UNITS.get(family, "data")
    return Runs(family, unit, "frame", table)


def assessments(
    frame: pd.DataFrame,
    *,
    min_tokens_per_param: float | Mapping[str, float] | None = None,
    noise: float | Mapping[str, float] | None = None,
    heldout: pd.DataFrame | None = None,
    bootstrap: int = 100,
    seed: int = 0,
) -> dict[str, Assessment]:
    """Family -> `Assessment` of a frame's runs (the arguments of `findings`); nothing is
    fitted until a claim needs it. ValueError naming the argument for bad input."""
    _check_frame("frame", frame)
    families = sorted(frame["family"].unique())
    floors = _per_family("min_tokens_per_param", min_tokens_per_param, families)
    noises = _per_family("noise", noise, families)
    if heldout is not None:
        _check_frame("heldout", heldout)
    if isinstance(bootstrap, bool) or not (isinstance(bootstrap, int) and bootstrap >= 0):
        raise ValueError(f"bootstrap must be an integer >= 0, got {bootstrap!r}")
    out = {}
    for family in families:
        runs = _frame_runs(frame, family)
        sd, df = noises[family], np.inf
        if sd is None:
            sd, df = frame_noise(runs.table), pooled_df(frame_spread(runs.table))
        elif isinstance(sd, bool) or not (isinstance(sd, int | float) and np.isfinite(sd)
                                          and sd >= 0):
            raise ValueError(f"noise for {family} must be a finite seed SD >= 0, got {sd!r}")
        held = None
        if heldout is not None and (heldout["family"] == family).any():
            held = within(_frame_runs(heldout, family), floors[family])
        out[family] = Assessment(within(runs, floors[family]), noise=float(sd), noise_df=df,
                                 heldout=held if held is not None and len(held) else None,
                                 bootstrap=bootstrap, seed=seed)
    return out


def findings(
    frame: pd.DataFrame,
    *,
    min_tokens_per_param: float | Mapping[str, float] | None = None,
    noise: float | Mapping[str, float] | None = None,
    heldout: pd.DataFrame | None = None,
    bootstrap: int = 100,
    seed: int = 0,
    claims: Sequence[int] = tuple(CLAIMS),
) -> pd.DataFrame:
    """The paper's claims tested on runs: one row per (claim, family) with the columns claim
    (1-8), family, statement, evidence (the numbers), paper (the paper's value), verdict (one
    of VERDICTS) and rule (the test that decided it, in words).

    frame: one row per run with the columns family, sparsity (S), N (non-zero non-embedding
        parameters), D (tokens or images) and loss (nats), optionally seed and loss_se.
    min_tokens_per_param: test only the runs with D/N at or above this floor (one number, or
        a mapping family -> floor, e.g. `regime.paper_minimum`); None: every run.
    noise: the seed SD per family (one number or a mapping), e.g. from a seed check; for a
        family without one, the SD pooled over the frame's points run with several seeds.
    heldout: runs never fitted (same columns), predicted for claim 6 (under the same D/N
        floor); without it, or with none of a family's, claim 6 holds out the largest size.
    bootstrap: refits behind every interval (integer >= 0); seed: of their resampling.
    claims: the claims to test (the fits that no listed claim needs are not made).
    """
    if not claims or not set(claims) <= set(CLAIMS):
        raise ValueError(f"claims must be a non-empty list of {list(CLAIMS)}, got {claims!r}")
    found = assessments(frame, min_tokens_per_param=min_tokens_per_param, noise=noise,
                        heldout=heldout, bootstrap=bootstrap, seed=seed)
    return pd.concat([a.table(claims) for a in found.values()], ignore_index=True)


def heldout_comparison(
    frame: pd.DataFrame,
    heldout: pd.DataFrame | None = None,
    *,
    min_tokens_per_param: float | Mapping[str, float] | None = None,
    noise: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Which law form predicts runs it has not seen best: `Assessment.law_comparison` for
    each family of the frame (arguments as in `findings`), with a family column."""
    found = assessments(frame, min_tokens_per_param=min_tokens_per_param, noise=noise,
                        heldout=heldout)
    tables = [a.law_comparison().assign(family=family) for family, a in found.items()]
    return pd.concat(tables)


def assess_views(
    runs: Runs,
    *,
    floor: float,
    seeds: Sequence[str] = (),
    heldout: Sequence[str] = (),
    bootstrap: int = 100,
    seed: int = 0,
) -> dict[str, Assessment]:
    """The chapter's two views of one family: every run (`fits.ALL_RUNS`) and the runs with
    D/N at or above `floor` (`fits.in_range_label`). Each is judged against the seed SD of
    its own runs (`view_noise`) from the seed-check stores `seeds` (those without runs yet are
    left out: no seed SD), and predicts the runs of the held-out stores `heldout` above the
    same floor (none there: the largest size)."""
    seeds = stores_with_runs(seeds)  # a seed check not run yet leaves the noise unknown
    spread = seed_spread(seeds, grid=runs) if seeds else None
    held = load_stores(heldout, family=runs.family) if heldout else None
    views = {}
    for label, minimum in ((ALL_RUNS, None), (in_range_label(floor), floor)):
        subset = within(runs, minimum)
        noise, df = view_noise(spread, subset) if spread is not None else (np.nan, np.inf)
        above = within(held, minimum) if held is not None else None
        views[label] = Assessment(subset, noise=noise, noise_df=df, bootstrap=bootstrap,
                                  seed=seed,
                                  heldout=above if above is not None and len(above) else None)
    return views


# --- the chapter's tables -------------------------------------------------------------------


VERDICT_COLOURS = {HOLDS: "#d4edda", PARTLY: "#fff3cd", FAILS: "#f8d7da",
                   UNDETERMINED: "#dde7f3", UNTESTABLE: "#e9ecef"}


def verdict_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The verdicts side by side: one row per claim (number and statement), one column per
    labelled `findings`/`Assessment.table` table (e.g. "T5, all runs")."""
    columns = {label: t.set_index("claim")["verdict"] for label, t in tables.items()}
    table = pd.DataFrame(columns)
    table.index = pd.Index([f"{k}. {STATEMENTS[k]}" for k in table.index], name="claim")
    return table


def claim_table(tables: Mapping[str, pd.DataFrame], claim: int) -> pd.DataFrame:
    """One claim across labelled verdict tables: one row per label with the verdict, the
    evidence and the paper's value."""
    rows = {label: t.set_index("claim").loc[claim, ["verdict", "evidence", "paper"]]
            for label, t in tables.items()}
    return pd.DataFrame(rows).T


def styled_verdicts(table: pd.DataFrame) -> Styler:
    """A `verdict_table` for display (as `tables.styled`, never split), each verdict on its
    colour (VERDICT_COLOURS)."""
    return styled(table, width=np.inf).map(
        lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}",
        subset=[c for c in table if c not in ("evidence", "paper")])


def exponent_table(a: Assessment) -> pd.DataFrame:
    """The size exponent fitted to each sparsity level alone (claim 3): one row per level
    with S, exponent, SE (bootstrap SD) and shared, the sparse law's b_N (NaN if unfitted)."""
    rows = [{"S": s, "exponent": f.law.alpha, "SE": bootstrap_sd(f)}
            for s, f in a.levels.items() if isinstance(f, fitting.FitResult)]
    shared = a.fit.law.b_N if a.fit is not None else np.nan
    return pd.DataFrame(rows, columns=["S", "exponent", "SE"]).assign(shared=shared)


def view_noise(spread: pd.DataFrame, runs: Runs) -> tuple[float, float]:
    """(seed SD in nats, its degrees of freedom) that a set of runs is judged against:
    pooled over the points of a `seed_spread` table (made with the grid) among these runs
    (`runs.noise_points`), else over those of the longest data slice rerun, else NaN."""
    points = noise_points(spread, runs)
    if not len(points):
        ours = spread[spread["grid recipe"]]
        points = ours[ours["D"] == ours["D"].max()] if len(ours) else ours
    return pooled_sd(points), pooled_df(points)


def store_or_reason(name: str, value: Any, family: str, smoke: bool) -> tuple[str | None, str]:
    """(store, "") for a store parameter (`checks.store_parameter`), or (None, why not) for a
    family skipped on purpose ("") or whose default store (None) does not exist: then its
    claims are not testable, which is not an error. A path given that does not exist is."""
    try:
        store = store_parameter(name, value, family, smoke)
    except ValueError:
        if value is not None:
            raise
        return None, f"no {family} store at the default path (yet)"
    return store, "" if store is not None else f"{family} skipped ({name} is \"\")"
