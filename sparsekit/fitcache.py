"""A disk cache of fitted laws, so that the notebooks of one book build fit each law once.

`fitting.fit` spends nearly all its time in the optimiser (`fitting._fit_law`): the fit
itself and, with `bootstrap=B`, B refits on resampled data. This module stores those laws
and nothing else, as JSON: the rest of a `FitResult` (objective, residuals, diagnostics,
undetermined, intervals) is recomputed from them by the same code as always, so a hit
returns exactly the `FitResult` a fresh fit does.

Off unless the environment variable SPARSEKIT_FIT_CACHE (ENV) names a folder;
`scripts/build_book.py` sets it to the checkout's `.cache/fits` for a build, so every
notebook (each in its own kernel) shares it. Removing the folder clears it.

A key (`key`) is the SHA-256 of
- the data after validation: S, N, D and loss, their dtype, shape and exact bytes;
- the law (built-in laws of `sparsekit.laws.LAWS` only; another Law subclass is not cached)
  and its options (e.g. `schedule=`: a module-level function, keyed by its name and source;
  an option of another kind turns the cache off for that fit);
- every setting the optimiser sees: delta, log, grid, starts, and for the bootstrap, seed;
- the code version (`code_version`): FORMAT and the source of fitting.py, laws.py,
  costs.py, schedules.py and this file, plus the numpy and scipy versions. Any change to them is a
  new key, so a changed fitter never reads an older one's results.

The bootstrap's entry leaves out B: the refits are drawn one after another from one seeded
generator, so the first B of a larger bootstrap are the B of a smaller one (each entry
records the draw, `attempts`, at which each refit came, which `fitting._bootstrap` checks).
A chapter with 20 refits thus reuses one with 100, and one with 100 reuses the first 20.

An entry is one file, `<key>.json`, written to a temporary file and renamed into place.
The reader takes only the exact layout written here (a law's fields as numbers, nothing
executable); anything else, or a file it cannot read, counts as absent and is recomputed
and rewritten. Each lookup appends one line to `events.jsonl` in the folder: the laws it
computed and reused, and the value of SOURCE_ENV, which the book's build sets to the notebook
a kernel runs (`event_totals` sums them, for the build's log, also per notebook when the
build runs several at once).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsekit.laws import LAWS, Law

ENV = "SPARSEKIT_FIT_CACHE"
SOURCE_ENV = "SPARSEKIT_FIT_SOURCE"  # who looked a fit up (e.g. a notebook), for the events
FORMAT = 1  # the layout of an entry; bump when it changes
EVENTS = "events.jsonl"
MAX_ENTRY_BYTES = 64 * 2**20  # a larger file is not read
_PACKAGE = Path(__file__).resolve().parent
# The code a fit's result depends on (the fitter, its batched solver, the laws, the schedules
# the average law integrates: `costs.cubic_schedule` builds a `schedules.Cubic`) and this
# module itself.
SOURCES = ("fitting.py", "solver.py", "laws.py", "costs.py", "schedules.py", "fitcache.py")

# This process's lookups: "computed" and "reused" laws (optimiser runs), "unreadable" entries,
# "unstorable" results (e.g. a NaN parameter that JSON would not give back equal).
stats: Counter[str] = Counter()


def directory() -> Path | None:
    """The cache folder, or None when the cache is off (ENV unset, empty, "0" or "off")."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("", "0", "off", "false", "no"):
        return None
    return Path(value)


@functools.cache
def code_version() -> str:
    """A hash of everything but the data and settings that a fit's result depends on."""
    import scipy

    h = hashlib.sha256(f"format {FORMAT} numpy {np.__version__} scipy {scipy.__version__}"
                       .encode())
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (_PACKAGE / name).read_bytes() + b"\0")
    return h.hexdigest()


class _Uncacheable(Exception):
    """A setting that has no stable key."""


def _canonical(value: Any) -> Any:
    """A JSON-able, type-tagged form of a setting; _Uncacheable if it has none."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return ["bool", bool(value)]
    if isinstance(value, int | np.integer):
        return ["int", int(value)]
    if isinstance(value, float | np.floating):
        return ["float", float(value).hex()]  # exact, inf and nan included
    if isinstance(value, tuple | list):
        return ["seq", [_canonical(v) for v in value]]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise _Uncacheable(value)
        return ["map", [[k, _canonical(value[k])] for k in sorted(value)]]
    if inspect.isfunction(value) and "<" not in value.__qualname__:  # no lambda, no closure
        try:
            source = inspect.getsource(value)
        except (OSError, TypeError) as e:
            raise _Uncacheable(value) from e
        digest = hashlib.sha256(source.encode()).hexdigest()
        return ["function", value.__module__, value.__qualname__, digest]
    raise _Uncacheable(value)


def key(kind: str, arrays: Sequence[np.ndarray], law_cls: type[Law],
        options: Mapping[str, Any], **settings: Any) -> str | None:
    """The entry of a fit of `law_cls` (with linear_form `options`) to `arrays` (S, N, D,
    loss) under `settings`; None when the cache is off or the fit cannot be keyed."""
    if directory() is None or LAWS.get(getattr(law_cls, "name", "")) is not law_cls:
        return None
    try:
        head = {"format": FORMAT, "code": code_version(), "kind": kind, "law": law_cls.name,
                "options": _canonical(dict(options)), "settings": _canonical(settings)}
    except _Uncacheable:
        return None
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(json.dumps([array.dtype.str, list(array.shape)]).encode())
        h.update(array.tobytes())
    return h.hexdigest()


# --- laws as JSON ------------------------------------------------------------------------------


def _stored(field: dataclasses.Field) -> str | None:
    """How a law's field is stored: "float" (a fitted parameter), "floats" (a fixed tuple such
    as the multiplier law's levels), or None (a fixed setting such as the average law's
    schedule, which comes from the fit's options or the field's default)."""
    if not field.metadata.get("fixed"):
        return "float"
    return "floats" if isinstance(field.default, tuple) else None


def _encode(law: Law) -> dict[str, Any]:
    out = {}
    for field in dataclasses.fields(law):
        kind, value = _stored(field), getattr(law, field.name)
        if kind == "float":
            out[field.name] = float(value)
        elif kind == "floats":
            out[field.name] = [float(v) for v in value]
    return out


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _decode(law_cls: type[Law], fields: Any, options: Mapping[str, Any]) -> Law:
    """The law stored as `fields`; ValueError (or TypeError) unless exactly the layout of
    `_encode`."""
    if not isinstance(fields, dict):
        raise ValueError("a law must be an object")
    kinds = {f.name: _stored(f) for f in dataclasses.fields(law_cls) if f.init}
    if set(fields) != {name for name, kind in kinds.items() if kind}:
        raise ValueError(f"unexpected fields {sorted(fields)}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(law_cls):
        kind = kinds.get(field.name)
        if kind == "float":
            values[field.name] = _number(fields[field.name])
        elif kind == "floats":
            if not isinstance(fields[field.name], list):
                raise ValueError(f"{field.name} must be a list")
            values[field.name] = tuple(_number(v) for v in fields[field.name])
        elif field.init:
            values[field.name] = options.get(field.name, field.default)
    return law_cls(**values)


# --- entries ------------------------------------------------------------------------------------


def load(key: str | None, law_cls: type[Law], options: Mapping[str, Any]
         ) -> tuple[tuple[Law, ...], tuple[int, ...]] | None:
    """(laws, attempts) stored under `key`, or None: no key, no entry, or one this module did
    not write (counted in stats["unreadable"], then recomputed and overwritten)."""
    folder = directory()
    if key is None or folder is None:
        return None
    path = folder / f"{key}.json"
    try:
        if path.stat().st_size > MAX_ENTRY_BYTES:
            raise ValueError("too large")
        entry = json.loads(path.read_text())
        if not isinstance(entry, dict) or set(entry) != {"format", "key", "law", "laws",
                                                         "attempts"}:
            raise ValueError("not an entry")
        if entry["format"] != FORMAT or entry["key"] != key or entry["law"] != law_cls.name:
            raise ValueError("another entry")
        laws, attempts = entry["laws"], entry["attempts"]
        if not (isinstance(laws, list) and isinstance(attempts, list)
                and len(laws) == len(attempts) and laws):
            raise ValueError("laws and attempts must be lists of one non-zero length")
        if not all(type(a) is int and a >= 0 for a in attempts) or any(
                a >= b for a, b in itertools.pairwise(attempts)):
            raise ValueError("attempts must be increasing non-negative integers")
        return tuple(_decode(law_cls, law, options) for law in laws), tuple(attempts)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        stats["unreadable"] += 1
        return None


def store(key: str | None, laws: Sequence[Law], attempts: Sequence[int],
          options: Mapping[str, Any]) -> bool:
    """Write `laws` under `key` (temporary file, then rename); False if the cache is off, the
    laws would not read back equal (e.g. a NaN parameter) or the folder is not writable."""
    folder = directory()
    if key is None or folder is None or not laws:
        return False
    law_cls = type(laws[0])
    entry = {"format": FORMAT, "key": key, "law": law_cls.name,
             "laws": [_encode(law) for law in laws], "attempts": [int(a) for a in attempts]}
    try:
        text = json.dumps(entry, allow_nan=True)
        back = json.loads(text)["laws"]
        if any(type(law) is not law_cls or _decode(law_cls, b, options) != law
               for law, b in zip(laws, back, strict=True)):
            raise ValueError("does not read back equal")
    except (ValueError, TypeError):
        stats["unstorable"] += 1
        return False
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".tmp-", suffix=".json",
                                         delete=False) as f:
            tmp = f.name
            f.write(text)
        os.replace(tmp, folder / f"{key}.json")
        return True
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return False


def record(kind: str, law_cls: type[Law], key: str | None, computed: int, reused: int) -> None:
    """Count a lookup in `stats` and, with the cache on, append it to EVENTS."""
    stats["computed"] += computed
    stats["reused"] += reused
    folder = directory()
    if key is None or folder is None:
        return
    line = json.dumps({"pid": os.getpid(), "source": os.environ.get(SOURCE_ENV, ""),
                       "kind": kind, "law": law_cls.name, "key": key[:16],
                       "computed": computed, "reused": reused})
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / EVENTS, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def events_size(folder: Path | None) -> int:
    """The length of `folder`'s EVENTS so far: the offset for `event_totals` of later ones."""
    try:
        return (folder / EVENTS).stat().st_size if folder is not None else 0
    except OSError:
        return 0


def event_totals(folder: Path | None, offset: int = 0, source: str | None = None
                 ) -> tuple[dict[str, int], int]:
    """Totals of the EVENTS lines of `folder` from byte `offset` on (only those of `source`,
    the SOURCE_ENV of the process that looked the fit up, when given), and the offset after
    them: "calls" (fits looked up), "hits" (served whole), "computed" and "reused" (laws).
    No folder (the cache off): {"off": 1}."""
    totals = dict.fromkeys(("calls", "hits", "computed", "reused"), 0)
    if folder is None:
        return {"off": 1}, offset
    try:
        with open(folder / EVENTS, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return totals, offset
    end = data.rfind(b"\n") + 1  # a line still being written is left for the next call
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
            computed, reused = int(event["computed"]), int(event["reused"])
        except (ValueError, KeyError, TypeError):
            continue
        if source is not None and event.get("source", "") != source:
            continue
        totals["calls"] += 1
        totals["hits"] += computed == 0
        totals["computed"] += computed
        totals["reused"] += reused
    return totals, offset + end


def describe(totals: Mapping[str, int]) -> str:
    """One line for a build's log, e.g. "fits: 12 of 14 from the cache; laws 5 computed,
    1212 reused"."""
    if totals.get("off"):
        return "fit cache off"
    if not totals["calls"]:
        return "fits: none"
    return (f"fits: {totals['hits']} of {totals['calls']} from the cache; laws "
            f"{totals['computed']} computed, {totals['reused']} reused")

