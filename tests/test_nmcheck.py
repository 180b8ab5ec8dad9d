"""The n:m weight check: hand-counted groups, pytree reports, and a trained run's checkpoint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsekit import masks
from sparsekit.config import Data, Model, RunConfig, Sparsity
from sparsekit.nmcheck import check_checkpoint, check_nm, group_nonzeros
from sparsekit.pruning import label_by_path
from sparsekit.train import Trainer, load_params, run, save_params

# (8, 2): column 0 groups [1, 0, 3, 0] and [1, 1, 0, -0.0]; column 1 [0, 2, 0, 0], [1, 0, 0, nan]
HAND = np.array([[1, 0], [0, 2], [3, 0], [0, 0], [1, 1], [1, 0], [0, 0], [-0.0, np.nan]],
                np.float32)


def test_group_nonzeros_by_hand_eager_and_jitted():
    expected = [[2, 1], [2, 2]]  # -0.0 is zero, NaN is non-zero
    jitted = jax.jit(group_nonzeros, static_argnums=(1, 2))
    for counts in (group_nonzeros(HAND, 4), jitted(HAND, 4, 0)):
        np.testing.assert_array_equal(counts, expected)
        assert counts.dtype == jnp.int32
    np.testing.assert_array_equal(group_nonzeros(HAND.T, 4, axis=1), np.transpose(expected))
    np.testing.assert_array_equal(group_nonzeros(HAND, 2), [[1, 1], [1, 0], [2, 1], [0, 1]])


def tree(seed=0):
    """A params pytree: two block kernels made 2:4 by `masks.nm`, a dense embedding and bias."""
    keys = jax.random.split(jax.random.key(seed), 4)
    w1 = jax.random.normal(keys[0], (16, 8))
    w2 = jax.random.normal(keys[1], (8, 12))
    return {
        "embed": jax.random.normal(keys[2], (10, 16)),  # dense, and not checked
        "mlp": {"wi": {"kernel": w1 * masks.nm(jnp.abs(w1), 2, 4)},
                "wo": {"kernel": w2 * masks.nm(jnp.abs(w2), 2, 4)},
                "bias": jax.random.normal(keys[3], (12,))},
    }


def test_nm_weights_pass_and_a_broken_group_is_named():
    params = tree()
    labels = label_by_path(params, block=r"kernel", embed=r"embed")
    report = check_nm(params, labels, "2:4")
    assert report.ok and report.violating == 0
    assert report.groups == 16 * 8 // 4 + 8 * 12 // 4  # 32 + 24 groups
    assert [c.path for c in report.matrices] == ["['mlp']['wi']['kernel']",
                                                 "['mlp']['wo']['kernel']"]
    assert "(all pass)" in str(report)
    report.raise_if_violated()  # no error
    # Revive one pruned weight in group rows 4:8 of column 1 of wo: that group now holds 3.
    wo = np.array(params["mlp"]["wo"]["kernel"])
    row = 4 + int(np.flatnonzero(wo[4:8, 1] == 0)[0])
    wo[row, 1] = 0.5
    broken = {**params, "mlp": {**params["mlp"], "wo": {"kernel": jnp.asarray(wo)}}}
    report = check_nm(broken, labels, "2:4")
    assert not report.ok and report.violating == 1
    bad = report.matrices[1]
    assert (bad.violating, bad.max_nonzero, bad.examples) == (1, 3, ("[4:8, 1]",))
    assert "['mlp']['wo']['kernel'] (8, 12): 1 of 24 groups, up to 3 non-zeros" in str(report)
    with pytest.raises(ValueError, match="weights are not 2:4"):
        report.raise_if_violated()
    # The same weights pass 3:4, and a callable label function works like the tree.
    assert check_nm(broken, lambda p: label_by_path(p, block=r"kernel"), "3:4").ok


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (2, 8)])
def test_every_nm_mask_passes_and_a_denser_pattern_fails(n, m):
    w = jax.random.normal(jax.random.key(n * 10 + m), (32, 24))
    params = {"kernel": w * masks.nm(jnp.abs(w), n, m)}
    assert check_nm(params, {"kernel": "block"}, f"{n}:{m}").ok
    if n > 1:  # (n - 1):m is stricter than the weights: every group fails
        report = check_nm(params, {"kernel": "block"}, f"{n - 1}:{m}")
        assert report.violating == report.groups == 32 * 24 // m


def test_bad_inputs_name_the_parameter():
    params = tree()
    labels = label_by_path(params, block=r"kernel")
    with pytest.raises(ValueError, match="pattern must be an n:m pattern"):
        check_nm(params, labels, "unstructured")
    with pytest.raises(ValueError, match="no leaf is labelled 'block'"):
        check_nm(params, jax.tree.map(lambda _: "dense", labels), "2:4")
    with pytest.raises(ValueError, match="same tree structure"):
        check_nm(params, {"embed": "block"}, "2:4")
    with pytest.raises(ValueError, match=r"params\['mlp'\]\['wo'\]\['kernel'\]: .*not divisible by m=16"):
        check_nm(params, labels, "2:16")
    with pytest.raises(ValueError, match="axis must be in"):
        group_nonzeros(HAND, 4, axis=2)


# 8 steps of 4 examples x 128 tokens, 2:4 reached on the cubic ramp (masks every 2 steps)
NM_RUN = RunConfig(model=Model("t5", nonzero=4000), data=Data(amount=4096, batch=4,
                   eval_examples=16), sparsity=Sparsity(0.5, pattern="2:4", every=2))


def test_a_trained_nm_checkpoint_passes_and_a_tampered_one_fails(tmp_path):
    result = run(NM_RUN, chunk=4, save_to=str(tmp_path / "nm"))
    assert result.status == "ok"
    report = check_checkpoint(str(tmp_path / "nm"), NM_RUN)
    assert report.ok and (report.n, report.m) == (2, 4)
    template = Trainer(NM_RUN)
    blocks = [k for k in jax.tree.leaves(template.labels) if k == "block"]
    assert len(report.matrices) == len(blocks) > 0  # every block matrix, nothing else
    # Revive one pruned weight of the first block matrix and save the params again.
    params = load_params(str(tmp_path / "nm"), template.params)
    path, leaf = next((p, x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
                      if jax.tree_util.keystr(p) == report.matrices[0].path)
    w = np.array(leaf)
    zero = np.argwhere(w[:4] == 0)[0]  # a pruned entry in the first group of rows 0:4
    w[tuple(zero)] = 1.0
    tampered = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(w) if p == path else x, params)
    save_params(str(tmp_path / "tampered"), tampered)
    bad = check_checkpoint(str(tmp_path / "tampered"), NM_RUN)
    assert bad.violating == 1 and bad.matrices[0].examples == (f"[0:4, {zero[1]}]",)
    with pytest.raises(ValueError, match=r"sparsity\.pattern must be n:m"):
        check_checkpoint(str(tmp_path / "nm"), NM_RUN.replace(**{"sparsity.pattern": "unstructured"}))
