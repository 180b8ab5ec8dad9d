"""Tests of sparsekit.data: span corruption, corpora, fractal images, local image sets."""

import gzip
import json
import os
import pickle
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from sparsekit.data import (
    EOS_ID,
    PAD_ID,
    VOCAB_SIZE,
    FractalConfig,
    FractalSource,
    TextConfig,
    TextSource,
    check_units,
    make_source,
    max_units,
)
from sparsekit.data.corpus import SEPARATOR, is_validation, load_corpus, stdlib_corpus
from sparsekit.data.images import load_arrays
from sparsekit.data.spans import BYTE_OFFSET, NUM_SENTINELS, corrupt, noise_mask, span_lengths

# ---------------------------------------------------------------------------- helpers


def reconstruct(inputs: np.ndarray, targets: np.ndarray) -> bytes:
    """Original bytes of one example: each input sentinel replaced by its target span."""
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets.tolist():
        if token == EOS_ID:
            break
        if token >= VOCAB_SIZE - NUM_SENTINELS:
            current = spans.setdefault(token, [])
        else:
            current.append(token - BYTE_OFFSET)
    out: list[int] = []
    for token in inputs.tolist():
        if token == EOS_ID:
            break
        out += spans[token] if token in spans else [token - BYTE_OFFSET]
    return bytes(out)


def write_c4_corpus(root: Path, docs: int = 400) -> list[str]:
    """A directory with a .json.gz (C4 format), a .jsonl and a .txt file; returns the documents."""
    texts = [f"document {i}: " + "lorem ipsum dolor sit amet " * (1 + i % 5) for i in range(docs)]
    third = docs // 3
    root.mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "c4-train.00000-of-01024.json.gz", "wt", encoding="utf-8") as f:
        for t in texts[:third]:
            f.write(json.dumps({"text": t, "url": "http://x", "timestamp": "2019-04-25"}) + "\n")
    (root / "b.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in texts[third : 2 * third])
    )
    (root / "c" / "d.txt").parent.mkdir(exist_ok=True)
    (root / "c" / "d.txt").write_text("\n\n".join(texts[2 * third :]) + "\n")
    return texts


@pytest.fixture(scope="module")
def text_source() -> TextSource:
    return TextSource(TextConfig(eval_examples=64))


@pytest.fixture(scope="module")
def fractal_source() -> FractalSource:
    return FractalSource(FractalConfig(num_classes=8, eval_examples=256))


# ---------------------------------------------------------------------------- span corruption


def test_lengths_match_t5_and_byt5():
    t5 = span_lengths(512, 0.15, 3.0)  # T5's documented 568 raw tokens -> 512 / 114
    assert (t5.raw_length, t5.input_length, t5.target_length) == (568, 512, 114)
    assert span_lengths(1024, 0.15, 20.0).target_length == 189  # ByT5's 1024 / 189
    default = span_lengths(128, 0.15, 20.0)
    assert (default.raw_length, default.target_length, default.noise_spans) == (148, 24, 1)
    for li in range(3, 1100):  # inputs always fill the requested length exactly
        assert span_lengths(li, 0.15, 20.0).input_length == li
        assert span_lengths(li, 0.15, 3.0).input_length == li


def test_too_many_sentinels_or_too_short_refused():
    with pytest.raises(ValueError, match="sentinels"):
        span_lengths(8192, 0.15, 3.0)
    with pytest.raises(ValueError, match="input_length"):
        TextConfig(input_length=2)


def test_corrupt_by_hand():
    raw = np.frombuffer(b"abcdefghij", np.uint8)[None]
    mask = np.zeros((1, 10), bool)
    mask[0, [2, 3, 7]] = True  # spans "cd" and "h"
    out = corrupt(raw, mask)
    b = {c: ord(c) + BYTE_OFFSET for c in "abcdefghij"}
    s0, s1 = VOCAB_SIZE - 1, VOCAB_SIZE - 2
    assert out["inputs"].tolist() == [
        [b["a"], b["b"], s0, b["e"], b["f"], b["g"], s1, b["i"], b["j"], EOS_ID]
    ]
    assert out["targets"].tolist() == [[s0, b["c"], b["d"], s1, b["h"], EOS_ID]]
    mask[0] = False
    mask[0, :2] = True  # a span at the very start: inputs begin with the sentinel
    assert corrupt(raw, mask)["inputs"][0, 0] == s0


def test_noise_mask_statistics_and_round_trip():
    lengths = span_lengths(512, 0.15, 20.0)
    rng = np.random.default_rng(0)
    mask = noise_mask(rng, 2000, lengths)
    assert (mask.sum(1) == lengths.noise_tokens).all()
    assert abs(mask.mean() - 0.15) < 0.005
    starts = mask & ~np.pad(mask[:, :-1], ((0, 0), (1, 0)))
    assert (starts.sum(1) == lengths.noise_spans).all()
    assert abs(mask.sum() / starts.sum() - 20) < 3  # mean span length: 90 bytes / 4 spans
    # spans sit anywhere, not always at the end of the chunk (as T5 without random roll):
    # with one span per example (Li = 128) its start is uniform over the 127 possible places
    single = span_lengths(128, 0.15, 20.0)
    first = noise_mask(rng, 4000, single).argmax(1)
    assert abs(first.mean() - (single.raw_length - single.noise_tokens) / 2) < 3
    assert first.min() == 0 and first.max() == single.raw_length - single.noise_tokens
    raw = rng.integers(0, 256, (50, lengths.raw_length), dtype=np.uint8)
    out = corrupt(raw, mask[:50])
    for i in range(50):
        assert reconstruct(out["inputs"][i], out["targets"][i]) == raw[i].tobytes()


# ---------------------------------------------------------------------------- text source


def test_text_batch_format(text_source):
    lengths = text_source.lengths
    batch = text_source.train_batch(3, 16)
    inputs, targets = batch["inputs"], batch["targets"]
    assert inputs.dtype == targets.dtype == np.int32
    assert inputs.shape == (16, lengths.input_length) and targets.shape == (
        16,
        lengths.target_length,
    )
    for x in (inputs, targets):
        assert (x[:, -1] == EOS_ID).all() and (x[:, :-1] != EOS_ID).all()
        assert (x != PAD_ID).all() and (x < VOCAB_SIZE).all()
        assert ((x >= VOCAB_SIZE - NUM_SENTINELS).sum(1) == lengths.noise_spans).all()
    assert text_source.unit == "tokens" and text_source.units_per_example == 128
    described = json.loads(json.dumps(text_source.describe()))
    assert described["fingerprint"] == text_source.fingerprint and described["target_length"] == 24


def test_text_steps_are_disjoint_permuted_chunks(text_source):
    n, batch_size = text_source.lengths.raw_length, 8
    train = text_source.corpus.train
    seen = []
    for step in (0, 1, 2, 1000):
        batch = text_source.train_batch(step, batch_size)
        for i in range(batch_size):
            chunk = int(text_source._order[step * batch_size + i])
            expected = train[chunk * n : (chunk + 1) * n].tobytes()
            assert reconstruct(batch["inputs"][i], batch["targets"][i]) == expected
            seen.append(chunk)
    assert len(set(seen)) == len(seen)  # never the same chunk twice
    # a permutation of every chunk: short runs sample the whole corpus, not its first files
    order = text_source._order
    assert sorted(order[:1000]) != list(range(1000))
    assert np.array_equal(np.sort(order), np.arange(text_source.max_examples))


def test_text_determinism_and_resumption(text_source):
    again = text_source.train_batch(7, 8)
    fresh = TextSource(TextConfig(eval_examples=64))
    for step in range(3):  # history must not matter
        text_source.train_batch(step, 8)
    resumed = fresh.train_batch(7, 8)
    for key in again:
        np.testing.assert_array_equal(again[key], resumed[key])
        assert not np.array_equal(again[key], fresh.train_batch(8, 8)[key])
    other_seed = TextSource(TextConfig(eval_examples=64, seed=1))
    assert not np.array_equal(other_seed.train_batch(7, 8)["inputs"], again["inputs"])
    assert other_seed.fingerprint != text_source.fingerprint


def test_text_eval_set_fixed(text_source):
    first, second = text_source.eval_set(), text_source.eval_set()
    assert first["inputs"] is second["inputs"] and not first["inputs"].flags.writeable
    assert first["inputs"].shape == (64, 128)
    n = text_source.lengths.raw_length
    val = text_source.corpus.val
    fifth = reconstruct(first["inputs"][5], first["targets"][5])
    offset = val.tobytes().find(fifth)
    assert offset >= 0 and offset % n == 0  # a whole validation chunk
    chunks = {val.tobytes().find(reconstruct(i, t)) // n for i, t in
              zip(first["inputs"], first["targets"], strict=True)}
    assert max(chunks) > 10 * len(chunks)  # drawn from the whole split, not its start
    # seed-independent, so losses compare across training seeds
    other = TextSource(TextConfig(eval_examples=64, seed=3)).eval_set()
    np.testing.assert_array_equal(other["targets"], first["targets"])


def test_stdlib_corpus_split():
    corpus = stdlib_corpus()
    root = Path(sysconfig.get_paths()["stdlib"])
    names = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if not {"site-packages", "dist-packages"} & set(p.relative_to(root).parts)
    )
    held = [n for n in names if is_validation(n.encode())]
    assert corpus.files == len(names) and corpus.documents == (len(names) - len(held), len(held))
    assert 0.02 < len(held) / len(names) < 0.09
    # the validation stream is exactly the held-out files, disjoint from the training files
    assert corpus.val.tobytes() == SEPARATOR.join((root / n).read_bytes() for n in held)
    train_size = sum((root / n).stat().st_size for n in names if n not in set(held))
    assert corpus.train.size == train_size + corpus.documents[0] - 1
    assert corpus.train.size > 10_000_000


def test_local_corpus_formats_split_and_fingerprint(tmp_path):
    texts = write_c4_corpus(tmp_path / "c4")
    corpus = load_corpus(tmp_path / "c4")
    assert corpus.files == 3 and sum(corpus.documents) == len(texts)
    train_docs = set(corpus.train.tobytes().split(SEPARATOR))
    val_docs = set(corpus.val.tobytes().split(SEPARATOR))
    assert not train_docs & val_docs
    assert train_docs | val_docs == {t.encode() for t in texts}
    assert val_docs == {t.encode() for t in texts if is_validation(t.encode())}
    # a single file works too, and the same bytes elsewhere give the same fingerprint
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "b.jsonl").write_bytes((tmp_path / "c4" / "b.jsonl").read_bytes())
    assert (
        load_corpus(tmp_path / "copy" / "b.jsonl").fingerprint
        == load_corpus(tmp_path / "copy").fingerprint
    )
    # editing the corpus changes the fingerprint (and is not hidden by the in-process cache)
    source = make_source("t5", corpus=str(tmp_path / "c4"), input_length=32, eval_examples=4)
    with (tmp_path / "c4" / "b.jsonl").open("a") as f:
        f.write(json.dumps({"text": "one more document"}) + "\n")
    os.utime(tmp_path / "c4" / "b.jsonl", ns=(1, 1))
    edited = make_source("t5", corpus=str(tmp_path / "c4"), input_length=32, eval_examples=4)
    assert edited.corpus.fingerprint != corpus.fingerprint
    assert edited.fingerprint != source.fingerprint
    batch = edited.train_batch(0, 4)
    assert batch["inputs"].shape == (4, 32)
    (tmp_path / "bad.jsonl").write_text('{"url": "no text field"}\n')
    with pytest.raises(ValueError, match=r"data: .*bad\.jsonl:1 "):
        load_corpus(tmp_path / "bad.jsonl")


def test_text_budget_errors_name_data(tmp_path):
    write_c4_corpus(tmp_path)
    source = make_source("t5", corpus=str(tmp_path), input_length=32, eval_examples=4)
    available = max_units(source, 8)
    assert available == (source.max_examples // 8) * 8 * 32
    check_units(source, available, 8)
    with pytest.raises(ValueError, match="data"):
        check_units(source, available + 1, 8)
    last = source.max_examples // 8 - 1
    source.train_batch(last, 8)
    with pytest.raises(ValueError, match="data"):
        source.train_batch(last + 1, 8)
    with pytest.raises(ValueError, match="data"):
        make_source("t5", corpus=str(tmp_path), input_length=32, eval_examples=10**6)


# ---------------------------------------------------------------------------- fractal images


def test_fractal_batch_format(fractal_source):
    batch = fractal_source.train_batch(2, 16)  # indices 32 ... 47
    image, label = batch["image"], batch["label"]
    assert image.shape == (16, 32, 32, 3) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05
    assert label.dtype == np.int32 and label.min() >= 0 and label.max() < 8
    assert fractal_source.unit == "images" and fractal_source.units_per_example == 1
    assert max_units(fractal_source, 128) >= 2**31
    assert json.loads(json.dumps(fractal_source.describe()))["num_classes"] == 8


def test_fractal_images_independent_of_batch(fractal_source):
    """An image is bit-identical whatever batch (size, position, compiled shape) holds it."""
    batch = fractal_source.train_batch(0, 16)
    alone = fractal_source.images("train", np.array([5]))
    mixed = fractal_source.images("train", np.array([9, 5, 10**6]))
    np.testing.assert_array_equal(batch["image"][5], alone["image"][0])
    np.testing.assert_array_equal(batch["image"][5], mixed["image"][1])
    np.testing.assert_array_equal(batch["image"][9], mixed["image"][0])
    assert batch["label"][9] == mixed["label"][0]
    assert not np.array_equal(batch["image"][0], batch["image"][1])
    again = FractalSource(FractalConfig(num_classes=8, eval_examples=256)).train_batch(0, 16)
    np.testing.assert_array_equal(again["image"], batch["image"])


def test_fractal_seed_changes_stream_not_task(fractal_source):
    other = FractalSource(FractalConfig(num_classes=8, eval_examples=256, seed=1))
    assert not np.array_equal(
        other.train_batch(0, 16)["image"], fractal_source.train_batch(0, 16)["image"]
    )
    np.testing.assert_array_equal(other.eval_set()["image"], fractal_source.eval_set()["image"])
    assert other.fingerprint != fractal_source.fingerprint
    new_task = FractalSource(FractalConfig(num_classes=8, eval_examples=256, task_seed=1))
    assert not np.array_equal(new_task.table.systems.maps, fractal_source.table.systems.maps)


def test_fractal_eval_set(fractal_source):
    first = fractal_source.eval_set()
    assert first is fractal_source.eval_set() and not first["image"].flags.writeable
    assert first["image"].shape == (256, 32, 32, 3)
    assert not np.array_equal(first["image"][0], fractal_source.train_batch(0, 16)["image"][0])


def test_fractal_classes_are_distinct(fractal_source):
    """Same-class images are closer in pixel space than different-class ones (on average)."""
    batch = fractal_source.eval_set()
    x, y = batch["image"].reshape(256, -1).astype(np.float64), batch["label"]
    assert len(np.unique(y)) == 8
    squared = (x**2).sum(1)
    dist = np.sqrt(np.maximum(squared[:, None] + squared[None] - 2 * x @ x.T, 0))
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    assert dist[(y[:, None] != y[None])].mean() > 1.02 * dist[same].mean()
    assert (np.asarray(fractal_source.table.fill) >= fractal_source.config.min_fill).all()


def test_fractal_config_validation():
    with pytest.raises(ValueError, match="points_per_image"):
        FractalConfig(points_per_image=100)
    with pytest.raises(ValueError, match="jitter"):
        FractalConfig(jitter=0.2)


# ---------------------------------------------------------------------------- local image sets


def _cifar_dir(root: Path) -> np.ndarray:
    """Two train batches (6 + 4 images) and a test batch (3) in CIFAR-10's pickle format."""
    root.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (13, 3072), dtype=np.uint8)
    for name, rows in (
        ("data_batch_1", slice(0, 6)),
        ("data_batch_2", slice(6, 10)),
        ("test_batch", slice(10, 13)),
    ):
        labels = [int(i % 10) for i in range(rows.start, rows.stop)]
        with (root / name).open("wb") as f:
            pickle.dump({b"data": data[rows], b"labels": labels, b"batch_label": b"x"}, f)
    return data


def test_cifar_pickles_one_pass(tmp_path):
    data = _cifar_dir(tmp_path / "cifar-10-batches-py")
    source = make_source("vit", dataset=str(tmp_path / "cifar-10-batches-py"), seed=1)
    assert source.max_examples == 10 and source.num_classes == 10
    seen = [source.train_batch(step, 2) for step in range(5)]
    images = np.concatenate([b["image"] for b in seen])
    labels = np.concatenate([b["label"] for b in seen])
    assert images.dtype == np.float32 and labels.dtype == np.int32
    # channel-major rows -> HWC images; every training image exactly once
    originals = data[:10].reshape(10, 3, 32, 32).transpose(0, 2, 3, 1) / 255
    order = [int(np.argmin(np.abs(originals - im).sum((1, 2, 3)))) for im in images]
    assert sorted(order) == list(range(10))
    np.testing.assert_allclose(images, originals[order], atol=1e-7)
    assert labels.tolist() == [i % 10 for i in order]
    assert source.eval_set()["image"].shape == (3, 32, 32, 3)
    with pytest.raises(ValueError, match="data"):
        source.train_batch(5, 2)
    with pytest.raises(ValueError, match="data"):
        check_units(source, 11, 1)


class _WritesMarker:
    """Unpickled, it calls exec: what a crafted data_batch file does to pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_every_protocol_load(tmp_path, protocol):
    data = _cifar_dir(tmp_path / "c")
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        path = tmp_path / "c" / name
        path.write_bytes(pickle.dumps(pickle.loads(path.read_bytes()), protocol=protocol))
    (x, _), (x_eval, y_eval) = load_arrays(tmp_path / "c")
    assert x.shape == (10, 32, 32, 3) and y_eval.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(x_eval, data[10:].reshape(3, 3, 32, 32).transpose(0, 2, 3, 1))


def test_a_cifar_batch_that_would_run_code_is_refused_unread_through_the_cli(tmp_path, capsys):
    from sparsekit.__main__ import main

    _cifar_dir(tmp_path / "c")
    marker, batch = tmp_path / "marker", tmp_path / "c" / "data_batch_2"
    batch.write_bytes(pickle.dumps({b"data": _WritesMarker(marker), b"labels": [0]}))
    code = main(["train", "--family", "vit", "--width", "8", "--data", "4", "--batch", "2",
                 "--eval-examples", "2", "--set", f"data.options={{dataset: {tmp_path / 'c'}}}"])
    out, err = capsys.readouterr()
    assert not marker.exists()  # nothing ran
    assert code == 2 and out == "" and err == (
        f"sparsekit train: error: data: {batch} is refused, not a CIFAR-10 python batch: it "
        "names builtins.exec; one holds only dicts, lists, bytes, text, numbers and numpy "
        "arrays (unpickling anything else could run code)\n")
    batch.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="data_batch_2 is not a CIFAR-10 python batch"):
        load_arrays(tmp_path / "c")


def test_npz_split_by_hash(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (400, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 5, 400)
    np.savez(tmp_path / "set.npz", x=x, y=y)
    source = make_source("vit", dataset=str(tmp_path / "set.npz"))
    held = np.array([is_validation(im.tobytes()) for im in x])
    assert 0 < held.sum() < 60 and source.max_examples == 400 - held.sum()
    np.testing.assert_array_equal(source.eval_set()["label"], y[held])
    assert json.loads(json.dumps(source.describe()))["eval_examples"] == held.sum()
    first = make_source("vit", dataset=str(tmp_path / "set.npz"), eval_examples=3).eval_set()
    np.testing.assert_array_equal(first["label"], y[held][:3])
    with pytest.raises(ValueError, match="data"):
        make_source("vit", dataset=str(tmp_path / "set.npz"), eval_examples=400)
    with pytest.raises(ValueError, match="data"):
        make_source("vit", dataset=str(tmp_path / "missing.npy"))


def test_make_source_rejects_unknown_family():
    with pytest.raises(ValueError, match="family"):
        make_source("bert")
