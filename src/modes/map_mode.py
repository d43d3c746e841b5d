"""--method map: a fixed design of merges, quadratic surrogates, the NSGA-III front."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from src import refine, sampling
from src.config import RunConfig
from src.evaluation import evaluate_metric
from src.modes.common import RunContext, finish, open_run, solve_run_front
from src.results import write_json


def design(config: RunConfig):
    """The evaluated coefficient vectors. grid (default): one-hot, near-diagonal, then grid
    points; lhs (--design lhs): one-hot, the centre, then a Latin hypercube (interior
    points rather than the coarse grid's edges and corners; docs_front_quality.md)."""
    if getattr(config, "design", "grid") == "lhs":
        return lhs_design(config.T, config.points, config.low, config.high, config.seed)
    return sampling.design(config.T, config.points, low=config.low, high=config.high,
                           n_diagonal=max(1, config.points // 10), seed=config.seed)


def lhs_design(T: int, n: int, low: float, high: float, seed: int) -> np.ndarray:
    """n points: the T one-hot models, the centre of the box, then a Latin hypercube."""
    from scipy.stats import qmc

    one_hot = np.clip(np.eye(T), low, high)
    fixed = np.vstack([one_hot, np.full((1, T), (low + high) / 2)])[:n]
    rest = qmc.LatinHypercube(d=T, seed=seed).random(n - len(fixed))
    return np.vstack([fixed, low + (high - low) * rest])


def refine_run(ctx: RunContext, C: np.ndarray, Y: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """--refine-rounds: new front points evaluated (and stored) until the predicted front
    agrees with the real one; (C, Y) with them, and the rounds for run.json (None: off)."""
    config = ctx.config
    if config.refine_rounds == 0:
        return C, Y, None
    store = ctx.store()
    path = ctx.run.file("refine_rounds.json", "per front-refinement round: the new points, "
                        "their predicted and real metric, the mean |predicted - real|")
    records: list[dict] = []

    def on_round(record: dict) -> None:
        records.append(record)
        write_json(path, records)

    search = refine.surrogate_search(config.metric.link, [config.metric.sense] * config.T,
                                     low=config.search_low, high=config.search_high,
                                     n_gen=config.n_gen, seed=config.seed)
    result = refine.refine_front(
        lambda C_new: evaluate_metric(config, ctx.evaluator, store, C_new, desc="refining front"),
        search, C, Y, rounds=config.refine_rounds, points=config.refine_points,
        tol=config.refine_tol, min_distance=refine.MIN_DISTANCE * (config.high - config.low),
        on_round=on_round)
    write_json(path, result.rounds)
    return result.C, result.Y, result.summary()


def run(config: RunConfig) -> dict[str, Any]:
    C = design(config)
    with open_run(config) as ctx:
        t0 = time.perf_counter()
        Y = evaluate_metric(config, ctx.evaluator, ctx.store(), C)
        C, Y, rounds = refine_run(ctx, C, Y)
        ctx.timings["evaluation_seconds"] = time.perf_counter() - t0
        _, summary = solve_run_front(ctx, C, Y)
        if rounds is not None:
            summary["refine"] = rounds
        return finish(ctx, summary)
