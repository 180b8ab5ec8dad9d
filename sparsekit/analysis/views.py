"""A View: one family's runs within one D/N range, with their matched cells, one seed-noise
estimate, and the law fits the claims read, built by one function (`view`) for the
Findings chapter, the like-for-like chapter and `findings(frame)` alike.

Every claim (`analysis.claims`) is a test of one View, so everything a verdict rests on (the
runs, the seed SD and its degrees of freedom, the held-out runs, the n:m and pruned-pretrained
runs of the extension claims, the bootstrap settings) is here, once. The fits are computed
when a claim first needs them and kept for the figures; `fitcache` keeps them on disk for the
build.

Units: S the fraction of zero weights; N non-zero non-embedding parameters; D tokens (T5)
or images (ViT); losses and seed SDs in nats.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd

from sparsekit import fitting
from sparsekit.analysis.evidence import cells, form_fit, gaps, relevant_gain, size_slope
from sparsekit.analysis.fits import ALL_RUNS, LAW_LABELS, PAPER, LawFits, fit_laws, heldout_table
from sparsekit.analysis.noise import frame_noise, view_noise
from sparsekit.analysis.regime import within
from sparsekit.analysis.runs import Runs
from sparsekit.laws import Law

BOOTSTRAP = 200  # refits behind every bootstrap interval, unless a caller asks otherwise


@dataclass(frozen=True, eq=False)
class View:
    """One family's runs within one D/N range and everything the claims weigh them against.

    runs: the runs tested (after the D/N floor); label: e.g. "all runs"; floor: that D/N floor
    (None: every run); noise, noise_df: the seed SD (nats) and its degrees of freedom (NaN:
    unknown; inf: treated as known); heldout: runs never fitted, predicted for claim 6 (None:
    the largest size is held out); patterns: n:m runs with their unstructured twins (claim 9);
    pretrained: pruned-pretrained runs of both stages (claim 10); bootstrap, seed: the refits
    behind every bootstrap interval and the seed of their resampling."""

    runs: Runs
    label: str = ALL_RUNS
    floor: float | None = None
    noise: float = np.nan
    noise_df: float = np.inf
    heldout: Runs | None = None
    patterns: Runs | None = None
    pretrained: Runs | None = None
    bootstrap: int = BOOTSTRAP
    seed: int = 0

    @property
    def family(self) -> str:
        return self.runs.family

    @cached_property
    def cells(self) -> pd.DataFrame:
        """The runs averaged over seeds per (S, size, D) (`evidence.cells`)."""
        return cells(self.runs)

    @cached_property
    def slope(self) -> float:
        """The dense runs' dL/dln N (`evidence.size_slope` of the dense cells): the unit in
        which the paper's predicted effects become nats here (`evidence.relevant_gain`)."""
        dense = self.cells[self.cells["S"] == 0]
        return size_slope(dense, "size", "loss")

    def relevant(self, s_from: float, s_to: float) -> float:
        """The smallest relevant loss change from s_from to s_to (`relevant_gain`); NaN for a
        family the paper did not fit."""
        if self.family not in PAPER:
            return np.nan
        return relevant_gain(self.family, self.slope, s_from, s_to)

    @property
    def gaps(self) -> pd.DataFrame:
        """The sparse-dense gaps of `cells`, with their seed-noise SEs (`evidence.gaps`)."""
        return gaps(self.cells, self.noise)

    @cached_property
    def sparse(self) -> LawFits:
        """The sparse law, bootstrapped, and (without held-out runs) refitted without the
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
        """(held-out runs, the law that predicts them) of claim 6: the held-out runs and the
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


def view(
    runs: Runs,
    *,
    floor: float | None = None,
    label: str = ALL_RUNS,
    noise: tuple[float, float] | None = None,
    spread: pd.DataFrame | None = None,
    heldout: Runs | None = None,
    patterns: Runs | None = None,
    pretrained: Runs | None = None,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> View:
    """The View of `runs` (and of `heldout` and `patterns`) at D/N >= `floor` (None: all).

    Its seed noise, (SD, degrees of freedom), is `noise` when given; else pooled over the
    points of the seed-check table `spread` among the view's runs (`noise.view_noise`); else
    over the view's own points run with several seeds (`noise.frame_noise`, a plain frame's
    `seed` column); else unknown (NaN)."""
    if isinstance(bootstrap, bool) or not (isinstance(bootstrap, int) and bootstrap >= 0):
        raise ValueError(f"bootstrap must be an integer >= 0, got {bootstrap!r}")
    subset = within(runs, floor)
    if noise is None:
        noise = view_noise(spread, subset) if spread is not None else frame_noise(subset.table)
    sd, df = noise
    held = within(heldout, floor) if heldout is not None else None
    nm = within(patterns, floor) if patterns is not None else None
    return View(subset, label=label, floor=floor, noise=float(sd),
                noise_df=float(df) if np.isfinite(sd) else np.inf,
                heldout=held if held is not None and len(held) else None,
                patterns=nm if nm is not None and len(nm) else None, pretrained=pretrained,
                bootstrap=bootstrap, seed=seed)
