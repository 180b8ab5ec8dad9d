"""The sparse optax wrapper: exact sparsity, zeros that stay zero, masked optimizer state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsekit.optim import sparse_adafactor
from sparsekit.pruning import census, label_by_path, sparsify
from sparsekit.schedules import Constant, Cubic

SHAPES = {"embed": (10, 16), "block1": {"kernel": (16, 32)}, "block2": {"kernel": (32, 16)},
          "norm": (16,)}


def tiny_params(seed=0):
    leaves, treedef = jax.tree.flatten(SHAPES, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)])


LABELS = label_by_path(tiny_params(), block=r"block", embed=r"embed")


def loss_fn(params, x, y):
    h = params["embed"][x] * params["norm"]
    h = jax.nn.gelu(h @ params["block1"]["kernel"])
    return jnp.mean((h @ params["block2"]["kernel"] - y) ** 2)


def train(opt, steps=200, seed=0):
    params = tiny_params(seed)
    state = opt.init(params)
    x = jax.random.randint(jax.random.key(1), (64,), 0, 10)
    y = jax.random.normal(jax.random.key(2), (64, 16))

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def kept(size, s):
    return size - round(s * size)


INNER = {
    "sgd": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.01, momentum=0.9)),
    "adam": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
    "adafactor": lambda: optax.adafactor(1e-2),
    "sparse_adafactor": lambda: sparse_adafactor(1e-2),
}


@pytest.mark.parametrize("name", sorted(INNER))
def test_200_steps_exact_sparsity_zero_weights_zero_moments(name):
    opt = sparsify(INNER[name](), schedule=Cubic(0.75, every=10), total_steps=200, labels=LABELS)
    params, state = train(opt)
    for key in ("block1", "block2"):
        w, m = params[key]["kernel"], state.masks[key]["kernel"]
        assert int(jnp.sum(m)) == kept(w.size, 0.75)
        assert bool(jnp.all(w[~m] == 0.0))
        assert int(jnp.sum(w != 0)) == kept(w.size, 0.75)  # survivors really are non-zero
    assert bool(jnp.all(params["embed"] != 0)) and bool(jnp.all(params["norm"] != 0))
    # every optimizer-state leaf shaped like its parameter is zero at pruned entries
    checked = 0
    for leaf_path, leaf in jax.tree_util.tree_flatten_with_path(state.inner_state)[0]:
        name_ = jax.tree_util.keystr(leaf_path)
        for key in ("block1", "block2"):
            if f"['{key}']['kernel']" in name_ and leaf.shape == params[key]["kernel"].shape:
                assert bool(jnp.all(leaf[~state.masks[key]["kernel"]] == 0.0)), name_
                checked += 1
    expected = {"sgd": 2, "adam": 4, "adamw": 4, "adafactor": 2, "sparse_adafactor": 2}
    assert checked == expected[name]  # adafactor: unfactored second moments (dims < 128)


def test_pruned_weights_stay_zero_every_step_after_the_window():
    opt = sparsify(optax.adam(1e-2), schedule=Cubic(0.5, every=5), total_steps=40, labels=LABELS)
    params, state = train(opt, steps=31)  # past the window end (the update at step 30)
    mask = state.masks["block1"]["kernel"]
    for _ in range(20):
        params, state = train_more(opt, params, state)
        assert bool(jnp.all(params["block1"]["kernel"][~mask] == 0.0))
        assert bool(jnp.all(state.masks["block1"]["kernel"] == mask))  # mask fixed after end


def train_more(opt, params, state):
    x = jnp.arange(10)
    grads = jax.grad(loss_fn)(params, x, jnp.ones((10, 16)))
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state


@pytest.mark.parametrize("name", ["sgd", "adam", "adafactor"])
def test_sparsity_zero_equals_inner_optimizer(name):
    sparse = sparsify(INNER[name](), schedule=Cubic(0.0), total_steps=50, labels=LABELS)
    # Op by op (no jit) the arithmetic is identical: bit for bit.
    with jax.disable_jit():
        p1, _ = train(sparse, steps=3)
        p2, _ = train(INNER[name](), steps=3)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Jitted, XLA may fuse the two programs differently: equal to float32 rounding.
    p1, _ = train(sparse, steps=50)
    p2, _ = train(INNER[name](), steps=50)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pattern, n, m", [("2:4", 2, 4), ("1:4", 1, 4), ("4:8", 4, 8)])
def test_gradual_nm_reaches_valid_groups(pattern, n, m):
    opt = sparsify(optax.adam(1e-2), schedule=Cubic(1 - n / m, every=10), total_steps=100,
                   labels=LABELS, pattern=pattern)
    params, state = train(opt, steps=100)
    for key in ("block1", "block2"):
        mask = np.asarray(state.masks[key]["kernel"])
        groups = mask.reshape(mask.shape[0] // m, m, mask.shape[1]).sum(axis=1)
        assert np.all(groups == n)  # axis 0 (the reduction dim) is grouped
        assert np.all(np.asarray(params[key]["kernel"])[~mask] == 0.0)


def test_global_pattern_exact_total():
    opt = sparsify(optax.adam(1e-2), schedule=Cubic(0.5, every=10), total_steps=100,
                   labels=LABELS, pattern="global")
    _, state = train(opt, steps=100)
    n = sum(int(jnp.sum(state.masks[k]["kernel"])) for k in ("block1", "block2"))
    assert n == kept(16 * 32 + 32 * 16, 0.5)


def test_embed_rule_prunes_embeddings_milder():
    opt = sparsify(optax.adam(1e-2), schedule=Constant(0.75), total_steps=10, labels=LABELS,
                   embed_rule=True)
    _, state = train(opt, steps=2)
    assert int(jnp.sum(state.masks["embed"])) == kept(160, 1 - np.sqrt(0.25))  # S_embed = 0.5
    assert state.masks["norm"].shape == ()  # never-pruned leaves carry a scalar True


def test_census_hand_count():
    opt = sparsify(optax.sgd(0.1), schedule=Constant(0.75), total_steps=10, labels=LABELS)
    params, state = train(opt, steps=1)
    c = census(params, LABELS, state.masks)
    # blocks: 512 + 512 = 1024 entries, 256 kept; embed 160 and norm 16 stay dense
    assert (c.total, c.dense_block, c.N, c.nonzero) == (1200, 1024, 256, 256 + 160 + 16)
    assert c.sparsity == 0.75
    assert [r.kind for r in c.layers] == ["block", "block", "embed", "dense"]
    dense = census(params, LABELS)
    assert (dense.N, dense.nonzero) == (1024, 1200)


def test_works_inside_multisteps_and_keeps_dtype():
    opt = optax.MultiSteps(
        sparsify(optax.adam(1e-2), schedule=Constant(0.5), total_steps=10, labels=LABELS),
        every_k_schedule=2,
    )
    params, _ = train(opt, steps=4)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert int(jnp.sum(params["block1"]["kernel"] == 0)) == 256


def test_sparse_adafactor_survives_a_fully_pruned_tensor():
    params = {"w": jnp.zeros((8, 8)), "v": jnp.ones((8, 8))}
    masks = {"w": jnp.zeros((8, 8), bool), "v": jnp.ones((8, 8), bool)}
    opt = sparse_adafactor(1e-2)
    state = opt.init(params)
    grads = {"w": jnp.zeros((8, 8)), "v": jnp.ones((8, 8))}
    updates, _ = opt.update(grads, state, params, masks=masks)
    assert bool(jnp.all(jnp.isfinite(updates["w"]))) and bool(jnp.all(updates["w"] == 0))


def test_sparse_adafactor_is_density_invariant():
    # Half the entries pruned: the survivors' update equals a dense tensor's update of the
    # same values, whereas plain Adafactor's parameter scale shrinks by sqrt(density).
    dense = {"w": jnp.full((8, 8), 2.0)}
    half = {"w": jnp.where(jnp.arange(64).reshape(8, 8) % 2 == 0, 2.0, 0.0)}
    masks = {"w": half["w"] != 0}
    g = {"w": jnp.ones((8, 8))}
    gh = {"w": jnp.where(masks["w"], 1.0, 0.0)}
    opt = sparse_adafactor(1e-2)
    u_dense, _ = opt.update(g, opt.init(dense), dense)
    u_half, _ = opt.update(gh, opt.init(half), half, masks=masks)
    np.testing.assert_allclose(u_half["w"][masks["w"]], u_dense["w"][masks["w"]], rtol=1e-6)
    plain = optax.adafactor(1e-2)
    u_plain, _ = plain.update(gh, plain.init(half), half)
    assert float(jnp.abs(u_plain["w"][0, 0])) < 0.8 * float(jnp.abs(u_dense["w"][0, 0]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="schedule target must equal the n:m sparsity"):
        sparsify(optax.sgd(1.0), schedule=Cubic(0.75), total_steps=10, labels=LABELS,
                 pattern="2:4")
    with pytest.raises(ValueError, match="total_steps"):
        sparsify(optax.sgd(1.0), schedule=Cubic(0.5), total_steps=0, labels=LABELS)
    bad = jax.tree.map(lambda _: "head", LABELS)
    opt = sparsify(optax.sgd(1.0), schedule=Cubic(0.5), total_steps=10, labels=bad)
    with pytest.raises(ValueError, match="labels must be one of"):
        opt.init(tiny_params())
    opt = sparsify(optax.sgd(1.0), schedule=Cubic(0.5), total_steps=10, labels={"a": "block"})
    with pytest.raises(ValueError, match="same tree structure"):
        opt.init(tiny_params())
    opt = sparsify(optax.sgd(1.0), schedule=Cubic(0.5), total_steps=10, labels=LABELS)
    with pytest.raises(ValueError, match="params must be passed"):
        opt.update(tiny_params(), opt.init(tiny_params()))
