"""Quality of a Pareto front against a reference ("truth") front: pure functions of arrays.

Every array is in metric scale, one row per model and one column per objective; `senses`
says per column whether larger ("max", accuracy) or smaller ("min", loss) is better (one
string applies to every column). pymoo's indicators assume minimisation, so columns are
multiplied by -1 for "max" before they are called (`to_minimisation`).

Reference point: per objective, the worst value on the truth's front (its nadir) moved a
`margin` further towards worse (accuracy: min - margin; loss: max + margin), so that every
truth-front point, including the extremes, adds volume.

HV, IGD, IGD+, GD and the filter are src.core.objectives' (shared with src.core.pareto); this module
adds the reference point, ratios, dominance counts, preference regret and the noise floors.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from src.core.objectives import (Senses, as_2d, gd, hypervolume, igd, igd_plus,  # noqa: F401
                            non_dominated, pareto_filter, signs, to_minimisation)

# The scales, the filter, HV and the distance indicators are src.core.objectives' (one
# definition each); they stay importable from here.
_as_2d = as_2d
DEFAULT_MARGIN = 0.01


def reference_point(truth_F, senses: Senses, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(K,) the nadir of the truth's front (per objective its worst value over the
    non-dominated rows of truth_F), `margin` further towards worse. Dominated rows do not
    move it: the worst of every grid merge lies far from the front and would compress
    every HV ratio towards 1."""
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if len(_as_2d(truth_F, "truth_F")) == 0:  # pareto_filter of nothing has no nadir
        raise ValueError("the truth has no rows")
    F_min = to_minimisation(pareto_filter(truth_F, senses), senses)
    s = signs(senses, F_min.shape[1])
    return (F_min.max(axis=0) + margin) * s  # back to metric scale (s is its own inverse)


# --------------------------------------------------------------------------- indicators
def hv_ratio(F, truth_F, senses: Senses, margin: float = DEFAULT_MARGIN,
             ref_point=None) -> float:
    """HV(F) / HV(truth front), both bounded by the truth's reference point.

    Above 1 only when F holds points better than the truth (e.g. noise, or a truth grid
    too coarse to contain them).
    """
    ref = reference_point(truth_F, senses, margin) if ref_point is None else ref_point
    hv_truth = hypervolume(truth_F, ref, senses)
    if hv_truth <= 0:
        raise ValueError("the truth front has zero hypervolume; use a margin > 0")
    return hypervolume(F, ref, senses) / hv_truth


def dominates_matrix(A, B, senses: Senses) -> np.ndarray:
    """(len(A), len(B)) bool: row a of A Pareto-dominates row b of B (no worse in every
    objective, strictly better in at least one)."""
    A_min = to_minimisation(A, senses)
    B_min = to_minimisation(B, senses)
    if A_min.shape[1] != B_min.shape[1]:
        raise ValueError(f"A has {A_min.shape[1]} objectives, B has {B_min.shape[1]}")
    le = np.all(A_min[:, None, :] <= B_min[None, :, :], axis=2)
    lt = np.any(A_min[:, None, :] < B_min[None, :, :], axis=2)
    return le & lt


def win_rate(A, B, senses: Senses) -> float:
    """Fraction of pairs (a in A, b in B) in which a Pareto-dominates b.

    The MAP paper (Li et al. 2024) reports a "win rate" of MAP's front over baseline
    merges, but its exact definition could not be found in the sources available here,
    so this is our own, stated precisely: over all |A| * |B| pairs of one model of A and
    one of B, the share where A's model is no worse on every task and strictly better on
    at least one. win_rate(A, B) + win_rate(B, A) <= 1; the rest are ties/trade-offs.
    Empty A or B gives 0.
    """
    M = dominates_matrix(A, B, senses)
    return float(M.mean()) if M.size else 0.0


def coverage(A, B, senses: Senses) -> float:
    """Zitzler's set coverage C(A, B): share of B's rows dominated by at least one row of A."""
    M = dominates_matrix(A, B, senses)
    return float(M.any(axis=0).mean()) if M.shape[1] else 0.0


def preference_score(F, weights, senses: Senses) -> np.ndarray:
    """(n,) preference-weighted value, larger is better: F @ w with "min" columns negated.

    Weights are normalised to sum to 1 (non-negative, at least one positive)."""
    F = _as_2d(F, "F")
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.shape != (F.shape[1],) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError(f"weights {w.tolist()} must be {F.shape[1]} non-negative numbers, "
                         "not all zero")
    return F @ (w / w.sum() * -signs(senses, F.shape[1]))


def preference_regret(grid_F, chosen_real, weights, senses: Senses) -> float:
    """Best preference-weighted value over the grid minus the chosen model's (real) value.

    0 when the chosen model is as good as the grid's best for this preference; negative
    when it beats every grid point (possible between grid nodes, or by noise).
    """
    grid_F = _as_2d(grid_F, "grid_F")
    chosen = _as_2d(chosen_real, "chosen_real", grid_F.shape[1])
    return float(preference_score(grid_F, weights, senses).max()
                 - preference_score(chosen, weights, senses)[0])


def dominance_of_points(front_F, points_F, senses: Senses) -> dict[str, np.ndarray]:
    """For each row p of points_F: whether a row of front_F dominates it, and its distance.

    "distance" is the per-point distance of GD+ (Ishibuchi et al. 2015) in minimisation
    scale, min over front rows z of ||max(p - z, 0)||: how far p falls behind the front.
    It is 0 when p is at least as good as some front row in every objective, so a point
    that is not dominated can still have a positive distance (it lies in a gap of a
    sparse front).
    """
    Z = to_minimisation(front_F, senses)
    P = to_minimisation(points_F, senses)
    if Z.shape[1] != P.shape[1]:
        raise ValueError(f"front has {Z.shape[1]} objectives, points have {P.shape[1]}")
    if len(Z) == 0:
        raise ValueError("the front has no rows")
    behind = np.maximum(P[:, None, :] - Z[None, :, :], 0.0)
    return {"dominated": dominates_matrix(front_F, points_F, senses).any(axis=0),
            "distance": np.linalg.norm(behind, axis=2).min(axis=1)}


# --------------------------------------------------------------------------- all at once
def front_indicators(truth_F, predicted_F, real_F, chosen_real=None, weights=None,
                     senses: Senses = "max", margin: float = DEFAULT_MARGIN) -> dict[str, Any]:
    """Every indicator of one method's front against the truth, as a JSON-able dict.

    truth_F: the truth's evaluations (e.g. all grid points; filtered here); predicted_F:
    the surrogate's predictions at the re-evaluated front points; real_F: those points'
    real evaluations (same rows; None when nothing was re-evaluated, or pass predicted_F
    as None for methods without predictions). chosen_real: the chosen model's real
    evaluation and weights: the preference (both or neither) for the regret.
    """
    truth_F = _as_2d(truth_F, "truth_F")
    K = truth_F.shape[1]
    truth = pareto_filter(truth_F, senses)
    ref = reference_point(truth_F, senses, margin)
    hv_truth = hypervolume(truth, ref, senses)
    out: dict[str, Any] = {"reference_point": ref.tolist(), "hv_truth": hv_truth,
                           "n_truth_front": int(len(truth))}
    if real_F is not None:
        real = _as_2d(real_F, "real_F", K)
        real_front = pareto_filter(real, senses)
        hv = hypervolume(real_front, ref, senses)
        out |= {"n_real": int(len(real)), "n_real_front": int(len(real_front)),
                "hv": hv, "hv_ratio": hv / hv_truth,
                "igd": igd(real_front, truth, senses),
                "igd_plus": igd_plus(real_front, truth, senses),
                "gd": gd(real_front, truth, senses),
                "win_rate_vs_truth": win_rate(real_front, truth, senses),
                "win_rate_of_truth": win_rate(truth, real_front, senses),
                "coverage_by_truth": coverage(truth, real_front, senses)}
    if predicted_F is not None:
        predicted = _as_2d(predicted_F, "predicted_F", K)
        out["hv_predicted_ratio"] = hypervolume(pareto_filter(predicted, senses), ref,
                                                senses) / hv_truth
        if real_F is not None:
            if predicted.shape != real.shape:
                raise ValueError(f"predicted_F {predicted.shape} and real_F {real.shape} "
                                 "must hold the same rows")
            out["predicted_vs_real_mae"] = float(np.abs(predicted - real).mean())
            out["predicted_vs_real_max"] = float(np.abs(predicted - real).max())
    if (chosen_real is None) != (weights is None):
        raise ValueError("pass both chosen_real and weights, or neither")
    if chosen_real is not None:
        out["preference_regret"] = preference_regret(truth_F, chosen_real, weights, senses)
        out["weights"] = [float(w) for w in np.asarray(weights, dtype=float).reshape(-1)]
    return out


# --------------------------------------------------------------------------- noise floor
def split_half_floor(Y_a, Y_b, senses: Senses, margin: float = DEFAULT_MARGIN
                     ) -> dict[str, float]:
    """HV ratio of a front chosen on one half of the images, scored on the other half.

    Y_a, Y_b (n, K): the same n candidate models (e.g. every grid point) evaluated on two
    disjoint halves of each evaluation set. The front chosen on one half, scored on the
    other half against that half's own front: HV(Y_b[front of Y_a]) / HV(front of Y_b),
    and the same with halves swapped. It measures how far apart two fronts chosen on
    equally noisy data lie, the second biased upwards by its own selection. It is NOT a
    ceiling for a method scored on the values it selected on (such a method shares the
    truth's upward bias and can exceed it): score methods on held-out data instead. Each
    half has half the images, so its noise is sqrt(2) larger than the full set's.
    """
    Y_a = _as_2d(Y_a, "Y_a")
    Y_b = _as_2d(Y_b, "Y_b", Y_a.shape[1])
    if Y_a.shape != Y_b.shape:
        raise ValueError(f"Y_a {Y_a.shape} and Y_b {Y_b.shape} must hold the same models")

    signs(senses, Y_a.shape[1])

    def one_way(select: np.ndarray, score: np.ndarray) -> float:
        chosen = score[non_dominated(select, senses)]
        return hv_ratio(chosen, score, senses, margin)

    ab, ba = one_way(Y_a, Y_b), one_way(Y_b, Y_a)
    return {"a_to_b": ab, "b_to_a": ba, "mean": (ab + ba) / 2}


def bootstrap_floor(correct: Sequence[np.ndarray], senses: Senses, *,
                    n_splits: int = 20, margin: float = DEFAULT_MARGIN, seed: int = 0,
                    resample: str = "half") -> dict[str, float]:
    """split_half_floor averaged over random resamplings of each evaluation set.

    correct[k]: (n, N_k) per-image scores of the n candidate models on objective k's
    evaluation set (0/1 correctness for accuracy, per-image loss for loss). Each split
    draws, per objective and the same for every model, either
      resample="half":      a random half of the N_k images and its complement (disjoint,
                            honest, but each half is noisier than the full set), or
      resample="bootstrap": two independent bootstrap samples of N_k images each (full-size
                            noise, as if two evaluation sets had been drawn from the
                            empirical distribution; the samples overlap, so this is the
                            optimistic estimate of the two).
    Returns the mean, std, min and max of the per-split mean ratios.
    """
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    if resample not in ("half", "bootstrap"):
        raise ValueError(f"resample must be 'half' or 'bootstrap', got {resample!r}")
    correct = [np.asarray(c, dtype=float) for c in correct]
    n = {c.shape[0] for c in correct}
    if len(n) != 1 or any(c.ndim != 2 or c.shape[1] < 2 for c in correct):
        raise ValueError("every objective needs an (n, N_k) array with the same n, N_k >= 2")
    rng = np.random.default_rng(seed)

    def halves(N: int) -> tuple[np.ndarray, np.ndarray]:
        if resample == "bootstrap":
            return rng.integers(0, N, N), rng.integers(0, N, N)
        perm = rng.permutation(N)
        return perm[: N // 2], perm[N // 2:]

    ratios = []
    for _ in range(n_splits):
        idx = [halves(c.shape[1]) for c in correct]
        Y_a = np.column_stack([c[:, a].mean(axis=1) for c, (a, _) in zip(correct, idx)])
        Y_b = np.column_stack([c[:, b].mean(axis=1) for c, (_, b) in zip(correct, idx)])
        ratios.append(split_half_floor(Y_a, Y_b, senses, margin)["mean"])
    r = np.asarray(ratios)
    return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()),
            "max": float(r.max()), "n_splits": int(n_splits), "resample": resample}
