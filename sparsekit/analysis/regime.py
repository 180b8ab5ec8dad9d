"""The training regime of a set of runs: data per non-zero parameter, D/N, against the paper's.

The paper's law describes long-trained models. Its T5 runs see D/N = 193 to ~49,000 tokens per
non-zero parameter (median ~3,100) and its ViT runs 5 to ~2,700 images (median ~170). A claim
of the paper is tested on the runs inside that range; runs far below it sit in another regime,
where the sparsity term of the law can vanish. `within` selects the runs of a regime, and
`regime_table` shows a store's D/N beside the paper's.

Units: D in the family's unit (encoder input tokens for T5, images for ViT), N the measured
non-zero non-embedding parameters, so D/N is tokens (or images) per non-zero parameter.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from sparsekit.analysis.runs import FAMILY_LABELS, Runs
from sparsekit.analysis.tables import number

# (min, median, max) D/N of the paper's runs, from its released data: T5 `t5-data.csv` with
# N = 24 * 12 * 768^2 * scale * (1 - S) and D = steps * 65,536 tokens; ViT `vit-data.json` with
# N = 12 * 12 * 768^2 * scale * (1 - S) and D = total examples (images). tests/test_regime.py
# recomputes the T5 row from the shared copy of the paper's data when it is present.
PAPER_REGIME: dict[str, tuple[float, float, float]] = {
    "t5": (193.0, 3086.0, 49383.0),
    "vit": (5.3, 170.0, 2713.0),
}


def paper_minimum(family: str) -> float:
    """The smallest D/N among the paper's runs of this family: where its regime starts."""
    if family not in PAPER_REGIME:
        raise ValueError(f"family must be one of {sorted(PAPER_REGIME)}, got {family!r}")
    return PAPER_REGIME[family][0]


def resolve_minimum(value: float | str, family: str, name: str = "min_tokens_per_param") -> float:
    """A notebook's D/N floor for one family: "paper" gives `paper_minimum(family)`, a number
    >= 0 is taken as it is. ValueError naming the parameter `name` otherwise."""
    if value == "paper":
        return paper_minimum(family)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        np.isfinite(value) and value >= 0
    ):
        raise ValueError(f"{name} must be 'paper' (the paper's smallest D/N per family) or a "
                         f"number >= 0 of tokens (or images) per non-zero parameter, got "
                         f"{value!r}")
    return float(value)


def tokens_per_param(runs: Runs) -> np.ndarray:
    """D/N of each run: tokens (T5) or images (ViT) per non-zero non-embedding parameter."""
    return runs.D / runs.N


def in_range(D: ArrayLike, N: ArrayLike, min_tokens_per_param: float | None) -> np.ndarray:
    """Where D/N >= min_tokens_per_param (everywhere for None): the one test of "inside a
    D/N range" (`within` for runs, claim 10 for its pruning runs).

    min_tokens_per_param: a D/N floor in tokens (or images) per non-zero parameter, >= 0; use
    `paper_minimum(family)` for the paper's regime. ValueError naming it otherwise.
    """
    D, N = np.asarray(D, dtype=np.float64), np.asarray(N, dtype=np.float64)
    if min_tokens_per_param is None:
        return np.ones(np.broadcast(D, N).shape, bool)
    if not (np.isfinite(min_tokens_per_param) and min_tokens_per_param >= 0):
        raise ValueError(
            f"min_tokens_per_param must be a finite D/N >= 0 (or None for all runs), got "
            f"{min_tokens_per_param!r}"
        )
    return min_tokens_per_param <= D / N


def within(runs: Runs, min_tokens_per_param: float | None) -> Runs:
    """The runs with D/N >= min_tokens_per_param (all runs for None; `in_range`)."""
    if min_tokens_per_param is None:
        return runs
    return runs.select(in_range(runs.D, runs.N, min_tokens_per_param))


def regime_table(runs: Mapping[str, Runs]) -> pd.DataFrame:
    """One row per family: D/N (min, median, max) of the runs beside the paper's, and how many
    runs lie inside the paper's range (D/N at or above its minimum)."""
    rows = {}
    for family, r in runs.items():
        ratio = tokens_per_param(r)
        low, mid, high = PAPER_REGIME.get(family, (np.nan,) * 3)
        empty = not len(ratio)
        rows[FAMILY_LABELS.get(family, family)] = {
            "runs": len(r),
            "D/N min": np.nan if empty else ratio.min(),
            "D/N median": np.nan if empty else np.median(ratio),
            "D/N max": np.nan if empty else ratio.max(),
            "paper D/N min": low,
            "paper D/N median": mid,
            "paper D/N max": high,
            "runs in the paper's range": int(np.sum(ratio >= low)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def coverage_table(runs: Mapping[str, Runs], missing: Mapping[str, str]) -> pd.DataFrame:
    """One row per family: the runs found, their distinct S, N and D, the median standard
    error of the loss relative to the loss (%), and their D/N (min, median, max) beside the
    paper's (`regime.regime_table`); for `missing` families, why."""
    rows = {}
    for r in runs.values():
        rows[r.label] = {
            "runs": len(r),
            "S levels": ", ".join(f"{s:g}" for s in np.unique(r.S)),
            "sizes N": np.unique(r.size).size,
            "data D": ", ".join(number(d, 3) for d in np.unique(r.D)) + f" {r.unit}",
            "median SE / loss (%)": 100 * np.nanmedian(r.loss_se / r.loss),
            "source": r.source,
        }
    for family, reason in missing.items():
        rows[FAMILY_LABELS.get(family, family)] = {"runs": 0, "source": reason}
    table = pd.DataFrame.from_dict(rows, orient="index")
    if not runs:
        return table
    regime = regime_table(runs).drop(columns="runs")
    return table.join(regime)[[*table.columns[:-1], *regime.columns, "source"]]
