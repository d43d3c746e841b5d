"""Front refinement: evaluate new points on the predicted front until it agrees with reality.

A quadratic surrogate fitted on a design that sits mostly on the box's edges and corners
can run below the real front in the interior, where the front's coefficients often lie.
Each round here fits and searches on every point evaluated so far, picks up to K NEW
points spread along the predicted front (none within ``min_distance`` of a point already
evaluated, so a stored point is never asked for again), evaluates them, and adds them to
the data. It stops when the mean |predicted - real| at a round's new points is at most
``tol``, when the front offers no new point, or after ``rounds`` rounds.

Pure logic: arrays in, arrays out. The search (fit + NSGA-III) and the evaluation are
injected callables, so the modes pass the run's evaluator and store, and tests an
analytic problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

# (C [n, d], Y [n, K]) -> (C_front [m, d], F_front [m, K]): fit surrogates, search the front
Search = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
# C_new [k, d] -> Y_new [k, K]: evaluate (and store) new points
Evaluate = Callable[[np.ndarray], np.ndarray]
# (C_front, F_front, C_done, Y_done, k) -> rows of the front to evaluate (at most k)
Select = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]

MIN_DISTANCE = 0.05  # share of the box's side: closer points are "already evaluated"


@dataclass
class RefineResult:
    C: np.ndarray                      # every point, the given ones first, then each round's
    Y: np.ndarray
    rounds: list[dict[str, Any]] = field(default_factory=list)
    converged: bool = False            # the last round agreed within tol
    stopped: str = "rounds"            # why it stopped: tol | rounds | no new points

    def summary(self) -> dict[str, Any]:
        """What run.json records: points and agreement per round."""
        return {"rounds": self.rounds,
                "points_per_round": [r["new_points"] for r in self.rounds],
                "agreement": [r["mean_abs_error"] for r in self.rounds],
                "converged": self.converged, "stopped": self.stopped,
                "n_evaluations": int(len(self.C))}


def new_front_points(C_front: np.ndarray, F_front: np.ndarray, C_done: np.ndarray, k: int,
                     min_distance: float) -> np.ndarray:
    """Rows of the front to evaluate next: up to ``k``, spread along the front.

    Candidates are front points farther than ``min_distance`` (Euclidean, coefficient
    space) from every evaluated point. The first is the one farthest from the evaluated
    points (the largest gap in the data); each next one is the candidate farthest, in the
    front's objective space normalised per objective, from those already chosen, among the
    candidates not within ``min_distance`` of a chosen one."""
    C_front, F_front = np.atleast_2d(C_front), np.atleast_2d(F_front)
    if k <= 0 or len(C_front) == 0:
        return np.zeros(0, dtype=int)
    C_done = np.atleast_2d(C_done).reshape(-1, C_front.shape[1])
    gap = (np.linalg.norm(C_front[:, None, :] - C_done[None], axis=2).min(axis=1)
           if len(C_done) else np.full(len(C_front), np.inf))
    free = gap > min_distance
    if not free.any():
        return np.zeros(0, dtype=int)
    span = np.ptp(F_front, axis=0)
    F = (F_front - F_front.min(axis=0)) / np.where(span > 0, span, 1.0)
    chosen = [int(np.argmax(np.where(free, gap, -np.inf)))]
    spread = np.linalg.norm(F - F[chosen[0]], axis=1)
    while len(chosen) < k:
        near = np.linalg.norm(C_front - C_front[chosen[-1]], axis=1) <= min_distance
        free &= ~near
        if not free.any():
            break
        nxt = int(np.argmax(np.where(free, spread, -np.inf)))
        chosen.append(nxt)
        spread = np.minimum(spread, np.linalg.norm(F - F[nxt], axis=1))
    return np.array(chosen, dtype=int)


def refine_front(evaluate: Evaluate, search: Search, C: np.ndarray, Y: np.ndarray, *,
                 rounds: int, points: int, tol: float = 0.0,
                 min_distance: float = MIN_DISTANCE,
                 on_round: Callable[[dict], None] | None = None,
                 select: Select | None = None) -> RefineResult:
    """Up to ``rounds`` rounds of: search on (C, Y), evaluate up to ``points`` new front
    points, add them. Stops early once a round's mean |predicted - real| <= ``tol``.

    ``select`` chooses the new points among the predicted front's rows
    (src.core.acquisition.ehvi_selector: by expected hypervolume improvement); by default
    they are spread along the front (new_front_points)."""
    if rounds < 0 or points < 0:
        raise ValueError(f"rounds={rounds} and points={points} must be 0 or more")
    if tol < 0 or min_distance < 0:
        raise ValueError(f"tol={tol} and min_distance={min_distance} must be 0 or more")
    C, Y = np.asarray(C, dtype=float), np.asarray(Y, dtype=float)
    result = RefineResult(C, Y)
    if rounds == 0 or points == 0:
        return result
    for r in range(1, rounds + 1):
        C_front, F_front = search(result.C, result.Y)
        rows = (new_front_points(C_front, F_front, result.C, points, min_distance)
                if select is None else select(C_front, F_front, result.C, result.Y, points))
        if len(rows) == 0:
            result.stopped = "no new points"
            break
        C_new, predicted = C_front[rows], F_front[rows]
        real = np.asarray(evaluate(C_new), dtype=float).reshape(len(rows), -1)
        if real.shape != predicted.shape:
            raise ValueError(f"evaluate returned shape {real.shape} for predictions of "
                             f"shape {predicted.shape}")
        error = float(np.abs(real - predicted).mean())
        result.C, result.Y = np.vstack([result.C, C_new]), np.vstack([result.Y, real])
        record = {"round": r, "new_points": int(len(rows)), "coefficients": C_new.tolist(),
                  "predicted": predicted.tolist(), "real": real.tolist(),
                  "mean_abs_error": error, "front_size": int(len(C_front))}
        result.rounds.append(record)
        if on_round is not None:
            on_round(record)
        if error <= tol:
            result.converged, result.stopped = True, "tol"
            break
    return result


def surrogate_search(link: str, senses: Sequence[str], *, low: float, high: float,
                     n_gen: int, seed: int) -> Search:
    """The front step's own fit + search (src.core.surrogate, src.core.pareto) as a Search."""
    from src.core import pareto
    from src.core.surrogate import fit_surrogates

    def search(C: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        surrogates = fit_surrogates(C, Y, link)
        return pareto.nsga3_front(surrogates, list(senses), low=low, high=high,
                                  n_gen=n_gen, seed=seed)
    return search
