"""The protocol every data source follows, and the data-budget checks built on it.

D counts `unit`s: encoder input tokens for T5 (units_per_example = input length, so the
paper's 128 x 512 batch is 65,536 tokens per step) and images for ViT (units_per_example = 1).
Batches are random access by step: step k always yields examples k * B ... (k + 1) * B - 1 of
the source's training stream, so runs resume bit-identically and never repeat an example.
"""

import hashlib
import json
from typing import Protocol

import numpy as np


class DataSource(Protocol):
    """A deterministic, never-repeating training stream plus a fixed held-out set."""

    unit: str  # "tokens" or "images": what D counts
    units_per_example: int  # encoder input tokens per example, or 1 for images
    max_examples: int  # training examples available without repetition
    fingerprint: str  # sha256 hex of the exact data (corpus bytes + generator settings)

    def train_batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """Examples step * batch_size ... (step + 1) * batch_size - 1."""
        ...

    def eval_set(self) -> dict[str, np.ndarray]:
        """The fixed held-out set, identical on every call."""
        ...

    def describe(self) -> dict:
        """JSON-able settings and fingerprint, for provenance."""
        ...


def fingerprint(payload: dict) -> str:
    """sha256 hex of a JSON-able payload (keys sorted, so dict order does not matter)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def max_units(source: DataSource, batch_size: int) -> int:
    """Most units (tokens or images) a run with this batch size can see without repetition.

    Whole steps only.
    """
    return (source.max_examples // batch_size) * batch_size * source.units_per_example


def check_units(source: DataSource, units: float, batch_size: int) -> None:
    """Raise ValueError (naming `data`) if a run of `units` would repeat training data."""
    available = max_units(source, batch_size)
    if units > available:
        raise ValueError(
            f"data: the run asks for {units:.4g} {source.unit} but the training split holds "
            f"{available:.4g} without repetition at batch size {batch_size}"
        )


def example_range(step: int, batch_size: int, max_examples: int) -> range:
    """Example indices of one training step; ValueError naming `data` past the end."""
    if step < 0 or batch_size < 1:
        raise ValueError(f"step must be >= 0 and batch_size >= 1, got {step}, {batch_size}")
    stop = (step + 1) * batch_size
    if stop > max_examples:
        raise ValueError(
            f"data: step {step} at batch size {batch_size} needs examples up to {stop} but the "
            f"training split holds {max_examples} without repetition"
        )
    return range(step * batch_size, stop)


def read_only(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mark arrays read-only: a cached eval set must not be modified by its users."""
    for array in batch.values():
        array.flags.writeable = False
    return batch
