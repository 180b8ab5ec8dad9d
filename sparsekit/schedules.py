"""Pruning schedules: the target sparsity at each training step, and when masks are recomputed.

A schedule is defined on the fraction of training done, so the same schedule object describes
runs of any length; `total_steps` converts fractions to steps in one place (`steps`).

Boundary conventions (tested in tests/test_schedules.py):
- the pruning window is [start_step, end_step] with start_step = ceil(start * total_steps)
  and end_step = ceil(end * total_steps), so the first step at or after the window's end
  already has exactly the target sparsity;
- before start_step the sparsity is 0; at start_step it is `initial`; at end_step and after it
  is exactly `target`;
- masks are recomputed at start_step, every `every` steps after it, and at end_step; never
  after end_step (training continues at the final mask, as in the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp

from sparsekit.masks import check_sparsity


def steps(fraction: float, total_steps: int) -> int:
    """The first step at or after `fraction` of a run of `total_steps` steps."""
    # round() first so that e.g. 0.75 * 100 = 75.00000000000001 does not become 76.
    return math.ceil(round(fraction * total_steps, 9))


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction of training in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Schedule:
    """Base: a target sparsity reached over a window [start, end] of training (fractions).

    Subclasses override `ramp(p)`: the sparsity at progress p in [0, 1] through the window.
    """

    target: float  # final sparsity of the pruned matrices, in [0, 1)
    start: float = 0.25  # window start, fraction of training
    end: float = 0.75  # window end, fraction of training
    initial: float = 0.0  # sparsity at the window start, in [0, target]
    every: int = 100  # recompute masks every this many steps inside the window

    def __post_init__(self) -> None:
        check_sparsity(self.target, "target")
        _check_fraction(self.start, "start")
        _check_fraction(self.end, "end")
        if self.end < self.start:
            raise ValueError(f"end must be >= start, got start={self.start}, end={self.end}")
        if not 0.0 <= self.initial <= self.target:
            raise ValueError(f"initial must be in [0, target={self.target}], got {self.initial}")
        if self.every < 1:
            raise ValueError(f"every must be a positive number of steps, got {self.every}")

    def ramp(self, p):
        """Sparsity at progress p in [0, 1] through the window."""
        raise NotImplementedError

    def sparsity(self, fraction):
        """Sparsity after `fraction` of training (array or scalar, numpy or jax)."""
        fraction = jnp.asarray(fraction, jnp.float32)
        width = self.end - self.start
        p = jnp.clip((fraction - self.start) / width, 0.0, 1.0) if width > 0 else (
            jnp.where(fraction >= self.end, 1.0, 0.0)
        )
        return jnp.where(fraction < self.start, 0.0, self.ramp(p))

    def window(self, total_steps: int) -> tuple[int, int]:
        """(start_step, end_step) of the pruning window for a run of `total_steps` steps."""
        return steps(self.start, total_steps), steps(self.end, total_steps)

    def at(self, step, total_steps: int):
        """Sparsity at integer `step` of a `total_steps` run; jit-safe (step may be traced).

        Computed from integer step offsets so that end_step gives exactly `target`.
        """
        start_step, end_step = self.window(total_steps)
        step = jnp.asarray(step)
        if end_step > start_step:
            p = jnp.clip((step - start_step) / (end_step - start_step), 0.0, 1.0)
        else:
            p = jnp.where(step >= end_step, 1.0, 0.0)
        return jnp.where(step < start_step, 0.0, self.ramp(p.astype(jnp.float32)))

    def is_update(self, step, total_steps: int):
        """Whether masks are recomputed at `step`; jit-safe."""
        start_step, end_step = self.window(total_steps)
        step = jnp.asarray(step)
        inside = (step >= start_step) & (step <= end_step)
        return inside & (((step - start_step) % self.every == 0) | (step == end_step))


@dataclass(frozen=True)
class Cubic(Schedule):
    """Zhu & Gupta gradual pruning: s = target + (initial - target) * (1 - p)^3."""

    def ramp(self, p):
        # 1 - (1 - p)^3 = p (3 - 3p + p^2), without float32 cancellation at small p
        rise = jnp.minimum(p * (3.0 - 3.0 * p + p * p), 1.0)
        return jnp.where(p >= 1.0, self.target, self.initial + (self.target - self.initial) * rise)


@dataclass(frozen=True)
class OneShot(Schedule):
    """Prune once, at `start`, straight to `target` (the window is a single step)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "end", self.start)
        super().__post_init__()

    def ramp(self, p):
        return jnp.full_like(p, self.target)


@dataclass(frozen=True)
class Constant(OneShot):
    """Sparse from the first step: masks from the initial weights, then fixed."""

    start: float = 0.0


def cubic(step, *, target: float, total_steps: int, start: float = 0.25, end: float = 0.75,
          initial: float = 0.0):
    """The Zhu & Gupta sparsity at `step`: 0 before `start`, exactly `target` from `end` on."""
    return Cubic(target, start, end, initial).at(step, total_steps)


SCHEDULES = {"cubic": Cubic, "oneshot": OneShot, "constant": Constant}


def make(kind: str, **kwargs) -> Schedule:
    """A schedule by name: one of SCHEDULES."""
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {kind!r}")
    return SCHEDULES[kind](**kwargs)
