"""Checking n:m structure in weights: every group of m along a matrix's reduction axis holds
at most n non-zeros.

`masks.nm` and `masks.gradual_nm` build n:m masks; this module checks the weights a training
run produced, so the claim "these weights are 2:4" rests on the weights, not on the masks that
were meant to produce them. Three levels:

- `group_nonzeros(x, m, axis)`: the non-zero count of every group (jit-safe; pure array);
- `check_nm(params, labels, pattern)`: every "block" (pruned) matrix of a params pytree, with
  a report of the violating groups (`NMReport`); works on any pytree with a label tree
  (`pruning.label_by_path` builds one from path regexes);
- `check_checkpoint(path, cfg)`: the orbax checkpoint of a sparsekit run (`train.run(cfg,
  save_to=path)`, or a sweep's `<store>/checkpoints/<key>`), with the run's own labels.

Conventions, as in `masks`: groups are m consecutive entries along `axis`, default 0, the input
(reduction) axis of a Flax Linear kernel of shape (in, out), the layout 2:4 sparse tensor cores
accelerate. An entry counts as non-zero when `x != 0`: -0.0 is zero, NaN is non-zero (a
diverged weight is never silently passed). Counts are exact integers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from sparsekit.masks import Pattern, _check_groups, parse_pattern
from sparsekit.pruning import check_labels

_LISTED = 5  # violating groups named per matrix in a report


def group_nonzeros(x: ArrayLike, m: int, axis: int = 0) -> jax.Array:
    """Non-zero count (int32) of every group of m consecutive entries of `x` along `axis`.

    The result has x's shape with `axis` divided by m: entry [.., g, ..] counts
    x[.., g*m:(g+1)*m, ..]. ValueError naming `m` or `axis` when the axis length is not a
    multiple of m or the axis does not exist. Jit-safe (m and axis static).
    """
    x = jnp.asarray(x)
    return _group_nonzeros(x, m, _check_groups(x.shape, 1, m, axis))


@partial(jax.jit, static_argnums=(1, 2))
def _group_nonzeros(x: jax.Array, m: int, axis: int) -> jax.Array:
    shape = x.shape
    groups = (x != 0).reshape((*shape[:axis], shape[axis] // m, m, *shape[axis + 1 :]))
    return jnp.sum(groups, axis=axis + 1, dtype=jnp.int32)


@dataclass(frozen=True)
class MatrixCheck:
    """The n:m check of one matrix."""

    path: str  # `jax.tree_util.keystr` of the leaf
    shape: tuple[int, ...]
    groups: int  # groups of m checked
    violating: int  # groups holding more than n non-zeros
    max_nonzero: int  # most non-zeros in one group
    examples: tuple[str, ...]  # the first violating groups as index expressions, e.g. "[8:12, 3]"


@dataclass(frozen=True)
class NMReport:
    """The n:m check of every "block" matrix of a params pytree (`check_nm`)."""

    n: int
    m: int
    axis: int  # the grouped axis of every matrix
    matrices: tuple[MatrixCheck, ...]

    @property
    def groups(self) -> int:
        """Groups checked over all matrices."""
        return sum(c.groups for c in self.matrices)

    @property
    def violating(self) -> int:
        """Groups holding more than n non-zeros, over all matrices."""
        return sum(c.violating for c in self.matrices)

    @property
    def ok(self) -> bool:
        """True when no group of any checked matrix holds more than n non-zeros."""
        return self.violating == 0

    def __str__(self) -> str:
        head = (f"{self.n}:{self.m} check along axis {self.axis}: {len(self.matrices)} matrices, "
                f"{self.groups} groups of {self.m}, {self.violating} with more than {self.n} "
                "non-zeros")
        lines = [head + (" (all pass)" if self.ok else "")]
        for c in self.matrices:
            if c.violating:
                lines.append(f"  {c.path} {c.shape}: {c.violating} of {c.groups} groups, up to "
                             f"{c.max_nonzero} non-zeros, e.g. {', '.join(c.examples)}")
        return "\n".join(lines)

    def raise_if_violated(self) -> None:
        """ValueError with the report when any group holds more than n non-zeros."""
        if not self.ok:
            raise ValueError(f"weights are not {self.n}:{self.m}:\n{self}")


def _group_slice(index: tuple[int, ...], axis: int, m: int) -> str:
    """An index expression of one group in the matrix, e.g. (2, 3) on axis 0, m 4 -> [8:12, 3]."""
    parts = [f"{i * m}:{(i + 1) * m}" if d == axis else str(i) for d, i in enumerate(index)]
    return f"[{', '.join(parts)}]"


def _check_matrix(path: str, x: Any, n: int, m: int, axis: int) -> MatrixCheck:
    x = jnp.asarray(x)
    try:
        axis = _check_groups(x.shape, n, m, axis)
    except ValueError as e:
        raise ValueError(f"params{path}: {e}") from None
    counts = np.asarray(_group_nonzeros(x, m, axis))
    bad = np.argwhere(counts > n)
    return MatrixCheck(
        path=path,
        shape=tuple(x.shape),
        groups=int(counts.size),
        violating=len(bad),
        max_nonzero=int(counts.max()) if counts.size else 0,
        examples=tuple(_group_slice(tuple(map(int, i)), axis, m) for i in bad[:_LISTED]),
    )


def check_nm(
    params: Any,
    labels: Any | Callable[[Any], Any],
    pattern: str | Pattern,
    axis: int = 0,
) -> NMReport:
    """Check that every "block" leaf of `params` holds at most n non-zeros per group of m.

    Args:
      params: any pytree of arrays (e.g. a params pure dict, or restored from a checkpoint).
      labels: label tree with the params' structure ("block" / "embed" / "dense" per leaf, as
        for `pruning.sparsify`), or a function params -> labels; only "block" leaves are
        checked. For your own pytree: `pruning.label_by_path(params, block=r"attn|mlp")`.
      pattern: "N:M" (e.g. "2:4") or a parsed n:m `masks.Pattern`.
      axis: the grouped axis of every checked leaf (0: a Flax kernel's input axis).

    Returns an `NMReport` (`ok`, counts, and the first violating groups of each matrix);
    `report.raise_if_violated()` turns a failed check into a ValueError. ValueError naming the
    parameter for a pattern that is not n:m, labels that do not match, no "block" leaf, or a
    block leaf whose axis length is not a multiple of m.
    """
    parsed = parse_pattern(pattern) if isinstance(pattern, str) else pattern
    if parsed.kind != "nm":
        raise ValueError(f"pattern must be an n:m pattern such as '2:4', got {str(parsed)!r}")
    tree = labels(params) if callable(labels) else labels
    check_labels(tree, params)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    kinds = treedef.flatten_up_to(tree)
    matrices = tuple(
        _check_matrix(jax.tree_util.keystr(path), leaf, parsed.n, parsed.m, axis)
        for (path, leaf), kind in zip(flat, kinds, strict=True)
        if kind == "block"
    )
    if not matrices:
        raise ValueError("labels: no leaf is labelled 'block', so there is nothing to check")
    return NMReport(parsed.n, parsed.m, axis, matrices)


def check_checkpoint(path: str, cfg: Any) -> NMReport:
    """The n:m check of the params a run of `cfg` (a `config.RunConfig` with an n:m pattern)
    saved with orbax at `path`: the model is rebuilt from the config for the checkpoint's
    shapes and the labels of its block matrices, so the check covers exactly the matrices the
    run pruned. ValueError naming `cfg` when its pattern is not n:m, or `path` when the
    checkpoint does not hold this model's params."""
    from sparsekit.train import Trainer, load_params  # imports the training stack

    pattern = parse_pattern(cfg.sparsity.pattern)
    if pattern.kind != "nm":
        raise ValueError(f"cfg: sparsity.pattern must be n:m (e.g. '2:4'), got "
                         f"{cfg.sparsity.pattern!r}")
    template = Trainer(dataclasses.replace(cfg, init_from=None))  # no init: only the shapes
    params = load_params(path, template.params)
    return check_nm(params, template.labels, pattern)
