"""Claims 3 and 5-8: what law fits to a View's runs say, with bootstrap intervals (runs
resampled within each sparsity level, `fitting.fit`) and the seed SD.

3. one size exponent: the Chinchilla form fitted to each sparsity level alone (`View.levels`),
   an absence claim on alpha(S) - alpha(0);
5. and 6. the sparse law's error on the runs it fits, and on runs it has not seen, a bound
   claim on RMSE / seed SD (`evidence.rule_within_noise`);
7. S_opt rises with compute along contours parallel to the dense frontier (two parts);
8. the dense-equivalent multiple m(S), a magnitude claim of the paper's value.

Units: S the fraction of zero weights; N non-zero non-embedding parameters; D tokens (T5) or
images (ViT); losses and RMSEs in nats; C = 6 N D / (1 - S) FLOPs (the paper's dense cost).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import Markdown

from sparsekit import fitting, plotting
from sparsekit.analysis.claim import Claim, Verdict, Views, pct
from sparsekit.analysis.evidence import (
    FIT_TOLERANCE,
    PAPER_ERROR,
    PARALLEL,
    SHARE,
    SOPT_RISE,
    Effect,
    bootstrap_sd,
    contour_slope,
    frontier_slope,
    interval,
    nominal_sizes,
    rule_dense_equivalent,
    rule_same_exponent,
    rule_sopt,
    rule_within_noise,
    undetermined_exponent,
)
from sparsekit.analysis.figures import (
    GREY,
    dense_equivalent_figure,
    predicted_vs_measured,
    sopt_map,
)
from sparsekit.analysis.fits import ALL_RUNS, PAPER, PAPER_LEVELS, project_scale, refit_bounds
from sparsekit.analysis.rules import UNTESTABLE, combine
from sparsekit.analysis.runs import FAMILY_LABELS
from sparsekit.analysis.tables import number, styled
from sparsekit.analysis.views import View
from sparsekit.costs import training_flops
from sparsekit.laws import AverageParamLaw, Law


def exponent_table(v: View) -> pd.DataFrame:
    """The size exponent fitted to each sparsity level alone (claim 3): one row per level
    with S, exponent, SE (bootstrap SD) and shared, the sparse law's b_N (NaN if unfitted)."""
    rows = [{"S": s, "exponent": f.law.alpha, "SE": bootstrap_sd(f)}
            for s, f in v.levels.items() if isinstance(f, fitting.FitResult)]
    shared = v.fit.law.b_N if v.fit is not None else np.nan
    return pd.DataFrame(rows, columns=["S", "exponent", "SE"]).assign(shared=shared)


def exponent_figure(panels: Mapping[str, pd.DataFrame], title: str) -> go.Figure:
    """The size exponent fitted to each sparsity level alone, with error bars of 2 SE, a
    panel per table (columns S, exponent, SE and, optionally, shared: the sparse law's one
    b_N, drawn dashed)."""
    fig = plotting.figure(title, "S", "size exponent", subplot_titles=list(panels))
    for col, table in enumerate(panels.values(), start=1):
        fig.add_scatter(
            x=table["S"], y=table["exponent"], error_y={"array": 2 * table["SE"]},
            mode="markers", row=1, col=col, showlegend=False,
            marker={"color": [plotting.sparsity_color(s) for s in table["S"]], "size": 9},
            hovertemplate="S = %{x}<br>exponent = %{y:.4f}<extra></extra>",
        )
        shared = table["shared"].dropna() if "shared" in table else ()
        if len(shared):
            fig.add_scatter(
                x=[0.0, float(table["S"].max())], y=[shared.iat[0]] * 2, mode="lines", row=1,
                col=col, name="sparse law: one b_N", showlegend=col == 1,
                line={"color": GREY, "dash": "dash"},
                hovertemplate="sparse law b_N = %{y:.4f}<extra></extra>",
            )
    return fig


def _test_3(v: View) -> Verdict:
    dense = v.levels.get(0.0)
    if undetermined_exponent(dense):
        return Verdict(UNTESTABLE, f"dense: {undetermined_exponent(dense)}")
    texts, verdicts = [f"a(0) {dense.law.alpha:.3g}"], []
    for s, f in v.levels.items():
        if s == 0:
            continue
        if undetermined_exponent(f):
            texts.append(f"{pct(s)}: {undetermined_exponent(f)}")
            verdicts.append(UNTESTABLE)
            continue
        diff = Effect(f.law.alpha - dense.law.alpha, np.hypot(bootstrap_sd(f), bootstrap_sd(dense)))
        texts.append(f"{pct(s)}: {f.law.alpha:.3g} (minus a(0): {diff.interval()})"
                     + at_bounds_note(f).replace(";", ",", 1))
        verdicts.append(rule_same_exponent(diff, dense.law.alpha))
    return Verdict(combine(verdicts), "; ".join(texts))


def _figures_3(views: Views, smoke: bool) -> list[go.Figure]:
    out = []
    for family, both in views.items():
        panels = {label: t for label, v in both.items() if len(t := exponent_table(v))}
        if panels:
            out.append(exponent_figure(panels, f"{FAMILY_LABELS[family]}: size exponent per "
                                               "sparsity"))
    return out


ONE_EXPONENT = Claim(
    3,
    "Sparsity multiplies the size term: one b_N fits every S.",
    f"the Chinchilla form A/N^a + B/D^b + E fitted to each sparsity level alone; per level, "
    f"a(S) - a(0), 95% interval from the two fits' bootstrap SDs: holds within ±{SHARE:g} "
    f"a(0), does not hold wholly beyond it, undetermined otherwise; not testable when an "
    f"exponent sits at the fit's search bound. Combined over levels",
    lambda family: f"one b_N = {PAPER[family].b_N:.3g} (by the law's form)"
    if family in PAPER else "",
    _test_3,
    _figures_3,
)


def _no_fit(v: View) -> Verdict:
    return Verdict(UNTESTABLE, f"sparse law {v.sparse.notes.get('sparse', 'not fitted')}")


def at_bounds_note(fit: fitting.FitResult) -> str:
    """"; " + `fits.refit_bounds` of `fit`, for the evidence ("" if none)."""
    bounds = refit_bounds(fit)
    return f"; {bounds}" if bounds else ""


def _test_5(v: View) -> Verdict:
    if v.fit is None:
        return _no_fit(v)
    d = v.fit.diagnostics
    note = f" ({v.sparse.notes['sparse']})" if "sparse" in v.sparse.notes else ""
    evidence = (f"RMSE {d.rmse:.3g} nats, seed SD {v.noise:.3g} on {v.noise_df:g} df, ratio "
                f"{d.rmse / v.noise:.3g}; mean |error| "
                f"{100 * float(np.mean(np.abs(d.relative_error))):.2g}%{note}")
    return Verdict(rule_within_noise(d.rmse, v.noise, v.noise_df), evidence)


def _figures_5(views: Views, smoke: bool) -> list[go.Figure]:
    out = []
    for family, both in views.items():
        panels = {label: (v.runs, v.fit.law) for label, v in both.items() if v.fit is not None}
        if panels:
            out.append(predicted_vs_measured(
                panels, f"{FAMILY_LABELS[family]}: the sparse law, predicted vs measured"))
    return out


_WITHIN = (f"holds if the 95% interval of RMSE / seed SD (the SD's chi-square interval at its "
           f"degrees of freedom) lies at or below {FIT_TOLERANCE:g}, does not hold if it lies "
           f"wholly above, undetermined otherwise; not testable without a seed SD")
FITS = Claim(
    5,
    "One law fits with small error: RMSE within about 2x the noise floor.",
    f"the sparse law fitted to every run: {_WITHIN}",
    lambda family: f"mean |error| < {100 * PAPER_ERROR:g}% on its data",
    _test_5,
    _figures_5,
)


def _test_6(v: View) -> Verdict:
    if v.fit is None:
        return _no_fit(v)
    if v.extrapolation() is None:
        return Verdict(UNTESTABLE, f"no extrapolation: {v.sparse.notes.get('sparse', '')}")
    runs, law = v.extrapolation()
    what = "held-out runs" if v.heldout is not None else "largest size held out"
    texts, verdicts = [], []
    for s in np.unique(runs.S):
        level = runs.at_sparsity(s)
        d = fitting.diagnose(law, level.S, level.N, level.D, level.loss)
        texts.append(f"{pct(s)}: mean error {100 * np.mean(d.relative_error):+.2g}%, RMSE "
                     f"{d.rmse:.2g} ({d.rmse / v.noise:.2g} seed SDs)")
        verdicts.append(rule_within_noise(d.rmse, v.noise, v.noise_df))
    sizes = "/".join(number(n, 3) for n in np.unique(nominal_sizes(runs.size)))
    return Verdict(combine(verdicts), f"{what} (N {sizes}): " + "; ".join(texts))


def _figures_6(views: Views, smoke: bool) -> list[Any]:
    out: list[Any] = []
    for family, both in views.items():
        label = FAMILY_LABELS[family]
        panels = {name: p for name, v in both.items() if v.fit is not None
                  and (p := v.extrapolation()) is not None}
        if panels:
            out.append(predicted_vs_measured(
                panels, f"{label}: runs not fitted, predicted by the sparse law"))
        out.append(Markdown(f"**{label}**: which law form predicts them best"))
        out.append(styled(pd.concat({name: v.law_comparison() for name, v in both.items()})))
    return out


EXTRAPOLATES = Claim(
    6,
    "The law extrapolates to larger N: fitted without them, it predicts larger models.",
    f"the sparse law fitted without the held-out runs (the held-out store, or else the largest "
    f"size) predicts them; per sparsity level, {_WITHIN}. Combined over levels",
    lambda family: "-0.98% at 6.75x N (T5, 75%)" if family == "t5" else "",
    _test_6,
    _figures_6,
)


def _test_7(v: View) -> Verdict:
    if v.fit is None:
        return _no_fit(v)
    runs, law = v.runs, v.fit.law
    C = training_flops(runs.N, runs.D, runs.S)
    N0, C_lo, C_hi = float(np.exp(np.mean(np.log(runs.N)))), float(C.min()), float(C.max())

    def s_opt(x: Law) -> np.ndarray:
        return x.optimal_sparsity(N0, np.array([C_lo, C_hi]), cost="dense")

    rise = interval([float(np.diff(s_opt(x))[0]) for x in v.fit.bootstrap_laws])
    lo, hi = s_opt(law)
    text = (f"S_opt at N {number(N0, 3)}: {lo:.2f} -> {hi:.2f} from C {number(C_lo, 2)} to "
            f"{number(C_hi, 2)} (rise in [{rise[0]:.2g}, {rise[1]:.2g}])")
    dense, ratio = v.levels.get(0.0), (np.nan, np.nan)
    frontier = undetermined_exponent(dense, ("alpha", "beta"))
    if not frontier and len(dense.bootstrap_laws) == len(v.fit.bootstrap_laws):
        with np.errstate(all="ignore"):
            ratio = interval([contour_slope(x, N0, C_hi) / frontier_slope(y, C_hi) for x, y in
                              zip(v.fit.bootstrap_laws, dense.bootstrap_laws, strict=True)])
            slopes = contour_slope(law, N0, C_hi), frontier_slope(dense.law, C_hi)
        spread = (f"ratio in [{ratio[0]:.2g}, {ratio[1]:.2g}]" if np.isfinite(ratio[0]) else
                  "ratio undetermined: S_opt is clipped at 0 or its maximum around the contour "
                  "in over 5% of bootstrap fits")
        slope = f"{slopes[0]:.2g}" if np.isfinite(slopes[0]) else "undefined"
        text += f"; contour slope {slope}, dense frontier {slopes[1]:.2g} ({spread})"
    else:
        text += f"; no dense frontier: {frontier or 'no bootstrap'}"
    return Verdict(rule_sopt(rise, ratio), text + at_bounds_note(v.fit))


def _figures_7(views: Views, smoke: bool) -> list[go.Figure]:
    out = []
    for both in views.values():
        laws = {label: v.fit.law for label, v in both.items() if v.fit is not None}
        if laws:
            r = both[ALL_RUNS].runs
            out.append(sopt_map(laws, project_scale(r), cost="dense", runs=r,
                                points=15 if smoke else 40,
                                title=f"{r.label}: optimal sparsity of the fitted law, cost "
                                      "model: dense"))
    return out


def _paper_7(family: str) -> str:
    if family not in PAPER:
        return ""
    law = PAPER[family]
    return f"parallel: both slopes b_D / (b_N + b_D) = {law.b_D / (law.b_N + law.b_D):.2f}"


SOPT = Claim(
    7,
    "For fixed N, the optimal sparsity rises with compute, its contours parallel to the dense "
    "compute-optimal frontier.",
    f"sparse law, dense cost model, at the runs' geometric-mean N, two parts from 95% "
    f"bootstrap intervals: S_opt's rise from the runs' smallest to largest compute C (holds "
    f"above 0, does not hold below {SOPT_RISE:g}); the slope d log N / d log C of the S_opt "
    f"contour at the largest C over that of the dense frontier (holds if the interval "
    f"contains 1, undetermined if it contains both {PARALLEL[0]:g} and {PARALLEL[1]:g}, does "
    f"not hold otherwise). Combined",
    _paper_7,
    _test_7,
    _figures_7,
)


def _average_multiplier(S: float) -> float:
    """m(S) of the average-parameter law: set by the pruning schedule alone, so the law's
    fitted coefficients (here placeholders) do not enter."""
    return float(AverageParamLaw(A=1.0, alpha=1.0, B=1.0, beta=1.0, E=0.0).dense_equivalent(S))


def _paper_8(family: str) -> str:
    if family not in PAPER:
        return ""
    m = " / ".join(f"{float(PAPER[family].dense_equivalent(s)):.2f}" for s in PAPER_LEVELS)
    m_avg = " / ".join(f"{_average_multiplier(s):.3g}" for s in PAPER_LEVELS)
    return f"{m}x; average-parameter law {m_avg}x"


def _test_8(v: View) -> Verdict:
    if v.fit is None:
        return _no_fit(v)
    texts, verdicts = [], []
    paper = PAPER.get(v.family)
    for s in (s for s in PAPER_LEVELS if np.isclose(v.runs.S, s).any()):
        lo, hi = v.fit.intervals.get(f"dense_equivalent[S={s:g}]", (np.nan, np.nan))
        m = float(v.fit.law.dense_equivalent(s))
        draws = np.array([float(x.dense_equivalent(s)) for x in v.fit.bootstrap_laws])
        bound = (f", m = 1 (the form's bound) in {100 * np.mean(np.isclose(draws, 1.0)):.0f}% "
                 f"of {draws.size} refits" if draws.size and np.isclose(draws, 1.0).any() else "")
        texts.append(f"{pct(s)}: {m:.3g}x [{lo:.3g}, {hi:.3g}]{bound}")
        value = float(paper.dense_equivalent(s)) if paper else np.nan
        verdicts.append(rule_dense_equivalent((lo, hi), value))
    return Verdict(combine(verdicts),
                   ("; ".join(texts) or "none of 50 / 75 / 87.5%") + at_bounds_note(v.fit))


def _figures_8(views: Views, smoke: bool) -> list[Any]:
    out: list[Any] = []
    for i, label in enumerate((ALL_RUNS, "runs inside the paper's range")):
        fits = {family: fit for family, both in views.items()
                if (fit := list(both.values())[i].fit) is not None}
        if fits:
            out += [Markdown(f"**{label}**"), dense_equivalent_figure(fits)]
    return out


DENSE_EQUIVALENT = Claim(
    8,
    "A sparse model matches a dense one about "
    + " / ".join(f"{float(PAPER['t5'].dense_equivalent(s)):.2g}" for s in PAPER_LEVELS)
    + "x its size at " + " / ".join(pct(s).removesuffix("%") for s in PAPER_LEVELS) + "%.",
    "the sparse law's m(S) with its 95% bootstrap interval at the paper's sparsities the runs "
    "have: per level, undetermined if the interval contains both 1 (no gain; the law's form "
    "keeps m >= 1) and the paper's value, else holds if it contains the paper's value and does "
    "not hold if it excludes it. Combined over levels",
    _paper_8,
    _test_8,
    _figures_8,
)
