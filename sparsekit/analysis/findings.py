"""The paper's claims tested on runs: `findings(frame)` for a plain frame of runs, the
chapter's two views of a family (`family_views`), and the verdict tables.

`findings(frame)` gives one row per (claim, family): the claim, the evidence from the runs,
the paper's value, a verdict (`rules.VERDICTS`) and the rule that decided it. Both it and the
book build their `View`s with `views.view` and test them with the `claims.CLAIMS` registry,
so a verdict here and in the book come from one pipeline.

Uncertainty comes from two places:
- the seed noise, a seed SD in nats (given per family, pooled over the frame's points run
  with several seeds, or from seed-check stores: `analysis.noise`), for direct comparisons of
  runs in matched cells (claims 1, 2, 4, 9, 10) and to judge a law's errors (5, 6);
- bootstrap refits of the laws (runs resampled within each sparsity level, `fitting.fit`)
  for what a fit says (claims 3, 7, 8).

Units: S is the fraction of zero weights; N non-zero non-embedding parameters; D tokens (T5)
or images (ViT); losses in nats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sparsekit.analysis.claims import PAPER_CLAIMS, check_claims, verdicts
from sparsekit.analysis.fits import ALL_RUNS, in_range_label
from sparsekit.analysis.noise import seed_spread
from sparsekit.analysis.runs import Runs, load_stores, stores_with_runs
from sparsekit.analysis.views import BOOTSTRAP, View, view

REQUIRED = ("family", "sparsity", "N", "D", "loss")  # the columns of a findings frame
UNITS = {"t5": "tokens", "vit": "images"}  # what D counts, when the frame has no `unit`


# --- frames ----------------------------------------------------------------------------------


FRAME_CHECKS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "sparsity": (lambda x: (x >= 0) & (x < 1), "finite, in [0, 1)"),
    "N": (lambda x: x > 0, "finite, > 0 (non-zero parameters)"),
    "D": (lambda x: x > 0, "finite, > 0 (tokens or images)"),
    "loss": (lambda x: x > 0, "finite, > 0 (nats)"),
}


def _check_frame(name: str, frame: Any) -> None:
    """ValueError naming `name` unless it is a frame of runs the claims can use."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise ValueError(f"{name} is missing the column(s) {missing}; it needs {list(REQUIRED)} "
                         "(and optionally seed, loss_se), one row per run")
    if frame.empty:
        raise ValueError(f"{name} has no runs (it needs at least one row)")
    for column, (ok, allowed) in FRAME_CHECKS.items():
        x = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~(np.isfinite(x) & ok(x))  # NaN compares False: no warning
        if bad.any():
            raise ValueError(f"{name}: column {column} must be {allowed}; rows "
                             f"{list(frame.index[bad][:5])} are not (values {list(x[bad][:5])})")


def _per_family(name: str, value: Any, families: Sequence[str]) -> dict[str, float | None]:
    """A per-family setting given as None, one number, or a mapping family -> number."""
    if value is None or isinstance(value, Mapping):
        value = dict(value or {})
        unknown = set(value) - set(families)
        if unknown:
            raise ValueError(f"{name}: no runs of family {sorted(unknown)} (the frame has "
                             f"{sorted(families)})")
        return {f: value.get(f) for f in families}
    return dict.fromkeys(families, value)


def _frame_runs(frame: pd.DataFrame, family: str) -> Runs:
    table = frame[frame["family"] == family].reset_index(drop=True)
    unit = str(table["unit"].iat[0]) if "unit" in table else UNITS.get(family, "data")
    return Runs(family, unit, "frame", table)


def frame_views(
    frame: pd.DataFrame,
    *,
    min_tokens_per_param: float | Mapping[str, float] | None = None,
    noise: float | Mapping[str, float] | None = None,
    heldout: pd.DataFrame | None = None,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, View]:
    """Family -> the `View` of a frame's runs (the arguments of `findings`); nothing is
    fitted until a claim needs it. ValueError naming the argument for bad input."""
    _check_frame("frame", frame)
    families = sorted(frame["family"].unique())
    floors = _per_family("min_tokens_per_param", min_tokens_per_param, families)
    noises = _per_family("noise", noise, families)
    if heldout is not None:
        _check_frame("heldout", heldout)
    out = {}
    for family in families:
        sd = noises[family]
        if sd is not None and (isinstance(sd, bool) or not (
                isinstance(sd, int | float) and np.isfinite(sd) and sd >= 0)):
            raise ValueError(f"noise for {family} must be a finite seed SD >= 0, got {sd!r}")
        held = None
        if heldout is not None and (heldout["family"] == family).any():
            held = _frame_runs(heldout, family)
        floor = floors[family]
        out[family] = view(_frame_runs(frame, family), floor=floor,
                           label=ALL_RUNS if floor is None else in_range_label(floor),
                           noise=None if sd is None else (float(sd), np.inf), heldout=held,
                           bootstrap=bootstrap, seed=seed)
    return out


def findings(
    frame: pd.DataFrame,
    *,
    min_tokens_per_param: float | Mapping[str, float] | None = None,
    noise: float | Mapping[str, float] | None = None,
    heldout: pd.DataFrame | None = None,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
    claims: Sequence[int] = PAPER_CLAIMS,
) -> pd.DataFrame:
    """The paper's claims tested on runs: one row per (claim, family) with the columns claim
    (1-10), family, statement, evidence (the numbers), paper (the paper's value), verdict
    (one of `rules.VERDICTS`) and rule (the test that decided it, in words).

    frame: one row per run with the columns family, sparsity (S), N (non-zero non-embedding
        parameters), D (tokens or images) and loss (nats), optionally seed and loss_se.
    min_tokens_per_param: test only the runs with D/N at or above this floor (one number, or
        a mapping family -> floor, e.g. `regime.paper_minimum`); None: every run.
    noise: the seed SD per family (one number or a mapping, treated as known), e.g. from a
        seed check; for a family without one, the SD pooled over the frame's points run
        with several seeds, at its degrees of freedom.
    heldout: runs never fitted (same columns), predicted for claim 6 (under the same D/N
        floor); without it, or with none of a family's, claim 6 holds out the largest size.
    bootstrap: refits behind every bootstrap interval (integer >= 0); seed: of their
        resampling.
    claims: the claims to test (default the paper's 1-8; 9 and 10 need n:m and pretrained
        runs, which a frame does not hold, so they are not testable here). The fits that no
        listed claim needs are not made.
    """
    claims = check_claims(claims)
    found = frame_views(frame, min_tokens_per_param=min_tokens_per_param, noise=noise,
                        heldout=heldout, bootstrap=bootstrap, seed=seed)
    return pd.concat([verdicts(v, claims) for v in found.values()], ignore_index=True)


def heldout_comparison(
    frame: pd.DataFrame,
    heldout: pd.DataFrame | None = None,
    *,
    min_tokens_per_param: float | Mapping[str, float] | None = None,
    noise: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Which law form predicts runs it has not seen best: `View.law_comparison` for each
    family of the frame (arguments as in `findings`), with a family column."""
    found = frame_views(frame, min_tokens_per_param=min_tokens_per_param, noise=noise,
                        heldout=heldout)
    return pd.concat([v.law_comparison().assign(family=family) for family, v in found.items()])


def family_views(
    runs: Runs,
    *,
    floor: float,
    seeds: Sequence[str] = (),
    heldout: Sequence[str] = (),
    patterns: Runs | None = None,
    pretrained: Runs | None = None,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, View]:
    """The chapter's two views of one family: every run (`fits.ALL_RUNS`) and the runs with
    D/N at or above `floor` (`fits.in_range_label`). Each is judged against the seed SD of
    its own runs (`noise.view_noise`) from the seed-check stores `seeds` (those without runs
    yet are left out: no seed SD), and predicts the runs of the held-out stores `heldout`
    above the same floor (none there: the largest size); `patterns` (n:m runs with their
    twins) and `pretrained` (both stages) feed claims 9 and 10."""
    seeds = stores_with_runs(seeds)  # a seed check not run yet leaves the noise unknown
    spread = seed_spread(seeds, grid=runs) if seeds else None
    held = load_stores(heldout, family=runs.family) if heldout else None
    return {label: view(runs, floor=minimum, label=label,
                        noise=None if spread is not None else (np.nan, np.inf), spread=spread,
                        heldout=held, patterns=patterns, pretrained=pretrained,
                        bootstrap=bootstrap, seed=seed)
            for label, minimum in ((ALL_RUNS, None), (in_range_label(floor), floor))}
