"""Provenance of a result: code version, library versions, locked environment, machine, time.

Every result row carries this, so a number in the book can be traced to the code, the
environment and the machine that produced it. The environment is pinned by `uv.lock` (written
by `make lock`, installed by `make book` / `make test`): a result records the lock's sha256 and
whether the installed packages were the locked ones.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sparsekit

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "uv.lock"  # the pinned environment of this checkout (see `Lock`)


@cache
def code_version() -> str:
    """Git commit of the sparsekit checkout, with "-dirty" if tracked files differ; or the
    package version when not running from a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "sparsekit")
    except (OSError, subprocess.SubprocessError):
        return f"sparsekit-{sparsekit.__version__}"
    return commit + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Versions of the interpreter and the libraries that change the numbers."""
    import flax
    import jax
    import numpy
    import optax

    return {"python": platform.python_version(), "jax": jax.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__,
            "sparsekit": sparsekit.__version__}


def package_name(name: str) -> str:
    """A distribution name in its normal form (PEP 503: lower case, runs of -_. as one -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Lock:
    """A uv lock file: its sha256 (hex, of the file's bytes) and the versions it pins per
    package (normalised name -> versions; one, unless the lock forks by environment marker)."""

    sha256: str
    packages: Mapping[str, tuple[str, ...]]

    @classmethod
    def read(cls, path: str | os.PathLike = LOCK) -> Lock:
        """Parse a `uv.lock` file (FileNotFoundError if there is none)."""
        data = Path(path).read_bytes()
        packages: dict[str, tuple[str, ...]] = {}
        for package in tomllib.loads(data.decode())["package"]:
            name = package_name(package["name"])
            packages[name] = (*packages.get(name, ()), package["version"])
        return cls(hashlib.sha256(data).hexdigest(), packages)

    def drift(self, installed: Mapping[str, str]) -> list[str]:
        """'name installed (locked v)' for each locked package installed at another version;
        packages the lock does not pin, and locked ones not installed, are not drift."""
        return sorted(
            f"{name} {installed[name]} (locked {' or '.join(versions)})"
            for name, versions in self.packages.items()
            if name in installed and installed[name] not in versions
        )


def installed_versions() -> dict[str, str]:
    """Normalised name -> version of every installed distribution (the first on sys.path
    wins, as for imports)."""
    installed: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        installed.setdefault(package_name(dist.metadata["Name"]), dist.version)
    return installed


@cache
def _checked_lock() -> tuple[str, tuple[str, ...]] | None:
    """(sha256, drift) of the checkout's lock against the installed packages, None without
    a lock; once per process (reading both takes about 0.1-0.3 s)."""
    try:
        lock = Lock.read()
    except FileNotFoundError:
        return None
    return lock.sha256, tuple(lock.drift(installed_versions()))


class EnvironmentDriftWarning(UserWarning):
    """The installed packages are not the versions uv.lock pins (see `warn_if_drifted`)."""


def warn_if_drifted() -> None:
    """One EnvironmentDriftWarning naming each package installed at a version other than the
    lock's, so results trained here are not stored beside locked ones without a word (they
    record it too: `lock.drift`); nothing when they match or there is no lock."""
    drift = environment()["drift"]
    if drift:
        warnings.warn(f"the installed packages differ from uv.lock: {'; '.join(drift)}; results "
                      f"record it (lock.drift); `make env` installs the locked versions",
                      EnvironmentDriftWarning, stacklevel=2)


def environment() -> dict[str, str | bool | list[str] | None]:
    """The lock this checkout pins (`sha256`) and whether the installed packages are the
    locked versions (`matches`, with the differences in `drift`); all None without a lock
    (not a checkout)."""
    checked = _checked_lock()
    if checked is None:
        return {"sha256": None, "matches": None, "drift": None}
    sha256, drift = checked
    return {"sha256": sha256, "matches": not drift, "drift": list(drift)}


CPUINFO = Path("/proc/cpuinfo")  # Linux: the CPU model's "model name" line


def cpu_model(cpuinfo: str | os.PathLike = CPUINFO) -> str:
    """The CPU model, e.g. "AMD EPYC 7B13": the first "model name" of /proc/cpuinfo on Linux,
    else `platform.processor()` (often only the architecture); "" when neither says."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor()


CGROUP_MEMORY = Path("/sys/fs/cgroup/memory.max")  # Linux cgroup v2: this group's memory limit


@cache
def memory_bytes(cgroup_limit: str | os.PathLike = CGROUP_MEMORY) -> int:
    """The memory this process may use (bytes): the machine's physical memory, or its cgroup's
    limit (a container's) when that is lower."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path(cgroup_limit).read_text().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory  # "max": no limit


def machine() -> dict[str, str | int]:
    """Where the computation ran: host, CPU model and count, accelerator kind, and the
    XLA_FLAGS environment variable when it is set (it can change the numbers)."""
    import jax  # here, not at the top: config checks and `make env` read the rest without it

    device = jax.devices()[0]
    found = {"host": platform.node(), "platform": sys.platform, "machine": platform.machine(),
             "cpu": cpu_model(), "cpus": os.cpu_count() or 0, "backend": jax.default_backend(),
             "device": getattr(device, "device_kind", str(device)),
             "devices": jax.device_count()}
    if os.environ.get("XLA_FLAGS"):
        found["xla_flags"] = os.environ["XLA_FLAGS"]
    return found


def record() -> dict:
    """All provenance fields for one result."""
    return {"code_version": code_version(), "versions": versions(), "lock": environment(),
            "machine": machine(),
            "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
