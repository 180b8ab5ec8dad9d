"""The book's standard figures (plotly): loss against data and size, predicted against
measured loss, optimal-sparsity maps, the dense equivalent m(S), and the runs' wall times.

Every figure goes through `plotting.figure`, so it uses the book's renderer, colours and axis
conventions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsekit import fitting, plotting
from sparsekit.analysis.fits import PAPER, PAPER_LEVELS, dense_equivalent_interval
from sparsekit.analysis.runs import FAMILY_LABELS, Runs, is_level
from sparsekit.costs import training_flops
from sparsekit.laws import Law

LOSS_UNITS = {"images": "nats per image", "tokens": "nats per target byte-token"}
GREY = "#888888"
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")


# --- figures of the runs ----------------------------------------------------------------


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
    """(customdata, hovertemplate) with each run's config and its D/N (data per non-zero
    parameter, the regime), for `fig.add_scatter`. Fields no run has (e.g. the width of
    the paper's released runs) are left out."""
    records = [
        {
            "key": row.get("key"),
            "S": row["sparsity"],
            "N": int(row["N"]),
            "N_target": row.get("N_target"),
            "width": row.get("width"),
            "D": int(row["D"]),
            "D/N": round(float(row["D"]) / float(row["N"]), 1),
            "steps": row.get("steps"),
            "loss": round(float(row["loss"]), 4),
            "loss SE": round(float(row.get("loss_se", np.nan)), 4),
            "wall time (s)": round(float(row.get("wall_time_s", np.nan)), 1),
            "lr": row.get("config.optim.lr"),
        }
        for _, row in table.iterrows()
    ]
    return plotting.hover(records, [f for f in records[0] if any(pd.notna(r[f]) for r in records)])


def _style(i: int) -> tuple[dict, dict]:
    """(line, marker) styles of the i-th line of a panel; colour comes from the sparsity."""
    return {"dash": DASHES[i % len(DASHES)]}, {"symbol": SYMBOLS[i % len(SYMBOLS)], "size": 7}


def _markers(fig: go.Figure, x, y, s: float, col: int, shown: set, customdata, hovertemplate: str):
    """One sparsity level's points in its colour, with one legend entry per level."""
    fig.add_scatter(
        x=x,
        y=y,
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
            rows = runs.table[is_level(runs.S, s) & (group == value)].sort_values(x)
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


# --- figures of the fits ----------------------------------------------------------------


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
            at = is_level(runs.S, s)
            level = runs.select(at)
            customdata, hovertemplate = _hover(level.table)
            _markers(fig, level.loss, predicted[at], s, col, shown, customdata, hovertemplate)
    return fig


# --- optimal sparsity and the dense equivalent ------------------------------------------


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
                x=training_flops(level.N, level.D, level.S, cost),
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


def dense_equivalent_figure(fits: Mapping[str, fitting.FitResult]) -> go.Figure:
    """m(S) of each family's fit (solid, with bootstrap 95% intervals at the paper's
    sparsities where computed) against the paper's (dashed), a panel per family."""
    S = np.linspace(0.0, 0.95, 96)
    fig = plotting.figure(
        "Equivalent dense size: this project vs the paper",
        "S",
        "dense_equivalent",
        subplot_titles=[FAMILY_LABELS[f] for f in fits],
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
            low, high = dense_equivalent_interval(fit, s)
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


# --- the findings -----------------------------------------------------------------------


def gap_figure(gaps: pd.DataFrame, against: str, *, unit: str, title: str) -> go.Figure:
    """The sparse-dense gap L(S) - L(0) in matched cells (an `evidence.gaps` table), a line
    per nominal size N. against="S": against the sparsity (0 at S = 0), a panel per data
    amount D; against="D": against D (log axis), a panel per sparsity. Markers take the
    sparsity's colour; error bars are 2 seed-noise SEs where the noise is known."""
    if against not in ("S", "D"):
        raise ValueError(f"against must be 'S' or 'D', got {against!r}")
    panel_by, x_title = ("D", "S") if against == "S" else ("S", data_title(unit))
    panels = sorted(gaps[panel_by].unique())
    names = [f"D = {count(d)} {unit}" for d in panels] if against == "S" else [
        plotting.sparsity_label(s) for s in panels]
    fig = plotting.figure(title, x_title, loss_title(unit, "L(S) - L(dense)"),
                          log_x=against == "D", subplot_titles=names)
    fig.update_yaxes(matches="y")
    for i, size in enumerate(sorted(gaps["size"].unique())):
        line, marker = _style(i)
        for col, value in enumerate(panels, start=1):
            rows = gaps[(gaps["size"] == size) & (gaps[panel_by] == value)].sort_values(against)
            if rows.empty:
                continue
            x, y, se = rows[against].tolist(), rows["gap"].tolist(), (2 * rows["se"]).tolist()
            if against == "S":  # the line starts at the dense model itself
                x, y, se = [0.0, *x], [0.0, *y], [0.0, *se]
            fig.add_scatter(
                x=x, y=y, error_y={"array": se}, mode="lines+markers", row=1, col=col,
                name=f"N ≈ {count(size)}", legendgroup=str(size), showlegend=col == 1,
                line={**line, "color": GREY},
                marker={**marker, "color": [plotting.sparsity_color(s) for s in (
                    [0.0, *rows["S"]] if against == "S" else rows["S"])]},
                hovertemplate=f"N ≈ {count(size)}<br>x = %{{x:.4g}}<br>gap = %{{y:.4f}}"
                              "<extra></extra>",
            )
    return fig


# --- provenance -------------------------------------------------------------------------


def wall_time_figure(frames: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Wall time of each finished run against its training FLOPs (dense-width model), a
    panel per store, colour by sparsity; hover shows the run's config and machine."""
    frames = {store: f for store, f in frames.items() if "flops_dense" in f}
    fig = plotting.figure("Wall time of the runs", "training compute (FLOPs, dense-width model)",
                          "wall time (s)", log_x=True, log_y=True, subplot_titles=list(frames))
    shown = set()
    for col, frame in enumerate(frames.values(), start=1):
        ok = frame[frame["status"] == "ok"]
        for s in sorted(ok["sparsity"].unique()):
            level = ok[ok["sparsity"] == s]
            customdata, hovertemplate = plotting.hover(
                level.to_dict("records"),
                ["key", "family", "sparsity", "N", "D", "width", "machine.host", "code_version"],
            )
            _markers(fig, level["flops_dense"], level["wall_time_s"], s, col, shown, customdata,
                     hovertemplate)
    return fig
