"""n:m sparsity patterns against unstructured sparsity at the same S, width and data: the
measured loss gaps (seed-averaged where seeds exist), the paper's per-pattern refit (one size
factor per pattern, the unstructured fit's other coefficients kept), and the n:m check of the
trained weights (`sparsekit.nmcheck`) on the checkpoints a sweep saved.

Units: S is the fraction of zero weights; N non-zero non-embedding parameters; D tokens;
losses and gaps in nats per target byte-token; m (the equivalent dense size) a multiple of N.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsekit import fitting, plotting
from sparsekit.analysis.evidence import matched_gaps
from sparsekit.analysis.figures import GREY, loss_title
from sparsekit.analysis.fits import LawFits, fit_laws
from sparsekit.analysis.noise import grid_sd_and_df, noise_by_slice
from sparsekit.analysis.regime import within
from sparsekit.analysis.rules import Interval, resolved
from sparsekit.analysis.runs import (  # POINT: one cell, the runs that differ only by seed
    POINT,
    Runs,
    load_runs,
    pattern_order,
    readable,
    runs_from_table,
)
from sparsekit.config import RunConfig
from sparsekit.data.corpus import STDLIB
from sparsekit.masks import parse_pattern
from sparsekit.store import Store

UNSTRUCTURED = "unstructured"
# Config fields a cell's runs may differ in (seeds), besides those the cell names.
_FREE = {"config.seed", "config.data.seed", "config.sparsity.pattern", "config.sparsity.target",
         "config.model.nonzero", "config.model.width", "config.data.amount"}


def split_stores(name: str, values: Any) -> tuple[list[str], list[str]]:
    """(existing, missing) results store directories of a notebook parameter listing stores
    that may not have been run yet; ValueError naming `name` unless it is a list of paths."""
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{name} must be a list of results store directories (relative to "
                         f"notebooks/; missing ones are reported as not run yet), got {values!r}")
    present = [v for v in values if Path(v).is_dir()]
    return present, [v for v in values if v not in present]


# What an n:m run shares with the runs it is set against, besides its point: the protocol
# (the paper's embedding rule, `Sparsity.embed_rule`; exact N, `Model.exact`) and the T5
# corpus. A store older than a field (NaN), or a family without it, has its default here.
SAME = {"config.sparsity.embed_rule": False, "config.model.exact": False,
        "config.data.options.corpus": STDLIB}
_POINT = ["sparsity", "N_target", "D", *SAME]  # an n:m point, in its setting
_DENSE = ["N_target", "D", *SAME]  # where its dense twin is (any dense run there)


def _in_setting(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with the SAME columns filled with their defaults where missing."""
    filled = {}
    for column, default in SAME.items():
        values = table[column] if column in table else pd.Series(np.nan, index=table.index)
        values = values.astype(object).where(values.notna(), default)
        filled[column] = values.astype(type(default))
    return table.assign(**filled)


def pattern_runs(stores: Sequence[str | Path], grid: Runs) -> Runs:
    """The n:m runs of `stores` (seed stores included), every unstructured run of the stores
    or the grid at their points (S, N_target, D), and every dense run at their N_target and
    D, all in the n:m runs' setting (`SAME`: protocol and corpus), as one `Runs` (family of
    the grid); a run kept in several stores once. An n:m run is never set against a run of
    another protocol or corpus: when the chapter's grid is another (a paper-protocol grid, a
    grid on the pinned corpus), list the n:m runs' own grid among `stores`."""
    frames = [load_runs(store).table for store in stores]
    table = pd.concat([*frames, grid.table], ignore_index=True).drop_duplicates("key")
    table = _in_setting(table.reset_index(drop=True))
    table["pattern"] = table.get("pattern", UNSTRUCTURED)
    table = table.fillna({"pattern": UNSTRUCTURED})
    nm = table[table["pattern"] != UNSTRUCTURED]
    if nm.empty:
        raise ValueError(f"stores {list(stores)} hold no n:m runs")
    at_point = table.merge(nm[_POINT].drop_duplicates(), how="left", indicator=True)
    dense = table.merge(nm[_DENSE].drop_duplicates(), how="left", indicator=True)
    keep = (at_point["_merge"] == "both").to_numpy() | (
        (dense["_merge"] == "both").to_numpy() & np.isclose(table["sparsity"], 0.0))
    return runs_from_table(table[keep].reset_index(drop=True),
                           source=", ".join(map(str, stores)), family=grid.family)


def cells(runs: Runs) -> pd.DataFrame:
    """One row per pattern and point (S, N_target, width, D): the number of runs (seeds), their
    mean final loss and its standard deviation (ddof 1; NaN for one run). ValueError naming the
    point when a cell's runs differ in anything but their seeds."""
    table = readable(runs.table)
    fixed = [c for c in table if c.startswith("config.") and c not in _FREE]
    for key, group in table.groupby(["pattern", *POINT]):
        varied = [c for c in fixed if group[c].astype(str).nunique() > 1]
        if varied:
            raise ValueError(f"runs at {dict(zip(['pattern', *POINT], key, strict=True))} "
                             f"differ in {varied}, not only in their seeds")
    out = table.groupby(["pattern", *POINT])["loss"].agg(runs="count", loss="mean", SD="std")
    return out.reset_index()


def gap_noise(spread: pd.DataFrame | None) -> tuple[float, float, pd.DataFrame | None]:
    """What `gaps` judges the gaps against, from a `noise.seed_spread` table made with the
    grid (None: no seed stores): the seed SD pooled over the grid's recipe (nats), its
    degrees of freedom, and the SD per data slice (`noise.noise_by_slice`); NaN, NaN, None
    without seeds."""
    if spread is None:
        return np.nan, np.nan, None
    return (*grid_sd_and_df(spread), noise_by_slice(spread))


def gaps(cell_table: pd.DataFrame, noise: float, slices: pd.DataFrame | None = None,
         df: float = np.inf) -> pd.DataFrame:
    """Each n:m cell against the unstructured cell at the same point (`evidence.matched_gaps`):
    the loss gap (n:m minus unstructured, nats; > 0: n:m worse), the gap relative to the
    unstructured loss (%), the seed SD it is judged against (nats) with its degrees of
    freedom, the gap's standard error from that SD (each cell's mean of its runs), the gap's
    95% t-interval, and whether it is resolved (`rules.resolved`: the interval excludes zero;
    otherwise single runs cannot order the two and more seeds are needed; NA where the SD is
    unknown).

    The seed noise changes with the length of the runs, so with `slices` (a
    `noise.noise_by_slice` table: the seed SD and its degrees of freedom per data amount D)
    each point is judged against the SD of its own slice; points on other slices, or without
    `slices`, against `noise` (a pooled SD) at `df` degrees of freedom."""
    table = cell_table.reset_index(drop=True)
    by_data = {} if slices is None else slices["seed SD"].to_dict()
    df_by_data = {} if slices is None else slices["df"].to_dict()
    sd = table["D"].map(lambda d: by_data.get(d, noise)).astype(float)
    dof = table["D"].map(lambda d: df_by_data.get(d, df)).astype(float)
    out = matched_gaps(table.assign(**{"seed SD": sd, "df": dof}), POINT,
                       table["pattern"] == UNSTRUCTURED, sd,
                       names=("unstructured", "unstructured runs"))
    out = out.rename(columns={"se": "gap SE"})
    out["gap (%)"] = 100 * out["gap"] / out["unstructured"]
    intervals = [Interval.t(g, se, d) for g, se, d in zip(out["gap"], out["gap SE"], out["df"],
                                                           strict=True)]
    out["gap low"] = [i.low for i in intervals]
    out["gap high"] = [i.high for i in intervals]
    out["resolved"] = pd.array([resolved(i) for i in intervals], dtype="boolean")
    columns = ["pattern", *POINT, "runs", "loss", "unstructured runs", "unstructured", "gap",
               "gap (%)", "seed SD", "df", "gap SE", "gap low", "gap high", "resolved"]
    out = out[columns]
    order = out["pattern"].map(pattern_order)
    return out.iloc[np.lexsort((out["D"], out["N_target"], order, out["S"]))].reset_index(
        drop=True)


def gap_summary(gap_table: pd.DataFrame) -> pd.DataFrame:
    """Per pattern: its sparsity, the points compared, the mean, smallest and largest gap
    over unstructured (nats), the mean relative gap (%), and how many of the gaps are
    resolved (`gaps`; points with unknown noise count as unresolved)."""
    table = gap_table.assign(resolved=gap_table["resolved"].fillna(False).astype(int))
    groups = table.groupby("pattern", sort=False)
    out = groups.agg(S=("S", "first"), points=("gap", "count"), mean=("gap", "mean"),
                     smallest=("gap", "min"), largest=("gap", "max"),
                     **{"mean (%)": ("gap (%)", "mean")}, resolved=("resolved", "sum"))
    return out.loc[sorted(out.index, key=lambda p: (out.loc[p, "S"], pattern_order(p)))]


def refit(base: fitting.FitResult, runs: Runs, seed: int = 0) -> dict[str, fitting.FactorFit]:
    """The paper's per-pattern refit on the n:m runs of `runs` (every seed a point): one size
    factor per pattern, every other coefficient from `base`, the fit to the unstructured and
    dense runs (see `fitting.fit_pattern_factors`)."""
    nm = runs.select(runs.table["pattern"] != UNSTRUCTURED)
    if not len(nm):
        raise ValueError(f"{runs.source}: no n:m runs to refit")
    return fitting.fit_pattern_factors(base, nm.S, nm.N, nm.D, nm.loss,
                                       list(nm.table["pattern"]), seed=seed)


def refit_from_grid(grid: Runs, runs: Runs | None, *, law: str, floor: float | None,
                    bootstrap: int, seed: int = 0,
                    ) -> tuple[LawFits, dict[str, fitting.FactorFit] | None, str]:
    """The chapter's refit: `law` fitted to the grid's unstructured and dense runs with D/N at
    or above `floor` (bootstrapped), then `refit` of the n:m runs of `runs` in the same range.
    Returns (the law fits, the per-pattern refits or None, why there is no refit or "")."""
    fitted = within(grid, floor)
    fitted = fitted.select(fitted.table.get("pattern", UNSTRUCTURED) == UNSTRUCTURED)
    fits = fit_laws(fitted, [law], bootstrap=bootstrap, seed=seed, extrapolate=False)
    if law not in fits.fits:
        return fits, None, f"no refit: the {law} law was not fitted ({fits.notes.get(law, '')})"
    if runs is None:
        return fits, None, "no refit: no n:m runs stored yet"
    try:
        return fits, refit(fits.fits[law], within(runs, floor), seed=seed), ""
    except ValueError as e:  # e.g. no n:m run in the range yet, or a level the law lacks
        return fits, None, f"no refit: {e}"


def refit_table(fits: dict[str, fitting.FactorFit]) -> pd.DataFrame:
    """One row per pattern: S, runs, its equivalent dense size m and unstructured m(S) at the
    same S with their 95% intervals (when the base fit was bootstrapped), m relative to
    unstructured, and the mean Huber objective of the refit."""
    rows = {}
    for label, f in sorted(fits.items(), key=lambda item: pattern_order(item[0])):
        row = {"S": f.S, "runs": f.n_points}
        for name, key, value in (("m", "dense_equivalent", f.dense_equivalent),
                                 ("unstructured m(S)", "reference", f.reference),
                                 ("m / unstructured", "relative", f.relative)):
            low, high = f.intervals.get(key, (np.nan, np.nan))
            row |= {name: value, f"{name} 95% low": low, f"{name} 95% high": high}
        rows[label] = row | {"objective": f.objective}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pattern")


def refit_figure(fits: dict[str, fitting.FactorFit], title: str) -> go.Figure:
    """Equivalent dense size m of each pattern (markers in its sparsity's colour, 95% bars
    where computed) beside unstructured sparsity's m(S) at the same S (grey)."""
    fig = plotting.figure(title, "sparsity pattern", "equivalent dense size m (x N)")
    ordered = sorted(fits.values(), key=lambda f: (f.S, -parse_pattern(f.label).m))
    seen = set()
    for f in ordered:
        for name, value, key, color in (
            (f"unstructured {100 * f.S:g}%", f.reference, "reference", GREY),
            (f.label, f.dense_equivalent, "dense_equivalent", plotting.sparsity_color(f.S)),
        ):
            if name in seen:
                continue
            seen.add(name)
            low, high = f.intervals.get(key, (value, value))
            fig.add_scatter(
                x=[name], y=[value], mode="markers", showlegend=False,
                marker={"color": color, "size": 11, "symbol": "diamond" if color == GREY
                        else "circle"},
                error_y={"type": "data", "symmetric": False, "array": [high - value],
                         "arrayminus": [value - low]},
                hovertemplate=f"{name}<br>m = %{{y:.3f}} (95%: {low:.3f} to {high:.3f})"
                              "<extra></extra>",
            )
    return fig


def gap_figure(gap_table: pd.DataFrame, unit: str, title: str) -> go.Figure:
    """The loss gap of each n:m pattern over unstructured at each point against D, a panel
    per sparsity, a marker symbol per pattern; bars are the gaps' 95% t-intervals (`gaps`)."""
    levels = sorted(gap_table["S"].unique())
    fig = plotting.figure(title, f"training data D ({unit})", loss_title(unit, "n:m - unstructured"),
                          log_x=True, subplot_titles=[plotting.sparsity_label(s) for s in levels])
    fig.update_yaxes(matches="y")
    symbols = ("circle", "square", "diamond", "triangle-up")
    for i, (pattern, rows) in enumerate(gap_table.groupby("pattern", sort=False)):
        col = levels.index(rows["S"].iat[0]) + 1
        fig.add_scatter(
            x=rows["D"], y=rows["gap"], error_y={"array": rows["gap high"] - rows["gap"],
                                                 "arrayminus": rows["gap"] - rows["gap low"]},
            mode="markers",
            row=1, col=col, name=pattern,
            marker={"color": plotting.sparsity_color(rows["S"].iat[0]), "size": 9,
                    "symbol": symbols[i % len(symbols)]},
            customdata=np.stack([rows["N_target"], rows["runs"]], axis=1),
            hovertemplate=f"{pattern}<br>D = %{{x:.4g}}<br>gap = %{{y:.4f}}<br>"
                          "N_target = %{customdata[0]}, n:m seeds = %{customdata[1]}"
                          "<extra></extra>",
        )
    for col in range(1, len(levels) + 1):
        fig.add_hline(y=0.0, line={"color": GREY, "dash": "dot"}, row=1, col=col)
    return fig


def weight_checks(stores: Sequence[str | Path]) -> pd.DataFrame:
    """The n:m check (`nmcheck.check_checkpoint`) of every finished n:m run in `stores` whose
    params a sweep saved (`<store>/checkpoints/<key>`): one row per run, with the matrices and
    groups checked, the groups holding more than n non-zeros and the most non-zeros in one
    group. `attrs["unchecked"]` counts the n:m runs without a checkpoint (not committed)."""
    from sparsekit.nmcheck import check_checkpoint  # loads the training stack
    from sparsekit.pretrained import checkpoint_path

    rows, unchecked = [], 0
    for store in stores:
        for result in Store(store).results():
            pattern = parse_pattern(result.pattern or UNSTRUCTURED)
            if result.status != "ok" or pattern.kind != "nm":
                continue
            row = {"store": str(store), "key": result.key, "pattern": str(pattern),
                   "width": result.width, "D": result.D}
            path = checkpoint_path(store, result.key)
            if not path.exists():
                unchecked += 1
                continue
            report = check_checkpoint(str(path), RunConfig.from_dict(result.config))
            rows.append(row | {"matrices": len(report.matrices), "groups": report.groups,
                               "violating groups": report.violating,
                               "most non-zeros in a group": max(c.max_nonzero
                                                                for c in report.matrices),
                               "report": "" if report.ok else str(report)})
    table = pd.DataFrame(rows)
    table.attrs["unchecked"] = unchecked
    return table


def conclusion(summary: pd.DataFrame, fits: dict[str, fitting.FactorFit] | None,
               checks: pd.DataFrame) -> str:
    """A short conclusion computed from the gap summary, the refit (None when not fitted) and
    the weight checks, in Markdown."""
    lines = []
    for pattern, row in summary.iterrows():
        text = (f"- **{pattern}** ({100 * row['S']:g}%): {row['mean']:+.3f} nats against "
                f"unstructured on average over {int(row['points'])} points ({row['smallest']:+.3f} "
                f"to {row['largest']:+.3f}; {row['mean (%)']:+.2f}% of the loss; "
                f"{int(row['resolved'])} resolved: their 95% interval excludes zero)")
        if fits and pattern in fits:
            f = fits[pattern]
            low, high = f.intervals.get("relative", (np.nan, np.nan))
            ci = f" (95%: {low:.2f} to {high:.2f})" if np.isfinite(low) else ""
            text += (f"; refit on {f.n_points} run{'s' * (f.n_points > 1)}: equivalent dense "
                     f"size {f.dense_equivalent:.2f}x N against {f.reference:.2f}x for "
                     f"unstructured sparsity, {f.relative:.2f} of it{ci}")
        lines.append(text + ".")
    if len(checks):
        bad = int(checks["violating groups"].sum())
        lines.append(f"- Weights: {len(checks)} n:m checkpoints checked, "
                     f"{int(checks['groups'].sum())} groups, {bad} with more than n non-zeros"
                     + (" (all hold the pattern)." if bad == 0 else " (see the table)."))
    else:
        lines.append("- Weights: no n:m checkpoint here to check (see the check above).")
    return "\n".join(lines)
