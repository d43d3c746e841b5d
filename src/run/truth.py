"""The ground truth: a finished grid run, read back and checked against the run it scores.

``--method grid`` writes every merge of a regular grid; ``--truth RUN_DIR`` on a map or
bayesian run reads it here, refuses a grid of other models, datasets, box or evaluation
settings (one line naming what differs), and scores the run's fronts against the grid's
with ``src.core.indicators``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from map_common.errors import MAPError
from src.core import indicators
from src.run.mode_registry import MODES
from src.core.objectives import file_prefix
from src.run.results import ScalingResults, read_run_info


@dataclass
class Truth:
    path: Path
    C: np.ndarray  # [n, T] every grid point
    Y: np.ndarray  # [n, T] its metric per dataset
    senses: list[str]

    @cached_property  # the grid's front, used by each figure drawn over it
    def front_mask(self) -> np.ndarray:
        from src.core.pareto import non_dominated

        return non_dominated(self.Y, self.senses)


def load_truth(run_dir: str | Path, config) -> Truth:
    """The grid run at ``run_dir`` as the truth for ``config``'s run (MAPError if it is
    not a finished grid run of the same models, datasets, box and evaluation settings)."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if info is None:
        raise MAPError(f"--truth {run_dir}: no run.json; not a finished MAP run directory")
    mode = MODES.get(info.get("method"))
    if mode is None or not mode.makes_truth:
        truths = " or ".join(f"--method {name}" for name in MODES.names(lambda m: m.makes_truth))
        raise MAPError(f"--truth {run_dir}: a --method {info.get('method')} run; the truth is "
                       f"a {truths} run")
    wanted = {"models": list(config.models), "datasets": list(config.datasets),
              "bounds": [config.low, config.high]}
    for key, value in wanted.items():
        if info.get(key) != value:
            raise MAPError(f"--truth {run_dir}: its {key} are {info.get(key)}, this run's are "
                           f"{value}; run the grid with the same settings")
    theirs = info.get("arguments", {})
    ours = config.evaluation.value_settings()
    # What the grid measures with must match; the merge method may differ (the original
    # scores MAP (DARE) against the task-arithmetic grid too).
    for key in ("max_eval_samples", "precision"):
        value = ours.get(key)
        if key in theirs and theirs[key] != value:
            raise MAPError(f"--truth {run_dir}: it was evaluated with --{key.replace('_', '-')} "
                           f"{theirs[key]}, this run with {value}")
    store = ScalingResults(run_dir / f"{file_prefix(config.models)}scaling_results.json",
                           config.models, needs=config.metric.name)
    if store.lacking:
        raise MAPError(f"--truth {run_dir}: {len(store.lacking)} of its merges were evaluated "
                       f"before {config.metric.name} was recorded; resume that grid run with "
                       f"--metric-type {config.metric.name} to evaluate them again")
    C, Y = store.arrays(config.datasets, config.metric.name)
    expected = info.get("summary", {}).get("n_evaluations")
    if expected is None or len(C) < expected:
        raise MAPError(f"--truth {run_dir}: the grid run is not finished ({len(C)} of "
                       f"{expected} merges stored); resume it first")
    return Truth(run_dir, C, Y, [config.metric.sense] * config.T)


def score_against_truth(truth: Truth, predicted_real: np.ndarray | None,
                        real_points: np.ndarray | None, sampled: np.ndarray,
                        chosen_real: np.ndarray | None, weights) -> dict[str, Any]:
    """indicators.json: the run's real fronts against the grid's.

    ``predicted_real``/``real_points``: predictions and real values at the re-evaluated
    front points; ``sampled``: the metric of every merge the run evaluated. Two real fronts
    are scored: the re-evaluated points alone, and those plus the sampled ones."""
    senses = truth.senses
    front = truth.Y[truth.front_mask]
    # the grid's front as its run prints it: merges, and distinct values (n_truth_front)
    out: dict[str, Any] = {"truth": str(truth.path), "truth_points": int(len(truth.Y)),
                           "truth_front": {"merges": int(len(front)), "distinct_values":
                                           int(len(np.unique(front, axis=0)))}}
    if real_points is not None:
        out["reevaluated"] = indicators.front_indicators(
            truth.Y, predicted_real, real_points, chosen_real,
            None if chosen_real is None else weights, senses)
        with_sampled = np.vstack([real_points, sampled])
    else:
        with_sampled = sampled
    out["reevaluated_and_sampled"] = indicators.front_indicators(truth.Y, None, with_sampled,
                                                                 senses=senses)
    return out
