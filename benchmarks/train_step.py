"""Masking overhead: time of a masked training step vs the same step dense.

Same model, same batch, same inner optimizer (clip + AdamW); "masked" wraps it with
`pruning.sparsify` inside its pruning window (50% target, masks recomputed every `--every`
steps, default 10 as in the default grids, so the amortised cost of mask updates is
included). Steps run in chunks of 50 inside one
`lax.scan`, as in training. Timings are interleaved and the median of several repeats is
reported, so both sides see the same machine load. Target: overhead under 5%.

    python benchmarks/train_step.py [--family t5|vit] [--width 64] [--every 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsekit.config import RECIPES, Optim
from sparsekit.models import get_family, kinds
from sparsekit.optim import make_optimizer
from sparsekit.pruning import sparsify
from sparsekit.schedules import Cubic
from sparsekit.train import make_chunk, pure_loss

CHUNK = 50


def batches(family: str, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A chunk of random batches in the family's format (content does not change timing)."""
    if family == "vit":
        return {"image": rng.random((CHUNK, batch, 32, 32, 3), np.float32),
                "label": rng.integers(0, 10, (CHUNK, batch), np.int32)}
    return {"inputs": rng.integers(3, 259, (CHUNK, batch, 128), np.int32),
            "targets": rng.integers(3, 259, (CHUNK, batch, 32), np.int32)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="t5", choices=["t5", "vit"])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--every", type=int, default=10, help="mask update interval, steps")
    args = ap.parse_args()

    fam = get_family(args.family)
    model = fam.make(args.width, nnx.Rngs(0))
    labels = kinds(model)
    graphdef, state = nnx.split(model)
    treedef = jax.tree.structure(state)
    params = nnx.to_pure_dict(state)
    loss = pure_loss(graphdef, treedef, fam.loss(RECIPES[args.family]["z_loss"]))
    total = 20 * CHUNK
    inner = make_optimizer(Optim(lr=1e-3, decay_to=0.0, b2=0.99, weight_decay=0.1), total, labels,
                           args.width)
    # Start inside the pruning window (step 250 of 1000) so mask updates happen while timed.
    masked = sparsify(inner, schedule=Cubic(0.5, every=args.every), total_steps=total,
                      labels=labels)
    data = batches(args.family, args.batch, np.random.default_rng(0))

    runs = {}
    for name, opt in (("dense", inner), ("masked", masked)):
        chunk = make_chunk(loss, opt)
        state0 = opt.init(params)
        if name == "masked":
            state0 = state0._replace(count=jnp.asarray(250, jnp.int32))
        runs[name] = [chunk, jax.tree.map(jnp.array, params), state0]
        p, s, ce = chunk(runs[name][1], runs[name][2], data)  # compile
        jax.block_until_ready(ce)
        runs[name][1:] = [p, s]

    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (chunk, p, s) in runs.items():
            t0 = time.perf_counter()
            p, s, ce = chunk(p, s, data)
            jax.block_until_ready(ce)
            times[name].append((time.perf_counter() - t0) / CHUNK)
            runs[name][1:] = [p, s]

    dense, masked_t = statistics.median(times["dense"]), statistics.median(times["masked"])
    print(f"{args.family} width {args.width}, batch {args.batch}, masks every {args.every} steps, {fam.block_params(args.width)} "
          f"block params, {jax.default_backend()}; median of {args.repeats} x {CHUNK} steps")
    print(f"{'step':>8} {'ms/step':>9}")
    print(f"{'dense':>8} {1e3 * dense:9.2f}")
    print(f"{'masked':>8} {1e3 * masked_t:9.2f}")
    print(f"masking overhead: {100 * (masked_t / dense - 1):+.1f}% (target < 5%)")


if __name__ == "__main__":
    main()
