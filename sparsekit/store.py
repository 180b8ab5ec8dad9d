"""The results store: one directory, one JSON file per run, one tidy table derived from them.

Layout of a store directory DIR:

    DIR/runs/<key>.json   the full result of one run (`RunResult.to_row()`, curves included): the
                      source of truth
    DIR/runs/damaged/     run files that were not valid results, set aside (never deleted)
    DIR/results.parquet   one row per run, scalar columns only, rebuilt from the JSON files
    DIR/.lock             held (flock) by the one process that writes, e.g. a running sweep

`<key>` is `RunConfig.key()`. Every file is written atomically (a temp file in the same
directory, fsync, os.replace), so a killed writer leaves either the old file or the new one,
plus at worst a stray `.*.tmp` file that readers ignore and the next writer removes. The JSON
is strict (NaN and infinities are written as null), so any JSON reader can use it.

A run file damaged from outside (truncated, emptied to `{}`, a stray byte that is not UTF-8,
not a result, a finished run whose loss is NaN, null or text) never blocks the store: readers skip it with a `DamagedResultWarning` naming it (or raise `DamagedResultError`
when strict), and the writer moves it to `runs/damaged/` (`set_aside`), so a sweep runs that
point again.

Table columns: every scalar of the result row (`sparsekit.result.COLUMNS`); nested dicts are flattened with dots
(`config.optim.lr`, `versions.jax`, `machine.host`); lists inside the config are JSON text;
the curves (`curve`, `val_curve`) stay in the JSON files only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sparsekit.result import STATUSES, RunResult
from sparsekit.validate import is_number

RUNS = "runs"
DAMAGED = "damaged"  # inside RUNS: run files that were not valid results, set aside
TABLE = "results.parquet"
CURVES = ("curve", "val_curve")  # list-valued result fields kept out of the table
_TMP_SUFFIX = ".tmp"


class StoreBusyError(RuntimeError):
    """Another process holds the store's write lock."""


class DamagedResultError(ValueError):
    """A run file that is not a valid result (the message names the file and what is wrong)."""


class DamagedResultWarning(UserWarning):
    """A run file that is not a valid result was skipped or set aside."""


def result_problem(result: Any, key: str) -> str | None:
    """What makes `result` (a parsed run file named `key`) not a valid result, or None.

    A result is a JSON object with its own `key`, a `config` object and a `status` of
    STATUSES; its `loss` and `loss_se` are numbers or null (never text, which a table would
    convert silently); a finished ("ok") one has a finite `loss` (a NaN or null one is no
    result: reused as ok, the fits would drop it unnamed and no retry would rerun it)."""
    if not isinstance(result, dict):
        return f"holds a JSON {type(result).__name__}, not an object"
    missing = [name for name in ("key", "config", "status") if name not in result]
    if missing:
        return f"lacks {', '.join(missing)}"
    if result["key"] != key:
        return f"holds the result of key {result['key']!r}, not {key!r}"
    if not isinstance(result["config"], dict):
        return "has a config that is not an object"
    if result["status"] not in STATUSES:
        return f"has status {result['status']!r}, not one of {list(STATUSES)}"
    if result["status"] == "ok" and "loss" not in result:
        return "is a finished run without a loss"
    for name in ("loss", "loss_se"):  # a number, or null (JSON's NaN)
        value = result.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"has a {name} that is not a number: {value!r}"
    if result["status"] == "ok" and not is_number(result["loss"]):
        return f"is a finished run whose loss is {result['loss']!r}, not a finite number"
    return None


def strict_json(value: Any) -> Any:
    """`value` with non-finite floats replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def dumps(result: RunResult, **kw: Any) -> str:
    """A result as strict JSON text (its `to_row()`)."""
    return json.dumps(strict_json(result.to_row()), allow_nan=False, **kw)


def _write_atomic(path: Path, write: Any) -> None:
    """Call `write(binary file)` on a temp file next to `path`, then move it into place. A
    full disk (ENOSPC) is an OSError naming `path`; the old file, if any, is left as it was."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                   suffix=_TMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        sync_dir(path.parent)
    except OSError as e:
        if e.errno == errno.ENOSPC:  # the bare error names no file: name the one not written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def sync_dir(path: Path) -> None:
    """Make renames in directory `path` durable (a crash must not resurrect an old file)."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """One table row: nested dicts joined with dots, curves dropped, other lists as JSON."""
    flat: dict[str, Any] = {}

    def visit(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            if isinstance(value, dict):
                visit(value, f"{prefix}{name}.")
            elif isinstance(value, list):
                flat[f"{prefix}{name}"] = json.dumps(value)
            else:
                flat[f"{prefix}{name}"] = value

    visit({k: v for k, v in row.items() if k not in CURVES}, "")
    return flat


def table(results: Iterable[RunResult]):
    """A pandas DataFrame with one row per result (see the module docstring for columns)."""
    import pandas as pd

    rows = [flatten(r.to_row()) for r in results]
    frame = pd.DataFrame(rows)
    # JSON null -> NaN for numeric fields (a failed run's loss), so the columns stay float.
    for name in ("loss", "loss_se"):
        if name in frame:
            frame[name] = frame[name].astype(float)
    # A column mixing types (an option that is a number in one run and text in another) has
    # no parquet type: keep it as text.
    for name in frame.columns:
        column = frame[name]
        if column.dtype == "object" and len({type(v) for v in column.dropna()}) > 1:
            frame[name] = column.where(column.isna(), column.astype(str))
    return frame


class Store:
    """A results directory (see the module docstring). Reading is always safe; writing
    (`put`, `write_table`, `clean`) is for the process that holds `lock()`."""

    def __init__(self, path: str | os.PathLike):
        """ValueError for an empty path (it would be the current directory) or the path of
        an existing file (a store is a directory)."""
        if not os.fspath(path):
            raise ValueError("results store path is empty: name a directory, e.g. results/my-grid")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"results store {self.path} is an existing file, not a directory: "
                             "a store is a directory of run files; name another path")
        self.runs = self.path / RUNS

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _file(self, key: str) -> Path:
        return self.runs / f"{key}.json"

    def keys(self) -> list[str]:
        """Keys of the stored runs, sorted (temp files from killed writes are ignored)."""
        if not self.runs.is_dir():
            return []
        return sorted(p.stem for p in self.runs.glob("*.json") if not p.name.startswith("."))

    def get(self, key: str) -> RunResult | None:
        """The stored result for `key`, or None; DamagedResultError naming the file if it
        is not a valid result (see `result_problem`)."""
        path = self._file(key)
        try:
            data = path.read_bytes()  # decoded below: a stray byte is damage, not an error
        except FileNotFoundError:
            return None
        try:
            result = json.loads(data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DamagedResultError(f"{path}: not a valid result file (not JSON: {e})") from None
        problem = result_problem(result, key)
        if problem:
            raise DamagedResultError(f"{path}: not a valid result file (it {problem})")
        try:
            return RunResult.from_row(result)
        except (TypeError, ValueError) as e:
            raise DamagedResultError(f"{path}: not a valid result file ({e})") from None

    def results(self, *, strict: bool = True) -> list[RunResult]:
        """Every stored result, in key order. A damaged run file raises DamagedResultError
        when `strict`; otherwise it is skipped with a DamagedResultWarning naming it."""
        results = []
        for key in self.keys():
            try:
                result = self.get(key)
            except DamagedResultError as e:
                if strict:
                    raise
                warnings.warn(f"skipped {e}", DamagedResultWarning, stacklevel=2)
                continue
            if result is not None:  # None: removed since keys() listed it
                results.append(result)
        return results

    def set_aside(self) -> list[Path]:
        """Move every damaged run file to runs/damaged/ (never deleted; an earlier file of the
        same name is kept too), with a DamagedResultWarning naming each; returns the new
        paths. For the writer: the points become missing, so a sweep runs them again."""
        moved = []
        for key in self.keys():
            try:
                self.get(key)
            except DamagedResultError as e:
                aside = self.runs / DAMAGED
                aside.mkdir(exist_ok=True)
                target, n = aside / f"{key}.json", 1
                while target.exists():
                    target, n = aside / f"{key}.{n}.json", n + 1
                os.rename(self._file(key), target)
                sync_dir(self.runs)
                sync_dir(aside)
                warnings.warn(f"{e}; moved to {target}, the point counts as missing",
                              DamagedResultWarning, stacklevel=2)
                moved.append(target)
        return moved

    def put(self, result: RunResult) -> None:
        """Store one result (replacing any run with the same key), atomically."""
        self.runs.mkdir(parents=True, exist_ok=True)
        data = dumps(result, indent=1).encode()
        _write_atomic(self._file(result.key), lambda f: f.write(data))

    def write_table(self, results: Iterable[RunResult] | None = None) -> None:
        """Rewrite results.parquet from `results` (default: the stored runs), atomically.

        Rows are in key order, so the same runs always give the same bytes, and a table that
        would not change is not rewritten: reusing a committed store leaves it unmodified."""
        rows = sorted(self.results() if results is None else results, key=lambda r: r.key)
        buffer = io.BytesIO()
        table(rows).to_parquet(buffer, index=False)
        data, path = buffer.getvalue(), self.path / TABLE
        if path.is_file() and path.read_bytes() == data:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, lambda f: f.write(data))

    def clean(self) -> list[Path]:
        """Remove temp files left by killed writes; returns what was removed."""
        stray = [
            p for d in (self.path, self.runs) if d.is_dir() for p in d.glob(f".*{_TMP_SUFFIX}")
        ]
        for p in stray:
            p.unlink(missing_ok=True)
        return stray

    @contextlib.contextmanager
    def lock(self) -> Iterator[Store]:
        """Hold the store's write lock (released by the OS even if the process is killed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusyError(
                    f"store {self.path} is being written by another process "
                    "(e.g. a running sweep); wait for it to finish"
                ) from None
            try:
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def load(store: str | os.PathLike | Store, *, allow_empty: bool = False, strict: bool = False):
    """Every run of a store as a pandas DataFrame, one row per run (read from the JSON files,
    the source of truth). An empty or missing store is a ValueError naming its path, unless
    `allow_empty` (then an empty DataFrame). A damaged run file is skipped with a
    DamagedResultWarning naming it, or raises DamagedResultError when `strict`."""
    store = store if isinstance(store, Store) else Store(store)
    results = store.results(strict=strict)
    if not results and not allow_empty:
        raise ValueError(
            f"results store {store.path} has no runs (run a sweep into it first, "
            "or pass allow_empty=True)"
        )
    return table(results)
