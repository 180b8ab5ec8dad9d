"""Validation of the notebooks' parameters: each check raises a ValueError naming the
parameter unless its value is of the kind the notebook needs.

Store and grid parameters default to None: the family's committed store or grid, or the smoke
one when `smoke`. A path the user gives is used as given, smoke or not, and must exist; an
empty string skips a store on purpose. Flags, integers and choices are checked as the configs
check theirs (`sparsekit.validate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparsekit.analysis.runs import SMOKE_RESULTS
from sparsekit.sweep import GridError, load_grid
from sparsekit.validate import check_choice as check_choice  # re-exported for the notebooks
from sparsekit.validate import check_flag as check_flag
from sparsekit.validate import check_int as check_int

RESULTS = "../results"  # the committed results stores, relative to notebooks/
SWEEPS = "../sweeps"  # the grid files, relative to notebooks/
# Each family's default grid: its store is RESULTS/<name>, its grid SWEEPS/<name>.yaml. The
# one place the chapters' headline grids are chosen (smoke builds use <family>-smoke).
DEFAULT_GRIDS = {"t5": "t5-pinned", "vit": "vit-paper"}
# The T5 grid on the stdlib corpus (dense embeddings, N at the width quantum), archived: the
# n:m and pruned-pretrained runs were made beside it, so their chapters read it by default.
STDLIB_T5 = "t5"


def default_name(family: str) -> str:
    """The store and grid name a family's parameters default to (`DEFAULT_GRIDS`); a name of
    its own for anything else (e.g. "t5-nm")."""
    return DEFAULT_GRIDS.get(family, family)


def check_choices(name: str, values: Any, allowed: Sequence[str]) -> None:
    """ValueError naming `name` unless `values` is a non-empty list of distinct `allowed`."""
    ok = isinstance(values, list | tuple) and values and len(set(values)) == len(values)
    if not ok or not all(isinstance(v, str) and v in allowed for v in values):
        raise ValueError(
            f"{name} must be a non-empty list of distinct {list(allowed)}, got {values!r}"
        )


def store_parameter(
    name: str, value: Any, family: str, smoke: bool, *, create: bool = False,
    default: str | None = None,
) -> str | None:
    """The results store that parameter `name` names: `value` itself (never replaced, smoke
    or not), or when None the family's store (RESULTS/<default>, by default
    RESULTS/<default_name(family)>; SMOKE_RESULTS/<family> when `smoke`). "" skips the
    family: None is returned (not with `create`).

    ValueError naming `name` unless the path is an existing directory, or with `create` (a
    store a sweep writes) a path where one can be made (not a file).
    """
    default = default or default_name(family)
    if value is None:
        value = f"{SMOKE_RESULTS}/{family}" if smoke else f"{RESULTS}/{default}"
    elif value == "" and not create:
        return None
    if create:
        if not isinstance(value, str) or not value or Path(value).is_file():
            raise ValueError(f"{name} must be a results store directory (relative to "
                             f"notebooks/; created if missing) or None, got {value!r}")
    elif not isinstance(value, str) or not Path(value).is_dir():
        raise ValueError(f"{name} must be an existing results store directory (relative to "
                         f"notebooks/), None for {RESULTS}/{default}, or \"\" "
                         f"to skip {family}; got {value!r}")
    return value


def grid_parameter(name: str, value: Any, family: str, smoke: bool) -> str:
    """The grid file that parameter `name` names: `value` itself (never replaced, smoke or
    not), or when None the family's grid (SWEEPS/<default_name(family)>.yaml;
    <family>-smoke.yaml when `smoke`); checked by `check_grid`."""
    if value is None:
        stem = f"{family}-smoke" if smoke else default_name(family)
        value = f"{SWEEPS}/{stem}.yaml"
    check_grid(name, value, family)
    return value


def check_file(name: str, value: Any, *, optional: bool = False) -> None:
    """ValueError naming `name` unless `value` is the path (a string, relative to notebooks/)
    of an existing file, or None when `optional`."""
    if optional and value is None:
        return
    if not isinstance(value, str) or not Path(value).is_file():
        raise ValueError(f"{name} must be an existing file (relative to notebooks/)"
                         f"{' or None' if optional else ''}, got {value!r}")


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


def store_or_reason(name: str, value: Any, family: str, smoke: bool) -> tuple[str | None, str]:
    """(store, "") for a store parameter (`checks.store_parameter`), or (None, why not) for a
    family skipped on purpose ("") or whose default store (None) does not exist: then its
    claims are not testable, which is not an error. A path given that does not exist is."""
    try:
        store = store_parameter(name, value, family, smoke)
    except ValueError:
        if value is not None:
            raise
        return None, f"no {family} store at the default path (yet)"
    return store, "" if store is not None else f"{family} skipped ({name} is \"\")"
