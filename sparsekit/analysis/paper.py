"""Chapter 1's material: the paper's published laws (Table 1) as figures and tables, and the
re-fit of the paper's released T5 runs (`t5-data.csv`) beside the published fit.

Units are the paper's: N non-zero non-embedding parameters, D images (ViT) or tokens (T5), C
training FLOPs, losses in the units of the paper's validation losses. Nothing here reads a
results store: this is the reference the project's own chapters are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsekit import fitting, plotting
from sparsekit.analysis.figures import DASHES
from sparsekit.analysis.fits import DELTA, LOG
from sparsekit.analysis.runs import Runs
from sparsekit.analysis.tables import number
from sparsekit.laws import PAPER_T5, PAPER_VIT, Law

PAPER_LAWS = {"ViT / JFT-4B": PAPER_VIT, "T5 / C4": PAPER_T5}  # label -> the Table 1 fit
PAPER_UNITS = {"ViT / JFT-4B": "images", "T5 / C4": "tokens"}  # what D counts
PAPER_GRID = (0.0, 0.5, 0.75, 0.875)  # the sparsities the paper trained
# Illustrative data amounts of the loss figure: 1e9-1.6e10 images (ViT); 250k, 1M and 4M
# steps of 65,536 tokens (T5).
PAPER_DATA = {"ViT / JFT-4B": (1e9, 4e9, 1.6e10), "T5 / C4": (1.6e10, 6.6e10, 2.6e11)}
LINE = "#555555"  # colour of a curve that is not one sparsity level's

RELEASED_CSV = Path("shared") / "paper-data" / "t5-data.csv"  # beside the repository
PUBLISHED_OBJECTIVE = 7.6036e-6  # the released notebook's full-precision fit, 48 T5 points
# The paper's extrapolation check: a T5 of ~2.3B total parameters pruned to 75% (N in the
# released notebook's convention), 500k steps of 65,536 tokens, measured loss 1.4828.
EXTRAPOLATION = {"S": 0.75, "N": 48 * 12 * 1024**2, "D": 500_000 * 65_536}
EXTRAPOLATION_LOSS = 1.4828


# --- the published laws -----------------------------------------------------------------


def paper_loss_figure(N: np.ndarray | None = None) -> go.Figure:
    """Predicted loss against N (log axis) for each published law (a panel each): a line
    per sparsity of the paper's grid (its colour) and data amount (PAPER_DATA; solid, dashed, dotted)."""
    N = np.geomspace(1e6, 1e10, 100) if N is None else N
    fig = plotting.figure("Predicted loss vs non-zero parameters", "N",
                          "validation loss (paper's units)", log_x=True,
                          subplot_titles=tuple(PAPER_LAWS))
    for col, (name, law) in enumerate(PAPER_LAWS.items(), start=1):
        for D, dash in zip(PAPER_DATA[name], DASHES, strict=False):
            for S in PAPER_GRID:
                label = plotting.sparsity_label(S)
                fig.add_scatter(
                    x=N, y=law.predict(S, N, D), mode="lines", row=1, col=col, name=label,
                    legendgroup=str(S), showlegend=col == 1 and dash == "solid",
                    line={"color": plotting.sparsity_color(S), "dash": dash},
                    hovertemplate=f"{label}, D = {number(D, 2)} {PAPER_UNITS[name]}"
                                  "<br>N = %{x:.3~s}<br>loss = %{y:.4f}<extra></extra>",
                )
    return fig


def paper_dense_equivalent_figure() -> go.Figure:
    """m(S) of each published law (solid: ViT, dashed: T5), markers at the paper's grid."""
    S = np.linspace(0.0, 0.99, 199)
    levels = np.array(PAPER_GRID)
    fig = plotting.figure("Equivalent dense size of a sparse model", "S", "dense_equivalent")
    for (name, law), dash in zip(PAPER_LAWS.items(), ("solid", "dash"), strict=True):
        fig.add_scatter(
            x=S, y=law.dense_equivalent(S), mode="lines", name=name,
            line={"color": LINE, "dash": dash},
            hovertemplate=f"{name}<br>S = %{{x:.3f}}<br>m(S) = %{{y:.3f}}<extra></extra>",
        )
        fig.add_scatter(
            x=levels, y=law.dense_equivalent(levels), mode="markers", showlegend=False,
            marker={"color": [plotting.sparsity_color(s) for s in levels], "size": 9},
            hovertemplate=f"{name}<br>S = %{{x}}<br>m(S) = %{{y:.3f}}<extra></extra>",
        )
    return fig


def paper_dense_equivalent_table() -> pd.DataFrame:
    """m(S) of each published law at the paper's sparsities and in the limit S -> 1."""
    sparse = np.array(PAPER_GRID[1:])
    return pd.DataFrame(
        {name: [*law.dense_equivalent(sparse), *law.dense_equivalent([1.0])]
         for name, law in PAPER_LAWS.items()},
        index=[*map(plotting.sparsity_label, sparse), "limit S → 1"],
    )


# --- the released T5 runs ---------------------------------------------------------------


def released_t5(path: str | Path | None = None) -> tuple[Runs | None, str]:
    """(the paper's released T5 runs, a line saying where from), or (None, why not) when
    the file is missing. `path` is relative to the working directory (notebooks/); None:
    RELEASED_CSV beside the repository (../../shared/...).

    N and D follow the released notebook's conventions (`fitting.load_paper_t5`); each run's
    key is its row in the csv."""
    path = Path(path or Path.cwd().parent.parent / RELEASED_CSV)
    if not path.is_file():
        return None, f"No paper data at {path}: this section shows the published coefficients only."
    S, N, D, loss = fitting.load_paper_t5(path)
    table = pd.DataFrame({"key": [f"row {i}" for i in range(len(S))], "sparsity": S,
                          "steps": D / fitting.T5_TOKENS_PER_STEP, "N": N, "D": D, "loss": loss})
    runs = Runs("t5", "C4 tokens", f"the paper's released runs ({path})", table)
    return runs, f"{len(runs)} T5 runs from {path}"


@dataclass(frozen=True, eq=False)
class ReleasedRefit:
    """The sparse law re-fitted to the paper's released T5 runs."""

    runs: Runs  # the released runs (released_t5)
    fit: fitting.FitResult  # the re-fit: log-residual Huber loss, delta 1e-3, as released

    @property
    def published_objective(self) -> float:
        """The objective of the rounded Table 1 coefficients on the released runs."""
        predicted = PAPER_T5.predict(self.runs.S, self.runs.N, self.runs.D)
        return fitting.objective(predicted, self.runs.loss, delta=DELTA, log=LOG)

    def panels(self) -> dict[str, tuple[Runs, Law]]:
        """Label -> (runs, law) for `predicted_vs_measured`: the re-fit and Table 1."""
        return {"re-fit": (self.runs, self.fit.law), "Table 1": (self.runs, PAPER_T5)}


def refit_released(runs: Runs | None, *, bootstrap: int = 0, seed: int = 0
                   ) -> ReleasedRefit | None:
    """The sparse law fitted to the released runs (None without them), with `bootstrap`
    refits behind 95% intervals."""
    if runs is None:
        return None
    fit = fitting.fit(runs.S, runs.N, runs.D, runs.loss, delta=DELTA, log=LOG, law="sparse",
                      seed=seed, bootstrap=bootstrap)
    return ReleasedRefit(runs, fit)


def refit_table(refit: ReleasedRefit | None) -> pd.DataFrame:
    """The published coefficients beside the re-fit's (with its 95% intervals) and each
    one's objective on the released runs; the published ones alone without a re-fit."""
    if refit is None:
        return pd.Series(PAPER_T5.as_dict(), name="published (Table 1)").to_frame()
    table = pd.DataFrame({
        "published (Table 1)": {**PAPER_T5.as_dict(), "objective": refit.published_objective},
        "re-fit": {**refit.fit.law.as_dict(), "objective": refit.fit.objective},
    })
    for name, (low, high) in refit.fit.intervals.items():
        table.loc[name, ["95% low", "95% high"]] = low, high
    return table


def extrapolation_table(refit: ReleasedRefit | None) -> pd.DataFrame:
    """The paper's extrapolation point (EXTRAPOLATION) predicted by Table 1 and, given a
    re-fit, by it and its bootstrap 95% interval, with each one's error in % of the
    measured loss."""
    predictions = {"published (Table 1)": float(PAPER_T5.predict(**EXTRAPOLATION))}
    if refit is not None:
        predictions["re-fit"] = float(refit.fit.law.predict(**EXTRAPOLATION))
        if refit.fit.bootstrap_laws:
            draws = [float(law.predict(**EXTRAPOLATION)) for law in refit.fit.bootstrap_laws]
            low, high = np.percentile(draws, [2.5, 97.5])
            predictions["re-fit, 95% low"], predictions["re-fit, 95% high"] = low, high
    return pd.DataFrame({
        "predicted loss": predictions,
        "error vs measured (%)": {k: 100 * (v / EXTRAPOLATION_LOSS - 1)
                                  for k, v in predictions.items()},
    })
