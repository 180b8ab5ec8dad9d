"""The book's analysis: results stores as fit arrays, the standard figures, law fits that cope
with partial stores, the comparison tables, and provenance summaries.

Only the notebooks (and tests) import this module, so, like `sparsekit.plotting`, it loads
pandas and plotly at module level. Units: S is the fraction of zero weights; N the measured
non-zero non-embedding parameters; D the training data in the family's unit (tokens for T5,
images for ViT); C training FLOPs; losses are validation cross-entropies in nats per target
byte-token (T5) or per image (ViT). Every figure goes through `plotting.figure`, so it uses
the book's renderer, colours and axis conventions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsekit import fitting, plotting
from sparsekit.costs import dense_cost, resolve_cost
from sparsekit.laws import LAWS, PAPER_T5, PAPER_VIT, Law
from sparsekit.store import Store, load
from sparsekit.sweep import GridError, load_grid, sweep

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

FAMILIES = {"vit": "ViT", "t5": "T5"}  # family -> label
PAPER = {"vit": PAPER_VIT, "t5": PAPER_T5}  # the paper's Table 1 fit of each family
LOSS_UNITS = {"images": "nats per image", "tokens": "nats per target byte-token"}
SMOKE_RESULTS = "../_build/smoke-results"  # throwaway smoke stores, relative to notebooks/

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
GREY = "#888888"
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")


# --- notebook parameters ----------------------------------------------------------------


def check_flag(name: str, value: Any) -> None:
    """ValueError naming `name` unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """ValueError naming `name` unless `value` is an integer in [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """ValueError naming `name` unless `value` is one of `allowed`."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_choices(name: str, values: Any, allowed: Sequence[str]) -> None:
    """ValueError naming `name` unless `values` is a non-empty list of distinct `allowed`."""
    ok = isinstance(values, list | tuple) and values and len(set(values)) == len(values)
    if not ok or not all(isinstance(v, str) and v in allowed for v in values):
        raise ValueError(
            f"{name} must be a non-empty list of distinct {list(allowed)}, got {values!r}"
        )


def check_store(name: str, value: Any) -> None:
    """ValueError naming `name` unless `value` can be a results store directory."""
    if not isinstance(value, str) or not value or Path(value).is_file():
        raise ValueError(
            f"{name} must be a results store directory (relative to notebooks/), got {value!r}"
        )


def check_grid(name: str, value: Any, family: str) -> None:
    """ValueError naming `name` unless `value` is a grid YAML file of `family` runs."""
    if not isinstance(value, str) or not Path(value).is_file():
        raise ValueError(
            f"{name} must be an existing grid YAML file (relative to notebooks/), got {value!r}"
        )
    try:
        families = {cfg.model.family for cfg in load_grid(value).configs()}
    except GridError as e:
        raise ValueError(f"{name} must be a valid grid file: {e}") from None
    if families != {family}:
        raise ValueError(f"{name} must be a grid of {family} runs, {value} has {sorted(families)}")


# --- runs -----------------------------------------------------------------------------------


def _is_level(S: np.ndarray, level: float) -> np.ndarray:
    """Where the sparsities S equal `level` (up to float noise)."""
    return np.isclose(S, level, rtol=0.0, atol=1e-9)


@dataclass(frozen=True, eq=False)
class Runs:
    """The finished runs of one model family: the points a law is fitted to."""

    family: str  # "vit" or "t5"
    unit: str  # what D counts: "tokens" or "images"
    source: str  # where the runs were read from (for messages)
    table: pd.DataFrame  # one row per finished run, the store's columns

    def __len__(self) -> int:
        return len(self.table)

    def _array(self, column: str) -> np.ndarray:
        return pd.to_numeric(self.table[column], errors="coerce").to_numpy(dtype=np.float64)

    @property
    def S(self) -> np.ndarray:
        """Target sparsity of each run (fraction of zero weights)."""
        return self._array("sparsity")

    @property
    def N(self) -> np.ndarray:
        """Measured non-zero non-embedding parameters of each run."""
        return self._array("N")

    @property
    def D(self) -> np.ndarray:
        """Training data of each run, in `unit`."""
        return self._array("D")

    @property
    def loss(self) -> np.ndarray:
        """Final validation loss of each run (nats per target byte-token or per image)."""
        return self._array("loss")

    @property
    def loss_se(self) -> np.ndarray:
        """Standard error of each run's validation loss over the held-out set."""
        return self._array("loss_se")

    @property
    def size(self) -> np.ndarray:
        """Nominal non-zero size of each run: the grid's target N (measured N without one)."""
        target = self._array("N_target") if "N_target" in self.table else np.nan
        return np.where(np.isfinite(target), target, self.N)

    @property
    def label(self) -> str:
        """The family's name in the book, e.g. 'ViT'."""
        return FAMILIES.get(self.family, self.family)

    def at_sparsity(self, S: float) -> Runs:
        """The runs at sparsity S."""
        return self.select(_is_level(self.S, S))

    def select(self, mask: Any) -> Runs:
        """The runs where the boolean `mask` holds."""
        return replace(self, table=self.table[np.asarray(mask, bool)].reset_index(drop=True))


def runs_from_table(frame: pd.DataFrame, *, source: str, family: str | None = None) -> Runs:
    """The finished runs (status ok, finite loss) of one family in a store table.

    ValueError naming `source` if there are none, or if the runs mix families (pass
    `family`) or data units.
    """
    if frame.empty:
        raise ValueError(f"{source} has no runs (run the sweep into it first)")
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        raise ValueError(f"{source} has no finished runs ({len(frame)} failed)")
    if family is not None:
        present = sorted(ok["family"].unique())
        ok = ok[ok["family"] == family]
        if ok.empty:
            raise ValueError(f"{source} has no finished {family} runs (it has {present})")
    ok = ok[np.isfinite(ok["loss"].astype(float))].reset_index(drop=True)
    for column, what in (("family", "families"), ("unit", "data units")):
        values = sorted(ok[column].unique())
        if len(values) != 1:
            raise ValueError(f"{source}: its runs mix {what} {values}; pass family=")
    return Runs(ok["family"].iat[0], ok["unit"].iat[0], source, ok)


def load_runs(store: str | Path, *, family: str | None = None) -> Runs:
    """The finished runs of a results store (ValueError naming the store if there are none)."""
    return runs_from_table(
        load(store, allow_empty=True), source=f"results store {store}", family=family
    )


def load_families(stores: Mapping[str, str | Path]) -> tuple[dict[str, Runs], dict[str, str]]:
    """(family -> runs, family -> why not loaded) for stores given by family."""
    runs, missing = {}, {}
    for family, store in stores.items():
        try:
            runs[family] = load_runs(store, family=family)
        except ValueError as e:
            missing[family] = str(e)
    return runs, missing


def coverage_table(runs: Mapping[str, Runs], missing: Mapping[str, str]) -> pd.DataFrame:
    """One row per family: the runs found, their distinct S, N and D, and the median
    standard error of the loss relative to the loss (%); for `missing` families, why."""
    rows = {}
    for r in runs.values():
        rows[r.label] = {
            "runs": len(r),
            "S levels": ", ".join(f"{s:g}" for s in np.unique(r.S)),
            "sizes N": np.unique(r.size).size,
            "data D": ", ".join(f"{d:.3g}" for d in np.unique(r.D)) + f" {r.unit}",
            "median SE / loss (%)": 100 * np.nanmedian(r.loss_se / r.loss),
            "source": r.source,
        }
    for family, reason in missing.items():
        rows[FAMILIES.get(family, family)] = {"runs": 0, "source": reason}
    return pd.DataFrame.from_dict(rows, orient="index")


def run_grid(
    grid: str | Path, store: str | Path, *, reuse: bool = True, workers: int = 1
) -> pd.DataFrame:
    """Train the grid's runs that the store lacks (all of them with reuse=False) and reuse
    the others; the grid's rows (see `sweep.sweep`) with a boolean column `reused`."""
    before = set(Store(store).keys()) if reuse else set()
    with warnings.catch_warnings():  # tqdm.auto's, in a kernel without ipywidgets
        warnings.filterwarnings("ignore", message="IProgress not found")
        frame = sweep(load_grid(grid), store, reuse=reuse, workers=workers, progress=False)
    return frame.assign(reused=frame["key"].isin(before))


def describe_sweep(frame: pd.DataFrame, store: str | Path) -> str:
    """One line: how many of the grid's runs were reused, trained now, and failed."""
    reused = int(frame["reused"].sum())
    failed = int((frame["status"] != "ok").sum())
    return (
        f"{len(frame)} runs in the grid: {reused} reused from {store}, "
        f"{len(frame) - reused} trained now; {failed} failed"
    )


RUN_COLUMNS = {  # store column -> runs_table column
    "sparsity": "S",
    "N_target": "N target",
    "N": "N",
    "width": "width",
    "D": "D",
    "steps": "steps",
    "loss": "loss",
    "loss_se": "loss SE",
    "wall_time_s": "wall time (s)",
    "status": "status",
    "reused": "reused",
    "key": "key",
}


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs of a store table, one row each, sorted by S, N and D, readable columns."""
    columns = [c for c in RUN_COLUMNS if c in frame]
    table = frame[columns].sort_values([c for c in ("sparsity", "N_target", "D") if c in frame])
    return (
        table.rename(columns=RUN_COLUMNS)
        .reset_index(drop=True)
        .round({"loss": 4, "loss SE": 4, "wall time (s)": 1})
    )


def styled(table: pd.DataFrame, digits: int = 4) -> Styler:
    """`table` for display: floats to `digits` significant digits, blanks for missing, all
    rows shown (a pandas Styler)."""
    floats = table.select_dtypes("float").columns
    return table.style.format(f"{{:.{digits}g}}", subset=floats, na_rep="")


# --- figures of the runs ------------------------------------------------------------------


def count(x: float) -> str:
    """A count with an SI suffix: 3072 -> '3.07k', 1.6e10 -> '16G'."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def loss_title(unit: str, prefix: str = "validation loss") -> str:
    """Axis title of a loss, with the units of a family whose D counts `unit`."""
    return f"{prefix} ({LOSS_UNITS.get(unit, 'nats')})"


def data_title(unit: str) -> str:
    """Axis title of the training data D, counted in `unit` (tokens or images)."""
    return f"training data D ({unit})"


N_TITLE = "non-zero non-embedding parameters N"


def _hover(table: pd.DataFrame) -> tuple[list, str]:
    """(customdata, hovertemplate) with each run's config, for `fig.add_scatter`."""
    records = [
        {
            "key": row["key"],
            "S": row["sparsity"],
            "N": int(row["N"]),
            "N target": row.get("N_target"),
            "width": row.get("width"),
            "D": int(row["D"]),
            "steps": row.get("steps"),
            "loss": round(float(row["loss"]), 4),
            "loss SE": round(float(row.get("loss_se", np.nan)), 4),
            "wall time (s)": round(float(row.get("wall_time_s", np.nan)), 1),
            "lr": row.get("config.optim.lr"),
        }
        for _, row in table.iterrows()
    ]
    return plotting.hover(records, list(records[0]))


def _style(i: int) -> tuple[dict, dict]:
    """(line, marker) styles of the i-th line of a panel; colour comes from the sparsity."""
    return {"dash": DASHES[i % len(DASHES)]}, {"symbol": SYMBOLS[i % len(SYMBOLS)], "size": 7}


def _loss_lines(
    runs: Runs, x: str, group: np.ndarray, names: Sequence[str], title: str, x_title: str
) -> go.Figure:
    """Loss against column `x`: a panel per sparsity (its colour), a line per value of
    `group` (dash and symbol; the grey legend entries toggle one line in every panel)."""
    levels = np.unique(runs.S)
    fig = plotting.figure(
        title,
        x_title,
        loss_title(runs.unit),
        log_x=True,
        subplot_titles=[plotting.sparsity_label(s) for s in levels],
    )
    fig.update_xaxes(matches="x")
    fig.update_yaxes(matches="y")  # one loss scale, so panels compare
    for i, (value, name) in enumerate(zip(np.unique(group), names, strict=True)):
        line, marker = _style(i)
        fig.add_scatter(
            x=[None],
            y=[None],
            mode="lines+markers",
            name=name,
            legendgroup=name,
            line={**line, "color": GREY},
            marker={**marker, "color": GREY},
        )
        for col, s in enumerate(levels, start=1):
            rows = runs.table[_is_level(runs.S, s) & (group == value)].sort_values(x)
            if rows.empty:
                continue
            customdata, hovertemplate = _hover(rows)
            color = plotting.sparsity_color(s)
            fig.add_scatter(
                x=rows[x],
                y=rows["loss"],
                error_y={"array": rows.get("loss_se")},
                mode="lines+markers",
                row=1,
                col=col,
                showlegend=False,
                legendgroup=name,
                line={**line, "color": color},
                marker={**marker, "color": color},
                customdata=customdata,
                hovertemplate=hovertemplate,
            )
    return fig


def loss_vs_data(runs: Runs) -> go.Figure:
    """Loss against data D (log axis), a panel per sparsity, a line per nominal size N."""
    sizes = np.unique(runs.size)
    return _loss_lines(
        runs,
        "D",
        runs.size,
        [f"N ≈ {count(n)}" for n in sizes],
        f"{runs.label}: loss vs training data",
        data_title(runs.unit),
    )


def loss_vs_size(runs: Runs) -> go.Figure:
    """Loss against non-zero size N (log axis), a panel per sparsity, a line per data D."""
    amounts = np.unique(runs.D)
    return _loss_lines(
        runs,
        "N",
        runs.D,
        [f"D = {count(d)} {runs.unit}" for d in amounts],
        f"{runs.label}: loss vs non-zero parameters",
        N_TITLE,
    )


# --- fitting ------------------------------------------------------------------------------


def law_points(runs: Runs, law: str) -> Runs:
    """The runs a law describes: the dense runs for Chinchilla, all runs otherwise."""
    return runs.at_sparsity(0.0) if law == "chinchilla" else runs


def unsupported(runs: Runs, law: str) -> str | None:
    """Why `runs` cannot support a fit of `law` (None when they can).

    A fit needs 2 distinct N and D (one exponent each), 3 distinct S for the sparse law
    (a_S, b_S, c_S), dense runs for the multiplier law, and more points than parameters.
    """
    points = law_points(runs, law)
    if not len(points):
        return "no dense (S = 0) runs" if law == "chinchilla" else "no runs"
    problems = []
    for name, need in {"S": 3 if law == "sparse" else 1, "N": 2, "D": 2}.items():
        distinct = np.unique(getattr(points, name)).size
        if distinct < need:
            problems.append(f"needs {need} distinct {name} values, has {distinct}")
    if law == "multiplier" and not _is_level(points.S, 0.0).any():
        problems.append("needs dense (S = 0) runs to anchor eff(0) = 1")
    n_params = LAWS[law].n_params_for(points.S)
    if len(points) <= n_params:
        problems.append(f"{len(points)} runs for {n_params} parameters (needs more runs)")
    return "; ".join(problems) or None


def _arrays(runs: Runs) -> tuple[np.ndarray, ...]:
    return runs.S, runs.N, runs.D, runs.loss


@dataclass(frozen=True, eq=False)
class LawFits:
    """Laws fitted to one family's runs; each law (or extrapolation) left out says why."""

    runs: Runs
    fits: dict[str, fitting.FitResult]  # law -> fit to all the points it describes
    extrapolations: dict[str, fitting.SizeExtrapolation]  # law -> fit without the largest N
    notes: dict[str, str]  # law -> what could not be done, and why

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


def fit_laws(
    runs: Runs,
    laws: Sequence[str] = tuple(LAW_LABELS),
    *,
    bootstrap: int = 0,
    seed: int = 0,
    extrapolate: bool = True,
) -> LawFits:
    """Fit each law the runs support (log residuals, Huber delta DELTA); with `extrapolate`,
    also refit it without the largest size N and predict that size.

    bootstrap: refits behind 95% intervals, for the sparse law only (the others would cost
    minutes each without being shown). Laws the runs cannot support are skipped, with the
    reason in `notes`.
    """
    fits, extrapolations, notes = {}, {}, {}
    for law in laws:
        reason = unsupported(runs, law)
        if reason:
            notes[law] = f"not fitted: {reason}"
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
            notes[law] = f"not fitted: {e}"
            continue
        if not np.isfinite(fit.objective):
            notes[law] = "not fitted: the best fit is degenerate (non-finite predictions)"
            continue
        fits[law] = fit
        if not extrapolate:
            continue
        rest = points.select(np.less(points.N, points.N.max() / HOLD_OUT_WITHIN))
        reason = unsupported(rest, law)
        if reason:
            notes[law] = f"no extrapolation (without the largest N: {reason})"
            continue
        try:
            with np.errstate(all="ignore"):
                extrapolation = fitting.leave_largest_size_out(
                    *_arrays(points), within=HOLD_OUT_WITHIN, delta=DELTA, log=LOG, law=law
                )
        except ValueError as e:  # e.g. a sparsity level only the largest size has
            notes[law] = f"no extrapolation: {e}"
            continue
        if np.all(np.isfinite(extrapolation.predicted)):
            extrapolations[law] = extrapolation
        else:
            notes[law] = "no extrapolation: the fit without the largest N is degenerate"
    return LawFits(runs, fits, extrapolations, notes)


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


def coefficient_table(fit: fitting.FitResult, paper: Law) -> pd.DataFrame:
    """The fitted coefficients with their 95% bootstrap intervals (when computed) next to the
    paper's. N in non-zero parameters, D in tokens or images, as in the paper."""
    table = pd.DataFrame({"this project": fit.law.as_dict(), "paper (Table 1)": paper.as_dict()})
    for name, (low, high) in fit.intervals.items():
        if name in table.index:
            table.loc[name, ["95% low", "95% high"]] = low, high
    order = ["this project", "95% low", "95% high", "paper (Table 1)"]
    return table[[c for c in order if c in table]]


def predicted_vs_measured(panels: Mapping[str, tuple[Runs, Law]], title: str) -> go.Figure:
    """Predicted against measured loss, a panel per (runs, law), colour by sparsity; points
    on the dotted diagonal are predicted exactly. Hover shows each run's config."""
    unit = next(iter(panels.values()))[0].unit
    fig = plotting.figure(
        title,
        loss_title(unit, "measured loss"),
        loss_title(unit, "predicted loss"),
        subplot_titles=list(panels),
    )
    shown = set()
    for col, (runs, law) in enumerate(panels.values(), start=1):
        predicted = law.predict(runs.S, runs.N, runs.D)
        lo, hi = min(runs.loss.min(), predicted.min()), max(runs.loss.max(), predicted.max())
        fig.add_scatter(
            x=[lo, hi],
            y=[lo, hi],
            mode="lines",
            row=1,
            col=col,
            showlegend=False,
            line={"color": GREY, "dash": "dot"},
            hoverinfo="skip",
        )
        for s in np.unique(runs.S):
            at = _is_level(runs.S, s)
            level = runs.select(at)
            customdata, hovertemplate = _hover(level.table)
            fig.add_scatter(
                x=level.loss,
                y=predicted[at],
                mode="markers",
                row=1,
                col=col,
                name=plotting.sparsity_label(s),
                legendgroup=str(s),
                showlegend=s not in shown,
                customdata=customdata,
                hovertemplate=hovertemplate,
                marker={"color": plotting.sparsity_color(s), "size": 8},
            )
            shown.add(s)
    return fig


# --- optimal sparsity and the dense equivalent ---------------------------------------------


def project_scale(runs: Runs, margin: float = 4.0) -> tuple[tuple[float, float], ...]:
    """((N low, N high), (C low, C high)) around the runs: N non-zeros and C = 6 N D / (1 - S)
    FLOPs (the dense cost model), widened by `margin` on each side."""
    C = 6.0 * runs.N * runs.D * dense_cost(runs.S)
    return ((runs.N.min() / margin, runs.N.max() * margin), (C.min() / margin, C.max() * margin))


def sopt_map(
    laws: Mapping[str, Law],
    scale: tuple[tuple[float, float], ...],
    *,
    cost: str,
    title: str,
    points: int = 60,
    runs: Runs | None = None,
) -> go.Figure:
    """Contours of the optimal sparsity S_opt(N, C) under a cost model, a panel per law, with
    the dense compute-optimal frontier (white) and, given `runs`, each run at the compute
    its sparsity costs under that model (C = 6 N D cost(S)).

    scale: ((N low, N high), (C low, C high)), log-spaced `points` per axis.
    """
    N, C = (np.geomspace(*bounds, points) for bounds in scale)
    n_grid, c_grid = np.meshgrid(N, C, indexing="ij")  # rows: N, columns: C
    fig = plotting.figure(
        title, "C", "N", log_x=True, log_y=True, height=430, subplot_titles=list(laws)
    )
    for col, law in enumerate(laws.values(), start=1):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = law.optimal_sparsity(n_grid, c_grid, cost=cost)
            n_opt, _ = law.dense_frontier(C)
        fig.add_contour(
            x=C,
            y=N,
            z=z,
            row=1,
            col=col,
            zmin=0.0,
            zmax=1.0,
            colorscale="Viridis",
            contours={"start": 0.0, "end": 0.9, "size": 0.1, "showlabels": True},
            showscale=col == 1,
            colorbar={"title": {"text": "S_opt"}},
            hovertemplate="C = %{x:.2e} FLOPs<br>N = %{y:.2e}<br>S_opt = %{z:.3f}<extra></extra>",
        )
        on_map = (n_opt >= N[0]) & (n_opt <= N[-1])
        fig.add_scatter(
            x=C[on_map],
            y=n_opt[on_map],
            mode="lines",
            row=1,
            col=col,
            showlegend=False,
            line={"color": "white", "width": 3},
            hovertemplate="dense compute-optimal<br>C = %{x:.2e}<br>N = %{y:.2e}<extra></extra>",
        )
        for s in np.unique(runs.S) if runs is not None else ():
            level = runs.at_sparsity(s)
            customdata, hovertemplate = _hover(level.table)
            fig.add_scatter(
                x=6.0 * level.N * level.D * resolve_cost(cost)(level.S),
                y=level.N,
                mode="markers",
                row=1,
                col=col,
                name=f"run, {plotting.sparsity_label(s)}",
                legendgroup=str(s),
                showlegend=col == 1,
                customdata=customdata,
                hovertemplate=hovertemplate,
                marker={
                    "color": plotting.sparsity_color(s),
                    "size": 8,
                    "line": {"color": "white", "width": 1},
                },
            )
    if runs is not None:  # the runs' legend below the panels, off the colour bar
        fig.update_layout(legend={"orientation": "h", "y": -0.3}, margin={"b": 110})
    return fig


def _dense_equivalent_interval(fit: fitting.FitResult, S: float) -> tuple[float, float]:
    """The bootstrap 95% interval of m(S); NaNs without bootstrap or runs at S."""
    return fit.intervals.get(f"dense_equivalent[S={S:g}]", (np.nan, np.nan))


def dense_equivalent_table(fits: Mapping[str, fitting.FitResult]) -> pd.DataFrame:
    """m(S) at the paper's sparsities: each family's fit, its 95% bootstrap interval (when
    computed) and the paper's Table 1 value; indexed by (family, S)."""
    rows = {}
    for family, fit in fits.items():
        for s in PAPER_LEVELS:
            low, high = _dense_equivalent_interval(fit, s)
            rows[FAMILIES[family], s] = {
                "this project": float(fit.law.dense_equivalent(s)),
                "95% low": low,
                "95% high": high,
                "paper (Table 1)": float(PAPER[family].dense_equivalent(s)),
            }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["family", "S"]
    return table


def dense_equivalent_figure(fits: Mapping[str, fitting.FitResult]) -> go.Figure:
    """m(S) of each family's fit (solid, with bootstrap 95% intervals at the paper's
    sparsities where computed) against the paper's (dashed), a panel per family."""
    S = np.linspace(0.0, 0.95, 96)
    fig = plotting.figure(
        "Equivalent dense size: this project vs the paper",
        "S",
        "dense_equivalent",
        subplot_titles=[FAMILIES[f] for f in fits],
    )
    for col, (family, fit) in enumerate(fits.items(), start=1):
        for name, law, dash in (
            ("this project", fit.law, "solid"),
            ("paper (Table 1)", PAPER[family], "dash"),
        ):
            fig.add_scatter(
                x=S,
                y=law.dense_equivalent(S),
                mode="lines",
                row=1,
                col=col,
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                line={"color": "#555555", "dash": dash},
                hovertemplate=f"{name}<br>S = %{{x:.3f}}<br>m(S) = %{{y:.3f}}<extra></extra>",
            )
        for s in PAPER_LEVELS:
            low, high = _dense_equivalent_interval(fit, s)
            if np.isnan(low):
                continue
            m = float(fit.law.dense_equivalent(s))
            fig.add_scatter(
                x=[s],
                y=[m],
                mode="markers",
                row=1,
                col=col,
                showlegend=False,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [high - m],
                    "arrayminus": [m - low],
                },
                marker={"color": plotting.sparsity_color(s), "size": 9},
                hovertemplate=(
                    f"this project, {plotting.sparsity_label(s)}<br>m = %{{y:.3f}} "
                    f"(95%: {low:.3f} to {high:.3f})<extra></extra>"
                ),
            )
    return fig


# --- provenance -----------------------------------------------------------------------------

SHA = r"^([0-9a-f]{12})[0-9a-f]{28}"  # a git commit, shown by its first 12 hex digits


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column of a store table, or NaN where the table has none (e.g. only failed runs)."""
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


def _integers(column: pd.Series) -> pd.Series:
    """Whole numbers shown as such, missing values kept (nullable integers)."""
    return pd.to_numeric(column, errors="coerce").round().astype("Int64")


def _joined(frame: pd.DataFrame, prefix: str) -> pd.Series:
    """'name value, ...' of the columns `prefix`* of each row (e.g. versions.*)."""
    columns = [c for c in frame if c.startswith(prefix)]
    return frame[columns].apply(
        lambda row: ", ".join(
            f"{c.removeprefix(prefix)} {row[c]}" for c in columns if pd.notna(row[c])
        ),
        axis=1,
    )


def provenance_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every run of a store table: what it is (family, key, S, N, D, loss, status) and what
    produced it (code version, machine, library versions, wall time, finished_at)."""
    frame = frame.reset_index(drop=True)
    machine = [
        f"{host} / {device} / {cpus} CPUs" if pd.notna(host) else None
        for host, device, cpus in zip(
            _column(frame, "machine.host"),
            _column(frame, "machine.device"),
            _integers(_column(frame, "machine.cpus")),
            strict=True,
        )
    ]
    table = pd.DataFrame(
        {
            "family": _column(frame, "family"),
            "key": _column(frame, "key"),
            "S": _column(frame, "sparsity"),
            "N": _integers(_column(frame, "N")),
            "D": _integers(_column(frame, "D")),
            "unit": _column(frame, "unit"),
            "loss": _column(frame, "loss").round(4),
            "status": _column(frame, "status"),
            "code version": _column(frame, "code_version")
            .astype("string")
            .str.replace(SHA, r"\1", regex=True),
            "machine": machine,
            "versions": _joined(frame, "versions."),
            "wall time (s)": _column(frame, "wall_time_s").round(1),
            "finished_at": _column(frame, "finished_at"),
        }
    )
    return table.sort_values(["family", "S", "N", "D"]).reset_index(drop=True)


def _counts(column: pd.Series) -> str:
    """'value (runs); ...' for the distinct values of a column, most frequent first."""
    return "; ".join(f"{value} ({n})" for value, n in column.dropna().value_counts().items())


def provenance_summary(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One column per store: runs (finished and failed), CPU hours (sum of the runs' wall
    times), and the distinct machines, code versions and library versions behind them."""
    rows = {}
    for store, frame in frames.items():
        if frame.empty:
            rows[store] = {"runs": 0}
            continue
        table = provenance_table(frame)
        rows[store] = {
            "runs": len(table),
            "finished": int((table["status"] == "ok").sum()),
            "failed": int((table["status"] != "ok").sum()),
            "families": ", ".join(sorted(table["family"].dropna().unique())),
            "CPU hours": f"{table['wall time (s)'].sum() / 3600:.3g}",  # text: mixed column
            "machines": _counts(table["machine"]),
            "code versions": _counts(table["code version"]),
            "versions": _counts(table["versions"]),
            "finished between": f"{table['finished_at'].min()} and {table['finished_at'].max()}",
        }
    return pd.DataFrame(rows)


def wall_time_figure(frames: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Wall time of each finished run against its training FLOPs (dense-width model), a
    panel per store, colour by sparsity; hover shows the run's config and machine."""
    frames = {store: f for store, f in frames.items() if "flops_dense" in f}
    fig = plotting.figure(
        "Wall time of the runs",
        "training compute (FLOPs, dense-width model)",
        "wall time (s)",
        log_x=True,
        log_y=True,
        subplot_titles=list(frames),
    )
    shown = set()
    for col, frame in enumerate(frames.values(), start=1):
        ok = frame[frame["status"] == "ok"]
        for s in sorted(ok["sparsity"].unique()):
            level = ok[ok["sparsity"] == s]
            customdata, hovertemplate = plotting.hover(
                level.to_dict("records"),
                ["key", "family", "sparsity", "N", "D", "width", "machine.host", "code_version"],
            )
            fig.add_scatter(
                x=level["flops_dense"],
                y=level["wall_time_s"],
                mode="markers",
                row=1,
                col=col,
                name=plotting.sparsity_label(s),
                legendgroup=str(s),
                showlegend=s not in shown,
                customdata=customdata,
                hovertemplate=hovertemplate,
                marker={"color": plotting.sparsity_color(s), "size": 8},
            )
            shown.add(s)
    return fig
