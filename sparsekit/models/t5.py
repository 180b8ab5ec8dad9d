"""T5.1.1-style encoder-decoder over a byte vocabulary.

RMSNorm pre-norm, gated-GeLU MLP, no biases, bucketed relative position bias (one table per
stack, shared by its layers), token embedding shared by encoder and decoder inputs, untied
output head. Id 0 is padding (and the decoder start token).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsekit.models.layers import Block, LayerStyle, Linear
from sparsekit.models.params import EmbedParam

PAD = 0  # padding id, also the decoder start token
NUM_BUCKETS = 32  # relative-position buckets per stack (T5 default)
MAX_DISTANCE = 128  # distances beyond this (in tokens) share the last bucket (T5 default)
# T5.1.1 layers: RMSNorm, no biases, gated-GeLU MLP, 2-D matmuls (see Linear: faster on CPU).
LAYER = LayerStyle(nnx.RMSNorm, use_bias=False, gated=True, flatten=True)


def shift_right(targets: jax.Array) -> jax.Array:
    """Decoder inputs: targets [B, L] shifted one step right, with PAD as the start token."""
    return jnp.pad(targets, ((0, 0), (1, 0)), constant_values=PAD)[:, :-1]


@functools.cache
def relative_buckets(q_len: int, k_len: int, bidirectional: bool) -> np.ndarray:
    """Bucket index [q_len, k_len] of each key offset, T5-style.

    Half of the buckets hold exact small distances; the rest grow logarithmically up to
    MAX_DISTANCE. Bidirectional stacks split the buckets between keys before and after the
    query; causal stacks only distinguish keys in the past (the future is masked anyway).
    """
    dist = np.arange(q_len)[:, None] - np.arange(k_len)[None, :]  # > 0: key in the past
    num, offset = NUM_BUCKETS, np.zeros_like(dist)
    if bidirectional:
        num //= 2
        offset = np.where(dist < 0, num, 0)
        dist = np.abs(dist)
    else:
        dist = np.maximum(dist, 0)
    exact = num // 2
    # Clamp at `exact` inside the log: the small branch is taken there anyway.
    log_ratio = np.log(np.maximum(dist, exact) / exact) / np.log(MAX_DISTANCE / exact)
    large = np.minimum(exact + (log_ratio * (num - exact)).astype(np.int32), num - 1)
    return (offset + np.where(dist < exact, dist, large)).astype(np.int32)


def toeplitz(by_offset: jax.Array, length: int) -> jax.Array:
    """[..., 2L-1] values per offset q-k (index q-k+L-1) -> [..., L, L] with T[q, k] = that value.

    Built from static tiles, slices and reshapes: no gather, so the backward pass is a sum
    rather than a scatter-add into the table, which on CPU cost a fifth of a T5 step.
    """
    rev = jnp.flip(by_offset, axis=-1)  # rev[j] = value at offset L-1-j
    pad = [(0, 0)] * (rev.ndim - 1) + [(0, 1)]
    # Row q of the result is rev[L-1-q : 2L-1-q]. Copies of rev padded to 2L laid end to end,
    # read from index L-1 in rows of 2L-1, start each row q at offset L-1-q of copy q.
    flat = jnp.tile(jnp.pad(rev, pad), length)
    rows = flat[..., length - 1 : length - 1 + length * (2 * length - 1)]
    return rows.reshape(*rev.shape[:-1], length, 2 * length - 1)[..., :length]


def position_bias(table: jax.Array, length: int, bidirectional: bool) -> jax.Array:
    """Bucket table [NUM_BUCKETS, H] -> self-attention logit bias [1, H, L, L]."""
    # The bucket depends only on the offset q-k, so gather the 2L-1 offsets, not L x L pairs.
    buckets = relative_buckets(length, length, bidirectional)
    by_offset = np.concatenate([buckets[0, :0:-1], buckets[:, 0]])  # offsets -(L-1) .. L-1
    return toeplitz(table[by_offset].T, length)[None]


class Stack(nnx.Module):
    """Encoder (bidirectional) or decoder (causal, with cross-attention) stack of T5 layers."""

    def __init__(
        self,
        width: int,
        *,
        depth: int,
        num_heads: int,
        mlp_width: int,
        decoder: bool,
        rngs: nnx.Rngs,
    ):
        self.decoder = decoder
        init = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")
        self.rel_bias = nnx.Param(init(rngs.params(), (NUM_BUCKETS, num_heads), jnp.float32))
        self.layers = nnx.List(
            [
                Block(width, num_heads, mlp_width, style=LAYER, cross=decoder, rngs=rngs)
                for _ in range(depth)
            ]
        )
        self.norm = nnx.RMSNorm(width, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array | None,
        memory: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
    ) -> jax.Array:
        """Embedded tokens x [B, L, W] -> normalised states [B, L, W].

        The decoder ANDs `mask` with its causal mask; it needs no padding mask of its own,
        because targets are right-padded, so a causal query at a real token never sees a pad.
        """
        length = x.shape[1]
        bias = position_bias(self.rel_bias[...], length, bidirectional=not self.decoder)
        if self.decoder:
            causal = np.tril(np.ones((length, length), bool))[None, None]
            mask = causal if mask is None else mask & causal
        for layer in self.layers:
            x = layer(x, mask, bias, memory, memory_mask)
        return self.norm(x)


def key_mask(ids: jax.Array) -> jax.Array:
    """Attention mask [B, 1, 1, L] that hides padding keys."""
    return (ids != PAD)[:, None, None, :]


class T5(nnx.Module):
    """Encoder-decoder: (inputs [B, Li], decoder_inputs [B, Lt]) int32 -> logits [B, Lt, V]."""

    def __init__(
        self,
        width: int,
        *,
        encoder_depth: int,
        decoder_depth: int,
        num_heads: int,
        mlp_width: int,
        vocab_size: int,
        rngs: nnx.Rngs,
    ):
        # Unit-variance embeddings (T5): the first RMSNorm sees O(1) activations.
        self.embed = EmbedParam(
            nnx.initializers.normal(1.0)(rngs.params(), (vocab_size, width), jnp.float32)
        )
        stack = functools.partial(Stack, width, num_heads=num_heads, mlp_width=mlp_width, rngs=rngs)
        self.encoder = stack(depth=encoder_depth, decoder=False)
        self.decoder = stack(depth=decoder_depth, decoder=True)
        self.head = Linear(
            width, vocab_size, use_bias=False, kind=EmbedParam, rngs=rngs, flatten=True
        )

    def embed_tokens(self, ids: jax.Array) -> jax.Array:
        """Token ids [B, L] -> embeddings [B, L, W] (table shared by both stacks)."""
        return jnp.take(self.embed[...], ids, axis=0)

    def __call__(self, inputs: jax.Array, decoder_inputs: jax.Array) -> jax.Array:
        memory_mask = key_mask(inputs)
        memory = self.encoder(self.embed_tokens(inputs), memory_mask)
        x = self.decoder(self.embed_tokens(decoder_inputs), None, memory, memory_mask)
        return self.head(x)
