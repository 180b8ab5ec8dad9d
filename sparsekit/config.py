"""Run configuration: frozen, nested dataclasses validated at construction.

A `RunConfig` fully determines a training run (with the code version and the machine). Its
`key()` is a stable hash of `to_dict()`, used as the results-store key. Fields left as None
take the family's recipe default at construction, so `to_dict()` always shows the values used.
Units: D (`Data.amount`) is tokens for T5 (encoder input tokens) and images for ViT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sparsekit.masks import check_sparsity, parse_pattern

FAMILIES = ("vit", "t5")
OPTIMIZERS = ("adamw", "adafactor", "sparse_adafactor")

# Recipe defaults per family (see book/methods.md): small-scale versions of the paper's setups.
# Chosen by the recipe checks (sweeps/t5-lr.yaml, vit-lr.yaml, vit-batch.yaml; their tables are
# in the book's sweep chapters). T5: the best peak LR fell as 1/width (3e-2 at width 16, 1e-2 at
# 48, 3e-3 at 136), so peak LR = lr * lr_width / width. ViT: 3e-3 was best or within 0.04 nats
# of the best at every checked width, and smaller batches (more steps) helped at equal images.
RECIPES: dict[str, dict[str, Any]] = {
    "vit": {"batch": 32, "lr": 3e-3, "lr_width": 0, "b2": 0.99, "weight_decay": 0.1,
            "decay_to": 0.0, "z_loss": 0.0},
    "t5": {"batch": 32, "lr": 1e-2, "lr_width": 48, "b2": 0.98, "weight_decay": 0.0,
           "decay_to": 0.1, "z_loss": 1e-4},
}


def _filled(obj: Any, family: str) -> Any:
    """A copy of a frozen dataclass with None fields set to the family's recipe defaults."""
    missing = {f.name: RECIPES[family][f.name] for f in dataclasses.fields(obj)
               if getattr(obj, f.name) is None and f.name in RECIPES[family]}
    return dataclasses.replace(obj, **missing)


@dataclass(frozen=True)
class Model:
    family: str  # "vit" or "t5"
    nonzero: int | None = None  # target N: non-zero non-embedding parameters (or give width)
    width: int | None = None  # model width d; overrides `nonzero` when given
    depth: int | None = None  # layers per stack; None = the family default
    head_init: float = 0.0  # ViT head kernel std at init, in units of 1/sqrt(width); 0: a
    # zero head (initial loss ln C). Added later: see LATER_FIELDS

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if not (isinstance(self.head_init, int | float) and 0 <= self.head_init <= 10):
            raise ValueError(f"head_init must be a number in [0, 10], got {self.head_init!r}")
        if self.head_init and self.family != "vit":
            raise ValueError(f"head_init is a ViT option; {self.family} takes 0, got "
                             f"{self.head_init!r}")
        if (self.nonzero is None) == (self.width is None):
            raise ValueError("give exactly one of nonzero (target N, > 0) or width (> 0)")
        for name in ("nonzero", "width", "depth"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Sparsity:
    target: float = 0.0  # S: final sparsity of the block matrices, in [0, 1)
    pattern: str = "unstructured"  # "unstructured", "global" or "N:M" (e.g. "2:4")
    schedule: str = "cubic"  # "cubic" (gradual), "oneshot" or "constant"
    start: float = 0.25  # pruning window start, fraction of training
    end: float = 0.75  # pruning window end, fraction of training
    every: int = 100  # mask recomputation interval, steps
    embed_rule: bool = False  # prune embeddings/head to 1 - sqrt(1 - S)

    def __post_init__(self) -> None:
        check_sparsity(self.target, "sparsity")
        pattern = parse_pattern(self.pattern)
        if pattern.kind == "nm":
            # n:m fixes S = 1 - n/m; target 0 means "the pattern's sparsity".
            if self.target not in (0.0, pattern.sparsity):
                raise ValueError(f"sparsity must be 1 - n/m = {pattern.sparsity} for pattern "
                                 f"{self.pattern!r} (or 0 to take it), got {self.target}")
            object.__setattr__(self, "target", pattern.sparsity)


@dataclass(frozen=True)
class Optim:
    name: str = "adamw"  # "adamw", "adafactor" or "sparse_adafactor"
    lr: float | None = None  # peak learning rate at width `lr_width`
    lr_width: int | None = None  # width at which `lr` is the peak; 0: the same lr at every width
    warmup: float = 0.05  # linear warmup, fraction of training
    decay_to: float | None = None  # final LR as a fraction of peak (cosine decay to the end)
    b1: float = 0.9
    b2: float | None = None
    weight_decay: float | None = None  # decoupled, on block and embed matrices only
    clip: float = 1.0  # global gradient-norm clip (after masking)
    z_loss: float | None = None  # T5 logit z-loss coefficient

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer name must be one of {OPTIMIZERS}, got {self.name!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.lr_width is not None and not (isinstance(self.lr_width, int)
                                              and self.lr_width >= 0):
            raise ValueError(f"lr_width must be an integer width >= 0 (0: no scaling), got "
                             f"{self.lr_width!r}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0 (a global gradient-norm bound), got {self.clip!r}")
        for name in ("b1", "b2"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.decay_to is not None and not 0.0 <= self.decay_to <= 1.0:
            raise ValueError(f"decay_to must be a fraction of the peak LR in [0, 1], got "
                             f"{self.decay_to!r}")

    def peak_lr(self, width: int) -> float:
        """The peak learning rate of a model of this width: lr * lr_width / width, or lr
        when lr_width is 0 (or unset)."""
        return self.lr * self.lr_width / width if self.lr_width else self.lr


@dataclass(frozen=True)
class Data:
    amount: int  # D: training tokens (T5, encoder inputs) or images (ViT); > 0
    batch: int | None = None  # examples per step
    seed: int = 0  # data stream seed (independent of the init seed)
    eval_examples: int = 512  # held-out examples for the final validation loss
    options: dict = field(default_factory=dict)  # source options, e.g. input_length, path

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or self.amount < 1:
            raise ValueError(f"data amount D must be a positive integer, got {self.amount!r}")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be a positive integer, got {self.batch!r}")
        if self.eval_examples < 1:
            raise ValueError(f"eval_examples must be >= 1, got {self.eval_examples}")


# Fields added after results stores were keyed by `RunConfig.key()`: `to_dict()` leaves each
# out while it holds its default, so every config written before the field keeps its key.
LATER_FIELDS: dict[str, dict[str, Any]] = {"model": {"head_init": 0.0}}


@dataclass(frozen=True)
class RunConfig:
    model: Model
    data: Data
    sparsity: Sparsity = Sparsity()
    optim: Optim = Optim()
    seed: int = 0  # parameter-init seed
    init_from: str | None = None  # dense orbax checkpoint to start from (then prune it)
    eval_every: int = 0  # record validation loss every this many steps (0: only at the end)

    def __post_init__(self) -> None:
        object.__setattr__(self, "optim", _filled(self.optim, self.model.family))
        object.__setattr__(self, "data", _filled(self.data, self.model.family))

    def to_dict(self) -> dict[str, Any]:
        """Every field, nested; a field of LATER_FIELDS only when it differs from its default."""
        d = dataclasses.asdict(self)
        for group, defaults in LATER_FIELDS.items():
            for name, default in defaults.items():
                if d[group][name] == default:
                    del d[group][name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        parts = {"model": Model, "data": Data, "sparsity": Sparsity, "optim": Optim}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        kw = {k: parts[k](**v) if k in parts and isinstance(v, dict) else v for k, v in d.items()}
        return cls(**kw)

    def key(self) -> str:
        """Stable 16-hex-digit hash of the config: the results-store key."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **dotted: Any) -> RunConfig:
        """A copy with overrides by dotted name, e.g. replace(**{"sparsity.target": 0.5})."""
        d = self.to_dict()
        for name, value in dotted.items():
            node = d
            *parents, leaf = name.split(".")
            for p in parents:
                node = node[p]
            if leaf not in node:
                raise ValueError(f"unknown config field {name!r}")
            node[leaf] = value
        return RunConfig.from_dict(d)
