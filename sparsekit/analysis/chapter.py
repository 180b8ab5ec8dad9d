"""The Findings chapter assembled: its runs, the two views of each family, the verdict tables,
and what the chapter shows under each claim.

`findings_chapter(...)` loads each family's store and tests the claims on two views of its
runs, every run and the runs inside the paper's D/N range (`findings.family_views`).
`claim_outputs(chapter, k)` lists what shows claim k: its row of the verdict tables, then the
figures (and, for claim 6, the law-form comparison). The notebook displays them (`show`), so
the chapter's logic lives here and is tested like the rest of the package.

Units: N non-zero non-embedding parameters; D tokens (T5) or images (ViT); losses in nats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import display

from sparsekit.analysis.claims import CLAIMS, not_testable, verdicts
from sparsekit.analysis.findings import family_views
from sparsekit.analysis.fits import ALL_RUNS, in_range_label
from sparsekit.analysis.patterns import pattern_runs
from sparsekit.analysis.rules import FAILS, HOLDS, PARTLY, UNDETERMINED, UNTESTABLE
from sparsekit.analysis.runs import (
    FAMILY_LABELS,
    Runs,
    load_families,
    load_stores,
    stores_with_runs,
    styled,
)
from sparsekit.analysis.views import View
from sparsekit.config import PROTOCOLS

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

FAMILY_ORDER = ("t5", "vit")


@dataclass(frozen=True)
class FindingsChapter:
    """What the Findings chapter rests on.

    runs: family -> its grid's runs; missing: family -> why it has none ("" if it has);
    views: family -> view label (`ALL_RUNS`, `in_range_label(floor)`) -> `View`;
    tables: "T5, all runs" etc. -> the verdict table of that view (every family, tested or
    not); smoke: maps drawn coarser."""

    runs: Mapping[str, Runs]
    missing: Mapping[str, str]
    views: Mapping[str, Mapping[str, View]]
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
    views = {}
    for family, r in runs.items():
        pre = (load_stores(stores_with_runs(pretrained.get(family, ())), family=family)
               if pretrained else None)
        views[family] = family_views(
            r, floor=floors[family], seeds=seeds.get(family, ()),
            heldout=heldout.get(family, ()),
            patterns=_pattern_runs((patterns or {}).get(family, ()), r), pretrained=pre,
            bootstrap=bootstrap, seed=seed)
    tables = {}
    for family in FAMILY_ORDER:
        for label in (ALL_RUNS, in_range_label(floors[family])):
            name = f"{FAMILY_LABELS[family]}, {label}{_protocol(runs.get(family))}"
            tables[name] = (verdicts(views[family][label]) if family in views else
                            not_testable(family, missing.get(family, "no runs")))
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


VERDICT_COLOURS = {HOLDS: "#d4edda", PARTLY: "#fff3cd", FAILS: "#f8d7da",
                   UNDETERMINED: "#dde7f3", UNTESTABLE: "#e9ecef"}


def verdict_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The verdicts side by side: one row per claim (number and statement), one column per
    labelled `findings`/`claims.verdicts` table (e.g. "T5, all runs")."""
    columns = {label: t.set_index("claim")["verdict"] for label, t in tables.items()}
    table = pd.DataFrame(columns)
    table.index = pd.Index([f"{k}. {CLAIMS[k].statement}" for k in table.index], name="claim")
    return table


def claim_table(tables: Mapping[str, pd.DataFrame], claim: int) -> pd.DataFrame:
    """One claim across labelled verdict tables: one row per label with the verdict, the
    evidence and the paper's value."""
    rows = {label: t.set_index("claim").loc[claim, ["verdict", "evidence", "paper"]]
            for label, t in tables.items()}
    return pd.DataFrame(rows).T


def styled_verdicts(table: pd.DataFrame) -> Styler:
    """A `verdict_table` for display (as `tables.styled`, never split), each verdict on its
    colour (VERDICT_COLOURS)."""
    return styled(table, width=np.inf).map(
        lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}",
        subset=[c for c in table if c not in ("evidence", "paper")])


def view_noise_table(chapter: FindingsChapter) -> pd.DataFrame:
    """Per (family, view): the runs tested, the seed SD (nats) they are judged against and
    its degrees of freedom (the t-quantiles of their intervals); both blank where the view
    has no seed noise (no runs repeated with other seeds)."""
    rows = {(FAMILY_LABELS[f], label): {
        "runs": len(v.runs), "seed SD (nats)": v.noise,
        "its degrees of freedom": v.noise_df if np.isfinite(v.noise) else np.nan}
            for f, both in chapter.views.items() for label, v in both.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def claim_outputs(chapter: FindingsChapter, claim: int) -> list[Any]:
    """What shows claim `claim` (1-10): its row of every verdict table, then its figures."""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {sorted(CLAIMS)}, got {claim!r}")
    return [styled(claim_table(chapter.tables, claim)),
            *CLAIMS[claim].figures(chapter.views, chapter.smoke)]


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
