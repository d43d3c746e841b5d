"""map's local design for many tasks: task arithmetic's sweep, then a box around its best λ.

With T tasks a quadratic over the whole box [low, high]^T misses its own front by 3 to 5
accuracy points at T = 8 (bench/many_tasks.py), more than the margins between good merges.
Merges worth handing over for preferences near equal sit near task arithmetic's best shared
coefficient (TA's best λ is about 0.3 for 8 real CLIP tasks), so this design spends its
budget there, as trust-region searches do in high dimension:

1. stage one: the T fine-tuned models (c = e_k, the Tchebycheff pick's anchors) and the
   diagonal c = λ·1 at DIAGONAL_STEPS values of λ over the box (task arithmetic's sweep);
2. stage two: a Latin hypercube in the box around the best λ by preference-weighted mean,
   λ ± HALF_WIDTH·λ in every coefficient (at least one sweep step), clipped to the box.

The surrogates are fitted on the evaluated points inside the local box only, and NSGA-III
searches that box; every evaluated point stays a candidate of the evaluated pick and of
the pick check. Arrays in, arrays out: the caller's ``evaluate`` does the merging.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from src.core.pick_check import best_equal_merge
from src.core.sampling import min_points

DIAGONAL_STEPS = 10  # TA's sweep: λ = low + (high - low)·k/10, k = 1..10
# The box's half-width relative to λ*: every coefficient within [λ*/2, 3λ*/2], chosen before
# any MAP figure was measured (a factor of 2 either way of TA's shared coefficient).
HALF_WIDTH = 0.5


def diagonal(T: int, low: float, high: float) -> np.ndarray:
    """[DIAGONAL_STEPS, T]: task arithmetic's sweep c = λ·1, λ = low + (high - low)·k/10."""
    lams = low + (high - low) * np.arange(1, DIAGONAL_STEPS + 1) / DIAGONAL_STEPS
    return lams[:, None] * np.ones((1, T))


def stage_one(T: int, low: float, high: float) -> np.ndarray:
    """[T + DIAGONAL_STEPS, T]: the fine-tuned models (clipped to the box), then the
    diagonal sweep."""
    return np.vstack([np.clip(np.eye(T), low, high), diagonal(T, low, high)])


def stage_two_size(T: int, points: int) -> int:
    """Latin hypercube points of a design of ``points`` merges."""
    return points - T - DIAGONAL_STEPS


def min_design_points(T: int) -> int:
    """The smallest --point: stage one plus a Latin hypercube that alone determines the
    quadratic."""
    return T + DIAGONAL_STEPS + min_points(T)


def best_lambda(C: np.ndarray, Y: np.ndarray, weights: Sequence[float], sense: str) -> float:
    """λ of the diagonal row (c = λ·1, λ ≠ 0) with the best preference-weighted mean (the
    pick check's TA among exactly equal coefficients)."""
    C, Y = np.atleast_2d(C), np.atleast_2d(Y)
    t = None if C.shape[1] == 1 else best_equal_merge(C, Y, weights, sense, tol=1e-9)
    if t is None:
        raise ValueError("the local design needs evaluated diagonal points c = λ·1")
    return float(C[t, 0])


def box_around(lam: float, low: float, high: float) -> tuple[float, float]:
    """The local box [λ - h, λ + h], h = max(HALF_WIDTH·|λ|, one sweep step), clipped."""
    h = max(HALF_WIDTH * abs(lam), (high - low) / DIAGONAL_STEPS)
    return max(low, lam - h), min(high, lam + h)


def stage_two(T: int, n: int, box: tuple[float, float], seed: int) -> np.ndarray:
    """[n, T]: a seeded Latin hypercube in box^T."""
    from scipy.stats import qmc

    lo, hi = box
    return lo + (hi - lo) * qmc.LatinHypercube(d=T, seed=seed).random(n)


def inside(C: np.ndarray, box: tuple[float, float], tol: float = 1e-9) -> np.ndarray:
    """[n] bool: rows of C with every coefficient in the box."""
    C = np.atleast_2d(C)
    return np.all((C >= box[0] - tol) & (C <= box[1] + tol), axis=1)


@dataclass(frozen=True)
class LocalDesign:
    """The evaluated design and where it looked."""

    C: np.ndarray               # [n, T] every evaluated point, stage one first
    Y: np.ndarray               # [n, K]
    lam: float                  # TA's best λ by the preference-weighted mean
    box: tuple[float, float]    # the local box (fit and search)

    @property
    def fitted(self) -> np.ndarray:
        return inside(self.C, self.box)

    def summary(self) -> dict[str, Any]:
        return {"kind": "local", "ta_lambda": self.lam, "box": list(self.box),
                "points": int(len(self.C)), "fitted": int(self.fitted.sum())}


def run_design(evaluate: Callable[[np.ndarray], np.ndarray], T: int, points: int, low: float,
               high: float, weights: Sequence[float], sense: str, seed: int) -> LocalDesign:
    """Both stages through ``evaluate`` (C [m, T] -> Y [m, K]); ``points`` merges in all."""
    n = stage_two_size(T, points)
    if points < min_design_points(T):
        raise ValueError(f"the local design of {T} tasks needs at least "
                         f"{min_design_points(T)} points ({T} fine-tuned models, "
                         f"{DIAGONAL_STEPS} on the diagonal, {min_points(T)} in the box), "
                         f"not {points}")
    C1 = stage_one(T, low, high)
    Y1 = np.asarray(evaluate(C1), dtype=float)
    lam = best_lambda(C1, Y1, weights, sense)
    box = box_around(lam, low, high)
    C2 = stage_two(T, n, box, seed)
    Y2 = np.asarray(evaluate(C2), dtype=float)
    return LocalDesign(np.vstack([C1, C2]), np.vstack([Y1, Y2]), lam, box)
