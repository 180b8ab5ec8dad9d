"""Transformer pieces shared by ViT and T5: linear, attention, MLP and the pre-norm block.

Every weight matrix is stored (in, out), so axis 0 is the reduction dimension and n:m groups
run along it. Block matrices are `BlockParam` (pruned, counted in N); biases and norm scales
are plain `nnx.Param` (never pruned).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sparsekit.models.params import BlockParam

Array = jax.Array

# LeCun normal: unit-variance activations through each matmul at any width.
DEFAULT_KERNEL_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


class Linear(nnx.Module):
    """y = x @ kernel (+ bias); kernel (in, out) of parameter kind `kind`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool,
        rngs: nnx.Rngs,
        kind: type[nnx.Param] = BlockParam,
        kernel_init: nnx.Initializer = DEFAULT_KERNEL_INIT,
    ):
        self.kernel = kind(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None

    def __call__(self, x: Array) -> Array:
        y = x @ self.kernel[...]
        return y if self.bias is None else y + self.bias[...]


class Attention(nnx.Module):
    """Multi-head dot-product attention with q, k, v, o projections of shape (width, width)."""

    def __init__(self, width: int, num_heads: int, *, use_bias: bool, rngs: nnx.Rngs):
        if width % num_heads:
            raise ValueError(f"width={width} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (
            Linear(width, width, use_bias=use_bias, rngs=rngs) for _ in range(4)
        )

    def _heads(self, t: Array) -> Array:
        """[B, L, W] -> [B, L, H, W/H]."""
        return t.reshape(*t.shape[:-1], self.num_heads, -1)

    def __call__(
        self,
        x: Array,
        memory: Array,
        mask: Array | None = None,
        bias: Array | None = None,
    ) -> Array:
        """Queries from x [B, Lq, W] attend to memory [B, Lk, W].

        mask: bool, broadcastable to [B, H, Lq, Lk], True = may attend.
        bias: float, broadcastable to [B, H, Lq, Lk], added to the logits (position bias).
        """
        q, k, v = self._heads(self.q(x)), self._heads(self.k(memory)), self._heads(self.v(memory))
        q = q * q.shape[-1] ** -0.5  # scale the smaller tensor, not the [B, H, Lq, Lk] logits
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        if bias is not None:
            logits = logits + bias
        if mask is not None:
            # A finite minimum, not -inf: a fully masked row (all-pad input) stays NaN-free.
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return self.o(out.reshape(*x.shape[:-1], -1))


class MLP(nnx.Module):
    """Position-wise MLP: GeLU (ViT, with biases) or gated GeLU (T5.1.1, two input matrices)."""

    def __init__(self, width: int, hidden: int, *, gated: bool, use_bias: bool, rngs: nnx.Rngs):
        self.wi = Linear(width, hidden, use_bias=use_bias, rngs=rngs)
        self.wg = Linear(width, hidden, use_bias=use_bias, rngs=rngs) if gated else None
        self.wo = Linear(hidden, width, use_bias=use_bias, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        h = jax.nn.gelu(self.wi(x))
        if self.wg is not None:
            h = h * self.wg(x)
        return self.wo(h)


class Block(nnx.Module):
    """Pre-norm Transformer layer: self-attention, optional cross-attention, then MLP.

    ViT style: LayerNorm, biases, GeLU MLP. T5 style (`t5=True`): RMSNorm, no biases,
    gated-GeLU MLP.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_width: int,
        *,
        t5: bool,
        cross: bool,
        rngs: nnx.Rngs,
    ):
        def norm() -> nnx.Module:
            return nnx.RMSNorm(width, rngs=rngs) if t5 else nnx.LayerNorm(width, rngs=rngs)

        use_bias = not t5
        self.self_norm = norm()
        self.self_attn = Attention(width, num_heads, use_bias=use_bias, rngs=rngs)
        self.cross_norm = norm() if cross else None
        self.cross_attn = (
            Attention(width, num_heads, use_bias=use_bias, rngs=rngs) if cross else None
        )
        self.mlp_norm = norm()
        self.mlp = MLP(width, mlp_width, gated=t5, use_bias=use_bias, rngs=rngs)

    def __call__(
        self,
        x: Array,
        mask: Array | None = None,
        bias: Array | None = None,
        memory: Array | None = None,
        memory_mask: Array | None = None,
    ) -> Array:
        """x [B, L, W] -> [B, L, W]; memory [B, Lm, W] is required iff built with cross=True."""
        h = self.self_norm(x)
        x = x + self.self_attn(h, h, mask, bias)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_norm(x), memory, memory_mask)
        return x + self.mlp(self.mlp_norm(x))
