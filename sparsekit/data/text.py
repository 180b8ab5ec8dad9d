"""Span-corruption batches for T5 over a byte corpus (ByT5-style, see `spans`).

Example i of the training stream is raw chunk order[i] of the training bytes, where `order`
is a permutation of all chunks drawn from the data seed: no overlap, no repetition, and a run of
any length sees a uniform sample of the whole corpus (the files are concatenated in sorted
order, so consecutive chunks would give short runs only the first few packages). Step k holds
examples k * B ... (k + 1) * B - 1, and its span positions come from
`np.random.default_rng([0, seed, k])`, so any step can be produced alone, in any order. D is
counted in encoder input tokens (units_per_example = input_length). The eval set is
`eval_examples` validation chunks drawn uniformly (a fixed permutation) from the validation
bytes, corrupted with a seed shared by every run so that losses compare across training seeds.
"""

import functools
from dataclasses import asdict, dataclass

import numpy as np

from sparsekit.data.corpus import STDLIB, load_corpus
from sparsekit.data.source import example_range, fingerprint, read_only
from sparsekit.data.spans import SpanLengths, corrupt, noise_mask, span_lengths

_TRAIN_FOLD = 0  # first seed word of training masks
_EVAL_SEED = (1, 0)  # eval masks: first word 1 (never a training seed), same for every run
GENERATOR = "span-corruption-v2"  # recorded in the fingerprint; bump when the algorithm changes


@dataclass(frozen=True)
class TextConfig:
    """Settings of the T5 span-corruption stream."""

    corpus: str = STDLIB  # "stdlib", "pinned" (sparsekit.data.pinned) or a local .txt /
    # .json[l][.gz] file or directory
    input_length: int = 128  # encoder tokens per example (Li), sentinels and eos included
    noise_density: float = 0.15  # fraction of raw bytes masked out
    mean_noise_span_length: float = 20.0  # bytes per noise span (ByT5)
    seed: int = 0  # training span positions
    eval_examples: int = 512  # held-out examples

    def __post_init__(self) -> None:
        if not 0 < self.noise_density < 1:
            raise ValueError(f"noise_density must be in (0, 1), got {self.noise_density}")
        if self.mean_noise_span_length < 1:
            raise ValueError(
                f"mean_noise_span_length must be >= 1 byte, got {self.mean_noise_span_length}"
            )
        if self.eval_examples < 1:
            raise ValueError(f"eval_examples must be >= 1, got {self.eval_examples}")
        _ = self.lengths  # raises on a too-short input_length or too many sentinels

    @property
    def lengths(self) -> SpanLengths:
        """Raw chunk, input and target lengths implied by the settings."""
        return span_lengths(self.input_length, self.noise_density, self.mean_noise_span_length)


class TextSource:
    """T5 data source: span-corrupted byte chunks, {"inputs", "targets"} int32 batches."""

    unit = "tokens"

    def __init__(self, config: TextConfig | None = None) -> None:
        self.config = config or TextConfig()
        self.lengths = self.config.lengths
        self.corpus = load_corpus(self.config.corpus)
        self.units_per_example = self.lengths.input_length
        self.max_examples = self.corpus.train.size // self.lengths.raw_length
        available = self.corpus.val.size // self.lengths.raw_length
        if self.config.eval_examples > available:
            raise ValueError(
                f"data: eval_examples={self.config.eval_examples} but the validation split holds "
                f"{available} chunks of {self.lengths.raw_length} bytes"
            )
        settings = {k: v for k, v in asdict(self.config).items() if k != "corpus"}
        self.fingerprint = fingerprint(
            {"generator": GENERATOR, "corpus": self.corpus.fingerprint, **settings}
        )

    def _examples(self, stream: np.ndarray, chunks: np.ndarray, rng: np.random.Generator):
        n = self.lengths.raw_length
        raw = stream[: (stream.size // n) * n].reshape(-1, n)[chunks]
        return corrupt(raw, noise_mask(rng, len(chunks), self.lengths))

    @functools.cached_property
    def _order(self) -> np.ndarray:
        return np.random.default_rng([_TRAIN_FOLD, self.config.seed]).permutation(
            self.max_examples)

    def train_batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """{"inputs": int32 [B, input_length], "targets": int32 [B, target_length]}."""
        examples = example_range(step, batch_size, self.max_examples)
        rng = np.random.default_rng([_TRAIN_FOLD, self.config.seed, step])
        return self._examples(self.corpus.train, self._order[examples.start:examples.stop], rng)

    @functools.cached_property
    def _eval(self) -> dict[str, np.ndarray]:
        available = self.corpus.val.size // self.lengths.raw_length
        chunks = np.random.default_rng(_EVAL_SEED).permutation(available)
        rng = np.random.default_rng(_EVAL_SEED)
        return read_only(self._examples(self.corpus.val, chunks[: self.config.eval_examples], rng))

    def eval_set(self) -> dict[str, np.ndarray]:
        """`eval_examples` uniformly drawn validation chunks, same (read-only) arrays every call."""
        return self._eval

    def describe(self) -> dict:
        """Settings, lengths, corpus statistics and fingerprint (JSON-able)."""
        return {
            "family": "t5",
            "unit": self.unit,
            "generator": GENERATOR,
            **asdict(self.config),
            **asdict(self.lengths),
            "max_examples": self.max_examples,
            "corpus_stats": self.corpus.describe(),
            "fingerprint": self.fingerprint,
        }
