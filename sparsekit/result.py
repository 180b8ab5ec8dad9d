"""The result of one run: a frozen `RunResult`, its columns named once (`COLUMNS`).

A result is written to the store as one JSON object (`to_row()`) and read back with
`from_row`. The family, sparsity and pattern are kept once, in the config, and written beside
it as columns. A result does not always have every column: a run that produced nothing (an
exception, a crashed worker) has no measurements, and a run file written before a column
existed (`lock`, `peak_lr`, `failed_step`, `embed_nonzero`) lacks it. `absent` names the columns a result does
not have, and `to_row()` leaves them out, so every stored run file loads and tabulates as it
was written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sparsekit.config import PROTOCOLS

STATUSES = ("ok", "failed")  # a result's `status`
DERIVED = {  # column -> (config group, field): written beside the config, kept only in it
    "family": ("model", "family"),
    "sparsity": ("sparsity", "target"),
    "pattern": ("sparsity", "pattern"),
}


@dataclass(frozen=True)
class RunResult:
    """One run: its config, status, measurements and provenance (units per field)."""

    key: str  # RunConfig.key(): the store key
    config: Mapping[str, Any]  # RunConfig.to_dict()
    status: str  # one of STATUSES
    error: str | None = None  # why the run failed; None when ok
    loss: float | None = None  # final validation cross-entropy, nats per image / target token
    loss_se: float | None = None  # its standard error over the held-out batches
    N: int | None = None  # measured non-zero non-embedding parameters
    N_target: int | None = None  # the config's target N (None when set by width)
    dense_block: int | None = None  # block parameters of the dense-width model
    sparsity_measured: float | None = None  # zero fraction of the block matrices at the end
    total_params: int | None = None  # every parameter, zeros included
    nonzero_params: int | None = None  # every non-zero parameter
    embed_nonzero: int | None = None  # non-zero embedding and head parameters (not in N)
    width: int | None = None  # model width d
    D: int | None = None  # data seen: tokens (T5) or images (ViT)
    unit: str | None = None  # what D counts: "tokens" or "images"
    steps: int | None = None  # optimizer steps done
    failed_step: int | None = None  # first step with a non-finite loss; None if none
    batch: int | None = None  # examples per step
    peak_lr: float | None = None  # peak learning rate, after the width scaling
    flops_dense: float | None = None  # training FLOPs of the dense-width model
    flops_sparse: float | None = None  # training FLOPs charging only the non-zeros
    avg_density: float | None = None  # schedule's mean density over training
    curve: list | None = None  # [step, mean training loss of the chunk ending there]
    val_curve: list | None = None  # [step, validation loss] every config.eval_every steps
    wall_time_s: float = math.nan  # seconds from start to result
    data: Mapping[str, Any] | None = None  # the data source's settings and fingerprint
    code_version: str | None = None  # provenance.record(): git commit (-dirty)
    versions: Mapping[str, str] | None = None  # interpreter and library versions
    lock: Mapping[str, Any] | None = None  # uv.lock hash and drift
    machine: Mapping[str, Any] | None = None  # host, CPU model, device, XLA flags
    finished_at: str | None = None  # UTC ISO time
    traceback: str | None = None  # of the exception that failed the run, if one did
    absent: frozenset[str] = field(default=frozenset(), compare=False)  # columns it lacks

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}, got {self.status!r}")
        if not isinstance(self.config, Mapping):
            raise ValueError(f"config must be a mapping (RunConfig.to_dict()), got "
                             f"{self.config!r}")
        unknown = self.absent - set(COLUMNS)
        if unknown:
            raise ValueError(f"absent: {sorted(unknown)} are not columns")
        if self.status == "ok" and "loss" in self.absent:
            raise ValueError("a finished (ok) result needs its loss")

    @property
    def family(self) -> str:
        """The model family, "vit" or "t5" (config.model.family)."""
        return self._derived("family")

    @property
    def sparsity(self) -> float:
        """Target sparsity S (config.sparsity.target)."""
        return self._derived("sparsity")

    @property
    def protocol(self) -> str:
        """The comparison protocol (`config.Sparsity.protocol`): "paper" or
        "dense-embeddings"."""
        return PROTOCOLS[self.config["sparsity"]["embed_rule"]]

    @property
    def pattern(self) -> str:
        """Sparsity pattern (config.sparsity.pattern)."""
        return self._derived("pattern")

    def _derived(self, column: str) -> Any:
        group, name = DERIVED[column]
        return self.config[group][name]

    @classmethod
    def ok(cls, cfg: Any, **measured: Any) -> RunResult:
        """A finished run of `cfg` (a RunConfig) with every measurement (MEASURED)."""
        _check_measured(measured)
        return cls(cfg.key(), cfg.to_dict(), "ok", None, **measured,
                   absent=frozenset({"traceback"}))

    @classmethod
    def failed(cls, cfg: Any, error: str, *, traceback: str | None = None,
               **measured: Any) -> RunResult:
        """A failed run of `cfg`: with every measurement (MEASURED) when it trained until it
        diverged, or with only `wall_time_s` (and `traceback`) when it produced nothing."""
        if set(measured) <= {"wall_time_s"}:
            absent = set(MEASURED) - {"failed_step", "wall_time_s"}
        else:
            _check_measured(measured)
            absent = set()
        if traceback is None:
            absent.add("traceback")
        return cls(cfg.key(), cfg.to_dict(), "failed", error, traceback=traceback,
                   **measured, absent=frozenset(absent))

    def to_row(self) -> dict[str, Any]:
        """The result as one JSON-able dict, in COLUMNS order, its absent columns left out."""
        return {name: self._derived(name) if name in DERIVED else getattr(self, name)
                for name in COLUMNS if name not in self.absent}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunResult:
        """The result `to_row()` wrote (ValueError for an unknown column, or a family,
        sparsity or pattern that differs from the config's)."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        values = {k: v for k, v in row.items() if k not in DERIVED}
        result = cls(**values, absent=frozenset(set(COLUMNS) - set(row) - set(DERIVED)))
        for name in DERIVED.keys() & row.keys():
            if row[name] != result._derived(name):
                group, key = DERIVED[name]
                raise ValueError(f"{name} {row[name]!r} differs from the config's "
                                 f"{group}.{key} {result._derived(name)!r}")
        return result


def _check_measured(measured: Mapping[str, Any]) -> None:
    missing, extra = set(MEASURED) - set(measured), set(measured) - set(MEASURED)
    if missing or extra:
        raise TypeError(f"measurements: missing {sorted(missing)}, unexpected {sorted(extra)}")


_FIELDS = [f.name for f in dataclasses.fields(RunResult) if f.name != "absent"]
# The columns of a result, in the order a run file holds them.
COLUMNS: tuple[str, ...] = (*_FIELDS[:4], *DERIVED, *_FIELDS[4:])
# What a run measures (the ok constructor's arguments): all but identity, error, traceback.
MEASURED: tuple[str, ...] = tuple(_FIELDS[4:-1])
