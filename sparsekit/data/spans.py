"""Byte-level span corruption (T5 / ByT5): the vocabulary, the length rule and the noise mask.

Token ids: 0 = pad, 1 = eos, 2 unused (ByT5's unk), byte b -> b + 3, and sentinels counting
down from VOCAB_SIZE - 1 (ByT5's 125 extra ids). An example is a raw chunk of `raw_length`
bytes with n noise spans separated by kept runs (the first and last kept runs may be empty):

    inputs  = kept_0 <s_0> kept_1 <s_1> ... kept_{n-1} <s_{n-1}> kept_n eos
    targets = <s_0> noise_0 <s_1> noise_1 ... <s_{n-1}> noise_{n-1} eos

with <s_i> = VOCAB_SIZE - 1 - i. Every example of a given raw length has the same noise-byte
and span counts, so a batch has fixed shapes and never needs padding.
"""

from dataclasses import dataclass

import numpy as np

VOCAB_SIZE = 384  # ByT5: 3 specials + 256 bytes + 125 sentinels
PAD_ID = 0
EOS_ID = 1
BYTE_OFFSET = 3  # byte b has id b + 3
NUM_SENTINELS = VOCAB_SIZE - BYTE_OFFSET - 256


def span_counts(raw_length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """(noise tokens, noise spans) in a chunk of `raw_length` bytes.

    T5's rounding (Python/numpy round half to even) with its guards against degenerate masks
    (at least one noise token, one kept token and one span). `span_lengths` and `noise_mask`
    both use this one function, so the promised lengths always match the produced ones.
    """
    noise = min(max(round(raw_length * noise_density), 1), raw_length - 1)
    return noise, max(round(noise / mean_span), 1)


@dataclass(frozen=True)
class SpanLengths:
    """Lengths of one span-corrupted example (all in tokens except `raw_length`, in bytes)."""

    raw_length: int  # bytes of raw text consumed per example
    input_length: int  # encoder tokens: kept bytes + one sentinel per span + eos
    target_length: int  # decoder tokens: noise bytes + one sentinel per span + eos
    noise_tokens: int  # noise bytes per example
    noise_spans: int  # spans (= sentinels) per example


def span_lengths(input_length: int, noise_density: float, mean_span: float) -> SpanLengths:
    """The longest raw chunk whose corrupted inputs fit `input_length` tokens exactly.

    Same search as T5's `random_spans_helper` with one extra token per span on each side and
    one eos; e.g. (512, 0.15, 3) -> 568 bytes / 114 targets and (1024, 0.15, 20) -> 189
    targets (ByT5). Omits T5's special case for noise_density == 0.5, which shortens the chunk
    and would leave the inputs one token short. The inputs grow by 0 or 1 token per extra
    byte, so the search always lands exactly on `input_length`.
    """
    if input_length < 3:
        raise ValueError(
            f"input_length must be >= 3 (kept byte + sentinel + eos), got {input_length}"
        )

    def inputs_for(raw: int) -> int:
        noise, spans = span_counts(raw, noise_density, mean_span)
        return raw - noise + spans + 1

    raw = max(input_length - 1, 2)
    while inputs_for(raw + 1) <= input_length:
        raw += 1
    noise, spans = span_counts(raw, noise_density, mean_span)
    if spans > NUM_SENTINELS:
        raise ValueError(
            f"input_length={input_length} needs {spans} sentinels per example but the vocabulary "
            f"has {NUM_SENTINELS}; use a shorter input_length or a longer mean_noise_span_length"
        )
    return SpanLengths(raw, inputs_for(raw), noise + spans + 1, noise, spans)


def _segment_lengths(rng: np.random.Generator, batch: int, items: int, segments: int) -> np.ndarray:
    """Random split of `items` into `segments` non-empty runs per row: int [batch, segments].

    T5's `_random_segmentation`: shuffle `segments - 1` segment starts among the `items - 1`
    gaps between items.
    """
    starts = np.broadcast_to(np.arange(items - 1) < segments - 1, (batch, items - 1))
    cut = np.nonzero(rng.permuted(starts, axis=1))[1].reshape(batch, segments - 1) + 1
    edges = np.concatenate(
        [np.zeros((batch, 1), np.int64), cut, np.full((batch, 1), items)], axis=1
    )
    return np.diff(edges, axis=1)


def noise_mask(rng: np.random.Generator, batch: int, lengths: SpanLengths) -> np.ndarray:
    """Bool [batch, raw_length]: True on noise bytes, exactly `noise_spans` spans per row.

    T5 always ends a chunk with a noise span (its `random_roll=False` default); with a single
    span per example (Li = 128 at mean span 20) that degenerates into predicting the last
    bytes. Here the kept runs at both ends may be empty (split kept + 2 bytes into spans + 1
    non-empty runs, then take one byte off each end run), which places spans uniformly and
    keeps every length exact.
    """
    n, spans, noise_tokens = lengths.raw_length, lengths.noise_spans, lengths.noise_tokens
    noise = _segment_lengths(rng, batch, noise_tokens, spans)
    kept = _segment_lengths(rng, batch, n - noise_tokens + 2, spans + 1)
    kept[:, [0, -1]] -= 1
    runs = np.concatenate(
        [np.stack([kept[:, :-1], noise], axis=2).reshape(batch, -1), kept[:, -1:]], 1
    )
    # a noise run starts or ends at each run boundary; the last boundary is the chunk's end
    toggles = np.zeros((batch, n + 1), np.int32)
    np.put_along_axis(toggles, np.cumsum(runs, axis=1)[:, :-1], 1, axis=1)
    return np.cumsum(toggles[:, :n], axis=1) % 2 == 1


def _compress(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Row-wise values[keep] (every row keeps the same count), then eos: int32 [B, kept + 1]."""
    out = values[keep].reshape(len(values), -1)
    return np.pad(out, ((0, 0), (0, 1)), constant_values=EOS_ID).astype(np.int32)


def corrupt(raw: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Span-corrupt uint8 bytes [B, raw_length] under `mask` -> int32 inputs and targets."""
    tokens = raw.astype(np.int32) + BYTE_OFFSET
    starts = mask & ~np.pad(mask[:, :-1], ((0, 0), (1, 0)))
    sentinels = VOCAB_SIZE - np.cumsum(starts, axis=1, dtype=np.int32)
    inputs = _compress(np.where(starts, sentinels, tokens), ~mask | starts)
    # targets: each noise span preceded by its sentinel, i.e. the pairs (sentinel, byte)
    # flattened and kept where (span start, noise)
    pairs = np.stack([sentinels, tokens], axis=2).reshape(len(raw), -1)
    targets = _compress(pairs, np.stack([starts, mask], axis=2).reshape(len(raw), -1))
    return {"inputs": inputs, "targets": targets}
