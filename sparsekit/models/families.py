"""Model families: fixed depth, width scaled, and the width solver for a target N.

As in the paper, every (N, S) point trains a dense model about 1/(1-S) times larger than N
and prunes it to S, so all sparsities share the same non-zero count N. Here N is the
BlockParam census: sum over block matrices of (size - round(S * size)), per-tensor uniform
sparsity, round-half-even like numpy (exactly what the mask census counts).

Heads are fixed per family (head_dim = width / num_heads) rather than head_dim fixed: this
keeps the width quantum at 8, so the dense N steps stay fine-grained at the small widths the
CPU can afford. Every reduction dim (width, MLP width) is a multiple of 8, so n:m patterns up
to 8 fit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
from flax import nnx

from sparsekit.masks import parse_pattern
from sparsekit.models.losses import t5_loss, vit_loss
from sparsekit.models.params import BlockParam, EmbedParam
from sparsekit.models.t5 import T5
from sparsekit.models.vit import CHANNELS, IMAGE_SIZE, PATCH, ViT

Shape = tuple[int, int]
REDUCTION_MULTIPLE = 8  # every reduction dim divisible by 8: n:m groups up to m = 8


@dataclasses.dataclass(frozen=True)
class Family:
    """Shared width rules; subclasses fix depth and the block-matrix layout."""

    num_heads: int = 4  # attention heads at every width (head_dim = width / num_heads)
    mlp_ratio: float = 4.0  # MLP hidden width / model width, rounded to a multiple of 8

    name: ClassVar[str]
    depth_fields: ClassVar[tuple[str, ...]]  # the layer counts a config's `depth` sets

    def __post_init__(self):
        for field in dataclasses.fields(self):  # every field is a size or ratio, > 0 or >= 0
            value = getattr(self, field.name)
            if field.metadata.get("zero_ok") and not value >= 0:
                raise ValueError(f"{type(self).__name__}.{field.name} must be >= 0, got {value!r}")
            if not field.metadata.get("zero_ok") and not value > 0:
                raise ValueError(f"{type(self).__name__}.{field.name} must be > 0, got {value!r}")

    @property
    def quantum(self) -> int:
        """Widths are multiples of this: integral heads, reduction dims divisible by 8."""
        return math.lcm(REDUCTION_MULTIPLE, self.num_heads)

    def check_width(self, width: int) -> None:
        if not (isinstance(width, int) and width > 0 and width % self.quantum == 0):
            raise ValueError(
                f"{self.name}: width must be a positive multiple of {self.quantum}, got {width!r}"
            )

    def with_depth(self, depth: int | None) -> Family:
        """This family with `depth` layers in every stack (None: the family's own)."""
        if depth is None:
            return self
        return dataclasses.replace(self, **dict.fromkeys(self.depth_fields, depth))

    def check_pattern(self, width: int, pattern: str) -> None:
        """ValueError naming the pattern and the width unless an n:m `pattern` fits the model
        at `width`: its groups run over m consecutive inputs of each block matrix, so every
        matrix's input count must be a multiple of m. Other patterns always fit."""
        m = parse_pattern(pattern).m
        inputs = sorted({rows for rows, _ in self.block_shapes(width)})
        if not m or all(rows % m == 0 for rows in inputs):
            return
        fits = [k for k in range(2, min(inputs) + 1) if all(rows % k == 0 for rows in inputs)]
        always = [k for k in range(2, REDUCTION_MULTIPLE + 1) if REDUCTION_MULTIPLE % k == 0]
        raise ValueError(
            f"n:m pattern {pattern!r} does not fit the {self.name} model at width {width}: "
            f"its groups run over m = {m} consecutive inputs, and its matrices have "
            f"{', '.join(map(str, inputs))} inputs. At width {width}, m can be "
            f"{', '.join(map(str, fits))}; at every width, {', '.join(map(str, always))} "
            f"(widths and MLP widths are multiples of {REDUCTION_MULTIPLE})"
        )

    def mlp_width(self, width: int) -> int:
        """MLP hidden width: mlp_ratio * width rounded to a multiple of 8."""
        return REDUCTION_MULTIPLE * round(self.mlp_ratio * width / REDUCTION_MULTIPLE)

    def block_shapes(self, width: int) -> list[Shape]:
        """(in, out) shape of every BlockParam matrix of the model at this width."""
        raise NotImplementedError

    def block_params(self, width: int) -> int:
        """Dense non-embedding parameter count (closed form)."""
        raise NotImplementedError

    def for_source(self, source: Any) -> Family:
        """This family shaped by its data source (`sparsekit.data`): the sizes it reads
        from the data (classes and image size, or input and target lengths)."""
        raise NotImplementedError

    def loss(self, z_loss: float) -> Callable:
        """The training loss `loss_fn(model, batch) -> (loss, metrics)` (`models.losses`)
        with logit z-loss coefficient `z_loss` (ValueError if the family has none)."""
        raise NotImplementedError

    @property
    def block_tokens(self) -> float:
        """Tokens per example through each block matrix (mean over the matrices)."""
        raise NotImplementedError

    @property
    def outputs(self) -> int:
        """How many outcomes the loss is a cross-entropy over (classes, or the vocabulary)."""
        raise NotImplementedError

    @property
    def uniform_loss(self) -> float:
        """The loss of uniform predictions, ln(outputs): a model that ends at or above it has
        learned nothing (a collapsed run; e.g. the T5's 5.9506 = ln 384)."""
        return math.log(self.outputs)

    def flops_per_example(self, width: int) -> int:
        """Forward matmul FLOPs (2 per multiply-add) per example of the model at this width;
        training is about 3x this."""
        raise NotImplementedError


def _attention_shapes(width: int) -> list[Shape]:
    return [(width, width)] * 4  # q, k, v, o


def _mlp_shapes(width: int, hidden: int, gated: bool) -> list[Shape]:
    return [(width, hidden)] * (2 if gated else 1) + [(hidden, width)]


@dataclasses.dataclass(frozen=True)
class ViTFamily(Family):
    """ViT on square RGB images: patch 4, pre-LN, MLP 4x, GAP, zero head by default."""

    depth: int = 4  # Transformer layers
    num_classes: int = 10  # output classes
    image_size: int = IMAGE_SIZE  # pixels per side (the data's); a multiple of patch
    patch: int = PATCH  # pixels per patch side: (image_size / patch)^2 tokens per image
    head_init: float = dataclasses.field(default=0.0, metadata={"zero_ok": True})  # head
    # kernel std in units of 1/sqrt(width); 0: zero head (initial loss ln num_classes)

    name: ClassVar[str] = "vit"
    depth_fields: ClassVar[tuple[str, ...]] = ("depth",)

    def __post_init__(self):
        super().__post_init__()
        if self.image_size % self.patch:
            raise ValueError(f"ViTFamily.image_size={self.image_size} must be a multiple of "
                             f"patch={self.patch}")

    @property
    def tokens(self) -> int:
        """Patch tokens per image: (image_size / patch)^2."""
        return (self.image_size // self.patch) ** 2

    @property
    def block_tokens(self) -> int:
        """Every block matrix sees every patch token: `tokens`."""
        return self.tokens

    @property
    def outputs(self) -> int:
        """The classes (`num_classes`, the data's once `for_source` has set it)."""
        return self.num_classes

    def for_source(self, source: Any) -> ViTFamily:
        """With the source's class count and image size."""
        return dataclasses.replace(self, num_classes=source.num_classes,
                                   image_size=source.image_size)

    def loss(self, z_loss: float) -> Callable:
        """`vit_loss`; the ViT has no z-loss (ValueError unless `z_loss` is 0)."""
        if z_loss:
            raise ValueError(f"optim.z_loss is a T5 setting; vit takes 0, got {z_loss!r}")
        return vit_loss

    def make(self, width: int, rngs: nnx.Rngs, **kw) -> ViT:
        """Build the model; kw go to `ViT` (e.g. use_pos_emb=False)."""
        self.check_width(width)
        return ViT(
            width,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_width=self.mlp_width(width),
            num_classes=self.num_classes,
            rngs=rngs,
            image_size=self.image_size,
            patch=self.patch,
            head_init=self.head_init,
            **kw,
        )

    def block_shapes(self, width: int) -> list[Shape]:
        f = self.mlp_width(width)
        return self.depth * (_attention_shapes(width) + _mlp_shapes(width, f, gated=False))

    def block_params(self, width: int) -> int:
        """depth * (4 w^2 + 2 w f); 48 w^2 at the defaults (f = 4w, depth 4)."""
        return self.depth * (4 * width**2 + 2 * width * self.mlp_width(width))

    def flops_per_example(self, width: int) -> int:
        """Forward matmul FLOPs (2 per multiply-add) per image: patch embedding, q/k/v/o,
        attention scores and values, MLP, head. Training is about 3x this."""
        t, f = self.tokens, self.mlp_width(width)
        layer = 2 * t * (4 * width**2 + 2 * width * f) + 2 * 2 * t * t * width
        embed = 2 * t * self.patch * self.patch * CHANNELS * width
        return embed + self.depth * layer + 2 * width * self.num_classes


@dataclasses.dataclass(frozen=True)
class T5Family(Family):
    """T5.1.1-style encoder-decoder on bytes: RMSNorm, gated GeLU, relative position bias."""

    mlp_ratio: float = 8 / 3  # T5.1.1 base: d_ff 2048 / d_model 768
    encoder_depth: int = 2  # encoder layers
    decoder_depth: int = 2  # decoder layers
    vocab_size: int = 384  # 0 pad, 1 eos, 256 bytes, sentinels
    input_length: int = 128  # encoder tokens per example (the data's; default TextConfig's)
    target_length: int = 24  # decoder tokens per example (the data's; default TextConfig's)

    name: ClassVar[str] = "t5"
    depth_fields: ClassVar[tuple[str, ...]] = ("encoder_depth", "decoder_depth")

    def for_source(self, source: Any) -> T5Family:
        """With the source's input and target lengths."""
        return dataclasses.replace(self, input_length=source.lengths.input_length,
                                   target_length=source.lengths.target_length)

    def loss(self, z_loss: float) -> Callable:
        """`t5_loss` with this z-loss coefficient."""
        return functools.partial(t5_loss, z_loss=z_loss)

    @property
    def outputs(self) -> int:
        """The vocabulary the target tokens are predicted over (`vocab_size`)."""
        return self.vocab_size

    @property
    def block_tokens(self) -> float:
        """The mean over layers: (encoder_depth * input_length + decoder_depth *
        target_length) / (encoder_depth + decoder_depth)."""
        enc, dec = self.encoder_depth, self.decoder_depth
        return (enc * self.input_length + dec * self.target_length) / (enc + dec)

    def make(self, width: int, rngs: nnx.Rngs, **kw) -> T5:
        """Build the model; kw go to `T5`."""
        self.check_width(width)
        return T5(
            width,
            encoder_depth=self.encoder_depth,
            decoder_depth=self.decoder_depth,
            num_heads=self.num_heads,
            mlp_width=self.mlp_width(width),
            vocab_size=self.vocab_size,
            rngs=rngs,
            **kw,
        )

    def block_shapes(self, width: int) -> list[Shape]:
        mlp = _mlp_shapes(width, self.mlp_width(width), gated=True)
        encoder = _attention_shapes(width) + mlp
        decoder = 2 * _attention_shapes(width) + mlp  # self- and cross-attention
        return self.encoder_depth * encoder + self.decoder_depth * decoder

    def block_params(self, width: int) -> int:
        """E (4 w^2 + 3 w f) + D (8 w^2 + 3 w f), f = mlp_width(w)."""
        w, f = width, self.mlp_width(width)
        return self.encoder_depth * (4 * w * w + 3 * w * f) + self.decoder_depth * (
            8 * w * w + 3 * w * f
        )

    def flops_per_example(self, width: int) -> int:
        """Forward matmul FLOPs (2 per multiply-add) per example of input_length encoder and
        target_length decoder tokens: projections, attention scores and values (full square,
        causal masking saves nothing), MLP, output head; the embedding gather is free.
        Training is about 3x this."""
        w, f, li, lt = width, self.mlp_width(width), self.input_length, self.target_length
        mlp = 2 * 3 * w * f
        encoder = li * (2 * 4 * w * w + mlp) + 4 * li * li * w
        decoder = (
            lt * (2 * 6 * w * w + mlp)  # self q/k/v/o, cross q/o, MLP
            + li * 2 * 2 * w * w  # cross k/v over the encoder output
            + 4 * lt * lt * w  # self-attention scores and values
            + 4 * lt * li * w  # cross-attention scores and values
        )
        head = 2 * lt * w * self.vocab_size
        return self.encoder_depth * encoder + self.decoder_depth * decoder + head


REGISTRY: dict[str, Family] = {"vit": ViTFamily(), "t5": T5Family()}  # name -> family


def get_family(family: str | Family) -> Family:
    """A Family, given itself or its registry name."""
    if isinstance(family, Family):
        return family
    if family not in REGISTRY:
        raise ValueError(f"unknown model family {family!r}; allowed: {sorted(REGISTRY)}")
    return REGISTRY[family]


def census(shapes: list[Shape], sparsity: float) -> int:
    """Non-zeros left when every matrix keeps size - round(S * size) entries."""
    return sum(r * c - round(sparsity * r * c) for r, c in shapes)


REACH = 2.0  # width_for refuses a target N that no width reaches within this factor
# Bytes a training step holds per block parameter, at least: float32 params, gradients, Adam's
# two moments and the update (5 x 4), the bool mask (1), and 3 for XLA's temporaries. The
# embeddings and activations come on top, so `training_bytes` is a lower bound.
TRAINING_BYTES_PER_PARAM = 24


def smallest_width(family: str | Family, reaches: Callable[[int], bool]) -> int:
    """The smallest width (a multiple of the family's quantum) at which `reaches(width)` holds,
    for a predicate that holds at every wider width once it holds (e.g. N >= n: a model's N
    grows with its width). Doubling, then bisection: about 2 log2(width / quantum) calls."""
    q = get_family(family).quantum
    high = 1
    while not reaches(high * q):  # reaches(low * q) is false below, low = high / 2 (or 0)
        high *= 2
    low = high // 2
    while high - low > 1:
        mid = (low + high) // 2
        if reaches(mid * q):
            high = mid
        else:
            low = mid
    return high * q


def training_bytes(family: str | Family, width: int) -> int:
    """Memory a training step of the model at `width` needs, at least (bytes): its dense block
    parameters x TRAINING_BYTES_PER_PARAM."""
    return TRAINING_BYTES_PER_PARAM * get_family(family).block_params(width)


def largest_width(family: str | Family, memory: int) -> int:
    """The widest model whose training fits in `memory` bytes (`training_bytes`); 0 if none."""
    fam = get_family(family)
    return smallest_width(fam, lambda width: training_bytes(fam, width) > memory) - fam.quantum


def width_for(family: str | Family, n: float, sparsity: float) -> tuple[int, int]:
    """Width whose non-zero block count at `sparsity` is closest to n (in ratio).

    Returns (width, N_measured). The relative miss is at most about one width quantum over
    the width (e.g. 8/64 -> up to ~12% in N), so fit laws on N_measured, not on n. A target
    that no width reaches within a factor REACH (below the smallest model) is a ValueError
    giving the nearest reachable N. The search doubles, then bisects (`smallest_width`), so
    a huge target costs about 2 log2(width) census evaluations, not width / quantum.
    """
    fam = get_family(family)
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if not n > 0:
        raise ValueError(f"target N must be positive, got {n}")

    def measured(width: int) -> int:
        return census(fam.block_shapes(width), sparsity)

    above = smallest_width(fam, lambda width: measured(width) >= n)  # N grows with width
    below = max(above - fam.quantum, fam.quantum)
    width = min((below, above), key=lambda w: abs(math.log(measured(w) / n)))
    nearest = measured(width)
    if not 1 / REACH <= nearest / n <= REACH:
        raise ValueError(
            f"target N = {n:,.0f} is out of reach for {fam.name} at S = {sparsity:g}: the "
            f"nearest N a width reaches is {nearest:,} (width {width}, {nearest / n:.3g}x the "
            f"target), and none comes within {REACH:g}x. Ask for the smallest model by its "
            f"width instead (width {fam.quantum})"
        )
    return width, nearest


def exact_width(family: str | Family, n: float, sparsity: float) -> tuple[int, float]:
    """(width, block sparsity) of a model at nominal `sparsity` whose N equals its dense
    twin's: the dense model whose N is nearest the target n (`width_for` at S = 0).

    The width is the one whose non-zero count at `sparsity` is nearest the twin's N (and
    at least as large as it when dense); the block sparsity is then 1 - N_twin / block
    parameters, so the mask keeps the twin's count up to per-tensor rounding (at most half a
    weight per matrix). It differs from `sparsity` by the width quantum's share (e.g. 0.5
    -> 0.45-0.57 and 0.875 -> 0.86-0.89 on the default grids); the run records it as
    `sparsity_measured`.
    """
    fam = get_family(family)
    twin = width_for(fam, n, 0.0)[1]
    width = width_for(fam, twin, sparsity)[0]
    while fam.block_params(width) < twin:
        width += fam.quantum
    return width, 1.0 - twin / fam.block_params(width)


def kinds(model: nnx.Module) -> dict:
    """Pure dict, structured like nnx.to_pure_dict(nnx.state(model, nnx.Param)), of each
    parameter's kind: "block" (pruned, in N), "embed" (embedding/head) or "dense"."""
    names = {BlockParam: "block", EmbedParam: "embed", nnx.Param: "dense"}

    def kind(variable: nnx.Variable) -> str:
        if type(variable) not in names:
            raise TypeError(f"unclassified parameter type {type(variable).__name__}")
        return names[type(variable)]

    state = nnx.state(model, nnx.Param)
    if len(jax.tree.leaves(state)) != len(jax.tree.leaves(nnx.state(model))):
        raise TypeError("model holds variables that are not parameters")
    return nnx.to_pure_dict(
        jax.tree.map(kind, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    )
