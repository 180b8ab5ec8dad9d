"""Seed noise: the one home of every estimate of how much a run's final loss moves with its
seeds (init and data order), and of the degrees of freedom behind it.

A `seed_spread` table (points rerun with several seeds, from seed-check stores and the grid)
is the measurement; everything else pools it: over the grid's recipe (`grid_sd`,
`noise_floor`), per data slice (`noise_by_slice`, `longest_slice_noise`), over the points
of a set of runs (`noise_points`, `noise_of`, `view_noise`), or over a plain frame's points
run with several seeds (`frame_spread`, `frame_noise`). `pooled_sd` and `pooled_df` are the
pooling itself, and `sd_interval` the 95% interval of a pooled SD at its degrees of freedom.

Units: seed SDs in the family's loss units (nats); D tokens (T5) or images (ViT).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special  # its chi-square quantile; scipy.stats takes ~2 s to import

from sparsekit.analysis.rules import LEVEL
from sparsekit.analysis.runs import POINT, Runs, load_runs, recipe_labelled


def seed_spread(stores: Sequence[str | Path], grid: Runs | None = None) -> pd.DataFrame:
    """The spread of the final loss over seeds (init and data order): one row per point
    (S, N_target, width, D) and recipe where the stores (and the grid's runs) hold at least
    two runs that differ only in their seeds, with their number, mean, standard deviation
    (ddof 1) and range (max - min), in the family's loss units; sorted by recipe and point.
    With `grid`, `grid recipe` marks the rows whose recipe is the grid's.

    ValueError naming the store if a store has no finished runs.
    """
    frames = [load_runs(store).table.assign(grid=False) for store in stores]
    if grid is not None:  # first, so that a grid run kept in a check store too counts as the grid's
        frames.insert(0, grid.table.assign(grid=True))
    table = recipe_labelled(frames, seeds=False)
    groups = table.groupby(["recipe", *POINT])["loss"]
    spread = groups.agg(runs="count", mean="mean", SD="std", range=lambda x: x.max() - x.min())
    spread = spread[spread["runs"] >= 2].reset_index()
    if grid is not None:
        spread["grid recipe"] = spread["recipe"].isin(set(table.loc[table["grid"], "recipe"]))
    return spread




def pooled_sd(spread: pd.DataFrame) -> float:
    """The standard deviation pooled over the points of a `seed_spread` table:
    sqrt(sum (n - 1) SD^2 / sum (n - 1)); NaN for an empty table."""
    dof = spread["runs"] - 1
    return float(np.sqrt((dof * spread["SD"] ** 2).sum() / dof.sum())) if len(spread) else np.nan


def noise_floor(spread: pd.DataFrame) -> str:
    """One line: the seed SD pooled over the grid-recipe rows of a `seed_spread` table made
    with `grid`, and how many points and runs it rests on."""
    ours = spread[spread["grid recipe"]]
    return (
        f"noise floor: seed SD {grid_sd(spread):.3g} nats at the grid's recipe, "
        f"pooled over {len(ours)} points ({int(ours['runs'].sum())} runs)"
    )


def noise_by_slice(spread: pd.DataFrame) -> pd.DataFrame:
    """The seed SD per data slice: one row per data amount D of the grid-recipe rows of a
    `seed_spread` table made with `grid`, with the points and runs it pools, their pooled
    SD (nats) and its degrees of freedom (`pooled_df`). The seed noise falls as runs get
    longer, so one pooled number over slices hides it: a fit is judged against the noise of
    the slices it fits (`noise_of`)."""
    ours = spread[spread["grid recipe"]]
    rows = {
        d: {"points": len(g), "runs": int(g["runs"].sum()), "seed SD": pooled_sd(g),
            "df": pooled_df(g)}
        for d, g in ours.groupby("D")
    }
    table = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["points", "runs", "seed SD", "df"])
    table.index.name = "D"
    return table


def noise_points(spread: pd.DataFrame, runs: Runs) -> pd.DataFrame:
    """The grid-recipe rows of a `seed_spread` table whose point (S, N_target, D) is one of
    `runs`: the points the noise of a fit to those runs rests on."""
    ours = spread[spread["grid recipe"]]
    fitted = set(zip(runs.S, runs.size, runs.D, strict=True))
    at = [(s, n, d) in fitted for s, n, d in zip(ours["S"], ours["N_target"], ours["D"],
                                                  strict=True)]
    return ours[np.asarray(at, dtype=bool)]  # a bare [] would select columns


def noise_of(spread: pd.DataFrame, runs: Runs) -> float:
    """The seed SD pooled over `noise_points` (NaN if none)."""
    return pooled_sd(noise_points(spread, runs))


def pooled_df(spread: pd.DataFrame) -> float:
    """The degrees of freedom of `pooled_sd` over the same rows: sum (n - 1); NaN if none."""
    return float((spread["runs"] - 1).sum()) if len(spread) else np.nan


def grid_sd_and_df(spread: pd.DataFrame) -> tuple[float, float]:
    """The seed SD pooled over the grid-recipe rows of a `seed_spread` table made with
    `grid`, and its degrees of freedom (NaNs if none)."""
    ours = spread[spread["grid recipe"]]
    return pooled_sd(ours), pooled_df(ours)


def grid_sd(spread: pd.DataFrame) -> float:
    """The seed SD of `grid_sd_and_df` alone (NaN if none)."""
    return grid_sd_and_df(spread)[0]


def sd_interval(sd: float, df: float) -> tuple[float, float]:
    """The 95% interval of a pooled seed SD `sd` on `df` degrees of freedom (chi-square:
    sd sqrt(df / q), q the chi-square quantiles); (sd, sd) for df = inf (known), NaNs when
    either is unknown or df < 1."""
    if not (np.isfinite(sd) and df >= 1):
        return (np.nan, np.nan)
    if np.isinf(df):
        return (float(sd), float(sd))
    q = special.chdtri(df, [0.5 - LEVEL / 2, 0.5 + LEVEL / 2])  # chi2(df) quantiles 0.975, 0.025
    low, high = sd * np.sqrt(df / q)
    return (float(low), float(high))


def frame_spread(table: pd.DataFrame) -> pd.DataFrame:
    """The points (sparsity, N, D) a frame holds with two or more distinct seeds: their
    number of seeds (`runs`) and loss SD (`SD`); empty without a `seed` column."""
    if "seed" not in table or table.empty:
        return pd.DataFrame({"runs": [], "SD": []})
    groups = table.groupby(["sparsity", "N", "D"])
    spread = pd.DataFrame({"runs": groups["seed"].nunique(), "SD": groups["loss"].std()})
    return spread[spread["runs"] >= 2]


def frame_noise(table: pd.DataFrame) -> tuple[float, float]:
    """(seed SD, its degrees of freedom) pooled over `frame_spread`; NaNs without such
    points."""
    spread = frame_spread(table)
    return pooled_sd(spread), pooled_df(spread)


def view_noise(spread: pd.DataFrame, runs: Runs) -> tuple[float, float]:
    """(seed SD in nats, its degrees of freedom) that a set of runs is judged against:
    pooled over the points of a `seed_spread` table (made with the grid) among these runs
    (`noise_points`), else over those of the longest data slice rerun, else NaN."""
    points = noise_points(spread, runs)
    if not len(points):
        ours = spread[spread["grid recipe"]]
        points = ours[ours["D"] == ours["D"].max()] if len(ours) else ours
    return pooled_sd(points), pooled_df(points)


def longest_slice_noise(spread: pd.DataFrame | None) -> float:
    """The seed SD at the longest data slice of a `seed_spread` table (`noise_by_slice`);
    NaN without one."""
    slices = noise_by_slice(spread) if spread is not None else None
    return float(slices["seed SD"].iloc[-1]) if slices is not None and len(slices) else np.nan
