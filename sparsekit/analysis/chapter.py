"""The Findings chapter assembled: its runs, the two views of each family, the verdict tables,
and what the chapter shows under each claim.

`findings_chapter(...)` loads each family's store and tests the claims on two views of its
runs, every run and the runs inside the paper's D/N range (`findings.assess_views`).
`claim_outputs(chapter, k)` lists what shows claim k: its row of the verdict tables, then the
figures (and, for claim 6, the law-form comparison). The notebook displays them (`show`), so
the chapter's logic lives here and is tested like the rest of the package.

Units: N non-zero non-embedding parameters; D tokens (T5) or images (ViT); losses in nats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from IPython.display import Markdown, display

from sparsekit.analysis.extensions import EXTENSION_CLAIMS, extension_verdicts
from sparsekit.analysis.figures import (
    dense_equivalent_figure,
    exponent_figure,
    gap_figure,
    predicted_vs_measured,
    sopt_map,
)
from sparsekit.analysis.findings import (
    CLAIMS,
    Assessment,
    assess_views,
    claim_row,
    claim_table,
    exponent_table,
    not_testable,
)
from sparsekit.analysis.fits import ALL_RUNS, in_range_label, project_scale
from sparsekit.analysis.patterns import pattern_runs
from sparsekit.analysis.regime import within
from sparsekit.analysis.runs import (
    FAMILY_LABELS,
    Runs,
    load_families,
    load_stores,
    stores_with_runs,
    styled,
)
from sparsekit.config import PROTOCOLS

FAMILY_ORDER = ("t5", "vit")


@dataclass(frozen=True)
class FindingsChapter:
    """What the Findings chapter rests on.

    runs: family -> its grid's runs; missing: family -> why it has none ("" if it has);
    views: family -> view label (`ALL_RUNS`, `in_range_label(floor)`) -> `Assessment`;
    tables: "T5, all runs" etc. -> the verdict table of that view (every family, tested or
    not); smoke: maps drawn coarser."""

    runs: Mapping[str, Runs]
    missing: Mapping[str, str]
    views: Mapping[str, Mapping[str, Assessment]]
    tables: Mapping[str, pd.DataFrame]
    smoke: bool = False


def findings_chapter(
    stores: Mapping[str, str | None],
    reasons: Mapping[str, str],
    *,
    floors: Mapping[str, float],
    seeds: Mapping[str, Sequence[str]],
    heldout: Mapping[str, Sequence[str]],
    patterns: Mapping[str, Sequence[str]] | None = None,
    pretrained: Mapping[str, Sequence[str]] | None = None,
    bootstrap: int,
    seed: int = 0,
    smoke: bool = False,
) -> FindingsChapter:
    """Load each family's store (None: none, for the reason in `reasons`) and assess its two
    views against its seed stores and held-out stores; `floors` are the in-range D/N floors.
    `patterns` and `pretrained` (family -> stores; those without runs are skipped) add the
    extension claims 9 and 10 (`extensions`)."""
    runs, missing = load_families({f: s for f, s in stores.items() if s is not None})
    missing = {**{f: why for f, why in reasons.items() if why}, **missing}
    views = {family: assess_views(r, floor=floors[family], seeds=seeds.get(family, ()),
                                  heldout=heldout.get(family, ()), bootstrap=bootstrap, seed=seed)
             for family, r in runs.items()}
    tables = {}
    claims = (*CLAIMS, *EXTENSION_CLAIMS)
    for family in FAMILY_ORDER:
        nm = _pattern_runs((patterns or {}).get(family, ()), runs.get(family))
        pre = (load_stores(stores_with_runs(pretrained.get(family, ())), family=family)
               if pretrained and family in runs else None)
        for label, floor in ((ALL_RUNS, None), (in_range_label(floors[family]), floors[family])):
            name = f"{FAMILY_LABELS[family]}, {label}{_protocol(runs.get(family))}"
            if family not in views:
                tables[name] = not_testable(family, missing.get(family, "no runs"), claims)
                continue
            a = views[family][label]
            extra = extension_verdicts(
                patterns=within(nm, floor) if nm is not None else None, grid=a.runs,
                noise=a.noise, pretrained=pre, floor=floor)
            rows = pd.DataFrame([claim_row(k, family, *v) for k, v in extra.items()])
            tables[name] = pd.concat([a.table(), rows], ignore_index=True)
    return FindingsChapter(runs, missing, views, tables, smoke)


def _pattern_runs(stores: Sequence[str], grid: Runs | None) -> Runs | None:
    """The n:m runs of the stores that have runs, with their unstructured twins (None: none)."""
    stores = stores_with_runs(stores)
    if grid is None or not stores:
        return None
    try:
        return pattern_runs(stores, grid)
    except ValueError:  # no n:m runs among them
        return None


def _protocol(runs: Runs | None) -> str:
    """", protocol" of a family's runs for its verdict columns (`config.Sparsity.protocol`,
    "mixed" when they differ); "" without runs."""
    if runs is None or "config.sparsity.embed_rule" not in runs.table:
        return ""
    names = {PROTOCOLS[bool(x)] for x in runs.table["config.sparsity.embed_rule"]}
    return f", {names.pop() if len(names) == 1 else 'mixed protocols'}"


def view_noise_table(chapter: FindingsChapter) -> pd.DataFrame:
    """Per (family, view): the runs tested, the seed SD (nats) they are judged against and
    its degrees of freedom (the t-quantiles of their intervals)."""
    rows = {(FAMILY_LABELS[f], label): {"runs": len(a.runs), "seed SD (nats)": a.noise,
                                       "its degrees of freedom": a.noise_df}
            for f, both in chapter.views.items() for label, a in both.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def _gap_figures(chapter: FindingsChapter, against: str, what: str) -> list[go.Figure]:
    out = []
    for both in chapter.views.values():
        a = both[ALL_RUNS]
        out.append(gap_figure(a.gaps, against, unit=a.runs.unit,
                              title=f"{a.runs.label}: {what}, all runs"))
    return out


def _exponents(chapter: FindingsChapter) -> list[go.Figure]:
    out = []
    for family, both in chapter.views.items():
        panels = {label: t for label, a in both.items() if len(t := exponent_table(a))}
        if panels:
            out.append(exponent_figure(panels, f"{FAMILY_LABELS[family]}: size exponent per "
                                               "sparsity"))
    return out


def _fitted(chapter: FindingsChapter) -> list[go.Figure]:
    out = []
    for family, both in chapter.views.items():
        panels = {label: (a.runs, a.fit.law) for label, a in both.items() if a.fit is not None}
        if panels:
            out.append(predicted_vs_measured(
                panels, f"{FAMILY_LABELS[family]}: the sparse law, predicted vs measured"))
    return out


def _extrapolation(chapter: FindingsChapter) -> list[Any]:
    out: list[Any] = []
    for family, both in chapter.views.items():
        label = FAMILY_LABELS[family]
        panels = {v: p for v, a in both.items() if a.fit is not None
                  and (p := a.extrapolation()) is not None}
        if panels:
            out.append(predicted_vs_measured(
                panels, f"{label}: runs not fitted, predicted by the sparse law"))
        out.append(Markdown(f"**{label}**: which law form predicts them best"))
        out.append(styled(pd.concat({v: a.law_comparison() for v, a in both.items()})))
    return out


def _sopt(chapter: FindingsChapter) -> list[go.Figure]:
    out = []
    for both in chapter.views.values():
        laws = {label: a.fit.law for label, a in both.items() if a.fit is not None}
        if laws:
            r = both[ALL_RUNS].runs
            out.append(sopt_map(laws, project_scale(r), cost="dense", runs=r,
                                points=15 if chapter.smoke else 40,
                                title=f"{r.label}: optimal sparsity of the fitted law, cost "
                                      "model: dense"))
    return out


def _dense_equivalents(chapter: FindingsChapter) -> list[Any]:
    out: list[Any] = []
    for i, label in enumerate((ALL_RUNS, "runs inside the paper's range")):
        fits = {family: fit for family, both in chapter.views.items()
                if (fit := list(both.values())[i].fit) is not None}
        if fits:
            out += [Markdown(f"**{label}**"), dense_equivalent_figure(fits)]
    return out


FIGURES = {
    1: lambda c: _gap_figures(c, "S", "loss relative to dense"),
    2: lambda c: [],  # read off claim 1's figure: a line that flattens as S rises
    3: _exponents,
    4: lambda c: _gap_figures(c, "D", "loss relative to dense against data"),
    5: _fitted,
    6: _extrapolation,
    7: _sopt,
    8: _dense_equivalents,
    9: lambda c: [],  # the n:m chapter shows the gaps
    10: lambda c: [],  # the pretrained chapter shows the curves
}


def claim_outputs(chapter: FindingsChapter, claim: int) -> list[Any]:
    """What shows claim `claim` (1-10): its row of every verdict table, then its figures."""
    if claim not in FIGURES:
        raise ValueError(f"claim must be one of {sorted(FIGURES)}, got {claim!r}")
    return [styled(claim_table(chapter.tables, claim)), *FIGURES[claim](chapter)]


def show(items: Iterable[Any]) -> None:
    """Display each item in a notebook: plotly figures with the book's renderer
    (`fig.show()`), text printed, anything else with IPython's `display`."""
    for item in items:
        if isinstance(item, go.Figure):
            item.show()
        elif isinstance(item, str):
            print(item)
        else:
            display(item)
