"""Sphinx extension: the site serves its own plotly.js and MathJax, so no page loads anything
from the network.

- plotly.js comes from the installed `plotly` package (the version that produced the
  figures). It is copied once into `_static/` and one `<script>` tag is added, only to pages
  that contain a plotly figure (it is ~4.6 MB). Figures reach the page as `text/html` from
  the renderer in `sparsekit.plotting`.
- MathJax 3 comes from the `django-static-mathjax` distribution on PyPI (MathJax's own
  `es5/` build, with its fonts); it is copied into `_static/mathjax/` and `mathjax_path`
  points at it. Sphinx's default would load it from a CDN.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config

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


def _add_plotly_script(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    # Called per page; add_js_file here affects this page only. No defer/async: the
    # figures' inline scripts call Plotly.newPlot while the page is parsed.
    if "plotly-graph-div" in context.get("body", ""):
        app.add_js_file(PLOTLY_JS)


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
    app.connect("html-page-context", _add_plotly_script)
    app.connect("build-finished", _copy_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
