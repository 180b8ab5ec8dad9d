"""Whether the installed packages are the versions uv.lock pins: exit 0 when they are (or
there is no lock), 1 naming each one that differs.

`make env` runs it to decide whether to re-sync: the stamp's time alone misses a package
installed at another version by hand (`pip install jax==...`) after the last sync.

    .venv/bin/python scripts/check_env.py
"""

from __future__ import annotations

import sys

from sparsekit.provenance import environment


def main() -> int:
    """Print each drifted package to stderr; 1 if any, else 0."""
    drift = environment()["drift"] or []
    for line in drift:
        print(f"check_env: installed {line}", file=sys.stderr)
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
