"""Run configuration: frozen, nested dataclasses validated at construction.

A `RunConfig` fully determines a training run (with the code version and the machine). Its
`key()` is a stable hash of `to_dict()`, used as the results-store key. Fields left as None
take the family's recipe default at construction, so `to_dict()` always shows the values used.
Units: D (`Data.amount`) is tokens for T5 (encoder input tokens) and images for ViT.

Every setting is checked where the config is built, before anything runs: its type and range
(a ValueError names the dotted field, its allowed range and the value), the data source's
options (`sparsekit.data.source_config`), settings the optimizer would ignore, and whether the
model exists: the width a target N gives (within 2x), an n:m pattern that fits it, and
training that fits this machine's memory (`RunConfig.check_memory`).
`make_config` is the one way to build a config from a (partial) dict and overrides by dotted
name; the sweeps' grids, the command line and `RunConfig.replace` all use it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sparsekit import provenance
from sparsekit.data import SHARED, SourceConfig, source_config
from sparsekit.masks import parse_pattern
from sparsekit.models.families import (
    REGISTRY,
    TRAINING_BYTES_PER_PARAM,
    Family,
    census,
    exact_width,
    get_family,
    largest_width,
    training_bytes,
    width_for,
)
from sparsekit.schedules import SCHEDULES
from sparsekit.validate import (
    as_declared,
    check_choice,
    check_flag,
    check_int,
    check_number,
    check_text,
)

OPTIMIZERS = ("adamw", "adafactor", "sparse_adafactor")
# Optim fields an optimizer does not read: a config may only hold their defaults there (b1's
# field default, the recipe's b2 and weight_decay), which are recorded but change nothing.
IGNORED = {name: ("b1", "b2", "weight_decay") for name in ("adafactor", "sparse_adafactor")}
MAX_SEED = 2**32 - 1  # init seeds: 32-bit, as in most frameworks

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


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _declared(obj: Any) -> None:
    """Hold every number of frozen dataclass `obj` as its field declares (`as_declared`: an
    int in a float field becomes that float), so a key depends on the value, not on how it was
    written. Stored configs already hold floats there, so their keys are unchanged."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        object.__setattr__(obj, f.name, as_declared(getattr(obj, f.name), hints[f.name]))


def _gib(size: float) -> str:
    """Bytes in GiB for a message, e.g. "23.5 GiB"."""
    gib = size / 2**30
    return f"{gib:,.2f} GiB" if gib < 1e6 else f"{gib:.3g} GiB"


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
    exact: bool = False  # exact N: the mask keeps the dense twin's block count (the dense
    # model at the same `nonzero`), not the width quantum's. Added later: see LATER_FIELDS

    def __post_init__(self) -> None:
        check_choice("model.family", self.family, list(REGISTRY))
        check_number("model.head_init", self.head_init, 0, 10)
        if self.head_init and self.family != "vit":
            raise ValueError(f"model.head_init is a ViT setting; {self.family} takes 0, got "
                             f"{self.head_init!r}")
        for name in ("nonzero", "width", "depth"):
            check_int(f"model.{name}", getattr(self, name), 1, optional=True)
        if (self.nonzero is None) == (self.width is None):
            raise ValueError("model: give exactly one of nonzero (target N, an integer >= 1) "
                             "or width (an integer >= 1)")
        check_flag("model.exact", self.exact)
        if self.exact and self.nonzero is None:
            raise ValueError("model.exact matches the dense twin at the same target N: give "
                             "model.nonzero, not model.width")
        _declared(self)


@dataclass(frozen=True)
class Sparsity:
    target: float = 0.0  # S: final sparsity of the block matrices, in [0, 1)
    pattern: str = "unstructured"  # "unstructured", "global" or "N:M" (e.g. "2:4")
    schedule: str = "cubic"  # "cubic" (gradual), "oneshot" or "constant"
    start: float = 0.25  # pruning window start, fraction of training
    end: float = 0.75  # pruning window end, fraction of training
    every: int = 100  # mask recomputation interval, steps
    embed_rule: bool = False  # prune embeddings/head to 1 - sqrt(1 - S): the paper's protocol

    def __post_init__(self) -> None:
        check_number("sparsity.target", self.target, 0, 1, high_open=True)
        check_text("sparsity.pattern", self.pattern)
        try:
            pattern = parse_pattern(self.pattern)
        except ValueError as e:
            raise ValueError(f"sparsity.{e}") from None
        check_choice("sparsity.schedule", self.schedule, list(SCHEDULES))
        check_number("sparsity.start", self.start, 0, 1)
        check_number("sparsity.end", self.end, 0, 1)
        if self.schedule == "cubic" and self.end < self.start:
            raise ValueError(f"sparsity.end must be >= sparsity.start = {self.start} (the "
                             f"pruning window), got {self.end}")
        check_int("sparsity.every", self.every, 1)
        check_flag("sparsity.embed_rule", self.embed_rule)
        _declared(self)
        object.__setattr__(self, "pattern", str(pattern))  # " 2:4", "2 : 4" -> "2:4"
        if pattern.kind == "nm":
            # n:m fixes S = 1 - n/m; target 0 means "the pattern's sparsity".
            if self.target not in (0.0, pattern.sparsity):
                raise ValueError(f"sparsity.target must be 1 - n/m = {pattern.sparsity} for "
                                 f"pattern {self.pattern!r} (or 0 to take it), got {self.target}")
            object.__setattr__(self, "target", pattern.sparsity)

    @property
    def protocol(self) -> str:
        """The comparison protocol's name: "paper" (embeddings and head pruned by the
        paper's rule, `embed_rule`) or "dense-embeddings" (kept dense)."""
        return PROTOCOLS[self.embed_rule]


PROTOCOLS = {True: "paper", False: "dense-embeddings"}  # Sparsity.embed_rule -> protocol name


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
        check_choice("optim.name", self.name, OPTIMIZERS)
        check_number("optim.lr", self.lr, 0, low_open=True, optional=True)
        check_int("optim.lr_width", self.lr_width, 0, optional=True)
        check_number("optim.warmup", self.warmup, 0, 1, high_open=True)
        check_number("optim.decay_to", self.decay_to, 0, 1, optional=True)
        check_number("optim.b1", self.b1, 0, 1, high_open=True)
        check_number("optim.b2", self.b2, 0, 1, high_open=True, optional=True)
        check_number("optim.weight_decay", self.weight_decay, 0, optional=True)
        check_number("optim.clip", self.clip, 0, low_open=True)
        check_number("optim.z_loss", self.z_loss, 0, optional=True)
        _declared(self)

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
    options: Mapping[str, Any] = field(default_factory=dict)  # the data source's settings
    # (`sparsekit.data.source_config`: e.g. input_length, num_classes, dataset); kept as given,
    # read-only (`Options`), checked against the family's source by RunConfig

    def __post_init__(self) -> None:
        check_int("data.amount (D: tokens or images)", self.amount, 1)
        check_int("data.batch", self.batch, 1, optional=True)
        check_int("data.seed", self.seed, 0)
        check_int("data.eval_examples", self.eval_examples, 1)
        if not isinstance(self.options, Mapping) or not all(
                isinstance(k, str) for k in self.options):
            raise ValueError(f"data.options must be a mapping of option names to values, got "
                             f"{self.options!r}")
        object.__setattr__(self, "options", Options(self.options))


class Options(Mapping[str, Any]):
    """`Data.options`: a read-only mapping, hashable like the frozen config that holds it.
    `to_dict()` gives it back as a plain dict of the options given (defaults are not added),
    so configs keep their keys."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] = ()) -> None:
        self._items = dict(items)

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"Options({self._items!r})"


# Fields added after results stores were keyed by `RunConfig.key()`: `to_dict()` leaves each
# out while it holds its default, so every config written before the field keeps its key.
LATER_FIELDS: dict[str, dict[str, Any]] = {"model": {"head_init": 0.0, "exact": False}}


@dataclass(frozen=True)
class RunConfig:
    model: Model
    data: Data
    sparsity: Sparsity = Sparsity()
    optim: Optim = Optim()
    seed: int = 0  # parameter-init seed, in [0, MAX_SEED]
    init_from: str | None = None  # dense orbax checkpoint to start from (then prune it)
    eval_every: int = 0  # record validation loss every this many steps (0: only at the end)

    def __post_init__(self) -> None:
        for name, group in GROUPS.items():
            if not isinstance(getattr(self, name), group):
                raise ValueError(f"{name} must be a {group.__name__}, got "
                                 f"{getattr(self, name)!r}")
        check_int("seed", self.seed, 0, MAX_SEED)
        check_text("init_from", self.init_from, optional=True)
        check_int("eval_every", self.eval_every, 0)
        object.__setattr__(self, "optim", _filled(self.optim, self.model.family))
        object.__setattr__(self, "data", _filled(self.data, self.model.family))
        self._check_optimizer()
        self._declare_options()
        self.family().loss(self.optim.z_loss)  # ValueError for a z-loss the family lacks
        if self.model.exact and parse_pattern(self.sparsity.pattern).kind == "nm":
            raise ValueError(f"model.exact is for unstructured and global patterns; n:m pattern "
                             f"{self.sparsity.pattern!r} fixes S = 1 - n/m, so its N stays at "
                             f"the width quantum (leave model.exact false)")
        self.family().check_pattern(self.width(), self.sparsity.pattern)

    def _check_optimizer(self) -> None:
        """ValueError naming a setting the optimizer ignores, unless it holds its default."""
        defaults = {f.name: f.default for f in dataclasses.fields(Optim)}
        defaults.update(RECIPES[self.model.family])
        for name in IGNORED.get(self.optim.name, ()):
            value = getattr(self.optim, name)
            if value != defaults[name]:
                raise ValueError(
                    f"optim.{name} = {value!r} is not used by optimizer {self.optim.name!r}, "
                    f"which has no {', '.join(IGNORED[self.optim.name])}; leave it unset "
                    f"(it is recorded as {defaults[name]!r})"
                )

    def _declare_options(self) -> None:
        """Check `data.options` against the data source and hold each as its source field
        declares (`as_declared`: `scale: 3` is `scale: 3.0`); an option that is not a field
        (the ViT's `dataset`) stays as given."""
        hints = _hints(type(self.source_config()))
        options = {name: as_declared(value, hints[name]) if name in hints else value
                   for name, value in self.data.options.items()}
        object.__setattr__(self, "data", dataclasses.replace(self.data, options=options))

    def source_config(self) -> SourceConfig:
        """The typed settings of this run's data source: `data.options` with `data.seed` and
        `data.eval_examples` (ValueError naming a bad option)."""
        for name in SHARED:
            if name in self.data.options:
                raise ValueError(f"data.options: set {name} as data.{name}, not as an option")
        try:
            return source_config(self.model.family, seed=self.data.seed,
                                 eval_examples=self.data.eval_examples, **self.data.options)
        except ValueError as e:
            raise ValueError(f"data.options: {e}") from None

    def family(self) -> Family:
        """The model family (`sparsekit.models`) at this config's depth, with its head init
        (ViT); `Family.for_source` adds what it reads from the data."""
        fam = get_family(self.model.family).with_depth(self.model.depth)
        return dataclasses.replace(fam, head_init=self.model.head_init) if (
            self.model.head_init) else fam

    def width(self) -> int:
        """The model width: `model.width`, or the width whose non-zero count at the target
        sparsity is nearest `model.nonzero` (ValueError naming it when none is within 2x);
        with `model.exact`, nearest the dense twin's N (`exact_width`). A model whose
        training would not fit in this machine's memory is a ValueError naming the memory it
        needs and the largest N (or width) that fits (`check_memory`)."""
        fam = self.family()
        if self.model.width is not None:
            try:
                fam.check_width(self.model.width)
            except ValueError:
                raise ValueError(f"model.width must be a multiple of {fam.quantum} for "
                                 f"{fam.name}, got {self.model.width!r}") from None
            return self.check_memory(self.model.width)
        self.check_memory(None)  # before the search: a target too large fails at once
        try:
            if self.model.exact:
                width = exact_width(fam, self.model.nonzero, self.sparsity.target)[0]
            else:
                width = width_for(fam, self.model.nonzero, self.sparsity.target)[0]
        except ValueError as e:
            raise ValueError(f"model.nonzero: {e}") from None
        return self.check_memory(width)

    def check_memory(self, width: int | None) -> int:
        """`width` (None: the target N only), or a ValueError when training the model would
        not fit in this machine's memory (`provenance.memory_bytes`): it names the memory the
        model needs at least (`training_bytes`: block parameters only, so it never refuses a
        model that fits) and the largest N (with model.nonzero) or width that fits."""
        fam, target = self.family(), self.sparsity.target
        memory = provenance.memory_bytes()
        widest = largest_width(fam, memory)
        largest = census(fam.block_shapes(widest), target) if widest else 0
        if width is None:
            n = self.model.nonzero
            if n <= largest:
                return width
            params = n / (1.0 - target)  # block parameters of a model with N = n at S
            model, need = f"about {params:.3g} block parameters", TRAINING_BYTES_PER_PARAM * params
        elif width <= widest:
            return width
        else:
            params = fam.block_params(width)
            model, need = f"{params:,} block parameters", training_bytes(fam, width)
        fits = (f"the largest that fits: N = {largest:,} at S = {target:g} (width {widest})"
                if widest else "no model fits")
        what = (f"model.nonzero must be an integer from 1 to {largest:,}" if self.model.nonzero
                else f"model.width must be a multiple of {fam.quantum} up to {widest}")
        raise ValueError(
            f"{what} on this machine, got {self.model.nonzero or width}: training that "
            f"{fam.name} model ({model}) takes at least {_gib(need)} ({TRAINING_BYTES_PER_PARAM} "
            f"bytes per block parameter: weights, gradients, Adam moments, update, mask), more "
            f"than this machine's {_gib(memory)} of memory; {fits}")

    def block_sparsity(self) -> float:
        """The sparsity the schedule takes the block matrices to: `sparsity.target`, or with
        `model.exact` the sparsity at which this width keeps the dense twin's N
        (`exact_width`), so a run's N matches its dense twin's to the per-tensor rounding."""
        if not self.model.exact:
            return self.sparsity.target
        return exact_width(self.family(), self.model.nonzero, self.sparsity.target)[1]

    def embed_sparsity(self) -> float:
        """Final sparsity of the embeddings and head: 0 without `sparsity.embed_rule`; with
        it, the paper's 1 - sqrt(1 - S), which keeps their non-zeros at the dense model's
        when the width scales as 1/sqrt(1 - S). With `model.exact` it is 1 - w_twin / w
        itself, so the non-zeros equal the dense twin's even where this family's rounded
        MLP width makes the width ratio differ from 1/sqrt(1 - S) (by up to 3% for T5)."""
        if not self.sparsity.embed_rule:
            return 0.0
        if self.model.exact:
            twin = width_for(self.family(), self.model.nonzero, 0.0)[0]
            return 1.0 - twin / self.width()
        return 1.0 - math.sqrt(1.0 - self.sparsity.target)

    def to_dict(self) -> dict[str, Any]:
        """Every field, nested (`data.options` as a plain dict of the options given); a
        field of LATER_FIELDS only when it differs from its default."""
        d = dataclasses.asdict(self)
        d["data"]["options"] = dict(self.data.options)
        for group, defaults in LATER_FIELDS.items():
            for name, default in defaults.items():
                if d[group][name] == default:
                    del d[group][name]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """A config from a nested dict (as `to_dict` gives); ValueError naming an unknown field."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a config is a mapping of fields, got {d!r}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        kw = dict(d)
        for name, group in GROUPS.items():
            if name not in kw:
                continue
            if not isinstance(kw[name], Mapping):
                raise ValueError(f"config field {name!r} is a group: give a mapping of its "
                                 f"fields, got {kw[name]!r}")
            fields = [f.name for f in dataclasses.fields(group)]
            wrong = sorted(set(kw[name]) - set(fields))
            if wrong:
                raise ValueError(f"unknown config field {name}.{wrong[0]!r}: {group.__name__} has "
                                 f"{', '.join(fields)}")
            kw[name] = group(**kw[name])
        return cls(**kw)

    def key(self) -> str:
        """Stable 16-hex-digit hash of the config: the results-store key (`config_key`)."""
        return config_key(self.to_dict())

    def replace(self, **dotted: Any) -> RunConfig:
        """A copy with overrides by dotted name, e.g. replace(**{"sparsity.target": 0.5})."""
        return make_config(self.to_dict(), dotted)


GROUPS = {"model": Model, "data": Data, "sparsity": Sparsity, "optim": Optim}


def config_key(config: Mapping[str, Any]) -> str:
    """The results-store key of a config dict (`RunConfig.to_dict()`): the first 16 hex digits
    of the sha256 of its JSON (keys sorted, no spaces), so 0 and 0.0 differ here; a RunConfig
    holds numbers as its fields declare them, which makes them one key there."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- config overrides by dotted name --------------------------------------------------------


def check_field(name: str) -> None:
    """ValueError unless `name` is a dotted RunConfig field (e.g. "optim.lr"). Below a
    mapping field (`data.options`) any name is accepted here; the config checks it."""
    cls: Any = RunConfig
    parts = name.split(".")
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            raise ValueError(
                f"unknown config field {name!r}: {cls.__name__} has no field "
                f"{part!r} (it has {', '.join(hints)})"
            )
        cls = hints[part]
        if typing.get_origin(cls) is Mapping:
            return
        if not dataclasses.is_dataclass(cls):
            if depth < len(parts) - 1:
                raise ValueError(
                    f"unknown config field {name!r}: {'.'.join(parts[: depth + 1])} has no fields"
                )
            return
    raise ValueError(f"config field {name!r} is a group; name one of its fields")


def make_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from a (possibly partial) config dict and overrides by dotted name: the one
    way configs are built from text (grids, the command line, `RunConfig.replace`)."""
    d = _copy_dicts(base)
    for name, value in overrides.items():
        check_field(name)
        node = d
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"cannot set {name!r}: {p!r} in the base is not a mapping")
        node[leaf] = _copy_dicts(value)
    if not {"model", "data"} <= d.keys():
        raise ValueError("a config needs model (family and nonzero or width) and data (amount)")
    return RunConfig.from_dict(d)


def _copy_dicts(value: Any) -> Any:
    return {k: _copy_dicts(v) for k, v in value.items()} if isinstance(value, Mapping) else value
