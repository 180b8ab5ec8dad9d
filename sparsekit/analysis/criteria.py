"""Can a grid measure the law? Six criteria, computed from its results stores (issue 12).

1. Regime: D/N over the grid has median >= 50 and max >= 500, inside the paper's range.
2. Noise: the seed SD pooled over >= 3 grid points x >= 3 seeds at the grid's recipe is
   <= 0.03 nats and <= 1/10 of the range of the grid's losses.
3. Not stuck, not solved: the smallest dense model at the smallest D has learned at least
   10% of the learnable range (plateau - floor); the largest dense model at the largest D is
   still >= 0.3 nats, and above the floor by more than 2 seed SDs.
4. Order: at each D the dense loss falls with N, and at each N with D (ties within 2 seed SDs).
5. A law: a Chinchilla law fitted to the dense runs has RMSE <= 2 seed SDs.
6. Cost: the grid's summed run time is <= 8 hours.

The plateau is the loss of the best prediction that ignores the image (`data.marginal`, the
teacher task's H(mean p); ln C for other class tasks) and the floor the best possible loss
(`data.floor`, the teacher's mean entropy; 0 for other tasks). A criterion whose runs are not
in the stores yet says "not yet run", and one that rests on a partial grid says so.

Units: N non-zero non-embedding parameters, D images (or tokens), losses and SDs in nats.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sparsekit.analysis.fits import fit_laws
from sparsekit.analysis.noise import grid_sd, noise_floor, seed_spread
from sparsekit.analysis.regime import PAPER_REGIME, tokens_per_param
from sparsekit.analysis.runs import (
    Runs,
    finished_runs,
    recipe_table,
    runs_from_table,
    stores_with_runs,
    styled,
)
from sparsekit.analysis.tables import number
from sparsekit.store import Store, load

REGIME = (50.0, 500.0)  # least median and least max of D/N over the grid
NOISE_MAX = 0.03  # most pooled seed SD, nats
NOISE_SHARE = 0.1  # most pooled seed SD as a share of the range of the grid's losses
NOISE_DESIGN = (3, 3)  # least points, least runs (seeds) at each
LEARNED = 0.1  # least share of (plateau - floor) the smallest model must have learned
NOT_SOLVED = 0.3  # least loss of the largest dense run, nats
TIES = 2.0  # seed SDs within which two losses tie (order) or the floor is reached
LAW_RMSE = 2.0  # most RMSE of the dense Chinchilla fit, in seed SDs
COST_HOURS = 8.0  # most summed run time of the grid
PASS, FAIL, NOT_RUN = "pass", "fail", "not yet run"


def floor_and_plateau(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """Per run: the best possible loss and the image-blind loss (see the module docstring)."""
    t = runs.table
    classes = pd.to_numeric(t.get("data.num_classes", pd.Series(np.nan, t.index)))
    floor = pd.to_numeric(t.get("data.floor", pd.Series(np.nan, t.index))).fillna(0.0)
    plateau = pd.to_numeric(t.get("data.marginal", pd.Series(np.nan, t.index)))
    return floor.to_numpy(float), plateau.fillna(np.log(classes)).to_numpy(float)


def grid_noise(spread: pd.DataFrame | None) -> tuple[float, int]:
    """(pooled seed SD, points with enough seeds) over the grid-recipe rows of a `seed_spread`
    table made with `grid` (NaN, 0 for None)."""
    if spread is None or not len(spread):
        return np.nan, 0
    ours = spread[spread["grid recipe"]]
    return grid_sd(spread), int((ours["runs"] >= NOISE_DESIGN[1]).sum())


def order_violations(dense: Runs, tie: float) -> tuple[int, int, list[str]]:
    """(violations, comparisons, where) of 'the loss falls with N at each D and with D at each
    N' among dense runs; neighbours within `tie` nats tie."""
    t = pd.DataFrame({"N": dense.N, "size": dense.size, "D": dense.D, "loss": dense.loss})
    bad, total, where = 0, 0, []
    for fixed, moving in (("D", "N"), ("size", "D")):
        for value, group in t.groupby(fixed):
            losses = group.sort_values(moving)[["loss", moving]].to_numpy()
            for (prev, x0), (nxt, x1) in itertools.pairwise(losses):
                total += 1
                if nxt > prev + tie:
                    bad += 1
                    where.append(f"{fixed} {number(value)}: {moving} {number(x0)} -> "
                                 f"{number(x1)} (+{nxt - prev:.3g})")
    return bad, total, where


def _corner(dense: Runs, pick: str) -> int | None:
    """Index of the dense run at the smallest ("min") or largest ("max") nominal N and D."""
    if not len(dense):
        return None
    sizes, amounts = dense.size, dense.D
    at = np.flatnonzero((sizes == getattr(sizes, pick)()) & (amounts == getattr(amounts, pick)()))
    return int(at[0]) if len(at) else None


def _status(ok: bool | None, complete: bool) -> str:
    if ok is None:
        return NOT_RUN
    return (PASS if ok else FAIL) + ("" if complete else " (so far)")


def criteria_table(grid: Runs | None, spread: pd.DataFrame | None, *, planned: int,
                   wall_time_s: float = np.nan) -> pd.DataFrame:
    """The six criteria as a table: criterion, measured, target, status (pass / fail / not
    yet run; "so far" while the grid is partial).

    grid: the grid's finished runs (None if none); spread: `seed_spread(noise stores,
    grid=grid)` (None without noise runs); planned: the grid's run count; wall_time_s: the
    summed run time of the grid's stored runs (failed ones included).
    """
    runs = 0 if grid is None else len(grid)
    complete = runs >= planned
    sd, noisy_points = grid_noise(spread)
    rows = []

    def add(name: str, measured: str, target: str, ok: bool | None) -> None:
        rows.append({"criterion": name, "measured": measured, "target": target,
                     "status": _status(ok, complete)})

    if grid is None:
        for name, target in (
            ("1. regime", f"D/N median >= {REGIME[0]:g}, max >= {REGIME[1]:g}"),
            ("2. noise", f"seed SD <= {NOISE_MAX:g} and <= {NOISE_SHARE:g} x loss range"),
            ("3a. not stuck", f"smallest model learned >= {LEARNED:.0%} of plateau - floor"),
            ("3b. not solved", f"largest dense loss >= {NOT_SOLVED:g}, > floor + {TIES:g} SD"),
            ("4. order", f"dense loss falls with N and D (ties {TIES:g} SD)"),
            ("5. a law", f"dense Chinchilla RMSE <= {LAW_RMSE:g} seed SD"),
            ("6. cost", f"summed run time <= {COST_HOURS:g} h"),
        ):
            add(name, f"0 of {planned} runs", target, None)
        return pd.DataFrame(rows)

    ratio = tokens_per_param(grid)
    low, _, high = PAPER_REGIME.get(grid.family, (0.0, np.nan, np.inf))
    add("1. regime", f"D/N min {ratio.min():.3g}, median {np.median(ratio):.3g}, "
        f"max {ratio.max():.3g} ({runs} of {planned} runs)",
        f"median >= {REGIME[0]:g}, max >= {REGIME[1]:g}, within the paper's "
        f"{low:g}-{high:g}",
        bool(np.median(ratio) >= REGIME[0] and ratio.max() >= REGIME[1]
             and ratio.min() >= low and ratio.max() <= high))

    spread_range = float(np.ptp(grid.loss))
    enough = noisy_points >= NOISE_DESIGN[0]
    add("2. noise", f"seed SD {sd:.3g} over {noisy_points} points with >= "
        f"{NOISE_DESIGN[1]} seeds; loss range {spread_range:.3g} "
        f"(SD / range {sd / spread_range:.3g})" if np.isfinite(sd) else
        f"no noise runs yet; loss range {spread_range:.3g}",
        f"SD <= {NOISE_MAX:g} and <= {NOISE_SHARE:g} x range, over >= {NOISE_DESIGN[0]} "
        f"points x >= {NOISE_DESIGN[1]} seeds",
        None if not np.isfinite(sd) else bool(
            enough and sd <= NOISE_MAX and sd <= NOISE_SHARE * spread_range))

    dense = grid.at_sparsity(0.0)
    tie = TIES * sd if np.isfinite(sd) else 0.0
    floor, plateau = floor_and_plateau(dense)
    i = _corner(dense, "min")
    if i is None:
        add("3a. not stuck", "no dense run at the smallest N and D yet", "", None)
    else:
        share = (plateau[i] - dense.loss[i]) / (plateau[i] - floor[i])
        add("3a. not stuck", f"N {number(dense.N[i])}, D {number(dense.D[i])}: "
            f"loss {dense.loss[i]:.4g}, plateau {plateau[i]:.4g}, floor {floor[i]:.4g}: "
            f"learned {share:.1%}",
            f">= {LEARNED:.0%} of plateau - floor", bool(share >= LEARNED))
    i = _corner(dense, "max")
    if i is None:
        add("3b. not solved", "no dense run at the largest N and D yet", "", None)
    else:
        gap = dense.loss[i] - floor[i]
        add("3b. not solved", f"N {number(dense.N[i])}, D {number(dense.D[i])}: "
            f"loss {dense.loss[i]:.4g}, {gap:.3g} above the floor {floor[i]:.4g}",
            f"loss >= {NOT_SOLVED:g} and > floor + {TIES:g} seed SD",
            None if not np.isfinite(sd) else bool(dense.loss[i] >= NOT_SOLVED and gap > tie))

    bad, total, where = order_violations(dense, tie)
    add("4. order", f"{bad} of {total} neighbours out of order" + (": " + "; ".join(where)
                                                                    if where else ""),
        f"none (ties within {TIES:g} seed SD)",
        None if not (total and np.isfinite(sd)) else bad == 0)

    fit = fit_laws(grid, laws=("chinchilla",), extrapolate=False)
    if "chinchilla" in fit.fits and np.isfinite(sd):
        rmse = fit.fits["chinchilla"].diagnostics.rmse
        add("5. a law", f"RMSE {rmse:.3g} = {rmse / sd:.3g} seed SD on {len(dense)} dense runs",
            f"<= {LAW_RMSE:g} seed SD", bool(rmse <= LAW_RMSE * sd))
    else:
        add("5. a law", fit.notes.get("chinchilla", "no noise runs yet"),
            f"<= {LAW_RMSE:g} seed SD", None)

    hours = wall_time_s / 3600
    add("6. cost", f"{hours:.2f} h summed over {runs} of {planned} runs",
        f"<= {COST_HOURS:g} h", bool(hours <= COST_HOURS) if np.isfinite(hours) else None)
    return pd.DataFrame(rows)


def design_criteria(frame: pd.DataFrame, noise: Sequence[str | Path], *, family: str,
                    source: str) -> pd.DataFrame:
    """`criteria_table` for a grid's table as `run_grid` returns it (`attrs["missing"]`
    counts runs not in the store) and the noise stores (those without runs are skipped)."""
    grid = finished_runs(frame, source=source, family=family)
    stores = stores_with_runs(noise)
    spread = seed_spread(stores, grid=grid) if grid is not None and stores else None
    planned = len(frame) + frame.attrs.get("missing", 0)
    wall = float(frame["wall_time_s"].sum()) if "wall_time_s" in frame else np.nan
    return criteria_table(grid, spread, planned=planned, wall_time_s=wall)


def above_floor_table(runs: Runs) -> pd.DataFrame:
    """Final loss minus the floor (nats; see `floor_and_plateau`): one row per (S, N_target),
    one column per D. The part of the loss a larger model or more data can still remove."""
    floor, _ = floor_and_plateau(runs)
    t = pd.DataFrame({"S": runs.S, "N_target": runs.size, "D": runs.D,
                      "loss - floor": runs.loss - floor})
    wide = t.pivot_table(index=["S", "N_target"], columns="D", values="loss - floor")
    wide = wide.rename(columns=lambda d: f"D = {number(d)}")
    return wide.rename_axis(columns=None).reset_index()


def curve_table(store: str | Path) -> pd.DataFrame:
    """The validation curves of a store's finished runs (those with `eval_every`): one row per
    run (S, N_target, width, peak LR, seed), one column per number of images seen, cells the
    validation loss (nats) then; for reading a plateau, or its absence, off the pilots."""
    rows = []
    for r in Store(store).results(strict=False):
        if r.status != "ok" or not r.val_curve:
            continue
        row = {"S": r.sparsity, "N_target": r.N_target, "width": r.width,
               "peak LR": r.peak_lr, "seed": r.config["seed"]}
        row |= {int(step) * r.batch: loss for step, loss in r.val_curve}
        rows.append(row)
    if not rows:
        raise ValueError(f"results store {store} has no finished runs with a validation curve")
    table = pd.DataFrame(rows).sort_values(["S", "N_target", "peak LR", "seed"])
    return table.rename(columns=lambda k: f"{k:,} images" if isinstance(k, int) else k)


def archived_outputs(grid_store: str | Path, checks: Sequence[str | Path], *,
                     family: str) -> list:
    """What the ViT chapter shows of an archived grid: its `design_criteria` (its check
    stores as the noise runs), its recipe checks beside its grid runs, the noise-floor line
    and its seed spread (tables for `analysis.show`)."""
    source = f"results store {grid_store}"
    archived = load(grid_store)
    old = runs_from_table(archived, source=source, family=family)
    spread = seed_spread(checks, grid=old)
    return [styled(design_criteria(archived, checks, family=family, source=source)),
            styled(recipe_table(checks, grid=old)), noise_floor(spread), styled(spread)]
