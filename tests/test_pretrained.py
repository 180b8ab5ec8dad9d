"""Pruning a pretrained dense model: the two-stage grid, resolving init_from, and a tiny
two-stage sweep whose continued run resumes the dense weights bit for bit."""

import shutil

import jax
import numpy as np
import pandas as pd
import pytest
from known_runs import BASE, PRETRAIN, stored, two_stage

from sparsekit import pretrained
from sparsekit.analysis import pretrained as analysis
from sparsekit.analysis.runs import runs_from_table
from sparsekit.config import RunConfig
from sparsekit.models import width_for
from sparsekit.result import RunResult
from sparsekit.store import Store
from sparsekit.sweep import Grid, GridError, sweep
from sparsekit.train import Trainer, load_params, stack


def test_grid_holds_the_dense_stage_then_the_run_that_starts_from_it():
    scratch, dense, pruned = two_stage().configs()
    width, _ = width_for("t5", 4000, 0.5)
    assert scratch.init_from is None and scratch.sparsity.target == 0.5
    assert (dense.model.width, dense.model.nonzero, dense.sparsity.target) == (width, None, 0.0)
    assert (dense.data.amount, dense.init_from, dense.sparsity.every) == (8192, None, 2)
    assert pruned.init_from == f"run:{dense.key()}" == pretrained.reference(dense.key())
    assert pruned.to_dict() == {**scratch.to_dict(), "init_from": pruned.init_from}
    assert pretrained.stages([pruned, scratch, dense]) == ([scratch, dense], [pruned])
    # Points of one width share one dense run; pretraining longer changes every stage-2 key.
    both = Grid(BASE, axes={"sparsity.every": [2, 4], "init_from": ["pretrained"]},
                pretrain=PRETRAIN).configs()
    assert len(both) == 4 and len({c.key() for c in both}) == 4
    longer = Grid(BASE, axes={"init_from": ["pretrained"]}, pretrain={"data.amount": 16384})
    assert longer.configs()[1].init_from != pruned.init_from


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"axes": {"init_from": ["pretrained"]}}, "needs a top-level pretrain mapping"),
        ({"axes": {"init_from": ["pretrained"]}, "pretrain": {"init_from": "x"}},
         r"pretrain must be a mapping .*\(not init_from\)"),
        ({"axes": {"init_from": ["pretrained"]}, "pretrain": {"data.size": 1}},
         "pretrain 'data.size': unknown config field"),
        ({"more": [{"axes": {"init_from": ["pretrained"]}}]}, "needs a top-level pretrain"),
    ],
)
def test_bad_two_stage_grids(kwargs, match):
    with pytest.raises(GridError, match=match):
        Grid(BASE, **kwargs)


def test_resolve_names_what_is_missing(tmp_path):
    plain = RunConfig.from_dict({**Grid(BASE).configs()[0].to_dict(), "init_from": "ckpt/x"})
    assert pretrained.resolve(plain, None) == ("ckpt/x", 0)  # a path: the stream from step 0
    _, dense, pruned = two_stage().configs()
    with pytest.raises(ValueError, match="names a stored run: give the results store"):
        pretrained.resolve(pruned, None)
    store = tmp_path / "store"
    with pytest.raises(ValueError, match=f"holds no finished run {dense.key()}"):
        pretrained.resolve(pruned, store)
    Store(store).put(RunResult.from_row({"key": dense.key(), "config": dense.to_dict(),
                                         "status": "ok", "loss": 3.0, "steps": 16}))
    with pytest.raises(ValueError, match="no checkpoint at"):
        pretrained.resolve(pruned, store)
    pretrained.checkpoint_path(store, dense.key()).mkdir(parents=True)
    assert pretrained.resolve(pruned, store) == (
        str(pretrained.checkpoint_path(store, dense.key())), 16)
    other_seed = RunConfig.from_dict({**pruned.to_dict(), "data": {**pruned.to_dict()["data"],
                                                                  "seed": 1}})
    with pytest.raises(ValueError, match=r"data\.seed = 0, this run 1"):
        pretrained.resolve(other_seed, store)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The tiny two-stage grid swept into a fresh store: (store, grid, rows by key)."""
    store = tmp_path_factory.mktemp("pretrained") / "store"
    grid = Grid(BASE, axes={"init_from": ["pretrained"]}, pretrain=PRETRAIN)
    frame = sweep(grid, store, progress=False)
    return store, grid, {row["key"]: row for _, row in frame.iterrows()}


def test_sweep_trains_the_dense_stage_saves_it_and_prunes_from_it(swept):
    store, grid, rows = swept
    dense, pruned = grid.configs()
    assert list(rows) == [dense.key(), pruned.key()]
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows[dense.key()]["sparsity_measured"] == 0.0 and rows[dense.key()]["D"] == 8192
    assert rows[pruned.key()]["sparsity_measured"] == pytest.approx(0.5, abs=1e-3)
    assert rows[pruned.key()]["width"] == rows[dense.key()]["width"]
    assert pretrained.checkpoint_path(store, dense.key()).is_dir()
    assert not pretrained.checkpoint_path(store, pruned.key()).exists()  # only what is needed


def test_continued_run_resumes_the_dense_weights_bit_for_bit(swept):
    store, grid, _ = swept
    dense, pruned = grid.configs()
    trainer = Trainer(pruned, str(store))
    saved = load_params(str(pretrained.checkpoint_path(store, dense.key())), trainer.params)
    _assert_equal(trainer.params, saved)  # step 0: exactly the dense run's final weights
    # It continues the dense run's data stream: its step 0 is the dense run's step 16.
    assert trainer.first_step == 16
    np.testing.assert_array_equal(trainer.source.train_batch(16, 4)["inputs"],
                                  _batches(trainer, 1)["inputs"][0])
    # Before the pruning window (steps 0-1 of 8; it starts at step 2), the sparse run trains
    # exactly like the dense model continued with the same recipe: bit-identical weights.
    start, _ = trainer.schedule.window(trainer.plan.steps)
    assert start == 2
    same = Trainer(pruned.replace(**{"sparsity.target": 0.0, "model.nonzero": None,
                                     "model.width": trainer.plan.width}), str(store))
    sparse = _steps(trainer, trainer.params, trainer.opt_state, 0)  # steps 0-1
    continued = _steps(same, same.params, same.opt_state, 0)
    _assert_equal(sparse[0], continued[0])
    # Into the window (masks at step 2 keep everything, at step 4 they prune): the weights part.
    for first in (2, 4):
        sparse, continued = _steps(trainer, *sparse, first), _steps(same, *continued, first)
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(sparse[0]), _leaves(continued[0]),
                                                        strict=True))


def test_a_missing_checkpoint_is_recreated_and_the_rest_reused(swept):
    store, grid, rows = swept
    dense, pruned = grid.configs()
    shutil.rmtree(pretrained.checkpoint_path(store, dense.key()))
    frame = sweep(grid, store, progress=False).set_index("key")
    assert pretrained.checkpoint_path(store, dense.key()).is_dir()
    assert frame.loc[dense.key(), "loss"] == rows[dense.key()]["loss"]  # bit-identical rerun
    assert frame.loc[pruned.key(), "finished_at"] == rows[pruned.key()]["finished_at"]  # reused


def _batches(trainer, k, first=0):
    return stack([trainer.source.train_batch(trainer.first_step + first + i, trainer.plan.batch)
                   for i in range(k)])


def _steps(trainer, params, state, first):
    """(params, optimizer state) after steps first and first + 1 of a run (one jitted chunk
    of 2 steps, so every call reuses one compilation)."""
    return trainer._chunk(params, state, _batches(trainer, 2, first))[:2]


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_equal(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


# --- the ratio ----------------------------------------------------------------------------


def test_data_to_reach_interpolates_a_local_power_law_between_bracketing_runs():
    D, loss = [1e6, 2e6, 4e6, 2e6], [4.0, 2.9, 2.0, 3.1]  # two seeds at 2e6: mean 3.0
    assert analysis.data_to_reach(D, loss, 3.0) == pytest.approx(2e6)  # a run's own loss
    # between 2e6 (3.0) and 4e6 (2.0): log D linear in log L
    expected = 2e6 * 2 ** (np.log(2.5 / 3.0) / np.log(2.0 / 3.0))
    assert analysis.data_to_reach(D, loss, 2.5) == pytest.approx(expected)
    # exact on a pure power law, L = 10 D^-0.1, anywhere inside
    d = np.array([1e6, 4e6, 16e6])
    assert analysis.data_to_reach(d, 10 * d**-0.1, 10 * 7e6**-0.1) == pytest.approx(7e6)
    # a bump: the first crossing along D
    assert analysis.data_to_reach([1, 2, 3, 4], [4.0, 2.0, 3.0, 1.0], 2.5) < 2
    with pytest.raises(ValueError, match=r"below every from-scratch loss: .* more data"):
        analysis.data_to_reach(D, loss, 1.5)
    with pytest.raises(ValueError, match=r"above every from-scratch loss: .* less data"):
        analysis.data_to_reach(D, loss, 5.0)
    with pytest.raises(ValueError, match="at least 2 data amounts"):
        analysis.data_to_reach([1e6, 1e6], [3.0, 3.1], 3.0)
    with pytest.raises(ValueError, match="positive and finite"):
        analysis.data_to_reach([1e6, 2e6], [3.0, np.nan], 3.0)


def test_ratio_table_on_a_power_law_curve_and_the_compute_beside_it():
    _, dense, pruned = two_stage().configs()
    curve = {d: 10 * d**-0.1 for d in (1024, 4096, 16384, 65536)}  # from scratch: 4x apart
    scratch = [stored(RunConfig.from_dict({**pruned.to_dict(), "init_from": None,
                                          "data": {**pruned.to_dict()["data"], "amount": d}}),
                      loss) for d, loss in curve.items()]
    reach = 8 * pruned.data.amount  # the pruned-pretrained run matches from scratch at 8x D
    rows = [stored(dense, 2.0), stored(pruned, 10 * reach**-0.1)]
    runs = runs_from_table(pd.DataFrame(rows), source="pretrained")
    grid = runs_from_table(pd.DataFrame(scratch), source="grid")
    table = analysis.ratio_table(runs, [grid])
    assert len(table) == 1
    row = table.iloc[0]
    assert row["D from scratch to match"] == pytest.approx(reach)
    assert row["data ratio"] == pytest.approx(8.0) and row["paper ratio"] == 4.90
    assert (row["D pretrain"], row["D prune"]) == (8192, 4096)
    # one width, one cost per token: compute ratio = D* / (D pretrain + D prune)
    assert row["compute ratio"] == pytest.approx(reach / (8192 + 4096))
    assert row["loss from scratch, same D"] == pytest.approx(curve[4096])
    assert row["note"] == ""
    assert "from-scratch training needs 8.00x" in analysis.conclusion(table)
    assert "(paper: 4.90x)" in analysis.conclusion(table)
    fig = analysis.ratio_figure(table, runs, [grid], "t")
    assert len(fig.data) == 3  # the curve, the pruned run, the dotted match
    # A pruned-pretrained loss below the whole curve has no ratio, and says so.
    better = runs_from_table(pd.DataFrame([stored(dense, 2.0), stored(pruned, 1.0)]),
                             source="pretrained")
    table = analysis.ratio_table(better, [grid])
    assert np.isnan(table["data ratio"].iat[0])
    assert table["note"].iat[0].startswith("loss 1 is not bracketed")
    assert "no ratio" in analysis.conclusion(table)
    with pytest.raises(ValueError, match="no runs start from a pretrained dense run"):
        analysis.ratio_table(grid, [grid])


def test_cost_model_example_charges_and_credits_the_pretraining():
    from sparsekit.laws import PAPER_T5

    _, dense, pruned = two_stage().configs()
    assert analysis.pretrain_ratios([dense, pruned]) == [2.0]  # 8192 / 4096 tokens
    table = pd.DataFrame({"S": [0.5, 0.5, 0.75], "D pretrain": [8192] * 3,
                          "D prune": [4096, 4096, 2048], "data ratio": [3.0, 5.0, 6.0]})
    assert analysis.measured_ratios(table) == (2.0, {0.5: 4.0})  # r with the most ratios
    assert analysis.measured_ratios(table.assign(**{"data ratio": np.nan})) == (
        (pytest.approx(np.nan, nan_ok=True), {}))
    sopt = analysis.sopt_table(PAPER_T5, 1e8, [1e19, 1e21], 4.0, analysis.PAPER_RATIOS)
    assert list(sopt.index) == ["1 × 10¹⁹", "1 × 10²¹"]
    scratch, charged, _ = sopt.columns
    assert (sopt[charged] <= sopt[scratch]).all() and sopt[charged].iat[0] == 0.0
    with pytest.raises(ValueError, match="cost_N must be"):
        analysis.check_example(0, [1e20])
    with pytest.raises(ValueError, match="cost_budgets must be"):
        analysis.check_example(1e8, [])
