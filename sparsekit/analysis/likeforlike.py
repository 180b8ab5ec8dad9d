"""Like for like: the sparsity benefit on a designed set of runs, per protocol, with intervals.

A designed set (sweeps/like-t5.yaml, like-vit.yaml) trains, in each cell (N_target, D), the
dense twin and every sparse level with exact N under two protocols: "paper" (embeddings and
head pruned so their non-zeros stay the dense twin's) and "dense-embeddings" (kept dense, so
a sparse model, being wider, carries more of them). Every point has several seeds. A dense
run is the twin of both protocols (nothing is pruned in it).

The plain frame every function here reads has one row per run and the columns family,
protocol, sparsity, N_target, N, D, seed and loss (`designed_frame` makes it from a store).

Uncertainty: the seed SD pooled over every point of the family's set (`noise.pooled_sd`),
with its degrees of freedom sum(n - 1); a comparison is a contrast of point means, and its
interval the t-quantile at those degrees of freedom (`rules.Interval.t`).

Claims 1, 2 and 4 are judged by the registry's own tests (`claims.CLAIMS`) on a View per
protocol (`protocol_view`: its sparse runs and the dense twins, at the set's pooled seed SD),
so their rules and thresholds are the Findings chapter's: relevance is a quarter of what the
paper's law predicts, in the set's own units (`evidence.relevant_gain`). Claim 8 reads m(S)
off the dense twins (`dense_equivalents`), as two sizes are too few for a law fit, and
judges it with the Findings chapter's magnitude rule.

Units: S the fraction of zero block weights; N non-zero non-embedding parameters; D tokens
(T5) or images (ViT); losses in nats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sparsekit.analysis.claim import Verdict, pct
from sparsekit.analysis.claims import CLAIMS
from sparsekit.analysis.evidence import rule_dense_equivalent, size_slope
from sparsekit.analysis.findings import UNITS
from sparsekit.analysis.fits import PAPER
from sparsekit.analysis.noise import pooled_df, pooled_sd
from sparsekit.analysis.rules import (
    LEVEL,
    Interval,
    combine,
)
from sparsekit.analysis.runs import FAMILY_LABELS, Runs
from sparsekit.analysis.views import View
from sparsekit.config import PROTOCOLS

PROTOCOL_NAMES = tuple(PROTOCOLS.values())  # ("paper", "dense-embeddings")
DENSE = "dense"  # the arm of a dense twin, shared by every protocol
COLUMNS = ("family", "protocol", "sparsity", "N_target", "N", "D", "seed", "loss")


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
    (`noise.pooled_sd`, `noise.pooled_df`)."""
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
    """Per family, protocol, cell (N_target, D) and sparse level: the gap to the dense twin
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
                    rows.append({"family": family, "protocol": protocol, "N_target": n,
                                 "D": d, "S": sparse["sparsity"], "gap": iv.estimate,
                                 "low": iv.low, "high": iv.high, "df": iv.df,
                                 "runs": f"{int(sparse['n'])} + {int(dense['n'].iat[0])}"})
    return pd.DataFrame(rows)


def dense_slope(frame: pd.DataFrame) -> float:
    """dL/dln N of the dense twins (nats per e-fold of N; `evidence.size_slope` of their
    point means)."""
    points = point_means(frame)
    return size_slope(points[points["arm"] == DENSE], "N", "mean")


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
            noise: tuple[float, float]) -> Verdict:
    """m(S) of the designed set (`dense_equivalents`) against the paper's, with the Findings
    chapter's magnitude rule (`evidence.rule_dense_equivalent`): undetermined when the
    interval holds both 1 (no gain) and the paper's value."""
    parts, verdicts = [], []
    for s, iv in sorted(dense_equivalents(points, protocol, noise).items()):
        paper = float(PAPER[family].dense_equivalent(np.array([s]))[0])
        parts.append(f"{pct(s)}: {iv} (paper {paper:.2g}x)")
        verdicts.append(rule_dense_equivalent((iv.low, iv.high), paper))
    return Verdict(combine(verdicts),
                   "; ".join(parts) or "no level has the cells it needs (two dense sizes at one D)")


RULE_8 = ("m(S) from the dense twins: the dense size at which their line in ln N (at a D with "
          "two dense sizes) reaches the sparse level's loss, averaged over cells, with a 95% "
          "parametric-bootstrap interval; per level, undetermined if it holds both 1 and the "
          "paper's m, else holds if it holds the paper's m and does not hold if it excludes it. "
          "Combined over levels")


def protocol_view(frame: pd.DataFrame, protocol: str, noise: tuple[float, float]) -> View:
    """The View of one family's designed set under `protocol`: its sparse runs and the dense
    twins, judged against the set's pooled seed SD `noise` (no law fits: bootstrap 0)."""
    rows = frame[(frame["protocol"] == protocol) | (frame["sparsity"] == 0)]
    family = str(frame["family"].iat[0])
    runs = Runs(family, UNITS.get(family, "data"), f"designed set, {protocol}",
                rows.reset_index(drop=True))
    return View(runs, label=protocol, noise=noise[0], noise_df=noise[1], bootstrap=0)


def like_for_like(frame: pd.DataFrame) -> pd.DataFrame:
    """Claims 1, 2, 4 and 8 judged per family and protocol on a designed set: one row each,
    with the evidence (estimates, intervals, thresholds R), the rule and the verdict. Claims
    1, 2 and 4 are the registry's own tests (`claims.CLAIMS`) on each protocol's View; claim
    8 reads m(S) off the dense twins (`claim_8`), as the set has too few sizes for a law."""
    rows = []
    for family, ff in frame.groupby("family"):
        noise, points = seed_noise(ff), point_means(ff)
        for protocol in PROTOCOL_NAMES:
            if not (points["arm"] == protocol).any():
                continue
            v = protocol_view(ff, protocol, noise)
            found = {k: (CLAIMS[k].test(v), CLAIMS[k].rule) for k in (1, 2, 4)}
            found[8] = (claim_8(family, protocol, points, noise), RULE_8)
            rows += [{"claim": k, "family": FAMILY_LABELS.get(family, family),
                      "protocol": protocol, "statement": CLAIMS[k].statement,
                      "evidence": verdict.evidence, "rule": rule, "verdict": verdict.verdict}
                     for k, (verdict, rule) in found.items()]
    return pd.DataFrame(rows)
