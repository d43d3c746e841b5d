"""The run directory's files, each written by one function.

Names and layouts are the original tool's where it had the file, so users' scripts keep
working: ``<names>_params.json`` (per objective, the coefficient list in the original's
term order), ``<names>pareto_front.json`` ({str(list(c)): [metric per objective]}).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from src import plotting
from src.pick_check import EQUAL_SPREAD, best_equal_merge, finetuned_rows
from src.plotting.many_tasks import MIN_TASKS, plot_many_task_front
from src.results import front_json, versions, write_json

if TYPE_CHECKING:
    from src.config import RunConfig
    from src.front import FrontResult, FrontTask
    from src.results import RunDirectory
    from src.surrogate import QuadraticSurrogate

PARAMS_DESCRIPTION = ("per objective, in objective order, the surrogate's coefficients in the "
                      "original tool's term order [c_i^2, c_i*c_j (i<j), c_i, 1]; "
                      "metric = link(sum of coefficient * term)")
SURROGATES_DESCRIPTION = ("per objective: A, b, e of metric = link(0.5 c'Ac + b'c + e), the "
                          "link, the original-order coefficients and R^2 on the evaluated points")
FRONT_DESCRIPTION = "amortized Pareto front: {coefficients: predicted metric per objective}"


def write_params(folder: Path, names: str, labels: Sequence[str],
                 surrogates: Sequence["QuadraticSurrogate"], r2: dict[str, float]
                 ) -> dict[str, str]:
    """``<names>_params.json`` (the original's list of lists) and ``<names>_surrogates.json``."""
    write_json(folder / f"{names}_params.json", [s.original_params() for s in surrogates])
    write_json(folder / f"{names}_surrogates.json", {
        str(lab): s.params_dict() | {"original_params": s.original_params(), "r2": r2[str(lab)]}
        for lab, s in zip(labels, surrogates)})
    return {f"{names}_params.json": PARAMS_DESCRIPTION,
            f"{names}_surrogates.json": SURROGATES_DESCRIPTION}


def write_front(folder: Path, names: str, C: np.ndarray, F: np.ndarray) -> dict[str, str]:
    write_json(folder / f"{names}pareto_front.json", front_json(C, F))
    return {f"{names}pareto_front.json": FRONT_DESCRIPTION}


def draw_front(task: "FrontTask", result: "FrontResult", pdf: bool) -> list[Path]:
    """The front over the evaluated points; with ``task.surrogate_figures`` also the
    surrogate against the truth (and its contours for two coefficients)."""
    labels = [str(x) for x in (task.axis_labels or task.labels)]
    chosen = result.F_front[result.chosen]
    if len(labels) >= MIN_TASKS:
        figures = draw_many_task_front(task, result, labels, pdf)
    else:
        result.files["pareto_front.png"] = "front (predicted) over the evaluated merges"
        figures = plotting.plot_front(task.Y, result.F_front, labels, task.metric.name,
                                      task.folder / "pareto_front.png",
                                      front_real=result.F_real, chosen=chosen,
                                      title=task.title, pdf=pdf)
    if not task.surrogate_figures:
        return figures
    predictors = [s.predict for s in result.surrogates]
    result.files["surrogate_fit.png"] = "surrogate predictions against evaluated metrics"
    figures += plotting.plot_true_vs_predicted(
        task.Y, np.column_stack([p(task.C) for p in predictors]), labels, task.metric.name,
        task.folder / "surrogate_fit.png", pdf=pdf)
    if task.C.shape[1] == 2:
        result.files["surrogate_contours.png"] = ("surrogate over the coefficient box, with the "
                                                  "evaluated points coloured by their true value")
        low, high = task.sample_box
        figures += plotting.plot_surrogate_fit(task.C, task.Y, predictors, labels,
                                               task.metric.name,
                                               task.folder / "surrogate_contours.png",
                                               low=low, high=high, pdf=pdf)
    return figures


def draw_many_task_front(task: "FrontTask", result: "FrontResult", labels: list[str],
                         pdf: bool) -> list[Path]:
    """Four or more tasks: the lower-triangle scatter matrix (``pareto_front.png``) and the
    parallel coordinates (``pareto_front_parallel.png``), with the pick, the pretrained model,
    the fine-tuned models and the best evaluated equal-coefficient merge (task arithmetic)."""
    C, Y = task.C, task.Y
    if result.F_real is not None:
        C, Y = np.vstack([C, result.C_front[result.reevaluated]]), np.vstack([Y, result.F_real])
    low, high = task.sample_box
    ta = best_equal_merge(C, Y, task.weights, task.metric.sense, EQUAL_SPREAD * (high - low))
    result.files["pareto_front.png"] = ("every task pair: the front (predicted and real), the "
                                        "evaluated merges, the pick and the reference models")
    result.files["pareto_front_parallel.png"] = (
        "parallel coordinates of the front, each task between the pretrained (0) and its "
        "fine-tuned model (1) where evaluated; the pick and the reference models")
    return plot_many_task_front(
        task.Y, result.F_front, labels, task.metric.name, task.folder / "pareto_front.png",
        task.folder / "pareto_front_parallel.png", sense=task.metric.sense,
        front_real=result.F_real, pick_pred=result.F_front[result.chosen],
        pick_real=result.chosen_real, pretrained=task.pretrained,
        finetuned=finetuned_rows(task.C, task.Y), task_arithmetic=None if ta is None else Y[ta],
        title=task.title, pdf=pdf)


def write_run_json(config: "RunConfig", run: "RunDirectory", summary: dict[str, Any],
                   timings: dict[str, float], started: float,
                   extra: dict[str, Any] | None = None) -> Path:
    """``run.json``: the arguments, versions, seed, timings, summary and what each file is."""
    timings["total_seconds"] = time.perf_counter() - started
    return run.write_run_json({
        "method": config.method, "exp_id": config.exp_id, "seed": config.seed,
        "models": list(config.models), "datasets": list(config.datasets),
        "metric": config.metric.name, "bounds": [config.low, config.high],
        "search_bounds": [config.search_low, config.search_high], "pick": config.pick,
        "device": config.evaluation.device, "arguments": config.arguments,
        "versions": versions(), "timings": timings, "summary": summary, **(extra or {}),
    })


def print_summary(config: "RunConfig", run: "RunDirectory", summary: dict[str, Any]) -> None:
    chosen = summary["chosen"]
    print(f"\nRun directory: {run.path}")
    print(f"Evaluations: {summary['n_evaluations']}; surrogate R2: " + ", ".join(
        f"{d} {r:.3f}" for d, r in summary["surrogate_r2"].items()))
    print(f"Preference pick ({config.pick}): c = (" + ", ".join(
        f"{v:.3f}" for v in chosen["coefficients"].values()) + ")")
    for d in config.datasets:
        real = "" if chosen["real"] is None else f", real {chosen['real'][d]:.4f}"
        print(f"  {d} {config.metric.name}: predicted {chosen['predicted'][d]:.4f}{real}")
    for line in (summary.get("pick_check") or {}).get("messages", []):
        print(line)
