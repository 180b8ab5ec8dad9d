"""Vision Transformer for square RGB images (big_vision recipe at laptop scale).

Patch 4 on 32x32 images -> 8x8 = 64 tokens (the defaults; 16x16 images give 16 tokens); fixed
2-D sin-cos position embedding (not a parameter, so N and the pruned set stay clean); pre-LN
blocks; final LayerNorm, global average pooling and a head that starts at zero by default, so
the initial loss is exactly log(num_classes) (`head_init` > 0 draws it at random instead).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsekit.models.layers import Block, LayerStyle, Linear
from sparsekit.models.params import EmbedParam

IMAGE_SIZE = 32  # default pixels per side
CHANNELS = 3
PATCH = 4  # default pixels per patch side -> 64 tokens on 32x32 images
# ViT layers: LayerNorm, biases, GeLU MLP, [B, L, in] matmuls (see Linear: unflattened keeps
# the archived ViT runs bit-reproducible).
LAYER = LayerStyle(nnx.LayerNorm, use_bias=True, gated=False, flatten=False)


def patchify(images: jax.Array, patch: int = PATCH) -> jax.Array:
    """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C], patches in row-major grid order."""
    b, h, w, c = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), patch * patch * c)


@functools.cache
def sincos_2d(grid: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sin-cos position table [grid*grid, width] (a constant, not a Param).

    A quarter of the channels each hold sin/cos of the row and of the column index.
    """
    if width % 4:
        raise ValueError(f"sin-cos position embedding needs width divisible by 4, got {width}")
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4))
    r = rows.reshape(-1, 1) * omega
    c = cols.reshape(-1, 1) * omega
    return np.concatenate([np.sin(r), np.cos(r), np.sin(c), np.cos(c)], axis=1).astype(np.float32)


def head_initializer(head_init: float) -> nnx.Initializer:
    """Head kernel init: zeros for 0, else truncated normal of variance head_init^2 / width
    (LeCun scaled: logits of about head_init standard deviation from unit-variance features)."""
    if head_init == 0:
        return nnx.initializers.zeros_init()
    return nnx.initializers.variance_scaling(head_init**2, "fan_in", "truncated_normal")


class ViT(nnx.Module):
    """ViT classifier: images [B, S, S, 3] float32 -> logits [B, num_classes]."""

    def __init__(
        self,
        width: int,
        *,
        depth: int,
        num_heads: int,
        mlp_width: int,
        num_classes: int,
        rngs: nnx.Rngs,
        use_pos_emb: bool = True,
        image_size: int = IMAGE_SIZE,
        patch: int = PATCH,
        head_init: float = 0.0,
    ):
        if image_size % patch:
            raise ValueError(f"image_size={image_size} must be a multiple of patch={patch}")
        self.grid = image_size // patch  # patches per side
        if use_pos_emb:
            sincos_2d(self.grid, width)  # fail at construction on a bad width
        self.use_pos_emb = use_pos_emb
        self.width = width
        self.patch = patch
        # Patch embedding = a p x p stride-p conv written as a matmul over flattened patches.
        self.patch_embed = Linear(
            patch * patch * CHANNELS, width, use_bias=True, kind=EmbedParam, rngs=rngs
        )
        self.blocks = nnx.List(
            [
                Block(width, num_heads, mlp_width, style=LAYER, cross=False, rngs=rngs)
                for _ in range(depth)
            ]
        )
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        # Zero head (default): initial logits are 0, loss log(C), no random class preference.
        # It draws its (unused) key either way, so every other parameter is the same.
        self.head = Linear(
            width,
            num_classes,
            use_bias=True,
            kind=EmbedParam,
            kernel_init=head_initializer(head_init),
            rngs=rngs,
        )

    def __call__(self, images: jax.Array) -> jax.Array:
        x = self.patch_embed(patchify(images, self.patch))
        if self.use_pos_emb:
            x = x + jnp.asarray(sincos_2d(self.grid, self.width))
        for block in self.blocks:
            x = block(x)
        return self.head(jnp.mean(self.norm(x), axis=1))
