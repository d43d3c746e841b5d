"""The models a pick is judged against, and the check of the pick against them.

References: the pretrained model (c = 0), each fine-tuned model (c = e_k) and task
arithmetic (TA: one shared coefficient, c = lambda * 1). A pick is flagged when its real
metric is worse than the pretrained model's on some task while an evaluated merge keeps
every task at or above the pretrained model, or when it is worse than the best evaluated
equal-coefficient merge (TA at its best lambda among those evaluated) on the
preference-weighted mean or on the worst task; then an evaluated merge at or above TA on
both, if one exists, is named too. Arrays in, a JSON-able record out.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# Differences below this are ties (accuracies on finite sets differ by at least 1/n).
EPS = 1e-9
# A merge counts as TA when its coefficients spread (max - min) by at most EQUAL_SPREAD of
# the sampling box (the design's near-diagonal points are jittered by 2% of it) and by at
# most EQUAL_RELATIVE of their mean (so a merge near c = 0 with one coefficient twice
# another is not called TA).
EQUAL_SPREAD = 0.1
EQUAL_RELATIVE = 0.5


def find_point(C: np.ndarray, point: Sequence[float], atol: float = 1e-9) -> int | None:
    """Index of the first row of C equal to ``point``, or None."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    if C.size == 0:
        return None
    hit = np.flatnonzero(np.all(np.isclose(C, np.asarray(point, dtype=float), atol=atol),
                                axis=1))
    return int(hit[0]) if hit.size else None


def pretrained_row(C: np.ndarray, Y: np.ndarray) -> np.ndarray | None:
    """The evaluated metrics of the pretrained model (c = 0) when C holds it, else None."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    i = find_point(C, np.zeros(C.shape[1]))
    return None if i is None else np.asarray(Y, dtype=float)[i].copy()


def finetuned_rows(C: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """[K, K]: row k the evaluated metrics of fine-tuned model k (c = e_k), NaN where C lacks
    it. Needs one coefficient per objective (K = d)."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    K = Y.shape[1]
    out = np.full((K, K), np.nan)
    if C.shape[1] != K:
        return out
    for k in range(K):
        i = find_point(C, np.eye(K)[k])
        if i is not None:
            out[k] = Y[i]
    return out


def equal_mask(C: np.ndarray, tol: float) -> np.ndarray:
    """Rows whose coefficients are equal within ``tol`` and EQUAL_RELATIVE of their mean
    (max - min), the zero row left out."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    spread, mean = np.ptp(C, axis=1), C.mean(axis=1)
    return (spread <= tol) & (spread <= EQUAL_RELATIVE * np.abs(mean)) & (np.abs(mean) > EPS)


def keeps_pretrained(Y: np.ndarray, pretrained: Sequence[float], senses: str | Sequence[str],
                     weights: Sequence[float] | None = None) -> np.ndarray:
    """[n] rows at or above the pretrained model (within EPS) on every task, or on every task
    of positive weight when ``weights`` are given."""
    from src.core.objectives import signs  # it imports pymoo; this module stays numpy-only

    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    gap = (Y - np.asarray(pretrained, dtype=float)) * -signs(senses, Y.shape[1])
    counted = (np.ones(Y.shape[1], dtype=bool) if weights is None
               else np.asarray(weights, dtype=float) > 0)
    return np.all((gap >= -EPS) | ~counted, axis=1)


def weighted_mean(Y: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return np.atleast_2d(Y) @ (w / w.sum())


def worst_task(Y: np.ndarray, sense: str) -> np.ndarray:
    Y = np.atleast_2d(Y)
    return Y.min(axis=1) if sense == "max" else Y.max(axis=1)


def best_equal_merge(C: np.ndarray, Y: np.ndarray, weights: Sequence[float], sense: str,
                     tol: float) -> int | None:
    """Index of the equal-coefficient merge (TA) with the best preference-weighted mean."""
    mask = equal_mask(C, tol)
    if not mask.any():
        return None
    sign = 1.0 if sense == "max" else -1.0
    score = np.where(mask, sign * weighted_mean(Y, weights), -np.inf)
    return int(np.argmax(score))


def check_pick(pick_c: Sequence[float], pick_y: Sequence[float], C: np.ndarray, Y: np.ndarray,
               *, pretrained: Sequence[float] | None, weights: Sequence[float], sense: str,
               labels: Sequence[str], coefficient_names: Sequence[str], equal_tol: float,
               sources: Sequence[str] | None = None) -> dict[str, Any]:
    """The pick (real metrics ``pick_y`` at ``pick_c``) against the evaluated models (C, Y;
    ``sources`` says where each row comes from) and the pretrained model's metrics.

    Returns {"pick", "pretrained", "task_arithmetic", "below_pretrained",
    "below_task_arithmetic", "above_task_arithmetic", "messages"}; a block is None when it
    does not apply, and ``messages`` holds one line per finding, naming the better evaluated
    model (below TA: TA, and an evaluated merge at or above TA on both measures if any)."""
    if sense not in ("max", "min"):
        raise ValueError(f"sense must be 'max' or 'min', got {sense!r}")
    labels, names = [str(x) for x in labels], [str(x) for x in coefficient_names]
    pick_c = np.asarray(pick_c, dtype=float)
    pick_y = np.asarray(pick_y, dtype=float)
    K = len(labels)
    C = np.asarray(C, dtype=float).reshape(-1, len(names))
    Y = np.asarray(Y, dtype=float).reshape(-1, K)
    if pick_y.shape != (K,) or pick_c.shape != (len(names),) or len(C) != len(Y):
        raise ValueError(f"shapes do not match: pick_c {pick_c.shape}, pick_y {pick_y.shape}, "
                         f"C {C.shape}, Y {Y.shape} for {K} objectives")
    sources = list(sources) if sources is not None else ["evaluated"] * len(C)
    sign = 1.0 if sense == "max" else -1.0

    def model(c: np.ndarray, y: np.ndarray, source: str | None = None) -> dict[str, Any]:
        out = {"coefficients": dict(zip(names, map(float, c))),
               "real": dict(zip(labels, map(float, y))),
               "mean": float(weighted_mean(y, weights)[0]),
               "worst": float(worst_task(y, sense)[0])}
        return out if source is None else out | {"source": source}

    record: dict[str, Any] = {
        "sense": sense, "preference": dict(zip(labels, map(float, weights))),
        "mean": "preference-weighted mean over the tasks",
        "pick": model(pick_c, pick_y), "pretrained": None, "task_arithmetic": None,
        "below_pretrained": None, "below_task_arithmetic": None,
        "above_task_arithmetic": None, "messages": []}

    if pretrained is not None:
        pre = np.asarray(pretrained, dtype=float)
        record["pretrained"] = model(np.zeros(len(names)), pre, "evaluated")
        shortfall = sign * (pre - pick_y)  # > 0: the pick is worse on that task
        below = shortfall > EPS
        if below.any():
            keeps = keeps_pretrained(Y, pre, sense) & (np.abs(C).max(axis=1) > EPS)
            better = None
            if keeps.any():
                score = np.where(keeps, sign * weighted_mean(Y, weights), -np.inf)
                b = int(np.argmax(score))
                better = model(C[b], Y[b], sources[b])
            record["below_pretrained"] = {
                "tasks": {labels[k]: float(shortfall[k]) for k in np.flatnonzero(below)},
                "better": better}
            line = "Pick check: the pick is below the pretrained model on " + ", ".join(
                f"{labels[k]} by {shortfall[k]:.4f}" for k in np.flatnonzero(below))
            record["messages"].append(line + (
                "; no evaluated merge keeps every task at or above the pretrained model"
                if better is None else f"; the {better['source']} merge {_coeffs(better)} "
                f"keeps every task at or above it: {_metrics(better)}"))

    t = best_equal_merge(C, Y, weights, sense, equal_tol)
    if t is not None:
        ta = model(C[t], Y[t], sources[t]) | {"lambda": float(C[t].mean())}
        record["task_arithmetic"] = ta
        gaps = {"mean": sign * (ta["mean"] - record["pick"]["mean"]),
                "worst task": sign * (ta["worst"] - record["pick"]["worst"])}
        worse = {k: float(v) for k, v in gaps.items() if v > EPS}
        if worse:
            record["below_task_arithmetic"] = worse
            b = above_task_arithmetic(C, Y, t, weights, sense)
            above = None if b is None else model(C[b], Y[b], sources[b])
            record["above_task_arithmetic"] = above
            record["messages"].append(
                "Pick check: the pick is below task arithmetic on " + " and ".join(
                    f"the {k} by {v:.4f}" for k, v in worse.items())
                + f"; TA at lambda = {ta['lambda']:.3f} ({ta['source']}) {_coeffs(ta)}: "
                f"mean {ta['mean']:.4f}, worst {ta['worst']:.4f}; {_metrics(ta)}"
                + ("" if above is None else
                   f"; the {above['source']} merge {_coeffs(above)} is at or above TA on "
                   f"both: mean {above['mean']:.4f}, worst {above['worst']:.4f}"))
    return record


def above_task_arithmetic(C: np.ndarray, Y: np.ndarray, ta: int, weights: Sequence[float],
                          sense: str) -> int | None:
    """Index of the evaluated merge at or above row ``ta`` (TA at its best lambda) on both
    the preference-weighted mean and the worst task, and better on one of them, with the
    best worst task (ties: the best mean); None when no merge is. A model a user comparing
    with TA would take, when the pick's own rule traded the mean for the worst task."""
    sign = 1.0 if sense == "max" else -1.0
    mean = sign * weighted_mean(Y, weights)
    worst = sign * worst_task(Y, sense)
    d_mean, d_worst = mean - mean[ta], worst - worst[ta]
    ok = ((d_mean >= -EPS) & (d_worst >= -EPS) & ((d_mean > EPS) | (d_worst > EPS))
          & (np.abs(C).max(axis=1) > EPS))
    if not ok.any():
        return None
    rows = np.flatnonzero(ok)
    return int(rows[np.lexsort((-mean[rows], -worst[rows]))[0]])


def ta_floor(C: np.ndarray, Y: np.ndarray, weights: Sequence[float], sense: str,
             tol: float) -> tuple[float, float] | None:
    """(preference-weighted mean, worst task) of TA at its best evaluated lambda (the best
    equal-coefficient merge among C), or None when C holds none: the floor of
    --pick-floor task-arithmetic."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    t = best_equal_merge(C, Y, weights, sense, tol)
    if t is None:
        return None
    return float(weighted_mean(Y[t], weights)[0]), float(worst_task(Y[t], sense)[0])


def at_or_above(Y: np.ndarray, floor: tuple[float, float], weights: Sequence[float],
                sense: str) -> np.ndarray:
    """[n] rows at or above ``floor`` (within EPS) on the preference-weighted mean and on
    the worst task."""
    sign = 1.0 if sense == "max" else -1.0
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    return ((sign * (weighted_mean(Y, weights) - floor[0]) >= -EPS)
            & (sign * (worst_task(Y, sense) - floor[1]) >= -EPS))


def _coeffs(m: dict[str, Any]) -> str:
    return "c = (" + ", ".join(f"{v:.3f}" for v in m["coefficients"].values()) + ")"


def _metrics(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in m["real"].items())
