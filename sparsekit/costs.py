"""Cost models (training FLOPs charged for a sparse run, as a multiple of 6 N D) and the
search for the loss-optimal sparsity at a budget.

N is the number of non-zero parameters and D the training tokens/images, so a cost model
is a function of the sparsity S alone: C = 6 N D * cost(S). Which one applies depends on
the hardware and the pruning recipe, and it changes the optimal sparsity, so it is always
an explicit, named choice. `pretrained_cost` builds one for pruning a pretrained dense model
that charges its dense pretraining.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike

CostModel = Callable[[ArrayLike], np.ndarray]


class SparsitySchedule(Protocol):
    """Anything with `average_density()`: the mean fraction of the dense weights alive over
    training (`sparsekit.schedules.Schedule.average_density`), the quantity Jin et al. (2025)
    put into a Chinchilla law."""

    def average_density(self) -> float: ...


def cubic_schedule(target: float) -> SparsitySchedule:
    """The paper's recipe: Zhu-Gupta cubic ramp from 25% to 75% of training, to `target`."""
    from sparsekit.schedules import Cubic  # lazy: the laws must not load the training stack

    return Cubic(target=target)


@functools.cache
def cubic_mean_sparsity() -> float:
    """Mean sparsity over training of the paper's schedule (`cubic_schedule`: cubic
    from 25% to 75% of training) per unit of target, from its `average_density()`: 0.625
    (zero for the first quarter, 3/4 of the target on average during the ramp, the full
    target for the last quarter) up to the schedule's float32 rounding (~1e-8). The mean is
    proportional to the target, so one level gives it for all."""
    target = 0.5
    return (1.0 - cubic_schedule(target).average_density()) / target


def dense_cost(S: ArrayLike) -> np.ndarray:
    """Train as the dense model of the full size, N / (1 - S) weights: the paper's choice."""
    return 1.0 / (1.0 - np.asarray(S, dtype=np.float64))


def gradual_cost(S: ArrayLike) -> np.ndarray:
    """Pay for the weights alive on average under the 25-75% cubic gradual pruning schedule:
    average density 1 - 0.625 S (`cubic_mean_sparsity`) of the dense model's N / (1 - S)
    weights."""
    S = np.asarray(S, dtype=np.float64)
    return (1.0 - cubic_mean_sparsity() * S) / (1.0 - S)


def ideal_cost(S: ArrayLike) -> np.ndarray:
    """Pay only for the non-zeros, at every step: perfect sparse hardware."""
    return np.ones_like(np.asarray(S, dtype=np.float64))


def pretrained_cost(
    pretrain_ratio: float,
    data_ratio: Mapping[float, float] | None = None,
    prune: str | CostModel = "dense",
) -> CostModel:
    """Pruning a pretrained dense model, its dense pretraining charged: a cost model to pass
    wherever a cost model is taken (e.g. `Law.optimal_sparsity(..., cost=pretrained_cost(4))`).

    The pruning run trains on D tokens/images, charged by `prune`; before it, the dense model
    of the full size (N / (1 - S) weights) trained on pretrain_ratio x D (>= 0). So
    C = 6 N D [prune(S) + pretrain_ratio / (1 - S)].

    data_ratio: {S: rho} measured by the pretrained chapter (from-scratch training needs rho x
      D to reach the pruned-pretrained loss after D). The laws describe from-scratch training,
      so with it D is counted as the law's data, rho x the pruning run's:
      cost(S) = [prune(S) + pretrain_ratio / (1 - S)] / rho(S), with rho linear in S between
      the given levels (0 < S < 1, rho > 0), rho(0) = 1 + pretrain_ratio (nothing pruned: the
      dense model has seen all the data, so cost(0) = prune(0)), and the largest level's rho
      beyond it. Without it, no credit is given for pretraining (rho = 1).
    """
    if not (np.isfinite(pretrain_ratio) and pretrain_ratio >= 0):
        raise ValueError(f"pretrain_ratio must be a finite ratio >= 0 (pretraining data / "
                         f"pruning-run data), got {pretrain_ratio!r}")
    levels = dict(sorted((data_ratio or {}).items()))
    if not all(0 < s < 1 and np.isfinite(r) and r > 0 for s, r in levels.items()):
        raise ValueError(f"data_ratio must map sparsities in (0, 1) to ratios > 0, got "
                         f"{data_ratio!r}")
    base = resolve_cost(prune)
    xs = np.array([0.0, *levels])
    rhos = np.array([1.0 + pretrain_ratio, *levels.values()]) if levels else None

    def cost(S: ArrayLike) -> np.ndarray:
        S = np.asarray(S, dtype=np.float64)
        charged = base(S) + pretrain_ratio / (1.0 - S)
        return charged if rhos is None else charged / np.interp(S, xs, rhos)

    cost.__name__ = f"pretrained_cost({pretrain_ratio:g})"
    return cost


COST_MODELS: dict[str, CostModel] = {
    "dense": dense_cost,
    "gradual": gradual_cost,
    "ideal": ideal_cost,
}


def training_flops(N: ArrayLike, D: ArrayLike, S: ArrayLike,
                   cost: str | CostModel = "dense") -> np.ndarray:
    """C = 6 N D cost(S): the training FLOPs charged for runs of N non-zero parameters on D
    tokens or images at sparsity S, under a cost model (a name in COST_MODELS or a callable)."""
    N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    return 6.0 * N * D * resolve_cost(cost)(S)


def resolve_cost(cost: str | CostModel) -> CostModel:
    """A cost model from its name in COST_MODELS, or a callable S -> multiple of 6 N D."""
    if callable(cost):
        return cost
    if cost not in COST_MODELS:
        raise ValueError(f"cost must be one of {sorted(COST_MODELS)} or a callable, got {cost!r}")
    return COST_MODELS[cost]


def argmin_sparsity(
    loss_at: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], s_max: float
) -> np.ndarray:
    """Elementwise argmin over S in [0, s_max]: a 65-point scan, then golden section in the
    best scan bracket (robust to boundary optima; 60 steps shrink the bracket to ~1e-14)."""
    if not 0.0 < s_max < 1.0:
        raise ValueError(f"s_max must lie in (0, 1), got {s_max}")
    scan = np.linspace(0.0, s_max, 65)
    best = np.argmin(loss_at(scan.reshape((65,) + (1,) * len(shape))), axis=0)
    a, b = scan[np.maximum(best - 1, 0)], scan[np.minimum(best + 1, 64)]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss_at(c), loss_at(d)
    for _ in range(60):
        left = fc <= fd  # the minimum lies in [a, d]; the surviving interior point is kept
        a, b = np.where(left, a, c), np.where(left, d, b)
        keep, fkeep = np.where(left, c, d), np.where(left, fc, fd)
        new = np.where(left, b - ratio * (b - a), a + ratio * (b - a))
        fnew = loss_at(new)
        c, fc = np.where(left, new, keep), np.where(left, fnew, fkeep)
        d, fd = np.where(left, keep, new), np.where(left, fkeep, fnew)
    return (a + b) / 2.0
