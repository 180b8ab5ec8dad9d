"""Tests of sparsekit.analysis.criteria on synthetic grids with known answers."""

import numpy as np
import pandas as pd
import pytest

from sparsekit.analysis import criteria
from sparsekit.analysis.runs import Runs

SIZES = [3072, 6144, 12288, 24576]
AMOUNTS = [393216, 786432, 1572864]
FLOOR, PLATEAU = 2.0, 4.1


def law(N, D):
    """A Chinchilla law with a floor: what the dense runs follow exactly."""
    return FLOOR + 40.0 / np.asarray(N) ** 0.5 + 30.0 / np.asarray(D) ** 0.3


def grid_runs(changes: dict | None = None) -> Runs:
    rows = []
    for s in (0.0, 0.5, 0.75, 0.875):
        for n in SIZES:
            for d in AMOUNTS:
                rows.append({"sparsity": s, "N": n, "N_target": n, "D": d,
                             "loss": float(law(n, d)) - 0.02 * s, "loss_se": 0.01,
                             "data.floor": FLOOR, "data.marginal": PLATEAU,
                             "wall_time_s": 300.0})
    table = pd.DataFrame(rows)
    for (s, n, d), loss in (changes or {}).items():
        table.loc[(table["sparsity"] == s) & (table["N"] == n) & (table["D"] == d), "loss"] = loss
    return Runs("vit", "images", "synthetic", table)


def spread(sd: float, points: int = 3, seeds: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"recipe": "LR", "S": 0.0, "N_target": SIZES[:points], "width": 16,
                         "D": AMOUNTS[0], "runs": seeds, "mean": 3.0, "SD": sd,
                         "range": 2 * sd, "grid recipe": True})


def status(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["criterion"], table["status"], strict=True))


def test_a_grid_that_follows_a_law_passes_every_criterion():
    runs = grid_runs()
    table = criteria.criteria_table(runs, spread(0.01), planned=48,
                                    wall_time_s=runs.table.wall_time_s.sum())
    assert set(status(table).values()) == {"pass"}, table.to_string()
    regime = table.loc[table.criterion == "1. regime", "measured"].item()
    ratio = runs.D / runs.N
    assert f"median {np.median(ratio):.3g}" in regime and f"max {ratio.max():.3g}" in regime


def test_each_criterion_fails_on_its_own_fault():
    smallest, largest = (0.0, SIZES[0], AMOUNTS[0]), (0.0, SIZES[-1], AMOUNTS[-1])
    cases = {
        "2. noise": (grid_runs(), spread(0.05)),  # above 0.03 nats
        "3a. not stuck": (grid_runs({smallest: PLATEAU - 0.05}), spread(0.01)),
        "3b. not solved": (grid_runs({largest: FLOOR + 0.01}), spread(0.01)),
        "4. order": (grid_runs({(0.0, SIZES[2], AMOUNTS[1]): 4.0}), spread(0.01)),
    }
    for name, (runs, noise) in cases.items():
        got = status(criteria.criteria_table(runs, noise, planned=48, wall_time_s=3600.0))
        assert got[name] == "fail", (name, got)
    too_few = status(criteria.criteria_table(grid_runs(), spread(0.01, points=2), planned=48,
                                             wall_time_s=3600.0))
    assert too_few["2. noise"] == "fail"  # 2 points are not enough
    slow = status(criteria.criteria_table(grid_runs(), spread(0.01), planned=48,
                                          wall_time_s=9 * 3600.0))
    assert slow["6. cost"] == "fail"


def test_law_misfit_is_judged_against_the_seed_sd():
    bumpy = {(0.0, n, d): float(law(n, d)) + 0.05 * (-1) ** (i + j)
             for i, n in enumerate(SIZES) for j, d in enumerate(AMOUNTS)}
    table = criteria.criteria_table(grid_runs(bumpy), spread(0.01), planned=48,
                                    wall_time_s=3600.0)
    assert status(table)["5. a law"] == "fail"
    loose = criteria.criteria_table(grid_runs(bumpy), spread(0.1, seeds=3), planned=48,
                                    wall_time_s=3600.0)
    assert status(loose)["5. a law"] == "pass" and status(loose)["2. noise"] == "fail"


def test_missing_runs_say_not_yet_run():
    empty = criteria.criteria_table(None, None, planned=48)
    assert set(empty["status"]) == {"not yet run"} and len(empty) == 7
    no_noise = status(criteria.criteria_table(grid_runs(), None, planned=48, wall_time_s=10.0))
    assert no_noise["2. noise"] == no_noise["5. a law"] == no_noise["4. order"] == "not yet run"
    assert no_noise["1. regime"] == "pass"
    partial = grid_runs().select(np.arange(48) < 20)
    got = status(criteria.criteria_table(partial, spread(0.01), planned=48, wall_time_s=10.0))
    assert got["6. cost"] == "pass (so far)"
    frame = pd.DataFrame()
    frame.attrs["missing"] = 48
    table = criteria.design_criteria(frame, [], family="vit", source="an empty store")
    assert set(table["status"]) == {"not yet run"} and "0 of 48" in table["measured"].iat[0]


def test_order_ties_within_two_seed_sds():
    runs = grid_runs({(0.0, SIZES[1], AMOUNTS[0]): float(law(SIZES[0], AMOUNTS[0])) + 0.015})
    dense = runs.at_sparsity(0.0)
    assert criteria.order_violations(dense, tie=0.02)[0] == 0
    bad, total, where = criteria.order_violations(dense, tie=0.01)
    assert (bad, total) == (1, 4 * 2 + 3 * 3) and "N 3072 -> 6144" in where[0]


def test_floor_and_plateau_default_to_zero_and_ln_classes():
    table = pd.DataFrame({"sparsity": [0.0], "N": [1.0], "D": [1.0], "loss": [1.0],
                          "data.num_classes": [64]})
    floor, plateau = criteria.floor_and_plateau(Runs("vit", "images", "x", table))
    assert floor[0] == 0 and plateau[0] == pytest.approx(np.log(64))
    above = criteria.above_floor_table(grid_runs())
    assert above.shape == (16, 2 + 3)
    assert above.iloc[0, 2] == pytest.approx(law(SIZES[0], AMOUNTS[0]) - FLOOR)
