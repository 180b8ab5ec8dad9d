"""Sweeps: a grid of run configs -> the results store, resumable.

A `Grid` is a base config plus axes of overrides by dotted name; its runs are the product of
the axes (big_vision style), optionally with one group of `zipped` axes varied together, and
optionally `more` blocks: further products over the same base, for a design that is not one
full product (e.g. long data amounts only at the sizes where they reach a regime):

    name: vit-smoke
    base: {model: {family: vit}, data: {amount: 2048, batch: 32, eval_examples: 64}}
    axes: {sparsity.target: [0.0, 0.5], model.nonzero: [2000, 4000]}
    zipped: {optim.lr: [3.0e-3, 1.0e-3], optim.warmup: [0.05, 0.1]}   # optional
    more:                                                              # optional
      - axes: {data.amount: [8192], model.nonzero: [2000]}
    seed_per_point: true                                               # optional

With `seed_per_point`, every point gets its own init and data seed (`seed` = `data.seed` =
`point_seed(point)`, a hash of its overrides), so no two points share an initialisation or a
data order: a width's seed is not inherited by every sparsity trained at that width, and a
run's seed noise is not read as an effect of S, N or D.

Pruning a pretrained dense model takes two stages (`sparsekit.pretrained`): a point with
`init_from: pretrained` starts from the saved params of its dense model, whose config is the
point's at the same width and S = 0 with the top-level `pretrain` overrides applied:

    pretrain: {data.amount: 8192}        # stage 1: each such point's dense model, saved
    axes: {sparsity.target: [0.5], init_from: [pretrained]}

The grid then holds both stages; `sweep` runs the dense runs first, saving their params under
`<store>/checkpoints/<key>`, then the runs that start from them. `checkpoints: true` saves every
run's params there (e.g. to check n:m weights with `sparsekit.nmcheck`).

`sweep(grid, store)` runs the configs not yet in the store and reuses the others; before
training it prints how many runs it trains and reuses and their estimated time, from the
family's rate measured on the finished runs of this kind of machine (`estimate`), and
`plan(grid, store)` gives that line without training or writing anything. Runs execute
in this process (workers=1), in `workers` spawned processes (one fresh process per run, so a
crash or an out-of-memory kill fails that run only), or on a Dask cluster (`scheduler`). In
every case results come back to this process, which alone writes the store, one run at a time:
killing a sweep loses at most the last 15 minutes of each run in flight, and running it again
resumes: a run checkpoints its training state under `<store>/checkpoints/inflight/<key>/`
(`sparsekit.checkpoint`), continues from there, and the checkpoint is removed once the run is
stored. Ctrl-C stops it the same way and raises `SweepInterrupted`, which says what finished
and what was lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsekit import SWEEP_WORKER_ENV, checkpoint, pretrained, provenance
from sparsekit.config import RunConfig, check_field, make_config
from sparsekit.result import RunResult
from sparsekit.store import RUNS, DamagedResultWarning, Store, table

Runner = Callable[[RunConfig], RunResult]  # config -> result (see train.run)
Done = Iterator[RunResult]  # results, as runs finish


class GridError(ValueError):
    """A grid spec that cannot produce valid configs; raised when the grid is built."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: the finished runs are stored, the runs in flight are lost;
    the message says which (one line). Running the sweep again resumes."""


# --- grids ----------------------------------------------------------------------------------

SEED_FIELDS = ("seed", "data.seed")  # what `seed_per_point` sets


def point_seed(point: dict[str, Any]) -> int:
    """A seed in [0, 2^31) from a point's overrides (dotted name -> value): the first 31 bits
    of the sha256 of their JSON (keys sorted), so it depends on the point only, not on the
    grid's order or on which other points the grid holds."""
    text = json.dumps(point, sort_keys=True, separators=(",", ":"))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) >> 1


@dataclass(frozen=True)
class Grid:
    """A sweep: every combination of `axes` (and of the `zipped` group) over `base`.

    Built grids are valid: names, axes and every resulting config are checked at construction.
    """

    base: dict[str, Any]  # RunConfig dict, possibly partial (family recipe fills None fields)
    axes: dict[str, list] = field(default_factory=dict)  # dotted name -> values (product)
    zipped: dict[str, list] = field(default_factory=dict)  # dotted name -> values, varied
    # together (equal lengths); the group is one more factor of the product
    name: str = "grid"  # label for progress and summaries
    more: list[dict[str, Any]] = field(default_factory=list)  # further blocks over the same
    # base, each a mapping with `axes` and/or `zipped`; their points follow the main block's
    seed_per_point: bool = False  # each point's seed and data.seed = point_seed(its overrides)
    pretrain: dict[str, Any] | None = None  # dotted overrides that make the dense stage-1
    # config of every point with `init_from: pretrained` (see `sparsekit.pretrained`)
    checkpoints: bool = False  # save every run's final params to <store>/checkpoints/<key>

    def __post_init__(self) -> None:
        if not isinstance(self.base, dict):
            raise GridError(f"grid {self.name!r}: base must be a mapping (a config dict)")
        for group in ("axes", "zipped"):
            if not isinstance(getattr(self, group), dict):
                raise GridError(
                    f"grid {self.name!r}: {group} must be a mapping of dotted "
                    "config names to lists of values"
                )
            for axis, values in getattr(self, group).items():
                try:
                    check_field(axis)
                except ValueError as e:
                    raise GridError(f"grid {self.name!r}: axis {axis!r}: {e}") from None
                if not isinstance(values, list) or not values:
                    raise GridError(
                        f"grid {self.name!r}: axis {axis!r} needs a non-empty list "
                        f"of values, got {values!r}"
                    )
        if len({len(v) for v in self.zipped.values()}) > 1:
            sizes = {k: len(v) for k, v in self.zipped.items()}
            raise GridError(f"grid {self.name!r}: zipped axes need equal lengths, got {sizes}")
        both = self.axes.keys() & self.zipped.keys()
        if both:
            raise GridError(f"grid {self.name!r}: {sorted(both)} in both axes and zipped")
        if not isinstance(self.seed_per_point, bool):
            raise GridError(f"grid {self.name!r}: seed_per_point must be true or false, got "
                            f"{self.seed_per_point!r}")
        varied = (self.axes.keys() | self.zipped.keys()) & set(SEED_FIELDS)
        if self.seed_per_point and varied:
            raise GridError(f"grid {self.name!r}: seed_per_point sets {list(SEED_FIELDS)}; "
                            f"do not vary {sorted(varied)} too")
        if self.pretrain is not None:
            if not isinstance(self.pretrain, dict) or "init_from" in self.pretrain:
                raise GridError(f"grid {self.name!r}: pretrain must be a mapping of dotted "
                                f"config names to values (not init_from), got {self.pretrain!r}")
            for name in self.pretrain:
                try:
                    check_field(name)
                except ValueError as e:
                    raise GridError(f"grid {self.name!r}: pretrain {name!r}: {e}") from None
        self.blocks()  # each `more` block is checked as a grid of its own
        self.configs()  # fail now, not in the middle of a sweep

    def blocks(self) -> list[Grid]:
        """The `more` blocks, each as a Grid over this base (validated like one)."""
        if not isinstance(self.more, list):
            raise GridError(f"grid {self.name!r}: more must be a list of blocks (mappings with "
                            "axes and/or zipped)")
        blocks = []
        for i, block in enumerate(self.more):
            if not isinstance(block, dict) or not block or block.keys() - {"axes", "zipped"}:
                raise GridError(f"grid {self.name!r}: more[{i}] must be a mapping with axes "
                                f"and/or zipped, got {block!r}")
            blocks.append(Grid(self.base, name=f"{self.name} more[{i}]", pretrain=self.pretrain,
                               **block))
        return blocks

    def points(self) -> list[dict[str, Any]]:
        """The overrides of every point (dotted name -> value); the first axis varies slowest.
        With `seed_per_point`, each point also sets its seeds (see `point_seed`)."""
        factors = [[{axis: v} for v in values] for axis, values in self.axes.items()]
        if self.zipped:
            factors.append(
                [
                    dict(zip(self.zipped, vs, strict=True))
                    for vs in zip(*self.zipped.values(), strict=True)
                ]
            )
        own = [
            {k: v for part in combo for k, v in part.items()}
            for combo in itertools.product(*factors)
        ]
        if self.seed_per_point:
            own = [{**p, **dict.fromkeys(SEED_FIELDS, point_seed(p))} for p in own]
        return own + [point for block in self.blocks() for point in block.points()]

    def configs(self) -> list[RunConfig]:
        """One config per point; points that give the same config (same key) appear once.
        A point with `init_from: pretrained` comes after its dense stage-1 config."""
        configs: dict[str, RunConfig] = {}
        for point in self.points():
            try:
                cfg = make_config(self.base, point)
                if cfg.init_from == pretrained.PRETRAINED:
                    if self.pretrain is None:
                        raise ValueError("init_from: pretrained needs a top-level pretrain "
                                         "mapping (the dense stage's overrides; {} for none)")
                    dense = make_config(pretrained.dense_base(cfg), self.pretrain)
                    configs.setdefault(dense.key(), dense)
                    cfg = pretrained.link(cfg, dense)
            except ValueError as e:
                raise GridError(f"grid {self.name!r}, point {point}: {e}") from None
            configs.setdefault(cfg.key(), cfg)
        return list(configs.values())


@functools.cache
def yaml_loader() -> type:
    """A safe YAML loader that also reads 1e-3 as a float (YAML 1.1 needs 1.0e-3) and refuses
    a key given twice in one mapping (YAML keeps the last silently: two `axes:` blocks would
    drop the first)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    continue  # the base constructor refuses it, naming it
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}: a mapping holds each key once",
                        key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    exponent = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", exponent, list("-+.0123456789"))
    return Loader


def yaml_problem(error: Exception) -> str:
    """A YAML error in one line: what is wrong and where (line and column), without the
    quoted source lines PyYAML adds."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(error).split())
    context = getattr(error, "context", None)
    return (f"{context + ': ' if context else ''}{problem} (line {mark.line + 1}, "
            f"column {mark.column + 1})")


def load_grid(path: str | os.PathLike) -> Grid:
    """Read a grid YAML file (keys: name, base, axes, zipped, more, pretrain, checkpoints);
    GridError naming the file."""
    import yaml

    path = Path(path)
    try:
        spec = yaml.load(path.read_text(), Loader=yaml_loader())
    except yaml.YAMLError as e:
        raise GridError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(spec, dict):
        raise GridError(f"{path}: a grid file is a mapping with keys name, base, axes, zipped")
    unknown = spec.keys() - {f.name for f in dataclasses.fields(Grid)}
    if unknown:
        raise GridError(
            f"{path}: unknown keys {sorted(unknown)} (allowed: name, base, axes, zipped, more, "
            "pretrain, checkpoints)"
        )
    if "base" not in spec:
        raise GridError(f"{path}: missing 'base' (the config every run starts from)")
    spec.setdefault("name", path.stem)
    try:
        return Grid(**spec)
    except GridError as e:
        raise GridError(f"{path}: {e}") from None


# --- running one config ---------------------------------------------------------------------


def run_one(runner: Runner, cfg: RunConfig) -> RunResult:
    """`runner(cfg)`, with an exception turned into a failed result (so it gets stored)."""
    start = time.perf_counter()
    try:
        result = runner(cfg)
    except Exception as e:
        return RunResult.failed(cfg, f"{type(e).__name__}: {e}",
                                wall_time_s=time.perf_counter() - start,
                                traceback=traceback.format_exc())
    if result.key != cfg.key():
        return RunResult.failed(cfg, f"runner returned key {result.key!r}, expected {cfg.key()}",
                                wall_time_s=time.perf_counter() - start)
    return result


def _train_run(
    cfg: RunConfig, store: str | None = None, save: bool | frozenset[str] = False
) -> RunResult:
    """`train.run(cfg)`; with `store`, an init_from naming a stored run is resolved there, the
    params are saved to its checkpoints folder when `save` is True or holds the key, and the
    run resumes from and saves training checkpoints in `checkpoint.inflight_path`."""
    from sparsekit import train  # imports JAX: only where runs happen

    save_to, saves = None, None
    if store is not None:
        saves = checkpoint.Checkpoints(checkpoint.inflight_path(store, cfg.key()))
        if save is True or (save and cfg.key() in save):
            save_to = str(pretrained.checkpoint_path(store, cfg.key()))
    return train.run(cfg, store=store, save_to=save_to, checkpoints=saves)


# --- executors: each yields results as runs finish -----------------------------------------


def _in_process(todo: list[RunConfig], runner: Runner, running: dict[str, RunConfig]) -> Done:
    for cfg in todo:
        running[cfg.key()] = cfg
        result = run_one(runner, cfg)
        del running[cfg.key()]
        yield result


def _exit_with(parent: int) -> None:
    """Exit this worker once its parent is gone (a killed sweep must not leave runs going)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _child(runner: Runner, cfg: RunConfig, conn: Any, parent: int) -> None:
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    conn.send(run_one(runner, cfg))
    conn.close()


POLL_S = 0.1  # how often the sweep checks for a Ctrl-C that was recorded but not raised


def _swallows(frame: Any) -> bool:
    """Whether an exception raised in `frame` (a signal handler's interrupted frame) would be
    printed as "Exception ignored" and dropped: it runs inside one of `gc.callbacks` (JAX
    registers one) or a finalizer (`__del__`)."""
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _sigint_polled() -> Iterator[Callable[[], None]]:
    """Ctrl-C for the block (main thread only, and only where it raises KeyboardInterrupt
    now: an ignored SIGINT stays ignored): the first one raises KeyboardInterrupt where it
    lands, as Python's default does, unless that would drop it (`_swallows`), and every one is
    recorded. Yields `check`, which raises KeyboardInterrupt once one was recorded, so a
    Ctrl-C is never lost; later ones only record, so they cannot cut the cleanup short."""
    caught: list[int] = []

    def check() -> None:
        if caught:
            raise KeyboardInterrupt

    def handler(signum: int, frame: Any) -> None:
        first = not caught
        caught.append(signum)
        if first and not _swallows(frame):
            raise KeyboardInterrupt

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield check
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Start a worker, Ctrl-C held off (main thread only). The worker inherits SWEEP_WORKER_ENV,
    so `import sparsekit`, the first thing it imports, makes it ignore SIGINT: Ctrl-C, which
    the terminal sends to every process of the group, does not print a traceback from each
    worker; the sweep kills them. (A spawned process does not keep this thread's signal mask,
    so blocking SIGINT here does not do that.) In this process SIGINT is blocked meanwhile, so
    the start is not cut short; one that arrives is delivered to another thread (or stays
    pending): it is recorded and raised here on exit, once the caller has registered the
    worker, so it is not lost and the worker is killed with the others."""
    main = threading.current_thread() is threading.main_thread()
    caught: list[int] = []
    if main:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    os.environ[SWEEP_WORKER_ENV] = "1"
    try:
        yield
    finally:
        del os.environ[SWEEP_WORKER_ENV]
        if main:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending SIGINT arrives now
            signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _in_processes(
    todo: list[RunConfig], runner: Runner, running: dict[str, RunConfig], workers: int
) -> Done:
    """Up to `workers` runs at a time, each in a fresh spawned process (fork is unsafe once
    JAX has started threads). A Ctrl-C is recorded and raised between waits of at most
    POLL_S, after the runs that finished are stored (`_sigint_polled`)."""
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    queue, procs = list(reversed(todo)), {}
    with _sigint_polled() as check:
        try:
            while queue or procs:
                while queue and len(procs) < workers:
                    cfg = queue.pop()
                    recv, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(
                        target=_child, args=(runner, cfg, send, os.getpid()), daemon=True
                    )
                    start = time.perf_counter()
                    with _sigint_deferred():
                        proc.start()
                        send.close()  # so that recv sees EOF when the child dies
                        procs[recv] = (cfg, proc, start)
                        running[cfg.key()] = cfg
                for conn in wait(list(procs), timeout=POLL_S):
                    cfg, proc, start = procs.pop(conn)
                    del running[cfg.key()]
                    try:
                        result = conn.recv()
                    except EOFError:  # the child died without sending
                        result = None
                    conn.close()
                    proc.join()
                    yield result or RunResult.failed(
                        cfg, f"worker process died (exit code {proc.exitcode})",
                        wall_time_s=time.perf_counter() - start,
                    )
                check()  # after the finished runs are stored, before more start
        finally:  # a sweep stopped or failed: kill and reap the workers still running
            for _, proc, _ in procs.values():
                proc.kill()
                proc.join()


def _on_dask(
    todo: list[RunConfig], runner: Runner, running: dict[str, RunConfig], scheduler: str,
    workers: int,
) -> Done:
    """Runs as Dask tasks: on the cluster at `scheduler` (an address such as
    "tcp://host:8786"), or on a LocalCluster of `workers` single-threaded processes. Every
    submitted run counts as in flight until it finishes."""
    from dask.distributed import Client, LocalCluster, as_completed

    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
        futures = {client.submit(run_one, runner, cfg, pure=False): cfg for cfg in todo}
        running.update((cfg.key(), cfg) for cfg in todo)
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as e:  # e.g. KilledWorker after repeated worker crashes
                result = RunResult.failed(futures[future], f"dask: {type(e).__name__}: {e}")
            del running[futures[future].key()]
            yield result


# --- the cost of a sweep, before it runs ----------------------------------------------------


def work(cfg: RunConfig) -> int:
    """A run's training work: its data (tokens or images) x the block parameters of its
    dense-width model. Time per unit of work is about constant for a family on one machine
    (a step's matmuls scale with both), so it measures the family's rate."""
    return cfg.data.amount * cfg.family().block_params(cfg.width())


@dataclass(frozen=True)
class Rate:
    """A family's measured run time on this kind of machine: `startup` + `seconds` x work."""

    family: str
    startup: float  # seconds a run takes besides its work: building, compiling, evaluating
    seconds: float  # seconds per unit of work
    runs: int  # the finished runs it is measured on
    where: str  # the store(s) they are in

    def time(self, cfg: RunConfig) -> float:
        """The estimated seconds of one run."""
        return self.startup + self.seconds * work(cfg)


def _same_machine(machine: Mapping[str, Any] | None) -> bool:
    """Whether a result's `machine` is this kind: same CPU count and (where recorded) model."""
    machine = machine or {}
    return machine.get("cpus") == os.cpu_count() and machine.get(
        "cpu", provenance.cpu_model()) == provenance.cpu_model()


def measured_rate(family: str, results: Iterable[RunResult], where: str) -> Rate | None:
    """The family's rate from the finished `results` that ran on this kind of machine: a
    least-squares line of wall time against work (per-run start-up and time per unit), or,
    where that is not positive in both (one run, or too few to tell), the summed wall time
    over the summed work with no start-up; None without such a run. On the committed stores
    (this 2-CPU machine) the line gets each store's summed time within 0.37-1.65x (t5 0.90x,
    vit 1.24x); the ratio alone within 0.32-2.86x."""
    import numpy as np

    runs = [r for r in results if r.status == "ok" and r.family == family and r.dense_block
            and r.D and r.wall_time_s > 0 and _same_machine(r.machine)]
    if not runs:
        return None
    units = np.array([r.D * r.dense_block for r in runs], float)
    times = np.array([r.wall_time_s for r in runs])
    if len(set(units)) > 1:
        seconds, startup = np.polyfit(units, times, 1)
        if startup >= 0 and seconds > 0:
            return Rate(family, float(startup), float(seconds), len(runs), where)
    return Rate(family, 0.0, float(times.sum() / units.sum()), len(runs), where)


def family_rate(family: str, store: Store, stored: Iterable[RunResult]) -> Rate | None:
    """The family's rate from the store's own runs (`stored`), or where it has none, from the
    stores beside it (the other directories with runs/ in its parent, e.g. results/*)."""
    rate = measured_rate(family, stored, str(store.path))
    if rate is not None:
        return rate
    beside = [Store(p.parent) for p in sorted(store.path.parent.glob(f"*/{RUNS}"))
              if p.parent != store.path]
    with warnings.catch_warnings():  # a damaged file beside is that store's business
        warnings.simplefilter("ignore", DamagedResultWarning)
        results = [r for s in beside for r in s.results(strict=False)]
    return measured_rate(family, results, f"{store.path.parent}/*")


def duration(seconds: float) -> str:
    """A time for a person: "40 s", "12 min", "3.4 h"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def estimate(todo: list[RunConfig], store: Store, stored: Iterable[RunResult]) -> str:
    """What training `todo` will take, one run after another, from each family's measured
    rate (`family_rate`), e.g. "estimated 9.0 h of training (t5: 181 s + 7.31e-11 s per token
    x block parameter a run, from 92 runs in results/t5)"; without a rate, says there is none
    yet. Workers > 1 share this machine's CPUs, so they shorten it by less than their count."""
    if not todo:
        return "nothing to train"
    stored, total, rates = list(stored), 0.0, []
    for family in sorted({c.model.family for c in todo}):
        rate = family_rate(family, store, stored)
        if rate is None:
            return (f"no time estimate: no finished {family} run on this kind of machine in "
                    f"{store.path} or beside it to measure its rate (the first runs will)")
        total += sum(rate.time(c) for c in todo if c.model.family == family)
        unit = {"t5": "token", "vit": "image"}[family]
        rates.append(f"{family}: {rate.startup:.0f} s + {rate.seconds:.3g} s per {unit} x "
                     f"block parameter a run, from {rate.runs} runs in {rate.where}")
    return f"estimated {duration(total)} of training ({'; '.join(rates)})"


def plan_line(name: str, configs: list[RunConfig], todo: list[RunConfig], store: Store,
              stored: Iterable[RunResult]) -> str:
    """The line a sweep prints before training: runs, reused, to run, estimated time."""
    return (f"{name}: {len(configs)} runs, {len(configs) - len(todo)} reused from {store.path}, "
            f"{len(todo)} to run; {estimate(todo, store, stored)}")


def plan(grid: Grid | Iterable[RunConfig], store: str | os.PathLike | Store, *,
         reuse: bool = True, retry_failed: bool = False, name: str | None = None) -> str:
    """What `sweep` with the same arguments would do, as the line it prints first (runs to
    train and to reuse, estimated time), without training or writing anything: the store is
    only read (a damaged run file counts as to run, with a warning)."""
    configs = (
        grid.configs() if isinstance(grid, Grid) else list({c.key(): c for c in grid}.values())
    )
    name = name or (grid.name if isinstance(grid, Grid) else "sweep")
    store = store if isinstance(store, Store) else Store(store)
    stored = {r.key: r for r in store.results(strict=False)}
    todo = [c for c in configs if _needs_run(stored.get(c.key()), reuse, retry_failed)]
    return plan_line(name, configs, todo, store, stored.values())


# --- the sweep ------------------------------------------------------------------------------


def _needs_run(stored: RunResult | None, reuse: bool, retry_failed: bool) -> bool:
    if stored is None or not reuse:
        return True
    return stored.status != "ok" and retry_failed


def _describe(key: str, config: Mapping[str, Any]) -> str:
    """A run in one line: its key, family, N (or width), S and D."""
    size = config["model"]["nonzero"] or f"width {config['model']['width']}"
    return (
        f"{key} ({config['model']['family']} N={size} "
        f"S={config['sparsity']['target']} D={config['data']['amount']})"
    )


def sweep(
    grid: Grid | Iterable[RunConfig],
    store: str | os.PathLike | Store,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    reuse: bool = True,
    retry_failed: bool = False,
    progress: bool = True,
    runner: Runner | None = None,
    name: str | None = None,
):
    """Run the grid's configs that the store lacks, reuse the others; returns a DataFrame of
    the grid's rows (one per config, grid order; see `store.table`).

    Configs that start from a stored run (`init_from: "run:<key>"`, from a grid's
    `init_from: pretrained`) run after all the others, and the runs they start from have their
    params saved under `<store>/checkpoints/` (see `sparsekit.pretrained`).

    workers: runs at once. Without `scheduler`: 1 = in this process, more = one spawned
        process per run. With scheduler="local": the size of the Dask LocalCluster.
    scheduler: None (local), "local" (a Dask LocalCluster) or a Dask scheduler address.
    reuse: False recomputes every run and replaces the stored result.
    retry_failed: also rerun configs whose stored result has status "failed".
    runner: config -> RunResult; default `train.run`. Must be picklable (a module-level
        function) for workers > 1 or Dask.
    name: label for progress (default: the grid's name).
    """
    from tqdm import tqdm  # the text bar: tqdm.auto warns in kernels without ipywidgets

    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    configs = (
        grid.configs() if isinstance(grid, Grid) else list({c.key(): c for c in grid}.values())
    )
    name = name or (grid.name if isinstance(grid, Grid) else "sweep")
    store = store if isinstance(store, Store) else Store(store)
    save = isinstance(grid, Grid) and grid.checkpoints
    first, second = pretrained.stages(configs)
    if second:
        needed = {pretrained.referenced_key(c.init_from) for c in second}
        runner = runner or functools.partial(_train_run, store=str(store.path),
                                             save=save or frozenset(needed))
        again = pretrained.missing_checkpoints(first, store.path, needed)
        kw = dict(workers=workers, scheduler=scheduler, retry_failed=retry_failed,
                  progress=progress, runner=runner)
        sweep([c for c in first if c not in again], store, reuse=reuse, name=f"{name} stage 1",
              **kw)
        if again:  # stored without their checkpoints (not committed): trained again to save them
            sweep(again, store, reuse=False, name=f"{name} stage 1 (checkpoints)", **kw)
        sweep(second, store, reuse=reuse, name=f"{name} stage 2", **kw)
        return table(store.get(c.key()) for c in configs)
    if runner is None:
        runner = functools.partial(_train_run, store=str(store.path), save=save)
    with store.lock():
        store.clean()
        store.set_aside()  # damaged run files: moved to runs/damaged/, their points rerun
        stored = {r.key: r for r in store.results()}
        store.write_table(stored.values())  # repairs a table left stale by a killed sweep
        todo = [c for c in configs if _needs_run(stored.get(c.key()), reuse, retry_failed)]
        if progress:
            print(plan_line(name, configs, todo, store, stored.values()), file=sys.stderr)
        if todo:
            provenance.warn_if_drifted()
        running: dict[str, RunConfig] = {}  # the executor's runs in flight, by key
        if scheduler is not None:
            done = _on_dask(todo, runner, running, scheduler, workers)
        elif workers > 1:
            done = _in_processes(todo, runner, running, workers)
        else:
            done = _in_process(todo, runner, running)
        finished = 0
        try:
            with (
                tqdm(total=len(todo), desc=name, unit="run", disable=not progress) as bar,
                contextlib.closing(done),
            ):
                for result in done:
                    store.put(result)
                    checkpoint.discard(store.path, result.key)  # its training checkpoint
                    stored[result.key] = result
                    store.write_table(stored.values())
                    finished += 1
                    bar.update()
                    if result.status == "ok":
                        bar.set_postfix_str(f"last loss {result.loss:.4g}")
                    else:
                        bar.write(f"failed: {_describe(result.key, result.config)}: "
                                  f"{result.error}")
        except KeyboardInterrupt:
            raise SweepInterrupted(
                _interrupted(name, store, finished, len(todo), list(running.values()))
            ) from None
    return table(stored[c.key()] for c in configs)


def _interrupted(
    name: str, store: Store, finished: int, todo: int, running: list[RunConfig]
) -> str:
    """One line for a sweep stopped by Ctrl-C: what finished, what was lost."""
    lost = ", ".join(_describe(c.key(), c.to_dict()) for c in running[:3])
    more = f" and {len(running) - 3} more" if len(running) > 3 else ""
    flight = f"interrupted {lost}{more}" if running else "no run was in flight"
    return (
        f"{name}: interrupted: {finished} of {todo} runs finished and stored in {store.path}; "
        f"{flight}; {todo - finished - len(running)} not started"
    )
