"""The pinned corpus: the Python source of the locked environment and the standard library.

`corpus: "pinned"` (a T5 data option, next to "stdlib") is every `.py` file that the wheels of
the packages uv.lock pins put into site-packages, together with those of the interpreter's
standard library: about 190 MB, offline, and the same bytes on every machine that `make env`
set up. The committed manifest (`manifests/pinned.json.gz`: name, size, sha256 and package of
every file) pins it. Which files:
- site-packages: the `.py` files that a locked package's RECORD lists with a hash, i.e. the
  wheel's own bytes. Not those written at install time (RECORD lists them without a hash:
  `direct_url.json`, scripts), nor packages the lock does not pin from a registry (the
  editable sparsekit, the pip a venv is made with).
- stdlib: every `.py` file but site-packages and the two that name the interpreter's install
  paths (`_sysconfigdata_*.py` and `config-*/`), as in CPython's sources.
- never a file holding the separator byte (none do today).

`build` reads every file the manifest lists and refuses (`CorpusMismatchError`), naming the
first one that is missing or differs and how to get the right one, when any does not match.
The corpus it makes (see `corpus.assemble` for the streams and the fingerprint):
- documents are the files in the order of the sha256 of their manifest names: a fixed shuffle
  across packages, so a long run never moves from one kind of code to another halfway;
- a document's split key is the sha256 of its content with every run of whitespace as one
  space, so the same file vendored twice (identical, or the same but for whitespace) is on
  one side of the split; only its first copy in that order is kept (a second copy would
  repeat training data);
- it is cached on disk, keyed by the manifest's digest and BUILDER: `<cache>/pinned-.../`
  holds `train.npy` and `val.npy` (memory-mapped read-only when loaded: sweep workers share
  the pages) and `corpus.json`; written atomically (a temp folder renamed into place) and
  checked against its fingerprint when loaded. Building takes seconds; loading under one.

`write_manifest` writes the manifest from the running environment (deterministic bytes):
`.venv/bin/python scripts/pinned_manifest.py` after a change to uv.lock.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sysconfig
import tempfile
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sparsekit.data.corpus import PINNED, SEPARATOR, Corpus, assemble, stream_fingerprint
from sparsekit.provenance import LOCK, REPO, package_name

MANIFEST = Path(__file__).parent / "manifests" / f"{PINNED}.json.gz"
FORMAT = 1  # manifest format
BUILDER = "v1"  # the build rules above; bump when they change (a new cache folder)
SITE, STDLIB_ROOT = "site-packages", "stdlib"  # the roots a manifest name starts with
PYTHON_PACKAGE = "python"  # the package named for a stdlib file
CACHE_ENV = "SPARSEKIT_CACHE"  # overrides the cache folder (default: <checkout>/.cache)
_STDLIB_SKIPPED_DIRS = ("site-packages", "dist-packages")


class CorpusMismatchError(ValueError):
    """A file of a manifest is missing or differs from it (the message names it)."""


def default_roots() -> dict[str, Path]:
    """The running interpreter's site-packages and standard library, by manifest root."""
    paths = sysconfig.get_paths()
    return {SITE: Path(paths["purelib"]), STDLIB_ROOT: Path(paths["stdlib"])}


def cache_folder() -> Path:
    """Where built corpora are cached: $SPARSEKIT_CACHE/corpus, else the checkout's
    `.cache/corpus` (git-ignored), else ~/.cache/sparsekit/corpus outside a checkout."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "corpus"
    if (REPO / "pyproject.toml").is_file():
        return REPO / ".cache" / "corpus"
    return Path.home() / ".cache" / "sparsekit" / "corpus"


# --- the manifest ---------------------------------------------------------------------------


def locked_packages(lock: str | os.PathLike = LOCK) -> dict[str, set[str]]:
    """Normalised name -> versions that `lock` (a uv.lock) pins from a package registry."""
    pinned: dict[str, set[str]] = {}
    for package in tomllib.loads(Path(lock).read_text())["package"]:
        if "registry" in package.get("source", {}):
            pinned.setdefault(package_name(package["name"]), set()).add(package["version"])
    return pinned


def environment_files(roots: Mapping[str, Path] | None = None,
                      lock: str | os.PathLike = LOCK) -> list[tuple[str, Path, str, str]]:
    """(manifest name, path, package, its version) of every file of the pinned corpus in an environment
    (see the module docstring), sorted by name. `roots`: default `default_roots()`."""
    roots = default_roots() if roots is None else roots
    site, stdlib = Path(roots[SITE]).resolve(), Path(roots[STDLIB_ROOT]).resolve()
    pinned = locked_packages(lock)
    files: dict[str, tuple[Path, str, str]] = {}
    for dist in importlib.metadata.distributions(path=[str(site)]):
        name = package_name(dist.metadata["Name"])
        if dist.version not in pinned.get(name, ()):
            continue
        for record in dist.files or ():
            path = Path(os.path.normpath(site / record))
            if record.suffix == ".py" and record.hash is not None and path.is_relative_to(site):
                files[f"{SITE}/{path.relative_to(site).as_posix()}"] = (path, name, dist.version)
    for folder, subdirs, names in os.walk(stdlib):
        subdirs[:] = sorted(d for d in subdirs
                            if d not in _STDLIB_SKIPPED_DIRS and not d.startswith("config-"))
        for file in names:
            if file.endswith(".py") and not file.startswith("_sysconfigdata_"):
                path = Path(folder) / file
                files[f"{STDLIB_ROOT}/{path.relative_to(stdlib).as_posix()}"] = (
                    path, PYTHON_PACKAGE, platform.python_version())
    return [(name, *files[name]) for name in sorted(files)]


def manifest_of(roots: Mapping[str, Path] | None = None,
                lock: str | os.PathLike = LOCK) -> dict:
    """The manifest of the pinned corpus in an environment: the interpreter and platform it
    was written with, every package's version, and [name, size, sha256, package] per file."""
    files, packages = [], {PYTHON_PACKAGE: platform.python_version()}
    for name, path, package, version in environment_files(roots, lock):
        data = path.read_bytes()
        if SEPARATOR in data:
            continue  # it would split into two documents
        files.append([name, len(data), hashlib.sha256(data).hexdigest(), package])
        packages[package] = version
    return {"name": PINNED, "format": FORMAT, "platform": sysconfig.get_platform(),
            "packages": dict(sorted(packages.items())), "files": files}


def manifest_bytes(manifest: dict) -> bytes:
    """A manifest as gzip-compressed JSON, the same bytes for the same manifest."""
    text = json.dumps(manifest, sort_keys=True, indent=0).encode()
    return gzip.compress(text, compresslevel=9, mtime=0)


def write_manifest(path: str | os.PathLike = MANIFEST, manifest: dict | None = None) -> dict:
    """Write `manifest` (default: `manifest_of()` the running environment) to `path`,
    atomically; returns it."""
    manifest = manifest_of() if manifest is None else manifest
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(manifest_bytes(manifest))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def read_manifest(path: str | os.PathLike = MANIFEST) -> dict:
    """A manifest written by `write_manifest`; ValueError naming the file if it is not one."""
    try:
        manifest = json.loads(gzip.decompress(Path(path).read_bytes()))
    except (OSError, EOFError, ValueError) as e:
        raise ValueError(f"data: corpus manifest {path} is not a gzip JSON manifest: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not all(
            isinstance(f, list) and len(f) == 4 for f in manifest.get("files", [None])):
        raise ValueError(f"data: corpus manifest {path} is not a format-{FORMAT} manifest")
    return manifest


def manifest_digest(manifest: dict) -> str:
    """sha256 hex of a manifest's file list: what its corpus is made of."""
    return hashlib.sha256(json.dumps(manifest["files"], separators=(",", ":")).encode()).hexdigest()


# --- the corpus -----------------------------------------------------------------------------


def split_key(content: bytes) -> bytes:
    """A document's split key: the sha256 of its content with whitespace runs as one space."""
    return hashlib.sha256(b" ".join(content.split())).digest()


def document_order(names: list[str]) -> list[int]:
    """Indices of `names` in the order of sha256 of each name (a fixed shuffle)."""
    return sorted(range(len(names)), key=lambda i: hashlib.sha256(names[i].encode()).digest())


def _mismatch(manifest: dict, source: Path, name: str, package: str, problem: str) -> str:
    here = f"Python {platform.python_version()} on {sysconfig.get_platform()}"
    written = f"Python {manifest['packages'].get(PYTHON_PACKAGE)} on {manifest.get('platform')}"
    if package == PYTHON_PACKAGE:
        fix = (f"the standard library is the interpreter's: make the environment with the "
               f"manifest's CPython ({written}; this is {here}): `rm -rf .venv && make env "
               f"PYTHON=<that python3>`")
    else:
        fix = (f"`make env` installs exactly the versions uv.lock pins (here {package} "
               f"{manifest['packages'].get(package)}; manifest written with {written}, this is "
               f"{here})")
    return (f"data: corpus {manifest['name']!r}: {name} {problem} (manifest {source}); it is "
            f"made of the files of the locked environment: {fix}; after a change to uv.lock, "
            f"rewrite the manifest: scripts/pinned_manifest.py")


def _read_checked(manifest: dict, source: Path, roots: Mapping[str, Path]):
    """(name, content) of every manifest file in document order; CorpusMismatchError on the
    first one that is missing or differs."""
    files = manifest["files"]
    for i in document_order([f[0] for f in files]):
        name, size, sha256, package = files[i]
        root, _, relative = name.partition("/")
        if root not in roots:
            raise CorpusMismatchError(f"data: corpus manifest {source}: {name} is under no "
                                      f"known root ({', '.join(roots)})")
        try:
            content = (Path(roots[root]) / relative).read_bytes()
        except FileNotFoundError:
            raise CorpusMismatchError(_mismatch(manifest, source, name, package, "is missing")
                                      ) from None
        if len(content) != size or hashlib.sha256(content).hexdigest() != sha256:
            problem = (f"differs ({len(content):,} bytes, the manifest's {size:,}"
                       f"{'' if len(content) != size else ' with another sha256'})")
            raise CorpusMismatchError(_mismatch(manifest, source, name, package, problem))
        if SEPARATOR in content:
            raise CorpusMismatchError(f"data: corpus manifest {source}: {name} holds the "
                                      "separator byte; the manifest was not written by "
                                      "write_manifest")
        yield name, content


def assemble_manifest(manifest: dict, source: Path,
                      roots: Mapping[str, Path]) -> tuple[Corpus, list[str]]:
    """The corpus of a manifest from the files under `roots` (checked; not cached), and the
    names of the files it holds, in its order."""
    names, documents, seen = [], [], set()
    for name, content in _read_checked(manifest, source, roots):
        key = split_key(content)
        if key in seen:
            continue  # a copy (up to whitespace) of a file already taken
        seen.add(key)
        names.append(name)
        documents.append((key, content))
    corpus = assemble(manifest["name"], names, documents)
    return dataclasses.replace(corpus, manifest=manifest_digest(manifest)), names


def _cache_path(cache: Path, manifest: dict) -> Path:
    return cache / f"{manifest['name']}-{BUILDER}-{manifest_digest(manifest)[:20]}"


def _save(folder: Path, corpus: Corpus, names: list[str]) -> None:
    """Write a corpus to `folder` atomically (a temp folder beside it, renamed into place;
    a folder another process finished first is kept)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        np.save(tmp / "train.npy", corpus.train)
        np.save(tmp / "val.npy", corpus.val)
        meta = {**corpus.describe(), "names": names}
        (tmp / "corpus.json").write_text(json.dumps(meta))
        for file in tmp.iterdir():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "corpus.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(folder: Path, manifest: dict) -> Corpus:
    """A cached corpus, memory-mapped read-only; ValueError if it is not the one it says."""
    meta = json.loads((folder / "corpus.json").read_text())
    train, val = (np.asarray(np.load(folder / f"{side}.npy", mmap_mode="r"))
                  for side in ("train", "val"))
    fingerprint = stream_fingerprint(meta["names"], (train, val))
    if fingerprint != meta["fingerprint"] or meta["manifest"] != manifest_digest(manifest):
        raise ValueError(f"cached corpus {folder} does not match its fingerprint")
    return Corpus(meta["name"], meta["files"], (meta["documents_train"], meta["documents_val"]),
                  train, val, fingerprint, meta["manifest"])


def build(manifest_path: str | os.PathLike = MANIFEST, roots: Mapping[str, Path] | None = None,
          cache: str | os.PathLike | None = None) -> Corpus:
    """The corpus of a manifest: from `cache` (a folder, None for no cache) when built there
    before, else from the files under `roots` (default `default_roots()`), each checked
    against the manifest (CorpusMismatchError naming the first that is missing or differs),
    then cached. A damaged cache is built again, with a warning."""
    source = Path(manifest_path)
    manifest = read_manifest(source)
    folder = None if cache is None else _cache_path(Path(cache), manifest)
    if folder is not None and (folder / "corpus.json").is_file():
        try:
            return _load(folder, manifest)
        except (OSError, ValueError, KeyError) as e:
            warnings.warn(f"data: {e}; building it again", stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
    corpus, names = assemble_manifest(manifest, source,
                                      default_roots() if roots is None else roots)
    if folder is None:
        return corpus
    _save(folder, corpus, names)
    return _load(folder, manifest)


@functools.cache
def pinned_corpus() -> Corpus:
    """The pinned corpus of the committed manifest, cached in `cache_folder()`."""
    return build(MANIFEST, cache=cache_folder())
