"""Quadratic surrogate of one task metric as a function of the merging coefficients c.

    metric(c) ~ link(1/2 c^T A c + b^T c + e)

The link keeps predictions in the metric's range: sigmoid for accuracy (0..1), softplus
for loss (> 0). The fit is linear least squares on the inverse-link scale (exact when the
truth has this form), optionally refined by nonlinear least squares on the metric scale,
which is what we care about when the data are noisy or clipped at the link's bounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import PolynomialFeatures
from sklearn.utils.validation import check_is_fitted, validate_data

from src.core.sampling import min_points as n_quadratic_params  # (T+1)(T+2)/2

LINKS = ("sigmoid", "softplus", "identity")
_EPS = 1e-4  # keeps the inverse link finite for metrics at 0 or 1


def apply_link(z: np.ndarray, link: str) -> np.ndarray:
    """Map the quadratic's value z to the metric scale."""
    _check_link(link)
    if link == "sigmoid":
        return expit(z)
    if link == "softplus":
        return np.logaddexp(0.0, z)
    return np.asarray(z, dtype=float)


def inverse_link(y: np.ndarray, link: str) -> np.ndarray:
    """Map metrics to the quadratic's scale, clipping into the link's open range first."""
    _check_link(link)
    y = np.asarray(y, dtype=float)
    if link == "sigmoid":
        return logit(np.clip(y, _EPS, 1.0 - _EPS))
    if link == "softplus":
        y = np.clip(y, _EPS, None)
        # log(exp(y) - 1) written so it neither overflows for large y nor cancels for small y.
        return y + np.log(-np.expm1(-y))
    return y


def _link_derivative(z: np.ndarray, link: str) -> np.ndarray:
    if link == "sigmoid":
        s = expit(z)
        return s * (1.0 - s)
    if link == "softplus":
        return expit(z)
    return np.ones_like(z)


def _row_space(design: np.ndarray) -> np.ndarray | None:
    """An orthonormal basis [p, r] of the row space of a rank-deficient design (fewer
    distinct points than the quadratic's p parameters, e.g. a bootstrap resample), or None
    at full rank. Unpenalised refinement then moves the linear (minimum-norm) solution
    within it only: along the null space the data fix nothing, and Levenberg-Marquardt
    drifted there by rounding, so the same resample gave other surrogates from run to run
    (bayesian's EHVI rounds on 4 tasks picked other points in two processes)."""
    _, s, vt = np.linalg.svd(design, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(design.shape) * np.finfo(float).eps)) if s.size else 0
    return vt[:rank].T if rank < design.shape[1] else None


class QuadraticSurrogate(RegressorMixin, BaseEstimator):
    """metric ~ link(1/2 c^T A c + b^T c + e), a scikit-learn regressor.

    Fitted attributes: A_ (T, T) symmetric, b_ (T,), e_ (float), n_features_in_.
    With w the weights of PolynomialFeatures(degree=2), A_ii = 2 w(c_i^2) and
    A_ij = A_ji = w(c_i c_j), so that 1/2 c^T A c reproduces the fitted polynomial.
    """

    def __init__(self, link: str = "sigmoid", refine: bool = True, alpha: float = 0.0):
        self.link = link
        self.refine = refine
        self.alpha = alpha

    def fit(self, X, y) -> "QuadraticSurrogate":
        _check_link(self.link)
        if not self.alpha >= 0:
            raise ValueError(f"alpha={self.alpha!r}; expected a ridge penalty >= 0")
        X, y = validate_data(self, X, y, y_numeric=True, dtype=float)
        n, T = X.shape
        needed = n_quadratic_params(T)
        if n < needed:
            raise ValueError(
                f"{n} samples for a quadratic surrogate in T={T} variables; "
                f"expected at least {needed} = (T+1)(T+2)/2"
            )
        poly = PolynomialFeatures(degree=2, include_bias=False)
        Phi = poly.fit_transform(X)
        reg = Ridge(alpha=self.alpha) if self.alpha > 0 else LinearRegression()
        reg.fit(Phi, inverse_link(y, self.link))
        theta = np.concatenate([[reg.intercept_], reg.coef_])
        if self.refine and self.link != "identity":
            theta = self._refine(Phi, y, theta)
        self.A_, self.b_, self.e_ = _theta_to_quadratic(theta, poly.powers_)
        return self

    def _refine(self, Phi: np.ndarray, y: np.ndarray, theta0: np.ndarray) -> np.ndarray:
        """Nonlinear least squares on the metric scale, started from the linear solution.

        With alpha > 0 the ridge penalty (on all but the intercept) joins the residuals, and
        the comparison uses that same penalised objective.
        """
        design_ = np.hstack([np.ones((Phi.shape[0], 1)), Phi])
        root_alpha = np.sqrt(self.alpha)
        basis = None if self.alpha > 0 else _row_space(design_)

        def theta_of(z):
            return theta0 + basis @ z if basis is not None else z

        def residuals(z):
            theta = theta_of(z)
            r = apply_link(design_ @ theta, self.link) - y
            return np.concatenate([r, root_alpha * theta[1:]]) if self.alpha > 0 else r

        def jacobian(z):
            theta = theta_of(z)
            J = _link_derivative(design_ @ theta, self.link)[:, None] * design_
            if self.alpha > 0:
                J = np.vstack([J, np.hstack([np.zeros((len(theta) - 1, 1)),
                                             root_alpha * np.eye(len(theta) - 1)])])
            return J if basis is None else J @ basis

        z0 = np.zeros(basis.shape[1]) if basis is not None else theta0
        try:
            result = least_squares(residuals, z0, jac=jacobian, method="lm" if
                                   design_.shape[0] >= len(z0) else "trf")
        except (ValueError, np.linalg.LinAlgError):
            return theta0
        if np.all(np.isfinite(result.x)) and np.sum(residuals(result.x) ** 2) < np.sum(
            residuals(z0) ** 2
        ):
            return theta_of(result.x)
        return theta0

    def decision_function(self, X) -> np.ndarray:
        """The quadratic 1/2 c^T A c + b^T c + e, before the link."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=float)
        return 0.5 * np.einsum("ni,ij,nj->n", X, self.A_, X) + X @ self.b_ + self.e_

    def predict(self, X) -> np.ndarray:
        return apply_link(self.decision_function(X), self.link)

    def params_dict(self) -> dict:
        """JSON-friendly coefficients: {"A": [[...]], "b": [...], "e": float, "link": str}."""
        check_is_fitted(self)
        return {
            "A": self.A_.tolist(),
            "b": self.b_.tolist(),
            "e": float(self.e_),
            "link": self.link,
        }

    def original_params(self) -> list[float]:
        """The coefficients in the original MAP tool's ``_params.json`` order: [c_i^2 for
        each i, c_i*c_j for each i < j, c_i for each i, 1], before the link. The original
        evaluates link(sum of coefficient * term), so scripts reading that file keep working."""
        check_is_fitted(self)
        T = self.b_.size
        upper = np.triu_indices(T, k=1)
        return [*(0.5 * np.diag(self.A_)).tolist(), *self.A_[upper].tolist(),
                *self.b_.tolist(), float(self.e_)]

    @classmethod
    def from_params(cls, params: dict) -> "QuadraticSurrogate":
        """A fitted surrogate from params_dict() output (or hand-written coefficients)."""
        missing = {"A", "b", "e", "link"} - set(params)
        if missing:
            raise ValueError(f"surrogate params lack {sorted(missing)}; expected keys A, b, e, link")
        A = np.asarray(params["A"], dtype=float)
        b = np.asarray(params["b"], dtype=float)
        if b.ndim != 1 or A.shape != (b.size, b.size):
            raise ValueError(
                f"surrogate params have A of shape {A.shape} and b of shape {b.shape}; "
                "expected (T, T) and (T,)"
            )
        if not np.allclose(A, A.T):
            raise ValueError("surrogate params have a non-symmetric A; expected A == A^T")
        _check_link(params["link"])
        model = cls(link=params["link"])
        model.A_, model.b_, model.e_ = A, b, float(params["e"])
        model.n_features_in_ = b.size
        return model


def fit_surrogates(
    C: np.ndarray, Y: np.ndarray, link: str | Sequence[str], **kwargs
) -> list[QuadraticSurrogate]:
    """One surrogate per column of Y (n, K); `link` is one name or one per column."""
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    links = [link] * Y.shape[1] if isinstance(link, str) else list(link)
    if len(links) != Y.shape[1]:
        raise ValueError(f"{len(links)} links for {Y.shape[1]} metric columns; expected one per column")
    return [QuadraticSurrogate(link=lk, **kwargs).fit(C, Y[:, k]) for k, lk in enumerate(links)]


def original_terms(C: np.ndarray) -> np.ndarray:
    """The terms [c_i^2, c_i*c_j (i < j), c_i, 1] of each row of C, in the original's order:
    ``original_terms(C) @ original_params`` is the quadratic before the link."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    T = C.shape[1]
    i, j = np.triu_indices(T, k=1)
    return np.hstack([C ** 2, C[:, i] * C[:, j], C, np.ones((C.shape[0], 1))])


def _theta_to_quadratic(
    theta: np.ndarray, powers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Split [intercept, weights of PolynomialFeatures] into (A, b, e)."""
    T = powers.shape[1]
    A, b = np.zeros((T, T)), np.zeros(T)
    for w, p in zip(theta[1:], powers):
        idx = np.flatnonzero(p)
        if p.sum() == 1:
            b[idx[0]] = w
        elif len(idx) == 1:  # c_i^2
            A[idx[0], idx[0]] = 2.0 * w
        else:  # c_i c_j
            A[idx[0], idx[1]] = A[idx[1], idx[0]] = w
    return A, b, float(theta[0])


def _check_link(link: str) -> None:
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; expected one of {list(LINKS)}")
