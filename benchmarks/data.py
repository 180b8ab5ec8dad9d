"""Data throughput of each generator at realistic batch sizes, to set beside the training step's.

    .venv/bin/python benchmarks/data.py [--steps 50]

Prints, per source and batch size: setup time (corpus load or class table), the first call
(compilation), then the median and best wall time and the mean CPU time of one training batch
over `--steps` distinct steps, and examples/s and tokens/s (T5) or images/s (ViT) at the
median. A training step of a small model
takes about 20-100 ms on a 2-core CPU; the data for one step should take well under that.
"""

import argparse
import time

import numpy as np

from sparsekit.data import DataSource, make_source

CASES = (  # (family, options, batch sizes)
    ("t5", {"input_length": 128}, (32, 64)),
    ("t5", {"input_length": 512}, (8, 128)),
    ("vit", {}, (128,)),
)


def bench(source: DataSource, batch_size: int, steps: int) -> tuple[float, float, float, float]:
    """(first-call s, median s, best s, mean CPU s) of `train_batch` over distinct steps.

    CPU time (all threads) is the robust number on a shared machine; wall time is what the
    training loop waits for when nothing else runs.
    """
    start = time.perf_counter()
    source.train_batch(0, batch_size)
    first = time.perf_counter() - start
    times = []
    cpu = time.process_time()
    for step in range(1, steps + 1):
        start = time.perf_counter()
        source.train_batch(step, batch_size)
        times.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu) / steps
    return first, float(np.median(times)), min(times), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed batches per case")
    steps = parser.parse_args().steps
    print(
        f"{'source':<14}{'batch':>6}{'setup s':>9}{'first s':>9}{'median ms':>11}"
        f"{'best ms':>9}{'cpu ms':>8}{'examples/s':>12}{'units/s':>12}"
    )
    for family, options, batch_sizes in CASES:
        start = time.perf_counter()
        source = make_source(family, **options)
        setup = time.perf_counter() - start
        name = f"{family} {options.get('input_length', 'fractal')}"
        for batch_size in batch_sizes:
            first, median, best, cpu = bench(source, batch_size, steps)
            rate = batch_size / median
            print(
                f"{name:<14}{batch_size:>6}{setup:>9.2f}{first:>9.2f}{median * 1e3:>11.2f}"
                f"{best * 1e3:>9.2f}{cpu * 1e3:>8.2f}{rate:>12,.0f}"
                f"{rate * source.units_per_example:>12,.0f}"
            )
            setup = 0.0  # paid once per source
        start = time.perf_counter()
        source.eval_set()
        print(f"{name:<14}{'eval':>6}  eval set built in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
