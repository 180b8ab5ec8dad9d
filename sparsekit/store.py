"""The results store: one directory, one JSON file per run, one tidy table derived from them.

Layout of a store directory DIR:

    DIR/runs/<key>.json   the full result of one run (curves included): the source of truth
    DIR/results.parquet   one row per run, scalar columns only, rebuilt from the JSON files
    DIR/.lock             held (flock) by the one process that writes, e.g. a running sweep

`<key>` is `RunConfig.key()`. Every file is written atomically (a temp file in the same
directory, fsync, os.replace), so a killed writer leaves either the old file or the new one,
plus at worst a stray `.*.tmp` file that readers ignore and the next writer removes. The JSON
is strict (NaN and infinities are written as null), so any JSON reader can use it.

Table columns: every scalar of the result row; nested dicts are flattened with dots
(`config.optim.lr`, `versions.jax`, `machine.host`); lists inside the config are JSON text;
the curves (`curve`, `val_curve`) stay in the JSON files only.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

RUNS = "runs"
TABLE = "results.parquet"
CURVES = ("curve", "val_curve")  # list-valued result fields kept out of the table
_TMP_SUFFIX = ".tmp"


class StoreBusyError(RuntimeError):
    """Another process holds the store's write lock."""


def strict_json(value: Any) -> Any:
    """`value` with non-finite floats replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def dumps(result: dict[str, Any], **kw: Any) -> str:
    """A result as strict JSON text."""
    return json.dumps(strict_json(result), allow_nan=False, **kw)


def _write_atomic(path: Path, write: Any) -> None:
    """Call `write(binary file)` on a temp file next to `path`, then move it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
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
    # Make the rename itself durable (a crash after replace must not resurrect the old file).
    dir_fd = os.open(path.parent, os.O_RDONLY)
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


def table(results: Iterable[dict[str, Any]]):
    """A pandas DataFrame with one row per result (see the module docstring for columns)."""
    import pandas as pd

    rows = [flatten(r) for r in results]
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
        self.path = Path(path)
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

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored result for `key`, or None."""
        try:
            text = self._file(key).read_text()
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{self._file(key)}: not a valid result file ({e})") from e

    def results(self) -> list[dict[str, Any]]:
        """Every stored result, in key order."""
        return [r for r in map(self.get, self.keys()) if r is not None]

    def put(self, result: dict[str, Any]) -> None:
        """Store one result (replacing any run with the same key), atomically."""
        self.runs.mkdir(parents=True, exist_ok=True)
        data = dumps(result, indent=1).encode()
        _write_atomic(self._file(result["key"]), lambda f: f.write(data))

    def write_table(self, results: Iterable[dict[str, Any]] | None = None) -> None:
        """Rewrite results.parquet from `results` (default: the stored runs), atomically.

        Rows are in key order, so the same runs always give the same bytes, and a table that
        would not change is not rewritten: reusing a committed store leaves it unmodified."""
        rows = sorted(self.results() if results is None else results, key=lambda r: r["key"])
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


def load(store: str | os.PathLike | Store, *, allow_empty: bool = False):
    """Every run of a store as a pandas DataFrame, one row per run (read from the JSON files,
    the source of truth). An empty or missing store is a ValueError naming its path, unless
    `allow_empty` (then an empty DataFrame)."""
    store = store if isinstance(store, Store) else Store(store)
    results = store.results()
    if not results and not allow_empty:
        raise ValueError(
            f"results store {store.path} has no runs (run a sweep into it first, "
            "or pass allow_empty=True)"
        )
    return table(results)
