"""The regime helpers: D/N per run, the selection by a D/N floor, the table beside the paper's."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparsekit.analysis.regime import (
    PAPER_REGIME,
    paper_minimum,
    regime_table,
    resolve_minimum,
    tokens_per_param,
    within,
)
from sparsekit.analysis.runs import runs_from_table
from sparsekit.fitting import load_paper_t5

T5_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "paper-data" / "t5-data.csv"


def toy_runs():
    """Three T5 runs with D/N = 10, 200 and 4,000 tokens per non-zero parameter."""
    frame = pd.DataFrame({
        "family": "t5", "unit": "tokens", "status": "ok",
        "sparsity": [0.0, 0.5, 0.75], "N": [1000.0, 2000.0, 500.0],
        "D": [1e4, 4e5, 2e6], "loss": [3.0, 2.5, 2.0],
    })
    return runs_from_table(frame, source="toy")


def test_tokens_per_param_and_within():
    runs = toy_runs()
    np.testing.assert_array_equal(tokens_per_param(runs), [10.0, 200.0, 4000.0])
    assert len(within(runs, None)) == 3
    assert list(within(runs, paper_minimum("t5")).S) == [0.5, 0.75]  # 193 <= 200, 4000
    assert len(within(runs, 5000.0)) == 0


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_within_names_the_parameter(bad):
    with pytest.raises(ValueError, match="min_tokens_per_param must be a finite D/N >= 0"):
        within(toy_runs(), bad)


def test_paper_minimum_unknown_family():
    with pytest.raises(ValueError, match="family must be one of"):
        paper_minimum("gpt")


def test_regime_table_counts_runs_in_the_paper_range():
    table = regime_table({"t5": toy_runs()})
    row = table.loc["T5"]
    assert (row["D/N min"], row["D/N median"], row["D/N max"]) == (10.0, 200.0, 4000.0)
    assert row["runs in the paper's range"] == 2
    assert row["paper D/N min"] == PAPER_REGIME["t5"][0]


def test_paper_t5_regime_matches_its_released_data():
    if not T5_CSV.exists():
        pytest.skip(f"paper data not found at {T5_CSV} (shared checkout absent)")
    _, N, D, _ = load_paper_t5(T5_CSV)
    ratio = D / N
    low, mid, high = PAPER_REGIME["t5"]
    assert ratio.min() == pytest.approx(low, abs=0.5)
    assert np.median(ratio) == pytest.approx(mid, abs=0.5)
    assert ratio.max() == pytest.approx(high, abs=0.5)


def test_resolve_minimum():
    assert resolve_minimum("paper", "t5") == PAPER_REGIME["t5"][0]
    assert resolve_minimum("paper", "vit") == PAPER_REGIME["vit"][0]
    assert resolve_minimum(0, "t5") == 0.0 and resolve_minimum(100.5, "vit") == 100.5
    for bad in ("papers", -1, True, np.nan, None):
        with pytest.raises(ValueError, match="min_tokens_per_param must be 'paper'"):
            resolve_minimum(bad, "t5")
