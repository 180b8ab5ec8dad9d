"""Sparse training as an optax wrapper: masks live in the optimizer state.

`sparsify(inner, ...)` turns any `optax.GradientTransformation` into one that prunes by a
schedule. One step, in order:
  1. at mask-update steps, recompute the masks from |params| at the schedule's sparsity;
  2. mask the gradients (so clipping inside `inner` sees only surviving weights and the
     effective learning rate does not depend on S);
  3. run `inner` (it may read the masks through the extra argument `masks`, as the
     sparse-aware Adafactor in `sparsekit.optim` does);
  4. make the update land pruned entries on exactly 0;
  5. zero the inner state of pruned entries: every state leaf whose shape equals its
     parameter's, inside every state subtree shaped like the params. No optimizer classes are
     special-cased; factored states (Adafactor's row/column statistics) are left as they are.

Which parameters are pruned is a label tree with the params' structure, one kind per leaf:
"block" (attention/MLP matrices: pruned at S, counted in N), "embed" (embeddings and heads:
dense, or 1 - sqrt(1 - S) with `embed_rule=True`), "dense" (never pruned).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsekit import masks as masklib
from sparsekit.schedules import Schedule

KINDS = ("block", "embed", "dense")


class SparseState(NamedTuple):
    """Optimizer state of the sparse wrapper."""

    count: jax.Array  # steps taken so far (int32)
    masks: Any  # bool pytree like the params; a scalar True for never-pruned leaves
    inner_state: Any  # the wrapped optimizer's state, pruned entries zeroed


def label_by_path(params: Any, *, block: str, embed: str | None = None) -> Any:
    """Label tree for any pytree: leaves whose path matches `block` / `embed` (regex search
    on `jax.tree_util.keystr` of the path) are "block" / "embed", others "dense"."""

    def kind(path, _):
        name = jax.tree_util.keystr(path)
        if re.search(block, name):
            return "block"
        if embed is not None and re.search(embed, name):
            return "embed"
        return "dense"

    return jax.tree_util.tree_map_with_path(kind, params)


def check_labels(labels: Any, params: Any) -> None:
    """Refuse a label tree that does not match the params or holds an unknown kind."""
    if jax.tree.structure(labels) != jax.tree.structure(params):
        raise ValueError("labels must have the same tree structure as params")
    bad = {k for k in jax.tree.leaves(labels) if k not in KINDS}
    if bad:
        raise ValueError(f"labels must be one of {KINDS}, got {sorted(bad)}")


def layer_sparsity(kind: str, sparsity, *, embed_rule: bool, embed_ratio: float = 1.0):
    """Sparsity of one tensor of `kind` when the block matrices are at `sparsity`: the
    paper's rule gives "embed" tensors 1 - sqrt(1 - embed_ratio * sparsity) (`embed_ratio`
    1 is the rule as written; see `sparsify`'s `embed_target`)."""
    if kind == "block":
        return sparsity
    if kind == "embed" and embed_rule:
        return 1.0 - jnp.sqrt(1.0 - embed_ratio * sparsity)
    return 0.0


@dataclass(frozen=True)
class Pruner:
    """How masks are computed: pattern and per-kind sparsity, by weight magnitude (`scores`)."""

    pattern: masklib.Pattern
    embed_rule: bool = False
    embed_ratio: float = 1.0  # see layer_sparsity

    def prunable(self, kind: str) -> bool:
        return kind == "block" or (kind == "embed" and self.embed_rule)

    def scores(self, param: jax.Array) -> jax.Array:
        return jnp.abs(param)

    def masks(self, params: Any, labels: Any, sparsity) -> Any:
        """Masks for all params at block sparsity `sparsity` (traced scalar is fine)."""
        flat, treedef = jax.tree.flatten(params)
        kinds = treedef.flatten_up_to(labels)
        out = [self._one(p, k, sparsity) for p, k in zip(flat, kinds, strict=True)]
        if self.pattern.kind == "global":
            blocks = [self.scores(p) for p, k in zip(flat, kinds, strict=True) if k == "block"]
            shared = iter(masklib.global_unstructured(blocks, sparsity))
            out = [next(shared) if k == "block" else m for m, k in zip(out, kinds, strict=True)]
        return treedef.unflatten(out)

    def _one(self, param: jax.Array, kind: str, sparsity) -> jax.Array:
        if not self.prunable(kind):
            return jnp.array(True)
        if kind == "block" and self.pattern.kind == "nm":
            return masklib.gradual_nm(self.scores(param), self.pattern.n, self.pattern.m,
                                      sparsity, axis=0)
        if kind == "block" and self.pattern.kind == "global":
            return jnp.ones(param.shape, bool)  # filled in by the global threshold
        s = layer_sparsity(kind, sparsity, embed_rule=self.embed_rule,
                           embed_ratio=self.embed_ratio)
        return masklib.unstructured(self.scores(param), s)


def _mask_state(state: Any, masks: Any, params: Any, prunable: Any) -> Any:
    """Zero pruned entries in every params-shaped subtree of an optimizer state.

    `prunable` (a static bool per leaf) skips leaves that are never pruned."""
    params_def = jax.tree.structure(params)

    def params_like(node) -> bool:
        return jax.tree.structure(node) == params_def

    def zero_one(s, m, p, pruned):
        if pruned and jnp.shape(s) == p.shape:
            return jnp.where(m, s, jnp.zeros_like(s))
        return s

    def zero(node):
        if not params_like(node):
            return node
        return jax.tree.map(zero_one, node, masks, params, prunable)

    return jax.tree.map(zero, state, is_leaf=params_like)


def sparsify(
    inner: optax.GradientTransformation,
    *,
    schedule: Schedule,
    total_steps: int,
    labels: Any | Callable[[Any], Any],
    pattern: str | masklib.Pattern = "unstructured",
    embed_rule: bool = False,
    embed_target: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Wrap `inner` so that training follows `schedule` and pruned weights stay exactly zero.

    Args:
      inner: any optax transformation (clip first inside it: it then sees masked gradients).
      schedule: block-matrix sparsity over training (`sparsekit.schedules`).
      total_steps: length of the run in steps (converts the schedule's fractions).
      labels: label tree ("block"/"embed"/"dense" per leaf) or a function params -> labels.
      pattern: "unstructured" (per-tensor top-k), "global" (one threshold over all block
        matrices) or "N:M" (n:m along the reduction axis 0; the schedule's target must be
        1 - n/m, reached gradually by `masks.gradual_nm`).
      embed_rule: prune "embed" leaves to 1 - sqrt(1 - S) (the paper's rule).
      embed_target: with `embed_rule`, the embed leaves' final sparsity when it is not
        1 - sqrt(1 - target): e.g. 1 - w_twin / w, which keeps exactly the dense twin's
        embedding non-zeros (`RunConfig.embed_sparsity`). They follow the rule's curve,
        1 - sqrt(1 - r * s) at block sparsity s, with r set so the end lands on it.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps}")
    ratio = 1.0
    if embed_target is not None:
        if not embed_rule:
            raise ValueError("embed_target is a setting of the embedding rule: pass "
                             "embed_rule=True with it")
        if not 0.0 <= embed_target < 1.0:
            raise ValueError(f"embed_target must be in [0, 1), got {embed_target}")
        equivalent = 1.0 - (1.0 - embed_target) ** 2  # the block sparsity the rule maps to it
        ratio = equivalent / schedule.target if schedule.target > 0 else 1.0
        if schedule.target == 0 and embed_target > 0:
            raise ValueError(f"embed_target {embed_target} needs a schedule target above 0")
    pruner = Pruner(masklib.parse_pattern(pattern) if isinstance(pattern, str) else pattern,
                    embed_rule, ratio)
    if pruner.pattern.kind == "nm" and abs(schedule.target - pruner.pattern.sparsity) > 1e-9:
        raise ValueError(
            f"schedule target must equal the n:m sparsity 1 - n/m = {pruner.pattern.sparsity} "
            f"for pattern {pruner.pattern.n}:{pruner.pattern.m}, got {schedule.target}"
        )
    inner = optax.with_extra_args_support(inner)

    def get_labels(params):
        tree = labels(params) if callable(labels) else labels
        check_labels(tree, params)
        return tree

    def init_fn(params):
        tree = get_labels(params)
        start = jax.tree.map(
            lambda p, k: jnp.ones(p.shape, bool) if pruner.prunable(k) else jnp.array(True),
            params, tree,
        )
        return SparseState(jnp.zeros([], jnp.int32), start, inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("params must be passed to update(): masks are computed from them")
        tree = get_labels(params)
        prunable = jax.tree.map(pruner.prunable, tree)  # static: never-pruned leaves skip masking
        step = state.count
        current = jax.lax.cond(
            schedule.is_update(step, total_steps),
            lambda: pruner.masks(params, tree, schedule.at(step, total_steps)),
            lambda: state.masks,
        )
        grads = jax.tree.map(lambda g, m, k: jnp.where(m, g, jnp.zeros_like(g)) if k else g,
                             updates, current, prunable)
        new, inner_state = inner.update(grads, state.inner_state, params, masks=current,
                                        **extra_args)
        new = jax.tree.map(lambda u, m, p, k: jnp.where(m, u, -p) if k else u,
                           new, current, params, prunable)
        inner_state = _mask_state(inner_state, current, params, prunable)
        return new, SparseState(step + 1, current, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@dataclass(frozen=True)
class LayerCount:
    """Census row for one parameter tensor."""

    path: str
    kind: str
    shape: tuple[int, ...]
    size: int
    nonzero: int


@dataclass(frozen=True)
class Census:
    """Parameter counts measured from the masks. `N` is the law's N: non-zero "block"
    (non-embedding) parameters."""

    total: int
    nonzero: int
    N: int
    dense_block: int  # block parameters before pruning (the dense width's non-embedding count)
    layers: tuple[LayerCount, ...]

    @property
    def embed(self) -> int:
        """Non-zero embedding and head ("embed") parameters: not in N."""
        return sum(r.nonzero for r in self.layers if r.kind == "embed")

    @property
    def sparsity(self) -> float:
        """Measured sparsity of the block matrices."""
        return 1.0 - self.N / self.dense_block if self.dense_block else 0.0


def census(params: Any, labels: Any, masks: Any | None = None) -> Census:
    """Count total, non-zero and non-zero block (N) parameters, per tensor and in total.

    Without `masks`, every parameter counts as non-zero (the dense model).
    """
    check_labels(labels, params)
    if masks is None:
        masks = jax.tree.map(lambda p: jnp.array(True), params)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    kinds = treedef.flatten_up_to(labels)
    keep = treedef.flatten_up_to(masks)
    rows = []
    for (path, p), k, m in zip(flat, kinds, keep, strict=True):
        size = int(p.size)
        nonzero = int(jnp.sum(jnp.broadcast_to(m, p.shape)))
        rows.append(LayerCount(jax.tree_util.keystr(path), k, tuple(p.shape), size, nonzero))
    return Census(
        total=sum(r.size for r in rows),
        nonzero=sum(r.nonzero for r in rows),
        N=sum(r.nonzero for r in rows if r.kind == "block"),
        dense_block=sum(r.size for r in rows if r.kind == "block"),
        layers=tuple(rows),
    )
