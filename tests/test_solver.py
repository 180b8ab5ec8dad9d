"""The batched solvers: exact Jacobian, known optima, the box, batch independence, the same
optimum as scipy's trust-region solver from the same start, and non-negative least squares
equal to scipy's at every grid point."""

import numpy as np
import pytest
from scipy.optimize import least_squares, nnls

from sparsekit import fitting, solver
from sparsekit.laws import ChinchillaLaw
from sparsekit.solver import huber, minimise, nnls_many, residuals_and_jacobian

# z = (alpha, beta, A, B, E) of A / N^alpha + B / D^beta + E, N and D in units near one.
TRUE = np.array([0.4, 0.3, 1.0, 2.0, 1.5])
N = np.repeat([0.25, 0.5, 1.0, 2.0, 4.0], 3)
D = np.tile([0.2, 1.0, 5.0], 5)
FORM = ChinchillaLaw.linear_form(np.zeros(N.size), N, D)
LOWER = np.array([1e-3, 1e-3, 0.0, 0.0, 0.0])
UPPER = np.array([10.0, 10.0, np.inf, np.inf, np.inf])
DELTA = 1e-3


def exact_loss() -> np.ndarray:
    return TRUE[2] * N**-TRUE[0] + TRUE[3] * D**-TRUE[1] + TRUE[4]


def noisy_loss(scale: float = 0.01) -> np.ndarray:
    return exact_loss() * np.exp(np.random.default_rng(0).normal(0, scale, N.size))


def test_huber_is_quadratic_within_delta_and_linear_beyond() -> None:
    r = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(huber(r, 1.0), [2.5, 0.125, 0.0, 0.125, 2.5])


@pytest.mark.parametrize("log", [True, False])
def test_jacobian_matches_finite_differences(log: bool) -> None:
    z = np.array([0.5, 0.2, 0.7, 1.1, 1.3])
    r, J = residuals_and_jacobian(FORM, exact_loss(), log, z)
    step = 1e-6
    numeric = np.stack([(residuals_and_jacobian(FORM, exact_loss(), log, z + step * e)[0]
                         - residuals_and_jacobian(FORM, exact_loss(), log, z - step * e)[0])
                        / (2 * step) for e in np.eye(z.size)], axis=-1)
    assert r.shape == (N.size,) and J.shape == (N.size, z.size)
    np.testing.assert_allclose(J, numeric, rtol=1e-6, atol=1e-8)


def test_leading_batch_axes_are_kept() -> None:
    zs = np.stack([TRUE, TRUE * 1.1, TRUE * 0.9]).reshape(3, 1, 5)
    r, J = residuals_and_jacobian(FORM, exact_loss(), True, zs)
    assert r.shape == (3, 1, N.size) and J.shape == (3, 1, N.size, 5)
    one = residuals_and_jacobian(FORM, exact_loss(), True, zs[1, 0])
    np.testing.assert_allclose(r[1, 0], one[0])
    np.testing.assert_allclose(J[1, 0], one[1])


def test_recovers_the_law_that_made_exact_data() -> None:
    starts = np.array([[0.2, 0.6, 0.5, 0.5, 1.0], [1.0, 1.0, 3.0, 3.0, 0.5]])
    z, obj = minimise(FORM, exact_loss(), True, DELTA, starts, LOWER, UPPER)
    np.testing.assert_allclose(z, np.stack([TRUE, TRUE]), rtol=1e-5)
    assert np.all(obj < 1e-20)


def test_each_start_is_solved_as_if_alone() -> None:
    starts = np.array([[0.2, 0.6, 0.5, 0.5, 1.0], [2.0, 0.05, 0.1, 4.0, 0.0],
                       [1.0, 1.0, 3.0, 3.0, 0.5]])
    together = minimise(FORM, noisy_loss(), True, DELTA, starts, LOWER, UPPER)
    for i, start in enumerate(starts):
        alone = minimise(FORM, noisy_loss(), True, DELTA, start[None], LOWER, UPPER)
        np.testing.assert_array_equal(together[0][i], alone[0][0])
        assert together[1][i] == alone[1][0]


def test_end_points_stay_in_the_box_and_rest_on_a_binding_bound() -> None:
    # Data with no N dependence and an upper bound on alpha below anything that fits: the
    # coefficient of the size term goes to its bound 0 or alpha to its upper bound.
    upper = np.array([0.3, 10.0, np.inf, np.inf, np.inf])
    loss = 2.0 * D**-0.3 + 1.5 + 1.0 * N**-0.9
    z, _ = minimise(FORM, loss, True, DELTA, np.array([[0.1, 0.5, 1.0, 1.0, 1.0]]), LOWER, upper)
    assert np.all(z >= LOWER) and np.all(z <= upper)
    assert z[0, 0] == pytest.approx(0.3)  # held at the bound it presses against


@pytest.mark.parametrize("log", [True, False])
def test_reaches_the_optimum_scipy_reaches_from_the_same_start(log: bool) -> None:
    loss = noisy_loss(0.02)  # residuals beyond delta: the Huber loss's linear part matters
    start = np.array([0.3, 0.5, 1.0, 1.0, 1.0])
    z, obj = minimise(FORM, loss, log, DELTA, start[None], LOWER, UPPER)
    ref = least_squares(lambda x: residuals_and_jacobian(FORM, loss, log, x)[0], start,
                        jac=lambda x: residuals_and_jacobian(FORM, loss, log, x)[1],
                        bounds=(LOWER, UPPER), method="trf", loss="huber", f_scale=DELTA,
                        ftol=1e-15, xtol=1e-15, gtol=1e-15)
    assert obj[0] == pytest.approx(ref.cost / N.size, rel=1e-6)
    np.testing.assert_allclose(z[0], ref.x, rtol=1e-3)


def test_a_direction_the_data_leave_flat_is_not_moved_along() -> None:
    # No D term in the data, and B boxed at 0: beta moves no prediction, so the curvature
    # matrix is singular in beta. The solver neither fails nor moves beta.
    loss = TRUE[2] * N**-TRUE[0] + TRUE[4]
    upper = np.array([10.0, 10.0, np.inf, 0.0, np.inf])
    start = np.array([[0.2, 0.7, 0.5, 0.0, 1.0]])
    z, obj = minimise(FORM, loss, True, DELTA, start, LOWER, upper)
    assert z[0, 1] == pytest.approx(0.7, abs=1e-12) and z[0, 3] == 0.0
    np.testing.assert_allclose(z[0, [0, 2, 4]], TRUE[[0, 2, 4]], rtol=1e-5)
    assert obj[0] < 1e-20


def test_nnls_many_is_scipys_nnls_at_every_grid_point() -> None:
    rng = np.random.default_rng(1)
    A = np.exp(rng.normal(size=(50, 12, 3)))  # positive columns, as the fitter's designs
    b = rng.normal(1.0, 0.5, 12)  # some points' best unconstrained fit has negative parts
    expected = np.array([nnls(a, b)[0] for a in A])
    np.testing.assert_allclose(nnls_many(A, b), expected, rtol=1e-9, atol=1e-12)
    assert np.any(expected == 0) and np.any(np.all(expected > 0, axis=1))  # both cases met


def test_nnls_many_refuses_a_singular_subset_and_the_fitter_falls_back(monkeypatch) -> None:
    A = np.ones((2, 5, 2))  # two equal columns
    with pytest.raises(np.linalg.LinAlgError):
        nnls_many(A, np.ones(5))
    loss = noisy_loss()
    fitted = fitting.fit(np.zeros(N.size), N, D, loss, law="chinchilla")

    def singular(A, b):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(solver, "nnls_many", singular)
    fallback = fitting.fit(np.zeros(N.size), N, D, loss, law="chinchilla")
    assert fallback.objective == pytest.approx(fitted.objective, rel=1e-9)
