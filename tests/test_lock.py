"""The pinned environment: uv.lock pins what the stored runs used, the Makefile's check catches a
lock that no longer matches pyproject.toml, and a result records the lock it ran under."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import jax
import pytest

from sparsekit.provenance import LOCK, REPO, Lock, environment, installed_versions
from sparsekit.store import Store

LOCKED = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "orbax-checkpoint", "papermill",
          "jupyter-book", "plotly", "dask")  # pinned with one exact version each
LOCK_FILES = ("pyproject.toml", "uv.lock", "requirements-lock.txt")  # what `make lock-check` reads


def test_the_lock_pins_each_key_package_to_one_version() -> None:
    lock = Lock.read()
    assert all(len(lock.packages[name]) == 1 for name in LOCKED), {n: lock.packages.get(n)
                                                                   for n in LOCKED}


def test_the_locked_versions_are_those_of_the_committed_runs() -> None:
    lock = Lock.read()
    results = [r for store in sorted(REPO.glob("results/*/runs"))
               for r in Store(store.parent).results()]
    recorded = {json.dumps(r.versions, sort_keys=True) for r in results if r.versions}
    assert len(results) > 100 and recorded  # the committed stores (failed runs: no versions)
    for text in recorded:
        versions = json.loads(text)
        for name in ("jax", "flax", "optax", "numpy", "sparsekit"):
            assert lock.packages[name] == (versions[name],), (name, versions)
        assert versions["python"].startswith("3.11.")
    # ... and the lock is made for that Python only (pyproject's [tool.uv] environments)
    environments = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]
    assert all("python_version == '3.11'" in e for e in environments["environments"])


def test_lock_read_and_drift_by_hand(tmp_path) -> None:
    path = tmp_path / "uv.lock"
    path.write_text('version = 1\n\n[[package]]\nname = "jax"\nversion = "0.10.2"\n\n'
                    '[[package]]\nname = "Soup_Sieve"\nversion = "2.10"\n\n'
                    '[[package]]\nname = "soupsieve"\nversion = "4.1.3"\n')
    lock = Lock.read(path)
    assert lock.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert dict(lock.packages) == {"jax": ("0.10.2",), "soup-sieve": ("2.10",),
                                   "soupsieve": ("4.1.3",)}
    assert lock.drift({"jax": "0.10.2", "soupsieve": "4.1.3", "pip": "26.3"}) == []
    assert lock.drift({"jax": "0.11.0", "soup-sieve": "2.9"}) == [
        "jax 0.11.0 (locked 0.10.2)", "soup-sieve 2.9 (locked 2.10)"]
    with pytest.raises(FileNotFoundError):
        Lock.read(tmp_path / "none.lock")


def test_environment_records_the_checkouts_lock() -> None:
    env = environment()
    assert env["sha256"] == Lock.read(LOCK).sha256
    assert env["matches"] is (not env["drift"])
    assert installed_versions()["jax"] == jax.__version__


def make(directory: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "-C", str(directory),
                           *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_make_bootstraps_the_uv_version_the_lock_pins(tmp_path) -> None:
    shutil.copy(REPO / "uv.lock", tmp_path)
    (uv,) = Lock.read().packages["uv"]
    dry = make(tmp_path, "-n", ".venv/bin/uv")
    assert dry.returncode == 0 and f'"uv=={uv}"' in dry.stdout, dry


def test_lock_check_fails_naming_the_fix_when_pyproject_and_lock_disagree(tmp_path) -> None:
    uv = pytest.importorskip("uv", reason="uv is installed from the lock by make").find_uv_bin()
    for name in LOCK_FILES:
        shutil.copy(REPO / name, tmp_path)
    offline = {"UV_OFFLINE": "1"}  # the check needs no index
    ok = make(tmp_path, "lock-check", f"UV={uv}", **offline)
    assert ok.returncode == 0, ok.stderr
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"numpy>=1.26"', '"numpy>=1.27"'))
    stale = make(tmp_path, "lock-check", f"UV={uv}", **offline)
    assert stale.returncode != 0 and "run 'make lock'" in stale.stderr, stale
    # the export environment.yml installs must be the lock's too
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    export = tmp_path / "requirements-lock.txt"
    assert "\njax==0.10.2 ;" in export.read_text()
    export.write_text(export.read_text().replace("\njax==0.10.2 ;", "\njax==0.10.1 ;"))
    edited = make(tmp_path, "lock-check", f"UV={uv}", **offline)
    assert edited.returncode != 0 and "run 'make lock'" in edited.stderr, edited


@pytest.mark.parametrize(("check_exit", "syncs"), [(1, True), (0, False)])
def test_make_env_resyncs_when_the_installed_packages_differ_from_the_lock(
    tmp_path, check_exit, syncs
) -> None:
    # The stamp is newer than the lock, so only the check can make `make env` sync: a stand-in
    # for the venv's python that exits as scripts/check_env.py does (1: drift, 0: none).
    for name in LOCK_FILES:
        shutil.copy(REPO / name, tmp_path)
    (tmp_path / ".venv").mkdir()
    stamp = tmp_path / ".venv" / ".installed"
    stamp.touch()
    newer = max((tmp_path / name).stat().st_mtime for name in LOCK_FILES) + 10
    os.utime(stamp, (newer, newer))
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexit {check_exit}\n")
    python.chmod(0o755)
    dry = make(tmp_path, "-n", "env", f"PY={python}")
    assert dry.returncode == 0, dry
    assert ("sync --frozen" in dry.stdout) is syncs, dry.stdout
    assert ("differ from uv.lock: re-syncing" in dry.stdout) is syncs


def test_check_env_names_each_drifted_package(monkeypatch, capsys) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_env", REPO / "scripts" / "check_env.py")
    check_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_env)
    assert check_env.main() == 0 and capsys.readouterr().err == ""  # this venv is the lock's
    monkeypatch.setattr(check_env, "environment", lambda: {
        "drift": ["jax 0.10.1 (locked 0.10.2)", "numpy 2.0.0 (locked 2.3.1)"]})
    assert check_env.main() == 1
    assert capsys.readouterr().err == ("check_env: installed jax 0.10.1 (locked 0.10.2)\n"
                                       "check_env: installed numpy 2.0.0 (locked 2.3.1)\n")


# --- the machine a result names ---------------------------------------------------------------


def test_cpu_model_from_cpuinfo(tmp_path, monkeypatch):
    from sparsekit import provenance

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) "
                    "Platinum 8488C\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum "
                    "8488C\n")
    assert provenance.cpu_model(info) == "Intel(R) Xeon(R) Platinum 8488C"
    monkeypatch.setattr(provenance.platform, "processor", lambda: "arm")
    assert provenance.cpu_model(tmp_path / "missing") == "arm"  # not Linux: platform's word
    info.write_text("processor\t: 0\nmodel name\t: \n")
    assert provenance.cpu_model(info) == "arm"


def test_machine_names_the_cpu_and_xla_flags(monkeypatch):
    from sparsekit import provenance

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    found = provenance.machine()
    assert found["cpu"] == provenance.cpu_model() and "xla_flags" not in found
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    assert provenance.machine()["xla_flags"] == "--xla_cpu_multi_thread_eigen=false"
