"""The Findings chapter's verdicts: each rule on hand-made numbers, the evidence helpers on tiny
tables, and `findings` end to end on runs drawn from laws whose answers are known.

The synthetic runs follow the paper's T5 law (Table 1, `PAPER_T5`) on its own grid: S in
{0, 0.5, 0.75, 0.875}, N = 1M to 32M non-zeros (2x apart), D = 1.6e10 / 3.3e10 / 6.6e10 tokens,
two seeds, each loss times exp(0.1% noise). Variants make the loss independent of S, or let the
sparse-dense gap halve with each doubling of D. Bootstraps are small (10 refits) to stay fast.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from known_runs import BOOTSTRAP, DATA, LEVELS, SIZES, paper_runs

from sparsekit import analysis
from sparsekit.analysis import evidence
from sparsekit.analysis.chapter import styled_verdicts, verdict_table
from sparsekit.analysis.checks import store_or_reason
from sparsekit.analysis.claims import verdicts
from sparsekit.analysis.evidence import (
    Effect,
    relevant_gain,
    rule_constant_gap,
    rule_dense_equivalent,
    rule_falls,
    rule_same_exponent,
    rule_shrinks,
    rule_sopt,
    rule_within_noise,
)
from sparsekit.analysis.findings import _frame_runs, family_views, findings, heldout_comparison
from sparsekit.analysis.noise import frame_noise, sd_interval, view_noise
from sparsekit.analysis.rules import (
    FAILS,
    HOLDS,
    PARTLY,
    UNDETERMINED,
    UNTESTABLE,
    Interval,
    combine,
    resolved,
)
from sparsekit.analysis.views import View
from sparsekit.laws import PAPER_T5

# --- the rules ------------------------------------------------------------------------------


def test_resolved_means_the_interval_excludes_zero() -> None:
    assert resolved(Interval(0.1, 0.01, 0.2, 4)) and resolved(Interval(-0.1, -0.2, -0.01, 4))
    assert not resolved(Interval(0.1, -0.01, 0.2, 4))
    assert resolved(Interval(0.1, np.nan, np.nan, 4)) is None  # unknown bounds


def test_matched_gaps_by_hand() -> None:
    """Two reference cells and three others, one without a reference: the gaps, their
    references and SEs from a seed SD per row, sqrt(1 / runs + 1 / reference runs)."""
    table = pd.DataFrame({"S": [0.0, 0.0, 0.5, 0.5, 0.5], "size": [1, 2, 1, 2, 3],
                          "D": [10] * 5, "loss": [3.0, 2.5, 2.9, 2.6, 2.0],
                          "runs": [2, 1, 2, 3, 1]})
    sd = pd.Series([0.1, 0.1, 0.1, 0.2, 0.2])
    out = evidence.matched_gaps(table, ["size", "D"], table["S"] == 0, sd)
    assert out["size"].tolist() == [1, 2]  # size 3 has no reference
    assert out["gap"].tolist() == pytest.approx([-0.1, 0.1])
    assert out[["loss0", "runs0"]].to_numpy().tolist() == [[3.0, 2], [2.5, 1]]
    assert out["se"].tolist() == pytest.approx([0.1 * np.sqrt(1 / 2 + 1 / 2),
                                                0.2 * np.sqrt(1 / 3 + 1)])
    assert evidence.gaps(table, 0.1)["se"].tolist() == pytest.approx(
        [0.1, 0.1 * np.sqrt(4 / 3)])  # one SD for every cell


def test_combine() -> None:
    assert combine([HOLDS, HOLDS]) == HOLDS
    assert combine([FAILS, FAILS, UNTESTABLE]) == FAILS
    assert combine([HOLDS, FAILS]) == PARTLY
    assert combine([HOLDS, UNTESTABLE]) == PARTLY  # a part untested: not all of it holds
    assert combine([FAILS, UNDETERMINED]) == UNDETERMINED  # "partly" only when a part holds
    assert combine([UNTESTABLE]) == combine([]) == UNTESTABLE


def test_rule_falls() -> None:
    assert rule_falls(Effect(-0.1, 0.01), 0.02) == HOLDS
    assert rule_falls(Effect(-0.015, 0.01), 0.02) == UNDETERMINED  # holds 0 and -R
    assert rule_falls(Effect(-0.005, 0.001), 0.02) == FAILS  # real, but under R
    assert rule_falls(Effect(0.1, 0.01), 0.02) == FAILS  # reversed
    assert rule_falls(Effect(-0.1, np.nan), 0.02) == UNTESTABLE
    assert rule_falls(Effect(-0.1, 0.03, df=2), 0.02) == UNDETERMINED  # t_2: 4.3 SE
    assert rule_falls(Effect(-0.1, 0.03), 0.02) == HOLDS  # the same at a normal quantile


def test_rule_no_gain() -> None:
    assert evidence.rule_no_gain(Effect(0.001, 0.002), 0.01) == HOLDS  # within +-R
    assert evidence.rule_no_gain(Effect(-0.05, 0.005), 0.01) == FAILS  # a real gain
    assert evidence.rule_no_gain(Effect(-0.008, 0.005), 0.01) == UNDETERMINED


def test_rule_shrinks() -> None:
    assert rule_shrinks(Effect(0.05, 0.01), 0.01) == HOLDS
    assert rule_shrinks(Effect(0.0, 0.002), 0.01) == FAILS  # the gains do not shrink
    assert rule_shrinks(Effect(0.01, 0.01), 0.01) == UNDETERMINED


def test_rule_same_exponent() -> None:
    assert rule_same_exponent(Effect(0.001, 0.002), 0.25) == HOLDS  # within 0.0625
    assert rule_same_exponent(Effect(0.12, 0.005), 0.25) == FAILS
    assert rule_same_exponent(Effect(0.0, 0.1), 0.25) == UNDETERMINED  # too wide


def test_rule_constant_gap() -> None:
    assert rule_constant_gap(Effect(0.001, 0.002), 0.025) == HOLDS
    assert rule_constant_gap(Effect(0.05, 0.005), 0.025) == FAILS
    assert rule_constant_gap(Effect(0.0, 0.02), 0.025) == UNDETERMINED  # too noisy


def test_relevant_gain_is_a_quarter_of_the_papers_in_our_units() -> None:
    m = PAPER_T5.dense_equivalent(np.array([0.5, 0.75]))
    assert relevant_gain("t5", -0.08, 0.5, 0.75) == pytest.approx(0.25 * 0.08 * np.log(m[1] / m[0]))
    assert relevant_gain("t5", -0.08, 0.0, 0.5) == pytest.approx(0.02 * np.log(m[0]))


def test_sd_interval_is_the_chi_square_interval() -> None:
    low, high = sd_interval(0.01, 10)  # chi2(10) quantiles 3.247 and 20.483
    assert low == pytest.approx(0.01 * np.sqrt(10 / 20.483), rel=1e-3)
    assert high == pytest.approx(0.01 * np.sqrt(10 / 3.247), rel=1e-3)
    assert sd_interval(0.01, np.inf) == (0.01, 0.01)
    assert np.isnan(sd_interval(np.nan, 10)[0]) and np.isnan(sd_interval(0.01, 0.5)[0])


def test_rule_within_noise() -> None:
    assert rule_within_noise(0.003, 0.002, np.inf) == HOLDS  # 1.5 SD, SD known
    assert rule_within_noise(0.005, 0.002, np.inf) == FAILS  # 2.5 SD
    assert rule_within_noise(0.003, 0.002, 2) == UNDETERMINED  # the SD's interval is wide
    assert rule_within_noise(0.003, 0.002, 200) == HOLDS  # up to 1.5 / 0.9 SD
    assert rule_within_noise(0.02, 0.002, 10) == FAILS  # 10 SD, at least 7 of the high SD
    assert rule_within_noise(0.003, np.nan, np.inf) == UNTESTABLE
    assert rule_within_noise(np.nan, 0.002, np.inf) == UNTESTABLE


def test_rule_sopt() -> None:
    assert rule_sopt((0.1, 0.3), (0.9, 1.1)) == HOLDS
    assert rule_sopt((0.1, 0.3), (2.2, 3.0)) == PARTLY  # rises, not parallel
    assert rule_sopt((0.1, 0.3), (0.4, 2.5)) == PARTLY  # rises, parallel undetermined
    assert rule_sopt((0.1, 0.3), (np.nan, np.nan)) == PARTLY  # a part untested
    assert rule_sopt((-0.01, 0.02), (2.2, 3.0)) == FAILS  # flat, not parallel
    assert rule_sopt((0.0, 0.2), (0.4, 2.5)) == UNDETERMINED
    assert rule_sopt((np.nan, np.nan), (np.nan, np.nan)) == UNTESTABLE


def test_rule_dense_equivalent() -> None:
    assert rule_dense_equivalent((1.5, 1.7), paper=1.59) == HOLDS
    assert rule_dense_equivalent((1.2, 1.3), paper=1.59) == FAILS  # a gain, not the paper's
    assert rule_dense_equivalent((1.0, 1.05), paper=1.59) == FAILS
    assert rule_dense_equivalent((0.9, 3.5), paper=1.59) == UNDETERMINED  # holds 1 and 1.59
    assert rule_dense_equivalent((1.0, 2.2), paper=1.59) == UNDETERMINED  # piled at m = 1
    assert rule_dense_equivalent((np.nan, np.nan), paper=1.59) == UNTESTABLE


# --- the evidence ---------------------------------------------------------------------------


def test_nominal_sizes_group_runs_of_one_size() -> None:
    sizes = evidence.nominal_sizes(np.array([13824.0, 14592.0, 16384.0, 27000.0, 32768.0]))
    assert len(set(sizes[:3])) == 1 and len(set(sizes[3:])) == 1 and sizes[0] < sizes[3]
    assert sizes[0] == pytest.approx(np.exp(np.mean(np.log([13824, 14592, 16384]))))


def test_mean_effect_takes_the_larger_se() -> None:
    e = evidence.mean_effect([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert e.value == 2.0 and e.se == pytest.approx(1 / np.sqrt(3))  # paired: SD / sqrt(m)
    e = evidence.mean_effect([1.0, 1.0], [3.0, 4.0])  # 2 cells: the noise alone
    assert e.se == pytest.approx(5.0 / 2)
    assert np.isnan(evidence.mean_effect([1.0, 2.0], [np.nan, np.nan]).se)


def hand_runs() -> analysis.Runs:
    """Two sizes x two D x three levels; loss = 3 - 0.2 [S >= 0.5] - 0.1 [S >= 0.75], with a
    sparse-dense gap that halves from D = 100 to D = 200 at the larger size only."""
    rows = []
    for S, N, D in itertools.product((0.0, 0.5, 0.75), (100.0, 400.0), (100.0, 200.0)):
        gap = -0.2 * (S >= 0.5) - 0.1 * (S >= 0.75)
        if N == 400 and D == 200:
            gap /= 2
        rows.append({"family": "t5", "sparsity": S, "N": N, "D": D, "loss": 3.0 + gap})
    return _frame_runs(pd.DataFrame(rows), "t5")


def test_cells_steps_curvatures_and_gaps_by_hand() -> None:
    table = evidence.cells(hand_runs())
    assert len(table) == 12 and set(table["runs"]) == {1}
    (a, b, first), (_, _, second) = evidence.steps(table, noise=0.01)
    assert (a, b) == (0.0, 0.5)
    assert first.value == pytest.approx((-0.2 * 3 - 0.1) / 4)  # the halved cell: -0.1
    assert second.value == pytest.approx((-0.1 * 3 - 0.05) / 4)
    (curve,) = evidence.curvatures(table, noise=0.01)
    assert curve.value == pytest.approx(second.value - first.value)  # L0 - 2 L1 + L2
    gaps = evidence.gaps(table, noise=0.01)
    assert len(gaps) == 8 and gaps["se"].iloc[0] == pytest.approx(0.01 * np.sqrt(2))
    gap, change = evidence.gap_trend(gaps[gaps["S"] == 0.5])
    assert gap.value == pytest.approx((-0.2 * 3 - 0.1) / 4)
    assert change.value == pytest.approx((0.0 + 0.1) / 2)  # per doubling, averaged over sizes


def test_contour_and_frontier_slopes_of_the_paper_law() -> None:
    # Under the dense cost both are b_D / (b_N + b_D) by the law's form.
    slope = PAPER_T5.b_D / (PAPER_T5.b_N + PAPER_T5.b_D)
    N, C = 1e8, 1e22
    assert 0 < PAPER_T5.optimal_sparsity(N, C) < 0.99
    assert evidence.contour_slope(PAPER_T5, N, C) == pytest.approx(slope, rel=1e-3)
    assert evidence.frontier_slope(PAPER_T5, C) == pytest.approx(slope, rel=1e-9)
    assert np.isnan(evidence.contour_slope(PAPER_T5, 1e10, 1e15))  # S_opt clipped at 0


def test_form_fit_bootstraps_only_a_determined_exponent() -> None:
    frame = paper_runs(sizes=SIZES[:3])
    level = _frame_runs(frame[frame["sparsity"] == 0.5], "t5")
    fit = evidence.form_fit(level, bootstrap=3, seed=0)
    assert fit.law.alpha == pytest.approx(PAPER_T5.b_N, rel=0.05) and len(fit.bootstrap_laws) == 3
    assert evidence.undetermined_exponent(fit) == ""
    flat = level.select(np.isclose(level.N, level.N.min()))  # one size: no exponent to fit
    assert "needs 2 distinct N values" in evidence.form_fit(flat, bootstrap=3, seed=0)
    bound = fit.law.with_params([*fit.law.params[:1], 1e-3, *fit.law.params[2:]])
    at_bound = dataclasses.replace(fit, law=bound)
    assert evidence.undetermined_exponent(at_bound).startswith("alpha 0.001 at the search bound")


def test_frame_noise_pools_points_with_several_seeds() -> None:
    frame = pd.DataFrame({"family": "t5", "sparsity": 0.0, "N": [1.0, 1.0, 2.0, 2.0, 3.0],
                          "D": 10.0, "seed": [0, 1, 0, 1, 0], "loss": [1.0, 1.2, 2.0, 2.4, 5.0]})
    # SDs 0.1 sqrt(2) and 0.2 sqrt(2), one dof each
    assert frame_noise(frame) == pytest.approx((np.sqrt((0.02 + 0.08) / 2), 2))
    assert np.isnan(frame_noise(frame.drop(columns="seed"))[0])


# --- findings on runs drawn from known laws ----------------------------------------------------


COLUMNS = ["claim", "family", "statement", "evidence", "paper", "verdict", "rule"]


@pytest.mark.slow
def test_runs_from_the_paper_law_support_every_claim() -> None:
    table = findings(paper_runs(), bootstrap=BOOTSTRAP)
    assert list(table.columns) == COLUMNS and list(table["claim"]) == list(range(1, 9))
    assert set(table["family"]) == {"t5"}
    assert (table["verdict"] == HOLDS).all(), table[["claim", "verdict", "evidence"]].to_string()
    assert table["rule"].str.len().min() > 40 and table["paper"].str.len().min() > 0


def test_a_loss_independent_of_S_fails_claims_1_and_8() -> None:
    table = findings(paper_runs("flat"), bootstrap=BOOTSTRAP, claims=(1, 8))
    assert list(table["verdict"]) == [FAILS, FAILS], table["evidence"].tolist()


def test_a_flat_law_with_noise_too_large_to_decide_is_undetermined() -> None:
    frame = paper_runs("flat")
    frame["loss"] *= np.exp(np.random.default_rng(3).normal(0.0, 0.5, len(frame)))  # 50%
    table = findings(frame, bootstrap=BOOTSTRAP, claims=(1, 8))
    assert list(table["verdict"]) == [UNDETERMINED, UNDETERMINED], table["evidence"].tolist()


def test_a_gap_halving_with_each_doubling_of_D_fails_claim_4() -> None:
    table = findings(paper_runs("halves"), claims=(4,))
    assert list(table["verdict"]) == [FAILS], table["evidence"].tolist()
    assert findings(paper_runs("law"), claims=(4,))["verdict"].item() == HOLDS


def test_held_out_runs_decide_claim_6_and_rank_the_law_forms() -> None:
    frame = paper_runs(sizes=SIZES[:4])  # 1M-8M
    heldout = paper_runs(sizes=[32e6], seed=1)
    table = findings(frame, heldout=heldout, bootstrap=0, claims=(6, 8))
    claim6, claim8 = table.itertuples()
    assert claim6.verdict == HOLDS and claim6.evidence.startswith("held-out runs (N 32M)")
    assert claim8.verdict == UNTESTABLE  # no bootstrap, no interval
    ranked = heldout_comparison(frame, heldout)
    assert ranked.index[0] == "sparse law" and list(ranked["runs"]) == [24] * len(ranked)
    assert ranked["RMSE"].is_monotonic_increasing and (ranked["family"] == "t5").all()


def test_a_d_over_n_floor_with_no_runs_above_it_is_not_testable() -> None:
    table = findings(paper_runs(), min_tokens_per_param={"t5": 1e6})
    assert (table["verdict"] == UNTESTABLE).all() and (table["evidence"] == "no runs").all()


def test_one_sparsity_level_leaves_the_sparsity_claims_untestable() -> None:
    frame = paper_runs()
    table = findings(frame[frame["sparsity"] == 0], bootstrap=0)
    assert (table["verdict"] == UNTESTABLE).all(), table[["claim", "verdict"]].to_string()


BAD_FRAMES = [
    (lambda f: f.drop(columns="D"), r"frame is missing the column\(s\) \['D'\]"),
    (lambda f: f.iloc[:0], "frame has no runs"),
    (lambda f: f.assign(loss=np.where(f.index == 3, np.nan, f["loss"])),
     r"frame: column loss must be finite, > 0 \(nats\); rows \[3\]"),
    (lambda f: f.assign(loss=np.where(f.index == 5, np.inf, f["loss"])), "rows \\[5\\]"),
    (lambda f: f.assign(sparsity=1.0), r"column sparsity must be finite, in \[0, 1\)"),
    (lambda f: f["loss"], "frame must be a pandas DataFrame, got Series"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_FRAMES)
def test_bad_input_gets_a_clear_error(edit, message) -> None:
    with pytest.raises(ValueError, match=message):
        findings(edit(paper_runs()))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"noise": -1.0}, "noise for t5 must be a finite seed SD >= 0"),
    ({"noise": {"vit": 0.1}}, r"noise: no runs of family \['vit'\]"),
    ({"bootstrap": -1}, "bootstrap must be an integer >= 0"),
    ({"claims": (0, 9)}, "claims must be a non-empty list"),
    ({"min_tokens_per_param": -5.0}, "min_tokens_per_param must be a finite D/N >= 0"),
    ({"heldout": pd.DataFrame({"family": ["t5"]})}, "heldout is missing the column"),
])
def test_bad_arguments_name_the_parameter(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        findings(paper_runs(), **kwargs)


# --- the chapter's tables, figures and notebook ----------------------------------------------


def test_verdict_table_and_exponent_table() -> None:
    a = View(_frame_runs(paper_runs(), "t5"), noise=0.002, bootstrap=3)
    table = verdicts(a, claims=(1, 3))
    wide = verdict_table({"T5, all runs": table, "T5, again": table})
    assert list(wide.columns) == ["T5, all runs", "T5, again"] and len(wide) == 2
    assert wide.index[0].startswith("1. At fixed N and D")
    assert "background-color" in styled_verdicts(wide).to_html()
    exponents = analysis.claims_laws.exponent_table(a)
    assert list(exponents["S"]) == list(LEVELS)
    assert np.allclose(exponents["exponent"], PAPER_T5.b_N, rtol=0.05)
    assert np.allclose(exponents["shared"], PAPER_T5.b_N, rtol=0.02)
    fig = analysis.claims_laws.exponent_figure({"T5": exponents}, "exponents")
    assert len(fig.data) == 2  # the levels, and the sparse law's b_N


def test_gap_figure_panels_and_lines() -> None:
    runs = _frame_runs(paper_runs(sizes=SIZES[:2]), "t5")
    gaps = evidence.gaps(evidence.cells(runs), noise=0.002)
    by_s = analysis.figures.gap_figure(gaps, "S", unit="tokens", title="gap vs S")
    assert len(by_s.layout.annotations) == len(DATA) and len(by_s.data) == 2 * len(DATA)
    assert by_s.data[0].x[0] == 0.0  # each line starts at the dense model
    by_d = analysis.figures.gap_figure(gaps, "D", unit="tokens", title="gap vs D")
    assert len(by_d.layout.annotations) == 3 and len(by_d.data) == 2 * 3
    with pytest.raises(ValueError, match="against must be 'S' or 'D'"):
        analysis.figures.gap_figure(gaps, "N", unit="tokens", title="")


def test_family_views_all_runs_and_in_range(tmp_path) -> None:
    runs = _frame_runs(paper_runs(), "t5")  # D/N from 500 to 66,000
    views = family_views(runs, floor=4000.0, seeds=[str(tmp_path)], bootstrap=0)
    assert list(views) == [analysis.fits.ALL_RUNS, "D/N >= 4000"]
    assert len(views[analysis.fits.ALL_RUNS].runs) == len(runs) > len(views["D/N >= 4000"].runs) > 0
    assert all(np.isnan(a.noise) for a in views.values())  # the seed store has no runs yet


def test_view_noise_and_store_or_reason(tmp_path) -> None:
    spread = pd.DataFrame({"grid recipe": True, "S": 0.0, "N_target": [1.0, 1.0], "D": [1, 2],
                           "runs": 3, "SD": [0.1, 0.2]})
    runs = _frame_runs(pd.DataFrame({"family": "t5", "sparsity": 0.0, "N": [1.0],
                                              "D": [1], "loss": [1.0]}), "t5")
    assert view_noise(spread, runs) == pytest.approx((0.1, 2))  # the runs' own point, 2 df
    other = _frame_runs(pd.DataFrame({"family": "t5", "sparsity": 0.5, "N": [1.0],
                                               "D": [9], "loss": [1.0]}), "t5")
    assert view_noise(spread, other) == pytest.approx((0.2, 2))  # the longest slice
    assert store_or_reason("t5_store", str(tmp_path), "t5", False) == (str(tmp_path), "")
    assert store_or_reason("t5_store", "", "t5", False)[0] is None
    with pytest.raises(ValueError, match="t5_store must be an existing results store"):
        store_or_reason("t5_store", str(tmp_path / "typo"), "t5", False)


NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_findings.ipynb"


def notebook_code() -> list[str]:
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    return [c.source for c in cells if c.cell_type == "code"]


def test_notebook_is_thin_with_folded_code() -> None:
    raw = json.loads(NOTEBOOK.read_text())
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code[0]["metadata"]["tags"] == ["parameters"]
    assert all("hide-input" in c["metadata"].get("tags", []) for c in code[1:])


@pytest.mark.parametrize(("parameter", "value", "message"), [
    ("bootstrap", -1, "bootstrap must be"),
    ("smoke", "yes", "smoke must be"),
    ("t5_store", "/no/such/store", "t5_store must be"),
    ("min_tokens_per_param", "paperish", "min_tokens_per_param must be"),
    ("t5_seeds", ["/no/such/store"], "t5_seeds must be"),
])
def test_notebook_validation_names_a_bad_parameter(parameter, value, message, monkeypatch) -> None:
    monkeypatch.chdir(NOTEBOOK.parent)
    parameters, validation = notebook_code()[:2]
    namespace: dict = {}
    exec(parameters, namespace)
    exec(validation, dict(namespace))  # the defaults pass
    namespace[parameter] = value
    with pytest.raises(ValueError, match=f"^{message}"):
        exec(validation, namespace)


def test_the_book_runs_the_findings_chapter_after_the_chapters_it_reads() -> None:
    spec = importlib.util.spec_from_file_location(
        "build_book", NOTEBOOK.parents[1] / "scripts" / "build_book.py")
    build_book = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_book)
    # chapters 2 and 3 train the smoke stores it reads; chapter 4 makes the fits it reuses
    after = set(build_book.prerequisites(NOTEBOOK))
    assert {"02_vit_sweep", "03_t5_sweep", "04_fit_own_law"} <= after
    toc = (NOTEBOOK.parents[1] / "book" / "_toc.yml").read_text()
    assert toc.index("00_findings") < toc.index("book/methods")  # first after the intro


def test_the_chapter_shows_each_claim_with_its_table_first() -> None:
    runs = _frame_runs(paper_runs(), "t5")
    views = {"t5": family_views(runs, floor=4000.0, bootstrap=0)}
    tables = {f"T5, {label}": verdicts(a) for label, a in views["t5"].items()}
    chapter = analysis.chapter.FindingsChapter({"t5": runs}, {}, views, tables)
    for claim in analysis.CLAIMS:
        items = analysis.chapter.claim_outputs(chapter, claim)
        assert list(items[0].data.index) == list(tables)  # one row per view
    assert len(analysis.chapter.claim_outputs(chapter, 1)) == 2  # the table, one gap figure
    assert len(analysis.chapter.claim_outputs(chapter, 2)) == 1  # read off claim 1's figure
    noise = analysis.chapter.view_noise_table(chapter)
    assert list(noise["runs"]) == [len(runs), len(views["t5"]["D/N >= 4000"].runs)]
    # one seed per point: no seed noise, so no degrees of freedom either (not "infinite")
    assert noise["seed SD (nats)"].isna().all() and noise["its degrees of freedom"].isna().all()
    with pytest.raises(ValueError, match="claim must be one of"):
        analysis.chapter.claim_outputs(chapter, 11)


def test_a_family_without_a_store_is_not_testable_with_its_reason() -> None:
    chapter = analysis.chapter.findings_chapter(
        {"t5": None, "vit": None}, {"t5": "t5 skipped", "vit": "no vit store"},
        floors={"t5": 193.0, "vit": 5.3}, seeds={}, heldout={}, bootstrap=0)
    assert list(chapter.tables) == ["T5, all runs", "T5, D/N >= 193", "ViT, all runs",
                                    "ViT, D/N >= 5.3"]
    vit = chapter.tables["ViT, all runs"]
    assert list(vit["claim"]) == list(range(1, 11))  # the paper's 8 claims and its 2 extensions
    assert set(vit["verdict"]) == {"not testable"} and set(vit["evidence"]) == {"no vit store"}
    assert chapter.missing == {"t5": "t5 skipped", "vit": "no vit store"}


def test_claim_7_says_why_the_contour_ratio_is_undetermined() -> None:
    # Without a sparsity effect S_opt is 0 everywhere: no contour, and no rise.
    [row] = findings(paper_runs("flat"), bootstrap=BOOTSTRAP, claims=(7,)).itertuples()
    assert row.verdict == FAILS and "ratio undetermined: S_opt is clipped" in row.evidence
    assert "nan" not in row.evidence


def test_verdict_columns_name_the_protocol_of_their_runs() -> None:
    from sparsekit.analysis.chapter import _protocol

    def runs(rules):
        table = pd.DataFrame({"config.sparsity.embed_rule": rules, "loss": 1.0})
        return analysis.Runs("t5", "tokens", "test", table)

    assert _protocol(runs([False, False])) == ", dense-embeddings"
    assert _protocol(runs([True])) == ", paper"
    assert _protocol(runs([True, False])) == ", mixed protocols"
    assert _protocol(None) == ""
