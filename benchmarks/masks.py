"""Mask functions vs sort-based references, side by side (jitted, checked equal).

    .venv/bin/python benchmarks/masks.py            # 64K .. 16M entries, ~2-4 min on 2 CPU cores
    .venv/bin/python benchmarks/masks.py --quick    # 64K .. 1M

Scores are |N(0, 1)| float32 kernels of shape (size / 1024, 1024); n:m groups run along axis 0
(the input axis). `unstructured` gets its sparsity (0.9) as a traced argument, as the
pruning wrapper passes a schedule's value. Times are medians over --repeats calls after a
compiling warm-up. `speedup` is the ratio of wall times; `cpu` the ratio of process CPU
times, which moves less when other jobs share the cores.
"""

import argparse
import os
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sparsekit import masks

SPARSITY = 0.9
NM_PATTERNS = [(2, 4), (4, 8), (1, 4)]


@jax.jit
def sort_unstructured(scores: jax.Array, sparsity: jax.Array) -> jax.Array:
    """Full argsort of the flattened tensor, as common pruning libraries do."""
    flat = scores.reshape(-1)
    order = jnp.argsort(-flat, stable=True)
    keep = jnp.arange(flat.size) < masks.kept_count(flat.size, sparsity)
    return jnp.zeros(flat.size, bool).at[order].set(keep).reshape(scores.shape)


@partial(jax.jit, static_argnums=(1, 2))
def sort_nm(scores: jax.Array, n: int, m: int) -> jax.Array:
    """Argsort inside each group of m rows, then mark the first n."""
    groups = scores.reshape(-1, m, scores.shape[1])
    best = jnp.argsort(-groups, axis=1, stable=True)[:, :n]
    mask = jnp.put_along_axis(jnp.zeros(groups.shape, bool), best, True, axis=1, inplace=False)
    return mask.reshape(scores.shape)


def median_ms(fn, *args, repeats: int) -> tuple[float, float, jax.Array]:
    """Median wall and process-CPU milliseconds per call, and the call's output."""
    out = jax.block_until_ready(fn(*args))  # compile
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only 64K, 256K and 1M entries")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell")
    args = parser.parse_args()
    sizes = [2**16, 2**18, 2**20] + ([] if args.quick else [2**22, 2**24])

    ours_unstructured = jax.jit(masks.unstructured)
    ours_nm = jax.jit(masks.nm, static_argnums=(1, 2))
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'entries':>10} {'mask':<21} {'ours ms':>9} {'sort ms':>9} {'speedup':>8} {'cpu':>7}")
    for size in sizes:
        scores = jnp.abs(jax.random.normal(jax.random.key(size), (size // 1024, 1024)))
        sparsity = jnp.float32(SPARSITY)
        cases = [(f"unstructured s={SPARSITY}", ours_unstructured, sort_unstructured, sparsity)]
        cases += [(f"nm {n}:{m} axis 0", ours_nm, sort_nm, n, m) for n, m in NM_PATTERNS]
        for name, ours, reference, *rest in cases:
            call_args = (scores, *rest)
            ours_ms, ours_cpu, got = median_ms(ours, *call_args, repeats=args.repeats)
            sort_ms, sort_cpu, expected = median_ms(reference, *call_args, repeats=args.repeats)
            assert np.array_equal(got, expected), f"{name} at {size} entries differs from sort"
            print(
                f"{size:>10,} {name:<21} {ours_ms:>9.2f} {sort_ms:>9.1f} "
                f"{sort_ms / ours_ms:>7.1f}x {sort_cpu / ours_cpu:>6.1f}x",
                flush=True,
            )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
