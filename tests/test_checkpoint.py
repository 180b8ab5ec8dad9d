"""Training checkpoints (sparsekit.checkpoint): an interrupted run resumes bit for bit."""

import json

import jax
import numpy as np
import pytest

from sparsekit import checkpoint, train
from sparsekit.checkpoint import Checkpoints, inflight_path
from sparsekit.config import Data, Model, RunConfig, Sparsity
from sparsekit.sweep import sweep
from sparsekit.train import Trainer, run

# 8 steps of 4 examples x 128 tokens, masks every 2 steps (the ramp runs across the
# interruption), a validation point every 2 steps; chunks of 2 steps
CFG = RunConfig(model=Model("t5", nonzero=4000), data=Data(amount=4096, batch=4,
                eval_examples=16), sparsity=Sparsity(0.5, every=2), eval_every=2)
CHUNK = 2


class Interrupted(Exception):
    pass


def interrupt_at(stop: int):
    def on_chunk(step, steps):
        if step == stop:
            raise Interrupted
    return on_chunk


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def uninterrupted():
    trainer = Trainer(CFG)
    trained = trainer.train(CHUNK)
    return trainer, trained, trainer.result(trained, wall=0.0)


def test_a_resumed_run_gives_the_uninterrupted_result_bit_for_bit(tmp_path, uninterrupted):
    whole, whole_trained, whole_result = uninterrupted
    folder = tmp_path / "ckpt"
    for stop in (4, 6):  # interrupted twice: the second attempt resumes and saves again
        with pytest.raises(Interrupted):
            Trainer(CFG).train(CHUNK, interrupt_at(stop), Checkpoints(folder, every_steps=2))
    assert [p.name for p in folder.iterdir()] == ["step_000000006"]  # only the latest
    progress = json.loads((folder / "step_000000006" / "progress.json").read_text())
    assert progress["step"] == 6 and progress["curve"] == whole_trained["curve"][:3]

    resumed = Trainer(CFG)
    trained = resumed.train(CHUNK, checkpoints=Checkpoints(folder, every_steps=2))
    assert trained["curve"] == whole_trained["curve"]  # the same points, the same losses
    assert trained["val_curve"] == whole_trained["val_curve"] and len(trained["val_curve"]) == 4
    assert trained["steps_done"] == 8 and trained["elapsed_s"] > 0
    for a, b in zip(leaves(resumed.params), leaves(whole.params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(resumed.opt_state), leaves(whole.opt_state), strict=True):
        np.testing.assert_array_equal(a, b)  # masks, moments and counts
    result = resumed.result(trained, wall=0.0)
    assert (result.loss, result.loss_se, result.N) == (whole_result.loss, whole_result.loss_se,
                                                      whole_result.N)


def test_a_checkpoint_is_due_by_wall_time_or_by_steps(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: now[0])
    by_time, by_steps = Checkpoints("unused"), Checkpoints("unused", every_steps=4)
    assert not by_time.due(100) and not by_steps.due(3) and by_steps.due(4)
    now[0] = checkpoint.EVERY_S  # 15 minutes later
    assert by_time.due(101) and by_steps.due(3)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    saves = Checkpoints(tmp_path, every_steps=2)
    with pytest.raises(Interrupted):
        Trainer(CFG).train(CHUNK, interrupt_at(2), saves)
    with pytest.raises(ValueError, match="of a run with chunk 2, not 4"):
        Trainer(CFG).train(4, checkpoints=saves)
    other = CFG.replace(seed=1)
    with pytest.raises(ValueError, match=f"of a run with key '{CFG.key()}'"):
        Trainer(other).train(CHUNK, checkpoints=saves)
    # written by other code: set aside, the run starts over (and saves its own at step 2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train.provenance, "code_version", lambda: "another-commit")
        with pytest.warns(UserWarning, match="starting the run over"), pytest.raises(
                Interrupted):
            Trainer(CFG).train(CHUNK, interrupt_at(2), saves)
    progress = json.loads((tmp_path / "step_000000002" / "progress.json").read_text())
    assert progress["code_version"] == "another-commit"


def test_bad_intervals_are_refused(tmp_path):
    for kw in ({"every_s": 0}, {"every_steps": 0}, {"every_steps": 2.0}):
        with pytest.raises(ValueError, match="every_"):
            Checkpoints(tmp_path, **kw)


def test_a_sweep_resumes_an_inflight_run_and_removes_its_checkpoint(tmp_path, monkeypatch,
                                                                   uninterrupted):
    store = tmp_path / "store"
    folder = inflight_path(store, CFG.key())
    with pytest.raises(Interrupted):
        run(CFG, chunk=CHUNK, on_chunk=interrupt_at(4),
            checkpoints=Checkpoints(folder, every_steps=2))
    progress = folder / "step_000000004" / "progress.json"
    progress.write_text(json.dumps({**json.loads(progress.read_text()), "elapsed_s": 1000.0}))
    monkeypatch.setattr(train, "run", _run_with_chunk(train.run))  # the test's chunk
    sweep([CFG], store, progress=False)
    result = json.loads((store / "runs" / f"{CFG.key()}.json").read_text())
    assert result["loss"] == uninterrupted[2].loss and result["curve"] == uninterrupted[2].curve
    assert result["wall_time_s"] > 1000  # it went on from the checkpoint
    assert not folder.exists() and (store / "checkpoints" / checkpoint.INFLIGHT).is_dir()


def _run_with_chunk(real):
    def run_(cfg, **kw):
        return real(cfg, chunk=CHUNK, **kw)
    return run_
