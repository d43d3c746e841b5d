"""A run's reference models: the pretrained model's metrics (evaluated once when the design
lacks c = 0) and the check of the re-evaluated pick against it and task arithmetic
(``src.core.pick_check``), for run.json's ``pick_check`` block and the printed summary."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from src.run.evaluation import evaluate_metric
from src.core.pick_check import EQUAL_SPREAD, check_pick, pretrained_row
from src.run.results import read_json

if TYPE_CHECKING:
    from src.core.front import FrontResult, FrontTask
    from src.modes.common import RunContext

REFERENCE_MODELS = "reference_models.json"


def pretrained_metrics(ctx: "RunContext", C: np.ndarray, Y: np.ndarray) -> np.ndarray | None:
    """[T] metrics of the pretrained model (c = 0): from the design when it holds c = 0, else
    evaluated once into ``reference_models.json`` (a resume reads it back). None with
    --reevaluate 0, where the run evaluates nothing beyond its design."""
    row = pretrained_row(C, Y)
    if row is not None or ctx.config.reevaluate == 0:
        return row
    store = ctx.run.store(ctx.run.file(REFERENCE_MODELS, "reference models evaluated next to "
                                        "the run, not part of its design or front: the "
                                        "pretrained model (c = 0)"), ctx.config.models)
    return evaluate_metric(ctx.config, ctx.evaluator, store, np.zeros((1, ctx.config.T)),
                           desc="pretrained model")[0]


def check_run_pick(ctx: "RunContext", task: "FrontTask", result: "FrontResult"
                   ) -> dict[str, Any] | None:
    """The pick_check block: the re-evaluated pick against the pretrained model and the best
    evaluated equal-coefficient merge among the design, the re-evaluated front and (with
    --baselines) the Task Arithmetic baselines. None when the pick was not re-evaluated."""
    config = ctx.config
    real = result.chosen_real
    if real is None:
        return None
    C, Y = [np.asarray(task.C, dtype=float)], [np.asarray(task.Y, dtype=float)]
    sources = ["design"] * len(task.C)
    if result.F_real is not None:
        C.append(result.C_front[result.reevaluated])
        Y.append(result.F_real)
        sources += ["re-evaluated front"] * len(result.F_real)
    for name, entry in (read_json(ctx.run.path / "baselines.json", {}) or {}).items():
        describe = entry.get("describe", {})
        if config.baselines and describe.get("method") == "task_arithmetic":
            C.append(np.array([describe["coefficients"]], dtype=float))
            Y.append(np.array([[entry["evals"][d][config.metric.name]
                                for d in config.datasets]]))
            sources.append(f"baseline '{name}'")
    return check_pick(result.chosen_coefficients, real, np.vstack(C), np.vstack(Y),
                      pretrained=task.pretrained, weights=task.weights,
                      sense=config.metric.sense, labels=config.datasets,
                      coefficient_names=config.models,
                      equal_tol=EQUAL_SPREAD * (config.high - config.low), sources=sources)
