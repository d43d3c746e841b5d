"""--method nested: merge many models two at a time, MAP on each pair, up a tree.

Level by level (src.core.nested.run_nested): the designs of all of a level's pairs are ONE
evaluate() call, so a pool of Ray workers runs the pairs concurrently; each pair's front is
then solved in its round folder, and the level's merged models are measured in one more
call. Locally the same jobs run one after another: same pairs, coefficients and files."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from src import plotting

from map_common.errors import MAPError
from src.core import local_design, nested
from src.core.pick_check import (EQUAL_SPREAD, at_or_above, best_equal_merge, ta_floor,
                                  weighted_mean, worst_task)
from src.run.config import RunConfig
from src.run.evaluation import evaluate_groups, metric_matrix
from src.core.front import FrontTask, SearchSettings, pick_evaluated, solve_front
from src.modes.common import (RunContext, finish, merged_state, open_run,
                              refuse_other_settings, report_test,
                              write_final_model)
from src.run import report_on_test
from src.run.outputs import print_handed_over, write_solved_front
from src.run.results import NESTED_STORES, ScalingResults, point_key, read_json, write_json

TREE = "merge_tree.json"


def read_tree(path: Path) -> dict:
    """merge_tree.json of an earlier run ({} when there is none); one line when it is not a
    tree this mode wrote (a resume would replay its rounds)."""
    tree = read_json(path, {}) or {}
    if not isinstance(tree, dict) or not isinstance(tree.get("rounds", []), list) or \
            not all(isinstance(r, dict) for r in tree.get("rounds", [])):
        raise MAPError(f"{path}: not a merge tree (expected an object whose rounds are a list "
                       "of round records); move it away to start afresh")
    return tree


def check_stored_rounds(config: RunConfig, tree: dict) -> None:
    """Rounds stored (``tree``: merge_tree.json) by a run on another metric, with another
    --nested-context or other --bounds are refused in one line, before anything is loaded:
    they would be replayed as this run's choices, and a round folder's store is keyed by
    pair names whose merges would then differ."""
    chose_on = tree.get("metric", "accuracy")
    if tree.get("rounds") and chose_on != config.metric.name:
        raise MAPError(f"{config.run_path / TREE}: its rounds chose on {chose_on}, this run "
                       f"chooses on {config.metric.name}; use another --exp-id")
    # a tree written before --nested-context merged its pairs alone
    beside = (tree.get("context") or {}).get("kind", "none")
    if tree.get("rounds") and beside != config.nested_context:
        raise MAPError(f"{config.run_path / TREE}: its pairs were merged with --nested-context "
                       f"{beside}, this run asks for {config.nested_context}; use another "
                       "--exp-id")
    # other bounds: other pair designs and another TA sweep (known before it is evaluated;
    # a tree written before the bounds were recorded is checked by its lambda, later)
    bounds = tree.get("bounds")
    if tree.get("rounds") and bounds is not None and \
            [float(b) for b in bounds] != [config.low, config.high]:
        raise MAPError(f"{config.run_path / TREE}: its pairs were merged with --bounds "
                       f"{bounds[0]:g} {bounds[1]:g}, this run asks for {config.low:g} "
                       f"{config.high:g}; use another --exp-id")


# What decides a round's pick, by the flag that sets it: stored rounds are replayed as this
# run's choices, so a resume must make them the same way.
CHOICE_FLAGS = {"preference": "--preference", "pick": "--pick", "pick_from": "--pick-from",
                "pair_points": "--point", "n_gen": "--n-gen", "seed": "--seed",
                "search_bounds": "--search-bounds"}


def round_choice(config: RunConfig) -> dict[str, Any]:
    """The settings that decide each round's pick (merge_tree.json ``choice``)."""
    return {"preference": dict(zip(config.models, config.preference)), "pick": config.pick,
            "pick_from": config.pick_from, "pair_points": config.pair_points,
            "n_gen": config.n_gen, "seed": config.seed,
            "search_bounds": [config.search_low, config.search_high]}


def _normalised(choice: dict) -> dict:
    """The preference as shares: weights 1:1 and 2:2 pick the same way."""
    pref = choice.get("preference")
    if isinstance(pref, dict) and pref and all(isinstance(v, (int, float)) and v >= 0
                                               for v in pref.values()):
        total = sum(pref.values()) or 1.0
        return {**choice, "preference": {k: v / total for k, v in pref.items()}}
    return choice


def check_stored_choice(config: RunConfig, tree: dict) -> None:
    """Stored rounds picked with another preference, pick rule, design size, search or
    seed are refused in one line, before anything is loaded: a resume replays them, so the
    tree would mix two runs' choices. A tree written before ``choice`` was recorded holds
    its preference only."""
    if not tree.get("rounds"):
        return
    stored = tree.get("choice")
    if not isinstance(stored, dict):
        stored = {"preference": tree.get("preference")}
    refuse_other_settings(config.run_path / TREE, "its rounds were picked", CHOICE_FLAGS,
                          _normalised(stored), _normalised(round_choice(config)))


def check_stored_context(config: RunConfig, tree: dict, context: float | None) -> None:
    """Stored rounds merged beside another λ (another sweep: --bounds changed) are refused."""
    stored = (tree.get("context") or {}).get("lambda")
    if tree.get("rounds") and stored != context:
        raise MAPError(f"{config.run_path / TREE}: its pairs were merged beside task "
                       f"arithmetic's lambda {stored}, this run's sweep gives {context}; use "
                       "another --exp-id")


def run(config: RunConfig) -> dict[str, Any]:
    stored_tree = read_tree(config.run_path / TREE)
    check_stored_rounds(config, stored_tree)
    check_stored_choice(config, stored_tree)
    with open_run(config) as ctx:
        run_dir, T = ctx.run, config.T
        dataset_of = dict(zip(config.models, config.datasets))
        preference = {m: w for m, w in zip(config.models, config.preference)}
        _announce_resume(ctx)
        # Pairing follows accuracy whatever the front's metric (models of similar skill),
        # unless the metric reads no label (entropy): then it follows that metric, and
        # accuracy is read for reporting only.
        pairing = "accuracy" if config.metric.labels else config.metric.name
        singles = _single_evals(ctx, dataset_of)
        single_accuracy = {m: e["accuracy"] for m, e in singles.items()}
        measured: dict[tuple[float, ...], dict] = {}  # a level's merges: evals by coefficients
        ta = _task_arithmetic(ctx, pairing) if _uses_task_arithmetic(config) else None
        context = ta.lam if ta is not None and config.nested_context == "task-arithmetic" \
            else None
        # read again under the run's lock: the rounds this run replays
        stored_tree = read_tree(config.run_path / TREE)
        check_stored_context(config, stored_tree, context)
        plans: dict[int, PairPlan] = {}  # this run's rounds, by index

        tree_path = run_dir.file(TREE, "the merge tree: pairs, coefficients, preferences, "
                                       "measured accuracies (entropies when pairing follows "
                                       "entropy), per round")
        records: list[dict] = list(stored_tree.get("rounds", []))
        for k, rec in enumerate(records):  # rounds a resume does not run again
            run_dir.outputs[f"round{k + 1}/"] = _round_description(f"{rec['left']}_{rec['right']}")

        def save_tree() -> None:
            write_json(tree_path, {"models": config.models, "datasets": config.datasets,
                                   "preference": preference, "single_accuracy": single_accuracy,
                                   "metric": config.metric.name, "pairing": pairing,
                                   "bounds": [config.low, config.high],
                                   "choice": round_choice(config),
                                   "context": {"kind": config.nested_context, "lambda": context},
                                   "rounds": records})

        def measure_level(items: list[tuple[np.ndarray, tuple[str, ...]]]
                          ) -> list[dict[str, float]]:
            from task_vectors.evaluators import SubsetJob

            jobs = [SubsetJob(tuple(float(x) for x in nested.with_context(
                        c, tasks, config.models, context)), tuple(dataset_of[t] for t in tasks))
                    for c, tasks in items]
            got = dict(ctx.evaluator.evaluate(jobs, []))
            measured.update({point_key(job.coefficients): got[k] for k, job in enumerate(jobs)})
            return [{t: got[k][dataset_of[t]][pairing] for t in tasks}
                    for k, (_, tasks) in enumerate(items)]

        def on_round(record: dict) -> None:
            records.append(record)
            save_tree()

        result = nested.run_nested(
            list(config.models), {m: e[pairing] for m, e in singles.items()}, preference,
            on_round=on_round,
            completed_rounds=list(records),
            run_level=lambda pairs: _map_on_level(ctx, pairs, dataset_of, preference, context,
                                                  plans),
            measure_level=measure_level)
        save_tree()
        pretrained = _pretrained_evals(ctx)
        floor = None if config.pick_floor != "task-arithmetic" else _final_floor(
            ctx, result, ta, pretrained, singles, pairing, dataset_of, plans)
        if floor is None or floor["handed_over"] == "nested tree":
            coefficients = result.final.coefficients
            final_accuracy = result.final.measured if pairing == "accuracy" else \
                _accuracy_of(ctx, result.final, dataset_of, measured)
        else:
            coefficients = np.array(floor["model"]["coefficients"])
            final_accuracy = {t: floor["model"]["accuracy"][dataset_of[t]] for t in config.models}
        final_info = _write_final_model(ctx, coefficients, final_accuracy, dataset_of,
                                        single_accuracy,
                                        "nested tree" if floor is None else floor["handed_over"])
        final_info |= _references(ctx, pretrained, final_info["accuracy"])
        if context is not None:
            final_info["context"] = {"kind": config.nested_context, "lambda": context}
        if floor is not None:
            final_info["floor"] = floor
        figures = plotting.plot_merge_tree(
            result.records, run_dir.file("merge_tree.png", "the merge tree"),
            leaf_accuracy=single_accuracy, pdf=config.pdf)
        ta_best = None if ta is None else ta.evals[ta.row]
        figures += plotting.plot_nested_summary(
            final_info["accuracy"], final_info["single_task_accuracy"],
            run_dir.file("nested_summary.png", "final merged model vs each fine-tuned model, "
                         "the pretrained model, chance (and task arithmetic at its best "
                         "lambda when the run evaluated its sweep)"),
            pdf=config.pdf, pretrained=final_info["pretrained_accuracy"],
            chance=final_info["chance_accuracy"],
            reference=None if ta_best is None else
            {d: float(ta_best[d]["accuracy"]) for d in config.datasets},
            reference_label=f"task arithmetic, λ = {ta.lam:g}" if ta else "")
        # singles + per round: the pair's design and one measurement of the merged model
        n_evals = T + sum(rec["info"]["n_points"] + 1 for rec in result.records) + \
            (0 if ta is None else len(ta.C)) + \
            (0 if floor is None else floor["segment"]["evaluations"])
        summary = {"n_evaluations": n_evals, "rounds": len(result.records), "pick": config.pick,
                   "final": final_info, "figures": [str(f) for f in figures]}
        if config.report_test:
            models = {report_on_test.HANDED_OVER: coefficients}
            if ta is not None:
                models[report_on_test.ta_label(ta.lam)] = [ta.lam] * T
            summary["test"] = report_test(ctx, models | {"pretrained": [0.0] * T})
        finish(ctx, summary, show=False)
    print(f"\nRun directory: {run_dir.path}")
    print(f"Merged {T} models in {len(result.records)} rounds with {n_evals} evaluations"
          + ("" if context is None else f", each pair beside the other task vectors at task "
             f"arithmetic's lambda {context:g}") + ".")
    if floor is not None:
        print(_floor_line(floor))
    print("Final coefficients: " + ", ".join(f"{m} {c:.3f}" for m, c in
                                             final_info["coefficients"].items()))
    for d, acc in final_info["accuracy"].items():
        chance = final_info["chance_accuracy"].get(d)
        print(f"  {d}: accuracy {acc:.4f} (fine-tuned {final_info['single_task_accuracy'][d]:.4f}"
              f", pretrained {final_info['pretrained_accuracy'][d]:.4f}"
              + ("" if chance is None else f", chance {chance:.4f}") + ")"
              + ("  <- below the pretrained model" if d in final_info["below_pretrained"]
                 else ""))
    print_handed_over(run_dir.path, summary)
    return summary


def _announce_resume(ctx: RunContext) -> None:
    """"resumed: N points stored, M to evaluate": the points in the run's stores (fine-tuned
    models, every pair's design, the pretrained model) against the points the tree needs."""
    from src.run.results import journal_path, read_journal

    stored = sum(len(read_json(p, {}) or {}) + len(read_journal(journal_path(p)))
                 for p in ctx.run.path.glob("**/*scaling_results.json"))
    if stored:
        T = ctx.config.T
        needed = T + (T - 1) * ctx.config.pair_points + 1 + (
            local_design.DIAGONAL_STEPS if _uses_task_arithmetic(ctx.config) else 0)
        print(f"resumed: {stored} points stored, {max(0, needed - stored)} to evaluate",
              flush=True)


def _pretrained_evals(ctx: RunContext) -> dict[str, dict[str, float]]:
    """The pretrained model (c = 0, one more evaluation, stored) on every dataset."""
    config = ctx.config
    store = ctx.run.store(ctx.run.file("pretrained_scaling_results.json", "the pretrained "
                                       "model (c = 0) on every dataset"), config.models)
    return evaluate_groups(ctx.evaluator, [(store, np.zeros((1, config.T)),
                                            list(config.datasets), None)],
                           desc="pretrained model")[0][0]


class TaskArithmetic(NamedTuple):
    """Task arithmetic's sweep c = λ·1 over every task: its points, the pairing metric there,
    every evaluation, and the row of its best λ by the preference-weighted mean."""

    C: np.ndarray
    Y: np.ndarray
    evals: list[dict]
    row: int

    @property
    def lam(self) -> float:
        return float(self.C[self.row, 0])


def _task_arithmetic(ctx: RunContext, pairing: str) -> TaskArithmetic:
    """TA's sweep (local_design's diagonal, λ = 0.1..1.0 of the box) on every dataset, stored:
    the context of --nested-context task-arithmetic and the floor of --pick-floor."""
    config = ctx.config
    store = ctx.run.store(ctx.run.file(NESTED_STORES["task_arithmetic"], "task "
                                       "arithmetic's sweep c = lambda*1 on every dataset (the "
                                       "pairs' context, the pick floor)"), config.models)
    C = local_design.diagonal(config.T, config.low, config.high)
    evals = evaluate_groups(ctx.evaluator, [(store, C, list(config.datasets), None)],
                            desc="task arithmetic's sweep")[0]
    Y = metric_matrix(evals, config.datasets, pairing)
    row = best_equal_merge(C, Y, config.preference, _sense(config, pairing), tol=1e-9)
    return TaskArithmetic(C, Y, evals, row)


def _uses_task_arithmetic(config: RunConfig) -> bool:
    """Whether the run evaluates TA's sweep (the pairs' context or the final model's floor)."""
    return "task-arithmetic" in (config.nested_context, config.pick_floor)


def _sense(config: RunConfig, pairing: str) -> str:
    return "max" if pairing == "accuracy" else config.metric.sense


# the candidates' source name of the merges between the tree's final model and TA
SEGMENT = "segment from the tree's model to task arithmetic"


def _final_floor(ctx: RunContext, result: nested.NestedResult, ta: TaskArithmetic,
                 pretrained: dict, singles: dict, pairing: str, dataset_of: dict[str, str],
                 plans: dict[int, "PairPlan"]) -> dict[str, Any]:
    """--pick-floor task-arithmetic: the tree's final model against TA at its best λ (the
    preference-weighted mean and the worst task of the pairing metric). Below it, the
    merges between the tree's model and TA (nested.SEGMENT_STEPS) are evaluated over every
    task, and the model handed over is the pick rule's best among the evaluated merges over
    every task at or above it (those, the last round's design, TA's sweep), keepers of the
    pretrained model first (front.pick_evaluated): TA itself when no other is."""
    config = ctx.config
    datasets, sense = list(config.datasets), _sense(config, pairing)
    weights = np.asarray(config.preference)
    floor = ta_floor(ta.C, ta.Y, weights, sense, EQUAL_SPREAD * (config.high - config.low))
    tree_y = np.array([result.final.measured[m] for m in config.models])  # pairing metric
    top_C, top_evals = _round_points(ctx, result, len(result.records) - 1, dataset_of, plans)
    candidates = [(top_C, metric_matrix(top_evals, datasets, pairing),
                   f"round {len(result.records)} design"), (ta.C, ta.Y, "task arithmetic")]
    seg_C, seg_evals = np.zeros((0, config.T)), []
    if floor is not None and not at_or_above(tree_y[None], floor, weights, sense)[0]:
        seg_C = nested.segment_to(result.final.coefficients, ta.C[ta.row])
        seg_evals = _segment(ctx, seg_C)
        candidates.insert(0, (seg_C, metric_matrix(seg_evals, datasets, pairing), SEGMENT))
    # pick_evaluated adds the pretrained model (c = 0) to the candidates
    evals_of = {point_key(c): e for c, e in zip(
        np.vstack([seg_C, top_C, ta.C, np.zeros(config.T)]),
        [*seg_evals, *top_evals, *ta.evals, pretrained])}
    pre = np.array([pretrained[d][pairing] for d in datasets])
    best = np.array([singles[m][pairing] for m in config.models])

    def choose(groups):
        ev = pick_evaluated(groups, pre, weights, [sense] * config.T, config.pick, pre, best,
                            [], floor)
        return ev.coefficients, ev.real, ev.source

    c, y, source = nested.hand_over((result.final.coefficients, tree_y), candidates, floor,
                                    weights, sense, choose)
    model = {"coefficients": c.tolist(), "source": source,
             "mean": float(weighted_mean(y, weights)[0]), "worst": float(worst_task(y, sense)[0])}
    if source != "nested tree":  # the tree's model: its accuracy is the tree's measurement
        model["accuracy"] = {d: float(evals_of[point_key(c)][d]["accuracy"]) for d in datasets}
    return {"task_arithmetic": {"lambda": ta.lam, "mean": floor[0], "worst": floor[1]},
            "tree": {"mean": float(weighted_mean(tree_y, weights)[0]),
                     "worst": float(worst_task(tree_y, sense)[0]),
                     "at_or_above": source == "nested tree"},
            "metric": pairing, "handed_over": source, "model": model,
            "segment": {"steps": list(nested.SEGMENT_STEPS) if len(seg_C) else [],
                        "evaluations": len(seg_C)}}


def _segment(ctx: RunContext, C: np.ndarray) -> list[dict]:
    """The merges between the tree's final model and TA, evaluated over every dataset and
    stored (a rerun or a resumed run evaluates none again)."""
    config = ctx.config
    store = ctx.run.store(ctx.run.file(NESTED_STORES["segment"], "the merges between "
                                       "the tree's final model and task arithmetic, c = (1 - s) "
                                       "c_tree + s lambda 1, evaluated when the tree is below "
                                       "the pick floor"), config.models)
    return evaluate_groups(ctx.evaluator, [(store, C, list(config.datasets), None)],
                           desc="between the tree and task arithmetic")[0]


def _floor_line(floor: dict[str, Any]) -> str:
    ta, tree, model = floor["task_arithmetic"], floor["tree"], floor["model"]
    head = (f"Pick floor: task arithmetic at lambda {ta['lambda']:g} (mean {ta['mean']:.4f}, "
            f"worst {ta['worst']:.4f})")
    if tree["at_or_above"]:
        return (f"{head}: the tree's final model is at or above it on both (mean "
                f"{tree['mean']:.4f}, worst {tree['worst']:.4f}) and is handed over")
    what = {"task arithmetic": "TA itself",
            SEGMENT: "a merge between the two (c = (1 - s) c_tree + s lambda 1)"}.get(
        model["source"], f"a merge of the {model['source']}")
    return (f"{head}: the tree's final model is not (mean {tree['mean']:.4f}, worst "
            f"{tree['worst']:.4f}), so {what} is handed over (mean {model['mean']:.4f}, "
            f"worst {model['worst']:.4f})")


def _round_points(ctx: RunContext, result: nested.NestedResult, r: int,
                  dataset_of: dict[str, str], plans: dict[int, "PairPlan"]
                  ) -> tuple[np.ndarray, list[dict]]:
    """Round r's design as coefficients over every task vector, and its stored evaluations
    (a round replayed from merge_tree.json opens its store; nothing is evaluated again)."""
    rec = result.records[r]
    a, b = result.models[rec["left"]], result.models[rec["right"]]
    plan = plans.get(r) or _pair_plan(ctx, a, b, r, dataset_of)
    full = np.array([nested.compose_coefficients(a.coefficients, b.coefficients, c)
                     for c in plan.C])
    evals = evaluate_groups(ctx.evaluator, [(plan.store, plan.C, plan.datasets, None)],
                            desc=f"round {r + 1}")[0]
    return full, evals


def _references(ctx: RunContext, evals: dict[str, dict[str, float]], final: dict[str, float]
                ) -> dict[str, Any]:
    """The pretrained model's accuracy and chance (1 / classes) per dataset, and the datasets
    the final model ends below pretrained on."""
    config = ctx.config
    pretrained = {d: float(evals[d]["accuracy"]) for d in config.datasets}
    return {"pretrained_accuracy": pretrained, "chance_accuracy": _chance(config),
            "below_pretrained": [d for d in config.datasets if final[d] < pretrained[d]]}


def _chance(config: RunConfig) -> dict[str, float]:
    """1 / number of classes of each dataset (left out where the classes cannot be read)."""
    from task_vectors.datasets.registry import get_dataset

    out = {}
    for d in config.datasets:
        try:
            out[d] = 1.0 / len(get_dataset(d, config.source.data_location).classnames)
        except (MAPError, OSError, ZeroDivisionError):
            pass
    return out


def _accuracy_of(ctx: RunContext, model: nested.PoolModel, dataset_of: dict[str, str],
                 measured: dict[tuple[float, ...], dict]) -> dict[str, float]:
    """{task: accuracy} of a merged model (for the report): from its level's measurement,
    or (its round replayed from merge_tree.json) one evaluation."""
    from task_vectors.evaluators import SubsetJob

    evals = measured.get(point_key(model.coefficients))
    if evals is None:
        job = SubsetJob(tuple(float(x) for x in model.coefficients),
                        tuple(dataset_of[t] for t in model.tasks))
        evals = dict(ctx.evaluator.evaluate([job], []))[0]
    return {t: float(evals[dataset_of[t]]["accuracy"]) for t in model.tasks}


def _single_evals(ctx: RunContext, dataset_of: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each fine-tuned model's metrics on its own validation set (pairs similar models)."""
    models = ctx.config.models
    singles = ctx.run.store(ctx.run.file("single_task_scaling_results.json",
                                         "each fine-tuned model on its own dataset"), models)
    eye = np.eye(len(models))
    evals = evaluate_groups(ctx.evaluator, [(singles, eye[i:i + 1], [dataset_of[m]], None)
                                            for i, m in enumerate(models)],
                            desc="fine-tuned models")
    return {m: evals[i][0][dataset_of[m]] for i, m in enumerate(models)}


@dataclass(frozen=True)
class PairPlan:
    """What round r's pair is evaluated and written with."""

    folder: Path
    names: str                  # the pair's file prefix, "<A>_<B>"
    tasks: list[str]            # the original tasks either side covers, in run order
    datasets: list[str]         # their datasets
    store: ScalingResults       # the pair's scaling results
    C: np.ndarray               # the pair's design [n, 2]


def _round_description(names: str) -> str:
    return f"MAP on the pair {names}: scaling results, surrogate params, front, figure, chosen.json"


def _pair_plan(ctx: RunContext, a: nested.PoolModel, b: nested.PoolModel, r: int,
               dataset_of: dict[str, str]) -> PairPlan:
    """Round r's pair: its folder, names, tasks, datasets, store and design."""
    config = ctx.config
    folder = ctx.run.path / f"round{r + 1}"
    names = f"{a.name}_{b.name}"
    ctx.run.outputs[f"round{r + 1}/"] = _round_description(names)
    tasks = [t for t in config.models if t in a.tasks or t in b.tasks]
    datasets = [dataset_of[t] for t in tasks]
    store = ctx.run.store(folder / f"{names}scaling_results.json", [a.name, b.name])
    C = nested.pair_design(config.pair_points, seed=config.seed + r, low=config.low,
                           high=config.high)
    return PairPlan(folder, names, tasks, datasets, store, C)


def _map_on_level(ctx: RunContext, pairs: list[nested.PairJob], dataset_of: dict[str, str],
                  preference: dict[str, float], context: float | None,
                  opened: dict[int, PairPlan]) -> list[tuple[np.ndarray, dict]]:
    """MAP on every pair of a level: their designs in one evaluate() call (jobs of all the
    pairs, each on its pair's datasets, the other task vectors at ``context``), then each
    pair's front in its round folder. ``opened`` gains each round's plan."""
    plans = [_pair_plan(ctx, a, b, r, dataset_of) for a, b, r in pairs]
    opened.update({r: plan for (_, _, r), plan in zip(pairs, plans)})
    models = ctx.config.models

    def composer(a: nested.PoolModel, b: nested.PoolModel):
        return lambda c: nested.with_context(
            nested.compose_coefficients(a.coefficients, b.coefficients, c), a.tasks + b.tasks,
            models, context)

    rounds = ", ".join(f"{r + 1}" for _, _, r in pairs)
    evals = evaluate_groups(
        ctx.evaluator, [(plan.store, plan.C, plan.datasets, composer(a, b))
                        for (a, b, _), plan in zip(pairs, plans)],
        desc=f"round{'s' if len(pairs) > 1 else ''} {rounds}")
    return [_fit_pair(ctx, a, b, r, plan, pair_evals, preference)
            for (a, b, r), plan, pair_evals in zip(pairs, plans, evals)]


def _fit_pair(ctx: RunContext, a: nested.PoolModel, b: nested.PoolModel, r: int,
              plan: PairPlan, evals: list[dict], preference: dict[str, float]):
    """The pair's surrogates, front and pick through the shared front step."""
    config = ctx.config
    folder, names, tasks, datasets, store, C = (plan.folder, plan.names, plan.tasks,
                                                plan.datasets, plan.store, plan.C)
    table = metric_matrix(evals, datasets, config.metric.name)
    Y = nested.side_scores({t: table[:, k] for k, t in enumerate(tasks)}, a.tasks, b.tasks,
                           preference)
    weights = nested.pair_preference(a, b, preference)
    task = FrontTask(C=C, Y=Y, labels=[a.name, b.name],
                     axis_labels=[f"{a.name} ({'+'.join(a.tasks)})",
                                  f"{b.name} ({'+'.join(b.tasks)})"], metric=config.metric,
                     weights=weights, folder=folder, names=names,
                     sample_box=(config.low, config.high), seed_offset=r,
                     title=f"Round {r + 1}", surrogate_figures=False)
    # --pick-floor holds the final model against TA over every task, not each pair
    result = solve_front(task, replace(SearchSettings.of(config), pick_floor="pretrained"))
    _, result.figures = write_solved_front(task, result, config.pdf)  # the round folder's
    ctx.timings["search_seconds"] = ctx.timings.get("search_seconds", 0.0) + \
        result.search_seconds
    write_json(folder / "chosen.json", {"pair_coefficients": result.chosen_coefficients.tolist(),
                                        "predicted": result.chosen_predicted.tolist(),
                                        "preference": weights.tolist(), "pick": config.pick,
                                        "anchors": result.anchors})
    info = {"folder": str(folder), "scaling_results": str(store.path),
            "predicted": result.chosen_predicted.tolist(), "n_points": int(len(C)),
            "figure": str(result.figures[0])}
    return result.chosen_coefficients, info


def _write_final_model(ctx: RunContext, coefficients: np.ndarray, accuracy: dict[str, float],
                       dataset_of: dict[str, str], single_accuracy: dict[str, float],
                       source: str) -> dict[str, Any]:
    """final_model/finetuned.pt (task_vectors pickle) and merge.json."""
    config = ctx.config
    info = {"coefficients": dict(zip(config.models, np.asarray(coefficients).tolist())),
            "accuracy": {dataset_of[t]: v for t, v in accuracy.items()},
            "single_task_accuracy": {dataset_of[t]: v for t, v in single_accuracy.items()},
            # "nested tree", or what the TA floor handed over instead (run.json: summary.final.floor)
            "source": source}
    return write_final_model(ctx, merged_state(ctx, coefficients), info,
                             "its coefficients on every task vector, accuracies")
