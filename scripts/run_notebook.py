"""Run one notebook with papermill, its parameter names checked first.

    .venv/bin/python scripts/run_notebook.py notebooks/01_paper_law.ipynb out.ipynb -p bootstrap 1000

papermill alone only warns about a parameter the notebook does not declare ("Passed unknown
parameter") and runs it on its defaults, so a typo (`-p t5_stor X`) exits 0 having used the
default store. Here a name the notebook's `parameters` cell does not assign is an error, exit
2, naming it and the parameters the notebook has; nothing runs. Values are YAML scalars, as
for `build_book.py -p`; the notebook runs in its own directory, as in Jupyter. A failing cell
exits 1 naming it (the executed copy keeps the traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from build_book import BuildError, execute, parameter_names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path, help="the notebook to run (.ipynb)")
    parser.add_argument("output", type=Path, help="where to write the executed notebook")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="set NAME to VALUE (a YAML scalar); NAME must be a parameter of "
                             "the notebook")
    return parser.parse_args(argv)


def unknown_parameter(names: set[str], given: list[str], notebook: Path) -> str | None:
    """The error for the first name in `given` that `names` (the notebook's parameters)
    lacks, or None."""
    unknown = [name for name in given if name not in names]
    if not unknown:
        return None
    return (f"-p {unknown[0]}: {notebook.name} has no parameter {unknown[0]!r}; its "
            f"parameters are {', '.join(sorted(names))}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        names = parameter_names(args.notebook)
    except (BuildError, OSError) as err:
        print(f"run_notebook: error: {err}", file=sys.stderr)
        return 2
    problem = unknown_parameter(names, [name for name, _ in args.parameter], args.notebook)
    if problem:
        print(f"run_notebook: error: {problem}", file=sys.stderr)
        return 2
    parameters = {name: yaml.safe_load(value) for name, value in args.parameter}
    try:
        execute(args.notebook, parameters, output=args.output)
    except BuildError as err:
        print(f"run_notebook: {err}", file=sys.stderr)
        return 1
    print(f"executed {args.notebook} into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
