"""Law fits that cope with partial stores (`unsupported`, `fit_laws`, `LawFits`), the tables
comparing the laws with each other and with the paper, and the scale of the optimal-sparsity
maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sparsekit import fitting
from sparsekit.analysis.noise import noise_of
from sparsekit.analysis.regime import within
from sparsekit.analysis.runs import FAMILY_LABELS, Runs
from sparsekit.costs import training_flops
from sparsekit.laws import LAWS, PAPER_T5, PAPER_VIT, Law

PAPER = {"vit": PAPER_VIT, "t5": PAPER_T5}  # the paper's Table 1 fit of each family

# The book's fits: mean Huber loss of log residuals with delta 1e-3 (the paper's T5 setting).
DELTA = 1e-3
LOG = True
HOLD_OUT_WITHIN = 1.25  # extrapolation: hold out every run with N >= max(N) / this
# The laws compared, by their `sparsekit.laws.LAWS` names: Frantar et al. (2024), Jin et al.
# (2025), Frantar et al. (2025), and Hoffmann et al. (2022) on the dense runs.
LAW_LABELS = {
    "sparse": "sparse law",
    "average": "average-parameter law",
    "multiplier": "effective-multiplier law",
    "chinchilla": "Chinchilla (dense runs)",
}
PAPER_LEVELS = (0.5, 0.75, 0.875)  # sparsities of the paper's dense-equivalent figures
PAPER_SCALE = ((1e6, 1e10), (1e15, 1e26))  # (N non-zeros, C FLOPs) bounds of chapter 1's maps


def law_points(runs: Runs, law: str) -> Runs:
    """The runs a law describes: the dense runs for Chinchilla, all runs otherwise."""
    return runs.at_sparsity(0.0) if law == "chinchilla" else runs


def unsupported(runs: Runs, law: str) -> str | None:
    """Why `runs` cannot support a fit of `law` (None when they can): the law's own rule
    (`Law.problems`: 2 distinct N and D, 3 distinct S for the sparse law, dense runs for the
    multiplier law, more runs than parameters)."""
    points = law_points(runs, law)
    if not len(points):
        return "no dense (S = 0) runs" if law == "chinchilla" else "no runs"
    return "; ".join(LAWS[law].problems(points.S, points.N, points.D)) or None


def _arrays(runs: Runs) -> tuple[np.ndarray, ...]:
    return runs.S, runs.N, runs.D, runs.loss


@dataclass(frozen=True, eq=False)
class LawFits:
    """Laws fitted to one family's runs; each law (or extrapolation) left out says why."""

    runs: Runs
    fits: dict[str, fitting.FitResult]  # law -> fit to all the points it describes
    extrapolations: dict[str, fitting.SizeExtrapolation]  # law -> fit without the largest N
    notes: dict[str, str]  # law -> what could not be done or is not to be read, and why

    def panels(self, held_out: bool = False) -> dict[str, tuple[Runs, Law]]:
        """Label -> (runs, law) for `predicted_vs_measured`: every fit on its points, or
        (held_out) every extrapolation fit on the runs it did not see."""
        if held_out:
            return {
                LAW_LABELS[law]: (law_points(self.runs, law).select(e.held_out), e.fit.law)
                for law, e in self.extrapolations.items()
            }
        return {
            LAW_LABELS[law]: (law_points(self.runs, law), f.law) for law, f in self.fits.items()
        }

    def summary(self) -> str:
        """Which laws were fitted, and for each one left out (or not extrapolated), why."""
        fitted = ", ".join(self.fits) or "none"
        lines = [f"{self.runs.label}: {len(self.runs)} runs; laws fitted: {fitted}"]
        return "\n".join([*lines, *(f"  {law}: {note}" for law, note in self.notes.items())])

    def sentences(self, view: str = "") -> str:
        """`summary` in words for the book (Markdown): the runs, the laws fitted, and a
        sentence per law left out or to be read with care, e.g. "**ViT, all runs**: 7 runs;
        fitted the average-parameter law. The sparse law was not fitted: needs 3
        distinct S values, has 2." `view` names the runs ("all runs", "D/N >= 193")."""
        name = f"{self.runs.label}, {view}" if view else self.runs.label
        fitted = [f"the {LAW_LABELS.get(law, law)}" for law in self.fits]
        laws = (", ".join(fitted[:-1]) + " and " + fitted[-1]) if len(fitted) > 1 else (
            fitted[0] if fitted else "")
        head = f"**{name}**: {len(self.runs)} runs; " + (f"fitted {laws}." if laws else
                                                          "no law fitted.")
        lines = []
        for law, note in self.notes.items():
            label = LAW_LABELS.get(law, law)
            label = label if label[0].isupper() else f"The {label}"
            if note.startswith("not fitted: "):
                lines.append(f"{label} was not fitted: {note.removeprefix('not fitted: ')}.")
            else:
                lines.append(f"{label}: {note}.")
        return "\n\n".join([head, "\n".join(f"- {line}" for line in lines)]).strip()


def refit_bounds(fit: fitting.FitResult) -> str:
    """"<exponent> at the search bound in X% of B refits" for the exponents some bootstrap
    refits of `fit` leave on the search box (`FitResult.refits_at_bounds`; an interval that
    depends on them is partly the box's); "" if none."""
    shares = fit.refits_at_bounds()
    if not shares:
        return ""
    listed = ", ".join(f"{name} {100 * share:.0f}%" for name, share in shares.items())
    return f"at the search bound in {listed} of {len(fit.bootstrap_laws)} refits"


def fit_laws(
    runs: Runs,
    laws: Sequence[str] = tuple(LAW_LABELS),
    *,
    bootstrap: int = 0,
    seed: int = 0,
    extrapolate: bool = True,
    min_tokens_per_param: float | None = None,
) -> LawFits:
    """Fit each law the runs support (log residuals, Huber delta DELTA); with `extrapolate`,
    also refit it without the largest size N and predict that size.

    min_tokens_per_param: fit only the runs with D/N at or above this floor (tokens or images
        per non-zero parameter; see `regime.within`, e.g. `regime.paper_minimum(family)` for
        the paper's regime); None fits every run. The returned `runs` are the ones fitted.

    bootstrap: refits behind 95% intervals, for the sparse law only (the others would cost
    minutes each without being shown). Laws the runs cannot support are skipped, with the
    reason in `notes`.
    """
    runs = within(runs, min_tokens_per_param)
    fits, extrapolations = {}, {}
    notes: dict[str, list[str]] = {}
    for law in laws:
        reason = unsupported(runs, law)
        if reason:
            notes[law] = [f"not fitted: {reason}"]
            continue
        points = law_points(runs, law)
        try:
            with np.errstate(all="ignore"):  # trial points may overflow; the result is checked
                fit = fitting.fit(
                    *_arrays(points),
                    delta=DELTA,
                    log=LOG,
                    law=law,
                    seed=seed,
                    bootstrap=bootstrap if law == "sparse" else 0,
                )
        except ValueError as e:  # a need of the law that `unsupported` does not know
            notes[law] = [f"not fitted: {e}"]
            continue
        if not np.isfinite(fit.objective):
            notes[law] = ["not fitted: the best fit is degenerate (non-finite predictions)"]
            continue
        fits[law] = fit
        notes[law] = []
        if fit.at_bounds:
            notes[law].append(f"{', '.join(fit.at_bounds)} at the search bound: not determined "
                              "by these runs, read with care")
        if fit.undetermined:
            notes[law].append(f"not determined by these runs: {', '.join(fit.undetermined)} "
                              "(scaling one by 10% moves no prediction by 10⁻⁶)")
        if bounds := refit_bounds(fit):
            notes[law].append(bounds)
        if not extrapolate:
            continue
        rest = points.select(np.less(points.N, points.N.max() / HOLD_OUT_WITHIN))
        reason = unsupported(rest, law)
        if reason:
            notes[law].append(f"no extrapolation (without the largest N: {reason})")
            continue
        try:
            with np.errstate(all="ignore"):
                extrapolation = fitting.leave_largest_size_out(
                    *_arrays(points), within=HOLD_OUT_WITHIN, delta=DELTA, log=LOG, law=law
                )
        except ValueError as e:  # e.g. a sparsity level only the largest size has
            notes[law].append(f"no extrapolation: {e}")
            continue
        if np.all(np.isfinite(extrapolation.predicted)):
            extrapolations[law] = extrapolation
        else:
            notes[law].append("no extrapolation: the fit without the largest N is degenerate")
    joined = {law: "; ".join(lines) for law, lines in notes.items() if lines}
    return LawFits(runs, fits, extrapolations, joined)


ALL_RUNS = "all runs"  # the label of a fit to every run of a family


def in_range_label(min_tokens_per_param: float) -> str:
    """The label of a fit to the runs with D/N >= min_tokens_per_param."""
    return f"D/N >= {min_tokens_per_param:g}"


def fit_regimes(runs: Runs, min_tokens_per_param: float, **kw: Any) -> dict[str, LawFits]:
    """Two fits side by side: every run (ALL_RUNS), and the runs with D/N at or above the
    floor (`in_range_label`), e.g. the paper's regime. kw go to `fit_laws`."""
    return {
        ALL_RUNS: fit_laws(runs, **kw),
        in_range_label(min_tokens_per_param): fit_laws(
            runs, min_tokens_per_param=min_tokens_per_param, **kw
        ),
    }


def noise_table(fits: Mapping[str, LawFits], spread: pd.DataFrame) -> pd.DataFrame:
    """Each fit judged against the noise of the runs it rests on: one row per (fit, law) with
    its RMSE, the seed SD pooled over the rerun points among its runs (`noise.noise_of`, from a
    `seed_spread` table made with `grid`) and their ratio. A ratio near 1 is as good as these
    runs allow; well above 2, the law misses more than the noise explains."""
    rows = {}
    for label, f in fits.items():
        for law, fit in f.fits.items():
            sd = noise_of(spread, law_points(f.runs, law))
            rows[label, LAW_LABELS[law]] = {
                "runs": fit.n_points, "RMSE": fit.diagnostics.rmse, "seed SD": sd,
                "RMSE / seed SD": fit.diagnostics.rmse / sd,
            }
    table = pd.DataFrame.from_dict(rows, orient="index")
    if rows:
        table.index.names = ["fit", "law"]
    return table


def comparison_table(fits: LawFits) -> pd.DataFrame:
    """One row per law: points, parameters, objective and RMSE on the points it was fitted to,
    RMSE on the dense runs (which every law describes), and the errors predicting the
    largest size from a fit without it. RMSEs in loss units; laws not fitted give the reason."""
    rows = {}
    for law, label in LAW_LABELS.items():
        row: dict[str, Any] = {"note": fits.notes.get(law, "")}
        if law in fits.fits:
            f = fits.fits[law]
            dense = fits.runs.at_sparsity(0.0)
            row |= {
                "runs": f.n_points,
                "parameters": f.law.n_params,
                "objective": f.objective,
                "RMSE": f.diagnostics.rmse,
                "RMSE, dense runs": (
                    fitting.diagnose(f.law, *_arrays(dense)).rmse if len(dense) else np.nan
                ),
            }
        if law in fits.extrapolations:
            d = fits.extrapolations[law].diagnostics
            row |= {
                "largest N held out: RMSE": d.rmse,
                "largest N held out: max |error| (%)": 100 * d.max_abs_relative_error,
            }
        if law in fits.fits or law in fits.notes:
            rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table[[c for c in table if c != "note"] + ["note"]] if rows else table


def heldout_table(fits: Mapping[str, LawFits], heldout: Runs, noise: float = np.nan
                  ) -> pd.DataFrame:
    """Predictions of runs no fit has seen: one row per (fit, law, held-out run) with the run's
    S, N, D and D/N, its measured and predicted loss, the error (predicted - measured, in the
    family's loss units and in % of the measured loss) and the error in units of `noise` (a
    seed SD, nats). `fits` maps a label (e.g. "all runs") to the fits of one family. A law that
    cannot predict a run (Chinchilla at S > 0, a multiplier for a level it has not seen) is
    left out for that run."""
    rows = []
    for label, f in fits.items():
        for law, fit in f.fits.items():
            for i in range(len(heldout)):
                S, N, D, loss = (float(a[i]) for a in _arrays(heldout))
                try:
                    predicted = float(fit.law.predict(S, N, D))
                except ValueError:  # this law has nothing to say at this S
                    continue
                rows.append({
                    "fit": label, "law": LAW_LABELS[law], "S": S, "N": N, "D": D,
                    "D/N": D / N, "measured": loss, "predicted": predicted,
                    "error": predicted - loss, "error (%)": 100 * (predicted - loss) / loss,
                    "error / noise": (predicted - loss) / noise,
                })
    return pd.DataFrame(rows)


def coefficient_table(fit: fitting.FitResult, paper: Law) -> pd.DataFrame:
    """The fitted coefficients with their 95% bootstrap intervals (when computed) next to the
    paper's. N in non-zero parameters, D in tokens or images, as in the paper."""
    table = pd.DataFrame({"this project": fit.law.as_dict(), "paper (Table 1)": paper.as_dict()})
    for name, (low, high) in fit.intervals.items():
        if name in table.index:
            table.loc[name, ["95% low", "95% high"]] = low, high
    order = ["this project", "95% low", "95% high", "paper (Table 1)"]
    return table[[c for c in order if c in table]]


# --- optimal sparsity and the dense equivalent ------------------------------------------


def project_scale(runs: Runs, margin: float = 4.0) -> tuple[tuple[float, float], ...]:
    """((N low, N high), (C low, C high)) around the runs: N non-zeros and C = 6 N D / (1 - S)
    FLOPs (the dense cost model), widened by `margin` on each side."""
    C = training_flops(runs.N, runs.D, runs.S)
    return ((runs.N.min() / margin, runs.N.max() * margin), (C.min() / margin, C.max() * margin))


def dense_equivalent_interval(fit: fitting.FitResult, S: float) -> tuple[float, float]:
    """The bootstrap 95% interval of m(S); NaNs without bootstrap or runs at S."""
    return fit.intervals.get(f"dense_equivalent[S={S:g}]", (np.nan, np.nan))


def dense_equivalent_table(fits: Mapping[str, fitting.FitResult]) -> pd.DataFrame:
    """m(S) at the paper's sparsities: each family's fit, its 95% bootstrap interval (when
    computed) and the paper's Table 1 value; indexed by (family, S)."""
    rows = {}
    for family, fit in fits.items():
        for s in PAPER_LEVELS:
            low, high = dense_equivalent_interval(fit, s)
            rows[FAMILY_LABELS[family], s] = {
                "this project": float(fit.law.dense_equivalent(s)),
                "95% low": low,
                "95% high": high,
                "paper (Table 1)": float(PAPER[family].dense_equivalent(s)),
            }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["family", "S"]
    return table


def coefficients_side_by_side(fits: Mapping[str, LawFits], paper: Law
                              ) -> tuple[pd.DataFrame | None, list[str]]:
    """(the sparse law's coefficients of each fit beside the paper's, the last fit first,
    as `coefficient_table` columns under the fit's label; None when no fit has the sparse
    law) and a sentence per fit without it, saying why."""
    tables = {label: coefficient_table(f.fits["sparse"], paper)
              for label, f in reversed(fits.items()) if "sparse" in f.fits}
    notes = [f"The sparse law is not fitted ({label}): "
             f"{f.notes['sparse'].removeprefix('not fitted: ')}."
             for label, f in fits.items() if "sparse" not in f.fits]
    return (pd.concat(tables, axis=1) if tables else None), notes
