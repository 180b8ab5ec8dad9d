"""The fitter's solvers, batched: non-negative least squares at every grid point, and the
Huber objective minimised from many starts at once.

A law in its linear form (`laws.LinearForm`) predicts pred = sum_k coef_k * X_k(exponents),
and the fitter minimises sum_i huber(delta, r_i) over z = (exponents, coefficients), with
r = log pred - log L (or pred - L), exponents boxed and coefficients >= 0. `minimise` runs a
projected Levenberg-Marquardt iteration on a batch of starts in one set of array operations
(the batch is the leading axis of every array), where scipy's trust-region solver takes one
start per call and spends most of its time in per-iteration Python: `fitting` uses it to
take every grid start to its basin's optimum, then polishes only the best with scipy.

The step: with psi = clip(r, -delta, delta) (the Huber loss's derivative) and IRLS weights
w = psi / r, gradient g = J^T psi and curvature H = J^T diag(w) J; a variable at a bound
whose gradient points out of the box is held there (its row and column dropped); the step
solves (H + lambda diag(H)) dz = -g (least-norm, so a direction the data leave flat is not
moved along) and is clipped into the box; it is taken where it lowers the objective
(lambda / 3, down to 1e-12), else lambda grows (x 4). Each start stops when a taken step
lowers its objective by less than `rtol` relative, or lambda exceeds 1e12.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import ArrayLike

from sparsekit.laws import LinearForm

TINY = np.finfo(np.float64).tiny  # keeps log(pred) finite at degenerate trial points


def residuals_and_jacobian(
    form: LinearForm, loss: np.ndarray, log: bool, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (..., n) at z = (exponents, coefficients) of shape (..., p + k) and their
    exact Jacobian (..., n, p + k); any leading batch axes are kept."""
    n_exp = form.logfeat.shape[1]
    exps, coefs = z[..., :n_exp], z[..., n_exp:]
    X = form.design(exps)  # (..., n, k)
    pred = np.maximum(np.einsum("...nk,...k->...n", X, coefs), TINY)
    # d pred / d exps[j] = sum_k coefs[k] X[n, k] logfeat[k, j, n]; d pred / d coefs = X
    dpred = np.concatenate([np.einsum("...nk,...k,kjn->...nj", X, coefs, form.logfeat), X],
                           axis=-1)
    if log:
        return np.log(pred) - np.log(loss), dpred / pred[..., None]
    return pred - loss, dpred


def huber(residual: ArrayLike, delta: float) -> np.ndarray:
    """0.5 r^2 for |r| <= delta, delta (|r| - delta / 2) beyond: quadratic, then linear."""
    r = np.abs(np.asarray(residual, dtype=np.float64))
    return np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))


def nnls_many(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin ||A_g x - b|| over x >= 0 for every design matrix A_g of A (G, n, k), k small:
    the coefficients (G, k) at each of the fitter's G grid points in one set of array
    operations. Exact: the optimum is the least-squares solution on its own support, so it
    is the best of the least-squares solutions on the 2^k - 1 column subsets that come out
    non-negative (0 if none does better than x = 0). Solved by normal equations, which agree
    with scipy's nnls to about 1e-12 on the fitter's grids; numpy.linalg.LinAlgError where a
    subset's matrix is singular (two equal columns), for the caller to fall back on."""
    G, _, k = A.shape
    gram, proj = np.einsum("gnk,gnj->gkj", A, A), np.einsum("gnk,n->gk", A, b)
    best, best_f = np.zeros((G, k)), np.zeros(G)  # f = ||A x - b||^2 - ||b||^2
    for size in range(1, k + 1):
        for cols in map(list, itertools.combinations(range(k), size)):
            x = np.linalg.solve(gram[:, cols][:, :, cols], proj[:, cols, None])[..., 0]
            f = -np.einsum("gr,gr->g", x, proj[:, cols])  # at a least-squares solution
            take = np.all(x >= 0, axis=1) & (f < best_f)
            full = np.zeros((G, k))
            full[:, cols] = x
            best, best_f = np.where(take[:, None], full, best), np.where(take, f, best_f)
    return best


def minimise(
    form: LinearForm,
    loss: np.ndarray,
    log: bool,
    delta: float,
    starts: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    max_iter: int = 500,
    rtol: float = 1e-13,
) -> tuple[np.ndarray, np.ndarray]:
    """Each start (rows of `starts`, shape (B, P)) taken downhill to a local minimum of
    sum huber(delta, r) within [lower, upper]: returns the end points (B, P) and their
    objectives (B,), the MEAN of huber over points (`fitting.objective`)."""
    z = np.clip(np.asarray(starts, dtype=np.float64), lower, upper)
    r, J = residuals_and_jacobian(form, loss, log, z)
    f = np.sum(huber(r, delta), axis=-1)
    lam = np.full(z.shape[0], 1e-3)
    active = np.ones(z.shape[0], dtype=bool)
    eye = np.eye(z.shape[1])
    for _ in range(max_iter):
        if not active.any():
            break
        psi = np.clip(r, -delta, delta)
        w = np.where(np.abs(r) <= delta, 1.0, delta / np.maximum(np.abs(r), TINY))
        g = np.einsum("bnp,bn->bp", J, psi)
        H = np.einsum("bnp,bn,bnq->bpq", J, w, J)
        held = ((z <= lower) & (g > 0)) | ((z >= upper) & (g < 0))
        free = ~held
        H = np.where(free[:, :, None] & free[:, None, :], H, 0.0)
        diag = np.where(free, np.diagonal(H, axis1=1, axis2=2), 1.0)
        A = H + (lam[:, None] * diag)[:, :, None] * eye + np.where(held, 1.0, 0.0)[:, :, None] * eye
        # The pseudo-inverse, not a solve: a direction the data do not constrain (an exponent
        # whose coefficient is 0) makes A singular, and the least-norm step leaves it be.
        step = -(np.linalg.pinv(A) @ np.where(free, g, 0.0)[..., None])[..., 0]
        trial = np.clip(z + step, lower, upper)
        r_t, J_t = residuals_and_jacobian(form, loss, log, trial)
        f_t = np.sum(huber(r_t, delta), axis=-1)
        better = active & (f_t < f)
        small = better & (f - f_t <= rtol * np.abs(f))
        z = np.where(better[:, None], trial, z)
        r = np.where(better[:, None], r_t, r)
        J = np.where(better[:, None, None], J_t, J)
        f = np.where(better, f_t, f)
        lam = np.where(better, np.maximum(lam / 3.0, 1e-12), lam * 4.0)
        active &= ~small & (lam < 1e12)
    return z, f / loss.size
