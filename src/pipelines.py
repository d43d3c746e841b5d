"""run_map / run_bayesian / run_nested: the one place where the algorithms meet the models.

Every input is checked before anything is loaded or written; the engine is built once per
run; every evaluated point is stored as soon as it is done, so a killed run resumes.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from src import bayesian, nested, pareto, plotting, sampling
from map_common.errors import MAPError
from src.results import (EVALUATION_SETTINGS, RunDirectory, ScalingResults, check_fingerprint,
                         evaluation_fingerprint, front_json, load_preference, read_json,
                         record_fingerprint, versions, write_json)
from src.surrogate import QuadraticSurrogate, fit_surrogates, link_for_metric

NESTED_PAIR_POINTS = 20


# ------------------------------------------------------------------ set-up and checks
@dataclass
class Setup:
    """The resolved inputs of a run."""

    args: argparse.Namespace
    models: list[str]    # fine-tuned models merged (task vectors), in order
    datasets: list[str]  # evaluation dataset of each model, same order
    metric: str
    link: str
    sense: str
    low: float
    high: float
    model_name: str
    save: str
    pretrained: str
    data_location: str
    device: str
    run: RunDirectory
    preference: dict[str, float] = field(default_factory=dict)  # keyed by dataset
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def T(self) -> int:
        return len(self.models)


def resolve(args: argparse.Namespace) -> Setup:
    """Check every input and fill in the defaults; raises MAPError before anything is written."""
    import args as cli  # the defaults live in args.py

    from task_vectors.checkpoints import finetuned_path, require_file
    from task_vectors.datasets.registry import check_dataset_name

    # Settings first: a typo should not wait for the demo zoo to be built.
    metric = args.metric_type
    link = link_for_metric(metric)
    low, high = map(float, args.bounds)
    if not low < high:
        raise MAPError(f"--bounds {low} {high}: LOW must be below HIGH")
    if args.point is not None and args.point <= 0:
        raise MAPError(f"--point {args.point}: the number of points must be positive")
    if args.reevaluate < 0:
        raise MAPError(f"--reevaluate {args.reevaluate}: must be 0 or more")
    if args.n_gen <= 0:
        raise MAPError(f"--n-gen {args.n_gen}: must be positive")
    if args.demo:
        from task_vectors.zoo import ensure_zoo

        zoo = ensure_zoo(args.zoo_dir)
        args.model, args.save = zoo.model_name, str(zoo.path)
        args.pretrained_checkpoint = str(zoo.path / "zeroshot.pt")
        args.data_location = str(zoo.path)
        default_models = cli.DEMO_NESTED if args.method == "nested" else cli.DEMO_PAIR
    else:
        default_models = cli.DEFAULT_DATASETS
    models = list(args.zeroshot_merge_models or default_models)
    datasets = list(args.zeroshot_eval_datasets or models)
    if len(models) != len(datasets):
        raise MAPError(f"{len(models)} merge models ({' '.join(models)}) but {len(datasets)} "
                       f"eval datasets ({' '.join(datasets)}); give one eval dataset per model")
    if len(set(models)) != len(models):
        raise MAPError(f"a merge model is listed twice: {' '.join(models)}")
    if len(models) < 2:
        raise MAPError(f"MAP merges at least 2 models; got {len(models)} ({' '.join(models)})")
    for name in datasets:
        check_dataset_name(name)
    T = len(models)
    if args.method == "map" and args.point is not None and args.point < sampling.min_points(T):
        raise MAPError(f"--point {args.point} is fewer than the {sampling.min_points(T)} "
                       f"parameters of a quadratic surrogate in {T} coefficients")
    if args.method == "bayesian":
        bayesian.check_schedule(T, *bayes_schedule(args, T))
    if args.method == "nested" and args.point is not None and args.point < sampling.min_points(2):
        raise MAPError(f"--point {args.point}: nested mode needs at least "
                       f"{sampling.min_points(2)} points per pair")
    preference = nested.validate_preference(load_preference(args.preference), datasets)

    check_model_name(args.model)
    save = args.save
    pretrained = args.pretrained_checkpoint or str(Path(save) / "zeroshot.pt")
    require_file(pretrained, "pretrained checkpoint (--pretrained-checkpoint)")
    for model in models:
        require_file(finetuned_path(save, model), f"fine-tuned checkpoint of '{model}'")
    device = args.device or default_device()
    check_device(device)
    return Setup(args=args, models=models, datasets=datasets, metric=metric, link=link,
                 sense=pareto.sense_for_metric(metric), low=low, high=high,
                 model_name=args.model, save=save, pretrained=pretrained,
                 data_location=args.data_location, device=device,
                 run=RunDirectory(args.results_path, args.exp_id, models),
                 preference=preference)


def check_model_name(model_name: str) -> None:
    if model_name.startswith("local-dir:"):
        return
    import open_clip

    if model_name not in open_clip.list_models():
        raise MAPError(f"cannot build open_clip model '{model_name}': unknown architecture "
                       "(e.g. ViT-B-32, ViT-B-16, ViT-L-14, or local-dir:<folder>)")


def check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise MAPError(f"--device {device}: not a device (cpu, cuda, cuda:1, ...)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise MAPError(f"--device {device}: CUDA is not available on this machine")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise MAPError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bayes_schedule(args: argparse.Namespace, T: int) -> tuple[int, int, int]:
    n_initial, n_update, n_iter = bayesian.default_schedule(T)
    return (args.bayes_initial_pts if args.bayes_initial_pts is not None else n_initial,
            args.bayes_update_pts if args.bayes_update_pts is not None else n_update,
            args.bayes_iter if args.bayes_iter is not None else n_iter)


def build_engine(setup: Setup):
    """Load checkpoints, heads and evaluation sets once."""
    from task_vectors.checkpoints import finetuned_path
    from task_vectors.engine import MergeEngine
    from task_vectors.heads import get_zero_shot_head, release_text_encoder

    start = time.perf_counter()
    args = setup.args
    check_fingerprint(setup.run.path, run_fingerprint(setup))  # before loading: refuse early
    if args.demo and setup.device == "cpu":
        import torch

        torch.set_num_threads(1)  # the demo model's ops are tiny: threads only add overhead
    # A cached head is reused only if it was built for this model (or carries no tag).
    heads = {d: get_zero_shot_head(d, setup.model_name, setup.save, setup.data_location,
                                   device=setup.device, openclip_cachedir=args.openclip_cachedir)
             for d in setup.datasets}
    release_text_encoder()
    record_fingerprint(setup.run.path, run_fingerprint(setup))  # the heads as evaluated
    engine = MergeEngine.from_checkpoints(
        model_name=setup.model_name, pretrained=setup.pretrained,
        finetuned={m: str(finetuned_path(setup.save, m)) for m in setup.models},
        heads=heads, datasets=setup.datasets, data_location=setup.data_location,
        device=setup.device, batch_size=args.batch_size,
        max_eval_samples=args.max_eval_samples, num_workers=args.num_workers,
        openclip_cachedir=args.openclip_cachedir, cache_dir=args.cache_dir)
    setup.timings["load_seconds"] = time.perf_counter() - start
    return engine


def run_fingerprint(setup: Setup) -> dict:
    """What decides an evaluation's value in this run (see results.evaluation_fingerprint)."""
    from task_vectors.checkpoints import finetuned_path, head_path
    from task_vectors.zoo import recipe_key

    args = setup.args
    checkpoints = {"pretrained checkpoint": setup.pretrained,
                   **{f"fine-tuned checkpoint of {m}": finetuned_path(setup.save, m)
                      for m in setup.models},
                   **{f"head of {d}": head_path(setup.save, d) for d in setup.datasets}}
    return evaluation_fingerprint(
        setup.model_name, checkpoints=checkpoints, datasets=setup.datasets,
        data_location=setup.data_location, max_eval_samples=args.max_eval_samples,
        settings={k: getattr(args, k) for k in EVALUATION_SETTINGS if hasattr(args, k)},
        zoo_recipe=recipe_key() if args.demo else None)


# ------------------------------------------------------------------ evaluation
def evaluate_points(engine, store: ScalingResults, C: np.ndarray, datasets: Sequence[str],
                    coefficients: Callable[[np.ndarray], np.ndarray] = lambda c: c,
                    desc: str = "evaluating merges") -> list[dict]:
    """Evaluate the points of C not yet in ``store`` (each stored as soon as it is done).

    ``coefficients`` maps a stored point to the engine's coefficients over the original
    task vectors (identity, except for nested pairs).
    """
    todo = [c for c in C if store.get(c) is None]
    for c in tqdm(todo, desc=desc, unit="model", disable=not todo):
        store.add(c, engine.evaluate_at(coefficients(np.asarray(c, dtype=float)), datasets))
    return [store.get(c) for c in C]


def metric_matrix(evals: Sequence[dict], datasets: Sequence[str], metric: str) -> np.ndarray:
    return np.array([[e[d][metric] for d in datasets] for e in evals], dtype=float)


def evaluate_metric(setup: Setup, engine, store: ScalingResults, C: np.ndarray) -> np.ndarray:
    """[n, T] of the run's metric at the points of C (evaluating only the missing ones)."""
    return metric_matrix(evaluate_points(engine, store, C, setup.datasets), setup.datasets,
                         setup.metric)


# ------------------------------------------------------------------ front and outputs
def search_front(surrogates: Sequence[QuadraticSurrogate], setup: Setup, K: int,
                 seed_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    start = time.perf_counter()
    C_front, F_front = pareto.nsga3_front(
        surrogates, [setup.sense] * K, low=setup.low, high=setup.high,
        n_gen=setup.args.n_gen, seed=setup.args.seed + seed_offset)
    setup.timings["search_seconds"] = setup.timings.get("search_seconds", 0.0) + \
        time.perf_counter() - start
    return C_front, F_front


def reevaluation_indices(n_front: int, chosen: int, n: int) -> list[int]:
    """``n`` front points spread along the front (sorted by the first objective), always
    including the preference pick."""
    if n <= 0 or n_front == 0:
        return []
    spread = np.unique(np.round(np.linspace(0, n_front - 1, n)).astype(int)).tolist()
    if chosen not in spread:
        spread[int(np.argmin([abs(i - chosen) for i in spread]))] = chosen
    return sorted(set(spread))


def finish_front(setup: Setup, engine, C: np.ndarray, Y: np.ndarray,
                 surrogates: Sequence[QuadraticSurrogate]) -> dict[str, Any]:
    """Shared tail of map and bayesian modes: surrogate params, NSGA-III front, preference
    pick, re-evaluation of front points, figures, and the summary."""
    run, datasets, T = setup.run, setup.datasets, setup.T
    r2 = {d: float(s.score(C, Y[:, k])) for k, (d, s) in enumerate(zip(datasets, surrogates))}
    write_json(run.params, {d: s.params_dict() | {"r2": r2[d]}
                            for d, s in zip(datasets, surrogates)})
    C_front, F_front = search_front(surrogates, setup, T)
    write_json(run.pareto_front, front_json(C_front, F_front))
    weights = [setup.preference[d] for d in datasets]
    chosen = pareto.pick_by_preference(F_front, weights, [setup.sense] * T)

    idx = reevaluation_indices(len(C_front), chosen, setup.args.reevaluate)
    F_real = None
    if idx:
        store = ScalingResults(run.file(f"{run.names}pareto_front_real.json",
                                        "front points merged and evaluated for real"),
                               setup.models)
        evals = evaluate_points(engine, store, C_front[idx], datasets, desc="re-evaluating front")
        F_real = metric_matrix(evals, datasets, setup.metric)
    real_of_chosen = F_real[idx.index(chosen)] if idx else None

    figures = draw_map_figures(setup, C, Y, surrogates, F_front, F_real, F_front[chosen])
    summary = {
        "n_evaluations": int(len(C)),
        "surrogate_r2": r2,
        "front_size": int(len(C_front)),
        "chosen": {"coefficients": dict(zip(setup.models, C_front[chosen].tolist())),
                   "predicted": dict(zip(datasets, F_front[chosen].tolist())),
                   "real": None if real_of_chosen is None else
                   dict(zip(datasets, real_of_chosen.tolist())),
                   "preference": dict(zip(datasets, weights))},
        "reevaluated": None if F_real is None else {
            "coefficients": C_front[idx].tolist(), "predicted": F_front[idx].tolist(),
            "real": F_real.tolist(),
            "mean_abs_error": float(np.abs(F_real - F_front[idx]).mean())},
        "figures": [str(f) for f in figures],
    }
    return summary


def draw_map_figures(setup: Setup, C, Y, surrogates, F_front, F_real, chosen) -> list[Path]:
    run, names, pdf = setup.run, setup.datasets, setup.args.pdf
    figures = plotting.plot_front(
        Y, F_front, names, setup.metric,
        run.file("pareto_front.png", "front (predicted) over the evaluated merges"),
        front_real=F_real, chosen=chosen, pdf=pdf)
    predictors = [s.predict for s in surrogates]
    figures += plotting.plot_true_vs_predicted(
        Y, np.column_stack([p(C) for p in predictors]), names, setup.metric,
        run.file("surrogate_fit.png", "surrogate predictions against evaluated metrics"),
        pdf=pdf)
    if setup.T == 2:
        figures += plotting.plot_surrogate_fit(
            C, Y, predictors, names, setup.metric,
            run.file("surrogate_contours.png", "surrogate over the coefficient box, with the "
                                               "evaluated points coloured by their true value"),
            low=setup.low, high=setup.high, pdf=pdf)
    return figures


def write_run_json(setup: Setup, method: str, summary: dict[str, Any], started: float) -> None:
    setup.timings["total_seconds"] = time.perf_counter() - started
    setup.run.write_run_json({
        "method": method, "exp_id": setup.args.exp_id, "seed": setup.args.seed,
        "models": setup.models, "datasets": setup.datasets, "metric": setup.metric,
        "bounds": [setup.low, setup.high], "device": setup.device,
        "arguments": vars(setup.args), "versions": versions(),
        "timings": setup.timings, "summary": summary,
    })


def print_summary(setup: Setup, summary: dict[str, Any]) -> None:
    chosen = summary["chosen"]
    print(f"\nRun directory: {setup.run.path}")
    print(f"Evaluations: {summary['n_evaluations']}; surrogate R2: " + ", ".join(
        f"{d} {r:.3f}" for d, r in summary["surrogate_r2"].items()))
    print("Preference pick: c = (" + ", ".join(
        f"{v:.3f}" for v in chosen["coefficients"].values()) + ")")
    for d in setup.datasets:
        real = "" if chosen["real"] is None else f", real {chosen['real'][d]:.4f}"
        print(f"  {d} {setup.metric}: predicted {chosen['predicted'][d]:.4f}{real}")


# ------------------------------------------------------------------ modes
def run_map(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    setup = resolve(args)
    T = setup.T
    n_points = args.point or sampling.default_points(T)
    C = sampling.design(T, n_points, low=setup.low, high=setup.high,
                        n_diagonal=max(1, n_points // 10), seed=args.seed)
    engine = build_engine(setup)
    store = ScalingResults(setup.run.scaling_results, setup.models)
    t0 = time.perf_counter()
    Y = evaluate_metric(setup, engine, store, C)
    setup.timings["evaluation_seconds"] = time.perf_counter() - t0
    surrogates = fit_surrogates(C, Y, setup.link)
    summary = finish_front(setup, engine, C, Y, surrogates)
    write_run_json(setup, "map", summary, started)
    print_summary(setup, summary)
    return summary


def run_bayesian(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    setup = resolve(args)
    T = setup.T
    n_initial, n_update, n_iter = bayes_schedule(args, T)
    engine = build_engine(setup)
    store = ScalingResults(setup.run.scaling_results, setup.models)
    C_done, Y_done = store.arrays(setup.datasets, setup.metric)
    rounds_path = setup.run.file("bayesian_rounds.json", "per round: new points, bin "
                                 "posterior, bin scores, surrogate error")
    records: list[dict] = []

    def on_round(record: dict) -> None:
        records.append(record)
        write_json(rounds_path, records)

    t0 = time.perf_counter()
    result = bayesian.run_rounds(
        lambda C_new: evaluate_metric(setup, engine, store, C_new), T, n_initial=n_initial, n_update=n_update, n_iter=n_iter, link=setup.link,
        low=setup.low, high=setup.high, seed=args.seed, on_round=on_round,
        C_done=C_done if len(C_done) else None, Y_done=Y_done if len(Y_done) else None)
    setup.timings["evaluation_seconds"] = time.perf_counter() - t0
    write_json(rounds_path, result.records)
    summary = finish_front(setup, engine, result.C, result.Y, result.surrogates)
    summary["figures"] += [str(f) for f in plotting.plot_bayesian_rounds(
        result.C, result.round_of_point, setup.datasets,
        setup.run.file("bayesian_rounds.png", "where each round sampled"),
        n_bins=bayesian.bins_per_angle(T), pdf=args.pdf)]
    summary["schedule"] = {"initial": n_initial, "update": n_update, "iterations": n_iter}
    write_run_json(setup, "bayesian", summary, started)
    print_summary(setup, summary)
    return summary


def run_nested(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    setup = resolve(args)
    run, T = setup.run, setup.T
    dataset_of = dict(zip(setup.models, setup.datasets))
    preference = {m: setup.preference[dataset_of[m]] for m in setup.models}
    n_pair = args.point or NESTED_PAIR_POINTS
    engine = build_engine(setup)
    eye = np.eye(T)

    # Single-task accuracy of each fine-tuned model on its own validation set.
    singles = ScalingResults(run.file("single_task_scaling_results.json",
                                      "each fine-tuned model on its own dataset"), setup.models)
    single_accuracy = {}
    for i, m in enumerate(tqdm(setup.models, desc="fine-tuned models", unit="model")):
        if singles.get(eye[i]) is None:
            singles.add(eye[i], engine.evaluate_at(eye[i], [dataset_of[m]]))
        single_accuracy[m] = singles.get(eye[i])[dataset_of[m]]["accuracy"]

    tree_path = run.file("merge_tree.json", "the merge tree: pairs, coefficients, preferences, "
                                            "measured accuracies, per round")
    stored = read_json(tree_path, {}) or {}
    records: list[dict] = list(stored.get("rounds", []))

    def save_tree() -> None:
        write_json(tree_path, {"models": setup.models, "datasets": setup.datasets,
                               "preference": preference, "single_accuracy": single_accuracy,
                               "rounds": records})

    def measure(coefficients: np.ndarray, tasks: tuple[str, ...]) -> dict[str, float]:
        evals = engine.evaluate_at(coefficients, [dataset_of[t] for t in tasks])
        return {t: evals[dataset_of[t]]["accuracy"] for t in tasks}

    def run_pair(a: nested.PoolModel, b: nested.PoolModel, r: int):
        return map_on_pair(setup, engine, a, b, r, n_pair, dataset_of, preference)

    def on_round(record: dict) -> None:
        records.append(record)
        save_tree()

    result = nested.run_nested(list(setup.models), single_accuracy, preference, run_pair,
                               measure, on_round=on_round, completed_rounds=list(records))
    save_tree()
    final = result.final
    engine.set_coefficients(final.coefficients)
    final_dir = run.path / "final_model"
    from task_vectors.checkpoints import save_module

    save_module(engine.encoder, final_dir / "finetuned.pt")
    engine.encoder.to(setup.device)
    final_info = {"coefficients": dict(zip(setup.models, final.coefficients.tolist())),
                  "accuracy": {dataset_of[t]: v for t, v in final.measured.items()},
                  "single_task_accuracy": {dataset_of[t]: v for t, v in single_accuracy.items()}}
    write_json(final_dir / "merge.json", final_info)
    run.outputs["final_model/finetuned.pt"] = "the final merged encoder (task_vectors pickle)"
    run.outputs["final_model/merge.json"] = "its coefficients on every task vector, accuracies"
    figures = plotting.plot_merge_tree(result.records, run.file("merge_tree.png",
                                       "the merge tree"), leaf_accuracy=single_accuracy,
                                       pdf=args.pdf)
    figures += plotting.plot_nested_summary(
        final_info["accuracy"], final_info["single_task_accuracy"],
        run.file("nested_summary.png", "final merged model vs each fine-tuned model"),
        pdf=args.pdf)
    # singles + per round: the pair's design and one measurement of the merged model
    n_evals = T + sum(rec["info"]["n_points"] + 1 for rec in result.records)
    summary = {"n_evaluations": n_evals, "rounds": len(result.records),
               "final": final_info, "figures": [str(f) for f in figures]}
    write_run_json(setup, "nested", summary, started)
    print(f"\nRun directory: {run.path}")
    print(f"Merged {T} models in {len(result.records)} rounds with {n_evals} evaluations.")
    print("Final coefficients: " + ", ".join(f"{m} {c:.3f}" for m, c in
                                             final_info["coefficients"].items()))
    for d, acc in final_info["accuracy"].items():
        print(f"  {d}: accuracy {acc:.4f} (fine-tuned {final_info['single_task_accuracy'][d]:.4f})")
    return summary


def map_on_pair(setup: Setup, engine, a: nested.PoolModel, b: nested.PoolModel, r: int,
                n_points: int, dataset_of: dict[str, str], preference: dict[str, float]):
    """MAP on one pair of the nested tree, in its own round folder."""
    folder = setup.run.path / f"round{r + 1}"
    names = f"{a.name}_{b.name}"
    setup.run.outputs[f"round{r + 1}/"] = (f"MAP on the pair {names}: scaling results, "
                                           "surrogate params, front, figure, chosen.json")
    tasks = [t for t in setup.models if t in a.tasks or t in b.tasks]
    datasets = [dataset_of[t] for t in tasks]
    store = ScalingResults(folder / f"{names}scaling_results.json", [a.name, b.name])
    C = nested.pair_design(n_points, seed=setup.args.seed + r, low=setup.low, high=setup.high)
    evals = evaluate_points(engine, store, C, datasets,
                            coefficients=lambda c: nested.compose_coefficients(
                                a.coefficients, b.coefficients, c),
                            desc=f"round {r + 1}: {a.name} + {b.name}")
    per_task = {t: np.array([e[dataset_of[t]][setup.metric] for e in evals]) for t in tasks}
    Y = nested.side_scores(per_task, a.tasks, b.tasks, preference)
    surrogates = fit_surrogates(C, Y, setup.link)
    write_json(folder / f"{names}_params.json",
               {side: s.params_dict() | {"r2": float(s.score(C, Y[:, k]))}
                for k, (side, s) in enumerate(zip((a.name, b.name), surrogates))})
    C_front, F_front = search_front(surrogates, setup, 2, seed_offset=r)
    write_json(folder / f"{names}pareto_front.json", front_json(C_front, F_front))
    weights = nested.pair_preference(a, b, preference)
    chosen = pareto.pick_by_preference(F_front, weights, [setup.sense] * 2)
    labels = [f"{a.name} ({'+'.join(a.tasks)})", f"{b.name} ({'+'.join(b.tasks)})"]
    figures = plotting.plot_front(Y, F_front, labels, setup.metric,
                                  folder / "pareto_front.png", chosen=F_front[chosen],
                                  title=f"Round {r + 1}", pdf=setup.args.pdf)
    write_json(folder / "chosen.json", {"pair_coefficients": C_front[chosen].tolist(),
                                        "predicted": F_front[chosen].tolist(),
                                        "preference": weights.tolist()})
    info = {"folder": str(folder), "scaling_results": str(store.path),
            "predicted": F_front[chosen].tolist(), "n_points": int(len(C)),
            "figure": str(figures[0])}
    return C_front[chosen], info


MODES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "map": run_map, "bayesian": run_bayesian, "nested": run_nested}


def run(args: argparse.Namespace) -> dict[str, Any]:
    return MODES[args.method](args)
