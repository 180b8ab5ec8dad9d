"""Laws, cost models and derived quantities: published numbers, closed forms vs brute force."""

from dataclasses import dataclass

import numpy as np
import pytest

from sparsekit.costs import (
    COST_MODELS,
    cubic_mean_sparsity,
    dense_cost,
    gradual_cost,
    pretrained_cost,
)
from sparsekit.laws import (
    LAWS,
    PAPER_T5,
    PAPER_VIT,
    AverageParamLaw,
    ChinchillaLaw,
    EffectiveMultiplierLaw,
    SparseLaw,
)
from sparsekit.schedules import Cubic


@dataclass(frozen=True)
class StandInCubic(Cubic):
    """sparsekit.schedules.Cubic with its sparsity in float64 numpy (the schedule's own is
    float32), so that `average_density` can be checked to 1e-12."""

    def sparsity(self, fraction):
        t = np.asarray(fraction, dtype=np.float64)
        p = np.clip((t - self.start) / (self.end - self.start), 0.0, 1.0)
        return np.where(t < self.start, 0.0, self.target * (1.0 - (1.0 - p) ** 3))


CHINCHILLA = dict(A=406.4, alpha=0.34, B=410.7, beta=0.28, E=1.69)  # Hoffmann et al. 2022
EXAMPLES = {
    "sparse": PAPER_T5,
    "average": AverageParamLaw(**CHINCHILLA, schedule=StandInCubic),
    "multiplier": EffectiveMultiplierLaw(**CHINCHILLA, levels=(0.5, 0.75), effs=(0.87, 0.6)),
    "chinchilla": ChinchillaLaw(**CHINCHILLA),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_with_params_sets_every_fitted_parameter(name):
    law = EXAMPLES[name]
    assert law.with_params(law.params) == law
    doubled = law.with_params([2.0 * p for p in law.params])
    assert doubled.params == tuple(2.0 * p for p in law.params)
    assert type(doubled) is type(law)
    with pytest.raises(ValueError):
        law.with_params(law.params[:-1])


def test_registry_names_every_law():
    assert set(LAWS) == {"sparse", "average", "multiplier", "chinchilla"}
    assert all(cls.name == name for name, cls in LAWS.items())


def test_paper_dense_equivalents():
    # The brief's values from Table 1: 1.60 / 2.17 / 2.63 (ViT), 1.59 / 2.16 / 2.63 (T5).
    S = [0.5, 0.75, 0.875]
    np.testing.assert_allclose(PAPER_VIT.dense_equivalent(S), [1.60, 2.17, 2.63], atol=0.006)
    np.testing.assert_allclose(PAPER_T5.dense_equivalent(S), [1.59, 2.16, 2.63], atol=0.006)
    # Bounded as S -> 1 by ((a_S + c_S) / c_S)^(1 / b_N), near 3.5.
    assert 3.3 < PAPER_VIT.dense_equivalent(1.0 - 1e-12) < 3.7


@pytest.mark.parametrize("target", [0.0, 0.5, 0.75, 0.875])
def test_average_density_of_cubic_is_analytic(target):
    # 0 for the first quarter, 3/4 of the target on average over the ramp, then the target.
    expected = 1.0 - 0.625 * target
    assert StandInCubic(target).average_density() == pytest.approx(expected, abs=1e-12)
    # the gradual cost's mean sparsity, from the float32 schedule
    assert 1.0 - cubic_mean_sparsity() * target == pytest.approx(expected, abs=1e-8)


def test_average_density_other_window_and_bad_num():
    # Ramp over [0, 1]: mean sparsity 3/4 of the target.
    assert StandInCubic(0.8, start=0.0, end=1.0).average_density() == pytest.approx(0.4,
                                                                                    abs=1e-12)
    with pytest.raises(ValueError, match="num must be an odd integer"):
        StandInCubic(0.5).average_density(num=100)


def test_average_law_matches_brief_with_project_schedule():
    pytest.importorskip("sparsekit.schedules", reason="the project's schedules are not in yet")
    law = AverageParamLaw(**CHINCHILLA)  # default: the project's 25-75% cubic
    # The brief: 1.375x at 50% and 3.625x at 87.5% (float32 schedule: ~1e-6 accurate).
    np.testing.assert_allclose(law.dense_equivalent([0.5, 0.875]), [1.375, 3.625], rtol=1e-5)


def test_gradual_cost_is_the_schedule_average():
    S = np.array([0.0, 0.5, 0.75, 0.875, 0.95])
    from_schedule = np.array([Cubic(s).average_density() for s in S]) / (1.0 - S)
    np.testing.assert_allclose(COST_MODELS["gradual"](S), from_schedule, rtol=1e-7)
    # The hard-coded 1 - 0.625 S it replaced: the same up to the schedule's float32 rounding.
    np.testing.assert_allclose(gradual_cost(S), (1.0 - 0.625 * S) / (1.0 - S), rtol=1e-7)
    assert gradual_cost(0.0) == 1.0  # nothing pruned: nothing changes


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_linear_form_reproduces_predict(name):
    """The fitter's linear form is the same function as `predict`, parameters included."""
    law = EXAMPLES[name]
    rng = np.random.default_rng(0)
    S = np.zeros(24) if name == "chinchilla" else rng.choice([0.0, 0.5, 0.75], 24)
    N, D = 10 ** rng.uniform(6, 9, 24), 10 ** rng.uniform(8, 11, 24)
    options = {"schedule": StandInCubic} if name == "average" else {}
    form = type(law).linear_form(S, N, D, **options)
    exps = rng.uniform(0.1, 1.0, len(law.exponent_names))
    coefs = rng.uniform(0.5, 2.0, form.weight.shape[0])
    built = form.build(exps, coefs)
    assert type(built) is type(law)
    np.testing.assert_allclose(built.predict(S, N, D), form.design(exps) @ coefs, rtol=1e-12)


def test_parameter_names_and_counts():
    assert PAPER_T5.param_names == ("a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c")
    assert PAPER_T5.n_params == 7 and PAPER_T5.as_dict()["b_N"] == 0.245
    assert EXAMPLES["average"].param_names == ("A", "alpha", "B", "beta", "E")
    assert EXAMPLES["multiplier"].param_names[-2:] == ("eff[0.5]", "eff[0.75]")
    assert EXAMPLES["multiplier"].n_params == 7
    assert all(isinstance(p, float) for p in SparseLaw(np.float64(1), 1, 1, 1, 1, 1, 1).params)


def test_predict_broadcasts():
    out = PAPER_T5.predict(0.5, np.array([[1e8], [1e9]]), np.array([1e9, 1e10, 1e11]))
    assert out.shape == (2, 3)
    assert np.all(np.diff(out, axis=0) < 0) and np.all(np.diff(out, axis=1) < 0)


def test_laws_refuse_sparsities_they_do_not_describe():
    with pytest.raises(ValueError, match="dense models only"):
        EXAMPLES["chinchilla"].predict(0.5, 1e8, 1e10)
    with pytest.raises(ValueError, match=r"multipliers only at S in \(0.0, 0.5, 0.75\)"):
        EXAMPLES["multiplier"].predict(0.875, 1e8, 1e10)
    with pytest.raises(ValueError, match="effs: need one per level"):
        EffectiveMultiplierLaw(**CHINCHILLA, levels=(0.5,), effs=())


def test_multiplier_law_dense_equivalent():
    np.testing.assert_allclose(
        EXAMPLES["multiplier"].dense_equivalent([0.0, 0.5, 0.75]), [1.0, 1.74, 2.4]
    )


@pytest.mark.parametrize("law", [PAPER_T5, EXAMPLES["chinchilla"]], ids=["t5", "chinchilla"])
def test_dense_frontier_minimises_loss_at_fixed_compute(law):
    C = np.array([1e18, 1e21, 1e24])
    n_opt, d_opt = law.dense_frontier(C)
    np.testing.assert_allclose(6.0 * n_opt * d_opt, C, rtol=1e-12)
    # Brute force along each iso-compute line N D = C / 6.
    N = n_opt[:, None] * np.geomspace(1e-2, 1e2, 40001)
    best = np.argmin(law.predict(0.0, N, C[:, None] / (6.0 * N)), axis=1)
    np.testing.assert_allclose(N[np.arange(3), best], n_opt, rtol=1e-3)


# Budgets from compute-optimal to far past it (D / N from 1 to 1e5 tokens per parameter).
N_GRID, RATIO = np.meshgrid([1e7, 1e8, 1e9], [1.0, 20.0, 1e3, 1e5], indexing="ij")
C_GRID = 6.0 * N_GRID * N_GRID * RATIO


@pytest.mark.parametrize("cost", sorted(COST_MODELS))
@pytest.mark.parametrize(
    "law", [PAPER_T5, PAPER_VIT, EXAMPLES["average"]], ids=["t5", "vit", "avg"]
)
def test_optimal_sparsity_matches_brute_force(law, cost):
    s_opt = law.optimal_sparsity(N_GRID, C_GRID, cost)
    grid = np.linspace(0.0, 0.99, 1981)[:, None, None]
    loss = law.predict(grid, N_GRID, C_GRID / (6.0 * N_GRID * COST_MODELS[cost](grid)))
    brute = grid[np.argmin(loss, axis=0), 0, 0]
    np.testing.assert_allclose(s_opt, brute, atol=1e-3)
    at_opt = law.predict(s_opt, N_GRID, C_GRID / (6.0 * N_GRID * COST_MODELS[cost](s_opt)))
    assert np.all(at_opt <= loss.min(axis=0) + 1e-12)


def test_dense_closed_form_agrees_with_numeric_search():
    closed = PAPER_T5.optimal_sparsity(N_GRID, C_GRID, "dense")
    numeric = PAPER_T5.optimal_sparsity(N_GRID, C_GRID, dense_cost)  # callable: numeric path
    # ~1e-8 is the resolution of any search: the loss is flat to eps at the optimum.
    np.testing.assert_allclose(closed, numeric, atol=1e-6)


@pytest.mark.parametrize("cost", sorted(COST_MODELS))
def test_optimal_sparsity_grows_with_compute(cost):
    s_opt = PAPER_T5.optimal_sparsity(1e8, np.geomspace(1e17, 1e26, 60), cost)
    assert np.all(np.diff(s_opt) >= -1e-9)


def test_optimal_sparsity_depends_on_cost_model():
    C = np.geomspace(1e17, 1e26, 10)
    dense = PAPER_T5.optimal_sparsity(1e8, C, "dense")
    assert dense[0] == 0.0 and dense[-1] > 0.95  # sparsity pays only far past optimal
    assert np.all(PAPER_T5.optimal_sparsity(1e8, C, "gradual") >= dense)
    # Non-zeros only: sparsity is free and the law always wants the most of it.
    np.testing.assert_allclose(PAPER_T5.optimal_sparsity(1e8, C, "ideal"), 0.99, atol=1e-6)


def test_optimal_sparsity_rejects_unknown_cost_and_bad_s_max():
    with pytest.raises(ValueError, match=r"cost must be one of \['dense', 'gradual', 'ideal'\]"):
        PAPER_T5.optimal_sparsity(1e8, 1e20, cost="n:m")
    with pytest.raises(ValueError, match="s_max must lie in"):
        PAPER_T5.optimal_sparsity(1e8, 1e20, cost="ideal", s_max=1.0)


def test_pretrained_cost_charges_the_dense_pretraining():
    S = np.array([0.0, 0.5, 0.75, 0.875])
    # pretraining on 4x the pruning run's data, at the dense model's N / (1 - S) weights
    np.testing.assert_allclose(pretrained_cost(4.0)(S), 1 / (1 - S) + 4 / (1 - S))
    np.testing.assert_allclose(pretrained_cost(0.0, prune="gradual")(S), gradual_cost(S))
    # Credit for pretraining: the law's data is rho x the pruning run's. At S = 0 nothing is
    # pruned (rho = 1 + 4, cost 1); between measured levels rho is linear; past them constant.
    credited = pretrained_cost(4.0, {0.5: 4.9, 0.75: 4.27})
    np.testing.assert_allclose(credited(S), [1.0, 10 / 4.9, 20 / 4.27, 40 / 4.27])
    np.testing.assert_allclose(credited(0.25), (4 / 3 + 16 / 3) / ((5.0 + 4.9) / 2))
    # Charging the pretraining makes sparsity dearer: S_opt never rises.
    C = np.geomspace(1e19, 1e26, 8)
    charged = PAPER_T5.optimal_sparsity(1e8, C, pretrained_cost(4.0))
    assert np.all(charged <= PAPER_T5.optimal_sparsity(1e8, C, "dense") + 1e-9)
    assert charged[-1] > 0  # still pays at the largest budget


@pytest.mark.parametrize(
    "args, match",
    [((-1.0,), "pretrain_ratio must be"), ((1.0, {0.0: 2.0}), "data_ratio must map"),
     ((1.0, {0.5: 0.0}), "data_ratio must map"), ((1.0, None, "n:m"), "cost must be one of")],
)
def test_pretrained_cost_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        pretrained_cost(*args)
