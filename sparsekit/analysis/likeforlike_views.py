"""The like-for-like chapter's tables, figure and headline, over `likeforlike`'s numbers.

Every table here reads the plain designed frame (`likeforlike.designed_frame`); gaps are in
nats (negative: the sparse model is better) with 95% t-intervals at the pooled seed SD's
degrees of freedom (`likeforlike.seed_noise`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsekit import plotting
from sparsekit.analysis.likeforlike import (
    DENSE,
    PROTOCOL_NAMES,
    contrast,
    gap_table,
    point_means,
    seed_noise,
)
from sparsekit.analysis.runs import FAMILY_LABELS
from sparsekit.analysis.tables import number


def _mean_gap(points: pd.DataFrame, noise, s: float, arms: tuple[str, str]):
    """The mean over cells of (arm 1 at S) - (arm 0 at S, or the dense twin when arm 0 is
    DENSE): an Interval, and the number of cells that have both."""
    rows, weights = [], []
    cells = points.groupby(["N_target", "D"])
    for _, g in cells:
        a = g[(g["arm"] == arms[0]) & (np.isclose(g["sparsity"], 0.0 if arms[0] == DENSE else s))]
        b = g[(g["arm"] == arms[1]) & np.isclose(g["sparsity"], s)]
        if len(a) == 1 and len(b) == 1:
            rows += [a, b]
            weights += [-1.0, 1.0]
    if not rows:
        return None, 0
    k = len(rows) // 2
    return contrast(pd.concat(rows), np.array(weights) / k, noise), k


def _cells_with_both(points: pd.DataFrame, s: float) -> pd.DataFrame:
    """The points of the cells (N_target, D) that have level `s` under both protocols and a
    dense twin: the cells a like-for-like mean may use while a set is still partial."""
    keep = [cell for cell, g in points.groupby(["N_target", "D"])
            if (g["arm"] == DENSE).any() and all(
                ((g["arm"] == p) & np.isclose(g["sparsity"], s)).any() for p in PROTOCOL_NAMES)]
    index = pd.MultiIndex.from_frame(points[["N_target", "D"]])
    return points[index.isin(keep)] if keep else points.iloc[:0]


def benefit_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per family and sparse level: the mean gap to the dense twin under each protocol, and
    the paper's minus the dense-embedding one (the benefit the embeddings carried), each as
    estimate [95% interval] over the same cells (those with the level under both protocols),
    with the number of cells and the seed SD behind them."""
    rows = []
    for family, ff in frame.groupby("family"):
        noise, points = seed_noise(ff), point_means(ff)
        for s in sorted(x for x in points["sparsity"].unique() if x > 0):
            row = {"family": FAMILY_LABELS.get(family, family), "S": s}
            both = _cells_with_both(points, s)
            for protocol in PROTOCOL_NAMES:
                iv, k = _mean_gap(both, noise, s, (DENSE, protocol))
                row[f"gap, {protocol}"] = str(iv) if iv else "no runs"
            iv, k = _mean_gap(both, noise, s, (PROTOCOL_NAMES[1], PROTOCOL_NAMES[0]))
            row["paper minus dense-embeddings"] = str(iv) if iv else "no runs"
            row["cells"] = k
            row["seed SD (df)"] = f"{noise[0]:.3g} ({noise[1]})"
            rows.append(row)
    return pd.DataFrame(rows)


def embedding_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per family, protocol and level: the mean width, actual sparsity, N and embedding and
    head non-zeros, the last two as multiples of the dense twin's (same N_target)."""
    f = frame.assign(arm=frame["protocol"].where(frame["sparsity"] > 0, DENSE))
    twin = f[f["arm"] == DENSE].groupby("N_target")[["N", "embed_nonzero"]].mean()
    rows = []
    for (family, arm, nt, s), g in f.groupby(["family", "arm", "N_target", "sparsity"]):
        rows.append({"family": FAMILY_LABELS.get(family, family), "protocol": arm,
                     "N_target": nt, "S": s, "width": g["width"].mean(),
                     "S measured": g["S measured"].mean(),
                     "N / twin's": g["N"].mean() / twin.loc[nt, "N"],
                     "embedding non-zeros / twin's":
                         g["embed_nonzero"].mean() / twin.loc[nt, "embed_nonzero"]})
    return pd.DataFrame(rows)


def recipe_table(recipe: pd.DataFrame, designed: pd.DataFrame) -> pd.DataFrame:
    """The recipe checks beside the designed set's own runs at the same point: per optimizer
    and peak LR, the dense and sparse mean losses and the sparse-dense gap [95% interval],
    judged at the designed set's pooled seed SD."""
    noise = seed_noise(designed)
    point = recipe[["N_target", "D"]].drop_duplicates()
    ours = designed.merge(point, on=["N_target", "D"])
    ours = ours[(ours["protocol"] == PROTOCOL_NAMES[0])
                & ours["sparsity"].isin(recipe["sparsity"].unique())
                & ours["seed"].isin(recipe["seed"].unique())]
    both = pd.concat([ours, recipe], ignore_index=True)
    rows = []
    for (opt, lr), g in both.groupby(["optimizer", "lr"]):
        means = g.groupby("sparsity")["loss"].agg(["mean", "count"])
        if len(means) != 2:
            continue
        pts = means.rename(columns={"count": "n"}).reset_index().sort_values("sparsity")
        iv = contrast(pts, [-1.0, 1.0], noise)
        rows.append({"optimizer": opt, "peak LR at width 48": lr,
                     **{f"loss, S = {s:g}": m for s, m in zip(pts["sparsity"], pts["mean"],
                                                               strict=True)},
                     "seeds": int(pts["n"].min()), "sparse - dense": str(iv)})
    return pd.DataFrame(rows)


def gap_figure(frame: pd.DataFrame) -> go.Figure:
    """The gap to the dense twin against S, one panel per family, one line per protocol and
    cell (N_target, D), with 95% error bars."""
    gaps = gap_table(frame)
    families = sorted(gaps["family"].unique()) if len(gaps) else []
    fig = plotting.figure("Gap to the dense twin with exact N, by protocol", "S",
                          "loss minus the dense twin's (nats)",
                          subplot_titles=[FAMILY_LABELS.get(f, f) for f in families] or [""])
    dash = {PROTOCOL_NAMES[0]: "solid", PROTOCOL_NAMES[1]: "dot"}
    for col, family in enumerate(families, start=1):
        for (protocol, nt, d), g in gaps[gaps["family"] == family].groupby(
                ["protocol", "N_target", "D"]):
            g = g.sort_values("S")
            fig.add_trace(go.Scatter(
                x=g["S"], y=g["gap"], mode="lines+markers", line={"dash": dash[protocol]},
                name=f"{protocol}, N {number(nt)}, D {number(d, 3)}", legendgroup=protocol,
                error_y={"type": "data", "symmetric": False, "array": g["high"] - g["gap"],
                         "arrayminus": g["gap"] - g["low"]}), row=1, col=col)
        fig.add_hline(y=0, line={"color": "#888", "width": 1}, row=1, col=col)
    return fig


def headline(frame: pd.DataFrame) -> str:
    """One sentence per family: the mean gap to the dense twin at each level under the
    paper's protocol and with dense embeddings, with 95% intervals."""
    table = benefit_table(frame)
    if table.empty:
        return "No like-for-like runs are stored yet."
    parts = []
    for family, g in table.groupby("family", sort=False):
        levels = " / ".join(f"{s:.3g}" for s in g["S"])
        paper = "; ".join(g[f"gap, {PROTOCOL_NAMES[0]}"])
        dense = "; ".join(g[f"gap, {PROTOCOL_NAMES[1]}"])
        cells = "/".join(str(k) for k in g["cells"])
        parts.append(f"{family}, at S = {levels} (over {cells} cells): {paper} nats under the "
                     f"paper's protocol, against {dense} with dense embeddings.")
    return " ".join(parts)
