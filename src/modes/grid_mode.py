"""--method grid: every merge of a regular grid over the box; the ground truth of --truth."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from src.core import sampling
from src.run.config import RunConfig
from src.run.evaluation import evaluate_metric
from src.plotting.comparison import plot_comparison
from src.modes.common import announce_resume, finish, open_run
from src.core.pareto import non_dominated
from src.run.results import front_json, grid_decimals, write_json


def run(config: RunConfig) -> dict[str, Any]:
    C = sampling.full_grid(config.T, config.grid_per_axis, config.low, config.high)
    with open_run(config) as ctx:
        announce_resume(ctx, C)
        t0 = time.perf_counter()
        Y = evaluate_metric(config, ctx.evaluator, ctx.store(), C, desc="grid")
        ctx.timings["evaluation_seconds"] = time.perf_counter() - t0
        front = non_dominated(Y, [config.metric.sense] * config.T)
        front_path = ctx.run.file(f"{ctx.run.names}pareto_front_grid.json",
                                  "the grid's non-dominated merges: {coefficients: real "
                                  "metric per dataset}")
        write_json(front_path, front_json(C[front], Y[front], decimals=grid_decimals(C)))
        figures = plot_comparison(
            list(config.datasets), config.metric.axis_label,
            ctx.run.file("pareto_front_grid.png", "every grid merge and the grid's front"),
            maximize=config.metric.sense == "max",
            grid_points=Y, grid_front=Y[front],
            title=f"Grid, {config.grid_per_axis} points per axis", pdf=config.pdf)
        summary = {"n_evaluations": int(len(C)), "points_per_axis": config.grid_per_axis,
                   "front_size": int(front.sum()), "front_merges": int(front.sum()),
                   # indicators.json's n_truth_front: merges of equal values count once
                   "front_distinct_values": int(len(np.unique(Y[front], axis=0))),
                   "best_per_dataset": {d: float(Y[:, k].max() if config.metric.sense == "max"
                                                 else Y[:, k].min())
                                        for k, d in enumerate(config.datasets)},
                   "evaluations_per_second": len(C) / max(ctx.timings["evaluation_seconds"],
                                                          1e-9),
                   "figures": [str(f) for f in figures]}
        finish(ctx, summary, show=False)
    print(f"\nRun directory: {ctx.run.path}")
    print(f"Grid: {len(C)} merges ({config.grid_per_axis} per axis), "
          f"{summary['front_merges']} merges on the front ({summary['front_distinct_values']} "
          f"distinct metric values, indicators.json's n_truth_front); use it as --truth "
          f"{ctx.run.path}")
    return summary
