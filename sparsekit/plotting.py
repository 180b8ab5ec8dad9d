"""Figure conventions for the book, and the plotly renderer that makes figures reach it.

Only notebooks import this module (`import sparsekit` does not), so it loads plotly at
module level.

Rendering: plotly 7 in a kernel emits only `application/vnd.plotly.v1+json`, which the
book's notebook renderer (myst-nb) drops. `use_book_renderer()` adds a `text/html` copy of
every figure without plotly.js in it; the book's Sphinx extension (book/_ext) serves one
local plotly.min.js to the pages that have figures. The JSON mime type stays in the bundle
so JupyterLab and VS Code still show figures interactively.

Conventions: one colour per sparsity level across all chapters, axes titled with their
units, log axes with powers-of-ten ticks, and hover text that names the run's config.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.base_renderers import MimetypeRenderer
from plotly.subplots import make_subplots

BOOK_RENDERER = "sparsekit_book"

# Fixed categorical colours, so a sparsity level looks the same in every chapter; dense is
# near-black.
SPARSITY_COLORS: dict[float, str] = {
    0.0: "#303030",
    0.5: "#1f77b4",
    0.75: "#2ca02c",
    0.875: "#d62728",
    0.9375: "#9467bd",
}
FALLBACK_COLOR = "#8c564b"  # any sparsity not in the paper's grid

# Axis titles with units; quantities follow the paper's symbols.
AXIS_TITLES: dict[str, str] = {
    "S": "sparsity S (fraction of zero weights)",
    "N": "non-zero parameters N",
    "C": "training compute C (FLOPs)",
    "dense_equivalent": "equivalent dense size m(S) (× N)",
}


# The book's page width: a figure is about PAGE_WIDTH px wide in a 1280 px window, of which
# the margins and a legend or colour bar take PLOT_INSET px. Titles are wrapped to fit it, at
# about CHAR_WIDTH em per character (Open Sans or its fallback Verdana, a wide font).
PAGE_WIDTH = 700
PLOT_INSET = 200
CHAR_WIDTH = 0.6
PANEL_TITLE_SIZE = 13  # px; plotly's default of 16 ran neighbouring titles together
TITLE_SIZE = 17  # px, the figure's title (the template's)


def wrap_title(text: str, chars: int) -> str:
    """`text` broken at spaces (or hyphens) into lines of at most `chars` characters,
    joined by <br> (plotly's line break)."""
    return "<br>".join(textwrap.wrap(text, max(chars, 8))) or text


def panel_chars(cols: int, width: int = PAGE_WIDTH) -> int:
    """How many characters a title of one of `cols` panels side by side may have per line
    at a figure `width` px wide."""
    return int((width - PLOT_INSET) / cols / (CHAR_WIDTH * PANEL_TITLE_SIZE))


def title_chars(width: int = PAGE_WIDTH) -> int:
    """How many characters a figure's title may have per line at a figure `width` px wide
    (it starts 5% in from the left edge)."""
    return int(0.9 * width / (CHAR_WIDTH * TITLE_SIZE))


class BookHtmlRenderer(MimetypeRenderer):
    """Emit a figure as `text/html` that expects `Plotly` to be loaded by the page."""

    def __init__(self, default_height: int = 450) -> None:
        self.default_height = default_height

    def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, str]:
        height = fig_dict.get("layout", {}).get("height") or self.default_height
        html = pio.to_html(
            fig_dict,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=f"{height}px",  # a % height collapses inside the book's layout
            config={"responsive": True},  # redrawn at the column's width when it changes
            validate=False,
        )
        return {"text/html": html}


def use_book_renderer() -> None:
    """Make every figure shown in this kernel render in the book and in Jupyter."""
    pio.renderers[BOOK_RENDERER] = BookHtmlRenderer()
    pio.renderers.default = f"plotly_mimetype+{BOOK_RENDERER}"


def sparsity_color(S: float) -> str:
    """The book-wide colour of sparsity level S (a fallback for levels off the grid)."""
    for level, color in SPARSITY_COLORS.items():
        if abs(S - level) < 1e-9:
            return color
    return FALLBACK_COLOR


def sparsity_label(S: float) -> str:
    """'dense' or the sparsity as a percentage, e.g. '87.5% sparse'."""
    return "dense" if S == 0 else f"{100 * S:g}% sparse"


def figure(
    title: str,
    x: str,
    y: str,
    *,
    log_x: bool = False,
    log_y: bool = False,
    height: int = 450,
    subplot_titles: Sequence[str] = (),
) -> go.Figure:
    """An empty figure with the book's layout; `x`/`y` are AXIS_TITLES keys or free text.

    With `subplot_titles`, one row of that many panels with the same axes: the y title is
    written once at the left and the x title once under the middle panel, where repeating
    them would overlap. Panel titles are wrapped to their panel's width at the book's page
    width (`panel_chars`), in a smaller font, and the top margin grows with their lines, so
    neither they nor the figure's title run into each other.
    """
    cols = len(subplot_titles)
    panel_titles = [wrap_title(t, panel_chars(cols)) for t in subplot_titles]
    title = wrap_title(title, title_chars())
    extra = 1.25 * (PANEL_TITLE_SIZE * max((t.count("<br>") for t in panel_titles), default=0)
                    + TITLE_SIZE * title.count("<br>"))  # px of the lines added by wrapping
    if cols:
        fig = make_subplots(rows=1, cols=cols, subplot_titles=panel_titles,
                            horizontal_spacing=max(0.2 / cols, 0.07))
        fig.update_annotations(font_size=PANEL_TITLE_SIZE)  # the only annotations yet
    else:
        fig = go.Figure()
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=height + round(extra),
        hovermode="closest",
        margin={"l": 70, "r": 20, "t": 80 + round(extra), "b": 60},
    )
    fig.update_xaxes(title_text=AXIS_TITLES.get(x, x), col=(cols + 1) // 2 if cols else None)
    fig.update_yaxes(title_text=AXIS_TITLES.get(y, y), col=1 if cols else None)
    return log_axes(fig, x=log_x, y=log_y)


def log_axes(fig: go.Figure, *, x: bool = False, y: bool = False) -> go.Figure:
    """Switch axes (of all subplots) to log scale with 10^k tick labels."""
    if x:
        fig.update_xaxes(type="log", exponentformat="power")
    if y:
        fig.update_yaxes(type="log", exponentformat="power")
    return fig


def hover(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> tuple[list, str]:
    """(customdata, hovertemplate) showing `fields` of each run's config under the point.

    Pass both to a trace: `go.Scatter(..., customdata=cd, hovertemplate=ht)`.
    """
    customdata = [[row[f] for f in fields] for row in rows]
    lines = [f"{f}=%{{customdata[{i}]}}" for i, f in enumerate(fields)]
    return customdata, "<br>".join(["x=%{x:.4g}, y=%{y:.4g}", *lines]) + "<extra></extra>"
