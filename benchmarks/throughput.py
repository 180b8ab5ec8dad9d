"""Training throughput per family and size, against this machine's dense matmul peak.

For each family and dense width of the default grids: tokens (T5: encoder input tokens) or
images per second of the real training step (data generation included, as in a run), the
achieved FLOP/s (training matmul FLOPs = 3x the forward count of `Family.flops_per_example`)
and its ratio to the float32 matmul peak measured in the same run. Next to it, the FLOP/s of
one matmul with the model's own MLP shape (tokens per step x width @ width x MLP width): the
ceiling a step of this size can reach, which explains a low ratio for narrow models. Also the
share of the step spent generating data.

    python benchmarks/throughput.py [--family t5|vit] [--widths 32 64 144] [--chunks 3]
                                    [--attention-share]
    python benchmarks/throughput.py --grid GRID.yaml [--grid OTHER.yaml ...] [--chunks 3]

--grid measures, side by side in one run, the base recipe of each grid file (its data
source, batch, depth, optimizer) at every dense width the grid trains, and estimates the
grid's summed run time: for each run, its steps at the measured rate of its width plus the
measured start-up (building the run and compiling its step). Where a grid's store is named
by --store (same order as --grid) and holds its runs, the actual summed run time is printed
beside the estimate: their ratio calibrates the estimate of a grid not yet run, measured in
the same run on the same (possibly shared) machine. --calibration-widths measures a stored grid
at those widths only (and compares its runs at them), to save time:

    python benchmarks/throughput.py --grid sweeps/archive/vit-fractal64/vit.yaml \
        --store results/archive/vit-fractal64/vit --grid sweeps/vit.yaml \
        --calibration-widths 16 56 --chunks 2

--attention-share also trains each model with the attention scores, softmax and weighted
values replaced by a cheap stand-in (same projections, no L x L work) and prints the share of
the step they take: a diagnosis of what keeps a step below its matmul ceiling.

The default widths end at 144, the widest model of the default grids (ViT, 87.5% sparse at
N = 128K; the widest T5 is 136).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import jax

from sparsekit.config import Data, Model, RunConfig
from sparsekit.models import layers
from sparsekit.train import Trainer, plan, stack

CHUNK = 25


def matmul_flops(rows: int, inner: int, cols: int, repeats: int = 10) -> float:
    """Float32 FLOP/s of a jitted (rows x inner) @ (inner x cols) matmul (median of repeats)."""
    x = jax.random.normal(jax.random.key(0), (rows, inner))
    w = jax.random.normal(jax.random.key(1), (inner, cols))
    f = jax.jit(lambda a: a @ w)
    jax.block_until_ready(f(x))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - t0)
    return 2 * rows * inner * cols / statistics.median(times)


@contextlib.contextmanager
def attention_stand_in():
    """Within: every Attention keeps its q/k/v/o projections but mixes keys and values by a
    mean over positions instead of scores, softmax and weighted values (no L x L work)."""

    def call(self, x, memory, mask=None, bias=None):
        k, v = self.k(memory), self.v(memory)
        return self.o(self.q(x) + (k + v).mean(axis=1, keepdims=True))

    original = layers.Attention.__call__
    layers.Attention.__call__ = call
    try:
        yield
    finally:
        layers.Attention.__call__ = original


def measure(family: str, width: int, chunks: int, base: RunConfig | None = None) -> dict:
    """Steady-state throughput of training a dense model of this width (with `base`: that
    config's recipe and data at this width), and its start-up time in seconds (building the
    run, compiling its step and, with `base`, the final evaluation, beyond one steady chunk)."""
    if base is None:
        cfg = RunConfig(model=Model(family, width=width), data=Data(amount=10**7, eval_examples=8))
    else:
        cfg = base.replace(**{"model.width": width, "model.nonzero": None, "model.exact": False,
                          "sparsity.target": 0.0})
    start = time.perf_counter()
    trainer = Trainer(cfg)
    step = 0

    def one_chunk() -> tuple[float, float]:
        nonlocal step
        t0 = time.perf_counter()
        batches = stack([trainer.source.train_batch(step + i, trainer.plan.batch)
                          for i in range(CHUNK)])
        t1 = time.perf_counter()
        trainer.params, trainer.opt_state, ce = trainer._chunk(trainer.params,
                                                               trainer.opt_state, batches)
        jax.block_until_ready(ce)
        step += CHUNK
        return t1 - t0, time.perf_counter() - t1

    one_chunk()  # compile
    if base is not None:  # a run ends with its validation loss
        trainer.evaluate()
    first = time.perf_counter() - start
    data_t, step_t = zip(*(one_chunk() for _ in range(chunks)), strict=True)
    per_step = (statistics.median(data_t) + statistics.median(step_t)) / CHUNK
    flops = 3 * trainer.fam.flops_per_example(width) * trainer.plan.batch
    rows = round(trainer.fam.block_tokens * trainer.plan.batch)
    return {"shape_flops_per_s": matmul_flops(rows, width, trainer.fam.mlp_width(width)),
            "family": family, "width": width, "block_params": trainer.fam.block_params(width),
            "units_per_s": trainer.plan.units_per_step / per_step, "unit": trainer.source.unit,
            "flops_per_s": flops / per_step, "startup_s": first - CHUNK * per_step,
            "data_share": statistics.median(data_t) / (CHUNK * per_step)}


def grid_runs(path: str) -> tuple[RunConfig, list[tuple[int, int]]]:
    """A grid's first config and (width, units trained) of each of its runs."""
    from sparsekit.data import make_source
    from sparsekit.sweep import load_grid

    configs = load_grid(path).configs()
    runs, sources = [], {}
    for cfg in configs:
        options = dict(cfg.data.options)
        key = repr(sorted(options.items()))
        if key not in sources:
            sources[key] = make_source(cfg.model.family, eval_examples=8, **options)
        source = sources[key]
        p = plan(cfg, source)
        runs.append((p.width, p.data_seen))
    return configs[0], runs


def grid_cost(paths: list[str], stores: list[str], chunks: int,
              calibration_widths: list[int] | None = None) -> None:
    """Print each grid's rates per width and its estimated cost; for a grid with a stored
    store, its actual summed run time beside the estimate (with `calibration_widths`, both over
    its runs at those widths only, which are all that is measured), and for the others the
    estimate scaled by that actual / estimate ratio."""
    from sparsekit.store import load

    print(f"{'grid':>34} {'width':>6} {'units/s':>10} {'start-up s':>10} {'data share':>10}")
    lines, ratios, estimates = [], [], {}
    for i, path in enumerate(paths):
        base, runs = grid_runs(path)
        table = load(stores[i], allow_empty=True) if i < len(stores) else None
        stored = table is not None and len(table) > 0
        if stored and calibration_widths:
            runs = [(w, units) for w, units in runs if w in calibration_widths]
            table = table[table["width"].isin(calibration_widths)]
        rates = {}
        for width in sorted({w for w, _ in runs}):
            r = measure(base.model.family, width, chunks, base)
            rates[width] = r
            print(f"{path:>34} {width:>6} {r['units_per_s']:>10,.0f} {r['startup_s']:>10.1f} "
                  f"{r['data_share']:>10.1%}", flush=True)
        estimate = sum(units / rates[w]["units_per_s"] + rates[w]["startup_s"] for w, units in runs)
        line = f"{path}: {len(runs)} runs, estimated {estimate / 3600:.2f} h summed run time"
        if stored:
            actual = float(table["wall_time_s"].sum())
            ratios.append(actual / estimate)
            line += (f"; its store {stores[i]}: {len(table)} of those runs took "
                     f"{actual / 3600:.2f} h (actual / estimate {actual / estimate:.2f})")
        else:
            estimates[path] = estimate
        lines.append(line)
    print("\n".join(lines))
    if ratios:
        ratio = statistics.mean(ratios)
        for path, estimate in estimates.items():
            print(f"{path}: calibrated estimate {estimate * ratio / 3600:.2f} h summed run time "
                  f"(x {ratio:.2f}, the stored grids' actual / estimate)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=["t5", "vit"], action="append")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 144])
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--attention-share", action="store_true")
    ap.add_argument("--grid", action="append", default=[], help="grid YAML: estimate its cost")
    ap.add_argument("--store", action="append", default=[], help="store of the n-th --grid")
    ap.add_argument("--calibration-widths", type=int, nargs="+",
                    help="with --grid: measure a stored grid at these widths only")
    args = ap.parse_args()
    peak = matmul_flops(1024, 1024, 1024)
    print(f"{jax.default_backend()} float32 matmul peak (1024^2): {peak / 1e9:.1f} GFLOP/s")
    if args.grid:
        grid_cost(args.grid, args.store, args.chunks, args.calibration_widths)
        return
    print(f"{'family':>6} {'width':>6} {'block params':>12} {'units/s':>10} {'unit':>7} "
          f"{'GFLOP/s':>8} {'of peak':>8} {'MLP-shape matmul':>17} {'data share':>10}"
          + (f" {'attention share':>15}" if args.attention_share else ""))
    for family in args.family or ["t5", "vit"]:
        for width in args.widths:
            r = measure(family, width, args.chunks)
            print(f"{family:>6} {width:>6} {r['block_params']:>12,} {r['units_per_s']:>10,.0f} "
                  f"{r['unit']:>7} {r['flops_per_s'] / 1e9:>8.1f} "
                  f"{r['flops_per_s'] / peak:>8.1%} {r['shape_flops_per_s'] / peak:>17.1%} "
                  f"{r['data_share']:>10.1%}", end="")
            if args.attention_share:
                with attention_stand_in():
                    rest = measure(family, width, args.chunks)
                print(f" {1 - r['units_per_s'] / rest['units_per_s']:>15.1%}", end="")
            print()


if __name__ == "__main__":
    main()
