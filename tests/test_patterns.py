"""The patterns chapter's analysis: seed-averaged n:m cells beside unstructured, their gaps,
the per-pattern refit through the chapter's path, and the weight-check table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsekit import fitting
from sparsekit.analysis import patterns
from sparsekit.analysis.runs import load_runs, runs_from_table
from sparsekit.laws import SparseLaw
from sparsekit.result import RunResult
from sparsekit.store import Store
from sparsekit.store import table as store_table

LAW = SparseLaw(a_S=3.0, b_S=0.8, c_S=5.0, b_N=0.3, a_D=1e4, b_D=0.4, c=1.0)  # nats, tokens
F50 = float(fitting.size_factor(LAW, 0.5))


def result(S, N, D, loss, *, pattern="unstructured", seed=0, lr=3e-3, key=None, paper=None,
           corpus=None):
    """A stored result of a finished T5 run (nested config, as train.run writes it); `paper`
    True or False sets the protocol fields (embed_rule and exact), None leaves them out, and
    `corpus` names the T5 corpus (None: left out, the stdlib)."""
    model, sparsity = {"family": "t5", "nonzero": N}, {"target": S, "pattern": pattern}
    data = {"amount": D, "seed": seed, **({"options": {"corpus": corpus}} if corpus else {})}
    if paper is not None:
        model["exact"], sparsity["embed_rule"] = paper, paper
    return RunResult.from_row({
        "key": key or f"{pattern}-{S}-{N}-{D}-{seed}-{lr}-{paper}-{corpus}", "status": "ok",
        "family": "t5", "unit": "tokens", "sparsity": S, "pattern": pattern, "N": N,
        "N_target": N, "width": 16, "D": D, "loss": loss, "loss_se": 1e-3,
        "flops_dense": 6.0 * N * D,
        "config": {"model": model, "seed": seed, "data": data,
                   "sparsity": sparsity, "optim": {"lr": lr}},
    })


@pytest.fixture
def stores(tmp_path):
    """A grid (dense and unstructured 50%, 2 sizes, 1 length), an n:m store (2:4 at both
    sizes, 4:8 at one) and a seed store (seeds 1, 2 of 2:4 and unstructured at 16K)."""
    grid, nm, seeds = (Store(tmp_path / name) for name in ("grid", "nm", "seeds"))
    for S in (0.0, 0.5):
        for N in (16384, 65536):
            grid.put(result(S, N, 2**24, 3.0 if N == 16384 else 2.5))
    nm.put(result(0.5, 16384, 2**24, 3.1, pattern="2:4"))
    nm.put(result(0.5, 65536, 2**24, 2.52, pattern="2:4"))
    nm.put(result(0.5, 16384, 2**24, 3.02, pattern="4:8"))
    for seed, (loss_nm, loss_u) in zip((1, 2), ((3.0, 3.05), (3.2, 2.95)), strict=True):
        seeds.put(result(0.5, 16384, 2**24, loss_nm, pattern="2:4", seed=seed))
        seeds.put(result(0.5, 16384, 2**24, loss_u, seed=seed))
    return grid.path, nm.path, seeds.path


def test_cells_average_seeds_and_gaps_compare_them(stores):
    grid, nm, seeds = stores
    runs = patterns.pattern_runs([nm, seeds], load_runs(grid))
    assert len(runs) == 3 + 4 + 2 + 2  # n:m and seed runs, the grid's 50% twins and dense runs
    cells = patterns.cells(runs).set_index(["pattern", "S", "N_target"])
    assert cells.loc[("2:4", 0.5, 16384), ["runs", "loss", "SD"]].tolist() == pytest.approx(
        [3, 3.1, 0.1])
    assert cells.loc[("unstructured", 0.5, 16384), ["runs", "loss"]].tolist() == (
        pytest.approx([3, 3.0]))
    assert cells.loc[("unstructured", 0.0, 65536), ["runs", "loss"]].tolist() == (
        pytest.approx([1, 2.5]))  # the dense twin, for claim 9's gain
    assert np.isnan(cells.loc[("4:8", 0.5, 16384), "SD"])  # one run
    gaps = patterns.gaps(patterns.cells(runs), noise=0.06, df=4)
    assert gaps["pattern"].tolist() == ["2:4", "2:4", "4:8"]  # m = 4 first, then by N
    first = gaps.iloc[0]
    assert first[["gap", "gap SE"]].tolist() == pytest.approx([0.1, 0.06 * np.sqrt(2 / 3)])
    assert first["gap (%)"] == pytest.approx(100 * 0.1 / 3.0)
    t4 = 2.7764451  # t quantile 0.975 at 4 degrees of freedom
    assert first[["gap low", "gap high"]].tolist() == pytest.approx(
        [0.1 - t4 * 0.06 * np.sqrt(2 / 3), 0.1 + t4 * 0.06 * np.sqrt(2 / 3)])
    assert gaps["resolved"].tolist() == [False, False, False]  # 0.1 < 2.78 x 0.049
    # seed SD 0.01: the 0.1 gap is resolved (SE 0.0082); 0.02 is not (SEs 0.014, 0.012)
    assert patterns.gaps(patterns.cells(runs), noise=0.01, df=4)["resolved"].tolist() == [
        True, False, False]
    # a normal quantile (df = inf) resolves the 0.1 gap at seed SD 0.06: 0.1 > 1.96 x 0.049
    assert patterns.gaps(patterns.cells(runs), noise=0.06)["resolved"].iat[0]
    assert gaps["seed SD"].tolist() == [0.06] * 3 and gaps["df"].tolist() == [4] * 3
    unknown = patterns.gaps(patterns.cells(runs), noise=np.nan)
    assert unknown["resolved"].isna().all() and unknown["gap SE"].isna().all()
    assert patterns.gap_summary(unknown)["resolved"].tolist() == [0, 0]  # none resolved
    fig = patterns.gap_figure(gaps, "tokens", "t")
    assert [t.name for t in fig.data] == ["2:4", "4:8"] and list(fig.data[0].y) == (
        pytest.approx([0.1, 0.02]))
    summary = patterns.gap_summary(gaps)
    assert summary.index.tolist() == ["2:4", "4:8"]  # by S, then m, then n
    assert summary.loc["2:4", ["points", "mean", "smallest", "largest"]].tolist() == (
        pytest.approx([2, 0.06, 0.02, 0.1]))
    assert summary["resolved"].tolist() == [0, 0]  # no interval excludes zero
    assert patterns.gap_summary(patterns.gaps(patterns.cells(runs), noise=0.03, df=4))[
        "resolved"].tolist() == [1, 0]  # only 2:4 at 16K: 0.1 > 2.78 x 0.0245


def test_gaps_judge_each_point_against_its_own_slice_noise(stores):
    """A slice with its own measured seed SD overrides the pooled one, only on that slice."""
    grid, nm, seeds = stores
    cells = patterns.cells(patterns.pattern_runs([nm, seeds], load_runs(grid)))
    longer = cells.assign(D=2**25)  # a second slice: the same cells, twice the data
    both = pd.concat([cells, longer], ignore_index=True)
    slices = pd.DataFrame({"seed SD": [0.01], "df": [4]}, index=pd.Index([2**24], name="D"))
    table = patterns.gaps(both, noise=0.06, slices=slices, df=4).set_index(
        ["D", "pattern", "N_target"])
    short, long = table.loc[(2**24, "2:4", 16384)], table.loc[(2**25, "2:4", 16384)]
    assert short[["seed SD", "gap SE"]].tolist() == pytest.approx([0.01, 0.01 * np.sqrt(2 / 3)])
    assert long[["seed SD", "gap SE"]].tolist() == pytest.approx([0.06, 0.06 * np.sqrt(2 / 3)])
    assert short["resolved"] and not long["resolved"]  # gap 0.1 nats: 2.78 x 0.0082, x 0.049
    assert short["gap"] == long["gap"] == pytest.approx(0.1)
    sd, df, none = patterns.gap_noise(None)  # no seed stores: nothing to judge against
    assert np.isnan(sd) and np.isnan(df) and none is None


def test_twins_share_the_n_m_runs_protocol(tmp_path):
    """A paper-protocol grid gives no twin to n:m runs trained with dense embeddings at the
    quantum; their own grid, listed among the stores, does, and its twin alone is used."""
    paper, old, nm = (Store(tmp_path / name) for name in ("paper", "old", "nm"))
    paper.put(result(0.5, 16384, 2**24, 2.8, paper=True))
    old.put(result(0.5, 16384, 2**24, 3.0, paper=False))
    old.put(result(0.5, 65536, 2**24, 2.5))  # an older store: no protocol fields (= off)
    nm.put(result(0.5, 16384, 2**24, 3.1, pattern="2:4", paper=False))
    nm.put(result(0.5, 65536, 2**24, 2.52, pattern="2:4"))
    alone = patterns.pattern_runs([nm.path], load_runs(paper.path))
    assert sorted(alone.table["pattern"]) == ["2:4", "2:4"]  # no twin of the other protocol
    runs = patterns.pattern_runs([nm.path, old.path], load_runs(paper.path))
    gaps = patterns.gaps(patterns.cells(runs), noise=0.01)
    assert gaps["gap"].tolist() == pytest.approx([0.1, 0.02])  # against the 3.0 and 2.5 twins
    # Dense twins (claim 9's gain) likewise: the same protocol and corpus only.
    paper.put(result(0.0, 16384, 2**24, 3.3, paper=True))
    old.put(result(0.0, 16384, 2**24, 3.2, paper=False))
    old.put(result(0.0, 65536, 2**24, 2.9, corpus="pinned"))
    runs = patterns.pattern_runs([nm.path, old.path], load_runs(paper.path))
    dense = runs.table[runs.table["sparsity"] == 0.0]
    assert dense[["N_target", "loss"]].to_numpy().tolist() == [[16384, 3.2]]


def test_cells_refuse_runs_that_differ_in_more_than_seeds(stores, tmp_path):
    grid, nm, _ = stores
    other = Store(tmp_path / "other-lr")
    other.put(result(0.5, 16384, 2**24, 3.3, pattern="2:4", lr=1e-2))
    runs = patterns.pattern_runs([nm, other.path], load_runs(grid))
    with pytest.raises(ValueError, match=r"differ in \['config.optim.lr'\], not only"):
        patterns.cells(runs)
    with pytest.raises(ValueError, match="hold no n:m runs"):
        patterns.pattern_runs([grid], load_runs(grid))


def test_refit_through_the_chapter_path_recovers_a_known_factor():
    # Unstructured and dense runs from LAW; 2:4 runs with a size factor 1.2x unstructured's.
    S, N, D = (x.ravel() for x in np.meshgrid((0.0, 0.5, 0.75, 0.875), 2.0 ** np.arange(14, 19),
                                              2.0 ** np.arange(22, 25), indexing="ij"))
    base = fitting.fit(S, N, D, LAW.predict(S, N, D))
    rows = [result(0.5, n, d, 1.2 * F50 * n ** -LAW.b_N + (LAW.a_D / d) ** LAW.b_D + LAW.c,
                   pattern="2:4") for n in (2**14, 2**16) for d in (2**22, 2**24)]
    runs = runs_from_table(store_table(rows), source="test")
    fits = patterns.refit(base, runs)
    assert fits["2:4"].factor == pytest.approx(1.2 * F50, rel=1e-5)
    table = patterns.refit_table(fits)
    assert table.loc["2:4", "m / unstructured"] == pytest.approx(1.2 ** (-1 / LAW.b_N), rel=1e-5)
    assert table.loc["2:4", "runs"] == 4 and np.isnan(table.loc["2:4", "m 95% low"])
    fig = patterns.refit_figure(fits, "t")
    assert [t.x[0] for t in fig.data] == ["unstructured 50%", "2:4"]
    text = patterns.conclusion(pd.DataFrame({"S": [0.5], "points": [4], "mean": [0.01],
                                             "smallest": [0.0], "largest": [0.02],
                                             "mean (%)": [0.3], "resolved": [1]},
                                            index=["2:4"]), fits,
                               pd.DataFrame())
    assert "**2:4** (50%): +0.010 nats" in text and f"{fits['2:4'].relative:.2f} of it" in text
    assert "refit on 4 runs" in text and "1 resolved: their 95% interval excludes zero" in text
    assert "no n:m checkpoint here" in text


def test_weight_checks_note_a_missing_checkpoint_and_skip_other_runs(stores):
    grid, nm, _ = stores
    table = patterns.weight_checks([grid, nm])
    assert table.empty and table.attrs["unchecked"] == 3  # n:m runs only, none saved
