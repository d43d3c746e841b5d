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
from pymoo.core.callback import Callback
from pymoo.core.problem import Problem
from pymoo.indicators.hv import HV
from pymoo.indicators.igd import IGD
from pymoo.optimize import minimize
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from pymoo.util.ref_dirs import get_reference_directions

from map_common.errors import MAPError

SENSES = ("max", "min")
_METRIC_SENSES = {"accuracy": "max", "loss": "min"}
_TARGET_DIRECTIONS = 100  # NSGA-III reference directions to aim for (lands in 50..150 for K<=8)


def sense_for_metric(metric: str) -> str:
    """accuracy -> "max", loss -> "min"."""
    if metric not in _METRIC_SENSES:
        raise MAPError(f"unknown metric {metric!r}; expected one of {sorted(_METRIC_SENSES)}")
    return _METRIC_SENSES[metric]


def _signs(senses: Sequence[str], K: int) -> np.ndarray:
    """+1 for "min", -1 for "max": multiply metric-scale objectives to get pymoo's minimisation."""
    senses = [senses] * K if isinstance(senses, str) else list(senses)
    if len(senses) != K:
        raise MAPError(f"{len(senses)} senses for {K} objectives; expected one per objective")
    bad = [s for s in senses if s not in SENSES]
    if bad:
        raise MAPError(f"unknown sense {bad[0]!r}; expected 'max' or 'min'")
    return np.array([-1.0 if s == "max" else 1.0 for s in senses])


class SurrogateProblem(Problem):
    """n_var = T coefficients in a box, n_obj = K surrogate predictions (vectorised)."""

    def __init__(self, surrogates: Sequence, senses: Sequence[str], low=0.0, high=1.0):
        if len(surrogates) == 0:
            raise MAPError("no surrogates given; expected one per objective")
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
        raise MAPError(f"K={K} objectives; reference directions need K >= 2")
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
        raise MAPError(f"n_gen={n_gen}; expected a positive number of generations")
    if pop_size is not None and pop_size < 2:
        raise MAPError(f"pop_size={pop_size}; expected at least 2")
    problem = SurrogateProblem(surrogates, senses, low, high)
    K = problem.n_obj
    if K == 1:
        algorithm = GA(pop_size=pop_size or 100, eliminate_duplicates=True)
        res = minimize(problem, algorithm, ("n_gen", n_gen), seed=seed, verbose=False)
        C = np.atleast_2d(res.X).astype(float)
        return C, np.atleast_2d(res.F).astype(float) * problem.signs

    ref_dirs = get_reference_directions("das-dennis", K, n_partitions=n_partitions_for(K))
    algorithm = NSGA3(ref_dirs=ref_dirs, pop_size=max(pop_size or 0, len(ref_dirs)))
    extra = {"callback": _Archive()} if archive else {}
    res = minimize(problem, algorithm, ("n_gen", n_gen), seed=seed, verbose=False, **extra)
    if archive:
        C, F = extra["callback"].X, extra["callback"].F
    else:
        C, F = _non_dominated_rows(res.pop.get("X"), res.pop.get("F"))
    F = F * problem.signs
    _, first = np.unique(np.round(C, 12), axis=0, return_index=True)
    C, F = C[first], F[first]
    order = np.argsort(F[:, 0], kind="stable")
    return C[order], F[order]


class _Archive(Callback):
    """Keeps the non-dominated (X, F) over all generations, merged after each one."""

    def __init__(self):
        super().__init__()
        self.X, self.F = None, None

    def notify(self, algorithm):
        X, F = algorithm.pop.get("X"), algorithm.pop.get("F")
        if self.X is not None:
            X, F = np.vstack([self.X, X]), np.vstack([self.F, F])
        self.X, self.F = _non_dominated_rows(X, F)


def _non_dominated_rows(X: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose F (pymoo's minimisation scale) no other row dominates."""
    keep = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return np.asarray(X[keep], dtype=float), np.asarray(F[keep], dtype=float)


def non_dominated(F: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows of F (metric scale) that no other row dominates."""
    F = _as_2d(F, "F")
    mask = np.zeros(F.shape[0], dtype=bool)
    if F.shape[0]:
        mask[NonDominatedSorting().do(F * _signs(senses, F.shape[1]), only_non_dominated_front=True)] = True
    return mask


def normalize_preference(p, K: int) -> np.ndarray:
    """Non-negative weights summing to 1, one per objective."""
    w = np.atleast_1d(np.asarray(p, dtype=float))
    if w.ndim != 1 or w.size != K:
        raise MAPError(f"preference {list(np.ravel(w))} has {w.size} weights; expected {K}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise MAPError(f"preference {w.tolist()} has a negative or non-finite weight; expected weights >= 0")
    if w.sum() == 0:
        raise MAPError("preference weights are all zero; expected at least one positive weight")
    return w / w.sum()


def pick_by_preference(F: np.ndarray, preference, senses: Sequence[str]) -> int:
    """Row of F with the best preference-weighted sum (min columns enter with a minus sign)."""
    F = _as_2d(F, "F")
    if F.shape[0] == 0:
        raise MAPError("cannot pick from an empty front; expected at least one point")
    w = normalize_preference(preference, F.shape[1])
    # _signs is +1 for "min"; flip it so larger scores are better in every column.
    return int(np.argmax(F @ (w * -_signs(senses, F.shape[1]))))


def igd(F: np.ndarray, F_ref: np.ndarray) -> float:
    """Inverted generational distance of F to a reference front (same scale, any senses)."""
    return float(IGD(_as_2d(F_ref, "F_ref"))(_as_2d(F, "F")))


def hypervolume(F: np.ndarray, ref_point, senses: Sequence[str]) -> float:
    """Volume dominated by F and bounded by ref_point, all in metric scale."""
    F = _as_2d(F, "F")
    signs = _signs(senses, F.shape[1])
    ref = np.asarray(ref_point, dtype=float)
    if ref.shape != (F.shape[1],):
        raise MAPError(f"ref_point has shape {ref.shape}; expected ({F.shape[1]},)")
    return float(HV(ref_point=ref * signs)(F * signs))


def _bounds(low, high, T: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        xl = np.broadcast_to(np.asarray(low, dtype=float), (T,)).copy()
        xu = np.broadcast_to(np.asarray(high, dtype=float), (T,)).copy()
    except ValueError:
        raise MAPError(
            f"bounds low={low!r}, high={high!r} do not fit T={T}; expected scalars or length-{T} arrays"
        ) from None
    if not (np.all(np.isfinite(xl)) and np.all(np.isfinite(xu)) and np.all(xl < xu)):
        raise MAPError(f"box low={xl.tolist()}, high={xu.tolist()} is empty; expected low < high")
    return xl, xu


def _as_2d(F: np.ndarray, name: str) -> np.ndarray:
    F = np.asarray(F, dtype=float)
    if F.ndim == 1:
        F = F[None, :]
    if F.ndim != 2:
        raise MAPError(f"{name} has shape {F.shape}; expected (n, K)")
    return F
