"""Execute every notebook with papermill, then render the book with Jupyter Book 1.x.

    python scripts/build_book.py                 # default parameters, reusing stored runs
    python scripts/build_book.py --smoke         # tiny grids: what CI builds
    python scripts/build_book.py --recompute     # recompute runs instead of reusing them
    python scripts/build_book.py -p bootstrap 50 # set a parameter in every notebook that has it

Law fits are cached for the build in .cache/fits (`sparsekit.fitcache`), so a fit one
chapter made is read, not refitted, by the next: SPARSEKIT_FIT_CACHE, when set, names another
folder ("off": no cache). Each notebook's line in the log says how many fits came from it.
Bootstrap refits run in one process per CPU (SPARSEKIT_FIT_WORKERS, when set, says how many).

Notebooks run in sorted order from notebooks/ (kernel `python3`, working directory
notebooks/) into book/executed/, which the toc renders; a summary chapter (00_*, the
Findings) runs last, after the chapters whose stores it reads. The first failing notebook
stops the build with a non-zero exit naming the notebook and the cell; its executed copy, with
the traceback, stays in book/executed/ for inspection. The book is then built with -W, so a
warning (e.g. a figure the renderer dropped) fails too.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import papermill
import yaml
from traitlets.config import Config

from sparsekit import fitcache, fitting

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "book" / "executed"  # referenced by book/_toc.yml
TOC = ROOT / "book" / "_toc.yml"
KERNEL = "python3"
# The kernel talks to papermill over local IPC sockets instead of TCP on localhost, which
# needs no encryption keys and so does not print ipykernel's "Kernel is running over TCP
# without encryption" warning for every notebook.
KERNEL_CONFIG = Config({"KernelManager": {"transport": "ipc"}})
FIT_CACHE = ROOT / ".cache" / "fits"  # the build's fit cache (git-ignored)


class BuildError(RuntimeError):
    """A notebook or the book failed; the message says which and where."""


def parameter_names(notebook: Path) -> set[str]:
    """Names assigned in the notebook's single `parameters` cell (BuildError otherwise).

    Read with `ast`, not papermill's line parser, which skips lines it cannot parse.
    """
    nb = nbformat.read(notebook, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise BuildError(
            f"{notebook.name}: needs exactly one cell tagged 'parameters', found {len(tagged)}"
        )
    tree = ast.parse(tagged[0].source)
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


def notebook_parameters(
    names: set[str], *, smoke: bool, recompute: bool, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The parameters to inject into one notebook: only those it declares."""
    params = dict(overrides)
    if smoke:
        params["smoke"] = True
    if recompute:
        params["reuse"] = False
    return {name: value for name, value in params.items() if name in names}


def execute(notebook: Path, parameters: dict[str, Any], output: Path | None = None) -> Path:
    """Run one notebook into `output` (default: book/executed/ under its own name); BuildError
    naming the failing cell."""
    output = output or EXECUTED / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(notebook.resolve().parent),  # so relative paths resolve as in Jupyter
            progress_bar=False,
            config=KERNEL_CONFIG,  # passed on to nbclient's kernel manager
        )
    except papermill.PapermillExecutionError as err:
        first_line = err.source.strip().splitlines()[0] if err.source.strip() else ""
        raise BuildError(
            f"{notebook.name}: cell In [{err.exec_count}] (starting {first_line!r}) raised "
            f"{err.ename}: {err.evalue}\n  executed copy with the traceback: {output}"
        ) from err
    return output


@contextmanager
def fit_cache() -> Iterator[Path | None]:
    """The build's fit cache folder (None: off): SPARSEKIT_FIT_CACHE as the caller set it,
    else FIT_CACHE, put in the environment the notebooks' kernels inherit while the build
    runs, and taken out again after. Likewise SPARSEKIT_FIT_WORKERS (`fitting.fit_workers`):
    as the caller set it, else the CPUs this process may use, so a chapter's bootstrap refits
    run in parallel."""
    defaults = {fitcache.ENV: str(FIT_CACHE), fitting.WORKERS_ENV: str(fitting.available_cpus())}
    unset = [name for name in defaults if name not in os.environ]
    for name in unset:
        os.environ[name] = defaults[name]
    try:
        yield fitcache.directory()
    finally:
        for name in unset:
            os.environ.pop(name, None)



def build_book(path_output: Path) -> Path:
    """jupyter-book build with warnings as errors; returns the site's index.html."""
    jupyter_book = Path(sysconfig.get_path("scripts")) / "jupyter-book"
    command = [
        str(jupyter_book),
        "build",
        str(ROOT),
        "--toc",
        str(TOC),
        "--path-output",
        str(path_output),
        "-W",
        "-n",
        "--keep-going",
    ]
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise BuildError("jupyter-book build failed (warnings count as errors); see above")
    return path_output / "_build" / "html" / "index.html"


def execution_order(notebooks: list[Path]) -> list[Path]:
    """Sorted by name, except that the summary chapters (00_*), which read the stores the
    sweep chapters write (and train into, in a smoke or fresh build), run last."""
    return sorted(notebooks, key=lambda path: (path.name.startswith("00_"), path.name))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="pass smoke=True (tiny grids)")
    parser.add_argument(
        "--recompute", action="store_true", help="pass reuse=False (ignore stored results)"
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set NAME to VALUE (a YAML scalar) in every notebook that declares NAME",
    )
    parser.add_argument(
        "--path-output",
        type=Path,
        default=ROOT,
        help="where jupyter-book writes _build/ (default: the repository root)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
    notebooks = execution_order(list(NOTEBOOKS.glob("*.ipynb")))
    try:
        declared = {nb: parameter_names(nb) for nb in notebooks}  # check all before running
        unknown = set(overrides) - set().union(*declared.values())
        if unknown:
            raise BuildError(f"-p {', '.join(sorted(unknown))}: no notebook declares it")
        with fit_cache() as cache:
            for notebook, names in declared.items():
                params = notebook_parameters(
                    names, smoke=args.smoke, recompute=args.recompute, overrides=overrides
                )
                start = time.perf_counter()
                print(f"executing {notebook.name} {params or ''}", flush=True)
                offset = fitcache.events_size(cache)
                execute(notebook, params)
                fits = fitcache.describe(fitcache.event_totals(cache, offset)[0])
                print(f"  done in {time.perf_counter() - start:.1f} s; {fits}", flush=True)
        start = time.perf_counter()
        index = build_book(args.path_output.resolve())
        print(f"book built in {time.perf_counter() - start:.1f} s")
    except BuildError as err:
        print(f"build_book: {err}", file=sys.stderr)
        return 1
    print(f"open {index.as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
