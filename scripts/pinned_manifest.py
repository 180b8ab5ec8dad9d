"""Write the pinned corpus's manifest from this environment, or check the committed one.

    .venv/bin/python scripts/pinned_manifest.py           # rewrite sparsekit/data/manifests/
    .venv/bin/python scripts/pinned_manifest.py --check   # exit 1 if this environment differs

Run it in the environment `make env` made (exactly uv.lock) after a change to uv.lock, and
commit the manifest: its digest keys the corpus, so runs on the new corpus get new
fingerprints. The bytes are deterministic: the same environment writes the same file.
"""

from __future__ import annotations

import argparse
import sys

from sparsekit.data import pinned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed manifest instead of writing it")
    args = parser.parse_args(argv)
    manifest = pinned.manifest_of()
    files = manifest["files"]
    summary = (f"{len(files):,} files, {sum(f[1] for f in files):,} bytes, "
               f"{len(manifest['packages']) - 1} packages and the stdlib of Python "
               f"{manifest['packages'][pinned.PYTHON_PACKAGE]}")
    if args.check:
        same = pinned.MANIFEST.read_bytes() == pinned.manifest_bytes(manifest)
        print(f"{pinned.MANIFEST}: {'matches' if same else 'DIFFERS from'} this environment "
              f"({summary})", file=sys.stderr)
        return 0 if same else 1
    pinned.write_manifest(pinned.MANIFEST, manifest)
    print(f"wrote {pinned.MANIFEST} ({summary}, "
          f"{pinned.MANIFEST.stat().st_size:,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
