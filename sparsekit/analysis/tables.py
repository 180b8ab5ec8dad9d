"""Tables as the book shows them: numbers to a few significant digits without e-notation, and
tables too wide for the page's column split into parts (or transposed) that fit it.

`number(x)` is the one number format of the book's tables: 2.067, 0.005506, 16,384, 1.049M,
6.24 × 10²⁹. `styled(table)` applies it to every numeric cell, hides a plain 0, 1, 2, ...
row index, keeps numbers on one line, and splits a table wider than the book's column
(`COLUMN_PX` at a 1280 px window) into parts that repeat its key columns (`KEY_COLUMNS`), or
transposes a wide table of a few rows. The page's CSS (book/_static/layout.css) sets the
table font and padding this estimate assumes, and lets headers and long text wrap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from numbers import Number
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

# The book's main column at a 1280 px window is 676 px (sphinx-book-theme); a table in a
# folded block or beside the scrollbar gets a little less.
COLUMN_PX = 640
CHAR_PX = 7.2  # mean width of a character at the tables' 0.8rem (12.8 px) system-ui font
CELL_PAD_PX = 12  # left + right padding of a cell (layout.css) and its border
TEXT_WRAP_CHARS = 24  # a text cell wider than this wraps at its spaces (layout.css)
HEADER_LINES = 4  # a header may wrap onto this many lines
FEW_ROWS = 3  # a too-wide table of at most this many rows is transposed, not split
# Columns that name what a row is: a split table repeats them in every part.
KEY_COLUMNS = ("family", "key", "recipe", "fit", "law", "claim", "protocol", "store",
               "pattern", "S", "N_target", "N target", "width", "peak LR", "seed", "D")

# Column names of the tables' builders and their header in the book: the unit where the
# name carries none (losses are final validation losses: nats per target byte-token for T5,
# per image for ViT), and the store's N_target in words, so that the header wraps.
HEADERS = {"loss": "loss (nats)", "loss SE": "loss SE (nats)", "seed SD": "seed SD (nats)",
           "loss - floor": "loss - floor (nats)", "N_target": "N target"}

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"))  # as the figures' `figures.count`


def _significant(x: float, digits: int) -> str:
    """x (0.001 <= |x| < 1e6) to `digits` significant digits in fixed notation, trailing
    zeros dropped, thousands separated: 2.0671 -> '2.067', 12345.6 -> '12,346'."""
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
    text = f"{x:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def number(x: Any, digits: int = 4) -> str:
    """A number as the book's tables show it: '' for a missing one; fixed notation with
    `digits` significant digits from 0.001 to a million (0.005506, 2.067, 49,377); a whole
    number below a million in full, with thousands separators from 10,000 (3072, 16,384);
    from a million to 10^15 with an SI-style suffix (1.049M, 25.17G, as the figures' axes);
    beyond either end as a power of ten (1.318 × 10⁻¹⁸, 6.239 × 10²⁹). Anything else
    (text, a boolean) as str()."""
    if x is None or x is pd.NA or isinstance(x, bool | np.bool_):
        return "" if x is None or x is pd.NA else str(x)
    if not isinstance(x, Number):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return "" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    if x == 0:
        return "0"
    size = abs(x)
    if 1e-3 <= size < 1e6:
        text = f"{round(x):,}" if x == round(x) else _significant(x, digits)
        return text.replace(",", "") if size < 1e4 else text  # 3072, but 16,384
    if 1e6 <= size < 1e15:
        factor, suffix = next((f, s) for f, s in _SUFFIXES if size >= f)
        return _significant(x / factor, digits) + suffix
    # e-format rounds (carrying into the next power) and reaches subnormals, where
    # x / 10**exponent would divide by a power that underflows to 0
    mantissa, exponent = f"{x:.{max(digits - 1, 0)}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def _label(column: Any) -> str:
    return " / ".join(map(str, column)) if isinstance(column, tuple) else str(column)


def _chars(texts: Sequence[str], *, wraps: bool, lines: int = 1) -> int:
    """Characters a column of `texts` needs: the longest, or (text that wraps at spaces) the
    longest word and at most TEXT_WRAP_CHARS, or `lines` lines of it."""
    longest = max((len(t) for t in texts), default=0)
    if not wraps:
        return longest
    words = max((len(w) for t in texts for w in t.split()), default=0)
    return max(words, min(longest, TEXT_WRAP_CHARS, math.ceil(longest / lines)))


def column_px(values: Sequence[Any], header: Any, digits: int = 4) -> float:
    """Estimated width (px) of a column of `values` under `header` as `styled` shows it:
    numbers stay on one line, text and headers wrap at spaces."""
    texts = [number(v, digits) for v in values]
    numeric = all(isinstance(v, Number) or v is None or v is pd.NA for v in values)
    header = _chars([_label(header)], wraps=True, lines=HEADER_LINES)
    chars = max(_chars(texts, wraps=not numeric), header)
    return chars * CHAR_PX + CELL_PAD_PX


def table_px(table: pd.DataFrame, digits: int = 4) -> float:
    """Estimated width (px) of `table` as `styled` shows it, its index included unless it
    is a plain 0, 1, 2, ... index (hidden)."""
    width = sum(column_px(table[c].tolist(), c, digits) for c in table.columns)
    if not _plain_index(table):
        for level in range(table.index.nlevels):
            width += column_px(table.index.get_level_values(level).tolist(),
                               table.index.names[level] or "", digits)
    return width


def _plain_index(table: pd.DataFrame) -> bool:
    """Whether the row index says nothing: unnamed integers (0, 1, 2, ..., or those of a
    sorted or filtered table)."""
    index = table.index
    return (index.nlevels == 1 and index.name is None
            and pd.api.types.is_integer_dtype(index.dtype))


def _style(table: pd.DataFrame, digits: int) -> Styler:
    """The Styler of one part: numbers formatted by `number`, numeric columns on one line,
    a plain index hidden."""
    styler = table.style.format(lambda v: number(v, digits), na_rep="")
    styler = styler.format_index(lambda v: number(v, digits), axis=0)
    styler = styler.format_index(lambda v: number(v, digits), axis=1)
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c])]
    if numeric:
        styler = styler.set_table_styles(
            {c: [{"selector": "td", "props": "white-space: nowrap; text-align: right"}]
             for c in numeric}, overwrite=False)
    if _plain_index(table):
        styler = styler.hide(axis="index")
    return styler


def _leading_keys(table: pd.DataFrame) -> list[Any]:
    """The table's leading columns named in KEY_COLUMNS."""
    keys = []
    for column in table.columns:
        if column not in KEY_COLUMNS:
            break
        keys.append(column)
    return keys


def split_columns(table: pd.DataFrame, width: float = COLUMN_PX, digits: int = 4,
                  keys: Sequence[Any] | None = None) -> list[pd.DataFrame]:
    """`table` as parts no wider than `width` px (estimated by `table_px`): each part holds
    the key columns (default: its leading columns named in KEY_COLUMNS) and as many of the
    others, in order, as fit; one part when the whole table fits."""
    if table_px(table, digits) <= width:
        return [table]
    keys = _leading_keys(table) if keys is None else list(keys)
    rest = [c for c in table.columns if c not in keys]
    base = table_px(table[keys], digits) if keys else table_px(table.iloc[:, :0], digits)
    parts: list[list[Any]] = [[]]
    used = base
    for column in rest:
        px = column_px(table[column].tolist(), column, digits)
        if parts[-1] and used + px > width:
            parts.append([])
            used = base
        parts[-1].append(column)
        used += px
    return [table[[*keys, *part]] for part in parts]


class Tables:
    """Several parts of one table, shown one under the other (in Jupyter as in the book)."""

    def __init__(self, parts: Sequence[Styler], note: str = "") -> None:
        self.parts = list(parts)
        self.note = note

    def to_html(self) -> str:
        note = f'<p class="table-note">{escape(self.note)}</p>\n' if self.note else ""
        return note + "\n".join(p.to_html() for p in self.parts)

    def _repr_html_(self) -> str:
        return self.to_html()


def styled(table: pd.DataFrame, digits: int = 4, *, width: float = COLUMN_PX,
           keys: Sequence[Any] | None = None) -> Styler | Tables:
    """`table` for display in the book: every number by `number` (`digits` significant
    digits), blanks for missing values, all rows shown, a plain 0, 1, 2, ... index hidden.

    A table wider than `width` px (the book's column, estimated by `table_px`) is
    transposed when it has at most FEW_ROWS rows, and otherwise split into parts that each
    repeat its key columns (`split_columns`), returned as `Tables`; a table that fits is one
    pandas Styler. Columns named in HEADERS are shown under their header there.
    """
    table = table.rename(columns=lambda c: HEADERS.get(c, c) if isinstance(c, str) else c)
    if table_px(table, digits) <= width:
        return _style(table, digits)
    if len(table) <= FEW_ROWS and len(table.columns) > len(table):
        flipped = table
        if _plain_index(table):  # its key columns (or first text column) name the rows
            keys = _leading_keys(table)
            first = table.columns[0]
            if not keys and not pd.api.types.is_numeric_dtype(table[first]):
                keys = [first]
            flipped = (table.set_index(keys) if keys
                       else table.set_axis([str(i + 1) for i in range(len(table))]))
        flipped = flipped.T.astype(object)
        if table_px(flipped, digits) <= width:
            return _style(flipped, digits)
    parts = split_columns(table, width, digits, keys)
    if len(parts) == 1:
        return _style(parts[0], digits)
    repeated = [c for c in parts[0].columns if all(c in p.columns for p in parts[1:])]
    note = (f"Too wide for the page: in {len(parts)} parts"
            + (f", each with {', '.join(map(_label, repeated))}." if repeated else "."))
    return Tables([_style(p, digits) for p in parts], note=note)
