"""--method bayesian: adaptive rounds that sample where the surrogates err most, or by
expected hypervolume improvement (--bayes-acquisition)."""
from __future__ import annotations

import time
from typing import Any

from src import plotting

from src.core import bayesian, refine
from src.run.config import RunConfig
from src.run.evaluation import evaluate_metric
from src.modes.common import (announce_resume, finish, json_log, open_run, refine_run,
                              solve_run_front)
from src.run.results import write_json


def run(config: RunConfig) -> dict[str, Any]:
    n_initial, n_update, n_iter = config.bayes
    with open_run(config) as ctx:
        announce_resume(ctx, budget=n_initial + n_update * n_iter)
        store = ctx.store()
        C_done, Y_done = store.arrays(config.datasets, config.metric.name)
        rounds_path = ctx.run.file("bayesian_rounds.json", "per round: new points, bin "
                                   "posterior, bin scores, surrogate error")
        t0 = time.perf_counter()
        propose = None if config.bayes_acquisition == "error" else bayesian.ehvi_proposer(
            config.metric.link, [config.metric.sense] * config.T, low=config.search_low,
            high=config.search_high, n_gen=config.n_gen, seed=config.seed,
            min_distance=refine.MIN_DISTANCE * (config.high - config.low))
        result = bayesian.run_rounds(
            lambda C_new: evaluate_metric(config, ctx.evaluator, store, C_new), config.T,
            n_initial=n_initial, n_update=n_update, n_iter=n_iter, link=config.metric.link,
            low=config.low, high=config.high, seed=config.seed, on_round=json_log(rounds_path),
            C_done=C_done if len(C_done) else None, Y_done=Y_done if len(Y_done) else None,
            propose=propose, acquisition=config.bayes_acquisition)
        write_json(rounds_path, result.records)
        C, Y, refined = refine_run(ctx, result.C, result.Y)
        ctx.timings["evaluation_seconds"] = time.perf_counter() - t0
        _, summary = solve_run_front(ctx, C, Y)
        if refined is not None:
            summary["refine"] = refined
        summary["figures"] += [str(f) for f in plotting.plot_bayesian_rounds(
            result.C, result.round_of_point, list(config.datasets),
            ctx.run.file("bayesian_rounds.png", "where each round sampled"),
            n_bins=bayesian.bins_per_angle(config.T), pdf=config.pdf)]
        summary["schedule"] = {"initial": n_initial, "update": n_update, "iterations": n_iter,
                               "acquisition": config.bayes_acquisition}
        return finish(ctx, summary)
