"""Tests of the teacher-student image task (sparsekit.data.teacher) and the ViT options it
uses: image size from the data, a non-zero head init, soft-target loss, stable config keys."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsekit.config import Data, Model, RunConfig
from sparsekit.data import TeacherConfig, TeacherSource, make_source
from sparsekit.data.teacher import BLOCK, amplitude, filter_matrix, random_fields, teacher_family
from sparsekit.models import ViTFamily
from sparsekit.models.losses import soft_cross_entropy

SMALL = dict(num_classes=8, teacher_width=16, teacher_depth=1, eval_examples=256,
             reference_examples=BLOCK, image_size=8)


@pytest.fixture(scope="module")
def source() -> TeacherSource:
    return TeacherSource(TeacherConfig(**SMALL))


def test_batch_format(source):
    batch = source.train_batch(3, 16)
    image, probs = batch["image"], batch["probs"]
    assert set(batch) == {"image", "probs"}
    assert image.shape == (16, 8, 8, 3) and image.dtype == np.float32
    assert probs.shape == (16, 8) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(image.mean((1, 2, 3)), 0.0, atol=1e-5)  # standardised
    np.testing.assert_allclose(image.std((1, 2, 3)), 1.0, atol=1e-4)
    assert source.unit == "images" and source.num_classes == 8 and source.image_size == 8
    described = json.loads(json.dumps(source.describe()))
    assert described["generator"] == "teacher-v1" and described["floor"] > 0


def test_images_are_a_function_of_seed_and_index(source):
    """The same image whatever batch requests it (block boundary included), in a fresh
    source too; another seed changes the stream but not the eval set or the teacher."""
    across = source.train_batch(1, BLOCK - 16)  # indices 496 ... 991: crosses block 0 -> 1
    tail = source.train_batch(0, BLOCK + 8)["image"][BLOCK - 16 :]  # 496 ... 519
    np.testing.assert_array_equal(across["image"][:24], tail)
    again = TeacherSource(TeacherConfig(**SMALL)).train_batch(31, 16)
    np.testing.assert_array_equal(again["image"], across["image"][:16])  # 496 ... 511
    np.testing.assert_array_equal(again["probs"], across["probs"][:16])
    other = TeacherSource(TeacherConfig(**SMALL, seed=1))
    assert not np.array_equal(other.train_batch(0, 16)["image"], source.train_batch(0, 16)["image"])
    np.testing.assert_array_equal(other.eval_set()["probs"], source.eval_set()["probs"])
    assert other.fingerprint != source.fingerprint
    task = TeacherSource(TeacherConfig(**SMALL, task_seed=1))
    assert not np.array_equal(task.eval_set()["image"], source.eval_set()["image"])


def test_no_image_repeats_within_a_run_or_in_the_eval_set(source):
    train = np.concatenate([source.train_batch(s, 128)["image"] for s in range(10)])  # 1,280
    seen = {im.tobytes() for im in train} | {im.tobytes() for im in source.eval_set()["image"]}
    assert len(seen) == len(train) + source.config.eval_examples


def _teacher_log_probs(config: TeacherConfig, images: np.ndarray,
                       reference: np.ndarray) -> np.ndarray:
    """The task's definition, computed directly (float64 after the teacher's forward pass):
    the teacher ViT's logits, standardised per class over the reference images, scaled."""
    key = jax.random.fold_in(jax.random.key(config.task_seed), 3)  # the "teacher" fold
    teacher = teacher_family(config).make(config.teacher_width, nnx.Rngs(key))
    raw = np.asarray(teacher(jnp.asarray(images)), np.float64)
    ref = np.asarray(teacher(jnp.asarray(reference)), np.float64)
    z = config.scale * (raw - ref.mean(0)) / ref.std(0)
    return z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(
        -1, keepdims=True)


def test_floor_is_the_teacher_entropy_by_direct_computation(source):
    c = source.config
    reference = source.examples("reference", 0, c.reference_examples)["image"]
    evaluation = source.eval_set()
    log_p = _teacher_log_probs(c, evaluation["image"], reference)
    np.testing.assert_allclose(evaluation["probs"], np.exp(log_p), atol=2e-5)
    floor, floor_se, marginal = source.floor()
    entropy = -(np.exp(log_p) * log_p).sum(-1)
    assert floor == pytest.approx(entropy.mean(), abs=1e-5)
    assert floor_se == pytest.approx(entropy.std(ddof=1) / math.sqrt(len(entropy)), rel=1e-3)
    mean = np.exp(log_p).mean(0)
    assert marginal == pytest.approx(-(mean * np.log(mean)).sum(), abs=1e-5)
    assert 0 < floor < marginal <= math.log(c.num_classes) + 1e-9
    # The floor is the best achievable loss: a student that outputs the teacher's
    # log-probabilities reaches it, the image-blind mean reaches the marginal, others are worse.
    probs = jnp.asarray(evaluation["probs"])
    perfect = float(jnp.mean(soft_cross_entropy(jnp.asarray(log_p), probs)))
    blind = float(jnp.mean(soft_cross_entropy(jnp.log(jnp.asarray(mean))[None], probs)))
    noisy = float(jnp.mean(soft_cross_entropy(jnp.asarray(log_p) + 0.3, probs)))
    assert perfect == pytest.approx(floor, abs=1e-5) and blind == pytest.approx(marginal, abs=1e-5)
    jittered = jnp.asarray(log_p) + jax.random.normal(jax.random.key(0), log_p.shape) * 0.3
    assert noisy == pytest.approx(floor, abs=1e-5)  # a constant shift leaves softmax unchanged
    assert float(jnp.mean(soft_cross_entropy(jittered, probs))) > floor + 1e-3


def test_sampled_labels_follow_the_teacher_and_eval_stays_soft():
    source = TeacherSource(TeacherConfig(**{**SMALL, "labels": "sampled"}))
    batch = source.train_batch(0, 2048)
    assert set(batch) == {"image", "label"} and batch["label"].dtype == np.int32
    probs = source.examples("train", 0, 2048)["probs"].astype(np.float64)
    counts = np.bincount(batch["label"], minlength=8)
    expected = probs.sum(0)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 5)
    assert set(source.eval_set()) == {"image", "probs"}
    soft = TeacherSource(TeacherConfig(**SMALL))
    np.testing.assert_array_equal(source.eval_set()["probs"], soft.eval_set()["probs"])


def test_power_spectrum_and_filter_matrix():
    size = 16
    noise = np.random.default_rng(0).standard_normal((4, size, size))
    by_fft = np.fft.irfft2(np.fft.rfft2(noise) * amplitude(size, 2.0), s=(size, size))
    by_matrix = noise.reshape(4, -1) @ filter_matrix(size, 2.0).astype(np.float64)
    np.testing.assert_allclose(by_matrix.reshape(4, size, size), by_fft, atol=1e-5)
    images = np.asarray(random_fields(jax.random.key(0), jnp.arange(512, dtype=jnp.uint32),
                                      size, 2.0))
    power = (np.abs(np.fft.fft2(images, axes=(1, 2))) ** 2).mean((0, 3))
    f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None] ** 2)
    keep = (f > 0) & (f < 0.5)
    slope = np.polyfit(np.log(f[keep]), np.log(power[keep]), 1)[0]
    assert slope == pytest.approx(-2.0, abs=0.15)


def test_soft_loss_under_jit_matches_numpy():
    logits = jax.random.normal(jax.random.key(1), (5, 8))
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(2), (5, 8)) * 2)
    got = jax.jit(soft_cross_entropy)(logits, probs)
    lq = np.asarray(logits, np.float64)
    lq = lq - np.log(np.exp(lq).sum(-1, keepdims=True))
    np.testing.assert_allclose(got, -(np.asarray(probs) * lq).sum(-1), rtol=1e-5)


def test_config_validation_names_the_parameter():
    for kw, name in [({"num_classes": 1}, "num_classes"), ({"image_size": 10}, "image_size"),
                     ({"spectrum": 5.0}, "spectrum"), ({"teacher_width": 12}, "teacher_width"),
                     ({"scale": 0.0}, "scale"), ({"labels": "hard"}, "labels"),
                     ({"reference_examples": 8}, "reference_examples"),
                     ({"teacher_depth": 0}, "teacher_depth")]:
        with pytest.raises(ValueError, match=name):
            TeacherConfig(**kw)


# ---------------------------------------------------------------------------- ViT options


def test_vit_takes_the_image_size_of_its_data_and_a_random_head():
    from sparsekit.train import Trainer

    options = {k: v for k, v in SMALL.items() if k != "eval_examples"}
    cfg = RunConfig(model=Model("vit", width=8, depth=1, head_init=1.0),
                    data=Data(amount=64, batch=32, eval_examples=256,
                              options={"dataset": "teacher", **options}))
    trainer = Trainer(cfg)
    assert trainer.fam.image_size == 8 and trainer.fam.tokens == 4 and trainer.fam.head_init == 1
    assert trainer.params["head"]["kernel"].std() > 0.1  # not the zero head
    result = trainer.result(trainer.train(chunk=1), wall=0.0)
    # two steps from a random head end above ln 8: recorded as collapsed, measurements kept
    assert result.status == "failed" and result.error.startswith("collapsed")
    assert result.data["floor"] == pytest.approx(
        make_source("vit", **{"dataset": "teacher", **SMALL}).floor()[0])
    assert result.loss > result.data["floor"]


def test_head_init_zero_is_the_old_zero_head_and_draws_the_same_body():
    fam = ViTFamily(depth=1)
    zero, random = fam.make(8, nnx.Rngs(0)), dataclasses.replace(fam, head_init=1.0).make(
        8, nnx.Rngs(0))
    assert float(jnp.abs(zero.head.kernel[...]).max()) == 0.0
    std = float(random.head.kernel[...].std())
    assert 0.5 / math.sqrt(8) < std < 1.5 / math.sqrt(8)
    np.testing.assert_array_equal(zero.blocks[0].mlp.wi.kernel[...],
                                  random.blocks[0].mlp.wi.kernel[...])
    with pytest.raises(ValueError, match="head_init"):
        Model("vit", width=8, head_init=-1.0)
    with pytest.raises(ValueError, match="head_init"):
        Model("t5", width=8, head_init=1.0)
    with pytest.raises(ValueError, match="image_size"):
        ViTFamily(image_size=30)


def test_head_init_is_left_out_of_the_config_dict_at_its_default():
    """A field added later (config.LATER_FIELDS): configs written before it keep their dict
    and key (tests/test_config.py checks every stored run)."""
    cfg = RunConfig(model=Model("vit", width=8), data=Data(amount=64))
    assert "head_init" not in cfg.to_dict()["model"]
    other = RunConfig(model=Model("vit", width=8, head_init=0.5), data=Data(amount=64))
    assert other.to_dict()["model"]["head_init"] == 0.5 and other.key() != cfg.key()
    assert RunConfig.from_dict(other.to_dict()) == other
