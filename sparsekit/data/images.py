"""A local, finite image-classification set (CIFAR-10 style), read in one pass.

Formats:
- a directory of CIFAR-10 python pickles: `data_batch_*` (train) and `test_batch` (eval),
  dicts with b"data" uint8 [N, 3072] (channel-major 3 x 32 x 32) and b"labels", read by an
  unpickler that admits only those plain types and numpy arrays (`PICKLE_GLOBALS`);
- an `.npz` with x uint8 [N, 32, 32, 3] and y int [N]; an image is held out for eval when
  sha256 of its bytes starts with a byte < 13 (the text corpora's rule, about 5%).
Training order is a fixed permutation drawn from `seed`; asking past the end raises ValueError
naming `data` (no second epoch: the scaling law assumes data never repeats).
"""

import codecs
import hashlib
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sparsekit.data.corpus import is_validation
from sparsekit.data.source import example_range, fingerprint, read_only

_SHAPE = (32, 32, 3)


@dataclass(frozen=True)
class ImageArrayConfig:
    """Settings of a local image set."""

    path: str  # CIFAR-10 python batch directory or .npz file
    seed: int = 0  # permutation of the training examples
    eval_examples: int | None = None  # first held-out images to evaluate on; None: all

    def __post_init__(self) -> None:
        if self.eval_examples is not None and self.eval_examples < 1:
            raise ValueError(f"eval_examples must be >= 1 or None, got {self.eval_examples}")


def _split(x: np.ndarray, y: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    held = np.array([is_validation(image.tobytes()) for image in x], bool)
    return (x[~held], y[~held]), (x[held], y[held])


# The only globals a CIFAR-10 python batch may name: numpy's array and dtype rebuilders (as
# numpy 1 and 2, and pickle protocols 2-5, write them) and the bytes of a protocol-2 pickle
# written by Python 3. Everything else a pickle can name (a function to call, a class to build)
# is refused: unpickling calls it, so a crafted batch file could run any code.
_REBUILD, _FROMBUFFER = np.ndarray(0).__reduce__()[0], np.zeros(1).__reduce_ex__(5)[0]
PICKLE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _REBUILD,
    ("numpy._core.multiarray", "_reconstruct"): _REBUILD,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): codecs.encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Reads dicts, lists, bytes, text, numbers and numpy arrays; any other global is an
    UnpicklingError naming it (never imported, never called)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}")
        return PICKLE_GLOBALS[module, name]

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError(f"it holds a persistent id {pid!r}")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 [N, 32, 32, 3], y [N]) of one CIFAR-10 python batch, read by an unpickler that
    admits only what the format holds; ValueError naming the file for anything else."""
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError) as e:
        raise ValueError(
            f"data: {path} is refused, not a CIFAR-10 python batch: {e or 'truncated'}; one "
            f"holds only dicts, lists, bytes, text, numbers and numpy arrays (unpickling "
            f"anything else could run code)") from None
    try:
        x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(batch[b"labels"])
    except (TypeError, KeyError, ValueError, IndexError) as e:
        raise ValueError(f"data: {path} is not a CIFAR-10 python batch (a dict with b'data' "
                         f"uint8 [N, 3072] and b'labels'): {e!r}") from None


def load_arrays(path: str | Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """((x_train, y_train), (x_eval, y_eval)): uint8 [N, 32, 32, 3], int32 [N]."""
    path = Path(path)
    if path.is_dir():
        train_files = sorted(path.glob("data_batch_*"))
        if not train_files or not (path / "test_batch").is_file():
            raise ValueError(f"data: {path} has no CIFAR-10 data_batch_* and test_batch files")
        parts = [_cifar_batch(f) for f in train_files]
        train = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
        splits = train, _cifar_batch(path / "test_batch")
    elif path.suffix == ".npz":
        with np.load(path) as arrays:
            splits = _split(np.asarray(arrays["x"], np.uint8), np.asarray(arrays["y"]))
    else:
        raise ValueError(f"data: {path} is neither a CIFAR-10 batch directory nor an .npz file")
    for x, y in splits:
        if x.shape[1:] != _SHAPE or len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"data: {path} needs non-empty x [N, 32, 32, 3] and y [N], got {x.shape}"
            )
    return tuple((x, y.astype(np.int32)) for x, y in splits)


class ImageArraySource:
    """ViT data source over local arrays: {"image": float32 [B, 32, 32, 3] in [0, 1], "label"}."""

    unit = "images"
    units_per_example = 1
    image_size = _SHAPE[0]  # pixels per side

    def __init__(self, config: ImageArrayConfig) -> None:
        self.config = config
        (x, y), (x_eval, y_eval) = load_arrays(config.path)
        order = np.random.default_rng(config.seed).permutation(len(x))
        self._train = x[order], y[order]
        count = config.eval_examples or len(x_eval)
        if count > len(x_eval):
            raise ValueError(f"data: eval_examples={count} but {config.path} holds {len(x_eval)}")
        self._eval = read_only(self._as_batch(x_eval[:count], y_eval[:count]))
        self.max_examples = len(x)
        self.num_classes = int(max(y.max(), y_eval.max())) + 1
        digest = hashlib.sha256()
        for array in (x, y, x_eval, y_eval):
            digest.update(np.ascontiguousarray(array).data)
        self.fingerprint = fingerprint({"arrays": digest.hexdigest(), "seed": config.seed})

    @staticmethod
    def _as_batch(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": x.astype(np.float32) / 255, "label": y}

    def train_batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """Training examples step * batch_size ... of the permuted set."""
        examples = example_range(step, batch_size, self.max_examples)
        x, y = self._train
        return self._as_batch(x[examples.start : examples.stop], y[examples.start : examples.stop])

    def eval_set(self) -> dict[str, np.ndarray]:
        """The first `eval_examples` held-out images, same (read-only) arrays every call."""
        return self._eval

    def describe(self) -> dict:
        """Settings, sizes and fingerprint (JSON-able)."""
        return {
            "family": "vit",
            "unit": self.unit,
            **asdict(self.config),
            "train_examples": self.max_examples,
            "eval_examples": len(self._eval["label"]),
            "num_classes": self.num_classes,
            "fingerprint": self.fingerprint,
        }
