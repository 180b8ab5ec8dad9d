"""Byte corpora: the interpreter's standard library, the pinned corpus, or local text files.

A corpus is two uint8 byte streams (train, validation) of documents in a fixed order joined by
SEPARATOR. A document is held out for validation when sha256(its split key) starts with a byte
below VAL_THRESHOLD (13/256, about 5%). The key is the relative path for the standard library
(a file never straddles the split) and the document's own bytes for local corpora (duplicate
documents land on the same side). "pinned" is the Python source of the locked environment and
the standard library, checked against a committed manifest (`sparsekit.data.pinned`).

Local corpora: a file or a directory (searched recursively, sorted relative POSIX paths) of
- `.txt`: one document per non-empty line (the WikiText / BookCorpus dump convention);
- `.json` / `.jsonl`: one JSON object per line with a "text" field (C4's format; other
  fields such as "url" and "timestamp" are ignored);
each optionally gzip-compressed (`.json.gz` as C4 ships).
"""

import functools
import gzip
import hashlib
import json
import os
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEPARATOR = b"\x00"  # never occurs in the stdlib sources nor in UTF-8 text: an unambiguous boundary
VAL_THRESHOLD = 13  # first sha256 byte below this -> validation (13/256 = 5.1%)
STDLIB = "stdlib"
PINNED = "pinned"  # sparsekit.data.pinned
_TEXT_SUFFIXES = (".txt", ".json", ".jsonl")
_SKIPPED_DIRS = ("site-packages", "dist-packages")  # installed packages are not the stdlib


@dataclass(frozen=True, eq=False)
class Corpus:
    """Train and validation byte streams of one corpus."""

    name: str  # "stdlib" or the resolved local path
    files: int  # source files read
    documents: tuple[int, int]  # (train, validation) document counts
    train: np.ndarray  # uint8 [train bytes]
    val: np.ndarray  # uint8 [validation bytes]
    fingerprint: str  # sha256 hex of the file list and both streams
    manifest: str | None = None  # sha256 hex of the manifest's file list (pinned corpora)

    def describe(self) -> dict:
        """JSON-able summary (sizes in bytes)."""
        return {
            "name": self.name,
            "files": self.files,
            "documents_train": self.documents[0],
            "documents_val": self.documents[1],
            "bytes_train": int(self.train.size),
            "bytes_val": int(self.val.size),
            "fingerprint": self.fingerprint,
            **({"manifest": self.manifest} if self.manifest else {}),
        }


def is_validation(key: bytes) -> bool:
    """Whether the document with this split key is held out (about 5% of keys)."""
    return hashlib.sha256(key).digest()[0] < VAL_THRESHOLD


def assemble(name: str, file_names: list[str], documents: Iterable[tuple[bytes, bytes]]) -> Corpus:
    """Split (key, content) documents by key hash and join each side with SEPARATOR."""
    sides: tuple[list[bytes], list[bytes]] = ([], [])
    for key, content in documents:
        sides[is_validation(key)].append(content)
    if not sides[0] or not sides[1]:
        raise ValueError(
            f"data: corpus {name!r} needs documents on both sides of the split, got "
            f"{len(sides[0])} train / {len(sides[1])} validation"
        )
    streams = [np.frombuffer(SEPARATOR.join(side), np.uint8) for side in sides]
    counts = (len(sides[0]), len(sides[1]))
    return Corpus(name, len(file_names), counts, streams[0], streams[1],
                  stream_fingerprint(file_names, streams))


def stream_fingerprint(file_names: list[str], streams: Iterable[np.ndarray]) -> str:
    """sha256 hex of a corpus: its file names (JSON) and its streams, each length-prefixed so
    the boundary between them is unambiguous."""
    digest = hashlib.sha256(json.dumps(file_names).encode())
    for stream in streams:
        digest.update(stream.size.to_bytes(8, "little"))
        digest.update(np.ascontiguousarray(stream).data)
    return digest.hexdigest()


@functools.cache
def stdlib_corpus() -> Corpus:
    """All `*.py` files of the running interpreter's standard library (about 30 MB, 0.3 s)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    names = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in _SKIPPED_DIRS]
        names += [
            (Path(folder) / f).relative_to(root).as_posix() for f in files if f.endswith(".py")
        ]
    names.sort()
    return assemble(STDLIB, names, ((n.encode(), (root / n).read_bytes()) for n in names))


def _is_text_file(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return path.is_file() and name.endswith(_TEXT_SUFFIXES)


def _documents(path: Path) -> Iterator[bytes]:
    """UTF-8 documents of one local file (format by suffix, see the module docstring)."""
    opener = gzip.open if path.suffix == ".gz" else open
    is_txt = path.name.removesuffix(".gz").endswith(".txt")
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if is_txt:
                yield line.rstrip("\r\n").encode()
                continue
            try:
                yield json.loads(line)["text"].encode()
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise ValueError(
                    f"data: {path}:{number} is not a JSON object with a string 'text' field"
                ) from error


@functools.cache
def _local_corpus(root: Path, signature: tuple[tuple[str, int, int], ...]) -> Corpus:
    names = [name for name, _, _ in signature]
    paths = [root / n for n in names] if root.is_dir() else [root]
    docs = (doc for path in paths for doc in _documents(path))
    return assemble(str(root), names, ((doc, doc) for doc in docs))


def local_corpus(path: str | os.PathLike) -> Corpus:
    """A local text corpus: a `.txt` / `.json[l]` (optionally `.gz`) file or a directory of them.

    Cached in-process by the files' paths, sizes and modification times, so an edited corpus
    is read again.
    """
    root = Path(path).resolve()
    if root.is_dir():
        paths = sorted((p for p in root.rglob("*") if _is_text_file(p)), key=Path.as_posix)
    elif _is_text_file(root):
        paths = [root]
    else:
        raise ValueError(f"data: {path!s} is not a .txt/.json/.jsonl(.gz) file or a directory")
    if not paths:
        raise ValueError(f"data: no .txt/.json/.jsonl(.gz) files under {path!s}")
    stats = [(p, p.stat()) for p in paths]
    base = root if root.is_dir() else root.parent
    signature = tuple((p.relative_to(base).as_posix(), s.st_size, s.st_mtime_ns) for p, s in stats)
    return _local_corpus(root, signature)


def load_corpus(spec: str | os.PathLike) -> Corpus:
    """The standard library for "stdlib", the pinned corpus for "pinned"
    (`sparsekit.data.pinned`), else a local corpus (see `local_corpus`)."""
    if str(spec) == PINNED:
        from sparsekit.data.pinned import pinned_corpus  # it imports this module

        return pinned_corpus()
    return stdlib_corpus() if str(spec) == STDLIB else local_corpus(spec)


CORPUS_COLUMN = "data.corpus_stats.fingerprint"  # a store table's column naming a run's corpus


def check_one_corpus(frame: Any, what: str = "these runs") -> None:
    """Refuse a store table (`sparsekit.store.table`) whose runs were trained on more than
    one corpus, so a fit never mixes corpora: ValueError naming each corpus (its name and
    fingerprint) and its run count. Runs without a corpus (ViT, or runs that produced
    nothing) are not counted."""
    if CORPUS_COLUMN not in frame:
        return
    rows = frame[frame[CORPUS_COLUMN].notna()]
    names = rows.get("data.corpus_stats.name", rows[CORPUS_COLUMN])
    counts = rows.groupby([names, rows[CORPUS_COLUMN]]).size()
    if len(counts) > 1:
        listed = "; ".join(f"{n} run{'s' * (n != 1)} on {name!r} ({fp[:12]})"
                           for (name, fp), n in counts.items())
        raise ValueError(f"{what} mix corpora: {listed}; fit the runs of one corpus (filter "
                         f"on {CORPUS_COLUMN})")
