"""The book's analysis helpers on small hand-made tables: no training, a few small fits.

Runs are rows like `train.run`'s, with losses from a made-up sparse law at laptop scale
(`LAW`), so a full grid is fitted back to it and a partial one shows what cannot be fitted.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from sparsekit import analysis, plotting
from sparsekit.laws import SparseLaw
from sparsekit.provenance import Lock
from sparsekit.result import DERIVED, RunResult
from sparsekit.store import Store as _Store
from sparsekit.sweep import load_grid

LAW = SparseLaw(a_S=3.0, b_S=0.8, c_S=5.0, b_N=0.3, a_D=1e4, b_D=0.4, c=1.0)  # nats, tokens
LEVELS = (0.0, 0.5, 0.75, 0.875)


def row(S: float, N: int, D: int, *, family: str = "t5", status: str = "ok", **extra) -> dict:
    """One store-table row of a finished run, its loss from LAW."""
    loss = float(LAW.predict(S, N, D)) if status == "ok" else np.nan
    return {
        "key": f"{family}-{S}-{N}-{D}",
        "status": status,
        "family": family,
        "sparsity": S,
        "N": N,
        "N_target": N,
        "width": 16,
        "D": D,
        "unit": "tokens",
        "steps": D // 4096,
        "batch": 32,
        "loss": loss,
        "loss_se": 1e-3 * loss,
        "wall_time_s": 12.5,
        "flops_dense": 6.0 * N * D,
        "code_version": "0123456789ab" + "f" * 28 + "-dirty",
        "versions.jax": "0.10.2",
        "machine.host": "box",
        "machine.device": "cpu",
        "machine.cpus": 2,
        "finished_at": "2026-01-01T00:00:00+00:00",
        "config.optim.lr": 3e-3,
        **extra,
    }


def nested(row: dict) -> dict:
    """A flat row ("config.optim.lr": ..., as the store's table has it) as a run file holds
    it: dotted keys nested, under an empty `config` at least; a nested value already in the
    row (e.g. a whole `config`) wins over a flat one."""
    result: dict = {"config": {}}
    for name, value in row.items():  # the flat keys first, so nested values overwrite them
        if "." in name:
            *parents, leaf = name.split(".")
            node = result
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    for name, value in row.items():
        if "." not in name:
            both = isinstance(value, dict) and isinstance(result.get(name), dict)
            result[name] = {**result[name], **value} if both else value
    return result


def as_result(row: dict) -> RunResult:
    """A flat row as a RunResult: nested (see `nested`), its family, sparsity and pattern
    (default unstructured) in the config, where a result keeps them."""
    result = nested(row)
    config = result["config"]
    for column, (group, name) in DERIVED.items():
        value = result.get(column, "unstructured" if column == "pattern" else None)
        config.setdefault(group, {}).setdefault(name, value)
    return RunResult.from_row(result)


class Store(_Store):
    """A results store that takes the flat rows of these tests (see `as_result`)."""

    def put(self, result: dict) -> None:
        super().put(as_result(result))


def make_table(
    levels=LEVELS, sizes=(16384, 32768, 65536), data=(2**20, 2**21, 2**22)
) -> pd.DataFrame:
    return pd.DataFrame([row(s, n, d) for s, n, d in itertools.product(levels, sizes, data)])


def runs(frame: pd.DataFrame | None = None) -> analysis.Runs:
    frame = make_table() if frame is None else frame
    return analysis.runs.runs_from_table(frame, source="results store test")


SMOKE_LIKE = dict(levels=(0.0, 0.5), sizes=(4000, 16000), data=(8192, 16384))  # 8 runs


# --- store -> arrays ------------------------------------------------------------------------


def test_runs_keep_finished_runs_as_fit_arrays() -> None:
    frame = pd.concat([make_table(), pd.DataFrame([row(0.5, 999, 2**20, status="failed")])])
    r = runs(frame)
    assert (r.family, r.unit, len(r)) == ("t5", "tokens", 36)
    np.testing.assert_array_equal(np.unique(r.S), LEVELS)
    np.testing.assert_allclose(r.loss, LAW.predict(r.S, r.N, r.D))
    assert r.N.dtype == np.float64 and 999 not in r.N
    assert len(r.at_sparsity(0.75)) == 9


def test_nominal_size_is_the_target_and_falls_back_to_measured_n() -> None:
    frame = make_table(levels=(0.5,), sizes=(4000,), data=(8192,))
    frame["N"], frame["N_target"] = 4096, [None]
    assert runs(frame).size.tolist() == [4096.0]
    frame["N_target"] = 4000
    assert runs(frame).size.tolist() == [4000.0]


@pytest.mark.parametrize(
    ("frame", "family", "message"),
    [
        (pd.DataFrame(), None, "results store test has no runs"),
        (pd.DataFrame([row(0.0, 10, 10, status="failed")]), None, "no finished runs (1 failed)"),
        (make_table(), "vit", "has no finished vit runs"),
        (
            pd.concat([make_table(), pd.DataFrame([row(0.0, 9, 9, family="vit")])]),
            None,
            "mix families",
        ),
    ],
    ids=["empty", "only-failed", "other-family", "mixed-families"],
)
def test_runs_from_table_errors_name_the_store(frame, family, message) -> None:
    with pytest.raises(ValueError, match="results store test") as err:
        analysis.runs.runs_from_table(frame, source="results store test", family=family)
    assert message in str(err.value)


def test_load_runs_from_a_store_and_an_empty_one(tmp_path) -> None:
    store = Store(tmp_path / "t5")
    for r in make_table().to_dict("records"):
        store.put(r)
    assert len(analysis.load_runs(store.path, family="t5")) == 36
    missing = tmp_path / "nothing"
    with pytest.raises(ValueError, match=f"results store {missing} has no runs"):
        analysis.load_runs(missing)
    loaded, reasons = analysis.runs.load_families({"t5": store.path, "vit": missing})
    assert list(loaded) == ["t5"] and str(missing) in reasons["vit"]
    coverage = analysis.regime.coverage_table(loaded, reasons)
    assert coverage.loc["T5", "runs"] == 36 and coverage.loc["T5", "sizes N"] == 3
    assert coverage.loc["ViT", "runs"] == 0 and "has no runs" in coverage.loc["ViT", "source"]
    # D/N from 2**20 / 65536 = 16 to 2**22 / 16384 = 256 tokens per non-zero parameter
    assert (coverage.loc["T5", "D/N min"], coverage.loc["T5", "D/N max"]) == (16.0, 256.0)
    assert coverage.loc["T5", "runs in the paper's range"] == 4  # 256 at 16384, 4 levels
    assert coverage.loc["T5", "paper D/N min"] == analysis.regime.PAPER_REGIME["t5"][0]
    assert list(coverage.columns)[-1] == "source"


def test_load_stores_joins_stores_and_counts_a_run_once(tmp_path) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    a.put(row(0.0, 16384, 2**20))
    b.put(row(0.0, 16384, 2**20))  # the same run in both
    b.put(row(0.5, 16384, 2**20))
    b.put(row(0.5, 16384, 2**20, family="vit", key="v"))
    joined = analysis.runs.load_stores([a.path, b.path], family="t5")
    assert len(joined) == 2 and list(joined.S) == [0.0, 0.5]
    assert analysis.runs.load_stores([tmp_path / "none"], family="t5") is None
    assert analysis.runs.load_stores([a.path], family="vit") is None
    assert analysis.runs.load_stores([], family="t5") is None


def tiny_grid(tmp_path: Path) -> Path:
    """A 4-run T5 grid file (S 0 and 0.5 x N 4000 and 16000, 8,192 tokens)."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: tiny\nbase: {model: {family: t5}, data: {amount: 8192, batch: 8}}\n"
        "axes: {sparsity.target: [0.0, 0.5], model.nonzero: [4000, 16000]}\n"
    )
    return grid


def test_run_grid_reuses_stored_runs_without_training(tmp_path) -> None:
    grid = tiny_grid(tmp_path)
    store = Store(tmp_path / "store")
    for cfg in load_grid(grid).configs():
        store.put(
            {
                **row(cfg.sparsity.target, cfg.model.nonzero, 8192),
                "key": cfg.key(),
                "config": cfg.to_dict(),
            }
        )
    frame = analysis.runs.run_grid(grid, store.path)
    assert len(frame) == 4 and frame["reused"].all()
    assert (
        analysis.runs.describe_sweep(frame, "s") == "4 runs in the grid: 4 reused from s, "
        "0 trained now; 0 failed"
    )
    shown = analysis.runs.runs_table(frame)
    assert list(shown["S"]) == [0.0, 0.0, 0.5, 0.5] and "wall time (s)" in shown


def test_run_grid_without_training_shows_only_the_stored_runs(tmp_path) -> None:
    grid = tiny_grid(tmp_path)
    store = Store(tmp_path / "store")
    empty = analysis.runs.run_grid(grid, store.path, train_missing=False)
    assert analysis.runs.describe_sweep(empty, "s").endswith("; 4 not in the store and not trained")
    configs = load_grid(grid).configs()
    for cfg in configs[:3]:
        store.put({**row(cfg.sparsity.target, cfg.model.nonzero, 8192), "key": cfg.key()})
    store.put({**row(0.9, 4000, 8192), "key": "not-of-this-grid"})
    frame = analysis.runs.run_grid(grid, store.path, train_missing=False)
    assert list(frame["key"]) == [c.key() for c in configs[:3]] and frame["reused"].all()
    assert analysis.runs.describe_sweep(frame, "s") == (
        "4 runs in the grid: 3 reused from s, 0 trained now; 0 failed; "
        "1 not in the store and not trained"
    )


def test_recipe_table_puts_checks_beside_the_grid_at_their_points(tmp_path) -> None:
    grid, check = Store(tmp_path / "grid"), Store(tmp_path / "lr")
    for r in make_table(levels=(0.0, 0.5), sizes=(16384, 32768), data=(2**20, 2**21)).to_dict(
        "records"
    ):
        grid.put(r)
    for lr, loss in ((1e-3, 4.0), (1e-2, 3.0)):
        check.put({**row(0.0, 16384, 2**20), "key": f"lr{lr}", "config.optim.lr": lr,
                   "loss": loss})
    check.put({**row(0.0, 16384, 2**20), "key": "seed", "config.seed": 2, "loss": 3.5,
               "config.optim.lr_width": 48})
    check.put({**row(0.0, 16384, 2**20), "key": "data", "config.data.seed": 1, "loss": 3.25})
    grid_loss = float(LAW.predict(0.0, 16384, 2**20))
    # the grid's own run, kept again under another key (a field added later): shown once
    check.put({**row(0.0, 16384, 2**20), "key": "again", "loss": grid_loss})
    table = analysis.runs.recipe_table([check.path], grid=analysis.load_runs(grid.path))
    assert len(table) == 1  # only the point the check ran; the grid's 7 others are left out
    assert table.loc[0, "LR 0.001, batch 32"] == 4.0
    assert table.loc[0, "LR 0.01, batch 32"] == 3.0
    assert table.loc[0, "LR 0.003, batch 32"] == pytest.approx(grid_loss)
    assert table.loc[0, "LR 0.003 x 48/width, batch 32, seed 2"] == 3.5
    assert table.loc[0, "LR 0.003, batch 32, data seed 1"] == 3.25
    task = Store(tmp_path / "task")
    task.put({**row(0.0, 16384, 2**20), "key": "c16", "config.data.options.num_classes": 16,
              "loss": 1.5})
    check.put({**row(0.0, 16384, 2**20), "key": "c64", "config.data.options.num_classes": 64,
               "config.optim.lr": 0.02, "loss": 2.5})
    mixed = analysis.runs.recipe_table([check.path, task.path])
    assert mixed.loc[0, "LR 0.003, batch 32, 16 classes"] == 1.5
    assert mixed.loc[0, "LR 0.02, batch 32, 64 classes"] == 2.5
    assert list(table.columns[:4]) == ["S", "N_target", "width", "D"]
    with pytest.raises(ValueError, match="has no runs"):
        analysis.runs.recipe_table([tmp_path / "empty"])
    check.put({**row(0.0, 16384, 2**20), "key": "warmup", "config.optim.warmup": 0.2,
               "loss": 3.75})  # differs from the grid's run only in a setting not labelled
    with pytest.raises(ValueError, match="a setting the recipe label does not show"):
        analysis.runs.recipe_table([check.path], grid=analysis.load_runs(grid.path))


def test_recipe_table_shows_a_grid_with_seeds_per_point_as_one_recipe(tmp_path) -> None:
    grid, check = Store(tmp_path / "grid"), Store(tmp_path / "lr")
    points = ((0.0, 16384), (0.5, 32768))
    for k, (s, n) in enumerate(points):  # the grid's runs, each with its own seeds
        grid.put({**row(s, n, 2**20), "key": f"grid{k}", "config.seed": 11 + k,
                  "config.data.seed": 11 + k, "loss": 3.0 + k})
        check.put({**row(s, n, 2**20), "key": f"lr{k}", "config.optim.lr": 1e-2,
                   "loss": 4.0 + k})
    table = analysis.runs.recipe_table([check.path], grid=analysis.load_runs(grid.path))
    own = "LR 0.003, batch 32" + analysis.runs.PER_POINT
    assert list(table.columns) == ["S", "N_target", "width", "D", own, "LR 0.01, batch 32"]
    assert table[own].tolist() == [3.0, 4.0] and table["LR 0.01, batch 32"].tolist() == [4.0, 5.0]


def test_pattern_table_puts_nm_beside_unstructured_and_dense(tmp_path) -> None:
    grid, nm = Store(tmp_path / "grid"), Store(tmp_path / "nm")
    for r in make_table(levels=(0.0, 0.5), sizes=(16384, 32768), data=(2**20,)).to_dict("records"):
        grid.put({**r, "pattern": "unstructured"})
    nm.put({**row(0.5, 16384, 2**20), "key": "24", "pattern": "2:4", "loss": 4.0})
    nm.put({**row(0.5, 16384, 2**20), "key": "48", "pattern": "4:8", "loss": 3.5})
    nm.put({**row(0.5, 16384, 2**20), "key": "12", "pattern": "1:2", "loss": 4.5})
    table = analysis.runs.pattern_table([nm.path], grid=analysis.load_runs(grid.path))
    assert list(table.columns) == ["S", "N_target", "width", "D", "dense (same N_target, D)",
                                   "unstructured", "1:2", "2:4", "4:8"]
    assert len(table) == 1  # the grid's other points are left out
    assert table.loc[0, "dense (same N_target, D)"] == pytest.approx(LAW.predict(0.0, 16384, 2**20))
    assert table.loc[0, "unstructured"] == pytest.approx(LAW.predict(0.5, 16384, 2**20))
    assert table.loc[0, ["1:2", "2:4", "4:8"]].tolist() == [4.5, 4.0, 3.5]
    nm.put({**row(0.5, 16384, 2**20), "key": "24 again", "pattern": "2:4", "loss": 4.1})
    with pytest.raises(ValueError, match="more than one run per point and pattern"):
        analysis.runs.pattern_table([nm.path], grid=analysis.load_runs(grid.path))
    with pytest.raises(ValueError, match="has no runs"):
        analysis.runs.pattern_table([tmp_path / "empty"], grid=analysis.load_runs(grid.path))


def test_seed_spread_groups_runs_that_differ_only_in_their_seeds(tmp_path) -> None:
    grid, check = Store(tmp_path / "grid"), Store(tmp_path / "seeds")
    grid.put({**row(0.0, 16384, 2**20), "loss": 3.0})
    grid.put({**row(0.5, 16384, 2**20), "loss": 2.0})
    for seed, data_seed, loss in ((1, 1, 3.2), (2, 2, 2.8), (0, 1, 3.6)):
        check.put({**row(0.0, 16384, 2**20), "key": f"s{seed}{data_seed}", "loss": loss,
                   "config.seed": seed, "config.data.seed": data_seed})
    check.put({**row(0.0, 16384, 2**20), "key": "lr", "config.optim.lr": 0.01, "loss": 9.0})
    check.put({**row(0.0, 16384, 2**20), "key": "lr1", "config.optim.lr": 0.01, "loss": 8.0,
               "config.seed": 1})
    check.put({**row(0.0, 16384, 2**20), "key": "copy", "loss": 3.0})  # the grid's run again
    # Another sparsity pattern at the same point is another recipe, not another seed.
    check.put({**row(0.0, 16384, 2**20), "key": "nm", "pattern": "2:4", "loss": 7.0})
    spread = analysis.noise.seed_spread([check.path], grid=analysis.load_runs(grid.path))
    assert list(spread["recipe"]) == ["LR 0.003, batch 32", "LR 0.01, batch 32"]
    ours, other = spread.iloc[0], spread.iloc[1]
    assert ours["runs"] == 4 and ours["mean"] == pytest.approx(3.15)
    assert ours["SD"] == pytest.approx(np.std([3.0, 3.2, 2.8, 3.6], ddof=1))
    assert ours["range"] == pytest.approx(0.8) and ours["grid recipe"]
    assert other["runs"] == 2 and other["SD"] == pytest.approx(np.sqrt(0.5))
    assert not other["grid recipe"]
    pooled = analysis.noise.pooled_sd(spread)
    assert pooled == pytest.approx(np.sqrt((3 * ours["SD"] ** 2 + 0.5) / 4))
    assert np.isnan(analysis.noise.pooled_sd(spread.iloc[:0]))
    assert analysis.noise.noise_floor(spread) == (
        "noise floor: seed SD 0.342 nats at the grid's recipe, pooled over 1 points (4 runs)"
    )


def test_seed_spread_never_pools_two_protocols_or_two_corpora(tmp_path) -> None:
    """Runs whose embeddings and head follow the paper's rule (`embed_rule`) are another
    recipe than dense-embedding runs at the same point, and runs on another corpus another
    again: a grid's noise comes from its own protocol's and corpus's seeds only."""
    grid, check = Store(tmp_path / "grid"), Store(tmp_path / "seeds")
    grid.put({**row(0.5, 16384, 2**20), "loss": 2.0, "config.sparsity.embed_rule": True})
    for seed, loss, rule in ((1, 2.2, True), (2, 1.8, True), (1, 2.5, False), (2, 2.9, False)):
        check.put({**row(0.5, 16384, 2**20), "key": f"{rule}{seed}", "loss": loss,
                   "config.seed": seed, "config.data.seed": seed,
                   "config.sparsity.embed_rule": rule})
    for seed, loss in ((1, 2.4), (2, 2.6)):  # nor two corpora
        check.put({**row(0.5, 16384, 2**20), "key": f"pinned{seed}", "loss": loss,
                   "config.seed": seed, "config.data.seed": seed,
                   "config.sparsity.embed_rule": True, "config.data.options.corpus": "pinned"})
    spread = analysis.noise.seed_spread([check.path], grid=analysis.load_runs(grid.path))
    assert list(spread["recipe"]) == ["LR 0.003, batch 32",
                                      "LR 0.003, batch 32, paper protocol",
                                      "LR 0.003, batch 32, paper protocol, pinned corpus"]
    assert spread["runs"].tolist() == [2, 3, 2]
    assert spread["grid recipe"].tolist() == [False, True, False]
    assert spread["SD"].tolist() == pytest.approx([np.std([2.5, 2.9], ddof=1), 0.2,
                                                   np.std([2.4, 2.6], ddof=1)])


def test_noise_by_slice_and_noise_of_the_fitted_runs(tmp_path) -> None:
    grid, check = Store(tmp_path / "grid"), Store(tmp_path / "seeds")
    # Two slices: at 2**20 tokens two points with seed SDs 0.1 and 0.3 (2 runs each), at
    # 2**22 one point with SD 0.02 (3 runs).
    for S, D, losses in ((0.0, 2**20, (3.0, 3.1 + 0.1 * 2**0.5 - 0.1)), (0.5, 2**20, (2.0, 2.0)),
                         (0.0, 2**22, (2.0, 2.02, 2.04))):
        for seed, loss in enumerate(losses):
            store = grid if seed == 0 else check
            store.put({**row(S, 16384, D), "key": f"{S}-{D}-{seed}", "loss": loss,
                       "config.seed": seed, "config.data.seed": seed})
    grid_runs = analysis.load_runs(grid.path)
    spread = analysis.noise.seed_spread([check.path], grid=grid_runs)
    table = analysis.noise.noise_by_slice(spread)
    assert list(table.index) == [2**20, 2**22] and list(table["points"]) == [2, 1]
    sd_short = np.std([3.0, 3.1 + 0.1 * 2**0.5 - 0.1], ddof=1)  # the S = 0.5 pair has SD 0
    assert table.loc[2**20, "seed SD"] == pytest.approx(np.sqrt(sd_short**2 / 2))
    assert table.loc[2**22, "seed SD"] == pytest.approx(0.02)
    long_runs = grid_runs.select(grid_runs.D == 2**22)
    assert analysis.noise.noise_of(spread, long_runs) == pytest.approx(0.02)
    assert np.isnan(analysis.noise.noise_of(spread, grid_runs.select(grid_runs.D == 1)))


# --- notebook parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "args"),
    [
        (analysis.checks.check_flag, ("smoke", "yes")),
        (analysis.checks.check_int, ("workers", 0, 1, 64)),
        (analysis.checks.check_int, ("workers", True, 0)),
        (analysis.checks.check_int, ("bootstrap", 2.0, 0)),
        (analysis.checks.check_choice, ("family", "bert", ["vit", "t5"])),
        (analysis.checks.check_choices, ("costs", [], ["dense"])),
        (analysis.checks.check_choices, ("costs", ["dense", "dense"], ["dense"])),
        (analysis.checks.store_parameter, ("store", 3, "vit", False)),
        (analysis.checks.store_parameter, ("vit_store", "no/such/store", "vit", False)),
        (analysis.checks.store_parameter, ("store", "", "vit", False, True)),  # a sweep needs one
        (analysis.checks.grid_parameter, ("grid", "no/such.yaml", "vit", True)),
        (analysis.checks.check_grid, ("grid", "no/such.yaml", "vit")),
        (analysis.checks.check_stores, ("checks", "../results/vit-lr")),  # a string, not a list
        (analysis.checks.check_stores, ("checks", ["no/such/store"])),
    ],
)
def test_parameter_checks_name_the_parameter(check, args) -> None:
    with pytest.raises(ValueError, match=f"^{args[0]} must be"):
        check(*args[:4], **({"create": args[4]} if len(args) > 4 else {}))


def test_store_and_grid_parameters_default_by_smoke_and_keep_a_given_path(tmp_path) -> None:
    given = str(tmp_path)
    for smoke in (False, True):  # a path the user gave is never replaced
        assert analysis.checks.store_parameter("t5_store", given, "t5", smoke) == given
        assert analysis.checks.store_parameter("store", given + "/new", "t5", smoke, create=True) == (
            given + "/new")
    assert analysis.checks.store_parameter("t5_store", "", "t5", True) is None  # skipped on purpose
    assert analysis.checks.store_parameter("store", None, "vit", False, create=True) == (
        "../results/vit-paper")  # the paper-protocol grid (checks.DEFAULT_GRIDS)
    assert analysis.checks.store_parameter("store", None, "t5", False, create=True) == (
        "../results/t5-pinned")  # the paper-protocol grid on the pinned corpus
    assert analysis.checks.store_parameter("store", None, "t5-nm", False, create=True,
                                           default="t5") == "../results/t5"  # a default named
    assert analysis.checks.store_parameter("store", None, "t5", True, create=True, default="t5") == (
        f"{analysis.runs.SMOKE_RESULTS}/t5")  # smoke reads chapter 3's smoke store all the same
    assert analysis.checks.store_parameter("store", None, "t5-nm", False, create=True) == (
        "../results/t5-nm")  # a store name of its own
    assert analysis.checks.store_parameter("store", None, "vit", True, create=True) == (
        f"{analysis.runs.SMOKE_RESULTS}/vit")
    with pytest.raises(ValueError, match=r"^t5_store must be an existing results store .*"
                                         r"or \"\" to skip t5; got '/typo/path'"):
        analysis.checks.store_parameter("t5_store", "/typo/path", "t5", False)
    grid = tmp_path / "g.yaml"
    grid.write_text("base: {model: {family: t5, nonzero: 8000}, data: {amount: 4096}}\n")
    assert analysis.checks.grid_parameter("grid", str(grid), "t5", True) == str(grid)
    runs, missing = analysis.runs.load_families({"t5": None})
    assert runs == {} and missing == {"t5": "skipped: no store given"}


def test_grid_of_the_wrong_family_is_refused(tmp_path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: g\nbase: {model: {family: vit, nonzero: 3000}, data: {amount: 256}}\n")
    analysis.checks.check_grid("grid", str(grid), "vit")
    with pytest.raises(ValueError, match=r"^grid must be a grid of t5 runs.*\['vit'\]"):
        analysis.checks.check_grid("grid", str(grid), "t5")
    with pytest.raises(ValueError, match=r"^store must be a results store directory"):
        analysis.checks.store_parameter("store", str(grid), "vit", False, create=True)


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BAD_NOTEBOOK_PARAMETERS = [
    ("02_vit_sweep.ipynb", "workers", 0),
    ("02_vit_sweep.ipynb", "grid", "../sweeps/t5.yaml"),  # a grid of the other family
    ("03_t5_sweep.ipynb", "family", "bert"),
    ("03_t5_sweep.ipynb", "reuse", "yes"),
    ("03_t5_sweep.ipynb", "train_missing", 0),
    ("03_t5_sweep.ipynb", "checks", ["../results/none"]),
    ("04_fit_own_law.ipynb", "bootstrap", -1),
    ("04_fit_own_law.ipynb", "vit_store", 3),
    ("04_fit_own_law.ipynb", "t5_store", "/typo/path"),  # a path that does not exist
    ("05_optimal_sparsity.ipynb", "vit_store", "../results/none"),
    ("06_provenance.ipynb", "t5_store", "/typo/path"),
    ("02_vit_sweep.ipynb", "store", "../sweeps/vit.yaml"),  # a file, not a store
    ("05_optimal_sparsity.ipynb", "costs", ["dense", "free"]),
    ("05_optimal_sparsity.ipynb", "grid_points", 5),
    ("06_provenance.ipynb", "smoke", 1),
]


def notebook_cells(name: str) -> tuple[str, str]:
    """Sources of a notebook's parameters cell and of the validation cell after it."""
    cells = [
        c for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells if c.cell_type == "code"
    ]
    assert cells[0].metadata.get("tags") == ["parameters"], name
    return cells[0].source, cells[1].source


@pytest.mark.parametrize("name", sorted({n for n, _, _ in BAD_NOTEBOOK_PARAMETERS}))
def test_notebook_defaults_pass_validation(name, monkeypatch) -> None:
    monkeypatch.chdir(NOTEBOOKS)  # where the book runs them: paths are relative to it
    namespace: dict = {}
    for source in notebook_cells(name):
        exec(source, namespace)


# Store and grid parameters: None is the default (smoke or not), a given path is kept.
PATH_PARAMETERS = {
    "02_vit_sweep.ipynb": ("grid", "store"),
    "03_t5_sweep.ipynb": ("grid", "store"),
    "04_fit_own_law.ipynb": ("vit_store", "t5_store"),
    "05_optimal_sparsity.ipynb": ("vit_store", "t5_store"),
    "06_provenance.ipynb": ("vit_store", "t5_store"),
}


@pytest.mark.parametrize("name", sorted(PATH_PARAMETERS))
def test_smoke_never_replaces_a_given_store_and_an_empty_one_skips(name, monkeypatch) -> None:
    monkeypatch.chdir(NOTEBOOKS)
    parameters, validation = notebook_cells(name)
    names = PATH_PARAMETERS[name]
    given = {"grid": "../sweeps/vit-smoke.yaml" if "vit" in name else "../sweeps/t5-smoke.yaml",
             "store": "../results/archive/vit-fractal64/vit-lr",
             "vit_store": "../results/archive/vit-fractal64/vit-lr",
             "t5_store": "../results/t5-lr"}
    namespace: dict = {}
    exec(parameters, namespace)
    assert all(namespace[n] is None for n in names)  # the default: chosen by smoke
    namespace.update({"smoke": True, **{n: given[n] for n in names}})
    exec(validation, namespace)
    assert {n: namespace[n] for n in names} == {n: given[n] for n in names}
    # No later cell assigns them (the smoke swap lived there).
    later = [c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells
             if c.cell_type == "code"][2:]
    assigned = {t.id for src in later for node in ast.walk(ast.parse(src))
                if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    assert not assigned & set(names)
    if "store" not in names:  # chapters that read stores: "" skips a family
        namespace.update({"vit_store": ""})
        exec(validation, namespace)
        assert namespace["vit_store"] is None and namespace["t5_store"] == given["t5_store"]


@pytest.mark.parametrize(("name", "parameter", "value"), BAD_NOTEBOOK_PARAMETERS)
def test_notebook_validation_names_a_bad_parameter(name, parameter, value, monkeypatch) -> None:
    monkeypatch.chdir(NOTEBOOKS)
    parameters, validation = notebook_cells(name)
    namespace: dict = {}
    exec(parameters, namespace)
    namespace[parameter] = value
    with pytest.raises(ValueError, match=f"^{parameter} must be"):
        exec(validation, namespace)


# --- figures ------------------------------------------------------------------------------


def data_traces(fig) -> list:
    return [t for t in fig.data if t.x is not None and t.x[0] is not None]


def test_loss_vs_data_has_a_panel_per_sparsity_and_a_line_per_size() -> None:
    frame = make_table()
    frame = frame[~((frame["sparsity"] == 0.875) & (frame["N"] == 65536))]  # a partial store
    fig = analysis.figures.loss_vs_data(runs(frame))
    keys = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in keys] == ["N ≈ 16.4k", "N ≈ 32.8k", "N ≈ 65.5k"]
    lines = data_traces(fig)
    assert len(lines) == 4 * 3 - 1
    assert {t.line.color for t in lines} == {plotting.sparsity_color(s) for s in LEVELS}
    assert all(len(t.x) == 3 and list(t.x) == sorted(t.x) for t in lines)
    assert [a.text for a in fig.layout.annotations] == list(map(plotting.sparsity_label, LEVELS))
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis2.matches == "y"
    assert "nats per target byte-token" in fig.layout.yaxis.title.text
    assert "width=" in lines[0].hovertemplate and "wall time (s)=" in lines[0].hovertemplate
    assert "D/N=" in lines[0].hovertemplate


def test_loss_vs_size_has_a_line_per_data_amount() -> None:
    fig = analysis.figures.loss_vs_size(runs(make_table(levels=(0.0, 0.5))))
    assert [t.name for t in fig.data if t.showlegend is not False] == [
        "D = 1.05M tokens",
        "D = 2.1M tokens",
        "D = 4.19M tokens",
    ]
    assert len(data_traces(fig)) == 2 * 3
    assert fig.layout.xaxis.title.text == analysis.figures.N_TITLE


def test_predicted_vs_measured_colours_by_sparsity_and_skips_what_a_law_cannot_predict() -> None:
    r = runs()
    panels = {"law": (r, LAW), "dense only": (r.at_sparsity(0.0), LAW)}
    fig = analysis.figures.predicted_vs_measured(panels, "t")
    points = [t for t in fig.data if t.mode == "markers"]
    assert len(points) == 4 + 1 and len(fig.data) == 2 + 5  # + a diagonal per panel
    assert [t.marker.color for t in points[:4]] == list(map(plotting.sparsity_color, LEVELS))
    np.testing.assert_allclose(points[0].y, points[0].x)  # the true law predicts exactly
    assert sum(t.showlegend is not False for t in points) == 4  # one legend entry per level


def test_sopt_map_panels_frontier_and_runs() -> None:
    r = runs()
    scale = analysis.fits.project_scale(r)
    fig = analysis.figures.sopt_map(
        {"ours": LAW, "paper": analysis.fits.PAPER["t5"]},
        scale,
        cost="dense",
        title="t",
        points=12,
        runs=r,
    )
    contours = [t for t in fig.data if t.type == "contour"]
    assert len(contours) == 2 and np.shape(contours[0].z) == (12, 12)
    assert np.nanmax(contours[0].z) <= 0.99 and np.nanmin(contours[0].z) >= 0.0
    run_markers = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert len(run_markers) == 2 * len(LEVELS)
    # the runs sit on the map, at C = 6 N D / (1 - S) under the dense cost model
    assert scale[1][0] < min(run_markers[3].x) and max(run_markers[3].x) < scale[1][1]
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"


# --- fits of full and partial stores ---------------------------------------------------------


@pytest.fixture(scope="module")
def full_fits() -> analysis.fits.LawFits:
    return analysis.fit_laws(runs(), ["sparse", "chinchilla"], bootstrap=3)


def test_full_grid_fits_back_the_law_with_intervals(full_fits) -> None:
    fitted = full_fits.fits["sparse"].law
    for name, value in LAW.as_dict().items():
        assert getattr(fitted, name) == pytest.approx(value, rel=0.02), name
    table = analysis.fits.coefficient_table(full_fits.fits["sparse"], analysis.fits.PAPER["t5"])
    assert list(table.columns) == ["this project", "95% low", "95% high", "paper (Table 1)"]
    assert table.loc["b_N", "paper (Table 1)"] == analysis.fits.PAPER["t5"].b_N
    assert table["95% low"].notna().all()
    assert full_fits.notes == {}
    assert set(full_fits.extrapolations) == {"sparse", "chinchilla"}
    assert full_fits.extrapolations["sparse"].diagnostics.max_abs_relative_error < 1e-3


def test_heldout_table_predicts_runs_never_fitted(full_fits) -> None:
    # Held-out runs drawn from LAW at 4x the largest N: the sparse fit (to exact LAW data)
    # predicts them closely; Chinchilla predicts only the dense one.
    held = runs(pd.DataFrame([row(0.0, 262144, 2**22), row(0.75, 262144, 2**22)]))
    table = analysis.fits.heldout_table({"all runs": full_fits}, held, noise=0.01)
    sparse = table[table["law"] == "sparse law"]
    assert list(sparse["S"]) == [0.0, 0.75] and (sparse["fit"] == "all runs").all()
    assert sparse["error (%)"].abs().max() < 1.0
    np.testing.assert_allclose(sparse["error / noise"], sparse["error"] / 0.01)
    np.testing.assert_allclose(sparse["D/N"], 2**22 / 262144)
    chinchilla = table[table["law"] == "Chinchilla (dense runs)"]
    assert list(chinchilla["S"]) == [0.0]


def test_fit_regimes_and_noise_table(tmp_path) -> None:
    grid, check = Store(tmp_path / "grid"), Store(tmp_path / "seeds")
    for r in make_table(levels=(0.0,)).to_dict("records"):
        grid.put(r)
    point = row(0.0, 16384, 2**22)  # D/N 256: inside both fits
    for seed, shift in ((1, 0.01), (2, -0.01)):
        check.put({**point, "key": f"seed{seed}", "loss": point["loss"] + shift,
                   "config.seed": seed, "config.data.seed": seed})
    r = analysis.load_runs(grid.path)
    fits = analysis.fits.fit_regimes(r, 30.0, laws=["chinchilla"], extrapolate=False)
    assert list(fits) == [analysis.fits.ALL_RUNS, "D/N >= 30"]
    assert len(fits["D/N >= 30"].runs) == np.sum(analysis.regime.tokens_per_param(r) >= 30) == 8
    table = analysis.fits.noise_table(fits, analysis.noise.seed_spread([check.path], grid=r))
    assert list(table.index) == [(analysis.fits.ALL_RUNS, "Chinchilla (dense runs)"),
                                 ("D/N >= 30", "Chinchilla (dense runs)")]
    np.testing.assert_allclose(table["seed SD"], 0.01)  # SD of (L, L + 0.01, L - 0.01)
    np.testing.assert_allclose(table["RMSE / seed SD"], table["RMSE"] / 0.01)


def test_comparison_table_and_panels(full_fits) -> None:
    table = analysis.fits.comparison_table(full_fits)
    assert list(table.index) == ["sparse law", "Chinchilla (dense runs)"]
    assert table.loc["Chinchilla (dense runs)", "runs"] == 9  # dense runs only
    assert table.loc["sparse law", "parameters"] == 7 and table.columns[-1] == "note"
    held_out = full_fits.panels(held_out=True)
    assert len(held_out["sparse law"][0]) == 12  # the largest size at every sparsity
    assert len(held_out["Chinchilla (dense runs)"][0]) == 3


def test_dense_equivalent_table_and_figure(full_fits) -> None:
    fits = {"t5": full_fits.fits["sparse"]}
    table = analysis.fits.dense_equivalent_table(fits)
    assert list(table.index) == [("T5", s) for s in analysis.fits.PAPER_LEVELS]
    np.testing.assert_allclose(
        table["this project"], LAW.dense_equivalent(analysis.fits.PAPER_LEVELS), rtol=0.02
    )
    assert table.loc[("T5", 0.5), "paper (Table 1)"] == pytest.approx(1.59, abs=0.005)
    fig = analysis.figures.dense_equivalent_figure(fits)
    intervals = [t for t in fig.data if t.mode == "markers"]
    assert [t.marker.color for t in intervals] == [
        plotting.sparsity_color(s) for s in analysis.fits.PAPER_LEVELS
    ]


def test_smoke_sized_store_fits_only_what_it_supports() -> None:
    r = runs(make_table(**SMOKE_LIKE))
    assert "needs 3 distinct S values, has 2" in analysis.fits.unsupported(r, "sparse")
    assert "4 points for 5 parameters" in analysis.fits.unsupported(r, "chinchilla")
    assert analysis.fits.unsupported(r, "multiplier") is None
    fits = analysis.fit_laws(r, ["sparse", "multiplier", "chinchilla"])
    assert list(fits.fits) == ["multiplier"]
    assert fits.notes["sparse"].startswith("not fitted: needs 3 distinct S")
    assert "no extrapolation" in fits.notes["multiplier"]  # 4 runs left for 6 parameters
    table = analysis.fits.comparison_table(fits)
    assert (
        table["note"].str.len().gt(0).all() and table.loc["effective-multiplier law", "runs"] == 8
    )
    assert "laws fitted: multiplier" in fits.summary()
    words = fits.sentences("all runs")  # the book's version: Markdown sentences
    assert words.startswith("**T5, all runs**: 8 runs; fitted the effective-multiplier law.")
    assert "- The sparse law was not fitted: needs 3 distinct S values, has 2" in words


def test_fit_laws_fits_only_the_runs_inside_a_regime() -> None:
    r = runs()  # D/N from 2**20 / 65536 = 16 to 2**22 / 16384 = 256
    fits = analysis.fit_laws(r, ["chinchilla"], extrapolate=False, min_tokens_per_param=60.0)
    kept = analysis.regime.tokens_per_param(fits.runs)
    assert kept.min() >= 60.0 and len(fits.runs) == np.sum(analysis.regime.tokens_per_param(r) >= 60)
    assert fits.fits["chinchilla"].n_points == np.sum(kept[fits.runs.S == 0.0] >= 60.0)
    assert len(analysis.fit_laws(r, ["chinchilla"], extrapolate=False).runs) == len(r)


@pytest.mark.parametrize(
    ("frame", "law", "reason"),
    [
        (make_table(levels=(0.5, 0.75)), "chinchilla", "no dense (S = 0) runs"),
        (make_table(levels=(0.5, 0.75)), "multiplier", "needs dense (S = 0) runs"),
        (make_table(sizes=(16384,)), "average", "needs 2 distinct N values, has 1"),
        (make_table(data=(2**20,)), "sparse", "needs 2 distinct D values"),
    ],
)
def test_unsupported_says_what_is_missing(frame, law, reason) -> None:
    assert reason in analysis.fits.unsupported(runs(frame), law)


def test_a_level_only_the_largest_size_has_cannot_be_extrapolated_to() -> None:
    frame = make_table(levels=(0.0, 0.5))
    frame = pd.concat([frame, make_table(levels=(0.875,), sizes=(65536,))])
    fits = analysis.fit_laws(runs(frame), ["multiplier"])
    assert list(fits.fits) == ["multiplier"] and not fits.extrapolations
    assert fits.notes["multiplier"].startswith("no extrapolation: S: this law has multipliers")


# --- provenance ---------------------------------------------------------------------------


FAILED = {
    "key": "bad",
    "status": "failed",
    "family": "t5",
    "sparsity": 0.5,
    "wall_time_s": 3600.0,
    "error": "boom",
}  # a failed run's row: no provenance


def provenance_frames() -> dict[str, pd.DataFrame]:
    return {
        "results/t5": pd.concat([make_table(levels=(0.0,)), pd.DataFrame([FAILED])]),
        "results/vit": pd.DataFrame(),
    }


def test_provenance_table_and_summary_per_store() -> None:
    frames = provenance_frames()
    table = analysis.provenance.provenance_table(frames["results/t5"])
    assert len(table) == 10 and table["N"].dtype == "Int64"
    assert table.loc[table["key"] == "bad", "N"].isna().all()
    assert table["machine"].iat[0] == "box / cpu / 2 CPUs"
    assert table["versions"].iat[0] == "jax 0.10.2"
    summary = analysis.provenance.provenance_summary(frames)
    t5 = summary["results/t5"]
    assert (t5["runs"], t5["finished"], t5["failed"]) == (10, 9, 1)
    assert t5["CPU hours"] == "1.03"  # (9 runs x 12.5 s + 3600 s) / 3600, 3 digits
    assert t5["code versions"] == "0123456789ab-dirty (9)"
    assert summary.loc["runs", "results/vit"] == 0
    only_failed = analysis.provenance.provenance_table(pd.DataFrame([FAILED]))
    assert only_failed["code version"].isna().all() and only_failed["machine"].isna().all()


def test_lock_summary_sorts_runs_by_the_lock_they_ran_under() -> None:
    lock = Lock("a" * 64, {"jax": ("0.10.2",), "jaxlib": ("0.10.2",), "numpy": ("2.4.6",)})
    made = {"lock.sha256": "a" * 64, "lock.matches": True, "versions.numpy": "2.4.6"}
    runs = pd.DataFrame(
        [
            row(0.0, 16384, 2**20, key="old"),  # before the lock: no lock hash, jax as locked
            row(0.0, 16384, 2**21, key="this", **made),
            row(0.0, 16384, 2**22, key="drift", **{**made, "lock.matches": False}),
            row(0.5, 16384, 2**22, key="other",
                **{**made, "lock.sha256": "b" * 64, "versions.jax": "0.9.0"}),
        ]
    )
    summary = analysis.provenance.lock_summary({"t5": pd.concat([runs, pd.DataFrame([FAILED])]),
                                     "vit": pd.DataFrame()}, lock)
    t5 = summary["t5"]
    assert (t5["runs"], t5["under this lock"], t5["before the lock (no lock hash)"]) == (4, 2, 1)
    assert t5["under another lock"] == "bbbbbbbbbbbb (1)"
    assert t5["environment drifted from its lock"] == 1
    assert t5["versions not as locked"] == "jax 0.9.0 (1)"
    assert summary.loc["runs", "vit"] == 0
    as_locked = analysis.provenance.lock_summary({"t5": runs.iloc[:3]}, lock)["t5"]
    assert as_locked["versions not as locked"] == "as locked"
    table = analysis.provenance.provenance_table(runs).set_index("key")["lock"]
    assert pd.isna(table["old"]) and table["this"] == "aaaaaaaaaaaa"
    assert table["drift"] == "aaaaaaaaaaaa (drifted)"
    assert analysis.provenance.lock_note(lock) == (
        "`uv.lock` sha256 `aaaaaaaaaaaa`: jax 0.10.2, jaxlib 0.10.2, numpy 2.4.6."
    )


def test_wall_time_figure_has_a_panel_per_store_with_runs() -> None:
    fig = analysis.figures.wall_time_figure(provenance_frames())
    assert [a.text for a in fig.layout.annotations] == ["results/t5"]
    assert len(fig.data) == 1 and len(fig.data[0].x) == 9  # the finished dense runs
    assert fig.data[0].marker.color == plotting.sparsity_color(0.0)
