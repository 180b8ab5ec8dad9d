"""Execute every notebook with papermill, then render the book with Jupyter Book 1.x.

    python scripts/build_book.py                 # default parameters, reusing stored runs
    python scripts/build_book.py --smoke         # tiny grids: what CI builds
    python scripts/build_book.py --recompute     # recompute runs instead of reusing them
    python scripts/build_book.py -p bootstrap 50 # set a parameter in every notebook that has it

Law fits are cached for the build in .cache/fits (`sparsekit.fitcache`), so a fit one
chapter made is read, not refitted, by the next: SPARSEKIT_FIT_CACHE, when set, names another
folder ("off": no cache). Each notebook's line in the log says how many fits came from it.
Bootstrap refits run in one process per CPU (SPARSEKIT_FIT_WORKERS, when set, says how many).

Notebooks run from notebooks/ (kernel `python3`, working directory notebooks/) into
book/executed/, which the toc renders. Each runs after the notebooks its metadata names
(`"sparsekit": {"after": [...]}`, by file stem): the chapters whose stores it reads, which a
smoke or fresh build trains, and those whose fits it reuses from the cache (the Findings,
00_*, name chapters 2 and 3 for their smoke stores and 4 for its fits). Up to --jobs notebooks whose prerequisites are done run at
once, each in its own process (default: one per CPU; `--jobs 1` runs them one by one in this
process), those with the most notebooks waiting on them first. The first failing notebook
stops the build (those already running finish) with a non-zero exit naming the notebook and
the cell; its executed copy, with the traceback, stays in book/executed/ for inspection. The
book is then built with -W, so a warning (e.g. a figure the renderer dropped) fails too.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Mapping
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
FIT_CACHE = ROOT / ".cache" / "fits"  # the build's fit cache (git-ignored)


def kernel_config(sockets: Path) -> Config:
    """The kernel talks to papermill over local IPC sockets instead of TCP on localhost, which
    needs no encryption keys and so does not print ipykernel's "Kernel is running over TCP
    without encryption" warning for every notebook. The sockets are files named from a
    prefix: each kernel gets its own folder, or two kernels started at once take the same
    names (and reject each other's messages)."""
    return Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}})


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
        with tempfile.TemporaryDirectory(prefix="sparsekit-kernel-") as sockets:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL,
                cwd=str(notebook.resolve().parent),  # so relative paths resolve as in Jupyter
                progress_bar=False,
                config=kernel_config(Path(sockets)),  # passed on to nbclient's kernel manager
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


def prerequisites(notebook: Path) -> tuple[str, ...]:
    """The notebooks (file stems) that must run before `notebook`: its metadata's
    `sparsekit.after` (BuildError unless a list of names)."""
    after = nbformat.read(notebook, as_version=4).metadata.get("sparsekit", {}).get("after", [])
    if not isinstance(after, list) or not all(isinstance(name, str) for name in after):
        raise BuildError(f"{notebook.name}: metadata sparsekit.after must be a list of notebook "
                         f"names (file stems), got {after!r}")
    return tuple(after)


def execution_order(after: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The notebooks (stems) in an order that runs each after its prerequisites: among those
    ready, first the one with the most notebooks waiting on it (directly or not), then by name.
    BuildError naming an unknown prerequisite or a cycle."""
    for name, before in after.items():
        unknown = sorted(set(before) - set(after))
        if unknown:
            raise BuildError(f"{name}: metadata sparsekit.after names {', '.join(unknown)}, "
                             f"not a notebook (known: {', '.join(sorted(after))})")

    def waiting(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if name in seen:
            raise BuildError(f"metadata sparsekit.after makes a cycle: "
                             f"{' -> '.join(sorted(seen | {name}))}")
        direct = {other for other, before in after.items() if name in before}
        return direct.union(*(waiting(other, seen | {name}) for other in direct))

    rank = {name: (-len(waiting(name)), name) for name in after}
    order: list[str] = []
    while len(order) < len(after):
        ready = [n for n in after if n not in order and set(after[n]) <= set(order)]
        order.append(min(ready, key=rank.__getitem__))
    return order


def _execute_as(source: str, notebook: Path, parameters: dict[str, Any], output: Path) -> Path:
    """`execute`, with the fit cache's events of its kernel marked as `source`'s."""
    previous = os.environ.get(fitcache.SOURCE_ENV)
    os.environ[fitcache.SOURCE_ENV] = source  # the kernel inherits it
    try:
        return execute(notebook, parameters, output)
    finally:
        if previous is None:
            os.environ.pop(fitcache.SOURCE_ENV, None)
        else:
            os.environ[fitcache.SOURCE_ENV] = previous


def execute_all(notebooks: Mapping[str, Path], after: Mapping[str, tuple[str, ...]],
                parameters: Mapping[str, dict[str, Any]], jobs: int, cache: Path | None,
                executed: Path | None = None) -> None:
    """Run the notebooks into `executed` (default: EXECUTED), up to `jobs` at once (each in
    its own process when above 1), each after its prerequisites, in `execution_order`; log
    each one's time and fits. Raises the first notebook's BuildError once the notebooks
    already running have finished."""
    order = execution_order(after)
    outputs = {name: (executed or EXECUTED) / path.name for name, path in notebooks.items()}
    offset = fitcache.events_size(cache)
    started: dict[str, float] = {}

    def start(name: str) -> None:
        started[name] = time.perf_counter()
        print(f"executing {notebooks[name].name} {parameters[name] or ''}", flush=True)

    def finish(name: str) -> None:
        fits = fitcache.describe(fitcache.event_totals(cache, offset, source=name)[0])
        print(f"  {notebooks[name].name} done in {time.perf_counter() - started[name]:.1f} s; "
              f"{fits}", flush=True)

    if jobs == 1:
        for name in order:
            start(name)
            _execute_as(name, notebooks[name], parameters[name], outputs[name])
            finish(name)
        return
    done: set[str] = set()
    running: dict[concurrent.futures.Future, str] = {}
    failure: BuildError | None = None
    # spawn: a forked child would inherit this process's threads and sockets mid-use
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        while (failure is None and len(done) + len(running) < len(order)) or running:
            waiting_on = set(running.values())
            ready = [n for n in order if n not in done and n not in waiting_on
                     and set(after[n]) <= done]
            while failure is None and ready and len(running) < jobs:
                name = ready.pop(0)
                start(name)
                future = pool.submit(_execute_as, name, notebooks[name], parameters[name],
                                     outputs[name])
                running[future] = name
            finished, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                try:
                    future.result()
                except BuildError as err:
                    failure = failure or err
                    continue
                done.add(name)
                finish(name)
    if failure is not None:
        raise failure


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
        "--jobs",
        type=int,
        default=fitting.available_cpus(),
        help="notebooks run at once, each in its own process (default: one per CPU)",
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
    notebooks = {path.stem: path for path in sorted(NOTEBOOKS.glob("*.ipynb"))}
    try:
        if args.jobs < 1:
            raise BuildError(f"--jobs must be an integer >= 1, got {args.jobs}")
        # check every notebook before running any
        declared = {name: parameter_names(path) for name, path in notebooks.items()}
        after = {name: prerequisites(path) for name, path in notebooks.items()}
        execution_order(after)
        unknown = set(overrides) - set().union(*declared.values())
        if unknown:
            raise BuildError(f"-p {', '.join(sorted(unknown))}: no notebook declares it")
        parameters = {
            name: notebook_parameters(
                names, smoke=args.smoke, recompute=args.recompute, overrides=overrides
            )
            for name, names in declared.items()
        }
        with fit_cache() as cache:
            execute_all(notebooks, after, parameters, args.jobs, cache)
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
