"""The runs: results stores read as the finished runs of one model family (`Runs`), the
coverage and run tables, and training a grid into a store from a notebook."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparsekit.analysis.tables import number, styled  # noqa: F401 (styled: imported from here too)
from sparsekit.config import PROTOCOLS
from sparsekit.data.corpus import STDLIB, check_one_corpus
from sparsekit.store import Store, load
from sparsekit.sweep import load_grid, sweep

FAMILY_LABELS = {"vit": "ViT", "t5": "T5"}  # family -> label
SMOKE_RESULTS = "../_build/smoke-results"  # throwaway smoke stores, relative to notebooks/


def is_level(S: np.ndarray, level: float) -> np.ndarray:
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
        return FAMILY_LABELS.get(self.family, self.family)

    def at_sparsity(self, S: float) -> Runs:
        """The runs at sparsity S."""
        return self.select(is_level(self.S, S))

    def select(self, mask: Any) -> Runs:
        """The runs where the boolean `mask` holds."""
        return replace(self, table=self.table[np.asarray(mask, bool)].reset_index(drop=True))


def runs_from_table(frame: pd.DataFrame, *, source: str, family: str | None = None) -> Runs:
    """The finished runs (status ok, finite loss) of one family in a store table.

    ValueError naming `source` if there are none, or if the runs mix families (pass
    `family`), data units or corpora (`data.corpus.check_one_corpus`).
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
    check_one_corpus(ok, what=source)  # a fit never mixes corpora
    for column, what in (("family", "families"), ("unit", "data units")):
        values = sorted(ok[column].unique())
        if len(values) != 1:
            raise ValueError(f"{source}: its runs mix {what} {values}; pass family=")
    return Runs(ok["family"].iat[0], ok["unit"].iat[0], source, ok)


def finished_runs(frame: pd.DataFrame, *, source: str, family: str | None = None) -> Runs | None:
    """`runs_from_table`, or None when the table holds no finished run of the family yet (a
    grid not run, or not finished): for chapters that show "not yet run" instead of failing."""
    try:
        return runs_from_table(frame, source=source, family=family)
    except ValueError as e:
        if "has no" in str(e):
            return None
        raise


def stores_with_runs(stores: Sequence[str | Path]) -> list[str | Path]:
    """The stores (existing directories) that hold at least one finished run."""
    return [s for s in stores if finished_runs(load(s, allow_empty=True), source=str(s))]


def load_runs(store: str | Path, *, family: str | None = None) -> Runs:
    """The finished runs of a results store (ValueError naming the store if there are none)."""
    return runs_from_table(
        load(store, allow_empty=True), source=f"results store {store}", family=family
    )


def load_stores(stores: Sequence[str | Path], *, family: str) -> Runs | None:
    """The finished `family` runs of several stores as one set (a run kept in two stores
    counts once); None when they hold none."""
    frames = [load(store, allow_empty=True) for store in stores]
    frame = pd.concat([f for f in frames if not f.empty] or [pd.DataFrame()], ignore_index=True)
    if frame.empty or not (frame.get("family") == family).any():
        return None
    frame = frame.drop_duplicates("key")
    return runs_from_table(frame, source=", ".join(map(str, stores)), family=family)


def load_families(
    stores: Mapping[str, str | Path | None],
) -> tuple[dict[str, Runs], dict[str, str]]:
    """(family -> runs, family -> why not loaded) for stores given by family; a store of None
    is a family skipped on purpose (see `checks.store_parameter`)."""
    runs, missing = {}, {}
    for family, store in stores.items():
        if store is None:
            missing[family] = "skipped: no store given"
            continue
        try:
            runs[family] = load_runs(store, family=family)
        except ValueError as e:
            missing[family] = str(e)
    return runs, missing


def run_grid(
    grid: str | Path,
    store: str | Path,
    *,
    reuse: bool = True,
    workers: int = 1,
    train_missing: bool = True,
) -> pd.DataFrame:
    """Train the grid's runs that the store lacks (all of them with reuse=False) and reuse
    the others; the grid's rows (see `sweep.sweep`) with a boolean column `reused`.

    train_missing=False trains nothing: the grid's runs already stored, without the lock (so
    a sweep may be writing the store meanwhile); `attrs["missing"]` counts the others.
    """
    if not train_missing:
        keys = [cfg.key() for cfg in load_grid(grid).configs()]
        frame = load(store, allow_empty=True)
        if not frame.empty:  # the grid's stored runs, in grid order
            frame = pd.DataFrame({"key": keys}).merge(frame, on="key")
        frame = frame.assign(reused=True)
        frame.attrs["missing"] = len(keys) - len(frame)
        return frame
    before = set(Store(store).keys()) if reuse else set()
    with warnings.catch_warnings():  # tqdm.auto's, in a kernel without ipywidgets
        warnings.filterwarnings("ignore", message="IProgress not found")
        frame = sweep(load_grid(grid), store, reuse=reuse, workers=workers, progress=False)
    return frame.assign(reused=frame["key"].isin(before))


def describe_sweep(frame: pd.DataFrame, store: str | Path) -> str:
    """One line: how many of the grid's runs were reused, trained now, failed and (when
    training was off) left untrained."""
    reused = int(frame["reused"].sum())
    failed = int((frame["status"] != "ok").sum()) if len(frame) else 0
    missing = frame.attrs.get("missing", 0)
    total = len(frame) + missing
    line = (
        f"{total} runs in the grid: {reused} reused from {store}, "
        f"{len(frame) - reused} trained now; {failed} failed"
    )
    return line + (f"; {missing} not in the store and not trained" if missing else "")


RUN_COLUMNS = {  # store column -> runs_table column
    "sparsity": "S",
    "N_target": "N_target",
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


def _recipe(row: pd.Series, classes: bool, seeds: bool = True) -> str:
    """A run's recipe as a column label, e.g. 'LR 0.01 x 48/width, batch 32', with ', 2:4'
    for a sparsity pattern other than unstructured, ', paper protocol' for a run with the
    embeddings and head pruned by the paper's rule (`Sparsity.embed_rule`; a dense run too,
    as the paper-protocol grids store theirs so), ', pinned corpus' for a T5 corpus other than
    the default standard library, ', seed K' when its init seed is not 0 and
    ', data seed K' when its data seed differs from the init seed (both only if `seeds`), and
    ', C classes' when `classes` (the runs mix class counts)."""
    lr, lr_width = row["config.optim.lr"], row.get("config.optim.lr_width")
    label = f"LR {lr:g}"
    if pd.notna(lr_width) and lr_width:
        label += f" x {int(lr_width)}/width"
    label += f", batch {int(row['batch'])}"
    pattern = row.get("pattern")
    if pd.notna(pattern) and pattern != "unstructured":  # never pool n:m with unstructured
        label += f", {pattern}"
    embed_rule = row.get("config.sparsity.embed_rule")
    if pd.notna(embed_rule) and bool(embed_rule):  # never pool the two protocols either
        label += f", {PROTOCOLS[True]} protocol"
    corpus = row.get("config.data.options.corpus")
    if isinstance(corpus, str) and corpus != STDLIB:  # nor two corpora
        label += f", {corpus} corpus"
    seed = row.get("config.seed", 0)
    seed = int(seed) if pd.notna(seed) else 0
    if seeds and seed:
        label += f", seed {seed}"
    data_seed = row.get("config.data.seed", seed)
    if seeds and pd.notna(data_seed) and int(data_seed) != seed:
        label += f", data seed {int(data_seed)}"
    count = row.get("config.data.options.num_classes")
    if classes and pd.notna(count):
        label += f", {int(count)} classes"
    return label


POINT = ["S", "N_target", "width", "D"]  # the columns that name a grid point in these tables
READABLE = {"sparsity": "S"}  # store column -> its name in these tables (N_target keeps its own)


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A store table with its point columns under their names in the book's tables
    (`READABLE`: sparsity -> S)."""
    return table.rename(columns=READABLE)


PER_POINT = ", the grid's seed per point"  # the recipe label's suffix for such a grid's runs


def recipe_labelled(frames: Sequence[pd.DataFrame], *, seeds: bool,
              per_point: Collection[str] = ()) -> pd.DataFrame:
    """Store tables stacked, with a `recipe` label (class counts named if they differ), the
    point columns renamed, and a run kept in several stores (its config key may differ only by
    a field added later) once. The runs whose key is in `per_point` (a grid with a seed of its
    own at every point) share one label, without their seeds and ending in PER_POINT."""
    table = pd.concat(frames, ignore_index=True)
    classes = table.get("config.data.options.num_classes", pd.Series(dtype=float)).nunique() > 1
    recipe = table.apply(_recipe, axis=1, classes=classes, seeds=seeds)
    own = table["key"].isin(per_point)
    if own.any():
        recipe[own] = table[own].apply(_recipe, axis=1, classes=classes, seeds=False) + PER_POINT
    table = table.assign(
        recipe=recipe, run=table.apply(_recipe, axis=1, classes=True),
    ).pipe(readable)
    return table.drop_duplicates([*POINT, "run", "loss"])


def _checks_beside_grid(checks: Sequence[str | Path], grid: Runs | None) -> pd.DataFrame:
    """The runs of the check stores and (with `grid`) the grid's runs at their points,
    labelled by `recipe_labelled` (a grid whose points have seeds of their own as one recipe);
    ValueError naming the store if a check store has no runs."""
    frames = [load_runs(store).table for store in checks]
    points = pd.concat(frames)[["sparsity", "N_target", "D"]].drop_duplicates()
    per_point: set[str] = set()
    if grid is not None:
        frames.append(grid.table.merge(points))
        seeds = [grid.table[c] for c in ("config.seed", "config.data.seed") if c in grid.table]
        if any(s.nunique() > 1 for s in seeds):  # `seed_per_point`
            per_point = set(grid.table["key"])
    return recipe_labelled(frames, seeds=True, per_point=per_point)


def _pivot_unique(table: pd.DataFrame, column: str, clash: str) -> pd.DataFrame:
    """Loss per point (rows) and `column` value (columns); ValueError saying `clash`, with
    the points, if two runs share a point and a value (the table would hide one)."""
    twice = table[table.duplicated([*POINT, column], keep=False)]
    if len(twice):
        raise ValueError(
            f"checks: {clash}, at {twice[[*POINT, column]].drop_duplicates().to_dict('records')}"
        )
    return table.pivot(index=POINT, columns=column, values="loss").rename_axis(columns=None)


def recipe_table(checks: Sequence[str | Path], grid: Runs | None = None) -> pd.DataFrame:
    """The finished runs of recipe-check stores (e.g. a learning-rate, batch-size, seed or
    task check) side by side, with the grid's runs (as the chapter already holds them) at the
    same points: one row per (S, N_target, width, D), one final-validation-loss column per
    recipe (peak LR, its width scaling if any, batch, seeds if not 0, class count if the
    runs differ in it); steps = D / batch. A run kept in several stores is shown once. The
    runs of a grid with a seed of its own at every point (`seed_per_point`) are one column,
    labelled without their seeds and ending in PER_POINT.

    ValueError naming the store if a check store has no finished runs, or if two runs at one
    point differ in a setting the label does not show.
    """
    # two different runs under one label: the label misses what tells them apart
    table = _checks_beside_grid(checks, grid)
    wide = _pivot_unique(table, "recipe", "runs differ in a setting the recipe label does not show")
    return wide.reset_index()


def pattern_order(pattern: str) -> tuple[int, int]:
    """Sort key: unstructured first, then n:m by m and n."""
    if ":" not in pattern:
        return (0, 0)
    n, m = pattern.split(":")
    return (int(m), int(n))


def pattern_table(checks: Sequence[str | Path], grid: Runs) -> pd.DataFrame:
    """n:m against unstructured sparsity: one row per point (S, N_target, width, D) of the
    check stores, one final-loss column per sparsity pattern (the grid's unstructured run at
    the point included), and first the grid's dense run at the same N_target and D.

    ValueError naming the store if a check store has no finished runs, or if two runs share a
    point and a pattern (the table would hide one).
    """
    table = _checks_beside_grid(checks, grid)
    table = table.assign(pattern=table.get("pattern", "unstructured")).fillna(
        {"pattern": "unstructured"}
    )
    wide = _pivot_unique(table, "pattern", "more than one run per point and pattern")
    wide = wide[sorted(wide.columns, key=pattern_order)].reset_index()
    dense = grid.table[grid.table["sparsity"] == 0].set_index(["N_target", "D"])["loss"]
    at = pd.MultiIndex.from_frame(wide[["N_target", "D"]])
    wide.insert(len(POINT), "dense (same N_target, D)", dense.reindex(at).to_numpy())
    return wide
