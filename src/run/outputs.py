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

from map_common.errors import MAPError
from src import plotting
from src.core.pick_check import EQUAL_SPREAD, best_equal_merge, finetuned_rows
from src.plotting.many_tasks import MIN_TASKS, plot_many_task_front
from src.run.results import front_json, jsonable, read_json, versions, write_json

if TYPE_CHECKING:
    from src.run.config import RunConfig
    from src.core.front import FrontResult, FrontTask
    from src.run.results import RunDirectory
    from src.core.surrogate import QuadraticSurrogate

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


def write_solved_front(task: "FrontTask", result: "FrontResult", pdf: bool
                       ) -> tuple[dict[str, str], list[Path]]:
    """A solved front's files in ``task.folder``: params, surrogates, front, figures;
    returns (file name -> description, figures) for the run's list."""
    files = write_params(task.folder, task.names, task.labels, result.surrogates, result.r2)
    files.update(write_front(task.folder, task.names, result.C_front, result.F_front))
    drawn, figures = draw_front(task, result, pdf)
    files.update(drawn)
    return files, figures


def draw_front(task: "FrontTask", result: "FrontResult", pdf: bool
               ) -> tuple[dict[str, str], list[Path]]:
    """The front over the evaluated points; with ``task.surrogate_figures`` also the
    surrogate against the truth (and its contours for two coefficients). Returns (file
    name -> description, figures)."""
    labels = [str(x) for x in (task.axis_labels or task.labels)]
    chosen = result.chosen_predicted
    if len(labels) >= MIN_TASKS:
        files, figures = draw_many_task_front(task, result, labels, pdf)
    else:
        files = {"pareto_front.png": "front (predicted) over the evaluated merges"}
        figures = plotting.plot_front(task.Y, result.F_front, labels, task.metric.axis_label,
                                      task.folder / "pareto_front.png",
                                      front_real=result.F_real, chosen=chosen,
                                      title=task.title, pdf=pdf,
                                      chosen_real=result.chosen_real)
    if not task.surrogate_figures:
        return files, figures
    predictors = [s.predict for s in result.surrogates]
    files["surrogate_fit.png"] = "surrogate predictions against evaluated metrics"
    figures += plotting.plot_true_vs_predicted(
        task.Y, np.column_stack([p(task.C) for p in predictors]), labels,
        task.metric.axis_label,
        task.folder / "surrogate_fit.png", pdf=pdf)
    if task.C.shape[1] == 2:
        files["surrogate_contours.png"] = ("surrogate over the coefficient box, with the "
                                           "evaluated points coloured by their true value")
        low, high = task.sample_box
        figures += plotting.plot_surrogate_fit(task.C, task.Y, predictors, labels,
                                               task.metric.axis_label,
                                               task.folder / "surrogate_contours.png",
                                               low=low, high=high, pdf=pdf)
    return files, figures


def draw_many_task_front(task: "FrontTask", result: "FrontResult", labels: list[str],
                         pdf: bool) -> tuple[dict[str, str], list[Path]]:
    """Four or more tasks: the lower-triangle scatter matrix (``pareto_front.png``) and the
    parallel coordinates (``pareto_front_parallel.png``), with the pick, the pretrained model,
    the fine-tuned models and the best evaluated equal-coefficient merge (task arithmetic)."""
    C, Y = task.C, task.Y
    if result.F_real is not None:
        C, Y = np.vstack([C, result.C_front[result.reevaluated]]), np.vstack([Y, result.F_real])
    low, high = task.sample_box
    ta = best_equal_merge(C, Y, task.weights, task.metric.sense, EQUAL_SPREAD * (high - low))
    files = {}
    files["pareto_front.png"] = ("every task pair: the front (predicted and real), the "
                                        "evaluated merges, the pick and the reference models")
    files["pareto_front_parallel.png"] = (
        "parallel coordinates of the front, each task between the pretrained (0) and its "
        "fine-tuned model (1) where evaluated; the pick and the reference models")
    return files, plot_many_task_front(
        task.Y, result.F_front, labels, task.metric.name, task.folder / "pareto_front.png",
        task.folder / "pareto_front_parallel.png", sense=task.metric.sense,
        front_real=result.F_real, pick_pred=result.chosen_predicted,
        pick_real=result.chosen_real, pretrained=task.pretrained,
        finetuned=finetuned_rows(task.C, task.Y), task_arithmetic=None if ta is None else Y[ta],
        title=task.title, pdf=pdf)


def write_run_json(config: "RunConfig", run: "RunDirectory", summary: dict[str, Any],
                   timings: dict[str, float], started: float,
                   extra: dict[str, Any] | None = None) -> Path:
    """``run.json``: the arguments, versions, seed, timings, summary and what each file is."""
    timings["total_seconds"] = time.perf_counter() - started
    previous = previous_run_record(run.path / "run.json")
    info = {
        "method": config.method, "exp_id": config.exp_id, "seed": config.seed,
        "models": list(config.models), "datasets": list(config.datasets),
        "metric": config.metric.name, "bounds": [config.low, config.high],
        "search_bounds": [config.search_low, config.search_high], "pick": config.pick,
        "device": config.evaluation.device, "arguments": config.arguments,
        "merge_method": config.evaluation.merge_method.record(),
        "versions": versions(), "timings": timings, "summary": summary, **(extra or {}),
    }
    if not config.metric.labels:
        info["labels"] = (f"read for reporting only: the front, the pick (and nested's "
                          f"pairing) use {config.metric.name}, which reads no label; accuracy "
                          "and loss are recorded beside it")
    if previous:
        changed = changed_settings(previous.get("arguments", {}), config.arguments)
        info["changed_since_previous"] = changed
        if changed:
            print(f"{run.path}: settings changed since the previous run there: " + ", ".join(
                f"{k} {v['previous']} -> {v['now']}" for k, v in changed.items()))
    if "evaluation" in info:
        info |= evaluation_record(previous, info["evaluation"])
    removed = remove_stale_outputs(run.path, previous.get("outputs", {}), run.outputs)
    if removed:
        print(f"{run.path}: removed the previous run's {', '.join(removed)} (this run does "
              "not write them)")
    return run.write_run_json(info)


# What run.json must hold for the next run there to read it: its fields of these types.
RECORD_FIELDS = {"arguments": dict, "outputs": dict, "evaluation_history": list}


def previous_run_record(path: Path) -> dict[str, Any]:
    """The run.json an earlier run left (read when this run has finished: its settings, its
    files and its evaluation record). A damaged one is set aside with a line, not an error,
    so the run that just finished still writes its own."""
    try:
        previous, why = read_json(path, {}) or {}, "not a run record"
    except MAPError:  # read_json's one line for a file that does not parse
        previous, why = None, "not valid JSON"
    if isinstance(previous, dict) and all(isinstance(previous.get(k, t()), t) and (
            t is not list or all(isinstance(h, dict) for h in previous.get(k, [])))
            for k, t in RECORD_FIELDS.items()):
        return previous
    print(f"{path}: the previous run's record is {why}; its settings, files and evaluation "
          "history are not carried over")
    return {}


# Files a run directory keeps whatever the run: the evaluation stores (each point is
# evaluated once per directory), what guards their values, the lock and run.json itself.
KEPT_SUFFIXES = ("scaling_results.json", "scaling_results.jsonl")
KEPT_NAMES = ("run.json", "fingerprint.json", ".lock", ".eval_cache")


def remove_stale_outputs(folder: Path, previous: dict[str, str], current: dict[str, str]
                         ) -> list[str]:
    """Remove the files an earlier run in ``folder`` listed and this run did not write (a
    reused --exp-id), so every file there belongs to the run that last finished. Stores
    and folders (nested rounds, which hold stores) stay; returns the names removed."""
    removed = []
    for name in previous:
        if name in current or name.endswith("/") or name in KEPT_NAMES or \
                name.endswith(KEPT_SUFFIXES):
            continue
        path = folder / name
        if not path.resolve().is_relative_to(folder.resolve()):  # a run.json edited by hand
            continue
        if path.is_file():
            path.unlink()
            removed.append(name)
            if path.with_suffix(".pdf").is_file():  # --pdf's copy of a figure
                path.with_suffix(".pdf").unlink()
    return removed


IGNORED_SETTINGS = ("exp_id",)


def changed_settings(previous: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """{setting: {"previous", "now"}} of the arguments that differ from the previous run's."""
    now = jsonable(now)
    return {k: {"previous": previous.get(k), "now": now.get(k)}
            for k in sorted(set(previous) | set(now))
            if k not in IGNORED_SETTINGS and previous.get(k) != now.get(k)}


def evaluation_record(previous: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """``evaluation_history`` (one entry per invocation that finished in this directory:
    points, images and seconds) and ``evaluation_total`` over them; ``evaluation`` stays
    this invocation's full statistics."""
    points = int(stats.get("points", stats.get("jobs", 0)))  # local engine | Ray pool
    entry = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "points": points,
             "merges": int(stats.get("merges", 0)), "images": int(stats.get("images", 0)),
             "forward_seconds": float(stats.get("forward_seconds_mean") or 0.0) * points,
             "merge_seconds": float(stats.get("merge_seconds_mean") or 0.0)
             * int(stats.get("merges", 0))}
    summed = ("points", "merges", "images", "forward_seconds", "merge_seconds")
    # an entry edited or damaged by hand is left out rather than failing the finished run
    earlier = [h for h in previous.get("evaluation_history", []) if isinstance(h, dict) and
               all(isinstance(h.get(k), (int, float)) for k in summed)]
    history = [*earlier, entry]
    total = {k: sum(h[k] for h in history) for k in summed}
    total["invocations"] = len(history)
    total["images_per_second"] = (total["images"] / total["forward_seconds"]
                                  if total["forward_seconds"] else 0.0)
    return {"evaluation_history": history, "evaluation_total": total}


def print_summary(config: "RunConfig", run: "RunDirectory", summary: dict[str, Any]) -> None:
    chosen = summary["chosen"]
    print(f"\nRun directory: {run.path}")
    print(f"Evaluations: {summary['n_evaluations']}; surrogate R2: " + ", ".join(
        f"{d} {r:.3f}" for d, r in summary["surrogate_r2"].items()))
    source = chosen.get("from", "front")
    where = "" if source == "front" else f", the best evaluated model (from the {source})"
    print(f"Preference pick ({config.pick}{where}): c = (" + ", ".join(
        f"{v:.3f}" for v in chosen["coefficients"].values()) + ")")
    for d in config.datasets:
        real = "" if chosen["real"] is None else f", real {chosen['real'][d]:.4f}"
        print(f"  {d} {config.metric.name}: predicted {chosen['predicted'][d]:.4f}{real}")
    for line in (summary.get("pick_check") or {}).get("messages", []):
        print(line)
    line = floor_line(summary)
    if line:
        print(line)
    print_handed_over(run.path, summary)
    print_standing(config, summary)


def print_handed_over(run_path: Path, summary: dict[str, Any]) -> None:
    """Where the model handed over was written, and --report-test's table."""
    if (run_path / "final_model" / "finetuned.pt").exists():
        print(f"Merged model: {run_path / 'final_model' / 'finetuned.pt'}")
    if summary.get("test"):
        from src.run.report_on_test import lines

        print("\n".join(lines(summary["test"])))


def floor_line(summary: dict[str, Any]) -> str | None:
    """--pick-floor task-arithmetic: one line on what the floor did to the model handed over
    (None without a floor, or without an evaluated pick and its check)."""
    chosen, check = summary["chosen"], summary.get("pick_check") or {}
    floor = (chosen.get("floor") or {}).get("task_arithmetic")
    if floor is None or chosen.get("at_or_above_floor") is None or not check.get("pick"):
        return None
    ta = f"task arithmetic at its best evaluated lambda (mean {floor['mean']:.4f}, worst " \
         f"{floor['worst']:.4f})"
    if not chosen["at_or_above_floor"]:
        return (f"Pick floor: no evaluated model that keeps the pretrained model's tasks is at "
                f"or above {ta} on both; the pick is the rule's among the others")
    pick = check["pick"]
    same = (check.get("task_arithmetic") or {}).get("coefficients") == pick["coefficients"]
    if not same:
        return (f"Pick floor: the model handed over is at or above {ta} on both: mean "
                f"{pick['mean']:.4f}, worst {pick['worst']:.4f}")
    from src.core.pick_check import weighted_mean, worst_task

    real = (chosen.get("front_pick") or {}).get("real")
    missed = ""
    if real is not None:
        y = np.array(list(real.values()))
        weights = [chosen["preference"][d] for d in real]
        missed = (f"; the front's pick (mean {weighted_mean(y, weights)[0]:.4f}, worst "
                  f"{worst_task(y, check['sense'])[0]:.4f}) is not, on the evaluation data")
    return (f"Pick floor: no other evaluated merge is at or above {ta} on both, so TA itself "
            f"is handed over{missed}")


SWEEP_FAMILY = "TA, lambda sweep"  # the baselines' λ sweep: in baselines.json, not the table


def print_standing(config: "RunConfig", summary: dict[str, Any]) -> None:
    """With --truth, the HV ratio of the run's real fronts to the grid's; with --baselines,
    each baseline's metrics and whether MAP's real front dominates it."""
    scores = summary.get("indicators")
    if scores:
        grid = scores.get("truth_front", {})
        print(f"\nAgainst the grid (--truth {scores['truth']}: {scores['truth_points']} merges, "
              f"{grid.get('merges', '?')} on its front):")
        print(f"  {'real front':<28} {'HV ratio':>8} {'IGD+':>8} {'points':>6}")
        for label, key in (("re-evaluated front points", "reevaluated"),
                           ("+ sampled merges", "reevaluated_and_sampled")):
            row = scores.get(key)
            if row and "hv_ratio" in row:
                print(f"  {label:<28} {row['hv_ratio']:>8.3f} {row['igd_plus']:>8.4f} "
                      f"{row['n_real']:>6}")
    baselines = {n: b for n, b in (summary.get("baselines") or {}).items()
                 if b.get("family") != SWEEP_FAMILY}  # its tuned pick stands for the sweep
    if baselines:
        width = max(len(n) for n in baselines) + 2
        print(f"\nBaselines (--baselines; {config.metric.name}; dominated: by MAP's real "
              "front):")
        print(f"  {'baseline':<{width}}" + "".join(f"{d:>12}" for d in config.datasets)
              + f"{'dominated':>11}{'distance':>10}")
        for name, entry in baselines.items():
            print(f"  {name:<{width}}" + "".join(f"{entry['metrics'][d]:>12.4f}"
                                                 for d in config.datasets)
                  + f"{'yes' if entry['dominated_by_map'] else 'no':>11}"
                  + f"{entry['distance_to_map_front']:>10.4f}")
