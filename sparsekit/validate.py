"""Checks of one named setting: each raises a ValueError that names the setting, says what it
must be (type and allowed range) and shows the value it got.

    check_int("data.batch", "abc", 1)  ->  data.batch must be an integer >= 1, got 'abc'

The configs (`config`, the data sources' settings) and the notebooks' parameter checks
(`analysis.checks`) all use these, so a setting is described the same way wherever it is read.
Booleans are not numbers here (True is not the integer 1), and numbers must be finite.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from typing import Any


def _fail(name: str, what: str, value: Any, optional: bool) -> None:
    raise ValueError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")


def is_int(value: Any) -> bool:
    """Whether `value` is an integer (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether `value` is a finite int or float (a bool is not)."""
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_int(
    name: str, value: Any, low: int | None = None, high: int | None = None, *,
    optional: bool = False,
) -> None:
    """ValueError naming `name` unless `value` is an integer in [low, high] (None: unbounded),
    or None when `optional`."""
    _check_range(name, value, is_int(value), "integer", low, high, False, False, optional)


def check_number(
    name: str, value: Any, low: float | None = None, high: float | None = None, *,
    low_open: bool = False, high_open: bool = False, optional: bool = False,
) -> None:
    """ValueError naming `name` unless `value` is a finite number in the interval from `low`
    to `high` (None: unbounded; `*_open`: that end excluded), or None when `optional`.
    An int is accepted (a config then holds it as the float it names: `as_declared`)."""
    _check_range(name, value, is_number(value), "number", low, high, low_open, high_open,
                 optional)


def _check_range(
    name: str, value: Any, typed: bool, kind: str, low: float | None, high: float | None,
    low_open: bool, high_open: bool, optional: bool,
) -> None:
    """The check behind check_int ("integer") and check_number ("number")."""
    if optional and value is None:
        return
    a = "an" if kind == "integer" else "a"
    num = str if kind == "integer" else "{:g}".format  # 4294967295, not 4.29497e+09
    if low is not None and high is not None:
        what = (f"an integer from {low} to {high}" if kind == "integer" else
                f"a number in {'(' if low_open else '['}{num(low)}, {num(high)}"
                f"{')' if high_open else ']'}")
    elif low is not None:
        what = f"{a} {kind} {'>' if low_open else '>='} {num(low)}"
    elif high is not None:
        what = f"{a} {kind} {'<' if high_open else '<='} {num(high)}"
    else:
        what = "an integer" if kind == "integer" else "a finite number"
    ok = typed and (low is None or (value > low if low_open else value >= low)) and (
        high is None or (value < high if high_open else value <= high))
    if not ok:
        _fail(name, what, value, optional)


def check_flag(name: str, value: Any) -> None:
    """ValueError naming `name` unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """ValueError naming `name` unless `value` is one of `allowed`."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_text(name: str, value: Any, *, optional: bool = False) -> None:
    """ValueError naming `name` unless `value` is a non-empty string (or None when
    `optional`)."""
    if optional and value is None:
        return
    if not isinstance(value, str) or not value:
        _fail(name, "a non-empty string", value, optional)


def check_typed(name: str, value: Any, kind: Any) -> None:
    """ValueError naming `name` unless `value` has the annotated type `kind`: int, float, str
    or bool, or one of them `| None` (range checks are the caller's)."""
    args = typing.get_args(kind)
    optional = type(None) in args
    if optional:
        if value is None:
            return
        (kind,) = [a for a in args if a is not type(None)]
    if kind is bool:
        check_flag(name, value)
    elif kind is int:
        check_int(name, value, optional=optional)
    elif kind is float:
        check_number(name, value, optional=optional)
    elif kind is str:
        check_text(name, value, optional=optional)
    else:
        raise TypeError(f"{name}: no check for type {kind!r}")


def as_declared(value: Any, kind: Any) -> Any:
    """`value` as a setting of annotated type `kind` holds it: an int given where a float is
    declared (`float`, `float | None`) becomes that float, so 0, 0.0 and 0e0 are one value and
    give one config key; anything else is returned as it is. Call after the check."""
    floats = kind is float or float in typing.get_args(kind)
    return float(value) if floats and is_int(value) else value
