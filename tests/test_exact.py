"""Exact N and the paper's protocol: a sparse run keeps its dense twin's block non-zeros, and
under the paper's embedding rule its embedding and head non-zeros too."""

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from sparsekit.config import Data, Model, RunConfig, Sparsity
from sparsekit.models import get_family, kinds, width_for
from sparsekit.models.families import census as block_census
from sparsekit.models.families import exact_width
from sparsekit.pruning import census, sparsify
from sparsekit.schedules import Constant
from sparsekit.train import run

SPARSITIES = (0.5, 0.75, 0.875)


def test_exact_width_hand_checked():
    # one-layer ViT: N = 12 w^2. The dense twin of N 3,072 is width 16 (12 * 256 = 3,072).
    vit = get_family("vit").with_depth(1)
    assert exact_width(vit, 3072, 0.75) == (32, 0.75)  # 12 * 1024 = 12,288; 3,072 kept
    width, s = exact_width(vit, 3072, 0.5)  # width 24: 12 * 576 = 6,912 dense
    assert width == 24 and s == pytest.approx(1 - 3072 / 6912)
    assert exact_width(vit, 3072, 0.0) == (16, 0.0)  # the twin itself


@pytest.mark.parametrize("family, depth, sizes", [
    ("t5", None, (16384, 32768, 65536, 131072)),
    ("vit", 1, (3072, 6144, 12288, 24576)),
])
def test_exact_n_within_a_permille_of_the_dense_twin(family, depth, sizes):
    fam = get_family(family).with_depth(depth)
    for n in sizes:
        twin = width_for(fam, n, 0.0)[1]
        for target in SPARSITIES:
            width, s = exact_width(fam, n, target)
            assert abs(s - target) < 0.08  # the quantum's share, no more
            assert abs(block_census(fam.block_shapes(width), s) / twin - 1) < 1e-3


def test_config_refuses_exact_without_a_target_n_or_with_nm():
    with pytest.raises(ValueError, match=r"model.exact .* give model.nonzero"):
        Model("t5", width=16, exact=True)
    with pytest.raises(ValueError, match=r"model\.exact must be True or False"):
        Model("t5", nonzero=16384, exact=1)
    with pytest.raises(ValueError, match=r"model.exact is for unstructured .* '2:4'"):
        RunConfig(Model("t5", nonzero=16384, exact=True), Data(4096),
                  Sparsity(0.5, pattern="2:4"))


def test_exact_is_left_out_of_old_keys():
    cfg = RunConfig(Model("t5", nonzero=16384), Data(4096), Sparsity(0.5))
    assert "exact" not in cfg.to_dict()["model"]
    exact = cfg.replace(**{"model.exact": True})
    assert exact.to_dict()["model"]["exact"] is True and exact.key() != cfg.key()


def _final_census(cfg: RunConfig):
    """Census of the model of `cfg` after one jitted step at its final sparsities."""
    fam = cfg.family()
    model = fam.make(cfg.width(), nnx.Rngs(0))
    labels = kinds(model)
    params = nnx.to_pure_dict(nnx.state(model))
    sp = cfg.sparsity
    opt = sparsify(optax.sgd(0.0), schedule=Constant(cfg.block_sparsity()), total_steps=1,
                   labels=labels, embed_rule=sp.embed_rule,
                   embed_target=cfg.embed_sparsity() if sp.embed_rule else None)
    state = opt.init(params)
    grads = jax.tree.map(jnp.zeros_like, params)
    _, state = jax.jit(lambda g, s, p: opt.update(g, s, p))(grads, state, params)
    return census(params, labels, state.masks)


@pytest.mark.parametrize("family, depth, n", [("t5", None, 16384), ("t5", None, 65536),
                                              ("vit", 1, 6144)])
def test_paper_protocol_keeps_the_twins_embedding_and_block_nonzeros(family, depth, n):
    base = {"model": {"family": family, "nonzero": n, "depth": depth, "exact": True},
            "data": {"amount": 4096}, "sparsity": {"embed_rule": True}}
    twin = _final_census(RunConfig.from_dict({**base, "sparsity": {"target": 0.0,
                                                                    "embed_rule": True}}))
    assert twin.dense_block == twin.N
    for target in SPARSITIES:
        cfg = RunConfig.from_dict({**base, "sparsity": {"target": target, "embed_rule": True}})
        c = _final_census(cfg)
        assert c.sparsity == pytest.approx(cfg.block_sparsity(), abs=1e-3)
        assert abs(c.N / twin.N - 1) < 1e-3  # block non-zeros: the twin's
        # embedding and head: the twin's, to rounding (a few entries per tensor)
        embeds = sum(1 for r in c.layers if r.kind == "embed")
        assert abs(c.embed - twin.embed) <= embeds
        dense = RunConfig.from_dict({**base, "model": {**base["model"], "exact": False},
                                     "sparsity": {"target": target}})
        assert _final_census(dense).embed > 1.3 * twin.embed  # the dense-embedding variant


def test_an_exact_run_records_target_measured_n_and_actual_sparsity():
    cfg = RunConfig(Model("t5", nonzero=4000, exact=True), Data(2048, batch=4, eval_examples=8),
                    Sparsity(0.75, every=2, embed_rule=True))
    twin = width_for("t5", 4000, 0.0)[1]
    r = run(cfg, chunk=4)
    assert r.status == "ok" and r.N_target == 4000 and abs(r.N / twin - 1) < 1e-3
    assert r.sparsity_measured == pytest.approx(cfg.block_sparsity(), abs=1e-3)
    assert r.protocol == "paper" and r.embed_nonzero > 0
