"""Runs whose answers are known, shared by the analysis tests.

`paper_runs`: runs drawn from the paper's T5 law (Table 1, `PAPER_T5`) on its own grid: S in
{0, 0.5, 0.75, 0.875}, N = 1M to 32M non-zeros (2x apart), D = 1.6e10 / 3.3e10 / 6.6e10
tokens, two seeds, each loss times exp(0.1% noise); variants make the loss independent of S,
or let the sparse-dense gap halve with each doubling of D. Bootstraps are small (BOOTSTRAP
refits) to stay fast.

`two_stage` and `stored`: a tiny two-stage (dense, then pruned) T5 grid and its results as
store rows; `pretrained_case`: pruned-pretrained runs on a from-scratch curve L = 10 D^-0.1
whose data ratio is known (claim 10).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from sparsekit.analysis.figures import count
from sparsekit.analysis.runs import Runs, runs_from_table
from sparsekit.config import RunConfig
from sparsekit.laws import PAPER_T5
from sparsekit.sweep import Grid

SIZES = np.geomspace(1e6, 32e6, 6)  # non-zero parameters
DATA = (1.6e10, 3.3e10, 6.6e10)  # tokens
LEVELS = (0.0, 0.5, 0.75, 0.875)
BOOTSTRAP = 10


def paper_runs(kind: str = "law", *, seed: int = 0, sizes=SIZES) -> pd.DataFrame:
    """Runs drawn from PAPER_T5 ("law"), with the loss of the dense model at every S ("flat"),
    or with the law's sparse-dense gap halving with each doubling of D ("halves")."""
    rng = np.random.default_rng(seed)
    rows = []
    for S, N, D, s in itertools.product(LEVELS, sizes, DATA, (0, 1)):
        dense, sparse = (float(PAPER_T5.predict(x, N, D)) for x in (0.0, S))
        loss = {"law": sparse, "flat": dense, "halves": dense + (sparse - dense) * DATA[0] / D}
        rows.append({"family": "t5", "sparsity": S, "N": N, "D": D, "seed": s,
                     "loss": loss[kind] * np.exp(rng.normal(0.0, 1e-3))})
    return pd.DataFrame(rows)


# T5 at N 4000: 8 steps of 4 examples x 128 tokens (4096 tokens); masks every 2 steps
BASE = {"model": {"family": "t5", "nonzero": 4000},
        "data": {"amount": 4096, "batch": 4, "eval_examples": 16},
        "sparsity": {"target": 0.5, "every": 2}}
PRETRAIN = {"data.amount": 8192}  # the dense model: 16 steps


def two_stage(**extra):
    return Grid(BASE, axes={"init_from": [None, "pretrained"]}, pretrain=PRETRAIN, **extra)


def stored(cfg, loss, *, width=16, per_token=100.0):
    """A result row of `cfg` (flattened as in a store table): D = its amount, FLOPs per token
    of its width."""
    d = cfg.data.amount
    return {"key": cfg.key(), "status": "ok", "family": "t5", "unit": "tokens",
            "sparsity": cfg.sparsity.target, "pattern": cfg.sparsity.pattern,
            "N": 4000, "N_target": cfg.model.nonzero, "width": width, "D": d, "loss": loss,
            "loss_se": 1e-3, "flops_dense": per_token * d,
            **{f"config.{k}": v for k, v in pd.json_normalize(cfg.to_dict()).iloc[0].items()}}


def pretrained_case():
    """(from-scratch grid runs on L = 10 D^-0.1 at D 1024 to 65536, loss -> the pruned-pretrained
    runs with that loss (and their dense stage), the loss from scratch reaches at 8x the
    pruning run's data, a loss above from scratch at the same data, that data as `count`
    prints it)."""
    _, dense, pruned = two_stage().configs()
    curve = {d: 10 * d**-0.1 for d in (1024, 4096, 16384, 65536)}
    grid = runs_from_table(pd.DataFrame([
        stored(RunConfig.from_dict({**pruned.to_dict(), "init_from": None,
                                    "data": {**pruned.to_dict()["data"], "amount": d}}), loss)
        for d, loss in curve.items()]), source="grid")

    def with_loss(loss: float) -> Runs:
        return runs_from_table(pd.DataFrame([stored(dense, 2.0), stored(pruned, loss)]),
                               source="pretrained")

    matched = 10 * (8 * pruned.data.amount) ** -0.1
    return grid, with_loss, matched, curve[4096] + 0.05, count(pruned.data.amount)
