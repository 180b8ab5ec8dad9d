"""The book: notebook conventions, the smoke build, and the built site in a real browser.

The `book`-marked tests share one smoke build per session (into _build/test-book/, kept
for inspection: CI can upload its screenshots/ folder). The browser tests drive Debian's
headless Chromium over the DevTools pipe with all name resolution blocked, and record
every request, console error, uncaught exception and failed load of each page.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BUILD = ROOT / "_build" / "test-book"  # smoke build of this session; kept for CI artifacts
SITE = BUILD / "_build" / "html"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing outside this machine can load
    "--window-size=1280,900",
    "--remote-debugging-pipe",
]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def _load(name: str, path: Path) -> Any:
    """Import a module from a file (scripts/ and book/_ext/ are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_book = _load("build_book", ROOT / "scripts" / "build_book.py")
figure_count = _load("offline_assets", ROOT / "book" / "_ext" / "offline_assets.py").figure_count


# --- Figures and notebook conventions (fast) -------------------------------------------------


def test_book_renderer_adds_html_without_plotlyjs() -> None:
    from sparsekit import plotting

    plotting.use_book_renderer()
    fig = plotting.figure("t", "N", "loss", log_x=True, height=300)
    fig.add_scatter(x=[1e6, 1e7], y=[3.0, 2.5], line={"color": plotting.sparsity_color(0.5)})
    bundle = fig._repr_mimebundle_()
    html = bundle["text/html"]
    assert "application/vnd.plotly.v1+json" in bundle  # JupyterLab / VS Code keep working
    assert 'class="plotly-graph-div"' in html and "height:300px" in html
    assert "<script src" not in html and len(html) < 50_000  # plotly.js is not inlined
    assert plotting.sparsity_color(0.75) != plotting.sparsity_color(0.6) == plotting.FALLBACK_COLOR


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean_with_documented_parameters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.nbformat == 4
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count)
    ]
    assert not dirty, f"{path.name}: clear the outputs of cells {dirty} before saving"
    # nbformat would add missing cell ids on every read, with a warning in each build
    missing = [i for i, c in enumerate(json.loads(path.read_text())["cells"]) if "id" not in c]
    assert not missing, f"{path.name}: cells {missing} have no id (nbformat.validator.normalize)"
    declared = build_book.parameter_names(path)  # exactly one `parameters` cell
    # papermill's parser (behind `papermill --help-notebook`) must see every parameter with
    # its comment: it skips lines with a second '=' (e.g. '>=' in the comment).
    documented = {name: p["help"] for name, p in papermill.inspect_notebook(str(path)).items()}
    assert set(documented) == declared, (
        f"{path.name}: papermill cannot parse {declared - set(documented)}"
    )
    undocumented = [name for name, text in documented.items() if not text]
    assert not undocumented, f"{path.name}: add a comment (meaning, unit, range) to {undocumented}"


MAX_CODE_LINES = 60  # per notebook, outside its parameters cell: sparsekit holds the logic


def _code_cells(path: Path) -> list:
    """The code cells of a notebook other than its `parameters` cell."""
    cells = nbformat.read(path, as_version=4).cells
    return [c for c in cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_is_folded(path: Path) -> None:
    # The book shows prose and results; a reader opens a cell's code with one click.
    unfolded = [c.id for c in _code_cells(path) if "hide-input" not in c.metadata.get("tags", [])]
    assert not unfolded, f"{path.name}: tag code cells {unfolded} 'hide-input' (all but parameters)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_is_short(path: Path) -> None:
    # A chapter calls sparsekit: counted are the lines outside the parameters cell that are
    # neither blank nor comments.
    lines = [line.strip() for c in _code_cells(path) for line in c.source.splitlines()]
    count = sum(1 for line in lines if line and not line.startswith("#"))
    assert count <= MAX_CODE_LINES, (
        f"{path.name}: {count} code lines outside the parameters cell, at most {MAX_CODE_LINES}: "
        "move the logic into sparsekit (analysis/, plotting.py)"
    )


def test_panel_titles_fit_their_panels_at_the_page_width() -> None:
    # Chapter 4's law panels ran into each other at the book's page width.
    from sparsekit import plotting

    laws = ["sparse law", "average-parameter law", "effective-multiplier law",
            "Chinchilla (dense runs)"]
    for cols in (2, 3, 4):
        titles = laws[:cols]
        fig = plotting.figure("A figure title long enough to need a second line at the book's "
                              "page width", "S", "loss", subplot_titles=titles)
        texts = [a.text for a in fig.layout.annotations]
        assert [t.replace("-<br>", "-").replace("<br>", " ") for t in texts] == titles
        pitch = (plotting.PAGE_WIDTH - plotting.PLOT_INSET) / cols  # px per panel and gap
        widest = max(len(line) for t in texts for line in t.split("<br>"))
        assert widest * plotting.CHAR_WIDTH * fig.layout.annotations[0].font.size <= pitch
        # the top margin makes room for the lines that wrapping added to both titles
        assert fig.layout.title.text.count("<br>") == 1
        lines = max(t.count("<br>") for t in texts) + 1
        assert fig.layout.margin.t >= 80 + 13 * lines


def _notebook_with(tmp_path: Path, *sources: str, tags: tuple[str, ...] = ("parameters",)) -> Path:
    cells = [nbformat.v4.new_code_cell(src) for src in sources]
    for cell, tag in zip(cells, tags, strict=False):
        cell.metadata["tags"] = [tag]
    path = tmp_path / "probe.ipynb"
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=kernel), path)
    return path


@pytest.mark.parametrize("tags", [(), ("parameters", "parameters")], ids=["none", "two"])
def test_build_rejects_notebook_without_exactly_one_parameters_cell(tmp_path, tags) -> None:
    path = _notebook_with(tmp_path, "x = 1", "y = 2", tags=tags)
    with pytest.raises(build_book.BuildError, match="exactly one cell tagged 'parameters'"):
        build_book.parameter_names(path)


def test_build_passes_only_declared_parameters() -> None:
    params = build_book.notebook_parameters(
        {"smoke", "bootstrap"}, smoke=True, recompute=True, overrides={"bootstrap": 3, "x": 1}
    )
    assert params == {"smoke": True, "bootstrap": 3}


def test_build_rejects_a_parameter_no_notebook_declares(capsys) -> None:
    assert build_book.main(["-p", "no_such_parameter", "1"]) == 1
    assert "no_such_parameter: no notebook declares it" in capsys.readouterr().err


def test_build_orders_notebooks_after_their_prerequisites_busiest_first() -> None:
    after = {"a": (), "b": (), "c": ("b",), "d": ("c",), "z": ("a", "b")}
    # b has 3 notebooks waiting on it (c, d, z), so it runs first; a and c have 1 each (z, d)
    assert build_book.execution_order(after) == ["b", "a", "c", "d", "z"]
    assert build_book.execution_order({"x": (), "y": ()}) == ["x", "y"]
    with pytest.raises(build_book.BuildError, match=r"c: metadata sparsekit\.after names nope, "
                                                    r"not a notebook"):
        build_book.execution_order({"c": ("nope",)})
    with pytest.raises(build_book.BuildError, match="makes a cycle"):
        build_book.execution_order({"a": ("b",), "b": ("a",)})


def test_build_reads_prerequisites_from_the_notebook_metadata(tmp_path) -> None:
    path = _notebook_with(tmp_path, "x = 1")
    assert build_book.prerequisites(path) == ()
    nb = nbformat.read(path, as_version=4)
    for bad in ("03_t5_sweep", [3]):
        nb.metadata["sparsekit"] = {"after": bad}
        nbformat.write(nb, path)
        with pytest.raises(build_book.BuildError, match=r"probe\.ipynb: metadata sparsekit\.after "
                                                        r"must be a list of notebook names"):
            build_book.prerequisites(path)


def test_chapters_that_read_the_sweeps_stores_run_after_the_sweeps() -> None:
    # In a smoke or fresh build, chapters 2 and 3 train the stores these chapters read.
    after = {p.stem: build_book.prerequisites(p) for p in NOTEBOOKS}

    def before(name: str) -> set[str]:
        return set(after[name]).union(*(before(other) for other in after[name]))

    for name in ("04_fit_own_law", "05_optimal_sparsity", "06_provenance"):
        assert {"02_vit_sweep", "03_t5_sweep"} <= before(name), name
    for name in ("07_nm_patterns", "08_pretrained"):
        assert "03_t5_sweep" in before(name), name


@pytest.mark.book
def test_build_runs_notebooks_at_once_in_order_and_reports_the_first_failure(
        tmp_path, monkeypatch) -> None:
    # Each notebook runs in a spawned process, which imports this module by name.
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    marker = tmp_path / "first.txt"
    sources = {"first": f"open({str(marker)!r}, 'w').write('done')",
               "second": f"assert open({str(marker)!r}).read() == 'done'",
               "failing": "raise ValueError('no good')"}
    notebooks = {name: _notebook_with(tmp_path, "x = 1", source).rename(tmp_path / f"{name}.ipynb")
                 for name, source in sources.items()}
    out = tmp_path / "executed"
    params = {name: {} for name in notebooks}
    after = {"first": (), "second": ("first",), "failing": ()}
    build_book.execute_all({k: notebooks[k] for k in ("first", "second")},
                           {k: after[k] for k in ("first", "second")}, params, 2, None, out)
    assert sorted(p.name for p in out.iterdir()) == ["first.ipynb", "second.ipynb"]
    with pytest.raises(build_book.BuildError, match=r"failing\.ipynb: .* ValueError: no good"):
        build_book.execute_all(notebooks, after, params, 2, None, out)


sys.modules.setdefault("build_book", build_book)  # run_notebook imports its sibling by name
run_notebook = _load("run_notebook", ROOT / "scripts" / "run_notebook.py")


def test_run_notebook_refuses_a_parameter_the_notebook_lacks(tmp_path, monkeypatch,
                                                            capsys) -> None:
    # papermill -p t5_stor X only warns and runs on the default store; this entry point stops.
    ran = []
    monkeypatch.setattr(run_notebook, "execute", lambda *args, **kw: ran.append((args, kw)))
    notebook = ROOT / "notebooks" / "04_fit_own_law.ipynb"
    declared = build_book.parameter_names(notebook)
    assert "t5_store" in declared and "t5_stor" not in declared
    out = tmp_path / "out.ipynb"
    code = run_notebook.main([str(notebook), str(out), "-p", "smoke", "true", "-p", "t5_stor",
                              "x"])
    assert code == 2 and ran == []
    assert capsys.readouterr().err == (
        "run_notebook: error: -p t5_stor: 04_fit_own_law.ipynb has no parameter 't5_stor'; its "
        f"parameters are {', '.join(sorted(declared))}\n")
    assert run_notebook.main([str(notebook), str(out), "-p", "t5_store", "s", "-p", "smoke",
                              "true"]) == 0
    assert ran == [((notebook, {"t5_store": "s", "smoke": True}), {"output": out})]
    assert run_notebook.main([str(tmp_path / "none.ipynb"), str(out)]) == 2
    assert "none.ipynb" in capsys.readouterr().err


@pytest.mark.book
def test_build_names_the_failing_notebook_and_cell(tmp_path, monkeypatch) -> None:
    path = _notebook_with(tmp_path, "n = 1", "import math\nmath.sqrt(-n)")
    monkeypatch.setattr(build_book, "EXECUTED", tmp_path / "executed")
    with pytest.raises(build_book.BuildError) as err:
        build_book.execute(path, {"n": 2})
    message = str(err.value)
    assert "probe.ipynb" in message and "'import math'" in message
    assert "ValueError: math domain error" in message


@pytest.mark.book
def test_build_runs_kernels_without_the_tcp_warning(tmp_path, monkeypatch, capfd) -> None:
    # ipykernel warns on stderr for every kernel on unencrypted TCP; the build uses IPC.
    path = _notebook_with(tmp_path, "n = 1", "print(n + 1)")
    monkeypatch.setattr(build_book, "EXECUTED", tmp_path / "executed")
    output = build_book.execute(path, {"n": 2})
    assert nbformat.read(output, as_version=4).cells[-1].outputs[0].text == "3\n"
    assert "without encryption" not in capfd.readouterr().err


# (notebook, parameter, bad value): each must stop at the validation cell, naming it.
BAD_PARAMETERS = [
    ("01_paper_law.ipynb", "bootstrap", -1),
    ("01_paper_law.ipynb", "grid_points", 5),
    ("01_paper_law.ipynb", "smoke", "yes"),
    ("01_paper_law.ipynb", "seed", 1.5),
    ("01_paper_law.ipynb", "paper_data", "no/such/t5-data.csv"),
    ("04_fit_own_law.ipynb", "t5_store", "/typo/path"),  # `-p t5_store /typo/path`
    ("09_like_for_like.ipynb", "t5_store", "/typo/path"),
    ("09_like_for_like.ipynb", "t5_grid", "/typo/grid.yaml"),
]


@pytest.mark.book
@pytest.mark.parametrize(("name", "parameter", "value"), BAD_PARAMETERS)
def test_out_of_range_parameter_stops_at_validation(tmp_path, name, parameter, value) -> None:
    source = ROOT / "notebooks" / name
    output = tmp_path / name
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters={parameter: value},
            kernel_name="python3",
            cwd=str(source.parent),
            progress_bar=False,
        )
    assert err.value.ename == "ValueError"
    assert err.value.evalue.startswith(f"{parameter} must be"), err.value.evalue
    # The first code cell after the injected parameters raised, and nothing ran after it.
    cells = nbformat.read(output, as_version=4).cells
    tags = [c.metadata.get("tags", []) for c in cells]
    injected = next(i for i, t in enumerate(tags) if "injected-parameters" in t)
    after = [c for c in cells[injected + 1 :] if c.cell_type == "code"]
    assert any(o.output_type == "error" for o in after[0].outputs)
    assert all(c.execution_count is None for c in after[1:])


@pytest.mark.book
def test_paper_law_chapter_runs_without_the_paper_data(tmp_path) -> None:
    # From a working directory with no shared/ beside it the chapter falls back to the
    # published coefficients instead of failing.
    cwd = tmp_path / "repo" / "notebooks"
    cwd.mkdir(parents=True)
    output = tmp_path / "01_paper_law.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "01_paper_law.ipynb"),
        str(output),
        parameters={"smoke": True},
        kernel_name="python3",
        cwd=str(cwd),
        progress_bar=False,
    )
    text = output.read_text()
    assert "No paper data at" in text and '"output_type": "error"' not in text


# --- The smoke build ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def smoke_site() -> Path:
    """Build the smoke book once per session; its html/ folder."""
    shutil.rmtree(BUILD, ignore_errors=True)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_book.py"),
            "--smoke",
            "--path-output",
            str(BUILD),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (
        f"smoke build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    assert f"open {(SITE / 'index.html').as_uri()}" in result.stdout
    return SITE


def _chapters() -> list[str]:
    """Executed notebooks as the toc lists them, e.g. 'book/executed/01_paper_law'."""
    toc = (ROOT / "book" / "_toc.yml").read_text()
    return re.findall(r"file:\s*(book/executed/\S+)", toc)


@pytest.mark.book
def test_smoke_build_renders_every_notebook(smoke_site: Path) -> None:
    chapters = _chapters()
    assert sorted(Path(c).name for c in chapters) == [p.stem for p in NOTEBOOKS]
    for chapter in chapters:
        executed = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
        html = (smoke_site / f"{chapter}.html").read_text()
        # every figure the notebook produced reached the page (none dropped by myst-nb)
        assert html.count('class="plotly-graph-div"') == figure_count(executed) > 0, chapter
        # every code cell but the parameters is folded (myst-nb: a toggle per tagged cell)
        folded = sum("hide-input" in c.metadata.get("tags", []) for c in executed.cells)
        assert html.count("tag_hide-input") == folded > 0, chapter
        # the injected parameters are shown (tags stripped: the code is highlighted)
        assert "tag_injected-parameters" in html
        assert "smoke = True" in re.sub(r"<[^>]+>", "", html)


# Markup that makes a browser fetch something: src/href of loading elements, srcset,
# <object data>, CSS url() and @import. Plain <a href> links are not loads.
EXTERNAL = "(?:https?:)?//"
LOADS = [
    re.compile(
        rf"<(?:script|img|iframe|frame|embed|source|audio|video|track|input)\b[^>]*\bsrc\s*=\s*[\"']?{EXTERNAL}",
        re.I,
    ),
    re.compile(rf"<link\b[^>]*\bhref\s*=\s*[\"']?{EXTERNAL}", re.I),
    re.compile(rf"\bsrcset\s*=\s*[\"'][^\"']*{EXTERNAL}", re.I),
    re.compile(rf"<object\b[^>]*\bdata\s*=\s*[\"']?{EXTERNAL}", re.I),
    re.compile(rf"url\(\s*[\"']?{EXTERNAL}", re.I),
    re.compile(rf"@import\s+(?:url\()?\s*[\"']?{EXTERNAL}", re.I),
]


def external_loads(text: str) -> list[str]:
    """Snippets of `text` (HTML or CSS) that load a resource from another host."""
    return [text[m.start() : m.start() + 120] for rx in LOADS for m in rx.finditer(text)]


def test_external_load_scanner() -> None:
    page = """<a href="https://arxiv.org/abs/1">paper</a> <script src="_static/x.js"></script>
    <script src="https://cdn.example/x.js"></script> <link rel="stylesheet" href="//cdn.example/a.css">
    <img src='http://example.org/a.png'> <style>@font-face { src: url("https://f.example/a.woff") }</style>"""
    found = external_loads(page)
    assert len(found) == 4 and not any("arxiv" in f for f in found), found


@pytest.mark.book
def test_no_page_loads_from_the_network(smoke_site: Path) -> None:
    files = [*smoke_site.rglob("*.html"), *smoke_site.rglob("*.css")]
    offending = {
        str(f.relative_to(smoke_site)): hits
        for f in files
        if (hits := external_loads(f.read_text(errors="replace")))
    }
    assert not offending, offending
    # MathJax and plotly.js are served from _static/, not a CDN.
    assert (smoke_site / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert (smoke_site / "_static" / "plotly.min.js").is_file()


# --- The built site in a real browser --------------------------------------------------------


@dataclass
class PageReport:
    """What a page did in the browser."""

    requests: list[str] = field(default_factory=list)  # every URL it requested
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    figures: int = 0  # plotly figures drawn (an SVG with at least one trace)
    math: int = 0  # formulas typeset by MathJax
    math_errors: int = 0  # formulas MathJax could not parse

    @property
    def external(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]


class Browser:
    """Headless Chromium driven by the DevTools protocol over a pipe (no extra packages).

    The protocol pipe is fds 3 (commands in) and 4 (replies out) of the browser process,
    with messages separated by NUL bytes.
    """

    def __init__(self, binary: str, profile: Path) -> None:
        cmd_read, self._cmd = os.pipe()
        self._reply, reply_write = os.pipe()
        self._proc = subprocess.Popen(
            [
                "/bin/bash",  # dash cannot redirect from fds above 9
                "-c",
                f'exec "$0" "$@" 3<&{cmd_read} 4>&{reply_write}',
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(cmd_read, reply_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_read)
        os.close(reply_write)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._reply, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        """Send one command, keep the events that arrive meanwhile, return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._events.append(reply)

    def visit(self, url: str, timeout: float = 60, wait: float = 20) -> PageReport:
        """Load `url` (within `timeout` s), wait for MathJax and for plotly to draw every
        figure (at most `wait` s), and report what happened."""
        self._events.clear()
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            self._events.append(self._receive(deadline))
        counts = self.call(
            "Runtime.evaluate",
            session=True,
            awaitPromise=True,
            returnByValue=True,
            expression=WAIT_AND_COUNT.replace("WAIT_MS", str(int(wait * 1000))),
            timeout=timeout + wait,
        )["result"]["value"]
        return self._report(counts)

    def _report(self, counts: dict) -> PageReport:
        report = PageReport(**counts)
        urls: dict[str, str] = {}
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                urls[params["requestId"]] = params["request"]["url"]
                report.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                url = urls.get(params["requestId"], "?")
                report.errors.append(f"failed to load {url}: {params['errorText']}")
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details["text"]
                report.errors.append(f"uncaught: {text}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                args = " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params["args"]
                )
                report.errors.append(f"console.{params['type']}: {args}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                report.errors.append(
                    f"log: {params['entry']['text']} ({params['entry'].get('url', '')})"
                )
        return report

    def screenshot(self, path: Path) -> None:
        """Save the whole current page as PNG."""
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call(
            "Page.captureScreenshot",
            session=True,
            format="png",
            clip=clip,
            captureBeyondViewport=True,
        )
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)  # it may close the pipe before replying
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        os.close(self._cmd)
        os.close(self._reply)


# Waits until MathJax has typeset and plotly has drawn every figure (or WAIT_MS have passed),
# then counts figures whose SVG holds at least one trace, formulas and TeX errors.
WAIT_AND_COUNT = """
(async () => {
  if (window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
  const divs = () => [...document.querySelectorAll('.plotly-graph-div')];
  const drawn = () => divs().filter(d => d.querySelector('.main-svg g.trace')).length;
  for (let t = 0; t < WAIT_MS / 100 && drawn() < divs().length; t++) {
    await new Promise(r => setTimeout(r, 100));
  }
  const count = (selector) => document.querySelectorAll(selector).length;
  return {figures: drawn(), math: count('mjx-container'), math_errors: count('mjx-merror')};
})()
"""


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Iterator[Browser]:
    binary = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")
    if binary is None:
        message = "headless Chromium (/usr/bin/chromium) is not installed: run `make browser`"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run the browser test, never skip it
        pytest.skip(message)
    chromium = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def test_browser_check_catches_errors_and_outside_loads(browser: Browser, tmp_path: Path) -> None:
    # The checker itself must see each kind of failure, or a clean report means nothing.
    page = tmp_path / "broken.html"
    page.write_text(
        '<script src="missing.js"></script><img src="https://example.com/a.png">'
        '<script>console.error("deliberate"); undefinedFunction();</script>'
        '<div class="plotly-graph-div"></div>'
    )
    report = browser.visit(page.as_uri(), timeout=30, wait=1)
    assert report.external == ["https://example.com/a.png"]
    joined = "\n".join(report.errors)
    for expected in (
        "missing.js",
        "example.com/a.png",
        "console.error: deliberate",
        "undefinedFunction",
    ):
        assert expected in joined, joined
    assert report.figures == 0


@pytest.mark.book
def test_pages_render_offline_in_a_browser(smoke_site: Path, browser: Browser) -> None:
    pages = sorted(smoke_site.joinpath("book").rglob("*.html"))
    chapters = _chapters()
    assert len(pages) >= 4
    shots = BUILD / "screenshots"  # one chapter, for a person (or CI's artifacts) to look at
    shots.mkdir(exist_ok=True)
    problems = {}
    for page in pages:
        name = str(page.relative_to(smoke_site).with_suffix(""))
        report = browser.visit(page.as_uri())
        executed = ROOT / f"{name}.ipynb"
        expected = figure_count(nbformat.read(executed, as_version=4)) if name in chapters else 0
        has_math = 'class="math' in page.read_text()
        if report.errors or report.external or report.figures != expected:
            problems[name] = (
                report.errors,
                report.external,
                f"{report.figures}/{expected} figures",
            )
        elif has_math and (report.math == 0 or report.math_errors):
            problems[name] = f"MathJax: {report.math} formulas, {report.math_errors} errors"
        if name == chapters[0]:
            browser.screenshot(shots / f"{page.stem}.png")
    assert not problems, problems
    assert (shots / f"{Path(chapters[0]).name}.png").stat().st_size > 10_000


# --- Every page readable at 1280 px -------------------------------------------------------

# Opens every folded block (code cells, folded tables), then lists each table, figure, code
# block, cell output and displayed formula in the page's main column that scrolls sideways
# (scrollWidth > clientWidth) or sticks out of the column; of nested ones, the innermost.
OVERFLOWS = """
(() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const main = document.querySelector('article.bd-article') || document.body;
  const style = getComputedStyle(main);
  const box = main.getBoundingClientRect();
  const left = box.left + parseFloat(style.paddingLeft);
  const right = box.right - parseFloat(style.paddingRight);
  const selector = 'table, pre, div.highlight, .plotly-graph-div, .cell_output, .output, '
    + 'mjx-container[display="true"]';
  const kind = (el) => el.matches('table') ? 'table' : el.matches('.plotly-graph-div') ? 'figure'
    : el.matches('pre, div.highlight') ? 'code' : el.matches('mjx-container') ? 'math' : 'output';
  const flagged = [];
  for (const el of main.querySelectorAll(selector)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // not displayed
    const scrolls = el.scrollWidth - el.clientWidth;
    const sticks = Math.max(r.right - right, left - r.left);
    if (scrolls > 1 || sticks > 1) flagged.push({el, scrolls, sticks, width: r.width});
  }
  const items = flagged.filter(f => !flagged.some(g => g !== f && f.el.contains(g.el)));
  const headings = [...main.querySelectorAll('h1, h2, h3')];
  const section = (el) => {
    const h = headings.filter(h => h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING).pop();
    return h ? h.textContent.replace(/[#¶]/g, '').trim() : '';
  };
  const page = document.documentElement.scrollWidth - document.documentElement.clientWidth;
  return {
    column: Math.round(right - left),
    items: [
      ...(page > 1 ? [`the page itself scrolls ${page} px sideways`] : []),
      ...items.map(f => `${kind(f.el)} under "${section(f.el)}", ${Math.round(f.width)} px wide, `
        + `${Math.round(Math.max(f.scrolls, f.sticks))} px too wide: `
        + f.el.textContent.replace(/\\s+/g, ' ').trim().slice(0, 60)),
    ],
  };
})()
"""


def overflows(browser: Browser) -> dict:
    """{"column": the main column's width (px), "items": what overflows it} on the page that
    the browser shows (see OVERFLOWS)."""
    return browser.call(
        "Runtime.evaluate", session=True, returnByValue=True, expression=OVERFLOWS
    )["result"]["value"]


def test_overflow_check_sees_a_wide_table_and_a_long_line(browser: Browser,
                                                          tmp_path: Path) -> None:
    # The measure itself must see what a reader would scroll, or a clean report means nothing.
    page = tmp_path / "wide.html"
    cells = "".join(f"<td>{i}.2345678</td>" for i in range(40))
    page.write_text(
        '<body style="width: 600px"><table><tr>' + cells + "</tr></table>"
        '<pre style="overflow: auto">' + "x = 1  # " + "long comment " * 30 + "</pre>"
        "<details><pre style='overflow: auto'>" + "folded_" * 120 + "</pre></details>"
        "<p>fits</p><pre>short</pre><table><tr><td>1</td></tr></table></body>"
    )
    browser.visit(page.as_uri(), timeout=30, wait=1)
    items = overflows(browser)["items"]
    assert len(items) == 4, items  # the page itself, the table, both code blocks
    assert any(i.startswith("table") for i in items) and sum(i.startswith("code") for i in items) == 2


@pytest.mark.book
def test_nothing_overflows_the_column_at_1280px(smoke_site: Path, browser: Browser) -> None:
    # Issue 25: at a 1280 px window no table, figure or code block of any page scrolls
    # sideways or sticks out of the main column (folded blocks opened). Tables go through
    # analysis.tables.styled (split or transposed to fit); book/_static/layout.css wraps code.
    pages = sorted(smoke_site.joinpath("book").rglob("*.html"))
    assert len(pages) >= 4
    problems = {}
    for page in pages:
        browser.visit(page.as_uri())
        found = overflows(browser)
        assert found["column"] > 500, found  # the desktop layout, with the sidebars
        if found["items"]:
            problems[str(page.relative_to(smoke_site).with_suffix(""))] = found["items"]
    assert not problems, problems
