import numpy as np
import pytest
from pymoo.indicators.igd import IGD

from src.core.pareto import (
    SurrogateProblem,
    hypervolume,
    igd,
    n_partitions_for,
    non_dominated,
    normalize_preference,
    nsga3_front,
    pick,
    pick_by_preference,
    pick_tchebycheff,
)
from src.core.surrogate import QuadraticSurrogate


def _peak(p, a: float, h: float, link: str, sign: float = 1.0) -> QuadraticSurrogate:
    """link(sign * (h - a ||c - p||^2)): an isotropic bump (sign=+1) or bowl (sign=-1) at p."""
    p = np.asarray(p, dtype=float)
    T = p.size
    return QuadraticSurrogate.from_params({
        "A": (sign * -2.0 * a * np.eye(T)).tolist(),
        "b": (sign * 2.0 * a * p).tolist(),
        "e": float(sign * (h - a * p @ p)),
        "link": link,
    })


def _segment_front(surrogates, p1, p2, n=2001):
    # For isotropic quadratics the Pareto set is the segment between the optima.
    t = np.linspace(0, 1, n)[:, None]
    C = np.asarray(p1) + t * (np.asarray(p2) - np.asarray(p1))
    return C, np.column_stack([s.predict(C) for s in surrogates])


def _distance_to_segment(C, p1, p2):
    p1, p2 = np.asarray(p1), np.asarray(p2)
    d = p2 - p1
    t = np.clip((C - p1) @ d / (d @ d), 0, 1)
    return np.linalg.norm(C - (p1 + t[:, None] * d), axis=1)


def test_metric_table_gives_link_and_sense():
    from src.core.metrics import get_metric

    assert (get_metric("accuracy").link, get_metric("accuracy").sense) == ("sigmoid", "max")
    assert (get_metric("loss").link, get_metric("loss").sense) == ("softplus", "min")
    with pytest.raises(ValueError):
        get_metric("bleu")


def test_reference_direction_counts():
    from math import comb
    for K in range(2, 9):
        p = n_partitions_for(K)
        assert 50 <= comb(p + K - 1, K - 1) <= 150


def test_problem_negates_max_objectives():
    s1, s2 = _peak([0.2, 0.7], 4.0, 2.0, "sigmoid"), _peak([0.8, 0.3], 4.0, 1.0, "softplus", -1)
    problem = SurrogateProblem([s1, s2], ["max", "min"], low=0.0, high=[1.0, 2.0])
    np.testing.assert_array_equal(problem.xu, [1.0, 2.0])
    X = np.random.default_rng(0).uniform(size=(5, 2))
    F = problem.evaluate(X, return_values_of=["F"])
    np.testing.assert_allclose(F[:, 0], -s1.predict(X))
    np.testing.assert_allclose(F[:, 1], s2.predict(X))
    with pytest.raises(ValueError):
        SurrogateProblem([s1, s2], ["max"])
    with pytest.raises(ValueError):
        SurrogateProblem([s1, s2], ["max", "up"])
    with pytest.raises(ValueError):
        SurrogateProblem([s1, s2], ["max", "min"], low=1.0, high=0.5)


_P1, _P2 = [0.2, 0.7], [0.8, 0.3]


def _two_peaks(link: str, sign: float):
    return [_peak(_P1, 4.0, 2.0, link, sign), _peak(_P2, 3.0, 1.5, link, sign)]


@pytest.mark.parametrize(
    "link, sense, sign",
    [("sigmoid", "max", 1.0), ("softplus", "min", -1.0)],
    ids=["accuracy", "loss"],
)
def test_nsga3_archive_matches_analytic_front_t2(link, sense, sign):
    surrogates = _two_peaks(link, sign)
    C, F = nsga3_front(surrogates, [sense, sense], n_gen=50, seed=0, archive=True)
    _, F_true = _segment_front(surrogates, _P1, _P2)

    assert C.shape[1] == 2 and F.shape == (len(C), 2) and len(C) >= 100
    np.testing.assert_allclose(F, np.column_stack([s.predict(C) for s in surrogates]))
    assert np.all(np.diff(F[:, 0]) >= 0)  # sorted by the first objective
    assert non_dominated(F, [sense, sense]).all()
    value_range = np.ptp(F_true, axis=0).min()
    assert IGD(F_true)(F) < 0.01 * value_range
    # the Pareto set is found too, not only its image (near the peaks being off the segment
    # costs little, so a few archived points sit a little further away)
    dist = _distance_to_segment(C, _P1, _P2)
    assert np.median(dist) < 0.02 and np.percentile(dist, 90) < 0.05


def test_nsga3_final_population_converges_t2():
    # NSGA-III's final population: one point per reference direction, crowded at the knee of
    # this curved front, so its IGD is above the archive's (about 2% of the range, not 0.5%).
    surrogates = _two_peaks("sigmoid", 1.0)
    C, F = nsga3_front(surrogates, ["max", "max"], n_gen=50, seed=0)
    _, F_true = _segment_front(surrogates, _P1, _P2)
    assert 50 <= len(C) <= 100
    assert non_dominated(F, ["max", "max"]).all()
    assert igd(F, F_true) < 0.04 * np.ptp(F_true, axis=0).min()
    assert np.percentile(_distance_to_segment(C, _P1, _P2), 90) < 0.03


def test_nsga3_t3_k3_gives_non_dominated_set_in_box():
    peaks = [[0.1, 0.5, 0.9], [0.8, 0.2, 0.4], [0.5, 0.9, 0.1]]
    surrogates = [_peak(p, 3.0, 2.0, "sigmoid") for p in peaks]
    low, high = [0.0, 0.0, 0.0], [1.0, 1.0, 0.8]
    C, F = nsga3_front(surrogates, "max", low=low, high=high, n_gen=60, seed=1)
    assert C.shape[1] == 3 and F.shape == (len(C), 3) and len(C) >= 30
    assert np.all(C >= 0) and np.all(C <= np.array(high) + 1e-12)
    assert non_dominated(F, ["max"] * 3).all()
    assert len(np.unique(np.round(C, 12), axis=0)) == len(C)
    # every single peak is (nearly) attained by some front point
    for k, p in enumerate(peaks):
        best = surrogates[k].predict(np.minimum(np.array([p]), high))[0]
        assert F[:, k].max() > best - 0.02


def test_nsga3_is_seeded_and_single_objective():
    s = [_peak([0.3, 0.6], 4.0, 2.0, "sigmoid"), _peak([0.7, 0.2], 4.0, 2.0, "sigmoid")]
    a = nsga3_front(s, ["max", "max"], n_gen=20, seed=3)
    b = nsga3_front(s, ["max", "max"], n_gen=20, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    C, F = nsga3_front(s[:1], ["max"], n_gen=30, pop_size=40, seed=0)
    assert C.shape == (1, 2) and F.shape == (1, 1)
    np.testing.assert_allclose(C[0], [0.3, 0.6], atol=0.02)


def test_non_dominated_hand_made():
    F = np.array([[0.9, 0.1], [0.5, 0.5], [0.4, 0.4], [0.1, 0.9], [0.5, 0.5], [0.2, 0.8]])
    np.testing.assert_array_equal(non_dominated(F, ["max", "max"]), [1, 1, 0, 1, 1, 1])
    # minimising both, only the point dominated above survives among its neighbours
    np.testing.assert_array_equal(non_dominated(F, ["min", "min"]), [1, 0, 1, 1, 0, 1])
    # mixed: maximise the first, minimise the second
    np.testing.assert_array_equal(non_dominated(F, ["max", "min"]), [1, 0, 0, 0, 0, 0])


def test_normalize_preference():
    np.testing.assert_allclose(normalize_preference([1, 3], 2), [0.25, 0.75])
    for bad in ([1, -1], [0, 0], [1, 2, 3]):
        with pytest.raises(ValueError):
            normalize_preference(bad, 2)


def test_pick_by_preference():
    F = np.array([[0.9, 0.2], [0.7, 0.7], [0.2, 0.9]])
    assert pick_by_preference(F, [1, 0], ["max", "max"]) == 0
    assert pick_by_preference(F, [1, 1], ["max", "max"]) == 1
    assert pick_by_preference(F, [0.1, 0.9], ["max", "max"]) == 2
    L = np.array([[0.1, 2.0], [0.5, 0.6], [2.0, 0.1]])
    assert pick_by_preference(L, [1, 0], ["min", "min"]) == 0
    assert pick_by_preference(L, [1, 1], ["min", "min"]) == 1
    # accuracy up, loss down: [acc, loss]
    M = np.array([[0.9, 1.5], [0.8, 0.2], [0.3, 0.1]])
    assert pick_by_preference(M, [1, 0], ["max", "min"]) == 0
    assert pick_by_preference(M, [1, 1], ["max", "min"]) == 1
    assert pick_by_preference(M, [0, 1], ["max", "min"]) == 2


# --pick tchebycheff (the default), answers derived by hand: u_k = (y_k - low_k) / (high_k -
# low_k), the pick minimises max_k w_k (1 - u_k) (weights normalised to sum 1).
def test_tchebycheff_picks_the_balanced_model():
    # Task 1 spans [0, 1], task 2 only [0.5, 0.6] (its fine-tuning gained little).
    F = np.array([[1.0, 0.5], [0.5, 0.55], [0.2, 0.6]])
    worst, best = [0.0, 0.5], [1.0, 0.6]
    # u: (1, 0), (0.5, 0.5), (0.2, 1) -> max of 0.5 (1 - u): 0.5, 0.25, 0.4 -> the middle
    assert pick_tchebycheff(F, [1, 1], ["max", "max"], worst, best) == 1
    # the weighted sum on raw accuracies takes the wide task's end (1.5 > 1.05 > 0.8)
    assert pick_by_preference(F, [1, 1], ["max", "max"]) == 0
    # weights (3, 1) -> (0.75, 0.25): 0.25, 0.375, 0.6 -> the first
    assert pick_tchebycheff(F, [3, 1], ["max", "max"], worst, best) == 0
    # the same front as losses (1 - accuracy): the same pick
    assert pick_tchebycheff(1 - F, [1, 1], ["min", "min"], [1.0, 0.5], [0.0, 0.4]) == 1


def test_tchebycheff_widens_to_the_fronts_range():
    # Task 2's fine-tuned model reaches 0.5, the front 0.9: high = (1, 0.9), low = (0, 0).
    F = np.array([[0.9, 0.5], [0.6, 0.7], [0.3, 0.9]])
    # u: (0.9, 0.556), (0.6, 0.778), (0.3, 1) -> max 0.5 (1 - u): 0.222, 0.2, 0.35.
    # Unwidened (high 0.5) the first would win: 0.05, 0.2, 0.35.
    assert pick_tchebycheff(F, [1, 1], ["max", "max"], [0.0, 0.0], [1.0, 0.5]) == 1


def test_tchebycheff_with_a_task_below_its_pretrained_value():
    # The first point loses task 2 below the pretrained 0.5: low = (0.5, 0.2), high = (1, 1).
    F = np.array([[0.9, 0.2], [0.7, 0.6], [0.62, 0.75]])
    # u: (0.8, 0), (0.4, 0.5), (0.24, 0.6875) -> max 0.5 (1 - u): 0.5, 0.3, 0.38.
    # Unwidened (low 0.5: u_2 of -0.6) the third would win: 0.8, 0.4, 0.38.
    assert pick_tchebycheff(F, [1, 1], ["max", "max"], [0.5, 0.5], [1.0, 1.0]) == 1
    assert pick(F, [1, 1], ["max", "max"], "tchebycheff", [0.5, 0.5], [1.0, 1.0]) == 1


def test_hypervolume_and_igd():
    F = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    # maximising from reference (0, 0): union of the boxes = 0.25 (the corners add nothing)
    assert hypervolume(F, [0.0, 0.0], ["max", "max"]) == pytest.approx(0.25)
    assert hypervolume(1.0 - F, [1.0, 1.0], ["min", "min"]) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.5, 0.5]]), [0.0, 1.0], ["max", "min"]) == pytest.approx(0.25)
    assert igd(F, F) == pytest.approx(0.0)
    assert igd(F[:2], F) == pytest.approx(np.sqrt(0.5) / 3)
    with pytest.raises(ValueError):
        hypervolume(F, [0.0], ["max", "max"])
