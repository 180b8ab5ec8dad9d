"""Iterated function systems (IFS): random contractive systems and the chaos game, in JAX.

A system is up to MAX_MAPS affine maps p -> A p + b, stored as rows (a11, a12, a21, a22, b1, b2),
chosen with probabilities proportional to |det A| (FractalDB's rule; unused slots have
probability 0). Each A = R(t1) diag(s1, +-s2) R(t2) with singular values in SINGULAR_RANGE, so
every map contracts and the chaos game converges from any start without rejection sampling.

Randomness comes in as pre-drawn uint32 words (`Draws`): each call site of `jax.random` costs
about 0.3 s of XLA compilation on CPU, so callers draw once per system or image and slice.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

MAX_MAPS = 4
MIN_MAPS = 2
SINGULAR_RANGE = (0.2, 0.9)  # singular values of each linear part: contractive, not collapsed
SYSTEM_WORDS = 1 + 7 * MAX_MAPS  # random words `sample_system` consumes
_ONE = 1 << 16  # map choices: 16-bit draws against cumulative thresholds out of 2**16


class Draws:
    """Hands out consecutive slices of a flat uint32 array of random words (offsets are static)."""

    def __init__(self, words: jax.Array) -> None:
        self.words, self.used = words, 0

    def take(self, *shape: int) -> jax.Array:
        """The next prod(shape) words, uint32 [*shape]."""
        size = math.prod(shape)
        if self.used + size > self.words.shape[-1]:
            raise ValueError(f"need {self.used + size} random words, drew {self.words.shape[-1]}")
        out = self.words[self.used : self.used + size].reshape(shape)
        self.used += size
        return out

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> jax.Array:
        """float32 [*shape] uniform in [low, high) from the top 24 bits of each word."""
        unit = (self.take(*shape) >> 8).astype(jnp.float32) * (1.0 / (1 << 24))
        return low + (high - low) * unit


class Systems(NamedTuple):
    """IFS parameters; `jax.vmap` adds a leading batch axis to both fields."""

    maps: jax.Array  # float32 [MAX_MAPS, 6]
    thresholds: jax.Array  # uint32 [MAX_MAPS - 1]: map index = number of thresholds <= draw


def sample_system(draws: Draws) -> Systems:
    """A random system: 2-4 contractive maps, probabilities proportional to |det|."""
    count = MIN_MAPS + draws.take() % (MAX_MAPS - MIN_MAPS + 1)
    t1, t2 = draws.uniform(2, MAX_MAPS, high=2 * jnp.pi)
    s1, s2 = draws.uniform(2, MAX_MAPS, low=SINGULAR_RANGE[0], high=SINGULAR_RANGE[1])
    s2 = jnp.where(draws.uniform(MAX_MAPS) < 0.5, -s2, s2)  # mirror half the maps
    c1, n1, c2, n2 = jnp.cos(t1), jnp.sin(t1), jnp.cos(t2), jnp.sin(t2)
    # R(t1) @ diag(s1, s2) @ R(t2), written out elementwise
    linear = jnp.stack(
        [
            c1 * s1 * c2 - n1 * s2 * n2,
            -c1 * s1 * n2 - n1 * s2 * c2,
            n1 * s1 * c2 + c1 * s2 * n2,
            -n1 * s1 * n2 + c1 * s2 * c2,
        ],
        axis=1,
    )
    shift = draws.uniform(MAX_MAPS, 2, low=-1.0, high=1.0)
    weight = jnp.where(jnp.arange(MAX_MAPS) < count, jnp.abs(s1 * s2), 0.0)
    return Systems(jnp.concatenate([linear, shift], axis=1), thresholds_from(weight / weight.sum()))


def thresholds_from(probs: jax.Array) -> jax.Array:
    """Cumulative 16-bit thresholds [..., MAX_MAPS - 1] of map probabilities [..., MAX_MAPS]."""
    cumulative = jnp.round(jnp.cumsum(probs, axis=-1)[..., :-1] * _ONE)
    return jnp.where(probs[..., 1:] > 0, cumulative, _ONE).astype(jnp.uint32)


def chaos_game(
    maps: jax.Array, thresholds: jax.Array, start: jax.Array, draws: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Iterate one system from `start` [C, 2] with random words `draws` uint32 [steps, C].

    Returns the points float32 [steps, C, 2] and the ids int32 [steps, C] of the maps that made
    them; the caller drops the burn-in it needs.
    """
    draws = draws >> 16  # 16-bit draws, compared with thresholds out of 2**16

    def step(p: jax.Array, draw: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        k = (draw[:, None] >= thresholds[None, :]).sum(axis=1).astype(jnp.int32)
        m = maps[k]
        x, y = p[:, 0], p[:, 1]
        p = jnp.stack([m[:, 0] * x + m[:, 1] * y + m[:, 4], m[:, 2] * x + m[:, 3] * y + m[:, 5]], 1)
        return p, (p, k)

    _, (points, ids) = jax.lax.scan(step, start, draws)
    return points, ids


def fit_square(points: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Centre [2] and half side (scalar) of the bounding square of points [..., 2]."""
    flat = points.reshape(-1, 2)
    low, high = flat.min(axis=0), flat.max(axis=0)
    return (low + high) / 2, jnp.maximum((high - low).max() / 2, 1e-6)


def fill_rate(points: jax.Array, size: int) -> jax.Array:
    """Fraction of a size x size grid occupied by points [..., 2] fitted to its bounding square."""
    center, half = fit_square(points)
    cells = jnp.clip(((points.reshape(-1, 2) - center) / half + 1) * (size / 2), 0, size - 1)
    cells = cells.astype(jnp.int32)
    occupied = jnp.zeros(size * size, bool).at[cells[:, 1] * size + cells[:, 0]].set(True)
    return occupied.mean()
