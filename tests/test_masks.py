"""Masks against sort-based numpy references, hand-written tie fixtures, and bad inputs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsekit import masks

SHAPES = [(1,), (7,), (1025,), (13, 17), (64, 48), (3, 5, 7)]
SPARSITIES = [0.0, 1e-3, 0.5, 0.9, 0.999]
NM_PATTERNS = [(2, 4), (4, 8), (1, 4), (2, 8)]
NEGATIVE_NAN = np.array(0xFFC00000, np.uint32).view(np.float32)

jit_unstructured = jax.jit(masks.unstructured)
jit_nm = jax.jit(masks.nm, static_argnums=(1, 2, 3))
jit_global = jax.jit(masks.global_unstructured)


def make_scores(shape, kind, seed=0):
    """'distinct': |normal|; 'ties': few distinct values, so ties straddle every threshold;
    'signed': normal with a sprinkle of -0.0, ±inf and subnormals."""
    rng = np.random.default_rng(seed)
    if kind == "distinct":
        return np.abs(rng.standard_normal(shape)).astype(np.float32)
    if kind == "ties":
        return rng.integers(0, 4, shape).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32).ravel()
    specials = np.array([-0.0, 0.0, np.inf, -np.inf, 1e-40, -1e-40], np.float32)
    x[rng.integers(0, x.size, min(6, x.size))] = specials[: min(6, x.size)]
    return x.reshape(shape)


def ref_kept(size, sparsity):
    return size - int(np.round(np.float32(sparsity) * np.float32(size)))


def ref_top(flat, count):
    """Indices of the `count` largest entries, ties to the lower index (stable sort)."""
    return np.argsort(-flat, kind="stable")[:count]


def ref_unstructured(scores, sparsity):
    flat = np.asarray(scores, np.float32).ravel()
    mask = np.zeros(flat.size, bool)
    mask[ref_top(flat, ref_kept(flat.size, sparsity))] = True
    return mask.reshape(np.shape(scores))


def ref_nm(scores, n, m, axis=0):
    x = np.moveaxis(np.asarray(scores, np.float32), axis, -1)
    groups = x.reshape(*x.shape[:-1], -1, m)
    ranks = np.argsort(np.argsort(-groups, axis=-1, kind="stable"), axis=-1, kind="stable")
    return np.moveaxis((ranks < n).reshape(x.shape), -1, axis)


def ref_gradual_nm(scores, n, m, sparsity, axis=0):
    base = ref_nm(scores, n, m, axis).ravel()
    flat = np.asarray(scores, np.float32).ravel()
    rest = np.flatnonzero(~base)
    extra = max(ref_kept(flat.size, sparsity) - int(base.sum()), 0)
    mask = base.copy()
    mask[rest[ref_top(flat[rest], extra)]] = True
    return mask.reshape(np.shape(scores))


# --- counts -------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.75, 0.875, 0.9375])
@pytest.mark.parametrize("size", [1, 2, 6, 10, 999, 4096, 3 * 2**20])
def test_kept_count_is_python_round_for_dyadic_sparsity(size, sparsity):
    # Includes exact halves (2 * 0.25, 6 * 0.25, 10 * 0.25): Python rounds half to even.
    assert int(masks.kept_count(size, sparsity)) == size - round(sparsity * size)


def test_kept_count_same_eager_and_jitted():
    sizes, sparsities = [999, 12345, 10**6 + 3], [1e-3, 0.1, 0.3, 0.9, 0.999]
    jitted = jax.jit(masks.kept_count, static_argnums=0)
    for size in sizes:
        for s in sparsities:
            assert int(masks.kept_count(size, s)) == int(jitted(size, s)) == ref_kept(size, s)


# --- unstructured -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["distinct", "ties", "signed"])
@pytest.mark.parametrize("shape", SHAPES)
def test_unstructured_matches_sort_reference(shape, kind):
    scores = make_scores(shape, kind)
    for sparsity in SPARSITIES:
        expected = ref_unstructured(scores, sparsity)
        assert expected.sum() == ref_kept(math.prod(shape), sparsity)
        eager = masks.unstructured(scores, sparsity)
        traced = jit_unstructured(scores, jnp.float32(sparsity))
        assert eager.shape == traced.shape == shape and eager.dtype == jnp.bool_
        np.testing.assert_array_equal(eager, expected, err_msg=f"eager s={sparsity}")
        np.testing.assert_array_equal(traced, expected, err_msg=f"jit s={sparsity}")


def test_unstructured_many_ties_across_rows():
    # ~10k entries tie at the threshold: the index cutoff is found 4 levels down a count tree.
    scores = make_scores((100_003,), "ties", seed=3) * 2 + make_scores((100_003,), "ties", 4)
    for sparsity in [0.05, 0.37, 0.6, 0.93]:
        np.testing.assert_array_equal(
            jit_unstructured(scores, sparsity), ref_unstructured(scores, sparsity)
        )


@pytest.mark.parametrize(
    ("scores", "sparsity", "expected"),
    [
        ([1, 1, 1, 1], 0.5, [1, 1, 0, 0]),
        ([2, 1, 1, 1], 0.5, [1, 1, 0, 0]),
        ([0, 2, 2, 1], 0.5, [0, 1, 1, 0]),
        ([1, 2, 1, 2, 1], 0.4, [1, 1, 0, 1, 0]),
        ([-1, -1, -3, -2], 0.5, [1, 1, 0, 0]),
        # -0.0 ties +0.0 (lower index wins); NaN ranks above +inf; -inf is lowest.
        ([-0.0, 0.0, np.nan, -np.inf, 3.0], 0.4, [1, 0, 1, 0, 1]),
        # 3 * 0.5 = 1.5 rounds half to even: prune 2, keep the NaN, whatever its sign bit.
        ([np.inf, np.nan, 1.0], 0.5, [0, 1, 0]),
        ([1.0, NEGATIVE_NAN, -np.inf], 0.5, [0, 1, 0]),
        ([np.nan], 0.6, [0]),  # round(0.6) prunes the only entry, even a NaN
    ],
)
def test_unstructured_tie_and_special_value_fixtures(scores, sparsity, expected):
    # Eager calls run the same jitted core, with the sparsity traced.
    got = masks.unstructured(np.array(scores, np.float32), sparsity)
    np.testing.assert_array_equal(got, np.array(expected, bool))


def test_unstructured_extremes_and_dtypes():
    x = make_scores((64, 48), "distinct")
    assert bool(masks.unstructured(x, 0.0).all())
    assert int(masks.unstructured(x, 0.999).sum()) == 3072 - round(0.999 * 3072) == 3
    assert masks.unstructured(np.zeros((0, 3)), 0.5).shape == (0, 3)
    # bfloat16 converts exactly to float32, so the ranking is unchanged.
    ties = make_scores((64, 48), "ties")
    np.testing.assert_array_equal(
        masks.unstructured(jnp.asarray(ties, jnp.bfloat16), 0.5), ref_unstructured(ties, 0.5)
    )


def test_traced_sparsity_is_not_validated_but_clipped():
    x = make_scores((7,), "distinct")
    assert int(jit_unstructured(x, 1.0).sum()) == 0
    assert int(jit_unstructured(x, -0.5).sum()) == 7


# --- n:m ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), NM_PATTERNS)
@pytest.mark.parametrize(("shape", "axis"), [((16, 24), 0), ((16, 24), 1), ((8, 3, 16), -1)])
@pytest.mark.parametrize("kind", ["distinct", "ties", "signed"])
def test_nm_matches_sort_reference(n, m, shape, axis, kind):
    scores = make_scores(shape, kind)
    expected = ref_nm(scores, n, m, axis)
    for got in (masks.nm(scores, n, m, axis), jit_nm(scores, n, m, axis)):
        np.testing.assert_array_equal(got, expected)
        groups = np.moveaxis(np.asarray(got), axis, -1).reshape(-1, m)
        assert (groups.sum(axis=1) == n).all()


def test_nm_default_axis_groups_kernel_input_rows():
    # (in=8, out=2) kernel: column 0 rises along the input axis, column 1 falls.
    kernel = np.stack([np.arange(8.0), -np.arange(8.0)], axis=1)
    expected = np.array([[0, 1], [0, 1], [1, 0], [1, 0]] * 2, bool)
    np.testing.assert_array_equal(masks.nm(kernel, 2, 4), expected)
    np.testing.assert_array_equal(masks.nm(kernel.T, 2, 4, axis=1), expected.T)


def test_nm_ties_go_to_lower_index():
    scores = np.array([1, 1, 1, 1, 0, 5, 5, 5], np.float32)
    np.testing.assert_array_equal(masks.nm(scores, 2, 4), [1, 1, 0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(masks.nm(scores, 1, 4), [1, 0, 0, 0, 0, 1, 0, 0])


# --- gradual n:m --------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), NM_PATTERNS)
@pytest.mark.parametrize("kind", ["distinct", "ties"])
def test_gradual_nm_ramps_from_dense_to_nm(n, m, kind):
    scores = make_scores((32, 12), kind)
    final = 1 - n / m
    target = ref_nm(scores, n, m)
    for sparsity in [0.0, 0.1, final / 2, final - 0.01, final, min(final + 0.1, 0.95)]:
        expected = ref_gradual_nm(scores, n, m, sparsity)
        got = np.asarray(masks.gradual_nm(scores, n, m, sparsity))
        np.testing.assert_array_equal(got, expected, err_msg=f"s={sparsity}")
        assert got.sum() == max(ref_kept(got.size, sparsity), got.size * n // m)
        assert (got | ~target).all(), "lost an n:m-guaranteed entry"
    assert bool(masks.gradual_nm(scores, n, m, 0.0).all())
    np.testing.assert_array_equal(masks.gradual_nm(scores, n, m, final), target)


def test_gradual_nm_under_jit_with_a_traced_schedule():
    scores = make_scores((32, 12), "ties")

    @jax.jit
    def ramp(sparsities):
        return jax.vmap(lambda s: masks.gradual_nm(scores, 2, 4, s))(sparsities)

    sparsities = np.array([0.0, 0.1, 0.3, 0.5, 0.7], np.float32)
    for got, sparsity in zip(ramp(sparsities), sparsities, strict=True):
        np.testing.assert_array_equal(got, ref_gradual_nm(scores, 2, 4, sparsity))


def test_gradual_nm_fills_by_magnitude_not_by_group():
    # Group 0 is all large, group 1 all small: the fill goes to group 0 first.
    scores = np.array([9, 8, 7, 6, 4, 3, 2, 1], np.float32)
    np.testing.assert_array_equal(masks.gradual_nm(scores, 1, 4, 0.5), [1, 1, 1, 0, 1, 0, 0, 0])


# --- global -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["distinct", "ties"])
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_global_unstructured_one_threshold_exact_total(kind, sparsity):
    tree = {
        "a": make_scores((16, 8), kind, seed=1),
        "b": [make_scores((5,), kind, seed=2) * 3, make_scores((2, 3, 4), kind, seed=3)],
    }
    leaves = jax.tree.leaves(tree)
    flat = np.concatenate([x.ravel() for x in leaves])
    expected = ref_unstructured(flat, sparsity)
    for got in (masks.global_unstructured(tree, sparsity), jit_global(tree, sparsity)):
        assert jax.tree.structure(got) == jax.tree.structure(tree)
        got_leaves = jax.tree.leaves(got)
        assert [g.shape for g in got_leaves] == [x.shape for x in leaves]
        np.testing.assert_array_equal(np.concatenate([np.ravel(g) for g in got_leaves]), expected)


def test_global_unstructured_differs_from_per_tensor():
    tree = [np.full((4,), 10.0, np.float32), np.arange(4, dtype=np.float32)]
    got = masks.global_unstructured(tree, 0.5)
    np.testing.assert_array_equal(got[0], [1, 1, 1, 1])
    np.testing.assert_array_equal(got[1], [0, 0, 0, 0])
    assert masks.global_unstructured({}, 0.5) == {}


# --- patterns and errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "n", "m", "sparsity"),
    [
        ("unstructured", "unstructured", 0, 0, None),
        (" GLOBAL ", "global", 0, 0, None),
        ("2:4", "nm", 2, 4, 0.5),
        ("4:8", "nm", 4, 8, 0.5),
        ("1 : 4", "nm", 1, 4, 0.75),
        ("2:8", "nm", 2, 8, 0.75),
    ],
)
def test_parse_pattern(text, kind, n, m, sparsity):
    pattern = masks.parse_pattern(text)
    assert pattern == masks.Pattern(kind, n, m)
    assert pattern.sparsity == sparsity
    assert masks.parse_pattern(str(pattern)) == pattern


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: masks.check_sparsity(-0.1), r"sparsity must be in \[0, 1\), got -0.1"),
        (lambda: masks.check_sparsity(1.0), r"sparsity must be in \[0, 1\)"),
        (lambda: masks.check_sparsity(float("nan")), r"sparsity must be in \[0, 1\)"),
        (lambda: masks.check_sparsity(1.5, name="final_sparsity"), r"final_sparsity must be in"),
        (lambda: masks.check_sparsity([0.5, 0.5]), r"sparsity must be a scalar"),
        (lambda: masks.unstructured(np.ones(4), 1.0), r"sparsity must be in \[0, 1\)"),
        (lambda: masks.global_unstructured([np.ones(4)], -1), r"sparsity must be in"),
        (lambda: masks.gradual_nm(np.ones(8), 2, 4, 1.2), r"sparsity must be in"),
        (lambda: masks.nm(np.ones(8), 3, 2), r"n must be an integer in \[1, m=2\], got 3"),
        (lambda: masks.nm(np.ones(8), 0, 4), r"n must be an integer in \[1, m=4\], got 0"),
        (lambda: masks.nm(np.ones(8), 2, 0), r"m must be an integer >= 1, got 0"),
        (lambda: masks.nm(np.ones(8), 2.0, 4), r"n must be an integer"),
        (lambda: masks.nm(np.ones((6, 4)), 2, 4), r"scores.shape\[0\] = 6 \(shape \(6, 4\)\)"),
        (lambda: masks.gradual_nm(np.ones((4, 6)), 2, 4, 0.1, axis=1), r"shape\[1\] = 6"),
        (lambda: masks.nm(np.ones((4, 4)), 2, 4, axis=2), r"axis must be in \[-2, 2\)"),
        (lambda: masks.parse_pattern("5:4"), r"n must be an integer in \[1, m=4\], got 5"),
        (lambda: masks.parse_pattern("2:4:8"), r"'unstructured', 'global' or 'N:M'"),
        (lambda: masks.parse_pattern("magnitude"), r"'unstructured', 'global' or 'N:M'"),
        (lambda: masks.Pattern("block"), r"kind must be 'unstructured', 'global' or 'nm'"),
        (lambda: masks.Pattern("global", 2, 4), r"n and m are only for kind='nm'"),
        (lambda: masks.kept_count(2**30 + 1, 0.5), r"size must be at most 2\*\*30"),
    ],
)
def test_bad_inputs_raise_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_check_sparsity_returns_floats_and_passes_tracers_through():
    assert masks.check_sparsity(np.float32(0.5), name="final_sparsity") == 0.5
    assert float(jax.jit(masks.check_sparsity)(2.0)) == 2.0
