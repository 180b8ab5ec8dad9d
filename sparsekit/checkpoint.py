"""Training checkpoints: a long run survives an interruption.

A run trained with `Checkpoints(folder)` saves its full training state at the end of a chunk
(the `lax.scan` of `train.make_chunk`) once `every_s` seconds of wall time (EVERY_S, 15
minutes) have passed since the run started or last saved, or every `every_steps` steps when
that is set (for tests): the params, the optimizer state (the masks included), the step, the
training and validation curves so far, and the wall time spent. A run of the same config
started with the same folder continues from its latest checkpoint, with the same result bit
for bit as an uninterrupted run: a batch depends only on its step (`DataSource.train_batch`),
nothing else is random, and checkpoints fall on chunk boundaries, so the curve's points are
the same. A checkpoint of another config, step count or chunk length is refused; one written
by another code version is removed (the run starts over, with a warning), since resuming
would mix two versions in one result.

Layout of a folder: `step_<n>/` holds `state/` (orbax: {"params", "opt_state"}, each the
leaves of its pytree by index) and `progress.json`; a checkpoint is written into a temp
folder and renamed into place, so it is complete or absent, and then the older ones are
removed. A sweep keeps each run's folder in its store at `inflight_path(store, key)` and
removes it (`discard`) once the run's result is stored.

Only `train` imports this module's JAX side (orbax is imported where it is used), so the
sweep can use `inflight_path` and `discard` without importing JAX.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsekit.store import sync_dir

EVERY_S = 900.0  # the longest wall time between two checkpoints of a run
INFLIGHT = "inflight"  # folder of <store>/checkpoints holding the checkpoints of unfinished runs
_STEP = re.compile(r"^step_(\d+)$")


def inflight_path(store: str | os.PathLike, key: str) -> Path:
    """Where a sweep into `store` keeps the checkpoints of the unfinished run `key`."""
    return Path(store) / "checkpoints" / INFLIGHT / key


def discard(store: str | os.PathLike, key: str) -> None:
    """Remove the checkpoints of run `key` (its result is stored); nothing if it has none."""
    shutil.rmtree(inflight_path(store, key), ignore_errors=True)


@dataclass
class Progress:
    """What a checkpoint holds besides the arrays."""

    key: str  # RunConfig.key() of the run
    code_version: str  # provenance.code_version() of the code that trained it
    steps: int  # the run's total steps
    chunk: int  # steps per chunk: where the curve's points fall
    step: int  # steps done
    curve: list  # [step, mean training loss of the chunk ending there]
    val_curve: list  # [step, validation loss]
    elapsed_s: float  # wall time spent training so far, over every attempt


@dataclass
class Checkpoints:
    """The checkpoints of one run in `folder` (see the module docstring)."""

    folder: Path
    every_s: float = EVERY_S  # save when this much wall time passed since the last save
    every_steps: int | None = None  # also save every this many steps (at a chunk's end)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not self.every_s > 0:
            raise ValueError(f"checkpoint every_s must be > 0 seconds, got {self.every_s!r}")
        if self.every_steps is not None and (
                isinstance(self.every_steps, bool) or not isinstance(self.every_steps, int)
                or self.every_steps < 1):
            raise ValueError(f"checkpoint every_steps must be an integer >= 1 or None, got "
                             f"{self.every_steps!r}")
        self._saved_at = time.monotonic()
        self._saved_step = 0

    def due(self, step: int) -> bool:
        """Whether a chunk ending at `step` should be followed by a checkpoint."""
        if self.every_steps is not None and step - self._saved_step >= self.every_steps:
            return True
        return time.monotonic() - self._saved_at >= self.every_s

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        if not self.folder.is_dir():
            return None
        steps = [(int(m[1]), p) for p in self.folder.iterdir()
                 if (m := _STEP.match(p.name)) and (p / "progress.json").is_file()]
        return max(steps)[1] if steps else None

    def save(self, progress: Progress, params: Any, opt_state: Any) -> Path:
        """Write a checkpoint atomically and remove the older ones; returns its folder."""
        import jax
        import orbax.checkpoint as ocp

        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"step_{progress.step:09d}"
        tmp = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{final.name}.", suffix=".tmp"))
        try:
            tree = {name: {str(i): leaf for i, leaf in enumerate(jax.tree.leaves(part))}
                    for name, part in (("params", params), ("opt_state", opt_state))}
            with ocp.StandardCheckpointer() as ckpt:
                ckpt.save(tmp / "state", tree)
                ckpt.wait_until_finished()
            with open(tmp / "progress.json", "w") as f:
                json.dump(progress.__dict__, f)
                f.flush()
                os.fsync(f.fileno())
            if final.exists():  # the same step saved before (a resumed run): replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        sync_dir(self.folder)
        for old in self.folder.iterdir():  # older checkpoints and temp folders of killed saves
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        self._saved_at, self._saved_step = time.monotonic(), progress.step
        return final

    def restore(self, progress: Progress, params: Any, opt_state: Any):
        """(progress, params, opt_state) of the latest checkpoint, or None when there is none
        (or it was written by another code version: removed, with a warning). `progress`,
        `params` and `opt_state` describe the run as it starts (their shapes and structure are
        the checkpoint's). ValueError naming the folder if it belongs to another run."""
        self._saved_at, self._saved_step = time.monotonic(), 0  # the run starts (over) now
        latest = self.latest()
        if latest is None:
            return None
        import jax  # here: a run without a checkpoint does not import orbax for nothing
        import orbax.checkpoint as ocp

        saved = Progress(**json.loads((latest / "progress.json").read_text()))
        for name in ("key", "steps", "chunk"):
            if getattr(saved, name) != getattr(progress, name):
                raise ValueError(
                    f"checkpoint {latest} is of a run with {name} {getattr(saved, name)!r}, not "
                    f"{getattr(progress, name)!r}: resume with the run it belongs to, or "
                    "remove it to start over")
        if saved.code_version != progress.code_version:
            warnings.warn(f"checkpoint {latest} was written by code {saved.code_version}, this "
                          f"is {progress.code_version}: starting the run over", stacklevel=2)
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        like = {name: {str(i): jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
                       for i, leaf in enumerate(jax.tree.leaves(part))}
                for name, part in (("params", params), ("opt_state", opt_state))}
        with ocp.StandardCheckpointer() as ckpt:
            tree = ckpt.restore(latest / "state", like)

        def unflatten(name: str, part: Any) -> Any:
            leaves = [tree[name][str(i)] for i in range(len(like[name]))]
            return jax.tree.unflatten(jax.tree.structure(part), leaves)

        self._saved_at, self._saved_step = time.monotonic(), saved.step
        return saved, unflatten("params", params), unflatten("opt_state", opt_state)
