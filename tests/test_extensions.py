"""The extension claims (9: n:m at 50% close to unstructured; 10: pruning a pretrained dense
model beats from scratch): their rules by hand, and their verdicts on synthetic runs whose
answers are known (claim 10 on synthetic two-stage runs: tests/test_pretrained.py)."""

import numpy as np
import pandas as pd

from sparsekit.analysis.evidence import FAILS, HOLDS, UNTESTABLE, Effect
from sparsekit.analysis.extensions import (
    claim_9,
    extension_verdicts,
    rule_close_pattern,
    rule_pretrained,
)
from sparsekit.analysis.findings import STATEMENTS, claim_row
from sparsekit.analysis.runs import Runs

NOISE = 0.005  # seed SD, nats


def test_rule_close_pattern_by_hand() -> None:
    gain = Effect(0.10, 0.01)
    assert rule_close_pattern(Effect(0.004, 0.005), gain) == HOLDS  # within the noise
    assert rule_close_pattern(Effect(0.02, 0.002), gain) == HOLDS  # 0.02 <= 0.25 x 0.10
    assert rule_close_pattern(Effect(0.05, 0.002), gain) == FAILS  # half the gain given up
    assert rule_close_pattern(Effect(0.0, 0.01), Effect(0.01, 0.01)) == UNTESTABLE  # no gain
    assert rule_close_pattern(Effect(0.0, np.nan), gain) == UNTESTABLE


def test_rule_pretrained_by_hand() -> None:
    assert rule_pretrained(1.5, 6.0) == HOLDS
    assert rule_pretrained(0.3, 0.9) == FAILS
    assert rule_pretrained(0.8, 1.4) == UNTESTABLE  # straddles 1
    assert rule_pretrained(np.nan, 3.0) == UNTESTABLE  # not bracketed


def pattern_runs(gap: float, gain: float) -> tuple[Runs, Runs]:
    """n:m runs (2:4 and 4:8 at 50%) `gap` above their unstructured twins, which are `gain`
    below the dense runs, at 2 sizes x 2 data amounts, one seed each."""
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
    return Runs("t5", "tokens", "n:m", table[table["sparsity"] == 0.5]), grid


def test_claim_9_holds_when_a_pattern_keeps_the_gain_and_fails_when_it_loses_it() -> None:
    runs, grid = pattern_runs(gap=0.002, gain=0.1)
    evidence, verdict = claim_9(runs, grid, NOISE)
    assert verdict == HOLDS and "2:4: gap +0.002" in evidence and "over 4 points" in evidence
    runs, grid = pattern_runs(gap=0.08, gain=0.1)
    assert claim_9(runs, grid, NOISE)[1] == FAILS
    runs, grid = pattern_runs(gap=0.0, gain=0.0)  # unstructured gains nothing: cannot tell
    assert claim_9(runs, grid, NOISE)[1] == UNTESTABLE
    assert claim_9(None, grid, NOISE) == ("no n:m runs (in this range)", UNTESTABLE)


def test_extension_rows_join_the_verdict_tables() -> None:
    runs, grid = pattern_runs(gap=0.002, gain=0.1)
    verdicts = extension_verdicts(patterns=runs, grid=grid, noise=NOISE)
    rows = pd.DataFrame([claim_row(k, "t5", *v) for k, v in verdicts.items()])
    assert list(rows["claim"]) == [9, 10] and list(rows["verdict"]) == [HOLDS, UNTESTABLE]
    assert rows["statement"].tolist() == [STATEMENTS[9], STATEMENTS[10]]
    assert rows["paper"].iloc[1] == "4.90 / 4.27 / 2.45x" and rows["rule"].str.len().min() > 50
