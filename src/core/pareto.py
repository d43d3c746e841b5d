"""Pareto search over fitted surrogates with pymoo, plus front utilities.

Objectives are kept in metric scale at the API boundary; each has a sense, "max" for
accuracy and "min" for loss. pymoo minimises, so max objectives are negated inside and
restored on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.algorithms.soo.nonconvex.ga import GA
from pymoo.core.problem import Problem
from pymoo.optimize import minimize
from pymoo.util.archive import MultiObjectiveArchive
from pymoo.util.ref_dirs import get_reference_directions

from src.core import objectives
# one definition each, in src.core.objectives (kept importable from here)
from src.core.objectives import (SENSES, hypervolume, non_dominated,  # noqa: F401
                            non_dominated_rows, normalize_preference)
from src.core.objectives import signs as _signs
from src.core.pick_check import weighted_mean, worst_task

_TARGET_DIRECTIONS = 100  # NSGA-III reference directions to aim for (lands in 50..150 for K<=8)


class SurrogateProblem(Problem):
    """n_var = T coefficients in a box, n_obj = K surrogate predictions (vectorised)."""

    def __init__(self, surrogates: Sequence, senses: Sequence[str], low=0.0, high=1.0):
        if len(surrogates) == 0:
            raise ValueError("no surrogates given; expected one per objective")
        T = int(surrogates[0].n_features_in_)
        xl, xu = _bounds(low, high, T)
        self.surrogates = list(surrogates)
        self.signs = _signs(senses, len(self.surrogates))
        super().__init__(n_var=T, n_obj=len(self.surrogates), xl=xl, xu=xu)

    def _evaluate(self, x, out, *args, **kwargs):
        F = np.column_stack([s.predict(x) for s in self.surrogates])
        out["F"] = F * self.signs


def n_partitions_for(K: int) -> int:
    """Das-Dennis partitions p whose C(p+K-1, K-1) directions are closest to ~100 (log scale)."""
    if K < 2:
        raise ValueError(f"K={K} objectives; reference directions need K >= 2")
    best, p = 1, 1
    while comb(p + K - 1, K - 1) <= 4 * _TARGET_DIRECTIONS:
        if abs(np.log(comb(p + K - 1, K - 1) / _TARGET_DIRECTIONS)) < abs(
            np.log(comb(best + K - 1, K - 1) / _TARGET_DIRECTIONS)
        ):
            best = p
        p += 1
    return best


def nsga3_front(
    surrogates: Sequence,
    senses: Sequence[str],
    *,
    low=0.0,
    high=1.0,
    n_gen: int = 200,
    pop_size: int | None = None,
    seed: int = 0,
    archive: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate Pareto set and front of the surrogates: (C_front (k, T), F_front (k, K)).

    By default the non-dominated part of NSGA-III's final population. NSGA-III keeps one
    point per reference direction, which crowds the knee of a curved front; archive=True
    instead returns every non-dominated point seen by any generation (denser, several
    times more points; meant for K <= 3, where few population members are non-dominated).

    F is in metric scale, rows are distinct and sorted by the first objective. pop_size is
    raised to the number of reference directions when smaller, as NSGA-III needs. With one
    objective a GA runs instead and the single best point comes back.
    """
    if n_gen < 1:
        raise ValueError(f"n_gen={n_gen}; expected a positive number of generations")
    if pop_size is not None and pop_size < 2:
        raise ValueError(f"pop_size={pop_size}; expected at least 2")
    problem = SurrogateProblem(surrogates, senses, low, high)
    K = problem.n_obj
    if K == 1:
        algorithm = GA(pop_size=pop_size or 100, eliminate_duplicates=True)
        res = minimize(problem, algorithm, ("n_gen", n_gen), seed=seed, verbose=False)
        C = np.atleast_2d(res.X).astype(float)
        return C, np.atleast_2d(res.F).astype(float) * problem.signs

    ref_dirs = get_reference_directions("das-dennis", K, n_partitions=n_partitions_for(K))
    # pymoo's archive keeps every non-dominated point any generation produced (unbounded).
    kept = MultiObjectiveArchive(max_size=None, truncate_size=None) if archive else None
    algorithm = NSGA3(ref_dirs=ref_dirs, pop_size=max(pop_size or 0, len(ref_dirs)), archive=kept)
    res = minimize(problem, algorithm, ("n_gen", n_gen), seed=seed, verbose=False)
    if archive:
        C, F = _non_dominated_rows(res.archive.get("X"), res.archive.get("F"))
    else:
        C, F = _non_dominated_rows(res.pop.get("X"), res.pop.get("F"))
    F = F * problem.signs
    _, first = np.unique(np.round(C, 12), axis=0, return_index=True)
    C, F = C[first], F[first]
    order = np.argsort(F[:, 0], kind="stable")
    return C[order], F[order]


def _non_dominated_rows(X: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose F (pymoo's minimisation scale) no other row dominates."""
    keep = non_dominated_rows(F)
    return np.asarray(X[keep], dtype=float), np.asarray(F[keep], dtype=float)


def _as_2d(F: np.ndarray, name: str) -> np.ndarray:
    return objectives.as_2d(F, name, finite=False)


class Pick:
    """A preference pick in the style of pymoo's ``Decomposition``: ``scores`` of the front's
    rows (smaller is better), and ``do`` the row with the best score."""

    name: str

    def scores(self, F: np.ndarray, weights: np.ndarray, senses: Sequence[str],
               worst=None, best=None) -> np.ndarray:
        raise NotImplementedError

    def do(self, F: np.ndarray, preference, senses: Sequence[str], worst=None,
           best=None) -> int:
        F = _as_2d(F, "F")
        if F.shape[0] == 0:
            raise ValueError("cannot pick from an empty front; expected at least one point")
        w = normalize_preference(preference, F.shape[1])
        return int(np.argmin(self.scores(F, w, senses, worst, best)))


class WeightedSum(Pick):
    """The original tool's pick: the best preference-weighted sum of raw metrics (min
    columns enter with a minus sign). On raw accuracies it favours the tasks with the
    widest range, so with equal weights it often lands on an end of the front."""

    name = "weighted-sum"

    def scores(self, F, weights, senses, worst=None, best=None):
        # _signs is +1 for "min"; flip it so larger sums are better in every column.
        return -(F @ (weights * -_signs(senses, F.shape[1])))


class Tchebycheff(Pick):
    """The weighted Tchebycheff distance to the ideal, on normalised metrics.

    Each column k is rescaled to u_k in [0, 1] between a worst and a best value: the
    pretrained model's (c = 0) and the task's fine-tuned model's, widened to the front's own
    range where the front goes beyond them (a task whose fine-tuning gained little would
    otherwise count every point of a trade-off as a total loss). The pick minimises
    max_k w_k (1 - u_k) (pymoo's ``Tchebicheff`` with the utopian point at u = 1): with
    equal weights, the model whose worst task keeps the largest share of its range."""

    name = "tchebycheff"

    def distances(self, F: np.ndarray, senses: Sequence[str], worst, best) -> np.ndarray:
        """1 - u: each row's distance to the ideal per column, on the normalised scale."""
        if worst is None or best is None:
            raise ValueError("the Tchebycheff pick needs the worst and best value per objective")
        up = -_signs(senses, F.shape[1])  # +1 where larger is better
        G = F * up  # larger is better in every column
        low = np.minimum(np.asarray(worst, dtype=float) * up, G.min(axis=0))
        high = np.maximum(np.asarray(best, dtype=float) * up, G.max(axis=0))
        span = np.where(high - low > 1e-12, high - low, 1.0)
        return 1.0 - (G - low) / span

    def scores(self, F, weights, senses, worst=None, best=None):
        from pymoo.decomposition.tchebicheff import Tchebicheff as PymooTchebicheff

        return PymooTchebicheff().do(self.distances(F, senses, worst, best), weights,
                                     utopian_point=np.zeros(F.shape[1]))


PICK_METHODS: dict[str, Pick] = {p.name: p for p in (Tchebycheff(), WeightedSum())}
PICKS = tuple(PICK_METHODS)


class FlooredPickProblem(Problem):
    """One objective, a pick's score of the surrogates' prediction (smaller is better), and
    two inequality constraints: the prediction at or above ``floor`` = (preference-weighted
    mean, worst task)."""

    def __init__(self, surrogates: Sequence, senses: Sequence[str], weights, rule: str,
                 worst, best, floor: tuple[float, float], low=0.0, high=1.0):
        T = int(surrogates[0].n_features_in_)
        xl, xu = _bounds(low, high, T)
        self.surrogates, self.senses = list(surrogates), list(senses)
        self.weights = normalize_preference(weights, len(self.surrogates))
        self.rule, self.worst, self.best, self.floor = PICK_METHODS[rule], worst, best, floor
        self.up = 1.0 if senses[0] == "max" else -1.0
        super().__init__(n_var=T, n_obj=1, n_ieq_constr=2, xl=xl, xu=xu)

    def _evaluate(self, x, out, *args, **kwargs):
        F = np.column_stack([s.predict(x) for s in self.surrogates])
        out["F"] = self.rule.scores(F, self.weights, self.senses, self.worst, self.best)
        out["G"] = np.column_stack([
            (self.floor[0] - weighted_mean(F, self.weights)) * self.up,
            (self.floor[1] - worst_task(F, self.senses[0])) * self.up])


def floored_pick(surrogates: Sequence, senses: Sequence[str], weights, rule: str,
                 floor: tuple[float, float], F_front: np.ndarray, worst=None, best=None, *,
                 low=0.0, high=1.0, n_gen: int = 100, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """The coefficients (and prediction) with the best ``rule`` score among those predicted
    at or above ``floor`` on the preference-weighted mean and the worst task, by a
    constrained GA on the surrogates; None when it finds no such point. The Tchebycheff
    scale is fixed by ``F_front`` and the anchors (as the front's own pick sees it)."""
    if worst is not None and best is not None:
        up = -_signs(senses, F_front.shape[1])
        worst = np.minimum(np.asarray(worst) * up, (F_front * up).min(axis=0)) * up
        best = np.maximum(np.asarray(best) * up, (F_front * up).max(axis=0)) * up
    problem = FlooredPickProblem(surrogates, senses, weights, rule, worst, best, floor,
                                 low, high)
    res = minimize(problem, GA(pop_size=100, eliminate_duplicates=True), ("n_gen", n_gen),
                   seed=seed, verbose=False)
    if res.X is None or np.atleast_1d(res.CV).max() > 0:
        return None
    c = np.atleast_2d(res.X).astype(float)[0]
    return c, np.array([float(s.predict(c[None])[0]) for s in surrogates])


def pick_by_preference(F: np.ndarray, preference, senses: Sequence[str]) -> int:
    """Row of F with the best preference-weighted sum (``WeightedSum``)."""
    return WeightedSum().do(F, preference, senses)


def pick_tchebycheff(F: np.ndarray, preference, senses: Sequence[str], worst, best) -> int:
    """Row of F closest to the ideal in the weighted Tchebycheff sense (``Tchebycheff``)."""
    return Tchebycheff().do(F, preference, senses, worst, best)


def pick(F: np.ndarray, preference, senses: Sequence[str], method: str = "tchebycheff",
         worst=None, best=None) -> int:
    """The preference pick by ``method`` (one of PICKS); Tchebycheff needs worst and best."""
    if method not in PICK_METHODS:
        raise ValueError(f"unknown pick {method!r}; expected one of {list(PICKS)}")
    return PICK_METHODS[method].do(F, preference, senses, worst, best)


def igd(F: np.ndarray, F_ref: np.ndarray) -> float:
    """Inverted generational distance of F to a reference front taken as given (same
    scale, any senses: a distance does not depend on them)."""
    return objectives.igd(F, F_ref, "min", filter_truth=False)


def _bounds(low, high, T: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        xl = np.broadcast_to(np.asarray(low, dtype=float), (T,)).copy()
        xu = np.broadcast_to(np.asarray(high, dtype=float), (T,)).copy()
    except ValueError:
        raise ValueError(
            f"bounds low={low!r}, high={high!r} do not fit T={T}; expected scalars or length-{T} arrays"
        ) from None
    if not (np.all(np.isfinite(xl)) and np.all(np.isfinite(xu)) and np.all(xl < xu)):
        raise ValueError(f"box low={xl.tolist()}, high={xu.tolist()} is empty; expected low < high")
    return xl, xu
