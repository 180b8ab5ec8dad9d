"""Pruning schedules: the target sparsity at each training step, and when masks are recomputed.

A schedule is defined on the fraction of training done, so the same schedule object describes
runs of any length. `steps` is the one conversion of a fraction of a run to steps (the pruning
window here, the warmup in `sparsekit.optim`).

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
from typing import Literal

import jax.numpy as jnp
import numpy as np

from sparsekit.masks import check_sparsity


def steps(fraction: float, total_steps: int, rounding: Literal["up", "nearest"] = "up") -> int:
    """`fraction` of a run of `total_steps` steps, in steps.

    "up": the first step at or after it (the pruning window). "nearest": Python's round, half
    to even (the LR warmup: every stored run was trained so, and for 128 of the 286 stored
    runs it differs from "up", so it stays)."""
    if rounding == "nearest":
        return round(fraction * total_steps)
    if rounding != "up":
        raise ValueError(f"rounding must be 'up' or 'nearest', got {rounding!r}")
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

    def average_density(self, num: int = 4097) -> float:
        """Mean of 1 - sparsity(t) over training, t in [0, 1] (Simpson's rule on `num`
        points): the fraction of the dense model alive on average during training.

        `num` must be odd; the default makes the 25-75% cubic exact to ~1e-13 in float64 (its
        kinks fall on grid points; `sparsity` itself is float32, ~1e-8 here)."""
        if num < 3 or num % 2 == 0:
            raise ValueError(f"num must be an odd integer >= 3, got {num}")
        t = np.linspace(0.0, 1.0, num)
        density = 1.0 - np.asarray(self.sparsity(t), dtype=np.float64)
        weights = np.ones(num)
        weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
        return float(np.sum(weights * density) / (3.0 * (num - 1)))

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


SCHEDULES = {"cubic": Cubic, "oneshot": OneShot, "constant": Constant}


def make(kind: str, **kwargs) -> Schedule:
    """A schedule by name: one of SCHEDULES."""
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {kind!r}")
    return SCHEDULES[kind](**kwargs)
