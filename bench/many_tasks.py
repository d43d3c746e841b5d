"""Many tasks at once: each method's equal-preference pick on 4 and 8 demo tasks.

    .venv/bin/python bench/many_tasks.py [--sets "A,B,C,D;E,F,G,H;all"] [--seeds 0 1 2]
        [--methods pretrained ta map map-weighted-sum map-no-floor map-grid map-parego
                   nested nested-alone nested-tchebycheff bayesian bayesian-ehvi
                   bayesian-lhs random adamerging]
        [--no-adamerging]
        [--csv PATH] [--threads 1] [--keep DIR]
    .venv/bin/python bench/many_tasks.py --from-csv CSV [CSV ...]

Task sets (default): the zoo's first four tasks, its last four, and all eight. Equal
preference (weight 1 per task). Every method chooses on the evaluation split (<Task>Val)
only; its pick is then measured on the held-out split too (common.heldout_dataset, cut to
the evaluation split's size as in front_quality.py; measurement, not counted).

Budget: the map CLI's spend with default flags, counted from its run.json ("points"):
default_points(T) = (T+1)(T+2) design points, the pretrained model once (the design lacks
c = 0; reference_models.py) and --reevaluate 5 front points: 36 at T = 4, 96 at T = 8.
  map        map's default design and pick floor for T (args.default_design and
             default_pick_floor: from 4 tasks the local design, src.core.local_design: the
             fine-tuned models, TA's sweep, a Latin hypercube around its best λ; --seed s;
             and --pick-floor task-arithmetic), then front_quality.run_map's front step
             (src.core.front.solve_front with the CLI's defaults: tchebycheff pick,
             NSGA-III 100 generations over the local box, fitted on the points inside it,
             5 re-evaluated front points), plus the pretrained model: the budget exactly;
  map-weighted-sum  the same with --pick weighted-sum (rows "map weighted-sum"): the
             weighted mean under the same floor, nested's default pick from 4 tasks;
  map-no-floor  the same with --pick-floor pretrained (rows "map no-floor");
  map-grid   the same with map_mode.design's grid design over [0, 1]^T (one-hot,
             near-diagonal, grid points; map's default from 4 tasks before the local
             design; rows "map grid");
  map-parego the grid design's budget with 10 of the design's points chosen instead by two rounds
             of front refinement (front_quality.run_refine, acquisition "parego":
             src.core.acquisition.parego_selector, first point of a round by the equal
             preference; rows "map+parego 2x5");
  nested     `run_MAP.py --demo --method nested --point 20 --n-gen 200 --seed s`, as
             bench/nested_demo.py runs it, with nested's defaults for T (from 4 tasks:
             each pair merged beside the other task vectors at TA's best λ, the final
             model held against TA, every pick by the weighted mean;
             args.default_nested_context, default_pick_floor, default_nested_pick); its
             own count (run.json summary.n_evaluations: the T fine-tuned models, TA's
             sweep, each pair's 20 design points and its merged model; pair-level points
             are evaluated on the pair's tasks only), reported as is; the note says which
             model was handed over;
  nested-alone  the same with --nested-context none --pick-floor pretrained: the
             original's tree, each pair merged alone (rows "nested alone");
  nested-tchebycheff  nested's defaults with --pick tchebycheff (rows "nested
             tchebycheff"): every pair's pick, and the floor's choice, by the Tchebycheff
             rule, nested's default pick before weighted-sum under the TA floor;
  bayesian   T <= 6 only: bayesian.run_rounds with default_bayes_schedule(T), the same
             front step and the pretrained model, as the CLI's bayesian mode (38 at T = 4),
             its rounds by --bayes-acquisition error (the original's);
  bayesian-ehvi  the same, its rounds by EHVI (--bayes-acquisition ehvi, the default for
             2 to 4 tasks) after the grid round 0 (--design grid; rows "bayesian ehvi");
  bayesian-lhs  the same EHVI rounds after an LHS round 0 (sampling.lhs_design; rows
             "bayesian lhs+ehvi"): bayesian's defaults for 2 to 4 tasks;
  random     the budget as uniform merges in [0, 1]^T (--seeds), the pick among them by
             the equal-weight mean (front_quality.direct);
  ta         task arithmetic c = λ·1 for λ in 0.1..1.0 (10 evaluations), the best mean;
  pretrained c = 0 (1 evaluation);
  adamerging layer-wise AdaMerging, default settings (task_vectors.adamerging: 500 steps
             of 16 unlabeled images per task from the evaluation sets; no labeled
             evaluation), one learned model (--no-adamerging skips it).
Seeds: map's design (the local design's hypercube; the grid's near-diagonal jitter and
subsample) and NSGA-III, bayesian's rounds, random search and nested's pair designs all
take the seed: each runs every --seeds seed; ta, pretrained and adamerging (batch order
seed 0) once.

Per run: the pick's mean accuracy and worst task on both splits; whether it is below the
pretrained model on some task (evaluation split) while a model the method evaluated on
every task keeps every task at or above the pretrained model (nested: the last level's
design, evaluated on all T tasks, and TA's sweep; adamerging evaluates none); the pick against task
arithmetic at its best λ, and whether a model the method evaluated is at or above TA on
both the mean and the worst task (evaluation split). Then the issue's goal table for these
figures. Per-run rows go to --csv; --from-csv prints the tables of earlier runs' CSVs
(rows of the same task set, method and seed in several files: the first one's). Asserts
nothing.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common import (add_common_flags, csv_value, csv_with, demo_zoo,  # repo on path
                    heldout_dataset, read_json, read_scaling, run_cli, set_threads, workdir)
from args import default_bayes_schedule, default_design, default_pick_floor, default_points
from front_quality import EVALUATED_PICK, Evaluator, HeldOut, bayes_labels, direct, \
    merged_engine, run_bayes, run_map, write_csv
from src.core.bayesian import MAX_TASKS as BAYES_MAX_TASKS
from src.core import pick_check
from src.core.pick_check import EPS

# The map CLI's defaults (args.py): --pick, --reevaluate; nested_demo.py's --point, --n-gen.
CLI_PICK = "tchebycheff"
CLI_REEVALUATE = 5
NESTED_POINT, NESTED_N_GEN = 20, 200
TA_LAMBDAS = np.round(np.arange(1, 11) / 10, 1)
METHODS = ("pretrained", "ta", "map", "map-weighted-sum", "map-no-floor", "map-grid",
           "map-parego", "nested", "nested-alone", "nested-tchebycheff", "bayesian",
           "bayesian-ehvi", "bayesian-lhs", "random", "adamerging")
PAREGO = "map+parego 2x5"  # map-parego's rows: 2 rounds of 5 ParEGO points from the design
NO_FLOOR = "map no-floor"  # map-no-floor's rows: the default design, --pick-floor pretrained
MAP_WEIGHTED_SUM = "map weighted-sum"  # map-weighted-sum's rows: map's defaults, --pick
# weighted-sum (nested's default pick under the TA floor)
NESTED_ALONE = "nested alone"  # nested-alone's rows: --nested-context none --pick-floor
# pretrained, nested's default until the TA context and floor (4 tasks and more)
NESTED_TCHEBYCHEFF = "nested tchebycheff"  # nested-tchebycheff's rows: nested's defaults
# but --pick tchebycheff, its default pick until weighted-sum under the TA floor
NESTED_ROWS = ("nested", NESTED_ALONE, NESTED_TCHEBYCHEFF)  # the rows of a nested CLI run
BAYES_LHS = "bayesian lhs+ehvi"  # bayesian-lhs's rows: EHVI rounds after an LHS round 0
GRID = "map grid"  # map-grid's rows: --design grid, map's default from 4 tasks until the
# local design (src.core.local_design) replaced it


def cli_budget(T: int) -> int:
    """What `run_MAP.py --method map` spends with default flags: the design, the pretrained
    model (reference_models.py: the grid design never holds c = 0), the re-evaluated front."""
    return default_points(T) + 1 + CLI_REEVALUATE


class Counted:
    """evaluate(C [n, T]) -> accuracies [n, T] on one task set's evaluation split. Counts
    every row a method asks for; a model already merged (the engine is deterministic, e.g.
    the one-hot models of every seed's design) is read back instead of run again."""

    def __init__(self, ev: Evaluator, task_set: Sequence[str]):
        self.inner, self.T = ev.accuracy(task_set), len(task_set)
        self.cache: dict[bytes, np.ndarray] = {}
        self.count = 0

    def __call__(self, C: np.ndarray) -> np.ndarray:
        rows = []
        for c in np.atleast_2d(np.asarray(C, dtype=float)):
            key = c.tobytes()
            if key not in self.cache:
                self.cache[key] = self.inner(c[None])[0]
            rows.append(self.cache[key])
            self.count += 1
        return np.array(rows, dtype=float).reshape(-1, self.T)


def surrogate_run(kind: str, evaluate: Counted, task_set, seed: int) -> dict:
    """map / bayesian as the CLI runs them, the pretrained model (c = 0) evaluated once
    beside the run (the CLI's reference model: the Tchebycheff anchor and the pick check).
    "evaluated": the same run's pick under --pick-from evaluated (no further evaluation)."""
    w = [(1.0,) * len(task_set)]
    zero = np.zeros((1, len(task_set)))
    pre = evaluate(zero)[0]
    if kind in ("map", "map-weighted-sum", "map-no-floor", "map-grid"):
        # the default design and --pick-floor for T (args.py); without the floor; the grid
        T = len(task_set)
        design = "grid" if kind == "map-grid" else default_design(T)
        floor = default_pick_floor(T) if kind in ("map", "map-weighted-sum") else "pretrained"
        out = run_map(evaluate, task_set, default_points(T), w, CLI_REEVALUATE, seed,
                      design_kind={"grid": "tool"}.get(design, design),
                      pick="weighted-sum" if kind == "map-weighted-sum" else CLI_PICK,
                      pretrained=pre, pick_floor=floor)
    elif kind == "map-parego":  # the same budget, 10 of its design points by ParEGO rounds
        out = run_map(evaluate, task_set, default_points(len(task_set)), w, CLI_REEVALUATE,
                      seed, rounds=2, points=5, acquisition="parego", pick=CLI_PICK,
                      pretrained=pre)
    else:  # bayesian / bayesian-ehvi: its rounds by --bayes-acquisition error / ehvi;
        # bayesian-lhs: EHVI rounds after an LHS round 0
        out = run_bayes(evaluate, task_set, w, CLI_REEVALUATE, seed, pick=CLI_PICK,
                        pretrained=pre,
                        acquisition="error" if kind == "bayesian" else "ehvi",
                        initial_design="lhs" if kind == "bayesian-lhs" else "grid")
    out = out | {"C_all": np.vstack([out["C_all"], zero]),
                 "Y_all": np.vstack([out["Y_all"], pre[None]])}
    pick_y = out["chosen_real"][0]
    pred = out["predicted"][np.flatnonzero(np.all(out["real"] == pick_y, axis=1))[0]]
    ev = out["evaluated"]
    return {"C_all": out["C_all"], "Y_all": out["Y_all"], "pick_c": out["chosen_C"][0],
            "pick_y": pick_y, "pick_predicted": json.dumps(np.round(pred, 4).tolist()),
            "pick_pred_mean": float(pred.mean()), "pick_pred_worst": float(pred.min()),
            "pred_real_mae": float(np.abs(out["predicted"] - out["real"]).mean()),
            "anchors": out["anchors"],
            "evaluated": {"pick_c": ev["chosen_C"][0], "pick_y": ev["chosen_real"][0],
                          "note": f"from the {ev['sources'][0]}"}}


def direct_run(C: np.ndarray, Y: np.ndarray) -> dict:
    out = direct(C, Y, [(1.0,) * C.shape[1]])
    return {"C_all": C, "Y_all": Y, "pick_c": out["chosen_C"][0],
            "pick_y": out["chosen_real"][0]}


def nested_run(zoo, task_set, seed: int, folder: Path, alone: bool = False,
               pick: str | None = None) -> dict:
    """nested MAP through the CLI with its defaults (alone: --nested-context none
    --pick-floor pretrained, the original's tree; pick: --pick); the models it evaluated on
    every task: the last level's pair design (its store), TA's sweep when it ran one, the
    merges between the tree's model and TA when the floor evaluated them, and the final
    model. The note says which model was handed over, and the tree's own when it was not."""
    exp = f"nested{'-alone' if alone else ''}{'-' + pick if pick else ''}-{len(task_set)}-" \
          f"{'_'.join(t[:3] for t in task_set)}-s{seed}"
    flags = ["--nested-context", "none", "--pick-floor", "pretrained"] if alone else []
    flags += ["--pick", pick] if pick else []
    run_cli("--demo", "--zoo-dir", zoo.path.parent, "--method", "nested",
            "--zeroshot-merge-models", *task_set, "--point", NESTED_POINT, "--n-gen",
            NESTED_N_GEN, "--seed", seed, "--results-path", folder, "--exp-id", exp, *flags)
    run = read_json(folder / exp / "run.json")
    merge = read_json(folder / exp / "final_model" / "merge.json")
    last = read_json(folder / exp / "merge_tree.json")["rounds"][-1]
    store = Path(last["info"]["scaling_results"])
    pair = [last["left"], last["right"]]
    C_pair, Y_last = read_scaling(store, pair, task_set, "accuracy")
    Y_last = Y_last[np.abs(C_pair).max(axis=1) > EPS]  # (0, 0) is the pretrained model
    for name in ("task_arithmetic", "segment"):
        stored = folder / exp / f"{name}_scaling_results.json"
        if stored.exists():
            Y_last = np.vstack([Y_last, read_scaling(stored, task_set, task_set, "accuracy")[1]])
    pick_y = np.array([merge["accuracy"][t] for t in task_set])
    final = run["summary"]["final"]
    note = f"context {final['context']['lambda']}" if "context" in final else "pairs alone"
    if "floor" in final:
        floor = final["floor"]
        note += f"; handed over: {floor['handed_over']}"
        if floor["handed_over"] != "nested tree":
            note += f" (the tree's {floor['tree']['mean']:.4f} / {floor['tree']['worst']:.4f})"
    return {"C_all": None, "Y_all": np.vstack([Y_last, pick_y]),
            "pick_c": np.array([merge["coefficients"][t] for t in task_set]),
            "pick_y": pick_y, "counted": int(run["summary"]["n_evaluations"]),
            "evaluator_points": int(run["evaluation"]["points"]), "note": note}


def adamerging_run(zoo, task_set) -> tuple[dict, np.ndarray]:
    """Layer-wise AdaMerging with default settings on an engine over the task set (and its
    held-out splits); (the run, held-out accuracy per task)."""
    from task_vectors import adamerging as am

    engine = merged_engine(zoo, task_set, "ta", 0)
    settings = am.AdaMergingSettings()
    res = am.learn(engine, list(task_set), settings, progress=False)
    flat = am.merged_flat(engine.theta_pre, engine.tau, res.lambdas, am.Layout.of(engine))
    held = [heldout_dataset(t) for t in task_set]
    for t, h in zip(task_set, held):  # the held-out split used whole: same size as eval
        if len(engine.eval_sets[h].labels) != len(engine.eval_sets[t].labels):
            raise SystemExit(f"{h}: held-out split not the evaluation split's size")
    evals = am.evaluate_merged(engine, flat, list(task_set) + held)
    run = {"C_all": None, "Y_all": None, "pick_c": None, "counted": 0,
           "pick_y": np.array([evals[t]["accuracy"] for t in task_set]),
           "note": f"learned from {settings.steps} x {settings.batch_size} unlabeled "
                   "evaluation images per task; no labeled evaluation",
           "learning_seconds": res.seconds}
    return run, np.array([evals[h]["accuracy"] for h in held])


# ------------------------------------------------------------------ scoring
def below(y: np.ndarray, ref: np.ndarray) -> list[int]:
    return [int(k) for k in np.flatnonzero(y < ref - EPS)]


def has_keeper(Y: np.ndarray | None, pre: np.ndarray) -> bool | None:
    """Some model the method evaluated on every task is at or above the pretrained model
    on each (None: the method evaluated none)."""
    if Y is None or len(Y) == 0:
        return None
    return bool(pick_check.keeps_pretrained(Y, pre, "max").any())


def beats_ta(Y: np.ndarray | None, ta: tuple[float, float], better_on_one: bool = False
             ) -> bool | None:
    """Some row of Y is at or above TA at its best λ on the mean and on the worst task
    (None: no row). ``better_on_one``: and strictly above on one of them, so that TA's own
    merge, which the local design evaluates, does not count as a TA-beater."""
    if Y is None or len(Y) == 0:
        return None
    ok = pick_check.at_or_above(Y, ta, [1.0] * Y.shape[1], "max")
    if better_on_one:
        ok &= (Y.mean(axis=1) > ta[0] + EPS) | (Y.min(axis=1) > ta[1] + EPS)
    return bool(ok.any())


def describe(task_set, y: np.ndarray) -> tuple[float, float, str]:
    k = int(np.argmin(y))
    return float(y.mean()), float(y[k]), task_set[k]


def score_row(task_set, method: str, seed, run: dict, held: np.ndarray, ref: dict,
              seconds: float) -> dict:
    y = run["pick_y"]
    mean, worst, worst_task = describe(task_set, y)
    h_mean, h_worst, h_worst_task = describe(task_set, held)
    below_eval = below(y, ref["pre_eval"])
    Y = run["Y_all"]
    if run["C_all"] is not None:  # the pretrained model itself is no keeper
        Y = Y[np.abs(run["C_all"]).max(axis=1) > EPS]
    keeper = has_keeper(Y, ref["pre_eval"])
    row = {"tasks": "+".join(task_set), "T": len(task_set), "method": method, "seed": seed,
           "evaluations": run.get("counted", len(run["Y_all"]) if run["Y_all"] is not None
                                  else 0),
           "eval_mean": mean, "eval_worst": worst, "eval_worst_task": worst_task,
           "held_mean": h_mean, "held_worst": h_worst, "held_worst_task": h_worst_task,
           "below_pretrained_eval": ";".join(task_set[k] for k in below_eval),
           "keeper_evaluated": keeper,
           "ta_beaten_evaluated": beats_ta(Y, ref["ta_eval"], better_on_one=True),
           "violation": bool(below_eval) and bool(keeper),
           "below_pretrained_held": ";".join(task_set[k] for k in
                                             below(held, ref["pre_held"])),
           "ge_ta_mean_eval": mean >= ref["ta_eval"][0] - EPS,
           "ge_ta_worst_eval": worst >= ref["ta_eval"][1] - EPS,
           "ge_ta_mean_held": h_mean >= ref["ta_held"][0] - EPS,
           "ge_ta_worst_held": h_worst >= ref["ta_held"][1] - EPS,
           "seconds": seconds,
           "eval_acc": json.dumps(dict(zip(task_set, np.round(y, 4).tolist()))),
           "held_acc": json.dumps(dict(zip(task_set, np.round(held, 4).tolist()))),
           "coefficients": "" if run["pick_c"] is None else
           json.dumps(np.round(run["pick_c"], 3).tolist())}
    for key in ("pick_predicted", "pick_pred_mean", "pick_pred_worst", "pred_real_mae",
                "evaluator_points", "note", "learning_seconds"):
        if key in run:
            row[key] = run[key]
    return row


# ------------------------------------------------------------------ main
def task_sets(spec: str, tasks: Sequence[str]) -> list[tuple[str, ...]]:
    out = []
    for part in spec.split(";"):
        out.append(tuple(tasks) if part == "all" else tuple(part.split(",")))
    for s in out:
        unknown = sorted(set(s) - set(tasks))
        if unknown or len(set(s)) != len(s) or len(s) < 2:
            raise SystemExit(f"--sets: {','.join(s)}: two or more distinct zoo tasks expected "
                             f"(unknown: {unknown})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=None,
                   help="task sets, ';'-separated, each comma-separated or 'all' (default: "
                        "the zoo's first four tasks; its last four; all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--no-adamerging", action="store_true",
                   help="leave AdaMerging out (it learns for minutes)")
    p.add_argument("--csv", default=None)
    p.add_argument("--from-csv", nargs="+", metavar="CSV", default=None,
                   type=csv_with("tasks", "T", "method", "seed", "eval_mean", "held_mean",
                                 "violation"),
                   help="print the tables and the goal table of earlier runs' --csv files "
                        "instead of running")
    add_common_flags(p)
    a = p.parse_args()
    if a.from_csv:
        rows = read_csvs(a.from_csv)
        report(rows, list(dict.fromkeys(tuple(r["tasks"].split("+")) for r in rows)))
        return
    threads = set_threads(a.threads)
    zoo = demo_zoo()
    tasks = list(zoo.tasks)
    sets = task_sets(a.sets or f"{','.join(tasks[:4])};{','.join(tasks[4:])};all", tasks)
    methods = [m for m in a.methods if not (m == "adamerging" and a.no_adamerging)]
    ev = Evaluator(zoo, tasks)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    print(f"demo zoo {zoo.path}; torch threads {threads}; seeds {a.seeds}; budget = the map "
          f"CLI's default spend: " + ", ".join(f"T={T}: {cli_budget(T)}" for T in
                                               sorted({len(s) for s in sets})), flush=True)
    rows: list[dict] = []
    with workdir(a.keep) as folder:
        for task_set in sets:
            rows += run_set(zoo, ev, task_set, methods, a.seeds, folder)
    print(f"\ntotal: {time.process_time() - cpu0:.0f} s CPU, "
          f"{time.perf_counter() - wall0:.0f} s wall", flush=True)
    report(rows, sets)
    if a.csv:
        write_csv(Path(a.csv), rows)


def read_csvs(paths: Sequence[Path]) -> list[dict]:
    """score_row's rows from --csv files, typed as written; the first of duplicates."""
    def parse(key: str, value: str):
        if value in ("True", "False"):
            return value == "True"
        if value == "" and key in ("keeper_evaluated", "ta_beaten_evaluated"):
            return None  # not applicable (e.g. adamerging evaluates no model)
        return csv_value(value)

    rows: dict[tuple, dict] = {}
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                row = {k: parse(k, v) for k, v in r.items()}
                rows.setdefault((row["tasks"], row["method"], row["seed"]), row)
    return list(rows.values())


def run_set(zoo, ev: Evaluator, task_set, methods, seeds, folder: Path) -> list[dict]:
    T = len(task_set)
    evaluate = Counted(ev, task_set)
    scorer = HeldOut(ev, task_set)
    budget = cli_budget(T)
    start = time.process_time()
    zero = np.zeros((1, T))
    C_ta = TA_LAMBDAS[:, None] * np.ones((1, T))
    pre_eval = evaluate(zero)[0]
    Y_ta = evaluate(C_ta)
    per_point = (time.process_time() - start) / 11
    ta = direct_run(C_ta, Y_ta)
    pre_held, ta_held = scorer(np.vstack([zero, ta["pick_c"][None]]))
    ref = {"pre_eval": pre_eval, "pre_held": pre_held,
           "ta_eval": describe(task_set, ta["pick_y"])[:2],
           "ta_held": describe(task_set, ta_held)[:2]}
    lam = float(ta["pick_c"][0])
    n_initial, n_update, n_iter = default_bayes_schedule(T)
    n_bayes = n_initial + n_update * n_iter + 1 + CLI_REEVALUATE if T <= BAYES_MAX_TASKS else 0
    per_seed = {"map": budget, "map-weighted-sum": budget, "random": budget,
                "map-parego": budget, "map-grid": budget, "map-no-floor": budget,
                "bayesian": n_bayes, "bayesian-ehvi": n_bayes, "bayesian-lhs": n_bayes}
    planned = len(seeds) * sum(v for k, v in per_seed.items() if k in methods)
    print(f"\n{'+'.join(task_set)} (T={T}): {per_point:.2f} s CPU per evaluation; map, "
          f"random, bayesian plan {planned} evaluations: about {planned * per_point:.0f} s "
          f"CPU before nested{' and AdaMerging' if 'adamerging' in methods else ''}; "
          f"TA's best λ {lam}", flush=True)

    runs: list[tuple[str, object, Callable[[], dict]]] = []
    if "pretrained" in methods:
        runs.append(("pretrained", "", lambda: {"C_all": zero, "Y_all": pre_eval[None],
                                                "pick_c": zero[0], "pick_y": pre_eval}))
    if "ta" in methods:
        runs.append((f"TA (best λ={lam})", "", lambda: ta))
    for s in seeds:
        if "map" in methods:
            runs.append(("map", s, lambda s=s: surrogate_run("map", evaluate, task_set, s)))
        if "map-weighted-sum" in methods:
            runs.append((MAP_WEIGHTED_SUM, s, lambda s=s: surrogate_run(
                "map-weighted-sum", evaluate, task_set, s)))
        if "map-no-floor" in methods:
            runs.append((NO_FLOOR, s, lambda s=s: surrogate_run("map-no-floor", evaluate,
                                                                task_set, s)))
        if "map-grid" in methods:
            runs.append((GRID, s, lambda s=s: surrogate_run("map-grid", evaluate,
                                                            task_set, s)))
        if "map-parego" in methods:
            runs.append((PAREGO, s, lambda s=s: surrogate_run("map-parego", evaluate,
                                                              task_set, s)))
        if "bayesian" in methods and T <= BAYES_MAX_TASKS:
            runs.append(("bayesian", s, lambda s=s: surrogate_run("bayesian", evaluate,
                                                                  task_set, s)))
        if "bayesian-ehvi" in methods and T <= BAYES_MAX_TASKS:
            runs.append(("bayesian ehvi", s, lambda s=s: surrogate_run(
                "bayesian-ehvi", evaluate, task_set, s)))
        if "bayesian-lhs" in methods and T <= BAYES_MAX_TASKS:
            runs.append((BAYES_LHS, s, lambda s=s: surrogate_run(
                "bayesian-lhs", evaluate, task_set, s)))
        if "random" in methods:
            from mobo import random_search
            runs.append(("random", s, lambda s=s: direct_run(*random_search(
                evaluate, T, budget, seed=s))))
        if "nested" in methods:
            runs.append(("nested", s, lambda s=s: nested_run(zoo, task_set, s, folder)))
        if "nested-alone" in methods:
            runs.append((NESTED_ALONE, s, lambda s=s: nested_run(zoo, task_set, s, folder,
                                                                  alone=True)))
        if "nested-tchebycheff" in methods:
            runs.append((NESTED_TCHEBYCHEFF, s, lambda s=s: nested_run(zoo, task_set, s, folder,
                                                                        pick="tchebycheff")))

    rows = []
    for method, seed, fn in runs:
        evaluate.count = 0
        t0 = time.perf_counter()
        run = fn()
        seconds = time.perf_counter() - t0
        if method in ("map", "bayesian", "bayesian ehvi", "random", PAREGO, GRID, NO_FLOOR,
                      MAP_WEIGHTED_SUM, BAYES_LHS):
            if evaluate.count != len(run["Y_all"]):
                raise SystemExit(f"{method}: {evaluate.count} evaluations counted, "
                                 f"{len(run['Y_all'])} in its record")
            run["counted"] = evaluate.count
        elif method == "pretrained":
            run["counted"] = 1
        elif method.startswith("TA"):
            run["counted"] = len(TA_LAMBDAS)
        held = scorer(run["pick_c"][None])[0]
        # the final model's coefficients reproduce its accuracy
        if method in NESTED_ROWS:
            check = evaluate.inner(run["pick_c"][None])[0]
            if np.abs(check - run["pick_y"]).max() > 2.5 / 1200:
                print(f"  nested seed {seed}: merge.json accuracy {run['pick_y']} differs from "
                      f"this engine's {check}", flush=True)
        rows.append(show(score_row(task_set, method, seed, run, held, ref, seconds)))
        if "evaluated" in run:  # the same run under --pick-from evaluated
            alt = {k: v for k, v in run.items() if not k.startswith(("pick_", "evaluated"))}
            alt |= run["evaluated"]
            held = scorer(alt["pick_c"][None])[0]
            rows.append(show(score_row(task_set, method + EVALUATED_PICK, seed, alt, held,
                                       ref, seconds)))
    if "adamerging" in methods:
        t0 = time.perf_counter()
        run, held = adamerging_run(zoo, task_set)
        rows.append(show(score_row(task_set, "adamerging (layer)", "", run, held, ref,
                                   time.perf_counter() - t0)))
    return rows


def show(row: dict) -> dict:
    print(f"  {row['method']:<20} {str(row['seed']):>2} {row['evaluations']:>4} evals | "
          f"eval mean {row['eval_mean']:.4f} worst {row['eval_worst']:.4f} "
          f"({row['eval_worst_task']}) | held-out mean {row['held_mean']:.4f} worst "
          f"{row['held_worst']:.4f} ({row['held_worst_task']}) | below pre: "
          f"{row['below_pretrained_eval'] or '-'} | {row['seconds']:.0f} s", flush=True)
    return row


# ------------------------------------------------------------------ tables
def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def report(rows: list[dict], sets) -> None:
    print("\nper run: the equal-preference pick, chosen on the evaluation split. below pre.: "
          "tasks under the pretrained model (evaluation split); keeper: a model the method "
          "evaluated on every task keeps every task at or above it; >= TA: pick vs task "
          "arithmetic at its best λ (mean, worst), evaluation / held-out split; TA-beater: a "
          "model the method evaluated is at or above TA on both and above it on one "
          "(evaluation split)")
    print(f"{'tasks':<40} {'method':<20} {'seed':>4} {'evals':>5} | {'mean':>6} {'worst':>6} "
          f"{'(task)':<12} | {'held mean':>9} {'worst':>6} {'(task)':<12} | "
          f"{'below pre.':<22} {'keeper':>6} | {'>= TA eval':>10} {'held':>7} "
          f"{'TA-beater':>9}")
    for r in rows:
        keeper = "-" if r["keeper_evaluated"] is None else yes(r["keeper_evaluated"])
        beater = "-" if r.get("ta_beaten_evaluated") is None else yes(r["ta_beaten_evaluated"])
        ge = (f"{yes(r['ge_ta_mean_eval'])}/{yes(r['ge_ta_worst_eval'])}",
              f"{yes(r['ge_ta_mean_held'])}/{yes(r['ge_ta_worst_held'])}")
        print(f"{r['tasks']:<40} {r['method']:<20} {str(r['seed']):>4} {r['evaluations']:>5} | "
              f"{r['eval_mean']:>6.4f} {r['eval_worst']:>6.4f} {r['eval_worst_task']:<12} | "
              f"{r['held_mean']:>9.4f} {r['held_worst']:>6.4f} {r['held_worst_task']:<12} | "
              f"{r['below_pretrained_eval'] or '-':<22} {keeper:>6} | {ge[0]:>10} {ge[1]:>7} "
              f"{beater:>9}")

    print("\nper task set: each method's pick per task, evaluation split (seed 0 where "
          "seeded)")
    for task_set in sets:
        key = "+".join(task_set)
        sel = [r for r in rows if r["tasks"] == key and r["seed"] in ("", 0)]
        print(f"{'method':<20} " + " ".join(f"{t[:-3]:>8}" for t in task_set))
        for r in sel:
            acc = json.loads(r["eval_acc"])
            print(f"{r['method']:<20} " + " ".join(f"{acc[t]:>8.4f}" for t in task_set))
        print()

    print("per method and T (means over task sets and seeds; worst: the worst task's accuracy)")
    print(f"{'method':<20} {'T':>2} {'runs':>4} {'evals':>6} | {'eval mean':>9} {'worst':>6} | "
          f"{'held mean':>9} {'worst':>6} | {'below pre.':>10} {'violations':>10}")
    groups = dict.fromkeys((r["method"].split(" (best")[0], r["T"]) for r in rows)
    for method, T in groups:
        sel = [r for r in rows if r["method"].split(" (best")[0] == method and r["T"] == T]

        def mean(k: str) -> float:
            return float(np.mean([r[k] for r in sel]))
        print(f"{method:<20} {T:>2} {len(sel):>4} {mean('evaluations'):>6.1f} | "
              f"{mean('eval_mean'):>9.4f} {mean('eval_worst'):>6.4f} | {mean('held_mean'):>9.4f} "
              f"{mean('held_worst'):>6.4f} | {sum(bool(r['below_pretrained_eval']) for r in sel):>10} "
              f"{sum(r['violation'] for r in sel):>10}")
    goals(rows)


def vs_ta(rows: list[dict], method: str, T: int) -> tuple[str, str] | None:
    sel = [r for r in rows if r["method"] == method and r["T"] == T]
    ta = [r for r in rows if r["method"].startswith("TA") and r["T"] == T]
    if not sel or not ta:
        return None
    out = []
    for split in ("eval", "held"):
        def m(rs, k):
            return float(np.mean([r[f"{split}_{k}"] for r in rs]))
        n_ok = sum(r[f"ge_ta_mean_{split}"] and r[f"ge_ta_worst_{split}"] for r in sel)
        out.append((f"{m(sel, 'mean'):.4f} vs {m(ta, 'mean'):.4f}, worst {m(sel, 'worst'):.4f} "
                    f"vs {m(ta, 'worst'):.4f}; {n_ok}/{len(sel)} runs", n_ok == len(sel)))
    figure = f"T={T}, {len(sel)} runs: eval {out[0][0]}; held-out {out[1][0]}"
    return figure, f"{yes(out[0][1])} / {yes(out[1][1])}"


def goals(rows: list[dict]) -> None:
    print("\ngoals (issue 'Beyond two tasks'); figures: means over task sets and seeds, pick "
          "vs TA at its best λ; 'k/n runs': runs at or above TA on both the mean and the worst "
          "task; met: every run, evaluation split / held-out split")
    table = []
    for method in ("map", "map" + EVALUATED_PICK, MAP_WEIGHTED_SUM,
                   MAP_WEIGHTED_SUM + EVALUATED_PICK, NO_FLOOR, NO_FLOOR + EVALUATED_PICK, GRID,
                   GRID + EVALUATED_PICK, PAREGO, PAREGO + EVALUATED_PICK):
        for T in sorted({r["T"] for r in rows}):
            got = vs_ta(rows, method, T)
            if got:
                table.append((f"MAP on 4 and 8 tasks at once, equal preference: its pick "
                              f">= TA at its best λ on mean and worst task ({method})", *got))
    for method in NESTED_ROWS:
        for T in sorted({r["T"] for r in rows}):
            got = vs_ta(rows, method, T)
            if got:
                goal = "nested MAP, 8 tasks: final model >= TA at best λ on mean and worst task"
                if T != 8:
                    goal = f"(nested MAP, {T} tasks, for reference: same figure)"
                table.append((goal + ("" if method == "nested" else f" ({method})"), *got))
    picks = [r for r in rows if r["method"] != "pretrained"]
    bad = [r for r in picks if r["violation"]]
    by_method = {}
    for r in bad:
        name = f"{r['method'].split(' (best')[0]} T={r['T']}"
        by_method[name] = by_method.get(name, 0) + 1
    table.append(("any pick with equal preference: no task below pretrained when some "
                  "model keeps every task at or above it",
                  f"{len(bad)} of {len(picks)} picks below pretrained while the method "
                  f"evaluated a keeper" + (": " + ", ".join(f"{k} {v}" for k, v in
                                                            by_method.items()) if bad else ""),
                  yes(not bad)))
    for T in sorted({r["T"] for r in rows}):
        # bayesian as its defaults run it at T, else the rows of its defaults before
        wanted = dict.fromkeys(label.removesuffix(EVALUATED_PICK) for label in bayes_labels(T))
        name = next((w for w in wanted if any(r["method"] == w and r["T"] == T for r in rows)),
                    "bayesian")
        # the models each hands over with default flags (--pick-from evaluated)
        bay = {(r["tasks"], r["seed"]): r for r in rows
               if r["method"] == name + EVALUATED_PICK and r["T"] == T}
        mp = {(r["tasks"], r["seed"]): r for r in rows
              if r["method"] == "map" + EVALUATED_PICK and r["T"] == T}
        keys = sorted(set(bay) & set(mp), key=str)
        if not keys:
            continue
        parts, met = [], []
        for split in ("eval", "held"):
            ok = sum(bay[k][f"{split}_mean"] >= mp[k][f"{split}_mean"] - EPS and
                     bay[k][f"{split}_worst"] >= mp[k][f"{split}_worst"] - EPS for k in keys)

            def m(d, k):
                return float(np.mean([d[x][f"{split}_{k}"] for x in keys]))
            parts.append(f"{split}: mean {m(bay, 'mean'):.4f} vs {m(mp, 'mean'):.4f}, worst "
                         f"{m(bay, 'worst'):.4f} vs {m(mp, 'worst'):.4f}; {ok}/{len(keys)}")
            met.append(ok == len(keys))
        table.append((f"{name} vs map at T={T} (pick >= map's on mean and worst, every "
                      "task set and seed)", "; ".join(parts),
                      f"{yes(met[0])} / {yes(met[1])}"))
    for goal, figure, met in table:
        print(f"| {goal} | {figure} | {met} |")


if __name__ == "__main__":
    sys.exit(main())
