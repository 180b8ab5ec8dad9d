"""A teacher-student image task with a known loss floor, in JAX.

Images are Gaussian random fields with a natural-image power spectrum, power ~ 1/f^spectrum
(about 2 for natural images), each channel drawn independently and the image standardised
to mean 0 and variance 1. Their targets come from a fixed random teacher: a ViT of the
student's family (`ViTFamily`, same patch and image size), wider than the students, with a
random head. Each of its class logits is standardised over `reference_examples` reference
images, then multiplied by `scale`: without that, a random ViT's logits hardly depend on the
image. The targets are the teacher's softmax probabilities p(x) ("soft") or one label drawn
from them ("sampled").

The student's cross-entropy against p(x) is H(p(x)) + KL(p(x) || q(x)), so the best possible
validation loss, the floor, is the teacher's mean entropy on the eval images, which
`describe()` records (`floor`, with `floor_se` over images). `marginal` is the loss of the
best prediction that ignores the image, H(mean p): the initial plateau. The validation loss
is always the cross-entropy against p(x), for sampled labels too (the same expectation with
less variance).

Image i of a stream is a pure function of (stream key, i), computed in its aligned block of
BLOCK images (the same shapes every time, so bit-identical however it is requested).
`task_seed` fixes the task (teacher, reference and eval images, the same for every run);
`seed` picks the training stream, disjoint from the eval and reference streams. Data never
repeats (up to 2**32 training images) and D counts images.
"""

import collections
import dataclasses
import functools
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsekit.data.source import example_range, fingerprint, read_only
from sparsekit.models.families import ViTFamily
from sparsekit.models.vit import CHANNELS, PATCH

BLOCK = 512  # images generated together; image i always in block i // BLOCK
LABELS = ("soft", "sampled")
_FOLDS = {"train": 0, "eval": 1, "reference": 2, "teacher": 3}
_CACHED_BLOCKS = 4  # recent blocks kept: a training step reads at most two
# what the fingerprint records besides the config; bump the tag when the algorithm changes
GENERATOR = {"name": "teacher-v1", "block": BLOCK, "patch": PATCH, "teacher_heads": 4,
             "teacher_head_init": 1.0}


@dataclass(frozen=True)
class TeacherConfig:
    """Settings of the teacher-student image stream (all of them define the data)."""

    num_classes: int = 64  # teacher classes
    seed: int = 0  # training stream: which images a run sees
    task_seed: int = 0  # the task: teacher weights, reference and eval images
    eval_examples: int = 2048  # held-out images (eval stream 0 ... eval_examples - 1)
    image_size: int = 16  # pixels per side, a multiple of the patch (4): 16 tokens at 16
    spectrum: float = 2.0  # power spectrum exponent: power ~ 1/f^spectrum, in [0, 4]
    teacher_width: int = 32  # teacher ViT width, a multiple of 8
    teacher_depth: int = 2  # teacher ViT layers
    scale: float = 3.0  # teacher logit scale after per-class standardisation, in (0, 20]
    labels: str = "soft"  # training targets: "soft" (probabilities) or "sampled" (a label)
    reference_examples: int = 4096  # images behind the per-class standardisation

    def __post_init__(self) -> None:
        if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if self.eval_examples < 1:
            raise ValueError(f"eval_examples must be >= 1, got {self.eval_examples}")
        if self.image_size < PATCH or self.image_size % PATCH:
            raise ValueError(f"image_size must be a positive multiple of the patch ({PATCH}), "
                             f"got {self.image_size}")
        if not 0.0 <= self.spectrum <= 4.0:
            raise ValueError(f"spectrum must be in [0, 4] (power ~ 1/f^spectrum), got "
                             f"{self.spectrum}")
        if self.teacher_width < 8 or self.teacher_width % 8:
            raise ValueError(f"teacher_width must be a positive multiple of 8, got "
                             f"{self.teacher_width}")
        if self.teacher_depth < 1:
            raise ValueError(f"teacher_depth must be >= 1, got {self.teacher_depth}")
        if not 0.0 < self.scale <= 20.0:
            raise ValueError(f"scale must be in (0, 20], got {self.scale}")
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, got {self.labels!r}")
        if self.reference_examples < BLOCK:
            raise ValueError(f"reference_examples must be >= {BLOCK}, got "
                             f"{self.reference_examples}")


def amplitude(size: int, spectrum: float) -> np.ndarray:
    """Fourier amplitude [size, size // 2 + 1] of the rfft2 grid: |f|^(-spectrum / 2), 0 at
    f = 0 (frequencies in cycles per pixel)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    return np.where(f > 0, np.maximum(f, 1e-12) ** (-spectrum / 2), 0.0)


@functools.cache
def filter_matrix(size: int, spectrum: float) -> np.ndarray:
    """The spectral filter as a matrix float32 [size^2, size^2]: row-major flattened noise @ it
    = irfft2(rfft2(noise) * amplitude). A matmul is about 3x faster than two small FFTs on CPU."""
    eye = np.eye(size * size).reshape(size * size, size, size)
    rows = np.fft.irfft2(np.fft.rfft2(eye) * amplitude(size, spectrum), s=(size, size))
    return rows.reshape(size * size, size * size).astype(np.float32)


def random_fields(key: jax.Array, indices: jax.Array, size: int, spectrum: float) -> jax.Array:
    """Images float32 [B, size, size, 3]: per channel, white noise of key fold_in(key, index)
    filtered to power ~ 1/f^spectrum; each image standardised (mean 0, variance 1)."""
    noise = jax.vmap(
        lambda index: jax.random.normal(jax.random.fold_in(key, index), (CHANNELS, size * size))
    )(indices)
    images = (noise @ jnp.asarray(filter_matrix(size, spectrum))).reshape(-1, CHANNELS, size, size)
    images = images.transpose(0, 2, 3, 1)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    return (images - mean) / images.std(axis=(1, 2, 3), keepdims=True)


def teacher_family(config: TeacherConfig) -> ViTFamily:
    """The teacher's architecture: the students' ViT family at the teacher's depth and head."""
    return ViTFamily(depth=config.teacher_depth, num_classes=config.num_classes,
                     image_size=config.image_size, head_init=GENERATOR["teacher_head_init"])


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "standardise"))
def render(graphdef, params, key, start, stats, *, config: TeacherConfig, standardise: bool):
    """Images [BLOCK, S, S, 3], teacher log-probabilities [BLOCK, C] (raw logits when not
    `standardise`; stats = per-class (mean, std) of the raw logits otherwise) and labels
    [BLOCK] drawn from them, of indices start ... start + BLOCK - 1 under `key`. One compiled
    program per teacher shape, shared by every source (and run) that has it."""
    c = config
    indices = start + jnp.arange(BLOCK, dtype=jnp.uint32)
    images = random_fields(key, indices, c.image_size, c.spectrum)
    logits = nnx.merge(graphdef, params)(images)
    if not standardise:
        return images, logits, None
    mean, std = stats
    log_probs = jax.nn.log_softmax(c.scale * (logits - mean) / std, axis=-1)
    label_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), 1))(indices)
    labels = jax.vmap(jax.random.categorical)(label_keys, log_probs).astype(jnp.int32)
    return images, log_probs, labels


class TeacherSource:
    """ViT data source: {"image": float32 [B, S, S, 3], "probs": float32 [B, C]} (soft) or
    {"image", "label": int32 [B]} (sampled); the eval set always carries "probs"."""

    unit = "images"
    units_per_example = 1
    max_examples = 2**32  # fold_in takes 32-bit indices

    def __init__(self, config: TeacherConfig | None = None) -> None:
        self.config = c = config or TeacherConfig()
        self.num_classes = c.num_classes
        self.image_size = c.image_size
        task = jax.random.key(c.task_seed)
        self._keys = {
            "train": jax.random.fold_in(jax.random.fold_in(task, _FOLDS["train"]), c.seed),
            "eval": jax.random.fold_in(task, _FOLDS["eval"]),
            "reference": jax.random.fold_in(task, _FOLDS["reference"]),
        }
        teacher = teacher_family(c).make(
            c.teacher_width, nnx.Rngs(jax.random.fold_in(task, _FOLDS["teacher"]))
        )
        graphdef, params = nnx.split(teacher)
        # seeds, labels and set sizes do not change the program: compile once per shape
        shape = dataclasses.replace(c, seed=0, task_seed=0, eval_examples=1, labels="soft",
                                    reference_examples=BLOCK)
        self._render = functools.partial(render, graphdef, params, config=shape)
        self._cache: collections.OrderedDict = collections.OrderedDict()
        # per-class standardisation over the reference images (float64 statistics)
        raw = np.concatenate([
            np.asarray(self._render(self._keys["reference"], np.uint32(start), None,
                                    standardise=False)[1])
            for start in range(0, c.reference_examples, BLOCK)
        ])[: c.reference_examples].astype(np.float64)
        self._stats = (jnp.asarray(raw.mean(0), jnp.float32), jnp.asarray(raw.std(0), jnp.float32))
        self.fingerprint = fingerprint({"generator": GENERATOR, **asdict(c)})

    def _block(self, fold: str, block: int) -> dict[str, np.ndarray]:
        """Block `block` of a stream: image, probs, log_probs, label (cached, read-only)."""
        if (fold, block) not in self._cache:
            images, log_probs, labels = self._render(self._keys[fold], np.uint32(block * BLOCK),
                                                     self._stats, standardise=True)
            log_probs = np.asarray(log_probs)
            self._cache[fold, block] = read_only({
                "image": np.asarray(images),
                "probs": np.exp(log_probs),
                "log_probs": log_probs,
                "label": np.asarray(labels),
            })
            while len(self._cache) > _CACHED_BLOCKS:
                self._cache.popitem(last=False)
        return self._cache[fold, block]

    def examples(self, fold: str, start: int, stop: int,
                 keys: tuple[str, ...] = ("image", "probs", "log_probs", "label"),
                 ) -> dict[str, np.ndarray]:
        """`keys` of images start ... stop - 1 of a stream ("train", "eval" or "reference"):
        image, probs, log_probs, label (read-only views when they lie in one block)."""
        first, last = start // BLOCK, (stop - 1) // BLOCK
        offset = first * BLOCK
        if first == last:
            block = self._block(fold, first)
            return {k: block[k][start - offset : stop - offset] for k in keys}
        blocks = [self._block(fold, b) for b in range(first, last + 1)]
        return {k: np.concatenate([b[k] for b in blocks])[start - offset : stop - offset]
                for k in keys}

    def train_batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """Training images step * batch_size ... (step + 1) * batch_size - 1 and their
        targets ("probs" or "label", by `labels`)."""
        examples = example_range(step, batch_size, self.max_examples)
        target = "probs" if self.config.labels == "soft" else "label"
        return self.examples("train", examples.start, examples.stop, ("image", target))

    @functools.cached_property
    def _eval(self) -> dict[str, np.ndarray]:
        return read_only(self.examples("eval", 0, self.config.eval_examples))

    def eval_set(self) -> dict[str, np.ndarray]:
        """Eval-stream images 0 ... eval_examples - 1 with the teacher's probabilities (the
        validation loss is the cross-entropy against them), same arrays every call."""
        return {k: self._eval[k] for k in ("image", "probs")}

    def floor(self) -> tuple[float, float, float]:
        """(floor, its standard error, marginal) on the eval set, in nats per image: the
        teacher's mean entropy (the best validation loss), and H(mean p), the loss of the best
        prediction that ignores the image."""
        log_probs = self._eval["log_probs"].astype(np.float64)
        probs = np.exp(log_probs)
        h = -(probs * log_probs).sum(-1)
        mean = probs.mean(0)
        marginal = float(-(mean * np.log(mean)).sum())
        return float(h.mean()), float(h.std(ddof=1) / np.sqrt(len(h))), marginal

    def describe(self) -> dict:
        """Settings, the loss floor and plateau, and fingerprint (JSON-able)."""
        floor, floor_se, marginal = self.floor()
        return {
            "family": "vit",
            "unit": self.unit,
            "generator": GENERATOR["name"],
            **asdict(self.config),
            "floor": floor,  # teacher's mean entropy on the eval set: the best loss, nats
            "floor_se": floor_se,
            "marginal": marginal,  # H(mean teacher p): the image-blind loss, nats
            "fingerprint": self.fingerprint,
        }
