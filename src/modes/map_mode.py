"""--method map: a fixed design of merges, quadratic surrogates, the NSGA-III front."""
from __future__ import annotations

import time
from typing import Any

from src import sampling
from src.config import RunConfig
from src.evaluation import evaluate_metric
from src.modes.common import finish, open_run, solve_run_front


def design(config: RunConfig):
    """The evaluated coefficient vectors: one-hot, near-diagonal, then grid points."""
    return sampling.design(config.T, config.points, low=config.low, high=config.high,
                           n_diagonal=max(1, config.points // 10), seed=config.seed)


def run(config: RunConfig) -> dict[str, Any]:
    C = design(config)
    with open_run(config) as ctx:
        t0 = time.perf_counter()
        Y = evaluate_metric(config, ctx.evaluator, ctx.store(), C)
        ctx.timings["evaluation_seconds"] = time.perf_counter() - t0
        _, summary = solve_run_front(ctx, C, Y)
        return finish(ctx, summary)
