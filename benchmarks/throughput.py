"""Training throughput per family and size, against this machine's dense matmul peak.

For each family and dense width of the default grids: tokens (T5: encoder input tokens) or
images per second of the real training step (data generation included, as in a run), the
achieved FLOP/s (training matmul FLOPs = 3x the forward count of `Family.flops_per_example`)
and its ratio to the float32 matmul peak measured in the same run. Also the data
generators' own throughput, so it can be read next to the step's.

    python benchmarks/throughput.py [--family t5|vit] [--widths 32 64 128] [--chunks 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from sparsekit.config import Data, Model, RunConfig
from sparsekit.train import Trainer, _flops, _stack

CHUNK = 25


def matmul_peak(size: int = 1024, repeats: int = 10) -> float:
    """Float32 FLOP/s of a jitted size x size matmul (median of repeats)."""
    a = jax.random.normal(jax.random.key(0), (size, size))
    f = jax.jit(lambda x: x @ a)
    jax.block_until_ready(f(a))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times)


def measure(family: str, width: int, chunks: int) -> dict:
    """Steady-state throughput of training a dense model of this width."""
    cfg = RunConfig(model=Model(family, width=width), data=Data(amount=10**7, eval_examples=8))
    trainer = Trainer(cfg)
    step = 0

    def one_chunk() -> tuple[float, float]:
        nonlocal step
        t0 = time.perf_counter()
        batches = _stack([trainer.source.train_batch(step + i, trainer.plan.batch)
                          for i in range(CHUNK)])
        t1 = time.perf_counter()
        trainer.params, trainer.opt_state, ce = trainer._chunk(trainer.params,
                                                               trainer.opt_state, batches)
        jax.block_until_ready(ce)
        step += CHUNK
        return t1 - t0, time.perf_counter() - t1

    one_chunk()  # compile
    data_t, step_t = zip(*(one_chunk() for _ in range(chunks)), strict=True)
    per_step = (statistics.median(data_t) + statistics.median(step_t)) / CHUNK
    flops = 3 * _flops(trainer.fam, width, trainer.source) * trainer.plan.batch
    return {"family": family, "width": width, "block_params": trainer.fam.block_params(width),
            "units_per_s": trainer.plan.units_per_step / per_step, "unit": trainer.source.unit,
            "flops_per_s": flops / per_step,
            "data_share": statistics.median(data_t) / (CHUNK * per_step)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=["t5", "vit"], action="append")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--chunks", type=int, default=3)
    args = ap.parse_args()
    peak = matmul_peak()
    print(f"{jax.default_backend()} float32 matmul peak (1024^2): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'family':>6} {'width':>6} {'block params':>12} {'units/s':>10} {'unit':>7} "
          f"{'GFLOP/s':>8} {'of peak':>8} {'data share':>10}")
    for family in args.family or ["t5", "vit"]:
        for width in args.widths:
            r = measure(family, width, args.chunks)
            print(f"{family:>6} {width:>6} {r['block_params']:>12,} {r['units_per_s']:>10,.0f} "
                  f"{r['unit']:>7} {r['flops_per_s'] / 1e9:>8.1f} "
                  f"{r['flops_per_s'] / peak:>8.1%} {r['data_share']:>10.1%}")


if __name__ == "__main__":
    main()
