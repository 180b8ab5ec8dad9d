"""Model families: parameter census, width solver, shapes, golden steps, structural invariants."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsekit.config import RECIPES
from sparsekit.models import (
    REGISTRY,
    BlockParam,
    census,
    get_family,
    kinds,
    shift_right,
    width_for,
)
from sparsekit.models.families import largest_width, training_bytes
from sparsekit.models.layers import Linear, add_shared
from sparsekit.models.t5 import (
    MAX_DISTANCE,
    NUM_BUCKETS,
    key_mask,
    position_bias,
    relative_buckets,
    toeplitz,
)

VIT, T5 = REGISTRY["vit"], REGISTRY["t5"]
REGEN = "if you changed the model on purpose, update the golden values"
WIDTH = 16  # one tiny width for every test that runs a model: each new shape costs compiles


@functools.cache
def _model(family, **kw) -> nnx.Module:
    """Shared tiny model; tests that mutate it work on nnx.clone(_model(...))."""
    return family.make(WIDTH, nnx.Rngs(0), **kw)


@nnx.jit
def _apply(model: nnx.Module, *args: jax.Array) -> jax.Array:
    return model(*args)


@nnx.jit(static_argnums=0)
def _loss(family, model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]:
    return _loss_fn(family)(model, batch)


def _loss_fn(family):
    """The family's training loss at its recipe's z-loss (T5: 1e-4; ViT: none)."""
    return family.loss(RECIPES[family.name]["z_loss"])


def _abstract(family, width: int) -> nnx.Module:
    """Model with shapes only: parameter census without running the initialisers."""
    return nnx.eval_shape(lambda: family.make(width, nnx.Rngs(0)))


def _images(n: int, seed: int = 0) -> np.ndarray:
    # numpy, not jax.random: no per-shape compiles, and PCG64 streams are stable across platforms.
    return np.random.default_rng(seed).standard_normal((n, 32, 32, 3), np.float32)


def _vit_batch(n: int = 4) -> dict:
    return {"image": _images(n), "label": np.arange(n, dtype=np.int32) % VIT.num_classes}


def _t5_batch() -> dict:
    """Two right-padded examples: ids >= 2 are content, 1 is eos, 0 is pad."""
    rng = np.random.default_rng(1)
    inputs = rng.integers(2, T5.vocab_size, (2, 12), dtype=np.int32)
    targets = rng.integers(2, T5.vocab_size, (2, 8), dtype=np.int32)
    inputs[0, 8], inputs[0, 9:] = 1, 0
    targets[1, 4], targets[1, 5:] = 1, 0
    return {"inputs": inputs, "targets": targets}


def _block_shapes(model: nnx.Module) -> list[tuple[int, ...]]:
    return sorted(x.shape for x in jax.tree.leaves(nnx.state(model, BlockParam)))


# --- parameter census and width solver -------------------------------------------------


@pytest.mark.parametrize("family", [VIT, T5], ids=["vit", "t5"])
@pytest.mark.parametrize("width", [8, 24, 64, 200])
def test_block_params_match_closed_formula(family, width):
    model = _abstract(family, width)
    assert _block_shapes(model) == sorted(family.block_shapes(width))
    assert sum(math.prod(s) for s in _block_shapes(model)) == family.block_params(width)


def test_closed_formulas_at_defaults():
    assert VIT.block_params(64) == 48 * 64**2  # 4 layers x 12 w^2
    f = T5.mlp_width(96)
    assert f == 256 and T5.block_params(96) == 2 * (4 * 96**2 + 3 * 96 * f) + 2 * (
        8 * 96**2 + 3 * 96 * f
    )


@pytest.mark.parametrize("family", [VIT, T5], ids=["vit", "t5"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.75, 0.875, 0.9375])
def test_width_for_is_closest_and_census_is_exact(family, sparsity):
    for n in [2e4, 1e5, 5e5, 2e6]:
        width, measured = width_for(family, n, sparsity)
        q = family.quantum
        assert width % q == 0 and width % 8 == 0 and family.mlp_width(width) % 8 == 0
        assert measured == census(family.block_shapes(width), sparsity)
        miss = abs(math.log(measured / n))
        for other in (width - q, width + q):
            if other >= q:
                assert miss <= abs(math.log(census(family.block_shapes(other), sparsity) / n))
        if n >= 5e5:
            assert miss < 0.05, (n, sparsity, width, measured)


def test_census_matches_per_tensor_rounding_of_real_model():
    for family in (VIT, T5):
        width, measured = width_for(family, 3e4, 0.875)
        model = _abstract(family, width)
        sizes = [x.size for x in jax.tree.leaves(nnx.state(model, BlockParam))]
        assert measured == sum(s - int(np.round(0.875 * s)) for s in sizes)


def test_dense_models_grow_with_sparsity_at_fixed_n():
    widths = [width_for("vit", 2e5, s)[0] for s in (0.0, 0.5, 0.75, 0.875)]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    # Dense size about N / (1 - S): width about sqrt(1 / (1 - S)) times larger.
    assert widths[-1] / widths[0] == pytest.approx(math.sqrt(8), rel=0.1)


def test_bad_family_width_and_targets_raise_clear_errors():
    with pytest.raises(ValueError, match=r"unknown model family 'gpt'.*'t5'.*'vit'"):
        width_for("gpt", 1e5, 0.5)
    with pytest.raises(ValueError, match="multiple of 8"):
        VIT.make(30, nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiple of 8"):
        T5.make(0, nnx.Rngs(0))
    with pytest.raises(ValueError, match="sparsity"):
        width_for("t5", 1e5, 1.0)
    with pytest.raises(ValueError, match="target N"):
        width_for("t5", 0, 0.5)
    with pytest.raises(ValueError, match=r"T5Family.decoder_depth must be > 0"):
        dataclasses.replace(T5, decoder_depth=0)
    assert get_family(VIT) is VIT
    assert dataclasses.replace(VIT, num_heads=16).quantum == 16


# --- classification of parameters ------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "embeds"),
    [(VIT, {"patch_embed/kernel", "head/kernel"}), (T5, {"embed", "head/kernel"})],
    ids=["vit", "t5"],
)
def test_every_param_is_classified(family, embeds):
    model = _abstract(family, WIDTH)
    labels = kinds(model)
    values = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert jax.tree.structure(labels) == jax.tree.structure(values)
    flat = {
        "/".join(str(k.key) for k in path): v
        for path, v in jax.tree_util.tree_flatten_with_path(labels)[0]
    }
    assert {p for p, v in flat.items() if v == "embed"} == embeds
    blocks = [p for p, v in flat.items() if v == "block"]
    assert len(blocks) == len(family.block_shapes(WIDTH)) and all("kernel" in p for p in blocks)
    dense = {p.rsplit("/", 1)[-1] for p, v in flat.items() if v == "dense"}
    assert dense == ({"bias", "scale"} if family is VIT else {"scale", "rel_bias"})


def test_kinds_rejects_unclassified_variables():
    model = _abstract(VIT, 8)
    model.extra = nnx.LoRAParam(jnp.zeros(3))
    with pytest.raises(TypeError, match="unclassified"):
        kinds(model)
    model = _abstract(VIT, 8)
    model.stat = nnx.BatchStat(jnp.zeros(3))
    with pytest.raises(TypeError, match="not parameters"):
        kinds(model)


# --- forward, losses, jit, FLOPs -------------------------------------------------------


def test_num_classes_sets_the_head():
    model = nnx.eval_shape(lambda: dataclasses.replace(VIT, num_classes=7).make(8, nnx.Rngs(0)))
    assert model.head.kernel.shape == (8, 7)


def test_shift_right():
    targets = _t5_batch()["targets"]
    assert shift_right(targets)[:, 0].tolist() == [0, 0]
    np.testing.assert_array_equal(shift_right(targets)[:, 1:], targets[:, :-1])


def _sgd_losses(family, batch: dict, lr: float, steps: int) -> list[float]:
    """Loss before and after each of `steps` plain SGD steps, via split -> jit -> merge."""
    graphdef, params, rest = nnx.split(_model(family), nnx.Param, ...)

    @jax.jit
    def step(params):
        def loss(p):
            return _loss_fn(family)(nnx.merge(graphdef, p, rest), batch)[0]

        value, grads = jax.value_and_grad(loss)(params)
        return value, jax.tree.map(lambda p, g: p - lr * g, params, grads)

    losses = []
    for _ in range(steps + 1):
        value, params = step(params)
        losses.append(float(value))
    return losses


@pytest.mark.parametrize(
    ("family", "batch", "golden"),
    [
        # ViT: the zero head passes no gradient to the body on step 1, so pin two steps.
        (VIT, _vit_batch, [2.302585, 1.786796, 1.513873]),
        (T5, _t5_batch, [6.011353, 4.784117, 3.493526]),
    ],
    ids=["vit", "t5"],
)
def test_golden_sgd_steps(family, batch, golden):
    losses = _sgd_losses(family, batch(), lr=0.5, steps=2)
    np.testing.assert_allclose(losses, golden, rtol=1e-5, err_msg=REGEN)
    if family is VIT:  # zero head: uniform predictions
        assert losses[0] == pytest.approx(math.log(VIT.num_classes), rel=1e-6)


def _dot_flops(jaxpr: jex.core.Jaxpr) -> int:
    """2 x multiply-adds of every dot_general in a jaxpr, nested jaxprs included."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
        for value in eqn.params.values():
            if isinstance(value, jex.core.ClosedJaxpr):
                total += _dot_flops(value.jaxpr)
            elif isinstance(value, jex.core.Jaxpr):
                total += _dot_flops(value)
    return total


def test_flops_per_example_counts_every_matmul():
    jaxpr = jax.make_jaxpr(_model(VIT))(_images(1)).jaxpr
    assert _dot_flops(jaxpr) == VIT.flops_per_example(WIDTH)
    ids = jnp.ones((1, 20), jnp.int32), jnp.ones((1, 12), jnp.int32)
    jaxpr = jax.make_jaxpr(_model(T5))(*ids).jaxpr
    lengths = dataclasses.replace(T5, input_length=20, target_length=12)
    assert _dot_flops(jaxpr) == lengths.flops_per_example(WIDTH)


# --- structural invariants -------------------------------------------------------------


def test_relative_buckets():
    enc = relative_buckets(300, 300, True)
    dec = relative_buckets(300, 300, False)
    assert enc.min() == 0 and enc.max() == NUM_BUCKETS - 1 and dec.max() == NUM_BUCKETS - 1
    assert (np.triu(dec, 1) == 0).all()  # the future shares one (masked) bucket
    assert len(set(np.diag(enc, 1)) | set(np.diag(enc, -1))) == 2  # before/after differ
    assert dec[MAX_DISTANCE + 50, 0] == dec[299, 0] == NUM_BUCKETS - 1


def test_toeplitz_by_hand():
    # Value per offset q-k, at index q-k+L-1: here the index itself, so T[q, k] = q-k+2.
    t = jax.jit(toeplitz, static_argnums=1)(jnp.arange(5.0), 3)
    np.testing.assert_array_equal(t, [[2, 1, 0], [3, 2, 1], [4, 3, 2]])


@pytest.mark.parametrize("length", [1, 2, 5, 33])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_position_bias_is_the_bucket_gather(length, bidirectional):
    """The Toeplitz build gives exactly the table looked up at every (q, k) bucket, and the
    same table gradient up to summation order."""
    table = jax.random.normal(jax.random.key(0), (NUM_BUCKETS, 3))
    buckets = relative_buckets(length, length, bidirectional)
    weights = jax.random.normal(jax.random.key(1), (1, 3, length, length))

    def gathered(t):
        return jnp.transpose(t[buckets], (2, 0, 1))[None]

    def built(t):
        return position_bias(t, length, bidirectional)

    np.testing.assert_array_equal(jax.jit(built)(table), gathered(table))
    grad = jax.jit(jax.grad(lambda t: (built(t) * weights).sum()))(table)
    ref = jax.grad(lambda t: (gathered(t) * weights).sum())(table)
    np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-6)


def test_add_shared_is_broadcasting_with_the_batch_summed_gradient():
    x = jax.random.normal(jax.random.key(0), (4, 2, 3, 3))
    bias = jax.random.normal(jax.random.key(1), (1, 2, 3, 3))
    w = jax.random.normal(jax.random.key(2), x.shape)
    np.testing.assert_array_equal(jax.jit(add_shared)(x, bias), x + bias)
    gx, gb = jax.jit(jax.grad(lambda x, b: (add_shared(x, b) ** 2 * w).sum(), (0, 1)))(x, bias)
    rx, rb = jax.grad(lambda x, b: ((x + b) ** 2 * w).sum(), (0, 1))(x, bias)
    np.testing.assert_allclose(gx, rx, rtol=1e-6)
    np.testing.assert_allclose(gb, rb, rtol=1e-5)
    with pytest.raises(ValueError, match=r"bias: shape must be \(1, \*x.shape\[1:\]\)"):
        add_shared(x, bias[:, :1])


def test_flattened_linear_computes_the_same_map():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    flat = Linear(8, 6, use_bias=True, rngs=nnx.Rngs(0), flatten=True)
    plain = Linear(8, 6, use_bias=True, rngs=nnx.Rngs(0))
    flat.bias[...] = plain.bias[...] = jnp.arange(6.0)
    np.testing.assert_allclose(_apply(flat, x), _apply(plain, x), rtol=1e-5, atol=1e-6)
    assert _apply(flat, x).shape == (2, 5, 6)


def test_t5_decoder_is_causal_and_encoder_is_not():
    model = _model(T5)
    batch = _t5_batch()
    inputs, dec_inputs = batch["inputs"][:1, :8], shift_right(batch["targets"][:1])
    memory_mask = key_mask(inputs)
    memory = model.encoder(model.embed_tokens(inputs), memory_mask)
    t = 3

    def decoder_at_t(x):
        return model.head(model.decoder(x, None, memory, memory_mask))[0, t].sum()

    def encoder_at_t(x):
        return model.encoder(x, memory_mask)[0, t].sum()

    @jax.jit
    def input_sensitivity(enc_x, dec_x):
        """|d output at t / d input embedding| per input position."""
        g_enc, g_dec = jax.grad(encoder_at_t)(enc_x), jax.grad(decoder_at_t)(dec_x)
        return jnp.abs(g_enc).sum(-1)[0], jnp.abs(g_dec).sum(-1)[0]

    g_enc, g_dec = input_sensitivity(model.embed_tokens(inputs), model.embed_tokens(dec_inputs))
    assert (g_dec[t + 1 :] == 0).all() and (g_dec[: t + 1] > 0).all()
    assert (g_enc > 0).all()


def test_t5_padding_does_not_change_real_positions():
    model = _model(T5)
    batch = _t5_batch()
    padded = {k: np.pad(v, ((0, 0), (0, 5))) for k, v in batch.items()}
    base = _apply(model, batch["inputs"], shift_right(batch["targets"]))
    assert base.shape == (2, 8, T5.vocab_size)
    more = _apply(model, padded["inputs"], shift_right(padded["targets"]))
    real = batch["targets"] != 0
    np.testing.assert_allclose(more[:, :8][real], base[real], atol=1e-5)
    (loss, metrics), (padded_loss, _) = _loss(T5, model, batch), _loss(T5, model, padded)
    np.testing.assert_allclose(padded_loss, loss, rtol=1e-5)
    assert set(metrics) == {"ce", "z_loss", "accuracy", "tokens"}
    assert float(metrics["tokens"]) == 8 + 5  # non-pad targets, eos included
    assert float(loss) == pytest.approx(float(metrics["ce"] + 1e-4 * metrics["z_loss"]))


def _permute_patches(images: np.ndarray, perm: np.ndarray) -> np.ndarray:
    b = images.shape[0]
    patches = images.reshape(b, 8, 4, 8, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, 64, 4, 4, 3)
    patches = patches[:, perm].reshape(b, 8, 8, 4, 4, 3)
    return patches.transpose(0, 1, 3, 2, 4, 5).reshape(b, 32, 32, 3)


@pytest.mark.parametrize("use_pos_emb", [False, True])
def test_vit_patch_order_invariance_only_without_position_embedding(use_pos_emb):
    model = nnx.clone(_model(VIT, use_pos_emb=use_pos_emb))
    # A random head: with the zero init every output is 0 and the test would be vacuous.
    model.head.kernel[...] = np.random.default_rng(3).standard_normal(
        model.head.kernel.shape, np.float32
    )
    images = _images(2)
    perm = np.random.default_rng(0).permutation(64)
    base, permuted = _apply(model, images), _apply(model, _permute_patches(images, perm))
    assert float(jnp.abs(base).max()) > 1e-3
    if use_pos_emb:
        assert not np.allclose(base, permuted, atol=1e-4)
    else:
        np.testing.assert_allclose(permuted, base, atol=1e-5)


def test_check_pattern_uses_the_kernels_input_axis():
    for family in (VIT, T5):
        kernels = jax.tree.leaves(nnx.state(_abstract(family, 24), BlockParam))
        assert {k.shape[0] for k in kernels} == {r for r, _ in family.block_shapes(24)}
        family.check_pattern(24, "2:8")
        family.check_pattern(24, "unstructured")
    VIT.check_pattern(24, "1:3")  # 24 and 96 inputs: m = 3 fits at this width
    with pytest.raises(ValueError, match=r"'1:3' does not fit the vit model at width 16: .* "
                                         r"16, 64 inputs\. At width 16, m can be 2, 4, 8, 16;"):
        VIT.check_pattern(16, "1:3")


def test_width_for_refuses_a_target_no_width_reaches():
    smallest = census(T5.block_shapes(8), 0.0)
    assert width_for(T5, smallest / 2, 0.0) == (8, smallest)  # 2x: still reached
    with pytest.raises(ValueError, match=rf"nearest N a width reaches is {smallest:,} \(width 8"):
        width_for(T5, smallest / 2.01, 0.0)
    assert T5.with_depth(1).block_params(8) < smallest and T5.with_depth(None) is T5


def _linear_width_for(family, n, sparsity):
    """The width search as it was (one quantum at a time): the oracle for `width_for`."""
    fam = get_family(family)
    measured = lambda w: census(fam.block_shapes(w), sparsity)  # noqa: E731
    above = fam.quantum
    while measured(above) < n:
        above += fam.quantum
    below = max(above - fam.quantum, fam.quantum)
    width = min((below, above), key=lambda w: abs(math.log(measured(w) / n)))
    return width, measured(width)


def test_width_for_finds_the_width_the_linear_search_found():
    # Every N of the default grids (at its own depth and sparsity), and a fine geometric
    # range from the smallest model to 4M at the grids' sparsities: the same (width, N).
    from sparsekit.sweep import load_grid

    root = Path(__file__).resolve().parents[1]
    cases = {(cfg.family(), cfg.model.nonzero, cfg.sparsity.target)
             for grid in ("t5.yaml", "vit.yaml")
             for cfg in load_grid(root / "sweeps" / grid).configs() if cfg.model.nonzero}
    assert len(cases) >= 30
    for name in ("vit", "t5"):
        for s in (0.0, 0.5, 0.75, 0.875, 0.95):
            cases |= {(get_family(name), round(n), s) for n in np.geomspace(3000, 4e6, 150)}
    for fam, n, s in cases:
        assert width_for(fam, n, s) == _linear_width_for(fam, n, s), (fam.name, n, s)


@pytest.mark.parametrize("family", ["vit", "t5"])
def test_largest_width_is_the_widest_whose_training_fits(family):
    for memory in (10**6, 2**30, 23 * 2**30, 10**15):
        widest = largest_width(family, memory)
        quantum = get_family(family).quantum
        assert training_bytes(family, widest + quantum) > memory
        assert widest == 0 or training_bytes(family, widest) <= memory
    assert largest_width(family, 1) == 0


def test_memory_is_the_cgroup_limit_when_lower(tmp_path):
    from sparsekit.provenance import memory_bytes

    physical = memory_bytes.__wrapped__(tmp_path / "none")
    (tmp_path / "max").write_text("max\n")
    (tmp_path / "small").write_text("1073741824\n")
    assert memory_bytes.__wrapped__(tmp_path / "max") == physical > 2**30
    assert memory_bytes.__wrapped__(tmp_path / "small") == 2**30
