"""Sphinx extension: the site serves its own plotly.js and MathJax, so no page loads anything
from the network, and no notebook figure goes missing.

- plotly.js comes from the installed `plotly` package (the version that produced the
  figures). It is copied once into `_static/` and one `<script>` tag is added, only to pages
  that contain a plotly figure (it is ~4.6 MB). Figures reach the page as `text/html` from
  the renderer in `sparsekit.plotting`.
- MathJax 3 comes from the `django-static-mathjax` distribution on PyPI (MathJax's own
  `es5/` build, with its fonts); it is copied into `_static/mathjax/` and `mathjax_path`
  points at it. Sphinx's default would load it from a CDN.
- A figure shown without the book renderer carries only plotly's JSON mime type, which
  myst-nb drops without a trace once its warning is silenced (see _config.yml). Every
  notebook page is checked against its notebook's figure count, with a warning (an error
  under -W) naming the fix.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

PLOTLY_JS = "plotly.min.js"
MATHJAX_DIST = "django-static-mathjax"
MATHJAX_ES5 = "mathjax/static/mathjax/es5"  # inside the distribution
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the combined component Sphinx uses by default
MATHJAX_DIR = "mathjax"  # under _static/


def plotly_js() -> Path:
    """plotly.min.js shipped inside the installed plotly package."""
    return Path(str(importlib.resources.files("plotly") / "package_data" / PLOTLY_JS))


def mathjax_es5() -> Path:
    """MathJax's es5/ build shipped by the MathJax distribution (ImportError if missing)."""
    try:
        dist = importlib.metadata.distribution(MATHJAX_DIST)
    except importlib.metadata.PackageNotFoundError as err:
        raise ImportError(
            f"{MATHJAX_DIST} is not installed: install sparsekit with its book extra "
            "(pip install -e '.[book]') so the site can serve MathJax itself"
        ) from err
    return Path(str(dist.locate_file(MATHJAX_ES5)))


def _skip_other_bundles(directory: str, names: list[str]) -> list[str]:
    """shutil.copytree filter: of es5/'s top-level combined bundles keep only the entry point.

    The other bundles (tex-svg.js, node-main.js, ...) are alternatives to it, about 16 MB
    that no page loads; the subfolders hold what the entry point loads lazily (fonts,
    TeX extensions, the menu, accessibility).
    """
    if Path(directory) != mathjax_es5():
        return []
    return [name for name in names if name.endswith(".js") and name != MATHJAX_ENTRY]


def _use_local_mathjax(app: Sphinx, config: Config) -> None:
    # A relative mathjax_path is resolved against _static/ by sphinx.ext.mathjax.
    config.mathjax_path = f"{MATHJAX_DIR}/{MATHJAX_ENTRY}"


def _page_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """Per page: add plotly.js where there are figures; drop duplicated inline scripts."""
    # add_js_file here affects this page only. No defer/async: the figures' inline scripts
    # call Plotly.newPlot while the page is parsed.
    if "plotly-graph-div" in context.get("body", ""):
        app.add_js_file(PLOTLY_JS)
    # Sphinx 7.4 re-adds inline scripts registered after Builder.init() (sphinx-thebe's,
    # sphinx-togglebutton's) with filename '' instead of None, so each appears twice and
    # the second `const THEBE_JS_URL` throws a SyntaxError in the browser.
    seen: set[tuple] = set()
    unique = []
    for script in context["script_files"]:
        key = (script.filename or None, script.priority, *sorted(script.attributes.items()))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique


def figure_count(notebook: dict[str, Any]) -> int:
    """Plotly figures among a notebook's outputs (a JSON-only one included)."""
    return sum(
        "application/vnd.plotly.v1+json" in data or "plotly-graph-div" in str(data.get("text/html"))
        for cell in notebook.get("cells", [])
        for data in (out.get("data", {}) for out in cell.get("outputs", []))
    )


def _check_figures(app: Sphinx, doctree: nodes.document) -> None:
    source = Path(app.env.doc2path(app.env.docname))
    if source.suffix != ".ipynb":
        return
    expected = figure_count(json.loads(source.read_text(encoding="utf-8")))
    shown = sum("plotly-graph-div" in raw.astext() for raw in doctree.findall(nodes.raw))
    if shown != expected:
        logger.warning(
            "%d of %d plotly figures have no text/html output and would be missing from the "
            "page: call sparsekit.plotting.use_book_renderer() before showing figures",
            expected - shown,
            expected,
            location=app.env.docname,
            type="sparsekit",
            subtype="figures",
        )


def _copy_assets(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copy2(plotly_js(), static / PLOTLY_JS)
    shutil.copytree(
        mathjax_es5(), static / MATHJAX_DIR, ignore=_skip_other_bundles, dirs_exist_ok=True
    )


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the handlers; fail at startup (not after the build) if MathJax is missing."""
    if not (mathjax_es5() / MATHJAX_ENTRY).is_file():
        raise ImportError(f"{MATHJAX_DIST} does not ship es5/{MATHJAX_ENTRY}")
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _use_local_mathjax)
    app.connect("doctree-read", _check_figures)
    app.connect("html-page-context", _page_scripts)
    app.connect("build-finished", _copy_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
