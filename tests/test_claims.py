"""The contract suite: every Claim of the registry (`analysis.claims.CLAIMS`) on the same
known-answer Views, the way optax's `_common_test.py` runs one suite over every
transformation.

The contract: a claim has its number, a statement, a rule made from the constants its test
uses, the paper's value per family, and a test that returns a `Verdict` (one of
`rules.VERDICTS`, with evidence) on any View, "not testable" when the data are absent. The
known answers (runs drawn from laws, `known_runs.paper_runs`): the paper's law -> claims
1-8 hold; a loss flat in S with tiny noise -> 1 and 8 do not hold, and 2 holds (a zero gain
is a saturated factor); a gap that halves with
each doubling of D -> 4 does not hold; a flat loss with noise too large to decide -> 1 and 8
undetermined, never "holds" or "does not hold". Claims 9 and 10 get n:m and pruned-pretrained
runs whose gaps and data ratios are known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from known_runs import paper_runs, pretrained_case

from sparsekit.analysis import claims_laws, evidence, extensions
from sparsekit.analysis.claim import Claim, Verdict
from sparsekit.analysis.claims import CLAIMS, PAPER_CLAIMS, check_claims, verdicts
from sparsekit.analysis.findings import frame_views
from sparsekit.analysis.rules import FAILS, HOLDS, UNDETERMINED, UNTESTABLE, VERDICTS
from sparsekit.analysis.runs import Runs
from sparsekit.analysis.views import View

BOOTSTRAP = 10


def _view(frame: pd.DataFrame, **kwargs) -> View:
    return frame_views(frame, bootstrap=BOOTSTRAP, **kwargs)["t5"]


@pytest.fixture(scope="module")
def known() -> dict[str, View]:
    """The known-answer Views, built once: their fits are shared by every claim."""
    noisy = paper_runs("flat")
    noisy["loss"] *= np.exp(np.random.default_rng(3).normal(0.0, 0.5, len(noisy)))  # 50%
    return {"law": _view(paper_runs()), "flat": _view(paper_runs("flat")),
            "halves": _view(paper_runs("halves")), "flat, noisy": _view(noisy)}


EXPECTED = [  # (case, claim, the verdicts allowed)
    *[("law", k, {HOLDS}) for k in PAPER_CLAIMS],
    ("flat", 1, {FAILS}),
    ("flat", 2, {HOLDS}),  # no gain at any step: the factor has saturated (not "no shrink")
    ("flat", 8, {FAILS}),
    ("halves", 4, {FAILS}),
    ("flat, noisy", 1, {UNDETERMINED}),
    ("flat, noisy", 8, {UNDETERMINED}),
]


@pytest.mark.parametrize(("case", "claim", "allowed"), EXPECTED,
                         ids=[f"{c}-claim{k}" for c, k, _ in EXPECTED])
def test_known_answers(known, case, claim, allowed) -> None:
    verdict = CLAIMS[claim].test(known[case])
    assert verdict.verdict in allowed, verdict.evidence


# --- the contract, over every claim --------------------------------------------------------

RULE_CONSTANTS = {  # what each rule's text must name: the constants its test uses
    1: [f"{evidence.SHARE:g}"], 2: ["R"], 3: [f"{evidence.SHARE:g}"], 4: [f"{evidence.SHARE:g}"],
    5: [f"{evidence.FIT_TOLERANCE:g}"], 6: [f"{evidence.FIT_TOLERANCE:g}"],
    7: [f"{evidence.SOPT_RISE:g}", f"{evidence.PARALLEL[0]:g}", f"{evidence.PARALLEL[1]:g}"],
    8: ["1 ", "paper's value"], 9: [f"{extensions.CLOSE:g}"], 10: [f"{evidence.SHARE:g}"],
}


def test_the_registry_holds_claims_1_to_10_by_number() -> None:
    assert list(CLAIMS) == list(range(1, 11)) and tuple(range(1, 9)) == PAPER_CLAIMS
    assert all(isinstance(c, Claim) and c.number == k for k, c in CLAIMS.items())
    assert check_claims([1, 9]) == (1, 9)
    for bad in ([], [0], [11], "1"):
        with pytest.raises(ValueError, match="claims must be a non-empty list"):
            check_claims(bad)


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_a_claim_states_its_rule_from_its_constants(claim) -> None:
    c = CLAIMS[claim]
    assert c.statement.endswith(".") and len(c.rule) > 60
    assert all(x in c.rule for x in RULE_CONSTANTS[claim]), c.rule
    for family in ("t5", "vit", "other"):
        assert isinstance(c.paper(family), str)
    if claim in PAPER_CLAIMS and claim != 6:  # claim 6's test is the paper's T5 run only
        assert c.paper("vit")


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_a_claim_gives_a_verdict_with_evidence_on_any_view(known, claim) -> None:
    one_level = paper_runs()
    one_level = _view(one_level[one_level["sparsity"] == 0])
    for v in (known["law"], known["flat, noisy"], one_level):
        verdict = CLAIMS[claim].test(v)
        assert isinstance(verdict, Verdict) and verdict.verdict in VERDICTS
        assert verdict.evidence
    assert CLAIMS[claim].test(one_level).verdict == UNTESTABLE  # one level: nothing to compare


def test_a_verdict_must_be_one_of_the_verdicts() -> None:
    with pytest.raises(ValueError, match="verdict must be one of"):
        Verdict("maybe", "")


def test_verdicts_of_a_view_without_runs_are_not_testable(known) -> None:
    empty = known["law"].runs.select(np.zeros(len(known["law"].runs), bool))
    table = verdicts(View(empty))
    assert (table["verdict"] == UNTESTABLE).all() and (table["evidence"] == "no runs").all()
    assert list(table.columns) == ["claim", "family", "statement", "evidence", "paper",
                                   "verdict", "rule"]


def test_exponent_table_reads_the_per_level_fits(known) -> None:
    table = claims_laws.exponent_table(known["law"])
    assert len(table) == 4 and np.all(table["SE"] > 0)


# --- claims 9 and 10: n:m and pruned-pretrained runs with known answers ----------------------

NOISE = 0.005  # seed SD, nats


def pattern_runs(gap: float, gain: float) -> tuple[Runs, Runs]:
    """n:m runs (2:4 and 4:8 at 50%) `gap` above their unstructured twins, which are `gain`
    below the dense runs, at 2 sizes x 2 data amounts, one seed each: (n:m runs with their
    unstructured and dense twins, as `patterns.pattern_runs` gives them; the grid's runs)."""
    rows = []
    for n, D in ((16384, 2**22), (16384, 2**23), (65536, 2**22), (65536, 2**23)):
        base = 3.0 - 0.1 * np.log2(n / 16384) - 0.05 * np.log2(D / 2**22)
        rows.append({"sparsity": 0.0, "pattern": "unstructured", "loss": base, "width": 16})
        rows.append({"sparsity": 0.5, "pattern": "unstructured", "loss": base - gain, "width": 24})
        for p in ("2:4", "4:8"):
            rows.append({"sparsity": 0.5, "pattern": p, "loss": base - gain + gap, "width": 24})
        for r in rows[-4:]:
            r.update({"N_target": n, "N": n, "D": D})
    table = pd.DataFrame(rows).assign(key=[f"k{i}" for i in range(len(rows))])
    grid = Runs("t5", "tokens", "grid", table[table["pattern"] == "unstructured"])
    return Runs("t5", "tokens", "n:m", table), grid


def _nm_view(gap: float, gain: float, df: float = np.inf) -> View:
    nm, grid = pattern_runs(gap, gain)
    return View(grid, noise=NOISE, noise_df=df, patterns=nm)


def test_claim_9_on_patterns_whose_gap_is_known() -> None:
    test = CLAIMS[9].test
    close = test(_nm_view(gap=0.002, gain=0.1))
    assert close.verdict == HOLDS and "2:4: gap 0.002 [" in close.evidence
    assert "over 4 points" in close.evidence
    assert test(_nm_view(gap=0.08, gain=0.1)).verdict == FAILS  # most of the gain given up
    assert test(_nm_view(gap=0.0, gain=0.0)).verdict == UNDETERMINED  # no gain to be close to
    assert test(_nm_view(gap=0.024, gain=0.1, df=2)).verdict == UNDETERMINED  # near the bound
    nm, grid = pattern_runs(0.0, 0.1)
    assert test(View(grid, noise=NOISE)) == Verdict(UNTESTABLE, "no n:m runs (in this range)")
    no_dense = Runs("t5", "tokens", "n:m", nm.table[nm.table["sparsity"] == 0.5])
    assert test(View(grid, noise=NOISE, patterns=no_dense)) == Verdict(
        UNTESTABLE, "no 50% n:m run with unstructured and dense twins")


def test_rule_close_pattern_by_hand() -> None:
    gain = evidence.Effect(0.10, 0.01)
    assert extensions.rule_close_pattern(evidence.Effect(0.004, 0.005), gain) == HOLDS
    assert extensions.rule_close_pattern(evidence.Effect(0.05, 0.002), gain) == FAILS
    assert extensions.rule_close_pattern(evidence.Effect(0.02, 0.01), gain) == UNDETERMINED
    assert extensions.rule_close_pattern(evidence.Effect(0.0, 0.01),
                                         evidence.Effect(0.01, 0.01)) == UNDETERMINED
    assert extensions.rule_close_pattern(evidence.Effect(0.0, np.nan), gain) == UNTESTABLE


def test_rule_pretrained_by_hand() -> None:
    from sparsekit.analysis.rules import Interval

    assert extensions.rule_pretrained(Interval(3.0, 1.5, 6.0, np.inf), 4.9) == HOLDS
    assert extensions.rule_pretrained(Interval(0.6, 0.3, 0.9, np.inf), 4.9) == FAILS
    # R = 4.9 ** 0.25 = 1.49: an interval below it is too small a gain to count
    assert extensions.rule_pretrained(Interval(1.1, 0.8, 1.4, np.inf), 4.9) == FAILS
    assert extensions.rule_pretrained(Interval(1.3, 0.9, 1.8, np.inf), 4.9) == UNDETERMINED
    assert extensions.rule_pretrained(Interval(1.1, 0.8, 1.4, np.inf), 1.2) == UNDETERMINED
    assert extensions.rule_pretrained(Interval(3.0, np.nan, 6.0, np.inf), 4.9) == UNTESTABLE


def test_claim_10_on_pruned_pretrained_runs_whose_ratio_is_known() -> None:
    grid, with_loss, matched, worse, D = pretrained_case()
    test = CLAIMS[10].test

    def v(runs, noise=0.01, df=np.inf, floor=None):
        return View(grid, noise=noise, noise_df=df, pretrained=runs, floor=floor)

    found = test(v(with_loss(matched)))
    assert found.verdict == HOLDS and found.evidence.startswith(f"50%, N 4000, D {D}: 8x [")
    # the interval is the ratio with the loss moved by 1.96 seed SDs (df inf): L = 10 D^-0.1
    low, high = (((10 / (matched + s)) ** 10) / 4096 for s in (0.0196, -0.0196))
    assert f"[{low:.3g}, {high:.3g}]" in found.evidence
    assert test(v(with_loss(worse))).verdict == FAILS
    assert test(v(with_loss(1.0))).verdict == UNTESTABLE  # below the whole curve
    assert test(v(None)).verdict == UNTESTABLE
    assert test(v(grid)) == Verdict(UNTESTABLE, "no pruned-pretrained runs")
    assert test(v(with_loss(matched), noise=np.nan)).verdict == UNTESTABLE
    assert test(v(with_loss(matched), floor=2.0)).verdict == UNTESTABLE  # D/N 4096 / 4000
    # a seed SD on 1 degree of freedom: t_1 = 12.7 SDs either way, the ratio cannot decide
    assert test(v(with_loss(matched), noise=0.02, df=1)).verdict in (UNDETERMINED, UNTESTABLE)


# --- the analysis package's shape (issue 25): small modules, a small surface, no cycles -----


def _analysis_imports() -> dict[str, set[str]]:
    """Module -> the analysis modules it imports (at any level of the file)."""
    import ast
    from pathlib import Path

    import sparsekit.analysis as package

    graph = {}
    for path in Path(package.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("sparsekit.analysis."):
                    found.add(node.module.rsplit(".", 1)[1])
                elif node.module == "sparsekit.analysis":
                    found |= {a.name for a in node.names}
        graph[path.stem] = found
    return graph


def test_the_analysis_package_is_small_modules_without_cycles() -> None:
    from pathlib import Path

    import sparsekit.analysis as package

    assert len(package.__all__) <= 40
    assert all(hasattr(package, name) for name in package.__all__)
    for path in Path(package.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name
    graph = {m: deps for m, deps in _analysis_imports().items() if m != "__init__"}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for d in graph.get(start, ()):
            if d == target or (d not in seen and reaches(d, target, seen | {d})):
                return True
        return False

    assert not [m for m in graph if reaches(m, m, set())]


def test_refits_at_the_search_bound_are_named_in_the_evidence(known) -> None:
    import dataclasses

    from sparsekit.analysis.fits import refit_bounds

    fit = known["law"].fit
    assert refit_bounds(fit) == ""  # the paper's law pins every exponent
    pinned = dataclasses.replace(fit, bootstrap_laws=(
        dataclasses.replace(fit.law, b_S=1e-3), fit.law))
    assert refit_bounds(pinned) == "at the search bound in b_S 50% of 2 refits"
    assert claims_laws.at_bounds_note(pinned) == "; " + refit_bounds(pinned)
