"""Loss functions `loss_fn(model, batch) -> (loss, metrics)`: pure and jit-friendly.

`metrics["ce"]` is the quantity the scaling law models (nats per image or per target token);
`loss` is what is differentiated (T5 adds the z-loss to it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sparsekit.models.t5 import PAD, shift_right

Z_LOSS = 1e-4  # weight of mean(logsumexp^2): keeps the softmax normaliser near 1 (T5X)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-example softmax cross-entropy (nats) and logsumexp, both shaped like labels."""
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return lse - label_logit, lse


def soft_cross_entropy(logits: jax.Array, probs: jax.Array) -> jax.Array:
    """Per-example cross-entropy (nats) of softmax(logits) against target distributions
    `probs` [..., C]: -sum_c p_c log q_c = H(p) + KL(p || q)."""
    return -jnp.sum(probs * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)


def vit_loss(model: nnx.Module, batch: dict[str, jax.Array]) -> tuple[jax.Array, dict]:
    """batch {"image": f32 [B,S,S,3], and "probs": f32 [B,C] or "label": i32 [B]} -> mean CE,
    {"ce", "accuracy"}. With "probs" (soft targets, e.g. a teacher's) the cross-entropy is
    against them and accuracy counts agreement with their argmax; otherwise against "label"."""
    logits = model(batch["image"])
    if "probs" in batch:
        ce = soft_cross_entropy(logits, batch["probs"])
        label = jnp.argmax(batch["probs"], axis=-1)
    else:
        ce, _ = cross_entropy(logits, batch["label"])
        label = batch["label"]
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == label)
    loss = jnp.mean(ce)
    return loss, {"ce": loss, "accuracy": accuracy}


def t5_loss(
    model: nnx.Module, batch: dict[str, jax.Array], z_loss: float = Z_LOSS
) -> tuple[jax.Array, dict]:
    """batch {"inputs": i32 [B,Li], "targets": i32 [B,Lt]} -> CE + z_loss * mean(lse^2).

    Means are over non-pad target tokens. Metrics: "ce" (nats per target token, without
    z-loss), "z_loss" (mean lse^2), "accuracy" (per token), "tokens" (count, for weighting
    means across batches).
    """
    targets = batch["targets"]
    logits = model(batch["inputs"], shift_right(targets))
    ce, lse = cross_entropy(logits, targets)
    weights = (targets != PAD).astype(jnp.float32)
    tokens = jnp.sum(weights)

    def mean(x: jax.Array) -> jax.Array:
        return jnp.sum(x * weights) / jnp.maximum(tokens, 1.0)

    ce_mean, z = mean(ce), mean(jnp.square(lse))
    accuracy = mean(jnp.argmax(logits, axis=-1) == targets)
    metrics = {"ce": ce_mean, "z_loss": z, "accuracy": accuracy, "tokens": tokens}
    return ce_mean + z_loss * z, metrics
