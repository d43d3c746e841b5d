"""Preference weights, one definition: one finite weight >= 0 per task, not all 0, normalised
to sum 1.

Both packages check preferences (``src.core.objectives`` for the picks and the preference file,
``task_vectors.baselines`` for "TA with preference"); each words the refusal for its own
caller (a ValueError for a programmer, a one-line MAPError for a user), so the check says
what is wrong and the caller makes the error.
"""
from __future__ import annotations

import math
from enum import Enum
from typing import Callable

import numpy as np


class WeightsProblem(Enum):
    """Why a vector cannot be a preference."""

    COUNT = "not one weight per task"
    NEGATIVE = "a weight is negative or not finite"
    ZERO = "every weight is 0"


def valid_weight(x: float) -> bool:
    """One preference weight: a finite number >= 0."""
    return math.isfinite(x) and x >= 0


def weights_problem(w: np.ndarray, K: int) -> WeightsProblem | None:
    """What is wrong with `w` as a preference over K tasks (checked in this order), or None."""
    w = np.asarray(w, dtype=float)
    if w.ndim != 1 or w.size != K:
        return WeightsProblem.COUNT
    if not all(valid_weight(x) for x in w.tolist()):
        return WeightsProblem.NEGATIVE
    if w.sum() == 0:
        return WeightsProblem.ZERO
    return None


def normalised_weights(
    w: np.ndarray, K: int, refuse: Callable[[WeightsProblem], Exception]
) -> np.ndarray:
    """`w / w.sum()` for a valid preference over K tasks; else raise `refuse(problem)`."""
    w = np.asarray(w, dtype=float)
    problem = weights_problem(w, K)
    if problem is not None:
        raise refuse(problem)
    return w / w.sum()
