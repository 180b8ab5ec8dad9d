"""The book's analysis: results stores read as runs, seed noise, law fits, the paper's claims
tested on Views of the runs, and the figures and tables the chapters show.

Only the notebooks (and tests) import this package, so, like `sparsekit.plotting`, it loads
pandas and plotly at module level. Units: S is the fraction of zero weights; N the measured
non-zero non-embedding parameters; D the training data in the family's unit (tokens for T5,
images for ViT); C training FLOPs; losses are validation cross-entropies in nats per target
byte-token (T5) or per image (ViT). Every figure goes through `plotting.figure`, so it uses
the book's renderer, colours and axis conventions.

The package's surface is its modules, one concept each, and a few entry points:

- the runs: `runs` (stores as `Runs`, run tables), `noise` (every seed-noise estimate),
  `regime` (D/N against the paper's), `checks` (notebook parameters);
- the laws: `fits` (law fits and their tables), `paper` (the published laws and the re-fit
  of the paper's released runs);
- the claims: `rules` (verdict rules fixed in advance), `evidence` (the statistics they
  weigh), `views` (`View`: one family's runs within one D/N range), `claims` (the registry
  of `Claim`s 1-10), `findings` (`findings(frame)` and the chapter's views), `chapter` (the
  Findings chapter assembled), `likeforlike` (the designed like-for-like set);
- the chapters' own analyses: `patterns` (n:m), `pretrained` (pruning pretrained models),
  `criteria` (a task's design criteria), `summaries`, `provenance`;
- display: `figures`, `tables`.

Notebooks call `analysis.<module>.<name>`, e.g. `analysis.fits.fit_laws`; the entry points
below are also at the top. (`analysis.findings` is the function; import the module's other
names from `sparsekit.analysis.findings`.)
"""

from __future__ import annotations

from sparsekit.analysis import (
    chapter,
    checks,
    claims,
    criteria,
    evidence,
    figures,
    fits,
    likeforlike,
    noise,
    paper,
    patterns,
    pretrained,
    provenance,
    regime,
    rules,
    runs,
    summaries,
    tables,
    views,
)
from sparsekit.analysis.chapter import show
from sparsekit.analysis.claim import Claim, Verdict
from sparsekit.analysis.claims import CLAIMS
from sparsekit.analysis.findings import findings, heldout_comparison
from sparsekit.analysis.fits import fit_laws
from sparsekit.analysis.runs import FAMILY_LABELS, Runs, load_runs
from sparsekit.analysis.tables import styled
from sparsekit.analysis.views import View, view

__all__ = [
    "CLAIMS",
    "FAMILY_LABELS",
    "Claim",
    "Runs",
    "Verdict",
    "View",
    "chapter",
    "checks",
    "claims",
    "criteria",
    "evidence",
    "figures",
    "findings",
    "fit_laws",
    "fits",
    "heldout_comparison",
    "likeforlike",
    "load_runs",
    "noise",
    "paper",
    "patterns",
    "pretrained",
    "provenance",
    "regime",
    "rules",
    "runs",
    "show",
    "styled",
    "summaries",
    "tables",
    "view",
    "views",
]
