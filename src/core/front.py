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
from src.core.local_design import inside
from src.core.pick_check import EQUAL_SPREAD, at_or_above, keeps_pretrained, ta_floor
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
    pick_from: str = "front"   # front | evaluated (PICK_FROM)
    pick_floor: str = "pretrained"  # PICK_FLOORS

    @classmethod
    def of(cls, config) -> "SearchSettings":
        return cls(low=config.search_low, high=config.search_high, n_gen=config.n_gen,
                   seed=config.seed, pick=config.pick, pdf=config.pdf,
                   pick_from=config.pick_from, pick_floor=config.pick_floor)


# Where the handed-over model comes from. front: the surrogate front's pick (re-evaluated).
# evaluated: the best real model by the same rule among every model the run evaluated (the
# design, the re-evaluated front, the pretrained model), preferring those that keep every
# weighted task at or above the pretrained model; the surrogate pick is among them, so the
# choice can only improve on it on the evaluation data.
PICK_FROM = ("front", "evaluated")
# Which models the pick prefers when there are any. pretrained: (the evaluated pick) those
# keeping every weighted task at or above the pretrained model. task-arithmetic: first
# those at or above task arithmetic at its best evaluated lambda (the best equal-coefficient
# merge the run evaluated) on both the preference-weighted mean and the worst task - front
# points by their prediction, evaluated models by their real metric (TA itself is one) -
# then as pretrained. A scalarisation alone may trade the mean for the worst task below
# TA's; users comparing with TA want neither below it.
PICK_FLOORS = ("pretrained", "task-arithmetic")


@dataclass(frozen=True)
class EvaluatedPick:
    """The model handed over under pick_from="evaluated"."""

    coefficients: np.ndarray   # [d]
    real: np.ndarray           # [K] its evaluated metric
    predicted: np.ndarray      # [K] the surrogates' prediction there
    source: str                # "re-evaluated front" | "design" | "pretrained"
    keeps_pretrained: bool | None  # every weighted task >= pretrained (None: pretrained unknown)
    at_or_above_floor: bool | None = None  # >= the TA floor on both measures (None: no floor)


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
    # fit the surrogates on the points inside this box only (map's local design); every
    # point in C stays an anchor and a candidate of the evaluated pick
    fit_box: tuple[float, float] | None = None


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
    evaluated_pick: EvaluatedPick | None = None  # set under pick_from="evaluated"
    # --pick-floor task-arithmetic: TA's (mean, worst) and whether the front pick met it
    floor: dict[str, Any] | None = None

    @property
    def front_pick_real(self) -> np.ndarray | None:
        """The real metric of the surrogate front's pick (None unless re-evaluated)."""
        if self.F_real is None or self.chosen not in self.reevaluated:
            return None
        return self.F_real[self.reevaluated.index(self.chosen)]

    @property
    def chosen_real(self) -> np.ndarray | None:
        """The real metric of the model handed over."""
        if self.evaluated_pick is not None:
            return self.evaluated_pick.real
        return self.front_pick_real

    @property
    def chosen_coefficients(self) -> np.ndarray:
        if self.evaluated_pick is not None:
            return self.evaluated_pick.coefficients
        return self.C_front[self.chosen]

    @property
    def chosen_predicted(self) -> np.ndarray:
        if self.evaluated_pick is not None:
            return self.evaluated_pick.predicted
        return self.F_front[self.chosen]


def solve_front(task: FrontTask, settings: SearchSettings) -> FrontResult:
    """Fit one surrogate per objective, search the front, pick, re-evaluate."""
    C, Y = np.asarray(task.C, dtype=float), np.asarray(task.Y, dtype=float)
    senses = [task.metric.sense] * Y.shape[1]
    fit = np.ones(len(C), bool) if task.fit_box is None else inside(C, task.fit_box)
    surrogates = fit_surrogates(C[fit], Y[fit], task.metric.link)
    r2 = {str(lab): float(s.score(C[fit], Y[fit, k]))
          for k, (lab, s) in enumerate(zip(task.labels, surrogates))}

    start = time.perf_counter()
    C_front, F_front = pareto.nsga3_front(surrogates, senses, low=settings.low,
                                          high=settings.high, n_gen=settings.n_gen,
                                          seed=settings.seed + task.seed_offset)
    search_seconds = time.perf_counter() - start
    worst, best = anchor_values(C, Y, surrogates)
    if task.pretrained is not None:  # measured beats predicted
        worst = np.asarray(task.pretrained, dtype=float).copy()
    floor = pick_floor(settings.pick_floor, C, Y, task.weights, task.metric.sense,
                       task.sample_box)
    floored = None
    if floor is not None and not at_or_above(F_front, floor, task.weights, senses[0]).any():
        # NSGA-III's points are sparse where a small region of the front clears the floor:
        # search that region for the pick itself (re-evaluated like any front point)
        start = time.perf_counter()
        floored = pareto.floored_pick(surrogates, senses, task.weights, settings.pick, floor,
                                      F_front, worst, best, low=settings.low,
                                      high=settings.high, n_gen=settings.n_gen,
                                      seed=settings.seed + task.seed_offset)
        search_seconds += time.perf_counter() - start
    if floored is not None:
        C_front, F_front = np.vstack([C_front, floored[0]]), np.vstack([F_front, floored[1]])
        order = np.argsort(F_front[:, 0], kind="stable")  # the front stays sorted
        C_front, F_front = C_front[order], F_front[order]
    chosen = pick_front(F_front, task.weights, senses, settings.pick, worst, best, floor)

    n_real = len(C_front) if task.reevaluate == "all" else int(task.reevaluate)
    idx = reevaluation_indices(len(C_front), chosen, n_real)
    F_real = task.evaluate_real(C_front[idx]) if idx and task.evaluate_real else None
    if F_real is None:
        idx = []
    final = None
    if settings.pick_from == "evaluated" and F_real is not None:
        final = pick_evaluated(
            [(C_front[idx], F_real, "re-evaluated front"), (C, Y, "design")],
            task.pretrained, task.weights, senses, settings.pick, worst, best, surrogates,
            floor=floor)
    floor_record = None if floor is None else {
        "task_arithmetic": {"mean": floor[0], "worst": floor[1]},
        "front_point_added": floored is not None,  # by the floored search, not NSGA-III
        "front_pick_predicted_at_or_above": bool(at_or_above(
            F_front[chosen][None], floor, task.weights, task.metric.sense)[0])}
    return FrontResult(surrogates, r2, C_front, F_front, chosen, idx, F_real, search_seconds,
                       {"worst": worst.tolist(), "best": best.tolist()}, evaluated_pick=final,
                       floor=floor_record)


def pick_floor(kind: str, C: np.ndarray, Y: np.ndarray, weights: Sequence[float], sense: str,
               sample_box: tuple[float, float]) -> tuple[float, float] | None:
    """The floor of --pick-floor ``kind`` (PICK_FLOORS) for evaluated points (C, Y): TA's
    (weighted mean, worst task) for task-arithmetic when C holds an equal-coefficient
    merge, else None."""
    if kind not in PICK_FLOORS:
        raise ValueError(f"pick floor must be one of {PICK_FLOORS}, got {kind!r}")
    if kind != "task-arithmetic":
        return None
    return ta_floor(C, Y, weights, sense, EQUAL_SPREAD * (sample_box[1] - sample_box[0]))


def pick_front(F_front: np.ndarray, weights: Sequence[float], senses: Sequence[str], rule: str,
               worst: np.ndarray, best: np.ndarray,
               floor: tuple[float, float] | None = None) -> int:
    """Index of ``rule``'s pick on the predicted front, among the points predicted at or
    above ``floor`` on both measures when there are any."""
    rows = np.arange(len(F_front))
    if floor is not None:
        above = at_or_above(F_front, floor, weights, senses[0])
        rows = np.flatnonzero(above) if above.any() else rows
    return int(rows[pareto.pick(F_front[rows], weights, senses, rule, worst=worst,
                                best=best)])


def pick_evaluated(groups: Sequence[tuple[np.ndarray, np.ndarray, str]],
                   pretrained: np.ndarray | None, weights: Sequence[float],
                   senses: Sequence[str], rule: str, worst: np.ndarray, best: np.ndarray,
                   surrogates: Sequence[QuadraticSurrogate],
                   floor: tuple[float, float] | None = None) -> EvaluatedPick:
    """The best evaluated model by ``rule``: groups (C [n, d], real Y [n, K], source) in
    order of precedence on ties; the pretrained model joins when known. Models that keep
    every weighted task at or above the pretrained model come first when there are any (a
    scalarisation alone can trade a task below it, which no merge should be chosen for);
    with a ``floor`` (TA's weighted mean and worst task, PICK_FLOORS), keepers at or above
    it on both come before them."""
    groups = [(np.atleast_2d(np.asarray(c, dtype=float)), np.atleast_2d(np.asarray(y, float)),
               src) for c, y, src in groups if len(c)]
    d = groups[0][0].shape[1]
    if pretrained is not None:
        groups.append((np.zeros((1, d)), np.asarray(pretrained, dtype=float)[None],
                       "pretrained"))
    C = np.vstack([g[0] for g in groups])
    Y = np.vstack([g[1] for g in groups])
    sources = [src for c, _, src in groups for _ in range(len(c))]
    keep = None if pretrained is None else keeps_pretrained(Y, pretrained, senses, weights)
    above = None if floor is None else at_or_above(Y, floor, weights, senses[0])
    tiers = [] if above is None else [above if keep is None else above & keep]
    tiers += [] if keep is None else [keep]
    rows = next((np.flatnonzero(t) for t in tiers if t.any()), np.arange(len(Y)))
    j = int(rows[pareto.pick(Y[rows], weights, senses, rule, worst=worst, best=best)])
    predicted = np.array([float(s.predict(C[j][None])[0]) for s in surrogates])
    return EvaluatedPick(C[j].copy(), Y[j].copy(), predicted, sources[j],
                         None if keep is None else bool(keep[j]),
                         None if above is None else bool(above[j]))


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

    def named(keys, v):
        return None if v is None else dict(zip(keys, np.asarray(v).tolist()))

    ev = result.evaluated_pick
    chosen_block = {"coefficients": named(coefficient_names, result.chosen_coefficients),
                    "predicted": named(labels, result.chosen_predicted),
                    "real": named(labels, real),
                    "preference": dict(zip(labels, map(float, task.weights))),
                    "anchors": result.anchors,
                    "from": "front" if ev is None else ev.source}
    if result.floor is not None:
        chosen_block["floor"] = result.floor
    if ev is not None:
        chosen_block["keeps_pretrained"] = ev.keeps_pretrained
        if ev.at_or_above_floor is not None:
            chosen_block["at_or_above_floor"] = ev.at_or_above_floor
        chosen_block["front_pick"] = {
            "coefficients": named(coefficient_names, C_front[chosen]),
            "predicted": named(labels, F_front[chosen]),
            "real": named(labels, result.front_pick_real)}
    return {
        "n_evaluations": int(len(task.C)),
        "surrogate_r2": result.r2,
        "front_size": int(len(C_front)),
        "pick": pick,
        "pick_from": "front" if ev is None else "evaluated",
        "chosen": chosen_block,
        "reevaluated": None if result.F_real is None else {
            "coefficients": C_front[idx].tolist(), "predicted": F_front[idx].tolist(),
            "real": result.F_real.tolist(),
            "mean_abs_error": float(np.abs(result.F_real - F_front[idx]).mean())},
        "figures": [str(f) for f in result.figures],
    }
