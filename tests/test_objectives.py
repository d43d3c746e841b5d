"""src.core.objectives: one definition of the senses, HV, IGD and the filter, shared by pareto and
indicators; the picks as pymoo-style decompositions."""
from __future__ import annotations

import numpy as np
import pytest

from src.core import indicators, objectives, pareto


def test_pareto_and_indicators_share_one_definition_of_each():
    assert pareto.hypervolume is indicators.hypervolume is objectives.hypervolume
    assert pareto.non_dominated is indicators.non_dominated is objectives.non_dominated
    assert indicators.igd is objectives.igd and indicators.pareto_filter is objectives.pareto_filter
    assert pareto.normalize_preference is objectives.normalize_preference


def test_hypervolume_drops_rows_beyond_the_reference_and_refuses_non_finite_values():
    """The behaviour kept of the two former copies: rows not strictly better than the
    reference in every objective add nothing (explicitly dropped, whatever the HV backend
    does with them), an empty set has volume 0, and a NaN is an error rather than 0."""
    ref = [0.4, 0.4]
    assert objectives.hypervolume([[0.5, 0.5]], ref, "max") == pytest.approx(0.01)
    # (0.3, 1.0) is worse than the reference on the first objective, (0.4, 0.9) equal to it
    assert objectives.hypervolume([[0.5, 0.5], [0.3, 1.0], [0.4, 0.9]], ref, "max") == \
        pytest.approx(0.01)
    assert objectives.hypervolume([[0.3, 1.0]], ref, "max") == 0.0
    assert objectives.hypervolume(np.zeros((0, 2)), ref, "max") == 0.0
    with pytest.raises(ValueError, match="non-finite"):
        pareto.hypervolume([[np.nan, 0.5]], ref, "max")


def test_igd_against_a_given_front_equals_igd_against_its_filtered_truth_for_a_front():
    F = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert pareto.igd(F[:2], F) == pytest.approx(np.sqrt(0.5) / 3)
    assert objectives.igd(F[:2], F, "max") == pytest.approx(pareto.igd(F[:2], F))
    # a dominated truth row counts only when the truth is taken as given
    truth = np.vstack([F, [[0.1, 0.1]]])
    assert objectives.igd(F, truth, "max") == 0.0
    assert objectives.igd(F, truth, "max", filter_truth=False) > 0.0


def test_tchebycheff_pick_is_the_weighted_max_of_the_normalised_shortfall():
    rng = np.random.default_rng(0)
    F = rng.uniform(0.2, 0.9, size=(40, 3))
    w = np.array([1.0, 2.0, 1.0])
    worst, best = np.full(3, 0.1), np.full(3, 0.95)
    u = (F - 0.1) / 0.85
    expected = int(np.argmin(np.max(w / w.sum() * (1.0 - u), axis=1)))
    assert pareto.pick(F, w, "max", "tchebycheff", worst, best) == expected
    assert pareto.Tchebycheff().do(F, w, "max", worst, best) == expected
    # on a loss (min) the same rows in mirrored scale give the same pick
    assert pareto.pick(-F, w, "min", "tchebycheff", -worst, -best) == expected
    assert pareto.pick(F, w, "max", "weighted-sum") == int(np.argmax(F @ (w / w.sum())))
    with pytest.raises(ValueError, match="worst and best"):
        pareto.pick(F, w, "max", "tchebycheff")


def test_file_prefix_is_the_models_joined_by_underscores():
    assert objectives.file_prefix(["DigitsVal", "RotateVal"]) == "DigitsVal_RotateVal"
