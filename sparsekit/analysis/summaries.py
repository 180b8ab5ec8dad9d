"""What a chapter shows in place of a long table: a short summary first (the recipe checks
against the grid's recipe), then the full table folded (`folded`: one click opens it).

Losses are final validation losses in the family's units (nats per target byte-token for T5,
per image for ViT); differences are in the same units.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from IPython.display import HTML

from sparsekit.analysis.runs import Runs, readable

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

_POINT = ["S", "N_target", "D"]  # the columns of a recipe table that name a grid point


def grid_recipe(table: pd.DataFrame, grid: Runs) -> str:
    """The column of a `recipe_table` that holds the grid's own runs: the recipe whose loss
    equals the grid run's at the most points."""
    ref = readable(grid.table)[[*_POINT, "loss"]]
    merged = table.merge(ref.rename(columns={"loss": "_grid"}), on=_POINT, how="left")
    recipes = [c for c in table.columns if c not in (*_POINT, "width")]
    hits = {c: int(np.isclose(merged[c], merged["_grid"], rtol=0, atol=1e-12).sum())
            for c in recipes}
    return max(hits, key=hits.get)


def recipe_summary(table: pd.DataFrame, grid: Runs) -> pd.DataFrame:
    """One row per recipe of a `recipe_table` (the grid's first): the points it was run at
    and, at the points where the grid's recipe was run too, the mean, smallest and largest
    loss difference (recipe - grid recipe) and at how many of them it reached a lower loss."""
    reference = grid_recipe(table, grid)
    rows = {reference: {"grid's recipe": True, "points": int(table[reference].notna().sum())}}
    for recipe in (c for c in table.columns if c not in (*_POINT, "width", reference)):
        diff = (table[recipe] - table[reference]).dropna()
        rows[recipe] = {
            "grid's recipe": False,
            "points": int(table[recipe].notna().sum()),
            "points beside the grid's": len(diff),
            "mean difference": diff.mean(),
            "min difference": diff.min(),
            "max difference": diff.max(),
            "lower at": int((diff < 0).sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("recipe")


def folded(table: pd.DataFrame | Styler, summary: str) -> HTML:
    """`table` in a collapsed <details> block under the one-line `summary`: the page shows
    the summary, and one click opens the table (in Jupyter as in the book)."""
    return HTML(f"<details><summary>{escape(summary)}</summary>\n{table.to_html()}\n</details>")
