"""One family's law fits in the two regimes side by side (`fit_regimes`: every run, and the
runs inside the paper's D/N range): the sparse law's coefficients of both, and the seed noise
that held-out predictions are judged by.

N counts non-zero parameters and D tokens (T5) or images (ViT), as in the paper's Table 1;
noise is a seed standard deviation of the final loss, in nats.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from sparsekit.analysis.fits import LawFits, coefficient_table
from sparsekit.analysis.runs import noise_by_slice
from sparsekit.laws import Law


def coefficients_side_by_side(fits: Mapping[str, LawFits], paper: Law
                              ) -> tuple[pd.DataFrame | None, list[str]]:
    """(the sparse law's coefficients of each fit beside the paper's, the last fit first,
    as `coefficient_table` columns under the fit's label; None when no fit has the sparse
    law) and a sentence per fit without it, saying why."""
    tables = {label: coefficient_table(f.fits["sparse"], paper)
              for label, f in reversed(fits.items()) if "sparse" in f.fits}
    notes = [f"The sparse law is not fitted ({label}): "
             f"{f.notes['sparse'].removeprefix('not fitted: ')}."
             for label, f in fits.items() if "sparse" not in f.fits]
    return (pd.concat(tables, axis=1) if tables else None), notes


def longest_slice_noise(spread: pd.DataFrame | None) -> float:
    """The seed SD at the longest data slice of a `seed_spread` table (`noise_by_slice`);
    NaN without one."""
    slices = noise_by_slice(spread) if spread is not None else None
    return float(slices["seed SD"].iloc[-1]) if slices is not None and len(slices) else np.nan
