"""map_common.preferences: the one preference check, used by src.core.objectives and
task_vectors.baselines (each with its own error type and wording)."""
from __future__ import annotations

import numpy as np
import pytest

from map_common.errors import MAPError
from map_common.preferences import WeightsProblem, normalised_weights, weights_problem
from src.core.objectives import normalize_preference, validate_preference
from task_vectors.baselines import default_baselines

CASES = [
    ([1, 3], None),
    ([0, 2], None),
    ([-0.0, 1], None),
    ([1, 2, 3], WeightsProblem.COUNT),
    ([[1, 3]], WeightsProblem.COUNT),
    ([1, -1], WeightsProblem.NEGATIVE),
    ([float("nan"), 1], WeightsProblem.NEGATIVE),
    ([float("inf"), 1], WeightsProblem.NEGATIVE),
    ([0, 0], WeightsProblem.ZERO),
]


@pytest.mark.parametrize("w, problem", CASES)
def test_weights_problem(w, problem):
    assert weights_problem(np.asarray(w, dtype=float), 2) is problem


def test_normalised_weights_sums_to_one_or_raises_the_callers_error():
    np.testing.assert_allclose(normalised_weights([1, 3], 2, KeyError), [0.25, 0.75])
    with pytest.raises(KeyError, match="ZERO"):
        normalised_weights([0, 0], 2, lambda problem: KeyError(problem.name))


@pytest.mark.parametrize("w, problem", [c for c in CASES if np.ndim(c[0]) == 1 and len(c[0]) == 2])
def test_both_packages_refuse_the_same_weights(w, problem):
    """The picks (ValueError), the preference file (MAPError) and the baselines (MAPError)
    accept and refuse the same two-task vectors."""
    checks = [
        (lambda: normalize_preference(w, 2), ValueError),
        (lambda: validate_preference({"a": w[0], "b": w[1]}, ["a", "b"]), MAPError),
        (lambda: default_baselines(2, preference=w), MAPError),
    ]
    for check, error in checks:
        if problem is None:
            check()
        else:
            with pytest.raises(error):
                check()
