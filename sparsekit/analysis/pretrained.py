"""Pruning a pretrained dense model against sparse training from scratch at the same N: how
much more data the from-scratch runs need to reach the pruned-pretrained loss, and what each
side cost, the dense pretraining included (see `sparsekit.pretrained` for the runs).

The ratio (`data_to_reach`): the from-scratch runs of the same config (every setting but
`init_from` and the data amount) give a loss-against-data curve, averaged over seeds at each
D. The data it needs to reach the pruned-pretrained loss L is interpolated between the two
consecutive data amounts whose losses bracket L, linearly in (log D, log loss): a local power
law L ~ D^-k between the two runs. The first bracket along D is used. When no pair brackets
L, there is no ratio: L lies above the curve (from scratch needs less data than its smallest
run) or below it (more than its largest), and the table says which, as a bound.

Units: D in tokens (T5) or images (ViT); losses in the family's nats; FLOPs are the runs'
`flops_dense` (training FLOPs of the dense-width model, the paper's cost model).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsekit import plotting
from sparsekit.analysis.figures import GREY, _style, count, data_title, loss_title
from sparsekit.analysis.runs import Runs
from sparsekit.analysis.tables import number
from sparsekit.config import RunConfig
from sparsekit.costs import pretrained_cost
from sparsekit.laws import Law
from sparsekit.pretrained import referenced_key

# Frantar et al. (2024): from-scratch sparse training needs this many times more data to match
# pruning a pretrained dense model (T5), by sparsity.
PAPER_RATIOS = {0.5: 4.90, 0.75: 4.27, 0.875: 2.45}
# Config fields that may differ between a pruned-pretrained run and its from-scratch curve.
_VARIED = {"config.init_from", "config.data.amount"}


def data_to_reach(D: Sequence[float], loss: Sequence[float], target: float) -> float:
    """The data at which a loss-against-data curve (runs at D with these losses; several runs
    at one D are averaged) reaches `target`, interpolated in (log D, log loss) between the
    first two consecutive data amounts that bracket it (see the module docstring).

    ValueError naming `target` when no pair brackets it (with the curve's range), or naming
    D/loss when they are not positive and finite or hold fewer than 2 data amounts.
    """
    D, loss = np.asarray(D, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if D.shape != loss.shape or D.ndim != 1:
        raise ValueError(f"D and loss must be 1-D of one length, got {D.shape} and {loss.shape}")
    if not (np.all(np.isfinite(D)) and np.all(D > 0) and np.all(np.isfinite(loss))
            and np.all(loss > 0)):
        raise ValueError("D and loss must be positive and finite")
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"target must be a positive finite loss, got {target!r}")
    levels = np.unique(D)
    if levels.size < 2:
        raise ValueError(f"D: a curve needs at least 2 data amounts, got {levels.tolist()}")
    curve = np.array([np.mean(loss[np.equal(D, d)]) for d in levels])
    x, y, t = np.log(levels), np.log(curve), np.log(target)
    for i in range(levels.size - 1):
        if y[i] == t:
            return float(levels[i])
        if (y[i] - t) * (y[i + 1] - t) <= 0:  # the target lies between runs i and i + 1
            return float(np.exp(x[i] + (t - y[i]) / (y[i + 1] - y[i]) * (x[i + 1] - x[i])))
    side = ("below every from-scratch loss: from scratch needs more data than its largest "
            "run" if target < curve.min() else "above every from-scratch loss: from scratch "
            "needs less data than its smallest run")
    raise ValueError(f"target: loss {target:.4g} is not bracketed by the from-scratch curve "
                     f"({curve.min():.4g} to {curve.max():.4g} over D = {levels[0]:.4g} to "
                     f"{levels[-1]:.4g}): it lies {side}")


def _signature(row: pd.Series) -> str:
    """A run's config without init_from and the data amount, as text: equal for a
    pruned-pretrained run and the runs of its from-scratch curve."""
    fields = {}
    for name, value in row.items():
        if not str(name).startswith("config.") or name in _VARIED or pd.isna(value):
            continue
        fields[name] = float(value) if isinstance(value, int | float | np.number) and not (
            isinstance(value, bool)) else value
    return json.dumps(fields, sort_keys=True, default=str)


def _from_scratch(runs: Runs, scratch: Sequence[Runs]) -> tuple[pd.DataFrame, pd.Series]:
    """The runs without init_from in `scratch` and `runs` (each once), and their signatures."""
    pool = pd.concat([r.table for r in (*scratch, runs)], ignore_index=True).drop_duplicates("key")
    pool = pool[pool.get("config.init_from", pd.Series(index=pool.index)).isna()]
    return pool, pool.apply(_signature, axis=1)


def stage_two(runs: Runs) -> Runs:
    """The runs that started from a stored run (pruned-pretrained runs)."""
    column = runs.table.get("config.init_from", pd.Series(index=runs.table.index, dtype=object))
    return runs.select(column.map(lambda v: referenced_key(v) is not None if isinstance(v, str)
                                  else False))


def _reach(curve: pd.DataFrame, target: float) -> float:
    """`data_to_reach` of `target` on a from-scratch curve, NaN where it is not bracketed."""
    try:
        return data_to_reach(curve["D"], curve["loss"], target)
    except ValueError:
        return np.nan


def ratio_table(runs: Runs, scratch: Sequence[Runs], margin: float | None = None
                ) -> pd.DataFrame:
    """One row per pruned-pretrained run of `runs` (a store holding both stages): its dense
    run (D and loss), its own D and loss, the from-scratch loss at the same D where run, the
    data from scratch needs to reach its loss (`data_to_reach`) and the ratio to its own D
    beside the paper's, and the compute: FLOPs of the pretraining, of the pruning run and of
    the from-scratch run that matches it, and the compute ratio (from scratch over
    pretraining + pruning). `scratch`: stores' runs holding the from-scratch curves (runs
    without init_from are taken from `runs` too). Rows that cannot be computed say why in
    `note`. With `margin` (nats), also the ratio's range when the pruned-pretrained loss moves
    by that much either way: "ratio low" (loss + margin, reached sooner) and "ratio high"
    (loss - margin), NaN where the curve does not bracket them."""
    pruned = stage_two(runs)
    if not len(pruned):
        raise ValueError(f"{runs.source}: no runs start from a pretrained dense run")
    pool, signatures = _from_scratch(runs, scratch)
    by_key = runs.table.set_index("key")
    rows = []
    for _, run in pruned.table.iterrows():
        dense = by_key.loc[referenced_key(run["config.init_from"])]
        curve = pool[signatures == _signature(run)]
        row = {"S": run["sparsity"], "N_target": run.get("N_target"), "N": run["N"],
               "width": run["width"],
               "D pretrain": dense["D"], "loss pretrained dense": dense["loss"],
               "D prune": run["D"], "loss pruned-pretrained": run["loss"],
               "loss from scratch, same D": curve.loc[curve["D"] == run["D"], "loss"].mean(),
               "from-scratch D": ", ".join(count(d) for d in sorted(curve["D"].unique())),
               "paper ratio": PAPER_RATIOS.get(round(float(run["sparsity"]), 6), np.nan),
               "FLOPs pretrain": dense["flops_dense"], "FLOPs prune": run["flops_dense"],
               "note": ""}
        try:
            reach = data_to_reach(curve["D"], curve["loss"], run["loss"])
        except ValueError as e:
            row["note"] = str(e).removeprefix("target: ")
            reach = np.nan
        per_unit = float(np.mean(curve["flops_dense"] / curve["D"])) if len(curve) else np.nan
        row |= {"D from scratch to match": reach, "data ratio": reach / run["D"],
                "FLOPs from scratch to match": reach * per_unit}
        row["compute ratio"] = row["FLOPs from scratch to match"] / (
            row["FLOPs pretrain"] + row["FLOPs prune"])
        if margin is not None:
            row["ratio low"] = _reach(curve, run["loss"] + margin) / run["D"]
            row["ratio high"] = _reach(curve, run["loss"] - margin) / run["D"]
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["S", "N_target", "D prune"]).reset_index(drop=True)


def ratio_figure(table: pd.DataFrame, runs: Runs, scratch: Sequence[Runs], title: str
                 ) -> go.Figure:
    """Loss against data, a panel per sparsity: each size's from-scratch curve (seed means,
    line), its pruned-pretrained runs at their own D (stars) and, dotted, the data from
    scratch needs to reach them (open marker at the interpolated D)."""
    pool, signatures = _from_scratch(runs, scratch)
    pruned = stage_two(runs)
    levels = sorted(table["S"].unique())
    fig = plotting.figure(title, data_title(runs.unit), loss_title(runs.unit), log_x=True,
                          subplot_titles=[plotting.sparsity_label(s) for s in levels])
    fig.update_yaxes(matches="y")
    sizes = sorted(pruned.table["width"].unique())
    by_key = runs.table.set_index("key")
    for _, run in pruned.table.iterrows():
        col, (line, marker) = levels.index(run["sparsity"]) + 1, _style(sizes.index(run["width"]))
        color, name = plotting.sparsity_color(run["sparsity"]), f"width {run['width']}"
        curve = pool[signatures == _signature(run)].groupby("D")["loss"].mean()
        fig.add_scatter(x=curve.index, y=curve.to_numpy(), mode="lines+markers", row=1, col=col,
                        name=f"from scratch, {name}", line={**line, "color": color},
                        marker={**marker, "color": color}, legendgroup=name,
                        hovertemplate=f"from scratch, {name}<br>D = %{{x:.4g}}<br>"
                                      "loss = %{y:.4f}<extra></extra>")
        pretrain = by_key.loc[referenced_key(run["config.init_from"]), "D"]
        fig.add_scatter(x=[run["D"]], y=[run["loss"]], mode="markers", row=1, col=col,
                        name=f"pruned-pretrained, {name}", legendgroup=name,
                        marker={"symbol": "star", "size": 13, "color": color},
                        hovertemplate=f"pruned-pretrained, {name}<br>D = %{{x:.4g}} (after "
                                      f"{count(pretrain)} dense)<br>loss = %{{y:.4f}}"
                                      "<extra></extra>")
        match = table[(table["S"] == run["sparsity"]) & (table["width"] == run["width"])
                      & (table["D prune"] == run["D"])]["D from scratch to match"]
        if len(match) and np.isfinite(match.iat[0]):
            fig.add_scatter(x=[run["D"], match.iat[0]], y=[run["loss"]] * 2,
                            mode="lines+markers", row=1, col=col, showlegend=False,
                            line={"color": GREY, "dash": "dot"},
                            marker={"symbol": ["star", "circle-open"], "size": 9,
                                    "color": color},
                            hovertemplate="from scratch reaches it at D = %{x:.4g}"
                                          "<extra></extra>")
    return fig


def conclusion(table: pd.DataFrame) -> str:
    """A short conclusion computed from a `ratio_table`, in Markdown: per sparsity, the data
    ratios (or why there is none) beside the paper's, and the compute ratios."""
    lines = []
    for s, rows in table.groupby("S"):
        parts = []
        for _, r in rows.iterrows():
            where = f"N ≈ {count(r['N_target'])}, {count(r['D prune'])} pruning tokens"
            if np.isfinite(r["data ratio"]):
                parts.append(f"{r['data ratio']:.2f}x ({where}; with the dense pretraining "
                             f"counted, from scratch costs {r['compute ratio']:.2f}x the compute)")
            else:
                parts.append(f"no ratio ({where}): {r['note']}")
        paper = PAPER_RATIOS.get(round(float(s), 6))
        ref = f" (paper: {paper:.2f}x)" if paper else ""
        lines.append(f"- **{plotting.sparsity_label(s)}**{ref}: from-scratch training needs "
                     + "; ".join(parts) + ".")
    return "\n".join(lines)


def pretrain_ratios(configs: Sequence[RunConfig]) -> list[float]:
    """The distinct D pretrain / D prune of the pruned-pretrained configs among `configs` (a
    two-stage grid's, which holds the dense configs they start from), smallest first."""
    amounts = {c.key(): c.data.amount for c in configs}
    return sorted({amounts[key] / c.data.amount for c in configs
                   if (key := referenced_key(c.init_from)) in amounts})


def measured_ratios(table: pd.DataFrame) -> tuple[float, dict[float, float]]:
    """(pretrain ratio r = D pretrain / D prune, {S: mean data ratio}) of the rows of a
    `ratio_table` at the r with the most measured ratios; (NaN, {}) when none is measured."""
    rows = table[np.isfinite(table["data ratio"])]
    if rows.empty:
        return np.nan, {}
    r = rows["D pretrain"] / rows["D prune"]
    best = r.value_counts().index[0]
    at = rows[r == best]
    return float(best), {float(s): float(v) for s, v in at.groupby("S")["data ratio"].mean().items()}


def check_example(N: Any, budgets: Any) -> None:
    """ValueError naming `cost_N` or `cost_budgets` (the notebook's parameters of the
    cost-model example) unless N is a positive number and budgets a non-empty list of them."""
    def positive(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and 0 < x < np.inf

    if not positive(N):
        raise ValueError(f"cost_N must be a positive number of non-zero parameters, got {N!r}")
    if not (isinstance(budgets, list | tuple) and budgets and all(map(positive, budgets))):
        raise ValueError(f"cost_budgets must be a non-empty list of positive FLOP budgets, got "
                         f"{budgets!r}")


def sopt_table(law: Law, N: float, budgets: Sequence[float], pretrain_ratio: float,
               data_ratio: dict[float, float]) -> pd.DataFrame:
    """The loss-optimal sparsity of `law` at N non-zeros for each budget C (FLOPs) under three
    cost models: training from scratch as the dense model of the full size (the paper's), pruning
    a pretrained dense model with the pretraining charged (`costs.pretrained_cost`, pretraining
    on pretrain_ratio x the pruning data), and the same credited with the measured data ratio
    (from scratch needs rho x the pruning data to match it)."""
    models = {
        "from scratch (dense cost)": "dense",
        f"pretrained, charged (r = {pretrain_ratio:g})": pretrained_cost(pretrain_ratio),
        "pretrained, charged and credited": pretrained_cost(pretrain_ratio, data_ratio),
    }
    budgets = np.asarray(budgets, dtype=np.float64)
    sopt = {name: law.optimal_sparsity(N, budgets, cost) for name, cost in models.items()}
    index = pd.Index([number(c, 3) for c in budgets], name="C (FLOPs)")
    # the search resolves S to ~1e-8: a boundary optimum at 0 reads as 0
    return pd.DataFrame(sopt, index=index).where(lambda t: t > 1e-6, 0.0)
