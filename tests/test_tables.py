"""The book's tables (`analysis.tables`): one number format without e-notation, and tables
too wide for the page's column split or transposed. The browser test in test_book.py
measures the built pages; these check the helpers on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsekit.analysis import tables
from sparsekit.analysis.tables import COLUMN_PX, number, split_columns, styled, table_px


@pytest.mark.parametrize(("x", "text"), [
    (0, "0"), (2.0671, "2.067"), (0.005506, "0.005506"), (0.5, "0.5"), (-0.9384, "-0.9384"),
    (3072, "3072"), (16384, "16,384"), (393216.0, "393,216"), (49377.3, "49,377"),
    (1048576, "1.049M"), (25_165_824, "25.17M"), (1.6e10, "16G"),
    (1.318e-18, "1.318 × 10⁻¹⁸"), (6.239e29, "6.239 × 10²⁹"),
    (9.99996e-5, "1 × 10⁻⁴"), (-2.5e-7, "-2.5 × 10⁻⁷"), (1e15, "1 × 10¹⁵"),
    (5e-324, "4.941 × 10⁻³²⁴"), (1.5e-320, "1.5 × 10⁻³²⁰"),  # subnormals (a fit's zero)
    (np.float64(1e19), "1 × 10¹⁹"), (np.int64(8192), "8192"),
    (float("nan"), ""), (None, ""), (pd.NA, ""), (True, "True"), ("2:4", "2:4"),
])
def test_number_reads_without_e_notation(x, text) -> None:
    assert number(x) == text
    assert "e+" not in number(x) and "e-" not in number(x)


def test_number_digits() -> None:
    assert number(2.0671, 3) == "2.07" and number(1.2345e-7, 2) == "1.2 × 10⁻⁷"


def test_styled_formats_every_number_and_hides_a_plain_index() -> None:
    table = pd.DataFrame({"S": [0.5, 0.875], "N": [16384, 1048576], "loss": [2.06712, np.nan],
                          "objective": [1.318e-18, 4.938e4], "status": ["ok", "ok"]})
    html = styled(table).to_html()
    for text in ("0.875", "16,384", "1.049M", "2.067", "1.318 × 10⁻¹⁸", "49,380"):
        assert text in html, text
    assert "e-18" not in html and "e+04" not in html and "nan" not in html
    assert "row_heading" not in html  # the 0, 1 index is not shown
    assert "white-space: nowrap" in html  # numbers stay on one line
    assert "loss (nats)" in html  # a unit in the header (tables.HEADERS)


def test_a_table_that_fits_is_one_styler() -> None:
    table = pd.DataFrame({"S": [0.0, 0.5], "loss": [2.1, 2.0]})
    assert table_px(table) < COLUMN_PX
    assert isinstance(styled(table), pd.io.formats.style.Styler)


def test_a_wide_table_is_split_repeating_its_key_columns() -> None:
    # chapter 2's validation curves: one column per checkpoint, far wider than the page
    keys = {"S": [0.0, 0.5, 0.5, 0.75, 0.75], "N_target": [3072, 3072, 6144, 3072, 6144],
            "width": [16, 16, 32, 16, 32]}
    curves = {f"{k * 32_800:,} images": [3.2 - 0.01 * k] * 5 for k in range(1, 13)}
    table = pd.DataFrame({**keys, **curves})
    assert table_px(table) > COLUMN_PX
    parts = split_columns(table)
    assert len(parts) > 1 and all(table_px(p) <= COLUMN_PX for p in parts)
    assert all(list(p.columns[:3]) == list(keys) for p in parts)
    assert [c for p in parts for c in p.columns[3:]] == list(curves)  # each once, in order
    shown = styled(table)
    assert isinstance(shown, tables.Tables) and len(shown.parts) == len(parts)
    html = shown._repr_html_()
    assert html.count("<table") == len(parts) and "each with S, N target, width" in html


def test_a_wide_table_of_few_rows_is_transposed() -> None:
    # chapter 4's coverage table: one row per family, many columns
    columns = {f"a long column name {i}": [float(i), 2.0 * i] for i in range(12)}
    table = pd.DataFrame({"family": ["ViT", "T5"], **columns})
    shown = styled(table)
    assert not isinstance(shown, tables.Tables)
    assert list(shown.data.columns) == ["ViT", "T5"] and len(shown.data) == 12
    # rows named by key columns keep them as the transposed table's column headers
    keyed = pd.DataFrame({"S": [0.0, 0.5], "D": [1e6, 2e6], **columns})
    assert list(styled(keyed).data.columns) == [(0.0, 1e6), (0.5, 2e6)]
