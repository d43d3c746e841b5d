"""Where to evaluate next: expected hypervolume improvement under a bootstrap ensemble.

One quadratic fit says where the front is, not how sure it is. Refitting the surrogates on
bootstrap resamples of the evaluated points gives B plausible objective functions; a
candidate's expected hypervolume improvement (EHVI) is the mean, over those B functions,
of how much the candidate's predicted values would add to the hypervolume of the real
front evaluated so far. A batch of k points is chosen greedily on sample paths: after a
point is chosen, each ensemble member's front takes that member's prediction for it, so
the next point is scored against the front the batch would give under the same member
(the Monte-Carlo form of qEHVI, with MAP's cheap quadratic instead of a GP).

Pure logic: arrays in, arrays out; the fits are src.core.surrogate's.
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

from src.core.objectives import Senses, hypervolume, non_dominated, signs, to_minimisation
from src.core.surrogate import QuadraticSurrogate, fit_surrogates

# (C_front [m, d], F_front [m, K], C_done [n, d], Y_done [n, K], k) -> rows of C_front
Select = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]

REFERENCE_MARGIN = 0.1  # share of the real front's range below its nadir


def bootstrap_ensemble(C: np.ndarray, Y: np.ndarray, link: str, *, members: int = 16,
                       seed: int = 0) -> list[list[QuadraticSurrogate]]:
    """``members`` sets of per-metric surrogates, each fitted on a bootstrap resample of the
    rows of (C, Y) (drawn with replacement, as many rows as given)."""
    C, Y = np.atleast_2d(np.asarray(C, dtype=float)), np.asarray(Y, dtype=float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if members < 1:
        raise ValueError(f"members={members}; expected at least 1")
    rng = np.random.default_rng(seed)
    ensemble = []
    for _ in range(members):
        rows = rng.integers(0, len(C), size=len(C))
        ensemble.append(fit_surrogates(C[rows], Y[rows], link))
    return ensemble


def ensemble_predict(ensemble: Sequence[Sequence[QuadraticSurrogate]],
                     C: np.ndarray) -> np.ndarray:
    """Predictions [B, n, K] of every member at the rows of C."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    return np.stack([np.column_stack([s.predict(C) for s in member]) for member in ensemble])


def reference_below(Y: np.ndarray, senses: Senses, margin: float = REFERENCE_MARGIN) -> np.ndarray:
    """A point worse than every real front row: the front's nadir, moved ``margin`` of the
    front's range (at least 1e-3) further in the worse direction of each metric."""
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    front = to_minimisation(Y[non_dominated(Y, senses)], senses)
    offset = np.maximum(margin * (front.max(axis=0) - front.min(axis=0)), 1e-3)
    return (front.max(axis=0) + offset) * signs(senses, Y.shape[1])


def ehvi_batch(samples: np.ndarray, Y_done: np.ndarray, senses: Senses, k: int, *,
               ref_point: np.ndarray | None = None,
               eligible: np.ndarray | None = None,
               exclude: Callable[[int], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``k`` candidate rows chosen greedily by expected hypervolume improvement.

    samples [B, n, K]: each ensemble member's prediction for the n candidates (metric
    scale); Y_done [m, K]: the real values evaluated so far. ``eligible`` masks the
    candidates that may be chosen; after each choice ``exclude(row)`` returns a mask of
    candidates no longer eligible (e.g. those too close to it). Returns the chosen rows and
    the EHVI each had when chosen. Stops early when no eligible candidate improves the
    hypervolume under any member.
    """
    samples = np.asarray(samples, dtype=float)
    if samples.ndim != 3:
        raise ValueError(f"samples has shape {samples.shape}; expected [members, n, K]")
    B, n, K = samples.shape
    Y_done = np.atleast_2d(np.asarray(Y_done, dtype=float)).reshape(-1, K)
    ref = reference_below(Y_done, senses) if ref_point is None else np.asarray(ref_point, float)
    free = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, bool).copy()
    front0 = Y_done[non_dominated(Y_done, senses)]
    fronts = [front0.copy() for _ in range(B)]
    base = np.array([hypervolume(f, ref, senses) for f in fronts])
    chosen, gains = [], []
    while len(chosen) < k and free.any():
        rows = np.flatnonzero(free)
        ehvi = np.array([np.mean([hypervolume(np.vstack([fronts[b], samples[b, j]]), ref, senses)
                                  - base[b] for b in range(B)]) for j in rows])
        best = int(np.argmax(ehvi))
        if ehvi[best] <= 0:
            break
        j = int(rows[best])
        chosen.append(j)
        gains.append(float(ehvi[best]))
        for b in range(B):
            fronts[b] = np.vstack([fronts[b], samples[b, j]])
            fronts[b] = fronts[b][non_dominated(fronts[b], senses)]
            base[b] = hypervolume(fronts[b], ref, senses)
        free[j] = False
        if exclude is not None:
            free &= ~np.asarray(exclude(j), dtype=bool)
    return np.array(chosen, dtype=int), np.array(gains)


def ehvi_selector(link: str, senses: Sequence[str], *, members: int = 16, seed: int = 0,
                  min_distance: float = 0.05) -> Select:
    """A Select for src.core.refine.refine_front: the predicted front's rows by EHVI under a
    bootstrap ensemble fitted on every point evaluated so far; rows within
    ``min_distance`` (coefficient space) of an evaluated or already chosen point are not
    offered. When no row improves the hypervolume under any member, none is chosen."""
    calls = itertools.count()  # each round refits on new bootstrap draws

    def select(C_front: np.ndarray, F_front: np.ndarray, C_done: np.ndarray,
               Y_done: np.ndarray, k: int) -> np.ndarray:
        C_front = np.atleast_2d(np.asarray(C_front, dtype=float))
        if k <= 0 or len(C_front) == 0:
            return np.zeros(0, dtype=int)
        ensemble = bootstrap_ensemble(C_done, Y_done, link, members=members,
                                      seed=seed + next(calls))
        samples = ensemble_predict(ensemble, C_front)
        gap = np.linalg.norm(C_front[:, None, :] - np.atleast_2d(C_done)[None], axis=2).min(1)
        near = np.linalg.norm(C_front[:, None, :] - C_front[None], axis=2) <= min_distance
        rows, _ = ehvi_batch(samples, Y_done, list(senses), k, eligible=gap > min_distance,
                             exclude=lambda j: near[j])
        return rows
    return select


def parego_selector(link: str, senses: Sequence[str], *, members: int = 16, seed: int = 0,
                    min_distance: float = 0.05, preference: np.ndarray | None = None) -> Select:
    """A Select for src.core.refine.refine_front that needs no hypervolume (ParEGO's
    scalarised Thompson sampling, for many tasks, where EHVI's exact hypervolumes cost too
    much): each of the k points takes one bootstrap ensemble member and one weight vector
    and is the eligible front row whose predicted metrics under that member score best by
    the Tchebycheff pick (src.core.pareto.Tchebycheff, each metric scaled between the
    worst and best values evaluated so far). The first point's weights are ``preference``
    (the run's, when given), the others' are drawn uniformly from the simplex, so a round
    both sharpens the pick and spreads over the front. Rows within ``min_distance`` of an
    evaluated or already chosen point are not offered."""
    from src.core.pareto import Tchebycheff

    calls = itertools.count()
    scalarise = Tchebycheff()

    def select(C_front: np.ndarray, F_front: np.ndarray, C_done: np.ndarray,
               Y_done: np.ndarray, k: int) -> np.ndarray:
        C_front = np.atleast_2d(np.asarray(C_front, dtype=float))
        if k <= 0 or len(C_front) == 0:
            return np.zeros(0, dtype=int)
        call = next(calls)
        rng = np.random.default_rng([seed, call])
        ensemble = bootstrap_ensemble(C_done, Y_done, link, members=members, seed=seed + call)
        samples = ensemble_predict(ensemble, C_front)
        Y = np.atleast_2d(np.asarray(Y_done, dtype=float))
        up = -signs(list(senses), Y.shape[1])  # +1 where larger is better
        worst, best = (np.where(up > 0, Y.min(0), Y.max(0)), np.where(up > 0, Y.max(0), Y.min(0)))
        gap = np.linalg.norm(C_front[:, None, :] - np.atleast_2d(C_done)[None], axis=2).min(1)
        free = gap > min_distance
        chosen = []
        for j in range(k):
            if not free.any():
                break
            w = (np.asarray(preference, dtype=float) if j == 0 and preference is not None
                 else rng.dirichlet(np.ones(Y.shape[1])))
            rows = np.flatnonzero(free)
            member = samples[rng.integers(len(samples)), rows]
            best_row = int(rows[scalarise.do(member, w, list(senses), worst, best)])
            chosen.append(best_row)
            free &= np.linalg.norm(C_front - C_front[best_row], axis=1) > min_distance
        return np.array(chosen, dtype=int)
    return select


REFINE_ACQUISITIONS = ("spread", "ehvi", "parego")  # --refine-acquisition's choices


def refine_selector(name: str, link: str, senses: Sequence[str], *, seed: int,
                    min_distance: float, preference: np.ndarray | None = None) -> Select | None:
    """--refine-acquisition's Select by name; None for "spread", which
    src.core.refine.refine_front does itself (new_front_points)."""
    if name == "spread":
        return None
    if name == "ehvi":
        return ehvi_selector(link, senses, seed=seed, min_distance=min_distance)
    if name == "parego":
        return parego_selector(link, senses, seed=seed, min_distance=min_distance,
                               preference=preference)
    raise ValueError(f"unknown refinement acquisition {name!r}; expected one of "
                     f"{list(REFINE_ACQUISITIONS)}")
