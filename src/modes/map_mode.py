"""--method map: a design of merges, quadratic surrogates, the NSGA-III front."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from src.core import local_design, sampling
from src.run.config import RunConfig
from src.run.evaluation import evaluate_metric
from src.modes.common import announce_resume, finish, open_run, refine_run, solve_run_front


def design(config: RunConfig):
    """The evaluated coefficient vectors. grid (default): one-hot, near-diagonal, then grid
    points; lhs (--design lhs): one-hot, the centre, then a Latin hypercube (interior
    points rather than the coarse grid's edges and corners; docs/front_quality.md)."""
    if config.design == "local":  # two stages: run_local evaluates them
        raise ValueError("the local design depends on its first stage's values")
    if config.design == "lhs":
        return sampling.lhs_design(config.T, config.points, config.low, config.high, config.seed)
    return sampling.design(config.T, config.points, low=config.low, high=config.high,
                           n_diagonal=max(1, config.points // 10), seed=config.seed)


def run(config: RunConfig) -> dict[str, Any]:
    if config.design == "local":
        return run_local(config)
    C = design(config)
    with open_run(config) as ctx:
        announce_resume(ctx, C)
        t0 = time.perf_counter()
        Y = evaluate_metric(config, ctx.evaluator, ctx.store(), C)
        C, Y, rounds = refine_run(ctx, C, Y)
        ctx.timings["evaluation_seconds"] = time.perf_counter() - t0
        _, summary = solve_run_front(ctx, C, Y)
        if rounds is not None:
            summary["refine"] = rounds
        return finish(ctx, summary)


def run_local(config: RunConfig) -> dict[str, Any]:
    """--design local (src.core.local_design): TA's sweep and the fine-tuned models, then a
    Latin hypercube around TA's best λ; refinement, the fit and the search stay in that box."""
    with open_run(config) as ctx:
        announce_resume(ctx, budget=config.points)
        t0 = time.perf_counter()
        store = ctx.store()
        local = local_design.run_design(
            lambda C: evaluate_metric(config, ctx.evaluator, store, C), config.T,
            config.points, config.low, config.high, config.preference, config.metric.sense,
            config.seed)
        lo, hi = local.box
        ctx.config = replace(config, search_low=lo, search_high=hi)
        fit = local.fitted
        C_in, Y_in, rounds = refine_run(ctx, local.C[fit], local.Y[fit])
        C, Y = np.vstack([local.C[~fit], C_in]), np.vstack([local.Y[~fit], Y_in])
        ctx.timings["evaluation_seconds"] = time.perf_counter() - t0
        _, summary = solve_run_front(ctx, C, Y, fit_box=local.box)
        summary["design"] = local.summary()
        if rounds is not None:
            summary["refine"] = rounds
        return finish(ctx, summary)
