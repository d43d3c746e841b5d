"""Front quality indicators: hand-computed cases, senses, and the noise floor."""
import json
import math

import numpy as np
import pytest

from src.core.indicators import (bootstrap_floor, coverage, dominance_of_points, front_indicators,
                            gd, hv_ratio, hypervolume, igd, igd_plus, pareto_filter,
                            preference_regret, reference_point, split_half_floor, win_rate)

# A staircase truth (accuracies): three front points and one dominated point.
TRUTH = np.array([[0.9, 0.5], [0.7, 0.7], [0.5, 0.9], [0.6, 0.6]])


def test_pareto_filter_drops_dominated_and_duplicates():
    F = np.vstack([TRUTH, TRUTH[:1]])
    np.testing.assert_array_equal(pareto_filter(F, "max"), [[0.5, 0.9], [0.7, 0.7], [0.9, 0.5]])
    # As losses the dominated row is the best one.
    np.testing.assert_array_equal(pareto_filter(TRUTH, "min"), [[0.5, 0.9], [0.6, 0.6], [0.9, 0.5]])


def test_reference_point_per_sense():
    np.testing.assert_allclose(reference_point(TRUTH, "max", 0.01), [0.49, 0.49])
    # max/min: (0.9, 0.5) dominates every other row, so it alone is the front's nadir
    np.testing.assert_allclose(reference_point(TRUTH, ["max", "min"], 0.1), [0.8, 0.6])


def test_reference_point_is_the_front_nadir_not_the_worst_point():
    # A far-off dominated merge (0.1, 0.2) must not move the reference: it is the front's
    # nadir (0.5, 0.5) minus the margin, and the HV ratio of a front inside the truth's
    # is not compressed towards 1 by it (hand-computed: boxes from (0.49, 0.49)).
    far = np.vstack([TRUTH, [[0.1, 0.2]]])
    np.testing.assert_allclose(reference_point(far, "max", 0.01), [0.49, 0.49])
    truth_hv = 0.01 * 0.41 + 0.2 * 0.21 + 0.2 * 0.01  # x in [.49,.5], [.5,.7], [.7,.9]
    assert hv_ratio([[0.6, 0.6]], far, "max", 0.01) == pytest.approx(0.11 * 0.11 / truth_hv)


def test_hypervolume_by_hand():
    ref = [0.4, 0.4]
    # Union of three boxes from (0.4, 0.4): widths/heights by the staircase.
    expected = (0.9 - 0.7) * 0.1 + (0.7 - 0.5) * 0.3 + (0.5 - 0.4) * 0.5
    assert hypervolume(TRUTH, ref, "max") == pytest.approx(expected)
    # The same front as losses (negated values) has the same volume.
    assert hypervolume(-TRUTH, [-0.4, -0.4], "min") == pytest.approx(expected)
    # Points beyond the reference point add nothing; no point at all is volume 0.
    assert hypervolume([[0.3, 1.0]], ref, "max") == 0.0
    assert hypervolume(np.zeros((0, 2)), ref, "max") == 0.0


def test_hv_ratio_is_one_for_the_truth_and_lower_for_a_subset():
    assert hv_ratio(TRUTH, TRUTH, "max") == pytest.approx(1.0)
    sub = hv_ratio(TRUTH[[1]], TRUTH, "max")
    # ref 0.49: one box (0.7-0.49)^2 over the staircase's volume
    ref = 0.49
    whole = (0.9 - 0.7) * (0.5 - ref) + (0.7 - 0.5) * (0.7 - ref) + (0.5 - ref) * (0.9 - ref)
    assert sub == pytest.approx((0.7 - ref) ** 2 / whole)


def test_distances_by_hand():
    F = np.array([[0.7, 0.6]])  # 0.1 behind the middle truth point in the second objective
    d = [math.dist([0.7, 0.6], t) for t in TRUTH[:3]]
    assert igd(F, TRUTH, "max") == pytest.approx(np.mean(d))
    assert gd(F, TRUTH, "max") == pytest.approx(min(d))
    # IGD+: only the shortfall counts: (0.2,0)->? for (0.9,0.5): max(0.9-0.7,0), max(0.5-0.6,0)
    plus = [math.hypot(0.2, 0.0), math.hypot(0.0, 0.1), math.hypot(0.0, 0.3)]
    assert igd_plus(F, TRUTH, "max") == pytest.approx(np.mean(plus))
    assert igd_plus(TRUTH, TRUTH, "max") == pytest.approx(0.0)


def test_win_rate_and_coverage():
    A = np.array([[0.8, 0.8], [0.4, 0.4]])
    # (0.8,0.8) dominates (0.7,0.7) and (0.6,0.6) only; (0.4,0.4) dominates nothing.
    assert win_rate(A, TRUTH, "max") == pytest.approx(2 / 8)
    assert win_rate(TRUTH, A, "max") == pytest.approx(4 / 8)  # all four beat (0.4, 0.4)
    assert coverage(A, TRUTH, "max") == pytest.approx(2 / 4)
    assert win_rate(TRUTH, TRUTH, "max") == pytest.approx(1 / 16)  # only (0.7, 0.7) beats (0.6, 0.6)
    # With losses (0.4, 0.4) beats all four and (0.8, 0.8) none.
    assert win_rate(A, TRUTH, "min") == pytest.approx(4 / 8)


def test_preference_regret():
    # weights (1, 0): best grid value 0.9
    assert preference_regret(TRUTH, [0.85, 0.1], [1, 0], "max") == pytest.approx(0.05)
    assert preference_regret(TRUTH, [0.95, 0.1], [2, 0], "max") == pytest.approx(-0.05)
    # loss: best is the smallest weighted loss, 0.6 at equal weights
    assert preference_regret(TRUTH, [0.7, 0.7], [1, 1], "min") == pytest.approx(0.1)


def test_dominance_of_points():
    out = dominance_of_points(TRUTH[:3], np.array([[0.6, 0.6], [0.95, 0.2], [0.7, 0.7]]), "max")
    assert out["dominated"].tolist() == [True, False, False]
    # (0.6, 0.6) is 0.1 behind (0.7, 0.7) in both objectives; (0.95, 0.2) is not dominated
    # yet 0.3 behind (0.9, 0.5) in the second; a front point itself is at distance 0.
    np.testing.assert_allclose(out["distance"], [math.hypot(0.1, 0.1), 0.3, 0.0])


def test_front_indicators_is_json_and_consistent():
    real = np.array([[0.88, 0.5], [0.68, 0.7], [0.5, 0.88]])
    pred = real + 0.02
    out = front_indicators(TRUTH, pred, real, real[1], [0.5, 0.5], "max", 0.01)
    json.dumps(out)
    assert out["hv_ratio"] == pytest.approx(hv_ratio(real, TRUTH, "max"))
    assert 0.8 < out["hv_ratio"] < 1.0
    assert out["predicted_vs_real_mae"] == pytest.approx(0.02)
    assert out["preference_regret"] == pytest.approx(0.7 - 0.69)
    assert out["n_truth_front"] == 3 and out["n_real_front"] == 3
    with pytest.raises(ValueError):
        front_indicators(TRUTH, pred[:2], real, senses="max")
    with pytest.raises(ValueError):
        front_indicators(TRUTH, None, real, chosen_real=real[0], senses="max")


def test_bad_senses_are_value_errors():
    with pytest.raises(ValueError):
        pareto_filter(TRUTH, "up")
    with pytest.raises(ValueError):
        hypervolume(TRUTH, [0, 0], ["max"])


def test_split_half_floor_without_noise_is_one_and_noise_lowers_it():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 41)
    Y = np.column_stack([np.cos(t * np.pi / 2), np.sin(t * np.pi / 2)]) * 0.8 + 0.1
    assert split_half_floor(Y, Y, "max")["mean"] == pytest.approx(1.0)
    # Per-image correctness: 200 images per task, each model's accuracy = Y.
    correct = [(rng.random((41, 200)) < Y[:, [k]]).astype(float) for k in range(2)]
    floor = bootstrap_floor(correct, "max", n_splits=10, seed=1)
    assert 0.5 < floor["mean"] < 0.99
    many = [(rng.random((41, 20000)) < Y[:, [k]]).astype(float) for k in range(2)]
    assert bootstrap_floor(many, "max", n_splits=3)["mean"] > floor["mean"]


def test_bootstrap_resampling_is_less_pessimistic_than_halves():
    rng = np.random.default_rng(3)
    t = np.linspace(0, 1, 31)
    Y = np.column_stack([np.cos(t * np.pi / 2), np.sin(t * np.pi / 2)]) * 0.8 + 0.1
    correct = [(rng.random((31, 300)) < Y[:, [k]]).astype(float) for k in range(2)]
    half = bootstrap_floor(correct, "max", n_splits=10, seed=0, resample="half")
    boot = bootstrap_floor(correct, "max", n_splits=10, seed=0, resample="bootstrap")
    assert half["mean"] < boot["mean"] < 1.0
    with pytest.raises(ValueError):
        bootstrap_floor(correct, "max", resample="jackknife")
