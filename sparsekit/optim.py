"""Optimizers: a config -> optax chain, and the paper's sparse-aware Adafactor.

Plain Adafactor computes its update clipping RMS and its parameter-scale RMS over every entry
of a tensor. In a sparse tensor the pruned entries are zero, so both RMS values shrink by the
density and updates shrink with them. The sparse-aware variant (as in the paper's code)
averages over the surviving weights only. It reads the masks that `pruning.sparsify` passes
as the extra argument `masks`; without masks it is plain Adafactor.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsekit.schedules import steps


def _surviving_rms(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """RMS of x over entries where mask is true; 0 when nothing survives (no NaN)."""
    if mask is None:
        return jnp.sqrt(jnp.mean(jnp.square(x)))
    kept = jnp.sum(jnp.broadcast_to(mask, x.shape))
    total = jnp.sum(jnp.where(mask, jnp.square(x), 0.0))
    return jnp.sqrt(total / jnp.maximum(kept, 1))


def _per_leaf(updates: Any, masks: Any | None) -> list:
    leaves, treedef = jax.tree.flatten(updates)
    if masks is None:
        return [None] * len(leaves)
    return treedef.flatten_up_to(masks)


class _Empty(NamedTuple):
    pass


def masked_clip_by_block_rms(threshold: float) -> optax.GradientTransformationExtraArgs:
    """Clip each tensor's update so its RMS over surviving weights is at most `threshold`."""

    def update_fn(updates, state, params=None, *, masks=None, **_):
        leaves, treedef = jax.tree.flatten(updates)
        out = [u / jnp.maximum(1.0, _surviving_rms(u, m) / threshold)
               for u, m in zip(leaves, _per_leaf(updates, masks), strict=True)]
        return treedef.unflatten(out), state

    return optax.GradientTransformationExtraArgs(lambda _: _Empty(), update_fn)


def masked_scale_by_param_block_rms(min_scale: float = 1e-3) -> optax.GradientTransformationExtraArgs:
    """Scale each tensor's update by the RMS of its surviving parameters (at least min_scale)."""

    def update_fn(updates, state, params=None, *, masks=None, **_):
        if params is None:
            raise ValueError("params must be passed to update(): the scale is their RMS")
        leaves, treedef = jax.tree.flatten(updates)
        ps = treedef.flatten_up_to(params)
        out = [u * jnp.maximum(_surviving_rms(p, m), min_scale)
               for u, p, m in zip(leaves, ps, _per_leaf(updates, masks), strict=True)]
        return treedef.unflatten(out), state

    return optax.GradientTransformationExtraArgs(lambda _: _Empty(), update_fn)


def sparse_adafactor(
    learning_rate: optax.ScalarOrSchedule,
    *,
    decay_rate: float = 0.8,
    clipping_threshold: float = 1.0,
    min_dim_size_to_factor: int = 128,
    multiply_by_parameter_scale: bool = True,
    eps: float = 1e-30,
) -> optax.GradientTransformationExtraArgs:
    """Adafactor whose clipping and parameter-scale RMS count surviving weights only.

    Same defaults and order as `optax.adafactor` (no momentum, no weight decay); safe when
    a tensor is fully pruned (its update is zero, not NaN).
    """
    parts = [
        optax.scale_by_factored_rms(True, decay_rate, 0, min_dim_size_to_factor, eps),
        masked_clip_by_block_rms(clipping_threshold),
        optax.scale_by_learning_rate(learning_rate, flip_sign=False),
    ]
    if multiply_by_parameter_scale:
        parts.append(masked_scale_by_param_block_rms())
    parts.append(optax.scale(-1.0))
    return optax.chain(*parts)


def learning_rate(peak: float, total_steps: int, *, warmup: float, decay_to: float) -> optax.Schedule:
    """Linear warmup over `warmup` of the run, then cosine decay to `decay_to` * peak at the end."""
    warmup_steps = steps(warmup, total_steps, "nearest")
    return optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup_steps, max(total_steps, warmup_steps + 1), peak * decay_to
    )


def make_optimizer(cfg, total_steps: int, labels: Any, width: int) -> optax.GradientTransformation:
    """The inner optimizer for a run (`config.Optim`) of a model of this width: global-norm
    clip, then the optimizer, at peak LR `cfg.peak_lr(width)`.

    Weight decay applies to "block" and "embed" matrices only, never to norms and biases.
    """
    lr = learning_rate(cfg.peak_lr(width), total_steps, warmup=cfg.warmup, decay_to=cfg.decay_to)
    if cfg.name == "adamw":
        decay_mask = jax.tree.map(lambda k: k != "dense", labels)
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay,
                          mask=decay_mask)
    elif cfg.name == "adafactor":
        opt = optax.adafactor(lr)
    else:
        opt = sparse_adafactor(lr)
    return optax.chain(optax.clip_by_global_norm(cfg.clip), opt)
