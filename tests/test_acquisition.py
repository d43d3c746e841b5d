"""EHVI under a bootstrap ensemble (src/core/acquisition.py), with answers worked by hand."""
import numpy as np
import pytest

from src.core import acquisition as acq
from src.core import refine

# Two real models trading off; the hypervolume against (0, 0) is 0.45 + 0.45 - 0.25 = 0.65.
DONE = np.array([[0.5, 0.9], [0.9, 0.5]])
ORIGIN = np.zeros(2)


def same_for_all(F, members=4):
    return np.repeat(np.asarray(F, dtype=float)[None], members, axis=0)


def test_ehvi_of_a_certain_candidate_is_its_hypervolume_improvement():
    # (0.8, 0.8) adds x in [0.5, 0.8] up to 0.8 (0.24) and x in [0.8, 0.9] up to 0.5 (0.05)
    # above the 0.65 already covered: 0.74 - 0.65 = 0.09.
    rows, gains = acq.ehvi_batch(same_for_all([[0.8, 0.8], [0.4, 0.4]]), DONE, "max", 1,
                                 ref_point=ORIGIN)
    assert rows.tolist() == [0]
    assert gains[0] == pytest.approx(0.09)


def test_a_dominated_candidate_is_never_chosen_and_the_batch_stops():
    rows, _ = acq.ehvi_batch(same_for_all([[0.8, 0.8], [0.4, 0.4]]), DONE, "max", 2,
                             ref_point=ORIGIN)
    assert rows.tolist() == [0]


def test_uncertainty_raises_ehvi_above_a_certain_candidate_with_the_same_mean():
    # certain: (0.6, 0.6) always, improvement 0.1 * 0.1 = 0.01; unsure: (0.5, 0.5) or
    # (0.7, 0.7) with equal weight, mean (0.6, 0.6), EHVI 0.5 * 0 + 0.5 * 0.04 = 0.02.
    samples = np.array([[[0.6, 0.6], [0.5, 0.5]],
                        [[0.6, 0.6], [0.7, 0.7]]])
    rows, gains = acq.ehvi_batch(samples, DONE, "max", 1, ref_point=ORIGIN)
    assert rows.tolist() == [1]
    assert gains[0] == pytest.approx(0.02)


def test_the_batch_scores_each_next_point_against_the_front_the_batch_gives():
    # (0.8, 0.8) first (0.09); then (0.78, 0.78) adds nothing behind it, while (0.95, 0.3)
    # adds x in [0.9, 0.95] up to 0.3 = 0.015: it comes second.
    F = [[0.8, 0.8], [0.78, 0.78], [0.95, 0.3]]
    rows, gains = acq.ehvi_batch(same_for_all(F), DONE, "max", 3, ref_point=ORIGIN)
    assert rows.tolist() == [0, 2]
    assert gains == pytest.approx([0.09, 0.015])


def test_minimised_metrics_mirror_maximised_ones():
    rows, gains = acq.ehvi_batch(same_for_all([[0.2, 0.2], [0.6, 0.6]]), 1 - DONE, "min", 1,
                                 ref_point=np.ones(2))
    assert rows.tolist() == [0]
    assert gains[0] == pytest.approx(0.09)


def test_eligibility_and_exclusion_are_respected():
    F = same_for_all([[0.8, 0.8], [0.79, 0.81], [0.95, 0.3]])
    rows, _ = acq.ehvi_batch(F, DONE, "max", 3, ref_point=ORIGIN,
                             eligible=np.array([False, True, True]))
    assert 0 not in rows.tolist()
    rows, _ = acq.ehvi_batch(F, DONE, "max", 3, ref_point=ORIGIN,
                             exclude=lambda j: np.array([True, True, False]))
    assert rows.tolist() == [0, 2]


def test_reference_lies_below_every_front_row():
    ref = acq.reference_below(DONE, "max")
    assert np.all(ref < DONE.min(axis=0))
    assert acq.reference_below(1 - DONE, "min") == pytest.approx(1 - ref)


def quadratic_problem(C):
    """Two accuracies that are exactly the sigmoid of a quadratic, as the surrogate fits."""
    z = np.column_stack([2 - 3 * (1 - C[:, 0]) ** 2 - 2 * C[:, 1] ** 2,
                         2 - 3 * (1 - C[:, 1]) ** 2 - 2 * C[:, 0] ** 2])
    return 1 / (1 + np.exp(-z))


def test_members_differ_on_noisy_data_and_agree_on_exact_data():
    rng = np.random.default_rng(0)
    C = rng.uniform(0, 1, (30, 2))
    exact = acq.ensemble_predict(acq.bootstrap_ensemble(C, quadratic_problem(C), "sigmoid",
                                                        members=5), C)
    assert np.ptp(exact, axis=0).max() < 1e-3
    noisy = quadratic_problem(C) + rng.normal(0, 0.02, (30, 2))
    spread = acq.ensemble_predict(acq.bootstrap_ensemble(C, noisy, "sigmoid", members=5), C)
    assert spread.shape == (5, 30, 2)
    assert np.ptp(spread, axis=0).mean() > 1e-3


def test_refinement_uses_the_selector_and_keeps_its_distance():
    rng = np.random.default_rng(1)
    C = rng.uniform(0, 1, (12, 2))
    Y = quadratic_problem(C) + rng.normal(0, 0.01, (12, 2))
    asked = []

    def evaluate(C_new):
        asked.append(C_new)
        return quadratic_problem(C_new)

    search = refine.surrogate_search("sigmoid", ["max", "max"], low=0.0, high=1.0, n_gen=30,
                                     seed=0)
    select = acq.ehvi_selector("sigmoid", ["max", "max"], members=4, min_distance=0.05)
    result = refine.refine_front(evaluate, search, C, Y, rounds=2, points=3, select=select)
    new = np.vstack(asked)
    assert 1 <= len(new) <= 6
    assert len(result.C) == 12 + len(new)
    for i, c in enumerate(new):  # never within min_distance of an earlier point
        earlier = np.vstack([C, new[:i]])
        assert np.linalg.norm(earlier - c, axis=1).min() > 0.05


# ------------------------------------------------------------------ ParEGO (many tasks)
def test_parego_first_point_is_the_preferences_best_front_row():
    """On exact data every member agrees, so the first point is the front row the
    Tchebycheff pick chooses for the preference (scaled by the evaluated range)."""
    from src.core.pareto import Tchebycheff

    rng = np.random.default_rng(2)
    C = rng.uniform(0, 1, (20, 3))
    Y = quadratic_problem(C[:, :2])[:, [0, 1, 0]] * np.array([1.0, 1.0, 0.9])
    C_front = rng.uniform(0, 1, (40, 3))
    F = acq.ensemble_predict(acq.bootstrap_ensemble(C, Y, "sigmoid", members=1), C_front)[0]
    for w in ([1.0, 1.0, 1.0], [5.0, 1.0, 1.0], [1.0, 5.0, 0.5]):
        select = acq.parego_selector("sigmoid", ["max"] * 3, members=4, seed=0,
                                     min_distance=0.0, preference=np.array(w))
        rows = select(C_front, F, C, Y, 3)
        expected = Tchebycheff().do(F, np.array(w), ["max"] * 3, Y.min(0), Y.max(0))
        assert rows[0] == expected
        assert len(set(rows.tolist())) == 3  # the other two: other weights, other rows


def test_parego_keeps_its_distance_and_stops_when_nothing_is_free():
    rng = np.random.default_rng(3)
    C = rng.uniform(0, 1, (15, 2))
    Y = quadratic_problem(C)
    C_front = np.vstack([C[:3] + 0.01, [[0.5, 0.5], [0.52, 0.5], [0.9, 0.1]]])
    F = quadratic_problem(C_front)
    select = acq.parego_selector("sigmoid", ["max", "max"], members=4, seed=1,
                                 min_distance=0.05)
    rows = select(C_front, F, C, Y, 5)
    chosen = C_front[rows]
    assert not set(rows.tolist()) & {0, 1, 2}  # within min_distance of evaluated points
    assert len(rows) <= 2  # (0.5, 0.5) and (0.52, 0.5) are too close to take both
    assert all(np.linalg.norm(C - c, axis=1).min() > 0.05 for c in chosen)
