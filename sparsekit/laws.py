"""Loss laws for sparsely-connected models and the quantities derived from them.

Units everywhere: S is the fraction of zero weights in the pruned matrices, N the number of
NON-ZERO non-embedding parameters, D the training data (tokens for T5, images for ViT) and
C the training compute in FLOPs (6 per parameter per token for a dense model).

Every law is a frozen dataclass whose fields are its named parameters. Besides `predict` it
can write itself as a `LinearForm` (linear in non-negative coefficients once its exponents
are fixed), which is all `sparsekit.fitting` needs: adding a law is a class with a `name`,
`exponent_names`, `predict`, `dense_equivalent`, `dense_terms` and `linear_form`, plus an
entry in LAWS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from sparsekit.costs import (
    CostModel,
    SparsitySchedule,
    argmin_sparsity,
    cubic_schedule,
    resolve_cost,
)


def _per_level(fn: Callable[[float], float], S: np.ndarray) -> np.ndarray:
    """Apply a scalar function once per distinct value of S (schedules are not vectorised)."""
    levels, inverse = np.unique(S, return_inverse=True)
    return np.array([fn(float(s)) for s in levels])[inverse].reshape(S.shape)


class LinearForm(NamedTuple):
    """A law written as pred = sum_k coef_k * weight_k * exp(sum_j exponent_j * logfeat_kj).

    With the exponents fixed the prediction is linear in non-negative coefficients: the
    fitter solves those exactly and only searches the few exponents (variable projection).
    `build(exponents, coefs)` turns a solution back into a law in the data's units.
    """

    weight: np.ndarray  # (k, n): per-point weight of column k (1, or an indicator)
    logfeat: np.ndarray  # (k, p, n): log-feature multiplying exponent j in column k
    build: Callable[[np.ndarray, np.ndarray], Law]

    def design(self, exponents: np.ndarray) -> np.ndarray:
        """Design matrices (..., n, k) for exponents of shape (..., p)."""
        z = np.einsum("...p,kpn->...nk", exponents, self.logfeat)
        return self.weight.T * np.exp(z)


def _linear_form(
    n_exponents: int, columns: Sequence[tuple[Any, dict[int, np.ndarray]]], build, n: int
) -> LinearForm:
    """Assemble a LinearForm from columns given as (weight or None, {exponent index: feature})."""
    weight = np.ones((len(columns), n))
    logfeat = np.zeros((len(columns), n_exponents, n))
    for k, (w, features) in enumerate(columns):
        if w is not None:
            weight[k] = w
        for j, feature in features.items():
            logfeat[k, j] = feature
    return LinearForm(weight, logfeat, build)


def _float_fields(law: Law | type[Law]) -> tuple[str, ...]:
    """Names of the dataclass fields that are fitted float parameters."""
    return tuple(f.name for f in dataclasses.fields(law) if not f.metadata.get("fixed"))


def _arrays(*xs: ArrayLike) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(x, dtype=np.float64) for x in xs)


@dataclass(frozen=True)
class Law:
    """Common base: named float parameters, prediction, and the dense (S = 0) special case.

    Every law here reduces at S = 0 to the Chinchilla form A / N^alpha + B / D^beta + E and
    has an equivalent dense size m(S): a model with N non-zeros at sparsity S matches a
    dense model with m(S) * N parameters at equal data.
    """

    name: ClassVar[str]
    exponent_names: ClassVar[tuple[str, ...]]  # the nonlinear parameters, in LinearForm order

    def __post_init__(self) -> None:
        # Plain floats, whatever the fitter or caller passed (numpy scalars, ints).
        for name in _float_fields(self):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def param_names(self) -> tuple[str, ...]:
        return _float_fields(self)

    @property
    def params(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in _float_fields(self))

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.param_names, self.params, strict=True))

    def with_params(self, values: Sequence[float]) -> Law:
        """This law with its fitted parameters set to `values`, in `param_names` order."""
        return dataclasses.replace(self, **dict(zip(self.param_names, values, strict=True)))

    def predict(self, S: ArrayLike, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        """Loss at sparsity S, N non-zeros and D tokens/images (numpy broadcasting)."""
        raise NotImplementedError

    def dense_equivalent(self, S: ArrayLike) -> np.ndarray:
        """Equivalent dense size multiplier m(S) at equal data."""
        raise NotImplementedError

    def dense_terms(self) -> tuple[float, float, float, float, float]:
        """(A, alpha, B, beta, E) of the law at S = 0."""
        raise NotImplementedError

    @classmethod
    def sparsity_problem(cls, S: np.ndarray, identified: bool = True) -> str | None:
        """What the sparsities S lack for this law (None: nothing); with `identified`, to
        identify every parameter, otherwise only to fit at all."""
        return None

    @classmethod
    def problems(cls, S: ArrayLike, N: ArrayLike, D: ArrayLike, *,
                 identified: bool = True) -> list[str]:
        """What keeps points at (S, N, D) from a fit of this law ([] when nothing): 2
        distinct N and D (one exponent each), the law's needs in S (`sparsity_problem`) and
        more points than parameters. With identified=False only what makes a fit impossible:
        as many points as parameters, and (sparse law) 2 distinct S are then enough."""
        S, N, D = _arrays(S, N, D)
        found = [f"needs 2 distinct {name} values, has {k}"
                 for name, x in (("N", N), ("D", D)) if (k := np.unique(x).size) < 2]
        if problem := cls.sparsity_problem(S, identified):
            found.append(problem)
        n_params = cls.n_params_for(S)
        if S.size < n_params + identified:
            found.append(f"{S.size} points for {n_params} parameters (needs more points)")
        return found

    @classmethod
    def n_params_for(cls, S: np.ndarray) -> int:
        """Number of free parameters when fitting data with these sparsities."""
        return len(_float_fields(cls))

    @classmethod
    def linear_form(cls, S: np.ndarray, N: np.ndarray, D: np.ndarray, **options) -> LinearForm:
        raise NotImplementedError

    def dense_frontier(self, C: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal dense size and data (N_opt, D_opt) for budgets C = 6 N D FLOPs.

        Closed form of min A N^-alpha + B D^-beta at fixed N D: alpha A N^-alpha equals
        beta B D^-beta at the optimum.
        """
        (C,) = _arrays(C)
        A, alpha, B, beta, _ = self.dense_terms()
        scale = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        n_opt = scale * (C / 6.0) ** (beta / (alpha + beta))
        return n_opt, C / (6.0 * n_opt)

    def optimal_sparsity(
        self, N: ArrayLike, C: ArrayLike, cost: str | CostModel = "dense", s_max: float = 0.99
    ) -> np.ndarray:
        """Sparsity in [0, s_max] minimising the loss at N non-zeros and C FLOPs.

        The cost model (see `sparsekit.costs.COST_MODELS`) sets the data the budget buys:
        D = C / (6 N cost(S)). Numeric: a coarse scan then golden-section search,
        vectorised over the broadcast N and C.
        """
        cost_fn = resolve_cost(cost)
        N, C = np.broadcast_arrays(*_arrays(N, C))

        def loss_at(s: np.ndarray) -> np.ndarray:
            return self.predict(s, N, C / (6.0 * N * cost_fn(s)))

        return argmin_sparsity(loss_at, N.shape, s_max)


# Metadata of dataclass fields that configure a law but are not fitted parameters.
FIXED = {"fixed": True}


def _chinchilla_columns(n_eff: np.ndarray, D: np.ndarray) -> list:
    """Columns A * n_eff^-alpha, B * D^-beta, E (exponents alpha, beta)."""
    return [(None, {0: -np.log(n_eff)}), (None, {1: -np.log(D)}), (None, {})]


@dataclass(frozen=True)
class SparseLaw(Law):
    """Frantar et al. (2024): L = (a_S (1-S)^b_S + c_S) (1/N)^b_N + (a_D/D)^b_D + c.

    N in non-zero parameters, D in tokens or images; sparsity scales the size term by a
    factor that saturates at c_S as S -> 1.
    """

    a_S: float
    b_S: float
    c_S: float
    b_N: float
    a_D: float  # tokens or images
    b_D: float
    c: float  # irreducible loss

    name: ClassVar[str] = "sparse"
    exponent_names: ClassVar[tuple[str, ...]] = ("b_S", "b_N", "b_D")

    def predict(self, S: ArrayLike, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        S, N, D = _arrays(S, N, D)
        size = (self.a_S * (1.0 - S) ** self.b_S + self.c_S) * (1.0 / N) ** self.b_N
        return size + (self.a_D / D) ** self.b_D + self.c

    def dense_equivalent(self, S: ArrayLike) -> np.ndarray:
        (S,) = _arrays(S)
        factor = (self.a_S + self.c_S) / (self.a_S * (1.0 - S) ** self.b_S + self.c_S)
        return factor ** (1.0 / self.b_N)

    def dense_terms(self) -> tuple[float, float, float, float, float]:
        return (self.a_S + self.c_S, self.b_N, self.a_D**self.b_D, self.b_D, self.c)

    def optimal_sparsity(
        self, N: ArrayLike, C: ArrayLike, cost: str | CostModel = "dense", s_max: float = 0.99
    ) -> np.ndarray:
        """As `Law.optimal_sparsity`; closed form for the dense cost model, where
        (1 - S_opt)^(b_S + b_D) = b_D a_D^b_D N^b_N (6 N / C)^b_D / (a_S b_S)."""
        if cost != "dense":
            return super().optimal_sparsity(N, C, cost, s_max)
        N, C = _arrays(N, C)
        rhs = self.b_D * self.a_D**self.b_D * N**self.b_N * (6.0 * N / C) ** self.b_D
        density = (rhs / (self.a_S * self.b_S)) ** (1.0 / (self.b_S + self.b_D))
        return np.clip(1.0 - density, 0.0, s_max)  # the loss is unimodal in S: clip = argmin

    @classmethod
    def sparsity_problem(cls, S: np.ndarray, identified: bool = True) -> str | None:
        """3 distinct S identify a_S, b_S and c_S; 2 (two size factors) fit, not identified."""
        distinct, need = np.unique(S).size, 3 if identified else 2
        return f"needs {need} distinct S values, has {distinct}" if distinct < need else None

    @classmethod
    def linear_form(cls, S: np.ndarray, N: np.ndarray, D: np.ndarray) -> LinearForm:
        log_n = -np.log(N)
        columns = [
            (None, {0: np.log1p(-S), 1: log_n}),
            (None, {1: log_n}),
            (None, {2: -np.log(D)}),
            (None, {}),
        ]

        def build(exps: np.ndarray, coefs: np.ndarray) -> SparseLaw:
            (b_S, b_N, b_D), (a_S, c_S, e_D, c) = exps, coefs
            return cls(a_S, b_S, c_S, b_N, e_D ** (1.0 / b_D), b_D, c)

        return _linear_form(len(cls.exponent_names), columns, build, S.size)


@dataclass(frozen=True)
class _ChinchillaForm(Law):
    """Shared base of the laws A / n_eff^alpha + B / D^beta + E, n_eff = N at S = 0."""

    A: float
    alpha: float
    B: float
    beta: float
    E: float  # irreducible loss

    exponent_names: ClassVar[tuple[str, ...]] = ("alpha", "beta")

    def dense_terms(self) -> tuple[float, float, float, float, float]:
        return (self.A, self.alpha, self.B, self.beta, self.E)


@dataclass(frozen=True)
class ChinchillaLaw(_ChinchillaForm):
    """Hoffmann et al. (2022), dense models only: L = A / N^alpha + B / D^beta + E."""

    name: ClassVar[str] = "chinchilla"

    def predict(self, S: ArrayLike, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        self.check_dense(np.asarray(S))
        N, D = _arrays(N, D)
        return self.A * N**-self.alpha + self.B * D**-self.beta + self.E

    def dense_equivalent(self, S: ArrayLike) -> np.ndarray:
        self.check_dense(np.asarray(S))
        return np.ones_like(np.asarray(S, dtype=np.float64))

    @classmethod
    def sparsity_problem(cls, S: np.ndarray, identified: bool = True) -> str | None:
        return "describes dense models only (S = 0)" if np.any(S != 0) else None

    @classmethod
    def check_dense(cls, S: np.ndarray) -> None:
        """ValueError unless every S is 0."""
        if problem := cls.sparsity_problem(S):
            raise ValueError(f"S: the Chinchilla law {problem}")

    @classmethod
    def linear_form(cls, S: np.ndarray, N: np.ndarray, D: np.ndarray) -> LinearForm:
        def build(exps: np.ndarray, coefs: np.ndarray) -> ChinchillaLaw:
            return cls(coefs[0], exps[0], coefs[1], exps[1], coefs[2])

        return _linear_form(len(cls.exponent_names), _chinchilla_columns(N, D), build, S.size)


@dataclass(frozen=True)
class AverageParamLaw(_ChinchillaForm):
    """Jin et al. (2025): Chinchilla on the average parameter count over training,
    L = A / N_avg^alpha + B / D^beta + E, N_avg = N / (1 - S) * average density.

    N / (1 - S) is the dense model's size; the average density comes from integrating the
    actual pruning schedule, built by `schedule(target_sparsity)`.
    """

    schedule: Callable[[float], SparsitySchedule] = field(default=cubic_schedule, metadata=FIXED)

    name: ClassVar[str] = "average"

    def average_density(self, S: ArrayLike) -> np.ndarray:
        """Average fraction of the dense weights alive during training at target S."""
        (S,) = _arrays(S)
        return _per_level(lambda s: self.schedule(s).average_density(), S)

    def predict(self, S: ArrayLike, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        S, N, D = _arrays(S, N, D)
        n_avg = N / (1.0 - S) * self.average_density(S)
        return self.A * n_avg**-self.alpha + self.B * D**-self.beta + self.E

    def dense_equivalent(self, S: ArrayLike) -> np.ndarray:
        (S,) = _arrays(S)
        return self.average_density(S) / (1.0 - S)

    @classmethod
    def linear_form(
        cls,
        S: np.ndarray,
        N: np.ndarray,
        D: np.ndarray,
        schedule: Callable[[float], SparsitySchedule] = cubic_schedule,
    ) -> LinearForm:
        density = _per_level(lambda s: schedule(s).average_density(), S)

        def build(exps: np.ndarray, coefs: np.ndarray) -> AverageParamLaw:
            return cls(coefs[0], exps[0], coefs[1], exps[1], coefs[2], schedule)

        columns = _chinchilla_columns(N / (1.0 - S) * density, D)
        return _linear_form(len(cls.exponent_names), columns, build, S.size)


@dataclass(frozen=True)
class EffectiveMultiplierLaw(_ChinchillaForm):
    """Frantar et al. (2025): L = A / (N_dense eff(S))^alpha + B / D^beta + E.

    N_dense = N / (1 - S) is the dense model's total size and eff(S) the fraction of it
    that counts, one free value per sparsity level (eff(0) = 1; the paper reports ~0.87 at
    50%). The equivalent dense multiplier is eff(S) / (1 - S). Only defined at the levels.
    """

    # Sparsities S > 0 that have a multiplier, and eff (dimensionless) at each of them.
    levels: tuple[float, ...] = field(default=(), metadata=FIXED)
    effs: tuple[float, ...] = field(default=(), metadata=FIXED)

    name: ClassVar[str] = "multiplier"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "levels", tuple(map(float, self.levels)))
        object.__setattr__(self, "effs", tuple(map(float, self.effs)))
        if len(self.levels) != len(self.effs):
            raise ValueError(f"effs: need one per level, got {len(self.effs)} for {self.levels}")
        if not all(0.0 < s < 1.0 for s in self.levels):
            raise ValueError(f"levels must lie in (0, 1), got {self.levels}")

    @property
    def param_names(self) -> tuple[str, ...]:
        return (*super().param_names, *(f"eff[{s:g}]" for s in self.levels))

    @property
    def params(self) -> tuple[float, ...]:
        return (*super().params, *map(float, self.effs))

    def with_params(self, values: Sequence[float]) -> EffectiveMultiplierLaw:
        names = _float_fields(self)
        if len(values) != len(names) + len(self.levels):
            raise ValueError(f"values: need {len(names) + len(self.levels)}, got {len(values)}")
        return dataclasses.replace(
            self, **dict(zip(names, values, strict=False)), effs=tuple(values[len(names) :])
        )

    def eff(self, S: ArrayLike) -> np.ndarray:
        """Multiplier at each S; ValueError for a sparsity without a fitted level."""
        (S,) = _arrays(S)
        levels, values = np.array((0.0, *self.levels)), np.array((1.0, *self.effs))
        match = np.isclose(S[..., None], levels, rtol=0.0, atol=1e-9)
        if not match.any(axis=-1).all():
            raise ValueError(f"S: this law has multipliers only at S in {(0.0, *self.levels)}")
        return values[np.argmax(match, axis=-1)]

    def predict(self, S: ArrayLike, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        S, N, D = _arrays(S, N, D)
        n_eff = N / (1.0 - S) * self.eff(S)
        return self.A * n_eff**-self.alpha + self.B * D**-self.beta + self.E

    def dense_equivalent(self, S: ArrayLike) -> np.ndarray:
        (S,) = _arrays(S)
        return self.eff(S) / (1.0 - S)

    @classmethod
    def sparsity_problem(cls, S: np.ndarray, identified: bool = True) -> str | None:
        return None if np.any(S == 0) else "needs dense (S = 0) runs to anchor eff(0) = 1"

    @classmethod
    def n_params_for(cls, S: np.ndarray) -> int:
        return super().n_params_for(S) + np.unique(S[S > 0]).size

    @classmethod
    def linear_form(cls, S: np.ndarray, N: np.ndarray, D: np.ndarray) -> LinearForm:
        # A_k (N / (1-S))^-alpha at level k is linear in A_k = A eff_k^-alpha.
        levels = np.unique(S[S > 0])
        log_dense = -np.log(N / (1.0 - S))
        size = [((s == S).astype(np.float64), {0: log_dense}) for s in (0.0, *levels)]

        def build(exps: np.ndarray, coefs: np.ndarray) -> EffectiveMultiplierLaw:
            with np.errstate(divide="ignore"):  # a level with A_k = 0 has eff = inf
                effs = (coefs[0] / coefs[1 : levels.size + 1]) ** (1.0 / exps[0])
            A, B, E = coefs[0], coefs[-2], coefs[-1]
            return cls(A, exps[0], B, exps[1], E, tuple(levels), tuple(effs))

        columns = size + _chinchilla_columns(N, D)[1:]
        return _linear_form(len(cls.exponent_names), columns, build, S.size)


LAWS: dict[str, type[Law]] = {
    law.name: law for law in (SparseLaw, AverageParamLaw, EffectiveMultiplierLaw, ChinchillaLaw)
}

# Table 1 of Frantar et al. (2024): N in non-zero parameters, D in images (ViT) or tokens (T5).
PAPER_VIT = SparseLaw(a_S=2.94e2, b_S=0.821, c_S=4.68e2, b_N=0.392, a_D=2.37e8, b_D=0.890, c=4.517)
PAPER_T5 = SparseLaw(a_S=1.68e1, b_S=0.722, c_S=4.50e1, b_N=0.245, a_D=6.90e8, b_D=0.203, c=0.651)
