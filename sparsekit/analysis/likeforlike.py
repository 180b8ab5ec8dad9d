"""Like for like: the sparsity benefit on a designed set of runs, per protocol, with intervals.

A designed set (sweeps/like-t5.yaml, like-vit.yaml) trains, in each cell (N target, D), the
dense twin and every sparse level with exact N under two protocols: "paper" (embeddings and
head pruned so their non-zeros stay the dense twin's) and "dense-embeddings" (kept dense, so
a sparse model, being wider, carries more of them). Every point has several seeds. A dense
run is the twin of both protocols (nothing is pruned in it).

The plain frame every function here reads has one row per run and the columns family,
protocol, sparsity, N_target, N, D, seed and loss (`designed_frame` makes it from a store).

Uncertainty: the seed SD pooled over every point of the family's set (`runs.pooled_sd`),
with its degrees of freedom sum(n - 1); a comparison is a contrast of point means, and its
interval the t-quantile at those degrees of freedom (`rules.Interval.t`).

Relevance, fixed before the data: a quarter of what the paper's law predicts, in this
family's own units. The paper's law says a sparse model at N matches a dense one m(S) times
larger (`Law.dense_equivalent`), so it predicts a gain of |dL/dln N| ln m(S) nats, with the
dense slope dL/dln N measured on the set's own dense twins (`dense_slope`): the Findings
chapter's `evidence.relevant_gain`.

Units: S the fraction of zero block weights; N non-zero non-embedding parameters; D tokens
(T5) or images (ViT); losses in nats.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sparsekit.analysis.evidence import SHARE, relevant_gain, size_slope
from sparsekit.analysis.findings import CLAIMS
from sparsekit.analysis.fits import PAPER
from sparsekit.analysis.rules import (
    LEVEL,
    UNTESTABLE,
    Interval,
    absence,
    combine,
    direction,
    magnitude,
)
from sparsekit.analysis.runs import FAMILY_LABELS, pooled_df, pooled_sd
from sparsekit.config import PROTOCOLS

PROTOCOL_NAMES = tuple(PROTOCOLS.values())  # ("paper", "dense-embeddings")
DENSE = "dense"  # the arm of a dense twin, shared by every protocol
COLUMNS = ("family", "protocol", "sparsity", "N_target", "N", "D", "seed", "loss")
LIKE_CLAIMS = {k: CLAIMS[k] for k in (1, 2, 4, 8)}  # the Findings claims judged here


EXTRA = {  # store column -> the designed frame's optional column (where the store has it)
    "embed_nonzero": "embed_nonzero", "width": "width", "sparsity_measured": "S measured",
    "config.optim.name": "optimizer", "config.optim.lr": "lr",
}


def designed_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The plain frame (`COLUMNS`) of a store table (`store.load`): its finished runs, with
    the protocol named from `config.sparsity.embed_rule`, and the `EXTRA` columns it has."""
    ok = table[table["status"] == "ok"]
    extra = {new: ok[old].to_numpy() for old, new in EXTRA.items() if old in ok}
    return pd.DataFrame({
        "family": ok["family"],
        "protocol": ok["config.sparsity.embed_rule"].map(PROTOCOLS),
        "sparsity": ok["sparsity"].astype(float),
        "N_target": ok["N_target"],
        "N": ok["N"],
        "D": ok["D"],
        "seed": ok["config.seed"],
        "loss": ok["loss"].astype(float),
    }).reset_index(drop=True).assign(**extra)


def _arm(frame: pd.DataFrame) -> pd.Series:
    return frame["protocol"].where(frame["sparsity"] > 0, DENSE)


def point_means(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per point (family, arm, N_target, D, sparsity), arm being the protocol or
    "dense": its runs n, mean loss, seed SD and mean measured N."""
    keys = ["family", "arm", "N_target", "D", "sparsity"]
    groups = frame.assign(arm=_arm(frame)).groupby(keys)
    return groups.agg(n=("loss", "count"), mean=("loss", "mean"), SD=("loss", "std"),
                      N=("N", "mean")).reset_index()


def seed_noise(frame: pd.DataFrame) -> tuple[float, float]:
    """(seed SD in nats, its degrees of freedom): pooled over the points with >= 2 runs
    (`runs.pooled_sd`, `runs.pooled_df`)."""
    points = point_means(frame).rename(columns={"n": "runs"})
    points = points[points["runs"] >= 2]
    return pooled_sd(points), pooled_df(points)


def contrast(points: pd.DataFrame, weights: Sequence[float], noise: tuple[float, float]
             ) -> Interval:
    """The interval of sum(w_i mean_i) over `points` (rows of `point_means`)."""
    w = np.asarray(weights, float)
    sd, df = noise
    se = sd * np.sqrt(np.sum(w**2 / points["n"].to_numpy()))
    return Interval.t(float(w @ points["mean"].to_numpy()), float(se), df)


def _cells(points: pd.DataFrame, protocol: str) -> dict[tuple, pd.DataFrame]:
    """(N_target, D) -> that cell's points of `protocol` and its dense twin, sorted by S."""
    ours = points[points["arm"].isin([protocol, DENSE])]
    return {cell: g.sort_values("sparsity") for cell, g in ours.groupby(["N_target", "D"])}


def gap_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per family, protocol, cell (N target, D) and sparse level: the gap to the dense twin
    (nats; negative = sparse better) with its 95% interval, and the runs behind it."""
    rows = []
    for family, ff in frame.groupby("family"):
        noise, points = seed_noise(ff), point_means(ff)
        for protocol in PROTOCOL_NAMES:
            for (n, d), cell in _cells(points, protocol).items():
                dense = cell[cell["sparsity"] == 0]
                for _, sparse in cell[cell["sparsity"] > 0].iterrows():
                    if dense.empty:
                        continue
                    pair = pd.concat([dense, sparse.to_frame().T])
                    iv = contrast(pair, [-1.0, 1.0], noise)
                    rows.append({"family": family, "protocol": protocol, "N target": n,
                                 "D": d, "S": sparse["sparsity"], "gap": iv.estimate,
                                 "low": iv.low, "high": iv.high, "df": iv.df,
                                 "runs": f"{int(sparse['n'])} + {int(dense['n'].iat[0])}"})
    return pd.DataFrame(rows)


def dense_slope(frame: pd.DataFrame) -> float:
    """dL/dln N of the dense twins (nats per e-fold of N; `evidence.size_slope` of their
    point means)."""
    points = point_means(frame)
    return size_slope(points[points["arm"] == DENSE], "N", "mean")


def _levels(points: pd.DataFrame) -> list[float]:
    return sorted(points["sparsity"].unique())


def _cell_contrast(cells: dict, noise: tuple[float, float], weights_of) -> Interval | None:
    """The interval of the mean over cells of a per-cell contrast (`weights_of(cell)` ->
    weights over its points, or None to skip the cell)."""
    parts, weights = [], []
    for cell in cells.values():
        w = weights_of(cell)
        if w is not None:
            parts.append(cell)
            weights.append(np.asarray(w, float))
    if not parts:
        return None
    return contrast(pd.concat(parts), np.concatenate(weights) / len(parts), noise)


def _at(cell: pd.DataFrame, levels: Sequence[float], coefs: Sequence[float]):
    """Weights over `cell`'s points putting coefs on those levels; None if one is missing."""
    s = cell["sparsity"].to_numpy()
    if not all(np.isclose(s, lv).any() for lv in levels):
        return None
    w = np.zeros(len(cell))
    for lv, c in zip(levels, coefs, strict=True):
        w[np.isclose(s, lv)] += c
    return w


def _threshold(r: float) -> str:
    """The threshold R for the evidence, or why it is unknown."""
    return f"R {r:.3g}" if np.isfinite(r) else "R unknown: needs two dense sizes at one D"


def _row(claim: int, family: str, protocol: str, parts: list, verdict: str, rule: str) -> dict:
    evidence = "; ".join(f"{name}: {iv if iv is not None else 'no cells'} ({v})"
                         for name, iv, v in parts)
    evidence = evidence or "no level has the cells it needs (two dense sizes at one D)"
    return {"claim": claim, "family": FAMILY_LABELS.get(family, family), "protocol": protocol,
            "statement": LIKE_CLAIMS[claim], "evidence": evidence, "rule": rule,
            "verdict": verdict}


def claim_1(family: str, protocol: str, cells: dict, noise: tuple[float, float],
            slope: float) -> dict:
    """Each step between consecutive levels: the mean change of the loss over cells,
    claimed negative; relevant: a quarter of the paper's predicted gain of that step."""
    levels = sorted({s for c in cells.values() for s in c["sparsity"]})
    parts = []
    for a, b in itertools.pairwise(levels):
        iv = _cell_contrast(cells, noise, lambda c, a=a, b=b: _at(c, (a, b), (-1, 1)))
        r = relevant_gain(family, slope, a, b)
        parts.append((f"{a:g}→{b:g} ({_threshold(r)})", iv,
                      direction(iv, r, -1) if iv else UNTESTABLE))
    return _row(1, family, protocol, parts, combine([p[2] for p in parts]),
                "each step's 95% t-interval: below 0 holds; above -R does not hold")


def claim_2(family: str, protocol: str, cells: dict, noise: tuple[float, float],
            slope: float) -> dict:
    """For consecutive steps: the second step's change minus the first's, claimed positive
    (a smaller gain); relevant: a quarter of the paper's predicted shrinkage."""
    levels = sorted({s for c in cells.values() for s in c["sparsity"]})
    parts = []
    for a, b, c in zip(levels, levels[1:], levels[2:], strict=False):
        iv = _cell_contrast(cells, noise, lambda x, a=a, b=b, c=c: _at(x, (a, b, c), (1, -2, 1)))
        r = abs(relevant_gain(family, slope, b, c) - relevant_gain(family, slope, a, b))
        parts.append((f"{a:g}→{b:g}→{c:g} ({_threshold(r)})", iv,
                      direction(iv, r, +1) if iv and r > 0 else UNTESTABLE))
    return _row(2, family, protocol, parts, combine([p[2] for p in parts]),
                "change of the step's loss change: above 0 holds; below R does not hold")


def claim_4(family: str, protocol: str, points: pd.DataFrame, noise: tuple[float, float],
            slope: float) -> dict:
    """Per sparse level: the change of the gap per doubling of D at fixed N (between a
    size's smallest and largest D), averaged over sizes; claimed absent within SHARE of the
    level's mean gap over the same cells (`evidence.rule_constant_gap`'s threshold)."""
    ours = points[points["arm"].isin([protocol, DENSE])]
    parts = []
    for s in [lv for lv in _levels(ours) if lv > 0]:
        sizes = []
        for _, g in ours.groupby("N_target"):
            ds = sorted(g["D"].unique())
            picks = [g[(g["D"] == d) & np.isclose(g["sparsity"], lv)]
                     for d in (ds[0], ds[-1]) for lv in (s, 0.0)]
            if len(ds) >= 2 and all(len(p) == 1 for p in picks):
                sizes.append((pd.concat(picks), np.array([-1, 1, 1, -1]) / np.log2(ds[-1] / ds[0])))
        if not sizes:
            parts.append((f"S {s:g}", None, UNTESTABLE))
            continue
        rows = pd.concat([r for r, _ in sizes])
        iv = contrast(rows, np.concatenate([w for _, w in sizes]) / len(sizes), noise)
        gap = contrast(rows, np.tile([1.0, -1.0, 1.0, -1.0], len(sizes)) / (2 * len(sizes)),
                       noise)
        r = SHARE * abs(gap.estimate)
        parts.append((f"S {s:g} ({_threshold(r)})", iv, absence(iv, r)))
    return _row(4, family, protocol, parts, combine([p[2] for p in parts]),
                "change of the gap per doubling of D: within ±R (a quarter of the level's mean "
                "gap) holds; wholly beyond does not hold")


def _draw(rows: pd.DataFrame, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[draws, points]: point means drawn around `rows`' means with seed SD draws `scale`."""
    z = rng.standard_normal((len(scale), len(rows)))
    return rows["mean"].to_numpy(float) + z * scale[:, None] / np.sqrt(rows["n"].to_numpy(float))


def dense_equivalents(points: pd.DataFrame, protocol: str, noise: tuple[float, float],
                      draws: int = 4000, seed: int = 0) -> dict[float, Interval]:
    """m(S): the dense size, as a multiple of N, at which the dense twins' line in ln N (at a
    D with two or more dense sizes) reaches the sparse level's loss, averaged in ln m over
    the sizes and such data amounts; its 95% interval from a parametric bootstrap of the point means (the seed SD
    drawn from its chi-square at its degrees of freedom), percentiles 2.5 and 97.5. Where
    more than 2.5% of the draws give a dense line that does not fall with N, m is not
    bounded and its interval is (0, inf)."""
    sd, df = noise
    if not (np.isfinite(sd) and df >= 1):
        return {}
    rng = np.random.default_rng(seed)
    scale = sd * np.sqrt(df / rng.chisquare(df, draws))
    ours = points[points["arm"].isin([protocol, DENSE])]
    by_level: dict[float, list[np.ndarray]] = {}
    for _, g in ours.groupby("D"):
        dense = g[g["arm"] == DENSE].sort_values("N_target")
        if len(dense) < 2:
            continue
        dense_draws = _draw(dense, scale, rng)
        slope = np.polyfit(np.log(dense["N"].to_numpy(float)), dense_draws.T, 1)[0]
        if np.mean(slope >= 0) > (1 - LEVEL) / 2:  # the dense line's fall is not resolved
            slope = np.where(slope >= 0, np.nan, slope)  # m unbounded: its interval (0, inf)
        twin = {n: dense_draws[:, i] for i, n in enumerate(dense["N_target"])}
        for s, sparse in g[g["arm"] == protocol].groupby("sparsity"):
            sparse = sparse[sparse["N_target"].isin(twin)]
            by_level.setdefault(float(s), []).extend(
                (d - twin[n]) / slope
                for n, d in zip(sparse["N_target"], _draw(sparse, scale, rng).T, strict=True))
    out = {}
    for s, parts in by_level.items():
        ln_m = np.mean(parts, axis=0)
        if np.isnan(ln_m).any():
            out[s] = Interval(float(np.exp(np.nanmedian(ln_m))), 0.0, np.inf, float(df))
            continue
        lo, hi = np.exp(np.percentile(ln_m, [2.5, 97.5]))
        out[s] = Interval(float(np.exp(np.median(ln_m))), float(lo), float(hi), float(df))
    return out


def claim_8(family: str, protocol: str, points: pd.DataFrame,
            noise: tuple[float, float]) -> dict:
    """m(S) against the paper's; undetermined when the interval holds both 1 (no gain) and
    the paper's value (`evidence.rule_dense_equivalent`'s rule)."""
    ms = dense_equivalents(points, protocol, noise)
    parts = []
    for s, iv in sorted(ms.items()):
        paper = float(PAPER[family].dense_equivalent(np.array([s]))[0])
        parts.append((f"S {s:g} (paper {paper:.2g}x)", iv, magnitude(iv, paper, (1.0, paper))))
    return _row(8, family, protocol, parts, combine([p[2] for p in parts]) if parts else UNTESTABLE,
                "m(S)'s 95% interval: holding both 1 and the paper's m is undetermined; else "
                "holding the paper's m holds, excluding it does not hold")


def like_for_like(frame: pd.DataFrame) -> pd.DataFrame:
    """Claims 1, 2, 4 and 8 judged per family and protocol on a designed set: one row each,
    with the evidence (estimates, intervals, thresholds R), the rule and the verdict."""
    rows = []
    for family, ff in frame.groupby("family"):
        noise, points, slope = seed_noise(ff), point_means(ff), dense_slope(ff)
        for protocol in PROTOCOL_NAMES:
            cells = _cells(points, protocol)
            if not (points["arm"] == protocol).any():
                continue
            rows += [claim_1(family, protocol, cells, noise, slope),
                     claim_2(family, protocol, cells, noise, slope),
                     claim_4(family, protocol, points, noise, slope),
                     claim_8(family, protocol, points, noise)]
    return pd.DataFrame(rows)
