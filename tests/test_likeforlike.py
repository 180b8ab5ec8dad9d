"""Like for like on synthetic designed sets whose answers are known, and the rules' cases."""

import math

import numpy as np
import pandas as pd
import pytest

from sparsekit.analysis import likeforlike as lfl
from sparsekit.analysis.fits import PAPER
from sparsekit.analysis.rules import (
    FAILS,
    HOLDS,
    PARTLY,
    UNDETERMINED,
    UNTESTABLE,
    Interval,
    absence,
    combine,
    direction,
    magnitude,
)

SLOPE = -0.08  # dL/dln N of the synthetic dense twins
CELLS = [(16384, 13824, 2**22), (16384, 13824, 2**23), (32768, 32256, 2**23),
         (32768, 32256, 2**24)]  # (N_target, dense twin N, D): like-t5's design


def synthetic(gain_paper: float, gain_dense_emb: float, sd: float, *, d_trend: float = 0.0,
              seeds: int = 3, seed: int = 0) -> pd.DataFrame:
    """A T5 designed set: loss = 3 + SLOPE ln N - 0.02 log2 D + the sparse gain + noise. A
    gain factor g gives the loss a sparse model at S would have if it were a dense one
    m(S)^g times larger (g = 1: the paper's law exactly). `d_trend` x the gain per doubling
    of D above the smallest D: a gap that changes with D."""
    rng = np.random.default_rng(seed)
    rows = []
    for (nt, n, d), s, protocol in [(c, s, p) for c in CELLS for s in (0.0, 0.5, 0.75, 0.875)
                                    for p in lfl.PROTOCOL_NAMES]:
        if s == 0 and protocol != "paper":
            continue  # a dense twin is stored once
        g = gain_paper if protocol == "paper" else gain_dense_emb
        gain = SLOPE * g * math.log(PAPER["t5"].dense_equivalent(np.array([s]))[0]) if s else 0.0
        gain *= 1 + d_trend * math.log2(d / 2**22)
        for k in range(seeds):
            loss = 3 + SLOPE * math.log(n) - 0.02 * math.log2(d) + gain + sd * rng.standard_normal()
            rows.append({"family": "t5", "protocol": protocol, "sparsity": s, "N_target": nt,
                         "N": n, "D": d, "seed": k, "loss": loss})
    return pd.DataFrame(rows)


def verdicts(frame: pd.DataFrame) -> dict[tuple[int, str], str]:
    table = lfl.like_for_like(frame)
    return {(r.claim, r.protocol): r.verdict for r in table.itertuples()}


def test_the_papers_law_holds_under_both_protocols():
    v = verdicts(synthetic(1.0, 1.0, sd=0.001))
    for protocol in lfl.PROTOCOL_NAMES:
        assert [v[c, protocol] for c in (1, 2, 4, 8)] == [HOLDS] * 4


def test_a_benefit_that_lives_only_in_the_embeddings_vanishes_under_the_papers_protocol():
    frame = synthetic(0.0, 1.0, sd=0.001)
    v = verdicts(frame)
    assert v[1, "dense-embeddings"] == HOLDS and v[8, "dense-embeddings"] == HOLDS
    assert v[1, "paper"] == FAILS and v[8, "paper"] == FAILS
    gaps = lfl.gap_table(frame)
    paper = gaps[gaps["protocol"] == "paper"]
    assert (paper["low"] < 0).all() and (paper["high"] > 0).all()  # no gap at any cell


@pytest.mark.parametrize("seed", range(4))
def test_noise_too_large_to_decide_is_undetermined_never_a_verdict(seed):
    v = verdicts(synthetic(0.0, 0.0, sd=0.3, seed=seed))  # a flat law, seed SD 0.3 nats
    for protocol in lfl.PROTOCOL_NAMES:
        assert v[1, protocol] == UNDETERMINED and v[8, protocol] == UNDETERMINED


def test_a_gap_that_shrinks_with_data_fails_claim_4():
    v = verdicts(synthetic(1.0, 1.0, sd=0.001, d_trend=-0.5))
    assert v[4, "paper"] == FAILS
    # the gain now differs between cells (none at the largest D), so the mean step's paired
    # interval (4 cells, 3 df: the registry's claim 1) is too wide to decide
    assert v[1, "paper"] == UNDETERMINED


def test_gap_table_hand_check():
    frame = synthetic(1.0, 1.0, sd=0.0, seeds=2)
    frame.loc[frame["seed"] == 1, "loss"] += 0.01  # seed SD exactly 0.01 / sqrt 2 everywhere
    sd, df = lfl.seed_noise(frame)
    assert sd == pytest.approx(0.01 / math.sqrt(2)) and df == 4 * 7  # 28 points, 1 df each
    row = lfl.gap_table(frame).iloc[0]
    m = PAPER["t5"].dense_equivalent(np.array([row["S"]]))[0]
    assert row["gap"] == pytest.approx(SLOPE * math.log(m))
    half = 2.0484 * sd * math.sqrt(1 / 2 + 1 / 2)  # t_{28}(0.975) = 2.048
    assert row["high"] - row["gap"] == pytest.approx(half, rel=1e-3)
    assert lfl.dense_slope(frame) == pytest.approx(SLOPE)


def test_designed_frame_reads_a_store_table():
    table = pd.DataFrame({
        "status": ["ok", "ok", "failed"], "family": "t5", "sparsity": [0.0, 0.5, 0.5],
        "config.sparsity.embed_rule": [True, False, True], "N_target": 16384,
        "N": [13824, 13824, None], "D": 2**22, "config.seed": [0, 1, 2],
        "loss": [1.5, 1.4, np.nan]})
    frame = lfl.designed_frame(table)
    assert list(frame.columns) == list(lfl.COLUMNS) and len(frame) == 2
    assert list(frame["protocol"]) == ["paper", "dense-embeddings"]


@pytest.mark.parametrize("interval, expected", [
    (Interval(-0.05, -0.08, -0.02, 10), HOLDS),        # below 0, reaches past -R
    (Interval(-0.004, -0.008, -0.001, 10), FAILS),     # real but smaller than R = 0.01
    (Interval(0.02, 0.01, 0.03, 10), FAILS),           # reversed
    (Interval(-0.01, -0.03, 0.01, 10), UNDETERMINED),  # holds 0 and -R
    (Interval(math.nan, math.nan, math.nan, 0), UNTESTABLE),
])
def test_direction_rule(interval, expected):
    assert direction(interval, 0.01, -1) == expected


def test_an_unknown_threshold_is_not_testable_and_a_bad_one_an_error():
    iv = Interval(-0.05, -0.08, -0.02, 10)
    assert direction(iv, math.nan) == UNTESTABLE and absence(iv, math.nan) == UNTESTABLE
    with pytest.raises(ValueError, match="relevant must be > 0"):
        direction(iv, -0.01)


def test_absence_and_magnitude_rules():
    assert absence(Interval(0.0, -0.005, 0.008, 5), 0.01) == HOLDS
    assert absence(Interval(0.03, 0.02, 0.04, 5), 0.01) == FAILS
    assert absence(Interval(0.01, -0.005, 0.02, 5), 0.01) == UNDETERMINED
    assert magnitude(Interval(2.0, 1.5, 2.5, 5), 2.2, (1, 4.4)) == HOLDS
    assert magnitude(Interval(1.2, 1.1, 1.3, 5), 2.2, (1, 4.4)) == FAILS
    assert magnitude(Interval(2.0, 0.9, 5.0, 5), 2.2, (1, 4.4)) == UNDETERMINED


def test_t_interval_and_combine():
    iv = Interval.t(1.0, 0.5, 2)
    assert iv.high - 1.0 == pytest.approx(4.3027 * 0.5, rel=1e-4)  # t_2(0.975)
    assert not Interval.t(1.0, math.nan, 2).known and not Interval.t(1.0, 0.1, 0).known
    assert combine([HOLDS, HOLDS]) == HOLDS and combine([FAILS, FAILS]) == FAILS
    assert combine([HOLDS, FAILS]) == PARTLY and combine([HOLDS, UNDETERMINED]) == PARTLY
    assert combine([FAILS, UNDETERMINED]) == UNDETERMINED
    assert combine([UNTESTABLE]) == UNTESTABLE


# --- the chapter's tables, figure and headline -------------------------------------------------


def test_benefit_table_and_headline_give_each_protocols_gap_and_their_difference():
    from sparsekit.analysis import likeforlike_views as views

    table = views.benefit_table(synthetic(0.0, 1.0, sd=0.001))
    assert list(table["S"]) == [0.5, 0.75, 0.875] and (table["cells"] == 4).all()
    paper = table["gap, paper"].str.split(" ").str[0].astype(float)
    dense_emb = table["gap, dense-embeddings"].str.split(" ").str[0].astype(float)
    difference = table["paper minus dense-embeddings"].str.split(" ").str[0].astype(float)
    assert np.allclose(paper, 0.0, atol=0.002)  # no benefit under the paper's protocol
    m = PAPER["t5"].dense_equivalent(np.array([0.5, 0.75, 0.875]))
    assert np.allclose(dense_emb, SLOPE * np.log(m), atol=0.002)
    assert np.allclose(difference, paper - dense_emb, atol=1e-3)  # printed to 3 digits
    sentence = views.headline(synthetic(0.0, 1.0, sd=0.001))
    assert sentence.startswith("T5, at S = 0.5 / 0.75 / 0.875 (over 4/4/4 cells):")
    assert "dense embeddings" in sentence


def test_benefit_table_compares_the_protocols_on_the_same_cells():
    from sparsekit.analysis import likeforlike_views as views

    frame = synthetic(0.0, 1.0, sd=0.001)
    partial = frame[~((frame["protocol"] == "dense-embeddings") & (frame["N_target"] == 32768))]
    table = views.benefit_table(partial)
    assert (table["cells"] == 2).all()  # the 32K cells lack the dense-embedding runs
    assert table["gap, paper"].str.contains(r"\[").all()


def test_embedding_table_reads_the_ratios_to_the_dense_twin():
    from sparsekit.analysis import likeforlike_views as views

    frame = synthetic(1.0, 1.0, sd=0.001).assign(width=16, **{"S measured": 0.5})
    frame["embed_nonzero"] = np.where((frame["protocol"] == "paper") | (frame["sparsity"] == 0),
                                      1000, 2000)
    table = views.embedding_table(frame)
    sparse = table[table["S"] > 0]
    assert (sparse.loc[sparse["protocol"] == "paper", "embedding non-zeros / twin's"] == 1).all()
    assert (sparse.loc[sparse["protocol"] == "dense-embeddings",
                       "embedding non-zeros / twin's"] == 2).all()
    assert (table["N / twin's"] == 1).all()


def test_recipe_table_sets_each_rate_beside_the_designed_sets_own():
    from sparsekit.analysis import likeforlike_views as views

    designed = synthetic(1.0, 1.0, sd=0.001).assign(optimizer="adamw", lr=0.01)
    point = designed[(designed["N_target"] == 16384) & (designed["D"] == 2**22)
                     & (designed["protocol"] == "paper") & designed["sparsity"].isin([0, 0.875])
                     & (designed["seed"] < 2)]
    recipe = pd.concat([point.assign(lr=0.02, loss=point["loss"] + 0.01),
                        point.assign(lr=0.005, loss=point["loss"] + 0.05 * point["sparsity"])])
    table = views.recipe_table(recipe, designed)
    assert list(table["peak LR at width 48"]) == [0.005, 0.01, 0.02]
    gaps = table["sparse - dense"].str.split(" ").str[0].astype(float).to_numpy()
    assert gaps[0] == pytest.approx(gaps[1] + 0.05 * 0.875, abs=1e-3)  # the 5e-3 runs' penalty
    assert gaps[2] == pytest.approx(gaps[1], abs=1e-3) and (table["seeds"] == 2).all()


def test_gap_figure_has_a_line_per_protocol_and_cell():
    from sparsekit.analysis import likeforlike_views as views

    fig = views.gap_figure(synthetic(1.0, 1.0, sd=0.001))
    assert len(fig.data) == 2 * len(CELLS)
    assert {t.line.dash for t in fig.data} == {"solid", "dot"}
