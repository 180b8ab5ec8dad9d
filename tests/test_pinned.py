"""The pinned corpus (sparsekit.data.pinned), on a tiny environment made in a temp folder; the
committed manifest is only read, never built (the suite never needs the large corpus)."""

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from sparsekit.data import make_source
from sparsekit.data import pinned as pinned_module
from sparsekit.data.corpus import (
    CORPUS_COLUMN,
    SEPARATOR,
    check_one_corpus,
    is_validation,
)
from sparsekit.data.pinned import (
    MANIFEST,
    SITE,
    STDLIB_ROOT,
    CorpusMismatchError,
    build,
    document_order,
    environment_files,
    manifest_bytes,
    manifest_of,
    read_manifest,
    split_key,
    write_manifest,
)
from sparsekit.provenance import Lock

VENDORED = b"def six():\n    return 6\n"  # one file vendored by a package and in the stdlib
LOCK_TEXT = """version = 1
[[package]]
name = "Pkg_A"
version = "1.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "editable-b"
version = "2.0"
source = { editable = "." }
"""


def write_dist(site: Path, name: str, version: str, files: dict[str, bytes],
               unhashed: tuple[str, ...] = ()) -> None:
    """An installed distribution: its files and a dist-info whose RECORD lists them (with a
    hash, except `unhashed`, as an installer lists the files it writes itself)."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    rows = []
    for relative, content in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_bytes(content)
        digest = "" if relative in unhashed else "sha256=x"
        rows.append(f"{relative},{digest},{len(content) if digest else ''}")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


@pytest.fixture
def env(tmp_path):
    """A tiny environment: roots, a uv.lock, and the manifest written from them."""
    site, stdlib = tmp_path / "site-packages", tmp_path / "stdlib"
    write_dist(site, "pkg-a", "1.0", {
        "pkg_a/__init__.py": b"",
        "pkg_a/core.py": b"import os\n" * 40,
        "pkg_a/_vendor/six.py": VENDORED,
        "pkg_a/data.json": b"{}",  # not Python
        "pkg_a/_generated.py": b"PATH = '/somewhere/on/this/machine'\n",  # no hash in RECORD
        "pkg_a/nul.py": b"x = 1\x00\n",  # holds the separator
    }, unhashed=("pkg_a/_generated.py",))
    write_dist(site, "editable_b", "2.0", {"editable_b/x.py": b"print(1)\n"})
    write_dist(site, "unlocked", "0.1", {"unlocked/y.py": b"print(2)\n"})
    for i in range(120):
        (stdlib / f"mod{i:03d}.py").parent.mkdir(parents=True, exist_ok=True)
        (stdlib / f"mod{i:03d}.py").write_bytes(f"# module {i}\nvalue = {i * i}\n".encode() * 3)
    (stdlib / "email").mkdir()
    (stdlib / "email" / "six.py").write_bytes(VENDORED.replace(b"    ", b"\t") + b"  \r\n")
    (stdlib / "_sysconfigdata__linux.py").write_text("build_time_vars = {}\n")
    (stdlib / "config-3.11-x86_64-linux-gnu").mkdir()
    (stdlib / "config-3.11-x86_64-linux-gnu" / "python-config.py").write_text("prefix = '/x'\n")
    (stdlib / "site-packages").mkdir()
    (stdlib / "site-packages" / "z.py").write_text("z = 0\n")
    lock = tmp_path / "uv.lock"
    lock.write_text(LOCK_TEXT)
    roots = {SITE: site, STDLIB_ROOT: stdlib}
    manifest = write_manifest(tmp_path / "manifest.json.gz", manifest_of(roots, lock))
    return roots, lock, tmp_path / "manifest.json.gz", manifest


def test_the_manifest_lists_the_locked_wheels_files_and_the_stdlib(env):
    roots, lock, path, manifest = env
    names = [f[0] for f in manifest["files"]]
    site = [n for n in names if n.startswith(f"{SITE}/")]
    assert site == ["site-packages/pkg_a/__init__.py", "site-packages/pkg_a/_vendor/six.py",
                    "site-packages/pkg_a/core.py"]  # no unlocked/editable/unhashed/NUL file
    stdlib = [n for n in names if n.startswith(f"{STDLIB_ROOT}/")]
    assert len(stdlib) == 121 and "stdlib/email/six.py" in stdlib
    assert not [n for n in stdlib if "sysconfigdata" in n or "config-" in n or "site-" in n]
    assert names == sorted(names)
    assert manifest["packages"]["pkg-a"] == "1.0" and "python" in manifest["packages"]
    _, size, sha256, package = manifest["files"][names.index("stdlib/email/six.py")]
    content = (roots[STDLIB_ROOT] / "email" / "six.py").read_bytes()
    assert (size, sha256, package) == (len(content), hashlib.sha256(content).hexdigest(),
                                       "python")
    assert read_manifest(path) == manifest
    listed = [name for name, *_ in environment_files(roots, lock)]
    assert set(listed) - set(names) == {"site-packages/pkg_a/nul.py"}  # the separator byte


def test_writing_the_manifest_twice_gives_the_same_bytes(env, tmp_path):
    roots, lock, path, manifest = env
    again = write_manifest(tmp_path / "again.json.gz", manifest_of(roots, lock))
    assert again == manifest
    assert (tmp_path / "again.json.gz").read_bytes() == path.read_bytes()
    assert manifest_bytes(manifest) == path.read_bytes()


def expected_streams(roots, manifest) -> tuple[bytes, bytes, int]:
    """The corpus the module docstring describes, computed here the plain way."""
    names = [f[0] for f in manifest["files"]]
    order = sorted(names, key=lambda n: hashlib.sha256(n.encode()).digest())
    sides, seen = ([], []), set()
    for name in order:
        root, _, relative = name.partition("/")
        content = (roots[root] / relative).read_bytes()
        key = hashlib.sha256(b" ".join(content.split())).digest()
        if key not in seen:
            seen.add(key)
            sides[is_validation(key)].append(content)
    return SEPARATOR.join(sides[0]), SEPARATOR.join(sides[1]), len(seen)


def test_documents_are_shuffled_split_by_content_and_copies_kept_once(env):
    roots, _, path, manifest = env
    corpus = build(path, roots)
    train, val, kept = expected_streams(roots, manifest)
    assert corpus.train.tobytes() == train and corpus.val.tobytes() == val
    assert corpus.documents[1] > 0
    # the vendored file and its whitespace variant (tabs, trailing spaces, CRLF): one document
    assert kept == corpus.files == len(manifest["files"]) - 1
    assert split_key(VENDORED) == split_key(VENDORED.replace(b"    ", b"\t") + b"  \r\n")
    copies = [d for d in (train + SEPARATOR + val).split(SEPARATOR)
              if split_key(d) == split_key(VENDORED)]
    assert len(copies) == 1
    # the order is a fixed shuffle: not the sorted names, the same on every call
    names = [f[0] for f in manifest["files"]]
    assert document_order(names) == document_order(list(names))
    assert document_order(names) != sorted(range(len(names)), key=names.__getitem__)


def test_the_fingerprint_is_stable_and_the_cache_gives_the_same_corpus(env, tmp_path):
    roots, _, path, manifest = env
    plain = build(path, roots)
    first = build(path, roots, cache=tmp_path / "cache")
    (folder,) = (tmp_path / "cache").iterdir()
    (roots[SITE] / "pkg_a" / "core.py").write_text("changed")  # the cache no longer reads it
    cached = build(path, roots, cache=tmp_path / "cache")
    for corpus in (first, cached):
        assert corpus.fingerprint == plain.fingerprint
        assert corpus.describe() == plain.describe()
        assert np.array_equal(corpus.train, plain.train) and np.array_equal(corpus.val, plain.val)
        assert not corpus.train.flags.writeable
    assert plain.describe()["manifest"] == hashlib.sha256(json.dumps(
        manifest["files"], separators=(",", ":")).encode()).hexdigest()
    # a damaged cache is not used: built again (here refused, since a file changed meanwhile)
    with open(folder / "train.npy", "r+b") as f:
        f.seek(-1, 2)
        f.write(b"#")
    with pytest.warns(UserWarning, match="does not match its fingerprint"), pytest.raises(
            CorpusMismatchError, match=r"pkg_a/core\.py differs"):
        build(path, roots, cache=tmp_path / "cache")


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(p.read_bytes() + b"# more\n"), "differs"),
    (lambda p: p.write_bytes(p.read_bytes().replace(b"1", b"2")), "another sha256"),
    (lambda p: p.unlink(), "is missing"),
])
def test_a_file_that_differs_from_the_manifest_is_refused_by_name(env, damage, problem):
    roots, _, path, _ = env
    damage(roots[STDLIB_ROOT] / "mod017.py")
    with pytest.raises(CorpusMismatchError, match=problem) as error:
        build(path, roots)
    assert "stdlib/mod017.py" in str(error.value) and "make env" in str(error.value)


def test_a_package_file_that_differs_names_the_package_and_make_env(env):
    roots, _, path, _ = env
    (roots[SITE] / "pkg_a" / "core.py").write_text("import sys\n")
    with pytest.raises(CorpusMismatchError, match=r"site-packages/pkg_a/core.py differs .*"
                       r"`make env` installs exactly the versions uv.lock pins \(here pkg-a 1.0"):
        build(path, roots)


def test_a_manifest_that_is_not_one_is_refused(tmp_path):
    (tmp_path / "m.json.gz").write_bytes(gzip.compress(b'{"format": 1, "files": [[1]]}'))
    (tmp_path / "n.json.gz").write_bytes(b"not gzip")
    for name in ("m", "n"):
        with pytest.raises(ValueError, match=f"{name}.json.gz"):
            read_manifest(tmp_path / f"{name}.json.gz")


def test_the_t5_source_reads_the_pinned_corpus_by_name(env, monkeypatch):
    roots, _, path, _ = env
    monkeypatch.setattr(pinned_module, "pinned_corpus", lambda: build(path, roots))
    source = make_source("t5", corpus="pinned", input_length=16, eval_examples=2)
    stats = source.describe()["corpus_stats"]
    assert stats["manifest"] and stats["fingerprint"] == build(path, roots).fingerprint
    assert source.describe()["corpus"] == "pinned"
    assert "manifest" not in make_source("t5", input_length=16).describe()["corpus_stats"]


def test_the_committed_manifest_pins_the_locked_versions_and_150m_bytes():
    manifest = read_manifest(MANIFEST)
    assert MANIFEST.stat().st_size < 2_000_000
    assert sum(f[1] for f in manifest["files"]) >= 150_000_000
    lock = Lock.read()
    stale = {name: version for name, version in manifest["packages"].items()
             if name != "python" and version not in lock.packages.get(name, ())}
    assert not stale, f"uv.lock changed: rewrite the manifest (scripts/pinned_manifest.py) {stale}"


def test_a_table_mixing_corpora_is_refused():
    import pandas as pd

    one = pd.DataFrame({CORPUS_COLUMN: ["a" * 64, "a" * 64, None],
                        "data.corpus_stats.name": ["stdlib", "stdlib", None]})
    check_one_corpus(one)
    check_one_corpus(pd.DataFrame({"loss": [1.0]}))  # no corpus (ViT)
    mixed = pd.concat([one, pd.DataFrame({CORPUS_COLUMN: ["b" * 64],
                                          "data.corpus_stats.name": ["pinned"]})])
    with pytest.raises(ValueError, match=r"the fit mix corpora: 1 run on 'pinned' \(bbbbbbbbbbbb"
                       r"\); 2 runs on 'stdlib' \(aaaaaaaaaaaa\)"):
        check_one_corpus(mixed, "the fit")


def test_the_chapters_runs_never_mix_corpora():
    import pandas as pd

    from sparsekit.analysis.runs import runs_from_table

    rows = pd.DataFrame({"status": "ok", "family": "t5", "unit": "tokens", "loss": [1.5, 1.4],
                         CORPUS_COLUMN: ["a" * 64, "b" * 64],
                         "data.corpus_stats.name": ["stdlib", "pinned"]})
    with pytest.raises(ValueError, match=r"store X mix corpora: 1 run on 'pinned'"):
        runs_from_table(rows, source="store X")
    assert len(runs_from_table(rows.iloc[:1], source="store X")) == 1
