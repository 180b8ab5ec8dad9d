"""One training run: determinism, config errors, divergence, pruning a dense checkpoint."""

import json
import math

import numpy as np
import pytest

from sparsekit import schedules
from sparsekit.config import Data, Model, Optim, RunConfig, Sparsity
from sparsekit.models import width_for
from sparsekit.provenance import Lock
from sparsekit.train import Trainer, run

# 8 steps of 4 examples x 128 tokens; masks every 2 steps so the ramp happens
TINY = RunConfig(model=Model("t5", nonzero=4000), data=Data(amount=4096, batch=4,
                 eval_examples=16), sparsity=Sparsity(0.5, every=2))


@pytest.fixture(scope="module")
def tiny_result():
    return run(TINY, chunk=4)


def test_result_fields_and_census(tiny_result):
    r = tiny_result
    width, n = width_for("t5", 4000, 0.5)
    assert r.status == "ok" and r.error is None and r.failed_step is None
    assert (r.width, r.N, r.steps, r.D) == (width, n, 8, 4096)
    assert r.sparsity_measured == pytest.approx(0.5, abs=1e-3)
    assert math.isfinite(r.loss) and r.loss_se > 0
    assert len(r.curve) == 2 and r.curve[-1][0] == 8
    assert r.flops_sparse < r.flops_dense
    assert r.key == TINY.key() and r.config == TINY.to_dict()
    assert r.peak_lr == pytest.approx(1e-2 * 48 / width)  # the T5 recipe, width-scaled
    assert {"code_version", "versions", "machine", "finished_at"} <= set(r.to_row())
    assert r.machine["cpu"]  # the CPU model
    sp = TINY.sparsity  # the avg_density is the schedule's own integrated value
    assert r.avg_density == schedules.make(sp.schedule, target=sp.target, start=sp.start,
                                           end=sp.end, every=sp.every).average_density()
    assert r.lock["sha256"] == Lock.read().sha256  # the environment it ran in: uv.lock
    assert isinstance(r.lock["matches"], bool)


def test_repeated_run_is_bit_identical(tiny_result):
    again = run(TINY, chunk=4)
    assert again.loss == tiny_result.loss
    assert again.curve == tiny_result.curve


def test_chunking_does_not_change_the_numbers(tiny_result):
    # the scan length is an implementation detail; per-step arithmetic is the same
    other = run(TINY, chunk=8)
    np.testing.assert_allclose(other.loss, tiny_result.loss, rtol=1e-5)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Model("bert", nonzero=1000), "model.family must be one of"),
        (lambda: Sparsity(1.0), "sparsity.target must be a number in"),
        (lambda: Data(amount=0), r"data.amount \(D: tokens or images\) must be an integer >= 1"),
        (lambda: Model("t5"), "give exactly one of nonzero"),
        (lambda: Optim(name="lion"), "optim.name must be one of"),
        (lambda: Optim(lr=-1.0), "optim.lr must be a number > 0"),
        (lambda: Optim(b2=1.0), r"optim.b2 must be a number in \[0, 1\)"),
        (lambda: Optim(lr_width=-8), "optim.lr_width must be an integer >= 0"),
        (lambda: Sparsity(0.75, pattern="2:4"), "1 - n/m"),
        (lambda: Sparsity(0.5, pattern="3-4"), "pattern"),
    ],
)
def test_bad_configs_fail_at_config_time(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_peak_lr_scales_as_one_over_width_unless_turned_off():
    scaled = Optim(lr=1e-2, lr_width=48)
    assert scaled.peak_lr(48) == 1e-2
    assert scaled.peak_lr(96) == pytest.approx(5e-3) and scaled.peak_lr(16) == pytest.approx(3e-2)
    assert Optim(lr=1e-2, lr_width=0).peak_lr(96) == 1e-2
    t5 = RunConfig(model=Model("t5", width=96), data=Data(amount=4096)).optim
    assert t5.peak_lr(96) == pytest.approx(t5.lr / 2)  # the T5 recipe: lr at width 48
    vit = RunConfig(model=Model("vit", width=96), data=Data(amount=640)).optim
    assert vit.peak_lr(96) == vit.lr  # the ViT recipe: one peak LR at every width


def test_data_below_one_step_is_refused():
    cfg = TINY.replace(**{"data.amount": 100})
    with pytest.raises(ValueError, match="less than one step"):
        Trainer(cfg)


def test_non_finite_loss_is_recorded_not_raised():
    r = run(TINY.replace(**{"optim.lr": 1e30}), chunk=4)
    assert r.status == "failed"
    assert r.error == f"non-finite training loss at step {r.failed_step} of 8"
    assert r.steps == r.failed_step and r.steps * 4 * 128 == r.D
    assert math.isnan(r.loss)


def test_a_diverged_run_records_its_step_and_keeps_its_curve_up_to_it():
    trainer = Trainer(TINY)
    losses = iter([np.array([4.0, 3.0, 2.0, 1.0]), np.array([1.0, 2.0, np.nan, 1.0])])

    def chunk(params, opt_state, batches):  # the real step, with a NaN at step 6 of 8
        assert len(next(iter(batches.values()))) == 4
        return params, opt_state, next(losses)

    trainer._chunk = chunk
    r = trainer.result(trainer.train(chunk=4), wall=0.0)
    assert (r.status, r.failed_step, r.steps) == ("failed", 6, 6)
    assert r.error == "non-finite training loss at step 6 of 8"
    assert r.D == 6 * 4 * 128 and r.curve == [[4, 2.5], [6, 1.5]]


def test_prune_a_dense_checkpoint(tmp_path, tiny_result):
    dense = TINY.replace(**{"sparsity.target": 0.0, "model.nonzero": None,
                            "model.width": tiny_result.width})
    run(dense, chunk=4, save_to=str(tmp_path / "dense"))
    start = Trainer(dense.replace(init_from=str(tmp_path / "dense")))
    fresh = Trainer(dense)
    assert any(not np.array_equal(a, b) for a, b in
               zip(_leaves(start.params), _leaves(fresh.params), strict=True))
    pruned = run(dense.replace(init_from=str(tmp_path / "dense"),
                               **{"sparsity.target": 0.5, "sparsity.schedule": "oneshot",
                                  "sparsity.start": 0.0}), chunk=4)
    assert pruned.status == "ok" and pruned.sparsity_measured == pytest.approx(0.5, 1e-3)
    wrong = dense.replace(init_from=str(tmp_path / "dense"),
                          **{"model.width": tiny_result.width + 8})
    with pytest.raises(ValueError, match="does not match this model"):
        Trainer(wrong)


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_every_committed_ok_run_ends_below_its_uniform_prediction_loss():
    # The collapse check must not fail a legitimate run: every committed finished run ends
    # below ln(outputs), T5 by >= 3.4 nats, the ViT teacher task by >= 1.4. One does not: an
    # archived ViT LR pilot at lr 0.03 (the rate the recipe check rejected) ended at 4.1604,
    # above ln 64 = 4.1589: a collapse, which a run today records as failed.
    import dataclasses
    from pathlib import Path

    from sparsekit.models import get_family

    root = Path(__file__).resolve().parents[1]
    margins, collapsed = {}, []
    for path in sorted(root.glob("results/**/runs/*.json")):
        result = json.loads(path.read_text())
        if result["status"] != "ok":
            continue
        fam = get_family(result["config"]["model"]["family"])
        if fam.name == "vit":
            fam = dataclasses.replace(fam, num_classes=result["data"]["num_classes"])
        margin = fam.uniform_loss - result["loss"]
        task = (fam.name, result["data"].get("generator"))
        margins[task] = min(margin, margins.get(task, math.inf))
        if margin <= 0:
            collapsed.append((path.stem, result["config"]["optim"]["lr"], path.parent.parent.name))
    assert collapsed == [("f16ef7022d62f4cc", 0.03, "vit-lr")]
    assert margins[("t5", "span-corruption-v2")] > 3.4
    assert margins[("vit", "teacher-v1")] > 1.4


@pytest.mark.parametrize(("final", "error"), [
    (lambda fam: fam.uniform_loss, "collapsed: final validation loss 5.9506 is at or above "
                                   "5.9506 = ln 384, the loss of uniform predictions over its "
                                   "384 outputs"),
    (lambda fam: fam.uniform_loss + 0.5, "collapsed: final validation loss 6.4506 is at or "
                                         "above 5.9506 = ln 384"),
    (lambda fam: math.nan, "non-finite validation loss (nan) after training"),
])
def test_a_collapsed_or_non_finite_final_loss_is_a_failed_run_through_the_cli(
    capsys, monkeypatch, final, error
):
    # A run whose training stayed finite: what its final validation loss says decides.
    from sparsekit.__main__ import main

    def trained(self, *args, **kw):  # whatever Trainer.train takes besides
        return {"curve": [[8, 5.0]], "val_curve": [], "steps_done": 8, "error": None,
                "failed_step": None, "elapsed_s": 0.0}

    monkeypatch.setattr(Trainer, "train", trained)
    monkeypatch.setattr(Trainer, "evaluate", lambda self: (final(self.fam), 0.0))
    code = main(["train", "--family", "t5", "--nonzero", "4000", "--data", "4096", "--batch",
                 "4", "--eval-examples", "16", "--json"])
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == 1 and result["status"] == "failed" and result["error"].startswith(error)
    assert err == f"sparsekit train: run failed: {result['error']}\n"
    assert result["failed_step"] is None and result["steps"] == 8  # trained to the end
