import numpy as np
import pytest

from args import default_points

from src.core.sampling import (
    design,
    diagonal_points,
    disturbed_points,
    from_hyperspherical,
    grid_points,
    min_points,
    one_hot_points,
    to_hyperspherical,
)


def _n_unique(X: np.ndarray) -> int:
    return len(np.unique(np.round(X, 10), axis=0))


def test_point_counts():
    # 1 + T + T(T+1)/2 coefficients of a full quadratic.
    for T in range(1, 9):
        assert min_points(T) == 1 + T + T * (T + 1) // 2
        assert default_points(T) == 2 * min_points(T)
    with pytest.raises(ValueError):
        min_points(0)


def test_one_hot_points():
    np.testing.assert_array_equal(one_hot_points(3), np.eye(3))


def test_grid_points_filters_one_hot_diagonal_and_simplex():
    G = grid_points(2, 3)
    expected = {(0.0, 0.5), (0.5, 0.0), (0.5, 1.0), (1.0, 0.5)}
    assert {tuple(row) for row in G} == expected

    G = grid_points(3, 5, low=0.0, high=1.0)
    assert G.shape[1] == 3
    assert not np.any(np.abs(G.sum(axis=1) - 1.0) < 1e-9)
    assert not np.any(np.ptp(G, axis=1) < 1e-9)
    assert _n_unique(G) == len(G)
    # 125 grid points - 5 diagonal - 15 on the simplex (one-hot among them) = 105.
    assert len(G) == 125 - 5 - 15


def test_grid_points_respects_box():
    G = grid_points(3, 4, low=-0.5, high=1.5)
    assert G.min() >= -0.5 and G.max() <= 1.5
    assert np.isclose(G.min(), -0.5) and np.isclose(G.max(), 1.5)


def test_diagonal_points():
    D = diagonal_points(3, 4, 0.0, 1.0)
    np.testing.assert_allclose(D[:, 0], [0.25, 0.5, 0.75, 1.0])
    assert np.all(np.ptp(D, axis=1) == 0)
    J = diagonal_points(3, 4, 0.0, 1.0, jitter=0.05, rng=np.random.default_rng(0))
    assert np.all((J >= 0) & (J <= 1))
    assert np.any(np.ptp(J, axis=1) > 0)
    assert np.abs(J - D).max() < 0.3


def test_disturbed_points():
    base = np.eye(3)
    P = disturbed_points(base, 50, 0.05, 0.0, 1.0, np.random.default_rng(0))
    assert P.shape == (50, 3)
    assert np.all((P >= 0) & (P <= 1))
    # each row stays near one of the base rows
    dist = np.abs(P[:, None, :] - base[None]).max(axis=2).min(axis=1)
    assert dist.max() < 0.3


@pytest.mark.parametrize("T", [1, 2, 3, 4, 6, 8])
def test_design_shape_order_and_distinct(T):
    n = default_points(T)
    D = design(T, n, n_diagonal=2, n_disturbed=3, seed=3)
    assert D.shape == (n, T)
    assert D.dtype == float
    np.testing.assert_array_equal(D[:T], np.eye(T))
    assert _n_unique(D) == n
    assert np.all((D >= 0) & (D <= 1))
    if T > 1:
        # near-diagonal points come right after the one-hot ones
        assert np.all(np.ptp(D[T:T + 2], axis=1) < 0.2)


def test_design_grid_part_uses_coarsest_grid():
    T = 3
    D = design(T, 20, seed=0)
    rest = D[T:]
    # per_axis=3 already has enough candidates, so every grid coordinate is in {0, .5, 1}
    assert np.all(np.isin(rest, [0.0, 0.5, 1.0]))
    # with many more points it must move to a finer grid
    D = design(T, 60, seed=0)
    assert not np.all(np.isin(D[T:], [0.0, 0.5, 1.0]))
    assert _n_unique(D) == 60


def test_design_is_seeded():
    a = design(4, 30, n_diagonal=3, n_disturbed=4, seed=7)
    b = design(4, 30, n_diagonal=3, n_disturbed=4, seed=7)
    c = design(4, 30, n_diagonal=3, n_disturbed=4, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_design_box_and_one_hot_scaling():
    D = design(3, 20, low=0.0, high=0.8, seed=0)
    np.testing.assert_allclose(D[:3], 0.8 * np.eye(3))
    assert D.max() <= 0.8
    D = design(3, 20, low=0.0, high=1.5, seed=0)
    np.testing.assert_array_equal(D[:3], np.eye(3))
    assert np.isclose(D.max(), 1.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(T=3, n_points=2),
        dict(T=0, n_points=5),
        dict(T=3, n_points=0),
        dict(T=3, n_points=10, low=1.0, high=1.0),
        dict(T=3, n_points=10, n_diagonal=-1),
        dict(T=3, n_points=5, n_diagonal=2, n_disturbed=1),
    ],
)
def test_design_rejects_bad_input(kwargs):
    T, n = kwargs.pop("T"), kwargs.pop("n_points")
    with pytest.raises(ValueError):
        design(T, n, **kwargs)


def test_hyperspherical_known_values():
    r, ang = to_hyperspherical(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(r, [1.0, 2.0, np.sqrt(2)])
    np.testing.assert_allclose(ang, [[0, 0], [np.pi / 2, np.pi / 2], [np.pi / 4, 0]], atol=1e-15)


@pytest.mark.parametrize("T", [1, 2, 3, 5, 8])
def test_hyperspherical_round_trip(T):
    rng = np.random.default_rng(T)
    C = np.vstack([
        rng.uniform(0, 2, size=(50, T)),
        np.zeros((1, T)),                       # origin
        np.eye(T),                              # axes
        np.ones((1, T)),
        rng.uniform(0, 1, size=(10, T)) * (rng.uniform(size=(10, T)) < 0.5),  # zeros inside
    ])
    r, ang = to_hyperspherical(C)
    assert r.shape == (len(C),) and ang.shape == (len(C), T - 1)
    assert np.all((ang >= 0) & (ang <= np.pi / 2))
    np.testing.assert_allclose(from_hyperspherical(r, ang), C, atol=1e-12)
    # the origin maps to r=0 and all angles 0
    assert r[50] == 0 and np.all(ang[50] == 0)


def test_hyperspherical_round_trip_from_angles():
    rng = np.random.default_rng(0)
    r = rng.uniform(0.1, 2, 40)
    ang = rng.uniform(0, np.pi / 2, size=(40, 3))
    r2, ang2 = to_hyperspherical(from_hyperspherical(r, ang))
    np.testing.assert_allclose(r2, r)
    np.testing.assert_allclose(ang2, ang, atol=1e-12)


def test_hyperspherical_rejects_bad_input():
    with pytest.raises(ValueError):
        to_hyperspherical(np.array([[0.5, -0.2]]))
    with pytest.raises(ValueError):
        from_hyperspherical(np.array([1.0]), np.array([[2.0]]))
    with pytest.raises(ValueError):
        from_hyperspherical(np.array([1.0, 1.0]), np.zeros((3, 2)))
