"""Validation of the notebooks' parameters: each check raises a ValueError naming the
parameter unless its value is of the kind the notebook needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparsekit.sweep import GridError, load_grid


def check_flag(name: str, value: Any) -> None:
    """ValueError naming `name` unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """ValueError naming `name` unless `value` is an integer in [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """ValueError naming `name` unless `value` is one of `allowed`."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_choices(name: str, values: Any, allowed: Sequence[str]) -> None:
    """ValueError naming `name` unless `values` is a non-empty list of distinct `allowed`."""
    ok = isinstance(values, list | tuple) and values and len(set(values)) == len(values)
    if not ok or not all(isinstance(v, str) and v in allowed for v in values):
        raise ValueError(
            f"{name} must be a non-empty list of distinct {list(allowed)}, got {values!r}"
        )


def check_store(name: str, value: Any) -> None:
    """ValueError naming `name` unless `value` can be a results store directory."""
    if not isinstance(value, str) or not value or Path(value).is_file():
        raise ValueError(
            f"{name} must be a results store directory (relative to notebooks/), got {value!r}"
        )


def check_stores(name: str, values: Any) -> None:
    """ValueError naming `name` unless `values` is a list (maybe empty) of existing results
    store directories."""
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, str) and Path(v).is_dir() for v in values
    ):
        raise ValueError(
            f"{name} must be a list of existing results store directories (relative to "
            f"notebooks/), got {values!r}"
        )


def check_grid(name: str, value: Any, family: str) -> None:
    """ValueError naming `name` unless `value` is a grid YAML file of `family` runs."""
    if not isinstance(value, str) or not Path(value).is_file():
        raise ValueError(
            f"{name} must be an existing grid YAML file (relative to notebooks/), got {value!r}"
        )
    try:
        families = {cfg.model.family for cfg in load_grid(value).configs()}
    except GridError as e:
        raise ValueError(f"{name} must be a valid grid file: {e}") from None
    if families != {family}:
        raise ValueError(f"{name} must be a grid of {family} runs, {value} has {sorted(families)}")
