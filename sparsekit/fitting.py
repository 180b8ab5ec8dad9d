"""Fitting loss laws: global Huber fits by variable projection, bootstrap, diagnostics.

The objective is the paper notebook's: the MEAN over points of huber(delta, r) with
r = log pred - log L (log=True, as in Chinchilla) or pred - L. Every law in
`sparsekit.laws` is linear in non-negative coefficients once its 2-3 exponents are fixed,
so `fit` scans the exponents on a grid, solves the coefficients of each grid point by
non-negative least squares (weighted by 1/L, the first-order form of log residuals), and
refines the best few grid points on the true objective: all at once by the batched solver
(`sparsekit.solver`), then the best end point by scipy's trust-region least squares with a
Huber loss and the exact Jacobian. Coefficients are constrained to be >= 0, so every
term of a law decreases with N and D (the notebook's BFGS was unconstrained).
Everything is deterministic: the seed only drives bootstrap resampling. So the fitted laws
can be cached on disk, keyed by the data, settings and code (`sparsekit.fitcache`, off
unless SPARSEKIT_FIT_CACHE names a folder; the book build turns it on).

`fit_pattern_factors` is the paper's per-pattern refit: one sparsity factor per sparsity
pattern (e.g. 2:4), every other coefficient kept from a fit to unstructured runs.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import pickle
import signal
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import least_squares, nnls

from sparsekit import fitcache, solver
from sparsekit.costs import CostModel
from sparsekit.laws import LAWS, Law, LinearForm
from sparsekit.solver import TINY, huber, residuals_and_jacobian

GRID_RANGE = (0.05, 2.5)  # exponents scanned, log-spaced (published fits: 0.2-0.9)
WORKERS_ENV = "SPARSEKIT_FIT_WORKERS"  # processes for a bootstrap's refits (`fit_workers`)
PARALLEL_FROM = 16  # fewer refits than this run in this process: a pool costs ~1 s to start
EXPONENT_BOUNDS = (1e-3, 10.0)  # box for the refinement


# The released T5 runs (jaxpruner/projects/bigsparse/t5-data.csv), notebook conventions:
T5_BASE_PARAMS = 24 * 12 * 768**2  # non-embedding weights of the scale-1 model (24 blocks)
T5_TOKENS_PER_STEP = 65_536


def load_paper_t5(path: str | Path) -> tuple[np.ndarray, ...]:
    """(S, N non-zero parameters, D tokens, loss) of the paper's 48 released T5 runs.

    The csv gives sparsity, scale (dense size as a multiple of T5_BASE_PARAMS), val-loss
    and steps; N = T5_BASE_PARAMS * scale * (1 - S), D = steps * T5_TOKENS_PER_STEP.
    """
    path = Path(path)
    header = path.read_text().splitlines()[0].split(",")
    rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    S, scale, loss, steps = (
        rows[:, header.index(k)] for k in ("sparsity", "scale", "val-loss", "steps")
    )
    return S, T5_BASE_PARAMS * scale * (1.0 - S), steps * T5_TOKENS_PER_STEP, loss


def residuals(pred: ArrayLike, loss: ArrayLike, log: bool = True) -> np.ndarray:
    """log pred - log L (log=True) or pred - L, per point."""
    pred, loss = np.asarray(pred, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    return np.log(pred) - np.log(loss) if log else pred - loss


def objective(pred: ArrayLike, loss: ArrayLike, delta: float = 1e-3, log: bool = True) -> float:
    """Mean Huber loss of the residuals: the quantity `fit` minimises."""
    return float(np.mean(huber(residuals(pred, loss, log), delta)))


@dataclass(frozen=True, eq=False)
class Diagnostics:
    """How well a law describes a set of points."""

    relative_error: np.ndarray  # (pred - L) / L per point
    rmse: float  # root mean square of pred - L, loss units
    rmse_log: float  # root mean square of log pred - log L

    @property
    def max_abs_relative_error(self) -> float:
        return float(np.max(np.abs(self.relative_error)))


def diagnose(law: Law, S: ArrayLike, N: ArrayLike, D: ArrayLike, loss: ArrayLike) -> Diagnostics:
    """Per-point relative errors and RMSEs of `law` on the points (S, N, D, loss)."""
    pred, loss = law.predict(S, N, D), np.asarray(loss, dtype=np.float64)
    return Diagnostics(
        relative_error=pred / loss - 1.0,
        rmse=float(np.sqrt(np.mean((pred - loss) ** 2))),
        rmse_log=float(np.sqrt(np.mean(residuals(pred, loss) ** 2))),
    )


@dataclass(frozen=True, eq=False)
class FitResult:
    """A fitted law, its objective, and (with bootstrap) percentile intervals."""

    law: Law
    objective: float  # mean Huber loss on the data
    residuals: np.ndarray  # log pred - log L, or pred - L when log=False
    n_points: int
    delta: float  # Huber threshold, in residual units
    log: bool  # residuals in log space
    diagnostics: Diagnostics
    # name -> (lo, hi) for every parameter and derived quantity; empty without bootstrap
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap_laws: tuple[Law, ...] = ()  # the refits on resampled data
    # Parameters the predictions at the fitted points do not depend on (`find_undetermined`).
    undetermined: tuple[str, ...] = ()

    @property
    def at_bounds(self) -> tuple[str, ...]:
        """Exponents that ended on the search box (EXPONENT_BOUNDS): the data do not pin them
        down, so their values and the quantities derived from them are not to be read."""
        values = self.law.as_dict()
        lo, hi = EXPONENT_BOUNDS
        return tuple(name for name in type(self.law).exponent_names
                     if np.isclose(values[name], lo, rtol=1e-6) or np.isclose(values[name], hi,
                                                                                 rtol=1e-6))

    def refits_at_bounds(self) -> dict[str, float]:
        """Exponent -> the share of the bootstrap refits in which it ended on the search box,
        for the exponents with a share above zero: how often resampled runs do not pin it down
        (an interval of a quantity that depends on it is then partly the box's)."""
        refits = [replace(self, law=law).at_bounds for law in self.bootstrap_laws]
        names = type(self.law).exponent_names
        shares = {n: float(np.mean([n in r for r in refits])) for n in names} if refits else {}
        return {n: share for n, share in shares.items() if share > 0}


def find_undetermined(
    law: Law, S: ArrayLike, N: ArrayLike, D: ArrayLike, step: float = 0.1, tol: float = 1e-6
) -> tuple[str, ...]:
    """Non-zero parameters that the predictions at (S, N, D) do not depend on: scaling one by
    1 - step or 1 + step moves no prediction by more than `tol` (relative).

    Such a value is not determined by the data, typically the exponent and coefficient of a
    term whose coefficient fitted to almost 0 (the paper's sparsity term on runs where
    sparsity does not pay). Zero parameters are left out: they sit on their bound.
    """
    base = law.predict(S, N, D)
    params = np.array(law.params)
    found = []
    for i, name in enumerate(law.param_names):
        if params[i] == 0.0:
            continue
        moved = 0.0
        for factor in (1.0 - step, 1.0 + step):
            trial = params.copy()
            trial[i] *= factor
            with np.errstate(all="ignore"):
                pred = law.with_params(trial).predict(S, N, D)
            change = np.abs(pred / base - 1.0)
            moved = max(moved, float(np.max(np.where(np.isfinite(change), change, np.inf))))
        if moved <= tol:
            found.append(name)
    return tuple(found)


def _resolve_law(law: str | type[Law]) -> type[Law]:
    if isinstance(law, type) and issubclass(law, Law):
        return law
    if law not in LAWS:
        raise ValueError(f"law must be one of {sorted(LAWS)} or a Law subclass, got {law!r}")
    return LAWS[law]


def _validate(
    law_cls: type[Law], S: ArrayLike, N: ArrayLike, D: ArrayLike, loss: ArrayLike
) -> tuple[np.ndarray, ...]:
    """Check the data can be fitted by `law_cls`; ValueError naming the parameter if not."""
    arrays = dict(S=S, N=N, D=D, loss=loss)
    arrays = {name: np.asarray(x, dtype=np.float64) for name, x in arrays.items()}
    for name, x in arrays.items():
        if x.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} must be finite")
    lengths = {name: x.size for name, x in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"S, N, D and loss must have the same length, got {lengths}")
    S, N, D, loss = arrays.values()
    if np.any((S < 0) | (S >= 1)):
        raise ValueError("S must lie in [0, 1)")
    for name in ("N", "D", "loss"):
        if np.any(arrays[name] <= 0):
            raise ValueError(f"{name} must be positive")
    problems = law_cls.problems(S, N, D, identified=False)
    if problems:
        raise ValueError(f"S, N, D, loss: the {law_cls.name} law {'; '.join(problems)}")
    if problem := law_cls.sparsity_problem(S):
        warnings.warn(f"S: the {law_cls.name} law {problem}: not every parameter is "
                      "identified", stacklevel=3)  # the caller of fit()
    return S, N, D, loss


@dataclass(frozen=True)
class _Settings:
    """Everything but the data that determines a fit."""

    law_cls: type[Law]
    delta: float
    log: bool
    grid: int  # exponent values scanned per exponent
    starts: int  # grid points refined
    options: Mapping[str, Any]  # keyword arguments of law_cls.linear_form


def _grid_starts(form: LinearForm, loss: np.ndarray, cfg: _Settings) -> list[np.ndarray]:
    """The `cfg.starts` best grid points (exponents + NNLS coefficients), true objective."""
    n_exp = form.logfeat.shape[1]
    axis = np.geomspace(*GRID_RANGE, cfg.grid)
    exps = np.array(list(itertools.product(axis, repeat=n_exp)))
    X = form.design(exps)  # (G, n, k)
    # Least squares on (pred - L) / L approximates log residuals to first order.
    scale = loss if cfg.log else np.ones_like(loss)
    try:
        coefs = solver.nnls_many(X / scale[:, None], loss / scale)
    except np.linalg.LinAlgError:  # a singular column subset: scipy's nnls, point by point
        coefs = np.array([nnls(x / scale[:, None], loss / scale)[0] for x in X])
    pred = np.maximum(np.sum(X * coefs[:, None, :], axis=-1), TINY)
    objs = np.mean(huber(residuals(pred, loss, cfg.log), cfg.delta), axis=-1)
    order = np.argsort(objs, kind="stable")[: cfg.starts]
    return [np.concatenate([exps[g], coefs[g]]) for g in order]


def _box(form: LinearForm) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of z = (exponents, coefficients) of `form`: exponents in
    EXPONENT_BOUNDS, coefficients >= 0."""
    n_coef, n_exp = form.logfeat.shape[:2]
    return (np.r_[np.full(n_exp, EXPONENT_BOUNDS[0]), np.zeros(n_coef)],
            np.r_[np.full(n_exp, EXPONENT_BOUNDS[1]), np.full(n_coef, np.inf)])


def _refine(
    form: LinearForm, loss: np.ndarray, cfg: _Settings, start: np.ndarray
) -> tuple[np.ndarray, float]:
    """Minimise the objective from `start`: exponents boxed, coefficients >= 0.

    scipy's least_squares with loss="huber" and f_scale=delta minimises exactly the sum of
    huber(delta, r), i.e. n times our objective; its trust-region reflective method uses
    the exact Jacobian. (L-BFGS-B on the same objective reached the same optima but ran
    ~10x slower when other processes compete for the cores: its tiny BLAS calls thread.)
    """
    lower, upper = _box(form)
    res = least_squares(
        lambda z: residuals_and_jacobian(form, loss, cfg.log, z)[0],
        np.clip(start, lower, upper),
        jac=lambda z: residuals_and_jacobian(form, loss, cfg.log, z)[1],
        bounds=(lower, upper),
        method="trf",
        loss="huber",
        f_scale=cfg.delta,
        ftol=1e-15,
        xtol=1e-15,
        gtol=1e-15,
        max_nfev=1000,
    )
    return res.x, float(res.cost / loss.size)


def _normalised_form(S: np.ndarray, N: np.ndarray, D: np.ndarray, cfg: _Settings
                     ) -> LinearForm:
    """The law's linear form in units of the geometric means of N and D (coefficients of
    order one, so one box and one tolerance suit every data set)."""
    n0, d0 = np.exp(np.mean(np.log(N))), np.exp(np.mean(np.log(D)))
    return cfg.law_cls.linear_form(S, N / n0, D / d0, **cfg.options)


def _optimum(form: LinearForm, loss: np.ndarray, cfg: _Settings) -> tuple[np.ndarray, float]:
    """The best local minimum from the grid's starts: all taken downhill at once
    (`solver.minimise`), then the best end point refined by scipy (`_refine`). Against one
    scipy run per start (the former method) on every fit the chapters make,
    benchmarks/solver.py finds the same optima, about 4x faster."""
    lower, upper = _box(form)
    ends, objs = solver.minimise(form, loss, cfg.log, cfg.delta,
                                 np.stack(_grid_starts(form, loss, cfg)), lower, upper)
    return _refine(form, loss, cfg, ends[np.argmin(objs)])  # first of equals: deterministic


def _fit_law(S: np.ndarray, N: np.ndarray, D: np.ndarray, loss: np.ndarray, cfg: _Settings) -> Law:
    """The global fit, found in normalised units (`_normalised_form`)."""
    form = _normalised_form(S, N, D, cfg)
    z = _optimum(form, loss, cfg)[0]
    n_exp = form.logfeat.shape[1]
    exps, coefs = z[:n_exp], z[n_exp:]
    # Back to the caller's units: each log-feature only shifts by a constant.
    raw = cfg.law_cls.linear_form(S, N, D, **cfg.options)
    shift = np.mean(form.logfeat - raw.logfeat, axis=-1)  # (k, p)
    return raw.build(exps, coefs * np.exp(shift @ exps))


def _fitted(S: np.ndarray, N: np.ndarray, D: np.ndarray, loss: np.ndarray, cfg: _Settings
            ) -> Law:
    """`_fit_law`, through the fit cache (`sparsekit.fitcache`) when it is on."""
    key = fitcache.key("fit", (S, N, D, loss), cfg.law_cls, cfg.options, delta=cfg.delta,
                       log=cfg.log, grid=cfg.grid, starts=cfg.starts)
    known = fitcache.load(key, cfg.law_cls, cfg.options)
    if known is not None and len(known[0]) == 1:
        fitcache.record("fit", cfg.law_cls, key, computed=0, reused=1)
        return known[0][0]
    law = _fit_law(S, N, D, loss, cfg)
    fitcache.store(key, [law], [0], cfg.options)
    fitcache.record("fit", cfg.law_cls, key, computed=1, reused=0)
    return law


def available_cpus() -> int:
    """The CPUs this process may use (its affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fit_workers() -> int:
    """Processes a bootstrap's refits may run in: the environment variable WORKERS_ENV (an
    integer >= 1), or 1 when it is unset. Off by default: worker processes are spawned, and
    spawning re-imports the caller's main script, so a script that fits at module level
    without an `if __name__ == "__main__":` guard would run again in every worker. The book
    build (scripts/build_book.py) sets it to the CPUs it may use. ValueError naming the
    variable for anything else."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return 1
    if not (value.isdigit() and int(value) >= 1):
        raise ValueError(f"{WORKERS_ENV} must be an integer >= 1, got {value!r}")
    return int(value)


def _quiet_worker() -> None:
    """A pool worker ignores SIGINT: its parent (a notebook kernel, a test run) decides when
    the pool stops, and an interrupt sent to the parent's process group (a kernel's shutdown)
    would otherwise print a traceback from every idle worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@functools.cache
def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool of `workers` fresh (spawned) processes per session, shared by every bootstrap:
    spawned, not forked, since the caller may hold JAX or threads."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_quiet_worker)


def _refits(data: Sequence[tuple[np.ndarray, ...]], cfg: _Settings) -> list[Law]:
    """`_fit_law` on each resample, in worker processes (`fit_workers`) when there are at
    least PARALLEL_FROM of them and the settings can be sent to a process: each refit is a
    deterministic function of its data, so the laws are the same either way, in order."""
    workers = min(fit_workers(), len(data))
    if workers >= 2 and len(data) >= PARALLEL_FROM:
        try:
            pickle.dumps(cfg)
        except (pickle.PicklingError, AttributeError, TypeError):  # e.g. a lambda option
            workers = 1
    if workers < 2 or len(data) < PARALLEL_FROM:
        return [_fit_law(*d, cfg) for d in data]
    chunk = max(1, len(data) // (4 * workers))
    return list(_pool(workers).map(_fit_law, *zip(*data, strict=True),
                                   itertools.repeat(cfg, len(data)), chunksize=chunk))


def _bootstrap(
    S: np.ndarray,
    N: np.ndarray,
    D: np.ndarray,
    loss: np.ndarray,
    cfg: _Settings,
    size: int,
    seed: int,
) -> tuple[Law, ...]:
    """Refits on data resampled with replacement within each sparsity level, so that every
    level (which some laws need) stays present.

    The resamples are drawn one after another from `seed`, so the first refits of a larger
    bootstrap are a smaller one's: the fit cache keeps them without `size` and each refit's
    draw (`attempt`), and a refit it holds for the same draw is taken instead of recomputed.
    The refits still to compute run in parallel (`_refits`)."""
    key = fitcache.key("bootstrap", (S, N, D, loss), cfg.law_cls, cfg.options,
                       delta=cfg.delta, log=cfg.log, grid=cfg.grid, starts=cfg.starts,
                       seed=seed)
    known_laws, known_attempts = fitcache.load(key, cfg.law_cls, cfg.options) or ((), ())
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(s == S) for s in np.unique(S)]
    draws: list[tuple[np.ndarray, ...]] = []
    attempts: list[int] = []
    for attempt in range(100 * size):
        idx = np.concatenate([rng.choice(group, group.size) for group in groups])
        try:
            draws.append(_validate(cfg.law_cls, S[idx], N[idx], D[idx], loss[idx]))
        except ValueError:  # e.g. a resample with a single distinct N: draw again
            continue
        attempts.append(attempt)
        if len(draws) == size:
            break
    else:
        raise ValueError("bootstrap: resamples of these data keep failing validation")
    known = [i < len(known_laws) and known_attempts[i] == attempt
             for i, attempt in enumerate(attempts)]
    computed = iter(_refits([d for d, k in zip(draws, known, strict=True) if not k], cfg))
    laws = [known_laws[i] if k else next(computed) for i, k in enumerate(known)]
    reused = sum(known)
    if len(laws) > len(known_laws) or reused < len(laws):
        fitcache.store(key, laws, attempts, cfg.options)
    fitcache.record("bootstrap", cfg.law_cls, key, computed=len(laws) - reused, reused=reused)
    return tuple(laws)


def _intervals(
    laws: Sequence[Law],
    S: np.ndarray,
    sopt_at: Sequence[tuple[float, float]],
    cost: str | CostModel,
    level: float,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of the parameters and derived quantities over `laws`."""
    samples = {name: [law.as_dict()[name] for law in laws] for name in laws[0].param_names}
    for s in np.unique(S[S > 0]):
        samples[f"dense_equivalent[S={s:g}]"] = [law.dense_equivalent(s) for law in laws]
    for n, c in sopt_at:
        samples[f"S_opt[N={n:.3g},C={c:.3g}]"] = [law.optimal_sparsity(n, c, cost) for law in laws]
    return _percentiles(samples, level)


def _percentiles(
    samples: Mapping[str, Sequence[float]], level: float
) -> dict[str, tuple[float, float]]:
    """The central `level` percentile interval of each named sample."""
    tail = 50.0 * (1.0 - level)
    return {
        name: tuple(float(q) for q in np.percentile(values, [tail, 100.0 - tail]))
        for name, values in samples.items()
    }


def fit(
    S: ArrayLike,
    N: ArrayLike,
    D: ArrayLike,
    loss: ArrayLike,
    *,
    delta: float = 1e-3,
    log: bool = True,
    law: str | type[Law] = "sparse",
    seed: int = 0,
    bootstrap: int = 0,
    level: float = 0.95,
    sopt_at: Sequence[tuple[float, float]] = (),
    cost: str | CostModel = "dense",
    grid: int = 20,
    starts: int = 8,
    **law_options: Any,
) -> FitResult:
    """Fit a law to runs at sparsity S with N non-zero parameters and D tokens/images.

    Minimises the mean Huber loss (`objective`) of log residuals (log=True) or plain ones.
    law: "sparse", "average", "multiplier", "chinchilla" or a Law subclass; law_options
    go to its `linear_form` (e.g. `schedule=` for the average law). bootstrap=B adds
    percentile intervals at `level` from B refits on data resampled with replacement within
    each sparsity level (`seed` drives the resampling), for every parameter, the
    dense-equivalent multiplier at each S > 0 present, and the optimal sparsity under cost
    model `cost` at each (N, C FLOPs) in `sopt_at`.
    grid: exponent values scanned per exponent; starts: grid points refined.
    With the fit cache on (`sparsekit.fitcache`), the fitted laws come from it when a fit
    of the same data, settings and code made them; the result is the same.
    """
    law_cls = _resolve_law(law)
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    S, N, D, loss = _validate(law_cls, S, N, D, loss)
    cfg = _Settings(law_cls, delta, log, grid, starts, law_options)
    fitted = _fitted(S, N, D, loss, cfg)
    pred = fitted.predict(S, N, D)
    result = FitResult(
        law=fitted,
        objective=objective(pred, loss, delta, log),
        residuals=residuals(pred, loss, log),
        n_points=S.size,
        delta=delta,
        log=log,
        diagnostics=diagnose(fitted, S, N, D, loss),
        undetermined=find_undetermined(fitted, S, N, D),
    )
    if bootstrap <= 0:
        return result
    laws = _bootstrap(S, N, D, loss, cfg, bootstrap, seed)
    intervals = _intervals(laws, S, sopt_at, cost, level)
    return replace(result, intervals=intervals, bootstrap_laws=laws)


@dataclass(frozen=True, eq=False)
class SizeExtrapolation:
    """A fit without the largest model size, judged on the held-out points."""

    size: float  # the largest N, non-zero parameters
    held_out: np.ndarray  # boolean mask of the held-out points
    fit: FitResult  # on the other points
    predicted: np.ndarray  # loss predicted at the held-out points
    diagnostics: Diagnostics  # of the held-out predictions


def leave_largest_size_out(
    S: ArrayLike,
    N: ArrayLike,
    D: ArrayLike,
    loss: ArrayLike,
    *,
    within: float = 1.25,
    **fit_kwargs: Any,
) -> SizeExtrapolation:
    """Refit without the largest non-zero size and predict it: the extrapolation test.

    The held-out group is every point with N >= max(N) / within, so that runs of one
    nominal size whose non-zero counts differ slightly across sparsities stay together.
    """
    S, N, D, loss = (np.asarray(x, dtype=np.float64) for x in (S, N, D, loss))
    held_out = np.max(N) / within <= N
    rest = ~held_out
    result = fit(S[rest], N[rest], D[rest], loss[rest], **fit_kwargs)
    data = S[held_out], N[held_out], D[held_out]
    return SizeExtrapolation(
        size=float(np.max(N)),
        held_out=held_out,
        fit=result,
        predicted=result.law.predict(*data),
        diagnostics=diagnose(result.law, *data, loss[held_out]),
    )


# --- one sparsity factor per pattern, the rest of a law held fixed ----------------------------


def size_factor(law: Law, S: ArrayLike) -> np.ndarray:
    """The coefficient f(S) of a law's size term at sparsity S: every law here predicts
    L = f(S) N^-alpha + B D^-beta + E (N non-zeros, D tokens or images), with (A, alpha, B,
    beta, E) its `dense_terms` and f(S) = A m(S)^-alpha for its dense equivalent m(S).
    For the sparse law, f(S) = a_S (1-S)^b_S + c_S."""
    A, alpha, *_ = law.dense_terms()
    return A * law.dense_equivalent(S) ** -alpha


@dataclass(frozen=True, eq=False)
class FactorFit:
    """One sparsity factor fitted to the runs of one pattern (e.g. 2:4) with every other
    coefficient of a law kept: L = factor N^-alpha + B D^-beta + E, alpha, B, beta, E fixed.

    The paper's per-pattern refit: the shared coefficients (b_N, the data term, c) come from
    the unstructured fit, so a pattern differs from unstructured sparsity at the same S by its
    factor alone. `dense_equivalent` = (A / factor)^(1/alpha) is the pattern's equivalent dense
    size; `reference` is the law's own (unstructured) m(S) at the pattern's S.
    """

    label: str  # the pattern, e.g. "2:4"
    S: float  # its sparsity (1 - n/m)
    factor: float  # fitted coefficient of N^-alpha (loss units x N^alpha)
    reference_factor: float  # the law's f(S) at the same S: unstructured sparsity
    alpha: float  # the law's size exponent (b_N for the sparse law)
    dense_equivalent: float  # (A / factor)^(1/alpha): matches a dense model of this x N
    reference: float  # the law's m(S) at the same S
    objective: float  # mean Huber loss on the pattern's runs (the base fit's delta and space)
    residuals: np.ndarray  # log pred - log L (or pred - L), per run
    n_points: int
    # "factor", "dense_equivalent", "reference" and "relative" (dense_equivalent / reference)
    # -> 95% (or `level`) bootstrap interval; empty without the base fit's bootstrap
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def relative(self) -> float:
        """The pattern's dense equivalent as a fraction of unstructured sparsity's at its S."""
        return self.dense_equivalent / self.reference

    def gap(self, N: ArrayLike) -> np.ndarray:
        """Predicted loss of the pattern minus unstructured at the same S and N non-zeros (any
        D: the data term is shared), in loss units."""
        N = np.asarray(N, dtype=np.float64)
        return (self.factor - self.reference_factor) * N**-self.alpha


def _fit_one_factor(
    law: Law, N: np.ndarray, D: np.ndarray, loss: np.ndarray, delta: float, log: bool
) -> float:
    """The factor >= 0 of L = factor N^-alpha + B D^-beta + E with the law's alpha, B, beta,
    E that minimises the mean Huber objective: one parameter, from the least-squares start."""
    _, alpha, B, beta, E = law.dense_terms()
    x, rest = N**-alpha, B * D**-beta + E
    w = 1.0 / loss**2 if log else np.ones_like(loss)  # first-order form of log residuals
    start = max(float(np.sum(w * x * (loss - rest)) / np.sum(w * x * x)), 0.0)

    def resid(z: np.ndarray) -> np.ndarray:
        return residuals(np.maximum(z[0] * x + rest, TINY), loss, log)

    def jac(z: np.ndarray) -> np.ndarray:
        pred = np.maximum(z[0] * x + rest, TINY)
        return (x / pred if log else x)[:, None]

    res = least_squares(resid, [start], jac=jac, bounds=([0.0], [np.inf]), method="trf",
                        loss="huber", f_scale=delta, ftol=1e-15, xtol=1e-15, gtol=1e-15,
                        max_nfev=1000)
    return float(res.x[0])


def _dense_size(law: Law, factor: float) -> float:
    """(A / factor)^(1/alpha): the equivalent dense size of a size factor under `law`."""
    A, alpha, *_ = law.dense_terms()
    return float(np.float64(A / factor if factor else np.inf) ** (1.0 / alpha))


def _intervals_of(samples: Mapping[str, Sequence[float]], level: float
                  ) -> dict[str, tuple[float, float]]:
    """`_percentiles` of samples that may hold inf (an infinite dense equivalent)."""
    with np.errstate(invalid="ignore"):
        return _percentiles(samples, level)


def fit_pattern_factors(
    base: FitResult,
    S: ArrayLike,
    N: ArrayLike,
    D: ArrayLike,
    loss: ArrayLike,
    pattern: Sequence[str],
    *,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, FactorFit]:
    """Refit one sparsity factor per pattern, keeping every other coefficient of `base`.

    base: the fit of a law to the unstructured (and dense) runs, e.g. `fit(..., law="sparse",
      bootstrap=B)`; its delta and residual space are used here too. Its law must describe
      the patterns' sparsities (its `dense_equivalent` defined there).
    S, N, D, loss: the runs of the patterns (N non-zeros, D tokens or images), one label per
      run in `pattern` (e.g. "2:4"); every run of a pattern must have the same S.

    With `base.bootstrap_laws`, each replicate law's shared coefficients are paired with a
    resample (with replacement, `seed`) of each pattern's runs, so the intervals carry the
    uncertainty of both. Returns {pattern: FactorFit}, in order of first appearance.
    ValueError naming the parameter on bad input.
    """
    S, N, D, loss = (np.asarray(x, dtype=np.float64) for x in (S, N, D, loss))
    labels = np.asarray(pattern, dtype=object)
    if len({x.shape for x in (S, N, D, loss, labels)}) != 1 or S.ndim != 1 or not S.size:
        raise ValueError("S, N, D, loss and pattern must be 1-D, non-empty and of one length")
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0) and np.all(N > 0) and np.all(D > 0)):
        raise ValueError("N, D and loss must be positive and finite")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    fits = {}
    for label in dict.fromkeys(labels):
        at = labels == label
        levels = np.unique(S[at])
        if levels.size != 1 or not 0 < levels[0] < 1:
            raise ValueError(f"S: the runs of pattern {label!r} must share one sparsity in "
                             f"(0, 1), got {levels.tolist()}")
        s, n, d, y = float(levels[0]), N[at], D[at], loss[at]
        factor = _fit_one_factor(base.law, n, d, y, base.delta, base.log)
        _, alpha, B, beta, E = base.law.dense_terms()
        pred = factor * n**-alpha + B * d**-beta + E
        samples: dict[str, list[float]] = {k: [] for k in
                                           ("factor", "dense_equivalent", "reference", "relative")}
        for law in base.bootstrap_laws:
            idx = rng.integers(0, y.size, y.size)
            f_b = _fit_one_factor(law, n[idx], d[idx], y[idx], base.delta, base.log)
            # A replicate with a tiny size exponent can put m at inf: it counts as such.
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                m_b = _dense_size(law, f_b)
                ref_b = float(law.dense_equivalent(s))
            samples["factor"].append(f_b)
            samples["dense_equivalent"].append(m_b)
            samples["reference"].append(ref_b)
            samples["relative"].append(m_b / ref_b)
        with np.errstate(divide="ignore", over="ignore"):
            m = _dense_size(base.law, factor)
        fits[label] = FactorFit(
            label=str(label),
            S=s,
            factor=factor,
            reference_factor=float(size_factor(base.law, s)),
            alpha=alpha,
            dense_equivalent=float(m),
            reference=float(base.law.dense_equivalent(s)),
            objective=objective(pred, y, base.delta, base.log),
            residuals=residuals(pred, y, base.log),
            n_points=int(y.size),
            intervals=_intervals_of(samples, level) if base.bootstrap_laws else {},
        )
    return fits
