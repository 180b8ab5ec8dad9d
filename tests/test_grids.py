"""The committed T5 regime grid on the pinned corpus (issue 27) meets its stated design.

Computed from the grid files alone (no corpus, no training): N is the dense twin's measured
non-zero count at the target (`width_for` at S = 0), which every sparse run keeps exactly
(`model.exact`), and D/N is the data amount over it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from sparsekit.analysis.regime import paper_minimum
from sparsekit.config import RunConfig
from sparsekit.models import width_for
from sparsekit.sweep import SEED_FIELDS, load_grid

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
Mi = 2**20


def _configs(name: str) -> list[RunConfig]:
    return load_grid(SWEEPS / f"{name}.yaml").configs()


def _n(cfg: RunConfig) -> int:
    """N of a run with exact N: its dense twin's measured non-zero block count."""
    return width_for(cfg.family(), cfg.model.nonzero, 0.0)[1]


def _recipe(cfg: RunConfig) -> dict:
    """Everything but the point (N target, S, D) and the seeds."""
    d = cfg.replace(**dict.fromkeys(SEED_FIELDS, 0)).to_dict()
    for section, name in (("model", "nonzero"), ("sparsity", "target"), ("data", "amount")):
        d[section].pop(name)
    return d


PINNED = ("t5-pinned", "t5-pinned-seeds", "t5-pinned-heldout")


@pytest.mark.parametrize("name", PINNED)
def test_the_pinned_grids_follow_the_papers_protocol_on_the_pinned_corpus(name) -> None:
    for cfg in _configs(name):
        assert cfg.model.family == "t5" and cfg.model.exact and cfg.sparsity.embed_rule
        assert cfg.data.options["corpus"] == "pinned"


def test_the_seeds_and_the_held_out_pair_keep_the_grids_recipe() -> None:
    recipes = {str(_recipe(cfg)) for name in PINNED for cfg in _configs(name)}
    assert len(recipes) == 1


def test_every_cell_has_two_amounts_inside_the_papers_range() -> None:
    configs = _configs("t5-pinned")
    floor = paper_minimum("t5")
    in_range = defaultdict(set)
    ratios = []
    for cfg in configs:
        ratio = cfg.data.amount / _n(cfg)
        if ratio >= floor:
            in_range[cfg.model.nonzero, cfg.sparsity.target].add(cfg.data.amount)
            ratios.append(ratio)
    cells = {(cfg.model.nonzero, cfg.sparsity.target) for cfg in configs}
    assert len(cells) == 12 and all(len(in_range[cell]) >= 2 for cell in cells)
    assert len(ratios) == len(configs) and statistics.median(ratios) >= 1000
    smallest = min(cfg.model.nonzero for cfg in configs)
    assert max(cfg.data.amount for cfg in configs if cfg.model.nonzero == smallest) >= 128 * Mi


def test_the_held_out_pair_is_four_times_larger_and_inside_the_range() -> None:
    largest = max(cfg.model.nonzero for cfg in _configs("t5-pinned"))
    pair = _configs("t5-pinned-heldout")
    assert sorted(cfg.sparsity.target for cfg in pair) == [0.0, 0.75]
    for cfg in pair:
        assert cfg.model.nonzero >= 4 * largest
        assert cfg.data.amount / _n(cfg) >= paper_minimum("t5")


def test_the_seed_runs_repeat_grid_points_with_other_seeds() -> None:
    grid = {(cfg.model.nonzero, cfg.sparsity.target, cfg.data.amount): cfg
            for cfg in _configs("t5-pinned")}
    seeds = defaultdict(set)
    for cfg in _configs("t5-pinned-seeds"):
        point = (cfg.model.nonzero, cfg.sparsity.target, cfg.data.amount)
        assert point in grid, point
        seeds[point].add((cfg.seed, cfg.data.seed))
    for point, pairs in seeds.items():
        assert (grid[point].seed, grid[point].data.seed) not in pairs, point
        assert len(pairs) == 2, point  # three seeds with the grid's own run
    assert {s for _, s, _ in seeds} == {0.0, 0.5, 0.75, 0.875}
