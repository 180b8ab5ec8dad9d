"""Bootstrap refits in one process vs in worker processes (`fitting.fit_workers`), side by side.

The same `fit(..., bootstrap=B)` on the paper's released T5 runs, first with
SPARSEKIT_FIT_WORKERS=1 (the default) and then with every CPU this process may use (what the
book build sets), in one run; prints the
wall times, their ratio and whether the refits are identical (they must be: each refit is a
deterministic function of its resample). The pool's start (spawned processes, ~1 s) is
counted in the parallel time. The fit cache is off.

    python benchmarks/bootstrap.py [--refits 64] [--data PATH]

Measured (2026-12-05, this 2-core machine with the running sweep paused for the 21 s):

    paper T5 data, 48 runs, 64 refits
     workers  wall (s)
           1     11.11
           2      6.90
    speed-up 1.61x; identical refits: True

With the cores busy (the sweep's two workers running) the pool is slower, 0.73x at 48
refits: it helps a build on an otherwise idle machine, not one that shares it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from sparsekit import fitcache, fitting

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "paper-data" / "t5-data.csv"


def timed(workers: int, data, refits: int) -> tuple[tuple, float]:
    os.environ[fitting.WORKERS_ENV] = str(workers)
    start = time.perf_counter()
    laws = fitting.fit(*data, bootstrap=refits, seed=0).bootstrap_laws
    return laws, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refits", type=int, default=64)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    os.environ.pop(fitcache.ENV, None)
    os.environ.pop(fitting.WORKERS_ENV, None)
    cpus = fitting.available_cpus()
    data = fitting.load_paper_t5(args.data)
    one, t_one = timed(1, data, args.refits)
    many, t_many = timed(cpus, data, args.refits)
    print(f"paper T5 data, {data[0].size} runs, {args.refits} refits")
    print(f"{'workers':>8s} {'wall (s)':>9s}")
    print(f"{1:8d} {t_one:9.2f}")
    print(f"{cpus:8d} {t_many:9.2f}")
    print(f"speed-up {t_one / t_many:.2f}x; identical refits: {one == many}")


if __name__ == "__main__":
    main()
