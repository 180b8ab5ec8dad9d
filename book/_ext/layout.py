"""Sphinx extension: the book's layout CSS (book/_static/layout.css), so that no table,
figure or code block scrolls sideways in the page's main column at a 1280 px window.

tests/test_book.py (test_nothing_overflows_the_column_at_1280px) measures every page of the
built book in headless Chromium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config

STATIC = Path(__file__).resolve().parent.parent / "_static"
CSS = "layout.css"


def _add_static(app: Sphinx, config: Config) -> None:
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _add_static)
    app.add_css_file(CSS)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
