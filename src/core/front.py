"""Solve the front: fit -> search -> pick -> re-evaluate.

One step shared by map, bayesian and every nested pair. It takes evaluated points (C, Y)
and returns the amortized front, the preference pick and, when asked, real values at
front points (through the injected ``evaluate_real``). It writes nothing: the caller hands
the result to ``src.run.outputs.write_solved_front`` (files and figures).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from src.core import pareto
from src.core.metrics import Metric
from src.core.surrogate import QuadraticSurrogate, fit_surrogates


@dataclass(frozen=True)
class SearchSettings:
    """How the front is searched and the model picked (from the run configuration)."""

    low: float          # the box NSGA-III searches
    high: float
    n_gen: int
    seed: int
    pick: str
    pdf: bool = False

    @classmethod
    def of(cls, config) -> "SearchSettings":
        return cls(low=config.search_low, high=config.search_high, n_gen=config.n_gen,
                   seed=config.seed, pick=config.pick, pdf=config.pdf)


@dataclass
class FrontTask:
    """One front to solve: evaluated points and where its files go."""

    C: np.ndarray                 # [n, d] evaluated coefficient vectors
    Y: np.ndarray                 # [n, K] metric per objective (objective k <-> axis k)
    labels: Sequence[str]         # objective names (datasets, or a pair's sides)
    metric: Metric
    weights: Sequence[float]      # preference weight per objective
    folder: Path
    names: str                    # the original file-name prefix
    sample_box: tuple[float, float] = (0.0, 1.0)
    reevaluate: int | str = 0     # front points evaluated for real; "all" for every one
    # front points [m, d] -> their real metric [m, K], evaluating (and storing) them
    evaluate_real: Callable[[np.ndarray], np.ndarray] | None = None
    seed_offset: int = 0
    title: str | None = None
    surrogate_figures: bool = True  # nested pairs draw only the front
    axis_labels: Sequence[str] | None = None  # figure labels, if not the objective names
    pretrained: np.ndarray | None = None  # real metric of the pretrained model (c = 0), [K]


@dataclass
class FrontResult:
    surrogates: list[QuadraticSurrogate]
    r2: dict[str, float]
    C_front: np.ndarray
    F_front: np.ndarray
    chosen: int
    reevaluated: list[int]
    F_real: np.ndarray | None
    search_seconds: float
    anchors: dict[str, list[float]] = field(default_factory=dict)  # worst / best per objective
    figures: list[Path] = field(default_factory=list)  # drawn by the caller's writer

    @property
    def chosen_real(self) -> np.ndarray | None:
        if self.F_real is None or self.chosen not in self.reevaluated:
            return None
        return self.F_real[self.reevaluated.index(self.chosen)]


def solve_front(task: FrontTask, settings: SearchSettings) -> FrontResult:
    """Fit one surrogate per objective, search the front, pick, re-evaluate."""
    C, Y = np.asarray(task.C, dtype=float), np.asarray(task.Y, dtype=float)
    senses = [task.metric.sense] * Y.shape[1]
    surrogates = fit_surrogates(C, Y, task.metric.link)
    r2 = {str(lab): float(s.score(C, Y[:, k]))
          for k, (lab, s) in enumerate(zip(task.labels, surrogates))}

    start = time.perf_counter()
    C_front, F_front = pareto.nsga3_front(surrogates, senses, low=settings.low,
                                          high=settings.high, n_gen=settings.n_gen,
                                          seed=settings.seed + task.seed_offset)
    search_seconds = time.perf_counter() - start
    worst, best = anchor_values(C, Y, surrogates)
    chosen = pareto.pick(F_front, task.weights, senses, settings.pick, worst=worst, best=best)

    n_real = len(C_front) if task.reevaluate == "all" else int(task.reevaluate)
    idx = reevaluation_indices(len(C_front), chosen, n_real)
    F_real = task.evaluate_real(C_front[idx]) if idx and task.evaluate_real else None
    if F_real is None:
        idx = []

    return FrontResult(surrogates, r2, C_front, F_front, chosen, idx, F_real, search_seconds,
                       {"worst": worst.tolist(), "best": best.tolist()})


def anchor_values(C: np.ndarray, Y: np.ndarray, surrogates: Sequence[QuadraticSurrogate]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per objective k: its value for the pretrained model (c = 0) and for its own
    fine-tuned model (c = e_k). Evaluated values where the design holds those points,
    else the surrogate's prediction."""
    K, d = Y.shape[1], C.shape[1]

    def value_at(point: np.ndarray, k: int) -> float:
        hit = np.flatnonzero(np.all(np.isclose(C, point, atol=1e-9), axis=1))
        return float(Y[hit[0], k]) if hit.size else float(surrogates[k].predict(point[None])[0])

    zero = np.zeros(d)
    worst = np.array([value_at(zero, k) for k in range(K)])
    best = np.array([value_at(np.eye(d)[k % d], k) for k in range(K)])
    return worst, best


def reevaluation_indices(n_front: int, chosen: int, n: int) -> list[int]:
    """``n`` front points spread along the front (sorted by the first objective), always
    including the preference pick."""
    if n <= 0 or n_front == 0:
        return []
    spread = np.unique(np.round(np.linspace(0, n_front - 1, n)).astype(int)).tolist()
    if chosen not in spread:
        spread[int(np.argmin([abs(i - chosen) for i in spread]))] = chosen
    return sorted(set(spread))


def front_summary(task: FrontTask, result: FrontResult, coefficient_names: Sequence[str],
                  pick: str) -> dict[str, Any]:
    """The run.json summary of a solved front."""
    C_front, F_front, chosen, idx = result.C_front, result.F_front, result.chosen, \
        result.reevaluated
    labels = [str(x) for x in task.labels]
    real = result.chosen_real
    return {
        "n_evaluations": int(len(task.C)),
        "surrogate_r2": result.r2,
        "front_size": int(len(C_front)),
        "pick": pick,
        "chosen": {"coefficients": dict(zip(coefficient_names, C_front[chosen].tolist())),
                   "predicted": dict(zip(labels, F_front[chosen].tolist())),
                   "real": None if real is None else dict(zip(labels, real.tolist())),
                   "preference": dict(zip(labels, map(float, task.weights))),
                   "anchors": result.anchors},
        "reevaluated": None if result.F_real is None else {
            "coefficients": C_front[idx].tolist(), "predicted": F_front[idx].tolist(),
            "real": result.F_real.tolist(),
            "mean_abs_error": float(np.abs(result.F_real - F_front[idx]).mean())},
        "figures": [str(f) for f in result.figures],
    }
