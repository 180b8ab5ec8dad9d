"""The book's analysis: results stores as fit arrays, the standard figures, law fits that cope
with partial stores, the comparison tables, and provenance summaries.

Only the notebooks (and tests) import this package, so, like `sparsekit.plotting`, it loads
pandas and plotly at module level. Units: S is the fraction of zero weights; N the measured
non-zero non-embedding parameters; D the training data in the family's unit (tokens for T5,
images for ViT); C training FLOPs; losses are validation cross-entropies in nats per target
byte-token (T5) or per image (ViT). Every figure goes through `plotting.figure`, so it uses
the book's renderer, colours and axis conventions.

Modules: `checks` (notebook parameters), `runs` (stores as runs, run tables), `fits` (law
fits and their tables), `regime` (D/N against the paper's), `figures` (plotly figures), `provenance` (provenance tables). The
notebooks use them through this package: `from sparsekit import analysis; analysis.fit_laws`.
"""

from __future__ import annotations

from sparsekit.analysis.checks import (
    check_choice,
    check_choices,
    check_flag,
    check_grid,
    check_int,
    check_store,
    check_stores,
)
from sparsekit.analysis.figures import (
    DASHES,
    GREY,
    LOSS_UNITS,
    N_TITLE,
    SYMBOLS,
    count,
    data_title,
    dense_equivalent_figure,
    loss_title,
    loss_vs_data,
    loss_vs_size,
    predicted_vs_measured,
    sopt_map,
    wall_time_figure,
)
from sparsekit.analysis.fits import (
    DELTA,
    HOLD_OUT_WITHIN,
    LAW_LABELS,
    LOG,
    PAPER,
    PAPER_LEVELS,
    PAPER_SCALE,
    LawFits,
    coefficient_table,
    comparison_table,
    dense_equivalent_table,
    fit_laws,
    law_points,
    project_scale,
    unsupported,
)
from sparsekit.analysis.provenance import SHA, provenance_summary, provenance_table
from sparsekit.analysis.regime import (
    PAPER_REGIME,
    paper_minimum,
    regime_table,
    tokens_per_param,
    within,
)
from sparsekit.analysis.runs import (
    FAMILIES,
    RUN_COLUMNS,
    SMOKE_RESULTS,
    Runs,
    coverage_table,
    describe_sweep,
    load_families,
    load_runs,
    noise_floor,
    pattern_table,
    pooled_sd,
    recipe_table,
    run_grid,
    runs_from_table,
    runs_table,
    seed_spread,
    styled,
)

__all__ = [
    "DASHES",
    "DELTA",
    "FAMILIES",
    "GREY",
    "HOLD_OUT_WITHIN",
    "LAW_LABELS",
    "LOG",
    "LOSS_UNITS",
    "N_TITLE",
    "PAPER",
    "PAPER_LEVELS",
    "PAPER_REGIME",
    "PAPER_SCALE",
    "RUN_COLUMNS",
    "SHA",
    "SMOKE_RESULTS",
    "SYMBOLS",
    "LawFits",
    "Runs",
    "check_choice",
    "check_choices",
    "check_flag",
    "check_grid",
    "check_int",
    "check_store",
    "check_stores",
    "coefficient_table",
    "comparison_table",
    "count",
    "coverage_table",
    "data_title",
    "dense_equivalent_figure",
    "dense_equivalent_table",
    "describe_sweep",
    "fit_laws",
    "law_points",
    "load_families",
    "load_runs",
    "loss_title",
    "loss_vs_data",
    "loss_vs_size",
    "noise_floor",
    "paper_minimum",
    "pattern_table",
    "pooled_sd",
    "predicted_vs_measured",
    "project_scale",
    "provenance_summary",
    "provenance_table",
    "recipe_table",
    "regime_table",
    "run_grid",
    "runs_from_table",
    "runs_table",
    "seed_spread",
    "sopt_map",
    "styled",
    "tokens_per_param",
    "unsupported",
    "wall_time_figure",
    "within",
]
