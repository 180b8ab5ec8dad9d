"""Scaling-law fit on the paper's T5 data: the released notebook's procedure vs `fit`.

Baseline, re-implemented from the notebook (jaxpruner/projects/bigsparse): the form
(a (1/(1-S))^-b + c) N^-d + e D^-f + g with N in millions of non-zeros and D in units of
1e5 steps, mean log-Huber loss (delta 1e-3), scipy BFGS (numeric gradients) from 25 starts
uniform in [0, 1)^7, keeping the best successful run. Ours: `sparsekit.fitting.fit`
(exponent grid with non-negative least squares, then trust-region refinement). Each is
run once per seed; the table gives the spread of the per-seed objectives (best, median,
worst), how many reach the published objective, and the median wall and CPU time per run. `fit` uses no randomness (the seed only
drives its bootstrap), so its spread is zero by construction; it is rerun per seed to time
it and to check that. The published fit's objective is 7.6036e-6.

    python benchmarks/fit.py [--seeds 10] [--quick] [--data PATH]

Measured (10 seeds, ~45 s, 2 CPU cores shared with other jobs, load ~9):

    method                        best      median       worst <= pub.  wall/run  cpu/run  extrap.
    notebook (25 x BFGS)    7.0587e-06  7.3659e-06  7.7318e-06   8/10      3.18s    1.31s   1.4646
    sparsekit.fit           4.8801e-06  4.8801e-06  4.8801e-06  10/10      0.88s    0.31s   1.4551

(the measured extrapolation loss is 1.4828; the published fit predicts 1.4683).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from sparsekit.fitting import T5_TOKENS_PER_STEP, fit, load_paper_t5, objective

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "paper-data" / "t5-data.csv"
PUBLISHED = 7.6036e-6
# The paper's extrapolation run: 75% sparse, 48 * 12 * 1024^2 non-zeros, 500k steps.
EXTRAPOLATION = (0.75, 48 * 12 * 1024**2, 500_000 * T5_TOKENS_PER_STEP)
MEASURED = 1.4828


def notebook_law(params: np.ndarray, S: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """The notebook's form; N in non-zeros and D in tokens, converted to its units."""
    a, b, c, d, e, f, g = params
    n_m, d_steps = N / 1e6, D / T5_TOKENS_PER_STEP / 1e5
    return (a * (1 / (1 - S)) ** -b + c) * n_m**-d + e * d_steps**-f + g


def notebook_fit(S, N, D, loss, seed: int, starts: int = 25) -> tuple[float, np.ndarray]:
    """Best (objective, params) of BFGS from `starts` uniform random starts, as released."""
    rng = np.random.RandomState(seed)
    best = None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # log of negative trial predictions, as in the original
        for _ in range(starts):
            res = minimize(
                lambda p: objective(notebook_law(p, S, N, D), loss),
                rng.uniform(size=7),
                method="BFGS",
            )
            if res.success and np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
    return (np.inf, np.full(7, np.nan)) if best is None else (float(best.fun), best.x)


def timed(fn, *args, **kwargs):
    """fn's result and its (wall, CPU) seconds: CPU time is robust to a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - wall, time.process_time() - cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="3 seeds")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    seeds = range(3 if args.quick else args.seeds)
    S, N, D, loss = load_paper_t5(args.data)

    rows = {}
    runs = [timed(notebook_fit, S, N, D, loss, seed) for seed in seeds]
    objectives = [obj for (obj, _), _ in runs]
    best_params = min(runs, key=lambda run: run[0][0])[0][1]
    rows["notebook (25 x BFGS)"] = (
        objectives,
        [t for _, t in runs],
        float(notebook_law(best_params, *EXTRAPOLATION)),
    )
    runs = [timed(fit, S, N, D, loss, seed=seed) for seed in seeds]
    rows["sparsekit.fit"] = (
        [r.objective for r, _ in runs],
        [t for _, t in runs],
        float(runs[0][0].law.predict(*EXTRAPOLATION)),
    )

    print(f"T5 data: {S.size} runs, {len(seeds)} seeds; published objective {PUBLISHED:.4e}")
    print(
        f"{'method':22s} {'best':>11s} {'median':>11s} {'worst':>11s} {'<= pub.':>7s} "
        f"{'wall/run':>9s} {'cpu/run':>8s} {'extrap.':>8s}"
    )
    for name, (objs, times, extrapolation) in rows.items():
        hits = sum(o <= PUBLISHED for o in objs)
        spread = f"{min(objs):11.4e} {statistics.median(objs):11.4e} {max(objs):11.4e}"
        print(
            f"{name:22s} {spread} {hits:>3d}/{len(objs):<3d} "
            f"{statistics.median(t[0] for t in times):8.2f}s "
            f"{statistics.median(t[1] for t in times):7.2f}s {extrapolation:8.4f}"
        )
    print(f"extrapolation: 75% sparse, N = 48*12*1024^2, 500k steps; measured {MEASURED}")
    print(f"sparsekit.fit law: {runs[0][0].law}")


if __name__ == "__main__":
    main()
