"""The objectives of a front, one definition each: senses, the minimisation scale, the
non-dominated filter, hypervolume, IGD / IGD+ / GD, preference weights (their check is
``map_common.preferences``, shared with the baselines), the file prefix.

Every array is in metric scale, one row per model and one column per objective; ``senses``
says per column whether larger ("max", accuracy) or smaller ("min", loss) is better (one
string applies to every column). pymoo assumes minimisation, so columns are multiplied by
-1 for "max" before it is called (``to_minimisation``). ``pareto`` (the search and the
picks) and ``indicators`` (a front against a truth) both use this module.
"""
from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import numpy as np
from pymoo.indicators.gd import GD
from pymoo.indicators.hv import HV
from pymoo.indicators.igd import IGD
from pymoo.indicators.igd_plus import IGDPlus
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from map_common.errors import MAPError
from map_common.preferences import (WeightsProblem, normalised_weights, valid_weight,
                                    weights_problem)

SENSES = ("max", "min")
Senses = str | Sequence[str]


# --------------------------------------------------------------------------- scales
def as_2d(F, name: str, K: int | None = None, *, finite: bool = True) -> np.ndarray:
    """F as an (n, K) float array (a single row may come as 1-D); ValueError otherwise."""
    F = np.asarray(F, dtype=float)
    if F.ndim == 1:
        F = F[None, :]
    if F.ndim != 2:
        raise ValueError(f"{name} has shape {F.shape}; expected (n, K)")
    if K is not None and F.shape[1] != K:
        raise ValueError(f"{name} has {F.shape[1]} objectives; expected {K}")
    if finite and not np.all(np.isfinite(F)):
        raise ValueError(f"{name} holds a non-finite value")
    return F


def signs(senses: Senses, K: int) -> np.ndarray:
    """(K,) +1 for "min" and -1 for "max": F * signs is in minimisation scale."""
    senses = [senses] * K if isinstance(senses, str) else list(senses)
    if len(senses) != K:
        raise ValueError(f"{len(senses)} senses for {K} objectives; expected one per objective")
    bad = [s for s in senses if s not in SENSES]
    if bad:
        raise ValueError(f"unknown sense {bad[0]!r}; expected 'max' or 'min'")
    return np.array([-1.0 if s == "max" else 1.0 for s in senses])


def to_minimisation(F, senses: Senses) -> np.ndarray:
    """F (n, K) in pymoo's minimisation scale."""
    F = as_2d(F, "F")
    return F * signs(senses, F.shape[1])


# --------------------------------------------------------------------------- dominance
def non_dominated_rows(F_min: np.ndarray) -> np.ndarray:
    """Indices of the rows of F (minimisation scale) that no other row dominates."""
    return NonDominatedSorting().do(F_min, only_non_dominated_front=True)


def non_dominated(F: np.ndarray, senses: Senses) -> np.ndarray:
    """Boolean mask of the rows of F (metric scale) that no other row dominates."""
    F = as_2d(F, "F", finite=False)
    mask = np.zeros(F.shape[0], dtype=bool)
    if F.shape[0]:
        mask[non_dominated_rows(F * signs(senses, F.shape[1]))] = True
    return mask


def pareto_filter(F, senses: Senses) -> np.ndarray:
    """The distinct non-dominated rows of F, sorted by the first column."""
    F = as_2d(F, "F")
    signs(senses, F.shape[1])
    if len(F) == 0:
        return F
    front = np.unique(F[non_dominated(F, senses)], axis=0)
    return front[np.argsort(front[:, 0], kind="stable")]


# --------------------------------------------------------------------------- indicators
def hypervolume(F, ref_point, senses: Senses) -> float:
    """Volume that F dominates inside the box bounded by ref_point (metric scale).

    Rows that are not strictly better than ref_point in every objective add nothing: they
    are dropped here, before pymoo is called, so the value does not depend on how the HV
    backend treats them; an empty F has volume 0; a non-finite value is a ValueError.
    """
    F_min = to_minimisation(F, senses)
    K = F_min.shape[1]
    ref = np.asarray(ref_point, dtype=float).reshape(-1)
    if ref.shape != (K,):
        raise ValueError(f"ref_point has {ref.size} entries; expected {K}")
    ref_min = ref * signs(senses, K)
    inside = F_min[np.all(F_min < ref_min, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=ref_min)(inside))


def igd(F, truth_F, senses: Senses = "max", *, filter_truth: bool = True) -> float:
    """Inverted generational distance: mean distance of each truth-front point to F (the
    truth is reduced to its distinct non-dominated rows unless ``filter_truth`` is False)."""
    return float(IGD(_reference(truth_F, senses, filter_truth))(to_minimisation(F, senses)))


def igd_plus(F, truth_F, senses: Senses) -> float:
    """IGD+ (Ishibuchi et al. 2015): as IGD but only the part of each distance by which F
    is worse than the truth point counts; weakly Pareto compliant."""
    return float(IGDPlus(_reference(truth_F, senses, True))(to_minimisation(F, senses)))


def gd(F, truth_F, senses: Senses) -> float:
    """Generational distance: mean distance of each row of F to the truth front."""
    return float(GD(_reference(truth_F, senses, True))(to_minimisation(F, senses)))


def _reference(truth_F, senses: Senses, filter_truth: bool) -> np.ndarray:
    return to_minimisation(pareto_filter(truth_F, senses) if filter_truth else truth_F, senses)


# --------------------------------------------------------------------------- preferences
def normalize_preference(p, K: int) -> np.ndarray:
    """Non-negative weights summing to 1, one per objective (ValueError otherwise)."""
    w = np.atleast_1d(np.asarray(p, dtype=float))

    def refuse(problem: WeightsProblem) -> ValueError:
        if problem is WeightsProblem.COUNT:
            return ValueError(f"preference {list(np.ravel(w))} has {w.size} weights; expected {K}")
        if problem is WeightsProblem.NEGATIVE:
            return ValueError(f"preference {w.tolist()} has a negative or non-finite weight; "
                              "expected weights >= 0")
        return ValueError("preference weights are all zero; expected at least one positive "
                          "weight")

    return normalised_weights(w, K, refuse)


def validate_preference(preference: Mapping, tasks: Sequence[str]) -> dict[str, float]:
    """A user's preference file {task: weight} checked for the tasks being merged; return
    {task: float} (MAPError, one line, otherwise)."""
    if not isinstance(preference, Mapping):
        raise MAPError(
            f"preference must be a mapping of task name to weight, got {type(preference).__name__}"
        )
    tasks = list(tasks)
    if len(tasks) < 2:
        raise MAPError(f"nested merging needs at least 2 tasks, got {len(tasks)}: {tasks}")
    duplicated = sorted({t for t in tasks if tasks.count(t) > 1})
    if duplicated:
        raise MAPError(f"tasks to merge must be distinct, got {duplicated} more than once")
    out: dict[str, float] = {}
    for task in tasks:
        if task not in preference:
            raise MAPError(
                f"preference has no weight for task {task!r}; "
                f"it has {sorted(map(str, preference))}"
            )
        weight = preference[task]
        # bool is an int subclass, but True as a weight is almost surely a typo.
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise MAPError(
                f"preference weight for {task!r} must be a number, got {weight!r}"
            )
        weight = float(weight)
        if not valid_weight(weight):
            raise MAPError(
                f"preference weight for {task!r} must be a finite number >= 0, got {weight!r}"
            )
        out[task] = weight
    if weights_problem(np.array(list(out.values())), len(out)) is WeightsProblem.ZERO:
        raise MAPError(
            f"preference weights of the tasks to merge are all 0 ({sorted(out)}); "
            "at least one must be positive to pick a point on a front"
        )
    return out


# --------------------------------------------------------------------------- files
def file_prefix(models: Sequence[str]) -> str:
    """The original tool's file-name prefix of a front's files: the models joined by '_'."""
    return "_".join(models)
