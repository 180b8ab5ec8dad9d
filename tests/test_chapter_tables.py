"""The chapter helpers that keep the notebooks thin: chapter 1's published laws and the re-fit
of the paper's released runs (`analysis.paper`), the recipe-check summary and folded tables
(`analysis.summaries`), a family's two fits side by side (`analysis.fits`), and the
`paper_data` parameter check. Small hand-made inputs; the one fit is on 12 points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsekit import analysis, fitting
from sparsekit.laws import PAPER_T5


def _released_csv(path, rows: int = 12):
    """A t5-data.csv in the released format, its losses from the Table 1 law."""
    S = np.tile([0.0, 0.5, 0.75, 0.875], rows // 4)
    scale = np.repeat([0.25, 0.5, 1.0], 4)[:rows]
    steps = np.tile([250_000.0, 500_000.0, 1_000_000.0], 4)[:rows]
    runs = pd.DataFrame({"sparsity": S, "scale": scale, "steps": steps})
    N = fitting.T5_BASE_PARAMS * scale * (1 - S)
    runs["val-loss"] = PAPER_T5.predict(S, N, steps * fitting.T5_TOKENS_PER_STEP)
    runs.to_csv(path)
    return path


def test_check_file_names_the_parameter(tmp_path) -> None:
    real = tmp_path / "t5-data.csv"
    real.write_text("x")
    analysis.checks.check_file("paper_data", str(real))
    analysis.checks.check_file("paper_data", None, optional=True)
    for bad in (str(tmp_path / "missing.csv"), 3, str(tmp_path)):
        with pytest.raises(ValueError, match=r"^paper_data must be an existing file .* or None"):
            analysis.checks.check_file("paper_data", bad, optional=True)
    with pytest.raises(ValueError, match=r"^paper_data must be"):
        analysis.checks.check_file("paper_data", None)


def test_paper_chapter_without_the_released_runs(tmp_path) -> None:
    runs, note = analysis.paper.released_t5(str(tmp_path / "missing.csv"))
    assert runs is None and note.startswith("No paper data at")
    assert analysis.paper.refit_released(runs) is None
    assert list(analysis.paper.refit_table(None).columns) == ["published (Table 1)"]
    table = analysis.paper.extrapolation_table(None)
    assert list(table.index) == ["published (Table 1)"]
    # the paper's own check: Table 1 predicts the 2.3B model within 1% (1.4689 vs 1.4828)
    assert table.loc["published (Table 1)", "error vs measured (%)"] == pytest.approx(-0.94, abs=0.01)


def test_paper_chapter_refits_the_released_runs(tmp_path) -> None:
    runs, note = analysis.paper.released_t5(str(_released_csv(tmp_path / "t5-data.csv")))
    assert len(runs) == 12 and note == f"12 T5 runs from {tmp_path / 't5-data.csv'}"
    refit = analysis.paper.refit_released(runs, bootstrap=2, seed=0)
    assert refit.published_objective == pytest.approx(0.0, abs=1e-12)  # the data are Table 1's
    assert refit.fit.objective <= 1e-8
    table = analysis.paper.refit_table(refit)
    assert {"published (Table 1)", "re-fit", "95% low", "95% high"} <= set(table.columns)
    assert table.loc["objective", "re-fit"] == refit.fit.objective
    extrapolation = analysis.paper.extrapolation_table(refit)
    assert list(extrapolation.index) == ["published (Table 1)", "re-fit", "re-fit, 95% low",
                                         "re-fit, 95% high"]
    fig = analysis.figures.predicted_vs_measured(refit.panels(), "t")
    assert [a.text for a in fig.layout.annotations] == ["re-fit", "Table 1"]
    hover = fig.data[1].hovertemplate  # the released runs have no width, SE or wall time
    assert "steps=" in hover and "width=" not in hover and "loss SE=" not in hover


def test_paper_figures_and_dense_equivalents() -> None:
    fig = analysis.paper.paper_loss_figure()
    assert [a.text for a in fig.layout.annotations] == list(analysis.paper.PAPER_LAWS)
    assert len(fig.data) == 2 * 3 * 4  # laws x data amounts x sparsities
    assert len(analysis.paper.paper_dense_equivalent_figure().data) == 4
    table = analysis.paper.paper_dense_equivalent_table().round(2)
    assert table.loc["75% sparse"].tolist() == [2.17, 2.16]  # the paper's m(0.75)
    assert table.index[-1] == "limit S → 1"


def _grid(losses: dict[tuple[float, int], float]) -> analysis.Runs:
    rows = [{"sparsity": S, "N_target": N, "N": N, "D": 100, "loss": loss, "family": "t5"}
            for (S, N), loss in losses.items()]
    return analysis.Runs("t5", "tokens", "test", pd.DataFrame(rows))


def test_recipe_summary_compares_each_recipe_with_the_grids() -> None:
    grid = _grid({(0.0, 16): 2.0, (0.0, 32): 1.9, (0.5, 16): 1.95})
    recipes = pd.DataFrame({
        "S": [0.0, 0.0, 0.5], "N_target": [16, 32, 16], "width": [8, 12, 12], "D": [100] * 3,
        "LR 0.003": [2.1, 1.8, np.nan],
        "LR 0.01": [2.0, 1.9, 1.95],  # the grid's runs
        "LR 0.03": [np.nan, np.nan, 2.05],
    })
    assert analysis.summaries.grid_recipe(recipes, grid) == "LR 0.01"
    summary = analysis.summaries.recipe_summary(recipes, grid)
    assert list(summary.index) == ["LR 0.01", "LR 0.003", "LR 0.03"]
    assert summary["grid's recipe"].tolist() == [True, False, False]
    assert summary["points"].tolist() == [3, 2, 1]
    lr3 = summary.loc["LR 0.003"]
    assert lr3["mean difference"] == pytest.approx(0.0)
    assert (lr3["min difference"], lr3["max difference"]) == pytest.approx((-0.1, 0.1))
    assert lr3["lower at"] == 1 and summary.loc["LR 0.03", "lower at"] == 0


def test_folded_puts_the_table_under_a_summary() -> None:
    html = analysis.summaries.folded(analysis.styled(pd.DataFrame({"x": [1.5]})), "All <2> rows").data
    assert html.startswith("<details><summary>All &lt;2&gt; rows</summary>")
    assert "<table" in html and html.endswith("</details>")


def test_longest_slice_noise() -> None:
    assert np.isnan(analysis.noise.longest_slice_noise(None))
    spread = pd.DataFrame({"recipe": ["r"] * 2, "S": [0.0] * 2, "N_target": [16] * 2,
                           "width": [8] * 2, "D": [100, 400], "runs": [3, 3],
                           "mean": [2.0, 1.8], "SD": [0.04, 0.01], "range": [0.1, 0.02],
                           "grid recipe": [True, True]})
    assert analysis.noise.longest_slice_noise(spread) == pytest.approx(0.01)


def test_coefficients_side_by_side_says_which_fit_lacks_the_sparse_law() -> None:
    runs = _grid({(0.0, 16): 2.0})
    fits = {"all runs": analysis.fits.LawFits(runs, {}, {}, {"sparse": "needs 3 distinct S"})}
    table, notes = analysis.fits.coefficients_side_by_side(fits, PAPER_T5)
    assert table is None and notes == ["The sparse law is not fitted (all runs): needs 3 "
                                       "distinct S."]


def test_noise_of_runs_without_rerun_points_is_nan() -> None:
    # Chapter 4 in smoke mode: the seed store's recipe is not the smoke grid's.
    spread = pd.DataFrame({"recipe": ["r"], "S": [0.0], "N_target": [16], "width": [8],
                           "D": [100], "runs": [3], "mean": [2.0], "SD": [0.04],
                           "range": [0.1], "grid recipe": [False]})
    assert np.isnan(analysis.noise.noise_of(spread, _grid({(0.0, 16): 2.0})))
