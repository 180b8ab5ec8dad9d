"""Pruning a pretrained dense model: the two stages of such a run, and how they are linked.

Stage 1 trains the dense model of the sparse model's total size: the same config at the same
width (the one the sparse run's target N and S give), at S = 0, and saves its params with orbax.
Stage 2 is a sparse run that starts from those params (`RunConfig.init_from`), prunes them on
its own schedule (e.g. the cubic 25-75% ramp) and keeps training. It is compared with the same
sparse config trained from scratch (the same config without `init_from`).

In a grid file (`sweep.Grid`), a point with `init_from: pretrained` is a stage-2 run, and the
top-level `pretrain:` mapping (dotted overrides, e.g. `{data.amount: 8388608}`) turns the
point's config into its stage-1 config (`dense_base`, then the overrides). The grid then
holds both: the stage-1 config, and the point with `init_from: "run:<key of the stage-1
config>"` (`reference`). A sweep runs the stages in order and saves each referenced stage-1
run's params to `<store>/checkpoints/<key>` (`checkpoint_path`); a stage-1 run stored without
its checkpoint (checkpoints are not committed) is trained again to save it, bit-identically on
the same machine. The stage-2 config's key thus names its dense run's config through that
run's key, so changing anything about the pretraining changes the stage-2 key too.

Data: a stage-2 run continues its dense run's data stream (same data seed, options and batch
required): its step k trains on the stream's step (dense steps + k), so it never repeats the
pretraining data. D of a stage-2 run counts only its own data; its dense run's row in the same
store holds the pretraining D and FLOPs. A plain path in `init_from` (a checkpoint saved by
`train.run(cfg, save_to=...)`) starts the stream at step 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sparsekit.config import RunConfig
from sparsekit.store import Store

PRETRAINED = "pretrained"  # grid keyword: `init_from: pretrained` makes a point a stage-2 run
RUN = "run:"  # init_from prefix naming a stored run's checkpoint: "run:<key>"
CHECKPOINTS = "checkpoints"  # folder of a store holding the saved params, one orbax dir per key


def reference(key: str) -> str:
    """The `init_from` text naming the checkpoint of the run with this config key."""
    return f"{RUN}{key}"


def referenced_key(init_from: str | None) -> str | None:
    """The run key an `init_from` names ("run:<key>"), or None for a path or no init."""
    if init_from is None or not init_from.startswith(RUN):
        return None
    return init_from[len(RUN):]


def checkpoint_path(store: str | Path, key: str) -> Path:
    """Where a sweep into `store` saves the params of run `key`."""
    return Path(store) / CHECKPOINTS / key


def dense_base(cfg: RunConfig) -> dict[str, Any]:
    """The config dict of the dense model of `cfg`'s total size: `cfg` at the same width (its
    `model.width`, or the width its target N and S give), at sparsity 0 with the unstructured
    pattern (the other sparsity settings do nothing at S = 0), without `init_from`."""
    d = cfg.to_dict()
    d["model"].update(nonzero=None, width=cfg.width())
    d["sparsity"].update(target=0.0, pattern="unstructured")
    d["init_from"] = None
    return d


def link(cfg: RunConfig, dense: RunConfig) -> RunConfig:
    """`cfg` as a stage-2 run that starts from the saved params of run `dense`."""
    return RunConfig.from_dict({**cfg.to_dict(), "init_from": reference(dense.key())})


def stages(configs: Iterable[RunConfig]) -> tuple[list[RunConfig], list[RunConfig]]:
    """(the other configs, those that start from a run among the configs), each in the given
    order. A config that starts from a run not among them is in the first: it runs from a
    stored checkpoint."""
    configs = list(configs)
    keys = {cfg.key() for cfg in configs}
    first, second = [], []
    for cfg in configs:
        (second if referenced_key(cfg.init_from) in keys else first).append(cfg)
    return first, second


def missing_checkpoints(configs: Sequence[RunConfig], store: str | Path,
                        needed: set[str]) -> list[RunConfig]:
    """The configs in `needed` (by key) that `store` holds as runs but without a checkpoint."""
    stored = set(Store(store).keys())
    return [c for c in configs if c.key() in needed and c.key() in stored
            and not checkpoint_path(store, c.key()).exists()]


_STREAM = (("model", "family"), ("data", "seed"), ("data", "batch"), ("data", "options"))


def resolve(cfg: RunConfig, store: str | Path | None) -> tuple[str, int]:
    """(checkpoint path, first step of the data stream) of a run with `init_from`.

    A plain path starts the stream at step 0. "run:<key>" is the checkpoint of that run in
    `store`, and the stream continues after the run's steps; ValueError naming init_from when
    no store is given, the run is not stored as finished, its checkpoint is missing, or its
    data stream differs (family, data seed, batch, data options).
    """
    key = referenced_key(cfg.init_from)
    if key is None:
        return str(cfg.init_from), 0
    name = f"init_from {cfg.init_from!r}"
    if store is None:
        raise ValueError(f"{name} names a stored run: give the results store that holds it "
                         "(a sweep passes its own)")
    dense = Store(store).get(key)
    if dense is None or dense.status != "ok":
        raise ValueError(f"{name}: results store {store} holds no finished run {key} "
                         "(run its stage-1 config first)")
    path = checkpoint_path(store, key)
    if not path.exists():
        raise ValueError(f"{name}: no checkpoint at {path} (a sweep saves it when a run of its "
                         "grid starts from it)")
    ours = cfg.to_dict()
    for group, field in _STREAM:
        if dense.config[group].get(field) != ours[group].get(field):
            raise ValueError(f"{name}: run {key} has {group}.{field} = "
                             f"{dense.config[group].get(field)!r}, this run "
                             f"{ours[group].get(field)!r}; continuing its data stream needs the "
                             "same")
    return str(path), int(dense.steps)
