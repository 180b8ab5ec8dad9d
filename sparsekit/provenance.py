"""Provenance of a result: code version, library versions, machine, time.

Every result row carries this, so a number in the book can be traced to the code and the
machine that produced it.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path

import jax

import sparsekit

REPO = Path(__file__).resolve().parents[1]


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
    import numpy
    import optax

    return {"python": platform.python_version(), "jax": jax.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__,
            "sparsekit": sparsekit.__version__}


def machine() -> dict[str, str | int]:
    """Where the computation ran: host, CPU count, accelerator kind."""
    device = jax.devices()[0]
    return {"host": platform.node(), "platform": sys.platform, "machine": platform.machine(),
            "cpus": os.cpu_count() or 0, "backend": jax.default_backend(),
            "device": getattr(device, "device_kind", str(device)),
            "devices": jax.device_count()}


def record() -> dict:
    """All provenance fields for one result."""
    return {"code_version": code_version(), "versions": versions(), "machine": machine(),
            "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
