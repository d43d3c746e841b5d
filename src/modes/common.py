"""What every mode does around its own steps: open the run, solve a front over the run's
datasets, write run.json and print the summary."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from map_common.errors import MAPError

from src.core import acquisition, refine
from src.run.baselines import (ADAMERGING_POINTS, baseline_dominance, check_stored_adamerging,
                               evaluate_baselines, figure_baselines)
from src.run.compare import load_compared, method_label
from src.run.config import RunConfig
from src.run.evaluation import evaluate_metric, evaluate_points, open_evaluator
from src.run.fingerprint import (FINGERPRINT, check_fingerprint, evaluation_fingerprint,
                             record_fingerprint)
from src.core.front import FrontResult, FrontTask, SearchSettings, front_summary, solve_front
from src.core.indicators import pareto_filter
from src.modes.reference_models import check_run_pick, pretrained_metrics
from src.run.outputs import print_summary, write_run_json, write_solved_front
from src.run.report_on_test import HANDED_OVER, summarise, ta_label, test_datasets
from src.plotting.comparison import plot_comparison
from src.run.results import RunDirectory, ScalingResults, point_key, write_json
from src.run.run_lock import LOCK
from src.run.truth import load_truth, score_against_truth


@dataclass
class RunContext:
    config: RunConfig
    run: RunDirectory
    evaluator: Any
    started: float
    timings: dict[str, float] = field(default_factory=dict)
    truth: Any = None  # src.run.truth.Truth with --truth
    compared: list = field(default_factory=list)  # --compare: (label, front, real points)

    def store(self) -> ScalingResults:
        """The run's evaluated points (``<names>scaling_results.json``)."""
        return self.run.store(self.run.scaling_results, self.config.models)


@contextmanager
def open_run(config: RunConfig) -> Iterator[RunContext]:
    """The run directory and the evaluator (everything loaded once), closed at the end."""
    started = time.perf_counter()
    run = RunDirectory(config.results_path, config.exp_id, config.models, config.metric.name)
    run.outputs[FINGERPRINT] = ("what decides an evaluation's value (checkpoint sizes and "
                                "times, datasets, settings); a resume with another is refused")
    run.outputs[LOCK] = "pid and host of the run holding the directory (flock)"
    timings: dict[str, float] = {}
    # the other runs a run refers to are read before anything is loaded or written
    truth = load_truth(config.truth, config) if config.truth else None
    compared = load_compared(config.compare, config)
    check_fingerprint(run.path, run_fingerprint(config))  # a resume must mean the same values
    check_stored_adamerging(config, run.path)
    evaluator = open_evaluator(config, timings)
    for name, what in getattr(config.evaluation.merge_method, "files", {}).items():
        if (run.path / name).exists():  # a learned merge method's state
            run.outputs[name] = what
    record_fingerprint(run.path, run_fingerprint(config))  # the heads as evaluated
    try:
        yield RunContext(config, run, evaluator, started, timings, truth, compared)
    finally:
        try:
            evaluator.close()
        finally:
            run.close_stores()  # every scaling-results JSON complete, even when stopped


def run_fingerprint(config: RunConfig) -> dict[str, Any]:
    """What decides an evaluation's value in this run (see results.evaluation_fingerprint)."""
    from task_vectors.checkpoints import head_path

    src = config.source
    checkpoints = {"pretrained checkpoint": src.pretrained,
                   **{f"fine-tuned checkpoint of {m}": path for m, path in src.finetuned},
                   **{f"head of {d}": head_path(src.save, d) for d in config.datasets}}
    settings = config.evaluation.value_settings()
    max_eval_samples = settings.pop("max_eval_samples")
    return evaluation_fingerprint(
        src.model_name, checkpoints=checkpoints, datasets=config.datasets,
        data_location=src.data_location, max_eval_samples=max_eval_samples,
        settings=settings, zoo_recipe=src.zoo_recipe)


def _same(a: Any, b: Any) -> bool:
    """Equal settings, numbers within float noise (JSON round trips, normalised weights)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(np.isclose(a, b, rtol=1e-9, atol=1e-12))
    return a == b


def _shown(value: Any) -> str:
    def one(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)
    if isinstance(value, dict):
        return " ".join(f"{k}:{one(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(one(v) for v in value)
    return one(value)


def refuse_other_settings(path: Any, what: str, flags: dict[str, str],
                          stored: dict[str, Any], now: dict[str, Any]) -> None:
    """One line (MAPError) naming each setting in ``flags`` (key -> its flag) that ``stored``
    (recorded at ``path`` by the run that made the directory's ``what``) holds and this
    run sets otherwise: a resume would take that work as this run's."""
    changed = [k for k in flags if stored.get(k) is not None and k in now and
               not _same(stored[k], now[k])]
    if changed:
        was = ", ".join(f"{flags[k]} {_shown(stored[k])}" for k in changed)
        asks = ", ".join(f"{flags[k]} {_shown(now[k])}" for k in changed)
        raise MAPError(f"{path}: {what} with {was}; this run asks for {asks}. Resume with "
                       "the same flags, or use another --exp-id")


def announce_resume(ctx: RunContext, C: np.ndarray | None = None, budget: int | None = None,
                    done: int | None = None) -> None:
    """"resumed: N points stored, M to evaluate" when the run directory holds points: M
    counts the design C's missing points (or what is left of a budget of points, of which
    ``done`` are stored: all stored points when not given)."""
    store = ctx.store()
    if store.lacking:
        print(f"{len(store.lacking)} stored points lack {ctx.config.metric.name} (evaluated "
              "before it was recorded): they are evaluated again", flush=True)
    if not len(store):
        return
    if C is not None:
        todo = len({point_key(c) for c in np.atleast_2d(C) if store.get(c) is None})
    else:
        todo = max(0, int(budget or 0) - (len(store) if done is None else done))
    print(f"resumed: {len(store)} points stored, {todo} to evaluate", flush=True)


def json_log(path) -> Callable[[dict], None]:
    """A callback that appends a record and rewrites ``path`` as the list so far (the
    per-round logs of bayesian and refinement rounds, readable while a run goes on)."""
    records: list[dict] = []

    def append(record: dict) -> None:
        records.append(record)
        write_json(path, records)

    return append


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
    search = refine.surrogate_search(config.metric.link, [config.metric.sense] * config.T,
                                     low=config.search_low, high=config.search_high,
                                     n_gen=config.n_gen, seed=config.seed)
    min_distance = refine.MIN_DISTANCE * (config.high - config.low)
    select = acquisition.refine_selector(
        config.refine_acquisition, config.metric.link, [config.metric.sense] * config.T,
        seed=config.seed, min_distance=min_distance, preference=np.asarray(config.preference))
    result = refine.refine_front(
        lambda C_new: evaluate_metric(config, ctx.evaluator, store, C_new, desc="refining front"),
        search, C, Y, rounds=config.refine_rounds, points=config.refine_points,
        tol=config.refine_tol, min_distance=min_distance, on_round=json_log(path),
        select=select)
    write_json(path, result.rounds)
    return result.C, result.Y, result.summary()


def solve_run_front(ctx: RunContext, C: np.ndarray, Y: np.ndarray,
                    fit_box: tuple[float, float] | None = None) -> tuple[FrontResult, dict]:
    """The shared front step over the run's datasets (map and bayesian), front points
    re-evaluated into ``<names>pareto_front_real.json``; returns the result and summary.
    ``fit_box``: the surrogates fit the points inside it only (map's local design)."""
    config, run = ctx.config, ctx.run
    real_store = run.store(run.path / f"{run.names}pareto_front_real.json", config.models)

    def evaluate_real(C_front: np.ndarray) -> np.ndarray:
        run.outputs[real_store.path.name] = "front points merged and evaluated for real"
        return evaluate_metric(config, ctx.evaluator, real_store, C_front,
                               desc="re-evaluating front")

    task = FrontTask(C=C, Y=Y, labels=config.datasets, metric=config.metric,
                     weights=config.preference, folder=run.path, names=run.names,
                     sample_box=(config.low, config.high), reevaluate=config.reevaluate,
                     evaluate_real=evaluate_real, pretrained=pretrained_metrics(ctx, C, Y),
                     fit_box=fit_box)
    result = solve_front(task, SearchSettings.of(config))
    files, result.figures = write_solved_front(task, result, config.pdf)
    if result.F_real is not None:  # this run's re-evaluated points only, as the file says
        real_store.retain(result.C_front[result.reevaluated])
    run.record(files)
    ctx.timings["search_seconds"] = ctx.timings.get("search_seconds", 0.0) + \
        result.search_seconds
    summary = front_summary(task, result, config.models, config.pick)
    if ctx.truth is not None:
        summary["indicators"] = score_run(ctx, task, result)
    add_baselines_and_comparisons(ctx, task, result, summary)
    summary["pick_check"] = check_run_pick(ctx, task, result)
    chosen = summary["chosen"]
    c = [chosen["coefficients"][m] for m in config.models]
    if config.report_test:
        check = summary["pick_check"] or {}
        ta = check.get("task_arithmetic")
        models = {HANDED_OVER: c}
        if ta:
            models[ta_label(ta["lambda"])] = [ta["coefficients"][m] for m in config.models]
        models["pretrained"] = [0.0] * config.T
        summary["test"] = report_test(ctx, models)
    write_final_model(ctx, merged_state(ctx, c), {
        "coefficients": chosen["coefficients"], "metric": config.metric.name,
        "real": chosen.get("real"), "source": chosen.get("from", "front")},
        "the handed-over model's coefficients, its real metric per dataset (evaluation "
        "split) and where it came from")
    return result, summary


def report_test(ctx: RunContext, models: dict[str, Any]) -> dict[str, Any]:
    """--report-test: ``models`` (label -> coefficients) scored on the test splits, in one
    evaluate() call (a Ray pool runs them together). Each score is kept in the run's
    ``<names>_test_scaling_results.json``, so a resumed or repeated run scores nothing twice."""
    config, run = ctx.config, ctx.run
    test_of = test_datasets(config.datasets)
    store = run.store(run.file(f"{run.names}_test_scaling_results.json",
                               "--report-test: the scored models' accuracy, loss and entropy "
                               "per test split"), config.models)
    names = list(models)
    C = np.array([models[n] for n in names], dtype=float).reshape(len(names), config.T)
    evals = evaluate_points(ctx.evaluator, store, C, list(test_of.values()),
                            desc="scoring on test splits")
    return summarise({n: evals[k] for k, n in enumerate(names)}, test_of, config.preference,
                     {n: dict(zip(config.models, C[k].tolist())) for k, n in enumerate(names)})


def write_final_model(ctx: RunContext, state: dict[str, Any] | None, info: dict[str, Any],
                      what: str) -> dict[str, Any]:
    """final_model/merge.json (``info``) and, unless --no-final-checkpoint,
    final_model/finetuned.pt: the encoder ``state`` (θ of the merged model) in the
    pretrained encoder's module, a task_vectors pickle loadable like any fine-tuned
    checkpoint; returns ``info``."""
    from task_vectors.checkpoints import load_encoder, save_module

    config, run_dir = ctx.config, ctx.run
    final_dir = run_dir.path / "final_model"
    if config.final_checkpoint:
        # built on the CPU around the pretrained module, so the file is the task_vectors pickle
        encoder = load_encoder(config.source.pretrained, config.source.model_name,
                               openclip_cachedir=config.source.openclip_cachedir)
        encoder.load_state_dict(state)
        save_module(encoder, final_dir / "finetuned.pt")
        run_dir.outputs["final_model/finetuned.pt"] = \
            "the merged encoder handed over (task_vectors pickle)"
    write_json(final_dir / "merge.json", info)
    run_dir.outputs["final_model/merge.json"] = what
    return info


def merged_state(ctx: RunContext, coefficients) -> dict[str, Any] | None:
    """θ(c)'s encoder state from the run's evaluator (a Ray driver holds no engine), or None
    when --no-final-checkpoint leaves it unused."""
    if not ctx.config.final_checkpoint:
        return None
    return ctx.evaluator.merged_state(np.asarray(coefficients, dtype=float))


def add_baselines_and_comparisons(ctx: RunContext, task: FrontTask, result: FrontResult,
                                  summary: dict[str, Any]) -> None:
    """--baselines and --compare: baselines.json, their dominance by the MAP real front, and
    pareto_front_withbaselines.png in the style of the original's figure."""
    config = ctx.config
    if not (config.baselines or config.compare):
        return
    stored = {}
    if config.baselines:
        stored = evaluate_baselines(ctx.evaluator, config, ctx.run.file(
            "baselines.json", "the single-model baselines: how each is merged, its metrics"))
        for g, v in ADAMERGING_POINTS if config.adamerging is not None else ():
            if (ctx.run.path / f"adamerging_{g}_{v}.pt").exists():
                ctx.run.outputs[f"adamerging_{g}_{v}.pt"] = (
                    "checkpoint of the AdaMerging baseline's learning (a killed run continues "
                    "from it)")
        real = task.Y if result.F_real is None else np.vstack([result.F_real, task.Y])
        front = pareto_filter(real, [config.metric.sense] * config.T)  # MAP's real front
        summary["baselines"] = baseline_dominance(front, stored, config)
    label = method_label(config.evaluation.merge_method.name)
    runs = [(label, result.F_front, result.F_real), *ctx.compared]
    truth = ctx.truth
    figures = plot_comparison(
        list(config.datasets), config.metric.axis_label,
        ctx.run.file("pareto_front_withbaselines.png", "the fronts with the single-model "
                     "baselines (and the grid, with --truth)"),
        maximize=config.metric.sense == "max",
        grid_points=None if truth is None else truth.Y,
        grid_front=None if truth is None else truth.Y[truth.front_mask],
        runs=runs, baselines=figure_baselines(stored, config), pdf=config.pdf)
    summary["figures"] += [str(f) for f in figures]


def score_run(ctx: RunContext, task: FrontTask, result: FrontResult) -> dict[str, Any]:
    """indicators.json and the figure of the run's fronts over the grid's (--truth)."""
    truth, idx = ctx.truth, result.reevaluated
    scores = score_against_truth(truth, result.F_front[idx] if idx else None, result.F_real,
                                 task.Y, result.chosen_real, task.weights)
    write_json(ctx.run.file("indicators.json", "the front against the grid's (--truth): "
                            "HV ratio, IGD, IGD+, GD, win rate, preference regret"), scores)
    figures = plot_comparison(
        list(ctx.config.datasets), ctx.config.metric.axis_label,
        ctx.run.file("pareto_front_vs_grid.png", "the front over the grid's points and front"),
        maximize=ctx.config.metric.sense == "max",
        grid_points=truth.Y, grid_front=truth.Y[truth.front_mask],
        runs=[("MAP", result.F_front, result.F_real)],
        chosen=result.chosen_real, chosen_predicted=result.chosen_predicted,
        pdf=ctx.config.pdf)
    result.figures += figures
    return scores


def finish(ctx: RunContext, summary: dict[str, Any], *, show: bool = True) -> dict[str, Any]:
    """Write run.json (with the evaluator's per-point figures) and print the summary."""
    method = getattr(ctx.evaluator, "merge_method", None) or ctx.config.evaluation.merge_method
    write_run_json(ctx.config, ctx.run, summary, ctx.timings, ctx.started,
                   extra={"evaluation": ctx.evaluator.stats(), "merge_method": method.describe()})
    if show:
        print_summary(ctx.config, ctx.run, summary)
    return summary
