"""Procedural image classification in the style of FractalDB (Kataoka et al., 2020), in JAX.

Each class is a random contractive IFS (see `ifs`), kept only if its attractor covers at least
`min_fill` of a 32 x 32 grid (so no class is a speck or a line). Image i of a stream is a pure
function of (stream key, i): label = a threefry hash of it mod num_classes; the class maps get
a small uniform jitter; 128 chaos-game chains start on the class attractor and, after a short
burn-in, drop `points_per_image` points, each coloured by the map that produced it; the
attractor's bounding square is randomly scaled, shifted and mirrored onto a random dark
background. Pixels count points with integers, so an image is bit-identical whatever batch it
is rendered in.

`task_seed` fixes the task (classes and eval images, the same for every run); `seed` picks the
training stream (indices step * B ...), disjoint from the eval stream. Data never repeats (up
to 2**32 training images, the JFT regime) and D counts images.
"""

import functools
from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsekit.data.ifs import (
    MAX_MAPS,
    SYSTEM_WORDS,
    Draws,
    Systems,
    chaos_game,
    fill_rate,
    fit_square,
    sample_system,
)
from sparsekit.data.source import example_range, fingerprint, read_only

IMAGE_SIZE = 32  # pixels per side
CHAINS = 128  # chaos-game chains per image
BURN_IN = 4  # steps per chain before recording: chains start on the (unjittered) attractor
SCALE_RANGE = (0.5, 1.0)  # attractor's half side as a fraction of the canvas half side
POINT_COLOURS = (0.3, 1.0)  # per-map RGB channel range
BACKGROUND = (0.0, 0.3)  # background RGB channel range
OPACITY_POINTS = 2.0  # points per pixel at which the point colour reaches 1 - 1/e opacity
_CLASS_CHAINS, _CLASS_BURN_IN, _CLASS_STEPS = 256, 64, 16  # reference render of each class
_MAX_ROUNDS = 64  # candidate systems tried per class before giving up
_FOLDS = {"train": 0, "eval": 1, "classes": 2}
# what the fingerprint records besides the config; bump the tag when the algorithm changes
GENERATOR = {
    "name": "fractal-v1",
    "image_size": IMAGE_SIZE,
    "chains": CHAINS,
    "burn_in": BURN_IN,
    "scale_range": SCALE_RANGE,
    "point_colours": POINT_COLOURS,
    "background": BACKGROUND,
    "opacity_points": OPACITY_POINTS,
    "class_render": (_CLASS_CHAINS, _CLASS_BURN_IN, _CLASS_STEPS),
}


@dataclass(frozen=True)
class FractalConfig:
    """Settings of the fractal image stream (all of them define the data)."""

    num_classes: int = 256  # IFS categories
    seed: int = 0  # training stream: which images a run sees
    task_seed: int = 0  # the task: class systems and eval images (same for every run)
    eval_examples: int = 2048  # held-out images (eval stream 0 ... eval_examples - 1)
    points_per_image: int = 1536  # chaos-game points per image; a multiple of CHAINS
    jitter: float = 0.03  # max abs perturbation of each IFS coefficient per image, < 0.05
    min_fill: float = 0.1  # min fraction of a 32 x 32 grid a class attractor must cover

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.eval_examples < 1:
            raise ValueError(f"eval_examples must be >= 1, got {self.eval_examples}")
        if self.points_per_image < CHAINS or self.points_per_image % CHAINS:
            raise ValueError(
                f"points_per_image must be a positive multiple of {CHAINS}, "
                f"got {self.points_per_image}"
            )
        if not 0 <= self.jitter < 0.05:
            # singular values reach 0.9 + 2 * jitter: every map must stay contractive
            raise ValueError(f"jitter must be in [0, 0.05), got {self.jitter}")
        if not 0 <= self.min_fill < 0.5:
            raise ValueError(f"min_fill must be in [0, 0.5), got {self.min_fill}")


class ClassTable(NamedTuple):
    """The IFS of every class and where its attractor lies."""

    systems: Systems  # [K, ...]
    center: jax.Array  # float32 [K, 2]: centre of the attractor's bounding square
    half: jax.Array  # float32 [K]: half side of that square
    anchors: jax.Array  # float32 [K, CHAINS, 2]: points on the attractor (chain starts)
    fill: jax.Array  # float32 [K]: fill rate on a 32 x 32 grid


@jax.jit
def _candidates(class_keys: jax.Array, attempt: jax.Array) -> ClassTable:
    """Candidate `attempt` of every class, with its reference render."""
    steps = _CLASS_BURN_IN + _CLASS_STEPS

    def one(class_key: jax.Array) -> ClassTable:
        key = jax.random.fold_in(class_key, attempt)
        draws = Draws(
            jax.random.bits(key, (SYSTEM_WORDS + (2 + steps) * _CLASS_CHAINS,), jnp.uint32)
        )
        system = sample_system(draws)
        start = draws.uniform(_CLASS_CHAINS, 2, low=-1.0, high=1.0)
        points, _ = chaos_game(*system, start, draws.take(steps, _CLASS_CHAINS))
        points = points[_CLASS_BURN_IN:]
        center, half = fit_square(points)
        # chain ends are independent points on the attractor
        return ClassTable(system, center, half, points[-1, :CHAINS], fill_rate(points, IMAGE_SIZE))

    return jax.vmap(one)(class_keys)


@functools.cache
def class_table(task_seed: int, num_classes: int, min_fill: float) -> ClassTable:
    """Class c's system: the first candidate (task_seed, c, attempt) whose fill reaches min_fill.

    A class depends only on (task_seed, c), not on num_classes. About 3/4 of candidates pass at
    the default 0.1, so a few rounds over all classes (fixed shapes: one compilation) suffice.
    """
    base = jax.random.fold_in(jax.random.key(task_seed), _FOLDS["classes"])
    class_keys = jax.vmap(jax.random.fold_in, (None, 0))(base, jnp.arange(num_classes))
    chosen, pending = None, np.ones(num_classes, bool)
    for attempt in range(_MAX_ROUNDS):
        table = jax.tree.map(np.array, _candidates(class_keys, attempt))
        if chosen is None:
            chosen = table
        take = pending & (table.fill >= min_fill)
        for kept, new in zip(jax.tree.leaves(chosen), jax.tree.leaves(table), strict=True):
            kept[take] = new[take]
        pending &= ~take
        if not pending.any():
            return jax.tree.map(jnp.asarray, chosen)
    raise ValueError(f"min_fill={min_fill}: no system passed for {pending.sum()} classes")


# random words per image besides the chaos game: label, jitter, chain starts, scale, mirror,
# shift, point colours, background
_IMAGE_WORDS = 1 + 6 * MAX_MAPS + CHAINS + 1 + 1 + 2 + 3 * MAX_MAPS + 3


@functools.partial(jax.jit, static_argnames=("points", "num_classes"))
def render(
    table: ClassTable,
    key: jax.Array,
    indices: jax.Array,
    jitter: float,
    points: int,
    num_classes: int,
) -> tuple[jax.Array, jax.Array]:
    """Images float32 [B, 32, 32, 3] in [0, 1] and labels int32 [B] of `indices` under `key`."""
    steps = BURN_IN + points // CHAINS

    def one(index: jax.Array) -> tuple[jax.Array, jax.Array]:
        words = jax.random.bits(jax.random.fold_in(key, index), (_IMAGE_WORDS + steps * CHAINS,))
        draws = Draws(words)
        label = (draws.take() % num_classes).astype(jnp.int32)
        maps = table.systems.maps[label] + draws.uniform(MAX_MAPS, 6, low=-jitter, high=jitter)
        start = table.anchors[label][draws.take(CHAINS) % CHAINS]
        xy, ids = chaos_game(
            maps, table.systems.thresholds[label], start, draws.take(steps, CHAINS)
        )
        xy, ids = xy[BURN_IN:].reshape(-1, 2), ids[BURN_IN:].reshape(-1)
        # placement: bounding square -> [-scale, scale]^2, mirrored, shifted inside the canvas
        scale = draws.uniform(low=SCALE_RANGE[0], high=SCALE_RANGE[1])
        mirror = jnp.where(draws.uniform() < 0.5, -1.0, 1.0)
        shift = draws.uniform(2, low=0.0, high=1.0) * (2 - 2 * scale) - (1 - scale)
        xy = (xy - table.center[label]) / table.half[label] * scale * jnp.array([mirror, 1.0])
        cell = jnp.floor((xy + shift + 1) * (IMAGE_SIZE / 2)).astype(jnp.int32)
        inside = ((cell >= 0) & (cell < IMAGE_SIZE)).all(axis=1)
        bins = jnp.where(inside, (cell[:, 1] * IMAGE_SIZE + cell[:, 0]) * MAX_MAPS + ids, -1)
        counts = jnp.zeros(IMAGE_SIZE**2 * MAX_MAPS, jnp.int32).at[bins].add(1, mode="drop")
        counts = counts.reshape(IMAGE_SIZE, IMAGE_SIZE, MAX_MAPS).astype(jnp.float32)
        colours = draws.uniform(MAX_MAPS, 3, low=POINT_COLOURS[0], high=POINT_COLOURS[1])
        background = draws.uniform(3, low=BACKGROUND[0], high=BACKGROUND[1])
        total = counts.sum(axis=-1, keepdims=True)
        # an explicit sum over maps: pixel arithmetic never depends on the batch layout
        mix = sum(counts[..., m, None] * colours[m] for m in range(MAX_MAPS))
        opacity = 1 - jnp.exp(-total / OPACITY_POINTS)
        image = background * (1 - opacity) + mix / jnp.maximum(total, 1) * opacity
        return image, label

    return jax.vmap(one)(indices)


class FractalSource:
    """ViT data source: {"image": float32 [B, 32, 32, 3] in [0, 1], "label": int32 [B]}."""

    unit = "images"
    units_per_example = 1
    max_examples = 2**32  # fold_in takes 32-bit indices
    image_size = IMAGE_SIZE  # pixels per side

    def __init__(self, config: FractalConfig | None = None) -> None:
        self.config = config or FractalConfig()
        c = self.config
        self.num_classes = c.num_classes
        self.table = class_table(c.task_seed, c.num_classes, c.min_fill)
        task = jax.random.key(c.task_seed)
        self._keys = {
            "train": jax.random.fold_in(jax.random.fold_in(task, _FOLDS["train"]), c.seed),
            "eval": jax.random.fold_in(task, _FOLDS["eval"]),
        }
        self.fingerprint = fingerprint({"generator": GENERATOR, **asdict(c)})

    def images(self, fold: str, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Images of a stream ("train" or "eval") by index: each a function of (key, index)."""
        c, count = self.config, len(indices)
        # pad to a power of two so that odd request sizes share compilations; images are
        # independent of each other, so the padding changes nothing
        padded = np.zeros(max(8, 1 << (count - 1).bit_length()), np.uint32)
        padded[:count] = indices
        images, labels = render(
            self.table,
            self._keys[fold],
            jnp.asarray(padded),
            c.jitter,
            points=c.points_per_image,
            num_classes=c.num_classes,
        )
        return {"image": np.asarray(images)[:count], "label": np.asarray(labels)[:count]}

    def train_batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """Training images step * batch_size ... (step + 1) * batch_size - 1."""
        examples = example_range(step, batch_size, self.max_examples)
        return self.images("train", np.arange(examples.start, examples.stop))

    @functools.cached_property
    def _eval(self) -> dict[str, np.ndarray]:
        return read_only(self.images("eval", np.arange(self.config.eval_examples)))

    def eval_set(self) -> dict[str, np.ndarray]:
        """Eval-fold images 0 ... eval_examples - 1, same (read-only) arrays every call."""
        return self._eval

    def describe(self) -> dict:
        """Settings, class statistics and fingerprint (JSON-able)."""
        fill = np.asarray(self.table.fill)
        return {
            "family": "vit",
            "unit": self.unit,
            "generator": GENERATOR["name"],
            **asdict(self.config),
            "class_fill_mean": float(fill.mean()),
            "fingerprint": self.fingerprint,
        }
