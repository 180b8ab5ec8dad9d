"""Transformer pieces shared by ViT and T5: linear, attention, MLP and the pre-norm block.

Every weight matrix is stored (in, out), so axis 0 is the reduction dimension and n:m groups
run along it. Block matrices are `BlockParam` (pruned, counted in N); biases and norm scales
are plain `nnx.Param` (never pruned).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from sparsekit.models.params import BlockParam

Array = jax.Array

# LeCun normal: unit-variance activations through each matmul at any width.
DEFAULT_KERNEL_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


class Linear(nnx.Module):
    """y = x @ kernel (+ bias); kernel (in, out) of parameter kind `kind`.

    flatten: run one 2-D matmul over all positions ([B * L, in] @ kernel) instead of a
    [B, L, in] one. Same values, a different floating-point order. With [B, L, in], XLA:CPU
    fed the weight gradient through a transposing copy, and a T5 MLP layer's training step
    took 49 ms instead of 22 (width 136, batch 32 x 128 tokens). T5 layers flatten. ViT layers
    do not, so that the archived ViT runs (results/archive/vit-fractal64) stay
    bit-reproducible. Flattening would make ViT about 10% faster, at the cost of rerunning
    those stores.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool,
        rngs: nnx.Rngs,
        kind: type[nnx.Param] = BlockParam,
        kernel_init: nnx.Initializer = DEFAULT_KERNEL_INIT,
        flatten: bool = False,
    ):
        self.flatten = flatten
        self.kernel = kind(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None

    def __call__(self, x: Array) -> Array:
        """x [..., in] -> [..., out]."""
        if self.flatten:
            y = (x.reshape(-1, x.shape[-1]) @ self.kernel[...]).reshape(*x.shape[:-1], -1)
        else:
            y = x @ self.kernel[...]
        return y if self.bias is None else y + self.bias[...]


def add_shared(x: Array, bias: Array) -> Array:
    """x [B, ...] + bias [1, ...]: a bias the whole batch shares (T5's position bias).

    The value is plain broadcasting. The backward pass sums the bias cotangent over the batch
    with a matmul: XLA:CPU's reduction over the leading axis took a third of a T5 attention
    layer's training step (27 ms vs 18 ms with the matmul, batch 32, 128 tokens, 4 heads).
    """
    if bias.shape != (1, *x.shape[1:]):
        raise ValueError(f"bias: shape must be (1, *x.shape[1:]) = {(1, *x.shape[1:])}, "
                         f"got {bias.shape}")
    return _add_shared(x, bias)


@jax.custom_vjp
def _add_shared(x: Array, bias: Array) -> Array:
    return x + bias


def _add_shared_fwd(x: Array, bias: Array) -> tuple[Array, None]:
    return x + bias, None


def _add_shared_bwd(_, g: Array) -> tuple[Array, Array]:
    return g, jnp.tensordot(jnp.ones(g.shape[0], g.dtype), g, axes=1)[None]


_add_shared.defvjp(_add_shared_fwd, _add_shared_bwd)


class Attention(nnx.Module):
    """Multi-head dot-product attention with q, k, v, o projections of shape (width, width)."""

    def __init__(
        self, width: int, num_heads: int, *, use_bias: bool, rngs: nnx.Rngs, flatten: bool = False
    ):
        if width % num_heads:
            raise ValueError(f"width={width} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (
            Linear(width, width, use_bias=use_bias, rngs=rngs, flatten=flatten) for _ in range(4)
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
        bias: float [1, H, Lq, Lk], shared by the batch, added to the logits (position bias).
        """
        q, k, v = self._heads(self.q(x)), self._heads(self.k(memory)), self._heads(self.v(memory))
        q = q * q.shape[-1] ** -0.5  # scale the smaller tensor, not the [B, H, Lq, Lk] logits
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        if bias is not None:
            logits = add_shared(logits, bias)
        if mask is not None:
            # A finite minimum, not -inf: a fully masked row (all-pad input) stays NaN-free.
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return self.o(out.reshape(*x.shape[:-1], -1))


class MLP(nnx.Module):
    """Position-wise MLP: GeLU (ViT, with biases) or gated GeLU (T5.1.1, two input matrices)."""

    def __init__(
        self,
        width: int,
        hidden: int,
        *,
        gated: bool,
        use_bias: bool,
        rngs: nnx.Rngs,
        flatten: bool = False,
    ):
        linear = functools.partial(Linear, use_bias=use_bias, rngs=rngs, flatten=flatten)
        self.wi = linear(width, hidden)
        self.wg = linear(width, hidden) if gated else None
        self.wo = linear(hidden, width)

    def __call__(self, x: Array) -> Array:
        h = jax.nn.gelu(self.wi(x))
        if self.wg is not None:
            h = h * self.wg(x)
        return self.wo(h)


@dataclass(frozen=True)
class LayerStyle:
    """How a family builds its Transformer layers (e.g. `vit.LAYER`, `t5.LAYER`)."""

    norm: Callable[..., nnx.Module]  # norm(width, rngs=...): nnx.LayerNorm or nnx.RMSNorm
    use_bias: bool  # biases in every Linear of the layer
    gated: bool  # gated-GeLU MLP (two input matrices) instead of GeLU
    flatten: bool  # 2-D matmuls over all positions (see Linear)


class Block(nnx.Module):
    """Pre-norm Transformer layer: self-attention, optional cross-attention, then MLP, built
    in the family's `style`."""

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_width: int,
        *,
        style: LayerStyle,
        cross: bool,
        rngs: nnx.Rngs,
    ):
        def norm() -> nnx.Module:
            return style.norm(width, rngs=rngs)

        attention = functools.partial(Attention, width, num_heads, use_bias=style.use_bias,
                                      rngs=rngs, flatten=style.flatten)
        self.self_norm = norm()
        self.self_attn = attention()
        self.cross_norm = norm() if cross else None
        self.cross_attn = attention() if cross else None
        self.mlp_norm = norm()
        self.mlp = MLP(width, mlp_width, gated=style.gated, use_bias=style.use_bias, rngs=rngs,
                       flatten=style.flatten)

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
