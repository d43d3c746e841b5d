import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import r2_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from src.core.surrogate import (
    QuadraticSurrogate,
    apply_link,
    fit_surrogates,
    inverse_link,
    n_quadratic_params,
)

# The shared scikit-learn checks fit on generic data with up to 10 features and few rows;
# by design we refuse fewer rows than the quadratic has coefficients, with a ValueError
# (check_fit2d_1sample expects exactly that, so it passes).
_TOO_FEW = "ValueError: fewer samples than (T+1)(T+2)/2 quadratic coefficients, by design"
_EXPECTED_FAILURES = {
    "check_estimators_dtypes": _TOO_FEW,
    "check_dtype_object": _TOO_FEW,
    "check_regressors_no_decision_function": _TOO_FEW,
    "check_regressors_int": _TOO_FEW,
}


def _expected_failures(estimator):
    failures = dict(_EXPECTED_FAILURES)
    if estimator.link == "sigmoid":
        failures["check_regressors_train"] = "targets outside (0, 1) cannot be fitted through a sigmoid"
    return failures


@parametrize_with_checks(
    [QuadraticSurrogate(link="identity"), QuadraticSurrogate(link="sigmoid")],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_shared_checks(estimator, check):
    check(estimator)


def _truth(T: int, seed: int, scale: float):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(T, T))
    A = -scale * (M @ M.T / T + np.eye(T))  # concave, like a metric peaking inside the box
    b = scale * rng.normal(size=T)
    e = float(rng.normal())
    return A, b, e


def _quadratic(X, A, b, e):
    return 0.5 * np.einsum("ni,ij,nj->n", X, A, X) + X @ b + e


def test_clone_get_set_params_and_not_fitted():
    model = QuadraticSurrogate(link="softplus", refine=False, alpha=0.5)
    assert model.get_params() == {"link": "softplus", "refine": False, "alpha": 0.5}
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    twin.set_params(alpha=0.0, link="identity")
    assert twin.alpha == 0.0 and twin.link == "identity"
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        model.params_dict()


@pytest.mark.parametrize("link", ["sigmoid", "softplus"])
@pytest.mark.parametrize("T", [2, 4])
def test_recovers_known_coefficients(link, T):
    A, b, e = _truth(T, seed=T, scale=1.0)
    rng = np.random.default_rng(100 + T)
    X = rng.uniform(0, 1, size=(3 * n_quadratic_params(T), T))
    y = apply_link(_quadratic(X, A, b, e), link)
    model = QuadraticSurrogate(link=link).fit(X, y)
    np.testing.assert_allclose(model.A_, A, atol=1e-6)
    np.testing.assert_allclose(model.b_, b, atol=1e-6)
    assert model.e_ == pytest.approx(e, abs=1e-6)
    assert model.n_features_in_ == T
    assert np.allclose(model.A_, model.A_.T)
    X_test = rng.uniform(0, 1, size=(200, T))
    y_test = apply_link(_quadratic(X_test, A, b, e), link)
    assert model.score(X_test, y_test) > 0.999
    np.testing.assert_allclose(model.decision_function(X_test), _quadratic(X_test, A, b, e), atol=1e-6)


@pytest.mark.parametrize("link", ["sigmoid", "softplus"])
def test_noisy_fit_is_reasonable(link):
    T = 3
    A, b, e = _truth(T, seed=1, scale=2.0)
    rng = np.random.default_rng(5)
    X = rng.uniform(0, 1, size=(40, T))
    clean = apply_link(_quadratic(X, A, b, e), link)
    y = clean + rng.normal(0, 0.02 * clean.std(), size=clean.shape)
    model = QuadraticSurrogate(link=link).fit(X, y)
    X_test = rng.uniform(0, 1, size=(300, T))
    y_test = apply_link(_quadratic(X_test, A, b, e), link)
    assert model.score(X_test, y_test) > 0.95


def test_refinement_lowers_metric_scale_error():
    # Accuracies that hit exactly 1.0 are clipped before the logit, so the linear fit is off
    # on the metric scale; the nonlinear refinement must do at least as well, here better.
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(30, 2))
    y = np.clip(1.2 - 0.8 * ((X - 0.6) ** 2).sum(axis=1), 0.0, 1.0)
    assert np.any(y == 1.0)
    plain = QuadraticSurrogate(refine=False).fit(X, y)
    refined = QuadraticSurrogate(refine=True).fit(X, y)
    sse_plain = np.sum((plain.predict(X) - y) ** 2)
    sse_refined = np.sum((refined.predict(X) - y) ** 2)
    assert sse_refined < 0.5 * sse_plain


def test_ridge_shrinks_coefficients():
    A, b, e = _truth(3, seed=2, scale=1.0)
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, size=(30, 3))
    y = apply_link(_quadratic(X, A, b, e), "sigmoid")
    free = QuadraticSurrogate(alpha=0.0).fit(X, y)
    ridge = QuadraticSurrogate(alpha=1.0).fit(X, y)
    size = lambda m: np.abs(m.A_).sum() + np.abs(m.b_).sum()  # noqa: E731
    assert size(ridge) < size(free)


def test_identity_link_is_plain_quadratic_regression():
    A, b, e = _truth(2, seed=3, scale=1.0)
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(20, 2))
    y = _quadratic(X, A, b, e)
    model = QuadraticSurrogate(link="identity").fit(X, y)
    np.testing.assert_allclose(model.A_, A, atol=1e-8)
    assert r2_score(y, model.predict(X)) > 0.999999


def test_params_round_trip_through_json():
    rng = np.random.default_rng(4)
    X = rng.uniform(0, 1, size=(25, 3))
    y = rng.uniform(0.2, 0.9, size=25)
    model = QuadraticSurrogate(link="sigmoid").fit(X, y)
    params = json.loads(json.dumps(model.params_dict()))
    assert set(params) == {"A", "b", "e", "link"}
    rebuilt = QuadraticSurrogate.from_params(params)
    np.testing.assert_allclose(rebuilt.predict(X), model.predict(X), rtol=1e-12)
    np.testing.assert_allclose(rebuilt.A_, model.A_)
    with pytest.raises(ValueError):
        QuadraticSurrogate.from_params({"A": [[1.0]], "b": [1.0, 2.0], "e": 0.0, "link": "sigmoid"})
    with pytest.raises(ValueError):
        QuadraticSurrogate.from_params({"A": [[1.0]], "b": [1.0], "e": 0.0})


def test_too_few_samples_and_bad_link():
    X = np.random.default_rng(0).uniform(size=(14, 4))  # needs 15
    with pytest.raises(ValueError, match="15"):
        QuadraticSurrogate().fit(X, np.full(14, 0.5))
    with pytest.raises(ValueError):
        QuadraticSurrogate(link="tanh").fit(np.ones((10, 1)), np.ones(10))


def test_link_helpers():
    z = np.linspace(-8, 8, 50)
    for link in ("sigmoid", "softplus", "identity"):
        np.testing.assert_allclose(inverse_link(apply_link(z, link), link), z, atol=1e-8)
    # clipped into the link's range instead of producing infinities
    assert np.all(np.isfinite(inverse_link(np.array([0.0, 1.0]), "sigmoid")))
    assert np.all(np.isfinite(inverse_link(np.array([0.0, 50.0]), "softplus")))


def test_fit_surrogates_one_per_column():
    A, b, e = _truth(2, seed=6, scale=1.0)
    rng = np.random.default_rng(6)
    C = rng.uniform(0, 1, size=(15, 2))
    Y = np.column_stack([apply_link(_quadratic(C, A, b, e), "sigmoid"),
                         apply_link(_quadratic(C, -A, b, e), "softplus")])
    models = fit_surrogates(C, Y[:, :1], "sigmoid")
    assert len(models) == 1
    models = fit_surrogates(C, Y, ["sigmoid", "softplus"])
    assert [m.link for m in models] == ["sigmoid", "softplus"]
    for k, m in enumerate(models):
        np.testing.assert_allclose(m.predict(C), Y[:, k], atol=1e-6)
    with pytest.raises(ValueError):
        fit_surrogates(C, Y, ["sigmoid"])


def _deficient_resample(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A bootstrap-like resample on 4 tasks: 22 rows but 12 distinct points, fewer than the
    quadratic's 15 parameters (EHVI's ensemble members are fitted on such resamples)."""
    rng = np.random.default_rng(seed)
    C = rng.uniform(0, 1, (12, 4))
    y = 1 / (1 + np.exp(-(0.4 + C @ rng.normal(0, 1, 4) - 0.8 * (C ** 2).sum(1))))
    y = np.clip(y + rng.normal(0, 0.02, 12), 0.01, 0.99)
    rows = np.concatenate([np.arange(12), rng.integers(0, 12, 10)])
    return C[rows], y[rows]


@pytest.mark.parametrize("seed", range(4))
def test_a_rank_deficient_fit_is_the_same_every_time(seed):
    """Refinement of an underdetermined fit moves only along what the data determine, so
    the same resample gives the same surrogate whatever the memory layout of the moment
    (Levenberg-Marquardt along the null space drifted by rounding: other EHVI points from
    run to run). Allocations between the fits move the solver's work arrays."""
    C, y = _deficient_resample(seed)
    probe = np.random.default_rng(99).uniform(0, 1, (50, 4))
    results, keep = set(), []
    for k in range(40):
        keep.append(np.empty(1 + (37 * k) % 301))
        results.add(QuadraticSurrogate().fit(C, y).predict(probe).round(10).tobytes())
    assert len(results) == 1
    # and it is still a refinement: no worse on the data than the linear solution
    refined = QuadraticSurrogate().fit(C, y).predict(C)
    linear = QuadraticSurrogate(refine=False).fit(C, y).predict(C)
    assert np.sum((refined - y) ** 2) <= np.sum((linear - y) ** 2) + 1e-12
