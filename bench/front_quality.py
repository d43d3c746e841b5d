"""How close does each method get to the Pareto front a dense grid of merges gives? (demo zoo)

    .venv/bin/python bench/front_quality.py [--sets pairs|triples|all|A,B;C,D,E]
        [--max-sets N] [--methods map refine bayesian dare ties random botorch lhs]
        [--refine 2x5 ...] [--botorch-sets N] [--random-seeds 0 1 2]
        [--reevaluate 10] [--pair-grid 21] [--triple-grid 11] [--splits 20]
        [--cache DIR] [--csv PATH] [--no-curve]

Truth: every point of a grid over [0, 1]^T merged and evaluated (cached per task set in
--cache, so reruns skip it). Every method gets the same number of real evaluations (every
merged model counts, re-evaluations included): budget = bayesian's default schedule
((T+1)(T+2)/2 + 2 initial + 3 x 5) plus --reevaluate.
  map       map_mode.design of that many points, then src.front.solve_front as the CLI
            runs it (quadratic surrogates, NSGA-III, --reevaluate front points spread
            along the front, the first preference's pick among them);
  map+refine RxK  the same total: a design of R*K fewer points, then --refine-rounds R
            --refine-points K (src.refine), then the same front step;
  map dare / map ties  map with --merge-method dare / ties (an engine over the set's tasks,
            as the CLI builds it), scored against the task-arithmetic grid as the
            original's figure does (no held-out score: its models are not the grid's);
  map lhs   map with --design lhs (one-hot + centre + a Latin hypercube), also with refine;
  bayesian  src.bayesian.run_rounds with its default schedule, then the same front step;
  random    the budget as uniform random merges (each --random-seeds seed);
  botorch   qLogNEHVI, GP per task (bench/mobo.py; needs botorch).
The method's front is the non-dominated set of every model it evaluated for real.
Indicators (src.indicators, reference point = the grid's worst - 0.01): HV ratio to the
grid front, IGD+, preference regret (mean over PREFERENCES; MAP/bayesian pick on their
predicted front, random/botorch on their evaluated models), predicted-vs-real error, wall
time. Noise floor: the HV ratio the grid itself reaches when its front is chosen on one
random half of each evaluation set and scored on the other half, and the same with two
bootstrap resamples of the full set (src.indicators.bootstrap_floor; the truth the HV
ratios are divided by is a noisy grid front too, so read each ratio against these).
MAP's HV ratio as its design grows from (T+1)(T+2)/2 to 3(T+1)(T+2)/2 points (--no-curve
skips it). Per-set rows go to --csv; the summary table is printed. Asserts nothing.

Held-out check: the Val accuracies a method searched on are the ones it is scored on,
which flatters methods that keep the best of many noisy evaluations. So the models each
method would hand over (its Val front and its preference picks) are also measured on the
base datasets' test splits (Letter for LetterVal: disjoint, never searched on) against the
test grid's front; "oracle" is the Val grid's own front and picks measured the same way,
the held-out ceiling for a perfect method.

MAP and bayesian run on the CLI's own code path (map_mode.design, bayesian.run_rounds,
src.refine, src.front.solve_front; only the figures are skipped). Preference picks the
front step did not re-evaluate are measured for the regret and not counted (as a user
evaluates the one model they pick).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common import add_common_flags, demo_zoo, set_threads  # also puts the repo on sys.path
from args import default_bayes_schedule
from src import bayesian, pareto, sampling
from src.indicators import (bootstrap_floor, front_indicators, pareto_filter,
                            preference_regret)
from src.pareto import non_dominated

TRIPLES = [("LetterVal", "DigitVal", "ShapeVal"), ("LetterVal", "ColorVal", "PositionVal"),
           ("DigitVal", "TextureVal", "ArrowVal"), ("ShapeVal", "ColorVal", "SymbolVal"),
           ("PositionVal", "ArrowVal", "SymbolVal"), ("LetterVal", "TextureVal", "SymbolVal")]
PREFERENCES = {2: [(1, 1), (3, 1), (1, 3)], 3: [(1, 1, 1), (3, 1, 1), (1, 3, 1), (1, 1, 3)]}
N_GEN = 100
SENSE = "max"


# ------------------------------------------------------------------ evaluation
def heldout_name(task: str) -> str:
    """LetterVal -> Letter: the base dataset's test split, disjoint from the Val set (which
    is 10% of the base train split) and never seen by the methods."""
    return task.removesuffix("Val")


class Evaluator:
    """One engine over every task of the zoo; a task set's merge sets the other tasks'
    coefficients to 0 (theta_pre + sum over the set only). Counts the evaluations the
    methods ask for (on the Val sets); held-out test evaluations are measurement only."""

    def __init__(self, zoo, tasks: Sequence[str]):
        from task_vectors.engine import MergeEngine

        root = zoo.path
        heads = {t: str(root / f"head_{t}.pt") for t in tasks}
        heads |= {heldout_name(t): heads[t] for t in tasks}  # same classes, same head
        self.engine = MergeEngine.from_checkpoints(
            model_name=zoo.model_name, pretrained=str(root / "zeroshot.pt"),
            finetuned={t: str(root / t / "finetuned.pt") for t in tasks}, heads=heads,
            datasets=list(heads), data_location=str(root))
        self.tasks = list(tasks)
        self.count = 0

    def full(self, task_set: Sequence[str], c: np.ndarray) -> np.ndarray:
        full = np.zeros(len(self.tasks))
        full[[self.tasks.index(t) for t in task_set]] = c
        return full

    def accuracy(self, task_set: Sequence[str], counted: bool = True, engine=None
                 ) -> Callable[[np.ndarray], np.ndarray]:
        """evaluate(C [n, T]) -> accuracies [n, T], through MergeEngine.evaluate_at (of
        ``engine``, one over the task set's tasks only, when given)."""
        def evaluate(C: np.ndarray) -> np.ndarray:
            rows = []
            for c in np.atleast_2d(C):
                if engine is None:
                    res = self.engine.evaluate_at(self.full(task_set, c), list(task_set))
                else:
                    res = engine.evaluate_at(np.asarray(c, dtype=float), list(task_set))
                rows.append([res[d]["accuracy"] for d in task_set])
                self.count += int(counted)
            return np.array(rows, dtype=float).reshape(-1, len(task_set))
        return evaluate

    def heldout(self, task_set: Sequence[str], C: np.ndarray) -> np.ndarray:
        """Test accuracies [n, T] (not counted: measurement, not search)."""
        C = np.atleast_2d(C)
        if len(C) == 0:
            return np.zeros((0, len(task_set)))
        names = [heldout_name(t) for t in task_set]
        return np.column_stack([c.mean(axis=1) for c in self.per_image(task_set, C, names)])

    def per_image(self, task_set: Sequence[str], C: np.ndarray,
                  datasets: Sequence[str] | None = None) -> list[np.ndarray]:
        """Per-image correctness (n, N_k) of each merge on each dataset (default: the task
        set's Val sets; the engine only reports the mean, so its encoder and heads are run
        here directly)."""
        import torch

        eng = self.engine
        datasets = list(task_set) if datasets is None else list(datasets)
        out = [[] for _ in datasets]
        with torch.no_grad():
            for c in C:
                eng.set_coefficients(self.full(task_set, c))
                for k, d in enumerate(datasets):
                    hits = [(eng.heads[d](eng.encoder(x)).argmax(dim=1) == y).cpu()
                            for x, y in eng.eval_sets[d].batches(eng.batch_size)]
                    out[k].append(torch.cat(hits).numpy())
        return [np.array(rows, dtype=bool) for rows in out]


def merged_engine(zoo, task_set: Sequence[str], method: str, seed: int):
    """An engine over the task set's tasks only, with --merge-method's tau transform (TIES
    elects signs among the merged tasks, so the other zoo tasks must not take part), built
    as the CLI builds it (task_vectors.merging.tau_transform, --seed as DARE's mask)."""
    from task_vectors.engine import MergeEngine
    from task_vectors.merging import tau_transform

    root = zoo.path
    return MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=str(root / "zeroshot.pt"),
        finetuned={t: str(root / t / "finetuned.pt") for t in task_set},
        heads={t: str(root / f"head_{t}.pt") for t in task_set}, datasets=list(task_set),
        data_location=str(root), tau_transform=tau_transform(method, seed=seed))


def grid_truth(ev: Evaluator, task_set: Sequence[str], per_axis: int, cache: Path
               ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, float]:
    """(C_grid, per-image Val correctness per task, test accuracies [n, T], seconds), from
    the cache when present."""
    key = cache / f"grid-v2_{'_'.join(task_set)}_{per_axis}.npz"
    T = len(task_set)
    if key.exists():
        data = np.load(key)
        return data["C"], [data[f"correct{k}"] for k in range(T)], data["test"], 0.0
    start = time.perf_counter()
    C = sampling.grid_points(T, per_axis)
    correct = ev.per_image(task_set, C)
    test = ev.heldout(task_set, C)
    seconds = time.perf_counter() - start
    cache.mkdir(parents=True, exist_ok=True)
    tmp = key.with_name(key.stem + ".tmp.npz")
    np.savez_compressed(tmp, C=C, test=test, **{f"correct{k}": c for k, c in enumerate(correct)})
    tmp.replace(key)
    return C, correct, test, seconds


# ------------------------------------------------------------------ methods
# MAP and bayesian run on the CLI's own code path: map_mode.design, bayesian.run_rounds,
# src.refine (as --refine-rounds) and src.front.solve_front (fit -> search -> pick ->
# re-evaluate), with the CLI's defaults (NSGA-III over the sampled box, N_GEN generations).
# Only solve_front's figures are skipped (drawing is not what is measured).
PICK = "weighted-sum"  # preference regret is a weighted-sum regret: pick by the same rule


def budget_for(T: int, reevaluate: int) -> tuple[int, int]:
    """(points the surrogate methods fit on, total real evaluations of every method)."""
    n_initial, n_update, n_iter = default_bayes_schedule(T)
    n_fit = n_initial + n_update * n_iter
    return n_fit, n_fit + reevaluate


class Measure:
    """Real values of preference picks the front step did not re-evaluate: measured for the
    regret (as held-out values are), not counted as the method's evaluations."""

    def __init__(self, evaluate):
        self.evaluate = evaluate


def front_step(evaluate, C: np.ndarray, Y: np.ndarray, task_set, preferences, n_reeval: int,
               seed: int, measure: Measure) -> dict:
    """src.front.solve_front as the CLI runs it (re-evaluating n_reeval front points, the
    first preference's pick among them), then each preference's pick on its front."""
    import tempfile

    from src import outputs
    from src.front import FrontTask, SearchSettings, solve_front
    from src.metrics import get_metric

    outputs.draw_front = lambda *a, **k: []
    T = C.shape[1]
    with tempfile.TemporaryDirectory() as folder:
        task = FrontTask(C=C, Y=Y, labels=list(task_set), metric=get_metric("accuracy"),
                         weights=preferences[0], folder=Path(folder), names="bench",
                         reevaluate=n_reeval, evaluate_real=evaluate)
        res = solve_front(task, SearchSettings(low=0.0, high=1.0, n_gen=N_GEN, seed=seed,
                                               pick=PICK))
    rows = res.reevaluated
    real_of = dict(zip(rows, res.F_real)) if res.F_real is not None else {}
    picks = [pareto.pick(res.F_front, w, [SENSE] * T, PICK,
                         worst=np.array(res.anchors["worst"]), best=np.array(res.anchors["best"]))
             for w in preferences]
    chosen_real = [real_of[p] if p in real_of else measure.evaluate(res.C_front[[p]])[0]
                   for p in picks]
    real = res.F_real if res.F_real is not None else np.zeros((0, Y.shape[1]))
    return {"C_all": np.vstack([C, res.C_front[rows]]), "Y_all": np.vstack([Y, real]),
            "predicted": res.F_front[rows], "real": real, "chosen_real": chosen_real,
            "chosen_C": res.C_front[picks], "refine": None}


def run_refine(evaluate, C, Y, rounds: int, points: int, seed: int):
    """--refine-rounds / --refine-points with the CLI's search settings."""
    from src import refine

    T = C.shape[1]
    search = refine.surrogate_search("sigmoid", [SENSE] * T, low=0.0, high=1.0, n_gen=N_GEN,
                                     seed=seed)
    return refine.refine_front(evaluate, search, C, Y, rounds=rounds, points=points,
                               min_distance=refine.MIN_DISTANCE)


def run_map(evaluate, task_set, n_fit: int, preferences, n_reeval: int, seed: int,
            measure: Measure, rounds: int = 0, points: int = 5, design_kind: str = "tool"
            ) -> dict:
    """map_mode.design of n_fit - rounds * points points, refinement, the front step."""
    from types import SimpleNamespace

    from src.modes.map_mode import design

    T = len(task_set)
    n_design = n_fit - rounds * points
    if n_design < sampling.min_points(T):
        raise SystemExit(f"--refine {rounds}x{points}: leaves {n_design} design points of "
                         f"{n_fit}, fewer than a quadratic's {sampling.min_points(T)}")
    C = design(SimpleNamespace(T=T, points=n_design, low=0.0, high=1.0, seed=seed,
                               design="lhs" if design_kind == "lhs" else "grid"))
    Y = evaluate(C)
    info = None
    if rounds:
        r = run_refine(evaluate, C, Y, rounds, points, seed)
        C, Y, info = r.C, r.Y, r.summary()
    out = front_step(evaluate, C, Y, task_set, preferences, n_reeval, seed, measure)
    out["refine"] = info
    return out


def run_bayes(evaluate, task_set, preferences, n_reeval: int, seed: int,
              measure: Measure) -> dict:
    T = len(task_set)
    n_initial, n_update, n_iter = default_bayes_schedule(T)
    res = bayesian.run_rounds(evaluate, T, n_initial=n_initial, n_update=n_update,
                              n_iter=n_iter, link="sigmoid", seed=seed)
    return front_step(evaluate, res.C, res.Y, task_set, preferences, n_reeval, seed, measure)


def direct(C: np.ndarray, Y: np.ndarray, preferences) -> dict:
    """A direct-search method: every evaluation is real; picks among its evaluated models."""
    picks = [pareto.pick_by_preference(Y, w, [SENSE] * Y.shape[1]) for w in preferences]
    return {"C_all": C, "Y_all": Y, "predicted": None, "real": None,
            "chosen_real": [Y[i] for i in picks], "chosen_C": C[picks]}


def heldout_score(ev: Evaluator, task_set, C_all: np.ndarray, Y_all: np.ndarray,
                  chosen_C: np.ndarray, test_grid: np.ndarray, preferences) -> dict:
    """The models a method would hand over (its Val front, its preference picks) measured
    on the held-out test splits, against the test grid's front: free of the selection
    bias that flatters every method scored on the same noisy Val evaluations it chose by."""
    front_C = C_all[non_dominated(Y_all, SENSE)]
    ind = front_indicators(test_grid, None, ev.heldout(task_set, front_C), senses=SENSE)
    chosen_test = ev.heldout(task_set, chosen_C)
    regrets = [preference_regret(test_grid, y, w, SENSE) for y, w in zip(chosen_test, preferences)]
    return {"hv_ratio_test": ind["hv_ratio"], "igd_plus_test": ind["igd_plus"],
            "regret_test": float(np.mean(regrets))}


def score(out: dict, truth_Y: np.ndarray, preferences) -> dict:
    ind = front_indicators(truth_Y, None, out["Y_all"], senses=SENSE)
    regrets = [preference_regret(truth_Y, chosen, w, SENSE)
               for chosen, w in zip(out["chosen_real"], preferences)]
    row = {"hv_ratio": ind["hv_ratio"], "igd_plus": ind["igd_plus"], "igd": ind["igd"],
           "win_rate_of_truth": ind["win_rate_of_truth"], "regret": float(np.mean(regrets)),
           "regret_max": float(np.max(regrets)), "evaluations": int(len(out["Y_all"]))}
    if out["predicted"] is not None:
        both = front_indicators(truth_Y, out["predicted"], out["real"], senses=SENSE)
        row |= {"pred_real_mae": both["predicted_vs_real_mae"],
                "hv_ratio_reevaluated": both["hv_ratio"]}
    return row


# ------------------------------------------------------------------ main
def task_sets(spec: str, tasks: Sequence[str]) -> list[tuple[str, ...]]:
    pairs = list(itertools.combinations(tasks, 2))
    if spec == "pairs":
        return pairs
    if spec == "triples":
        return TRIPLES
    if spec == "all":
        return pairs + TRIPLES
    return [tuple(s.split(",")) for s in spec.split(";")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="all")
    p.add_argument("--max-sets", type=int, default=None, help="only the first N task sets")
    p.add_argument("--methods", nargs="+", default=["map", "refine", "bayesian", "dare", "ties",
                                                     "random", "botorch"],
                   help="refine: map + --refine-rounds at the same total budget (each "
                        "--refine spec); dare / ties: map with --merge-method dare / ties, "
                        "scored against the task-arithmetic grid as the original's figure")
    p.add_argument("--refine", nargs="+", default=["2x5"], metavar="RxK",
                   help="refinement rounds x new points per round (taken from the design)")
    p.add_argument("--botorch-sets", type=int, default=None,
                   help="run botorch on the first N pairs and first N triples only "
                        "(default: every set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reevaluate", type=int, default=10)
    p.add_argument("--pair-grid", type=int, default=21)
    p.add_argument("--triple-grid", type=int, default=11)
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "map-merging" / "bench"))
    p.add_argument("--csv", default=None)
    p.add_argument("--no-curve", action="store_true")
    add_common_flags(p)
    a = p.parse_args()
    threads = set_threads(a.threads)
    zoo = demo_zoo()
    tasks = zoo.tasks
    sets = task_sets(a.sets, tasks)[: a.max_sets]
    if "botorch" in a.methods:
        import importlib.util

        if importlib.util.find_spec("botorch") is None:
            print("botorch is not installed (pip install '.[bench]'): its rows are skipped")
            a.methods = [m for m in a.methods if m != "botorch"]
    ev = Evaluator(zoo, tasks)
    cache = Path(a.cache)
    print(f"demo zoo {zoo.path}; torch threads {threads}; {len(sets)} task sets; "
          f"re-evaluate {a.reevaluate}")

    rows: list[dict] = []
    curve: list[dict] = []
    for task_set in sets:
        T = len(task_set)
        prefs = PREFERENCES[T]
        C_grid, correct, test_grid, grid_s = grid_truth(
            ev, task_set, a.pair_grid if T == 2 else a.triple_grid, cache)
        truth_Y = np.column_stack([c.mean(axis=1) for c in correct])
        floor = bootstrap_floor(correct, SENSE, n_splits=a.splits, seed=a.seed)
        floor_boot = bootstrap_floor(correct, SENSE, n_splits=a.splits, seed=a.seed,
                                     resample="bootstrap")
        n_fit, budget = budget_for(T, a.reevaluate)
        evaluate = ev.accuracy(task_set)
        measure = Measure(ev.accuracy(task_set, counted=False))
        # the grid's per-image path must agree with the engine's own accuracy
        check = np.abs(evaluate(C_grid[:: max(1, len(C_grid) // 3)]) -
                       truth_Y[:: max(1, len(C_grid) // 3)]).max()
        if check > 1e-9:
            raise SystemExit(f"per-image accuracies differ from MergeEngine.evaluate by {check}")
        # the perfect method on held-out data: the Val grid's front and picks, on test
        oracle = heldout_score(ev, task_set, C_grid, truth_Y,
                               C_grid[[pareto.pick_by_preference(truth_Y, w, [SENSE] * T)
                                       for w in prefs]], test_grid, prefs)
        base = {"tasks": "+".join(task_set), "T": T, "grid_points": len(C_grid),
                "oracle_hv_ratio_test": oracle["hv_ratio_test"],
                "oracle_regret_test": oracle["regret_test"],
                "grid_seconds": grid_s, "truth_front": len(pareto_filter(truth_Y, SENSE)),
                "floor": floor["mean"], "floor_std": floor["std"],
                "floor_boot": floor_boot["mean"], "budget": budget}

        runs: list[tuple[str, int, Callable[[], dict]]] = []
        if "map" in a.methods:
            runs.append(("map", a.seed, lambda s=a.seed: run_map(
                evaluate, task_set, n_fit, prefs, a.reevaluate, s, measure)))
        if "refine" in a.methods:
            for spec in a.refine:
                R, K = map(int, spec.split("x"))
                runs.append((f"map+refine {spec}", a.seed, lambda s=a.seed, R=R, K=K: run_map(
                    evaluate, task_set, n_fit, prefs, a.reevaluate, s, measure, R, K)))
        if "lhs" in a.methods:  # measurement only: is the design's edge-heavy grid a loss?
            runs.append(("map lhs", a.seed, lambda s=a.seed: run_map(
                evaluate, task_set, n_fit, prefs, a.reevaluate, s, measure,
                design_kind="lhs")))
            for spec in a.refine if "refine" in a.methods else []:
                R, K = map(int, spec.split("x"))
                runs.append((f"map lhs+refine {spec}", a.seed, lambda s=a.seed, R=R, K=K:
                             run_map(evaluate, task_set, n_fit, prefs, a.reevaluate, s,
                                     measure, R, K, design_kind="lhs")))
        if "bayesian" in a.methods:
            runs.append(("bayesian", a.seed, lambda s=a.seed: run_bayes(
                evaluate, task_set, prefs, a.reevaluate, s, measure)))
        for merge in ("dare", "ties"):
            if merge in a.methods:
                def run_merged(s=a.seed, merge=merge):
                    engine = merged_engine(zoo, task_set, merge, s)
                    out = run_map(ev.accuracy(task_set, engine=engine), task_set, n_fit, prefs,
                                  a.reevaluate, s,
                                  Measure(ev.accuracy(task_set, False, engine=engine)))
                    out["heldout"] = False  # its models are not the TA engine's
                    return out
                runs.append((f"map {merge}", a.seed, run_merged))
        if "random" in a.methods:
            from mobo import random_search
            for s in a.random_seeds:
                runs.append(("random", s, lambda s=s: direct(*random_search(
                    evaluate, T, budget, seed=s), prefs)))
        index_of_kind = sum(1 for t in sets[: sets.index(task_set)] if len(t) == T)
        if "botorch" in a.methods and (a.botorch_sets is None or index_of_kind < a.botorch_sets):
            from mobo import botorch_qnehvi
            runs.append(("botorch", a.seed, lambda s=a.seed: direct(*botorch_qnehvi(
                evaluate, T, budget, seed=s), prefs)))

        for method, seed, fn in runs:
            ev.count = 0
            start = time.perf_counter()
            out = fn()
            wall = time.perf_counter() - start
            row = base | {"method": method, "seed": seed, "seconds": wall,
                          "counted_evaluations": ev.count} | score(out, truth_Y, prefs)
            if out.get("refine"):
                row |= {"refine_points": sum(out["refine"]["points_per_round"]),
                        "refine_agreement": out["refine"]["agreement"][-1]}
            if out.get("heldout", True):
                row |= heldout_score(ev, task_set, out["C_all"], out["Y_all"],
                                     out["chosen_C"], test_grid, prefs)
            else:
                row |= {"hv_ratio_test": float("nan"), "igd_plus_test": float("nan"),
                        "regret_test": float("nan")}
            rows.append(row)
            print(f"{row['tasks']:<28} {method:<9} seed {seed}: HV ratio {row['hv_ratio']:.3f} "
                  f"(floor {floor['mean']:.3f}/{floor_boot['mean']:.3f}), IGD+ {row['igd_plus']:.4f}, regret "
                  f"{row['regret']:.4f}; test: HV ratio {row['hv_ratio_test']:.3f} (grid's Val front "
                  f"{oracle['hv_ratio_test']:.3f}), regret {row['regret_test']:.4f} ("
                  f"{oracle['regret_test']:.4f}); {ev.count} evals, {wall:.1f} s", flush=True)

        if not a.no_curve and "map" in a.methods:
            m = sampling.min_points(T)
            for n in sorted({m, 3 * m // 2, 2 * m, 3 * m}):
                out = run_map(evaluate, task_set, n, prefs, a.reevaluate, a.seed, measure)
                curve.append({"tasks": base["tasks"], "T": T, "n_fit": n,
                              "evaluations": n + len(out["real"]),
                              "hv_ratio": score(out, truth_Y, prefs)["hv_ratio"],
                              "floor": floor["mean"], "floor_boot": floor_boot["mean"]})

    summarise(rows, curve)
    if a.csv:
        write_csv(Path(a.csv), rows)
        if curve:
            write_csv(Path(a.csv).with_name(Path(a.csv).stem + "_curve.csv"), curve)


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def summarise(rows: list[dict], curve: list[dict]) -> None:
    if not rows:
        return
    print("\nper method and T (means over task sets and seeds; worst = lowest HV ratio)")
    print("floor: split-half / bootstrap noise floor of the HV ratio (see src.indicators); "
          "/boot: HV ratio over the bootstrap floor (1 = as good as a perfect method)")
    w = max(9, max(len(r["method"]) for r in rows))
    print(f"{'method':<{w}} {'T':>2} {'runs':>4} {'HV ratio':>8} {'worst':>6} {'floor':>11} "
          f"{'/boot':>5} {'worst':>5} {'IGD+':>7} {'regret':>7} {'pred err':>8} {'evals':>5} "
          f"{'sec':>6} | {'test HV':>7} {'oracle':>6} {'test regret':>11} {'oracle':>6}")
    for (method, T) in dict.fromkeys((r["method"], r["T"]) for r in rows):
        sel = [r for r in rows if r["method"] == method and r["T"] == T]
        mae = [r["pred_real_mae"] for r in sel if "pred_real_mae" in r]
        rel = [r["hv_ratio"] / r["floor_boot"] for r in sel]
        print(f"{method:<{w}} {T:>2} {len(sel):>4} {np.mean([r['hv_ratio'] for r in sel]):>8.3f} "
              f"{np.min([r['hv_ratio'] for r in sel]):>6.3f} "
              f"{np.mean([r['floor'] for r in sel]):>5.3f}/{np.mean([r['floor_boot'] for r in sel]):.3f} "
              f"{np.mean(rel):>5.3f} {np.min(rel):>5.3f} "
              f"{np.mean([r['igd_plus'] for r in sel]):>7.4f} "
              f"{np.mean([r['regret'] for r in sel]):>7.4f} "
              f"{(np.mean(mae) if mae else float('nan')):>8.4f} "
              f"{np.mean([r['evaluations'] for r in sel]):>5.0f} "
              f"{np.mean([r['seconds'] for r in sel]):>6.1f} | "
              f"{np.nanmean([r['hv_ratio_test'] for r in sel]) if any(np.isfinite(r['hv_ratio_test']) for r in sel) else float('nan'):>7.3f} "
              f"{np.mean([r['oracle_hv_ratio_test'] for r in sel]):>6.3f} "
              f"{np.nanmean([r['regret_test'] for r in sel]) if any(np.isfinite(r['regret_test']) for r in sel) else float('nan'):>11.4f} "
              f"{np.mean([r['oracle_regret_test'] for r in sel]):>6.4f}")
    if curve:
        print("\nMAP's HV ratio as its design grows (mean over task sets; + re-evaluations)")
        for T in sorted({c["T"] for c in curve}):
            for n in sorted({c["n_fit"] for c in curve if c["T"] == T}):
                sel = [c for c in curve if c["T"] == T and c["n_fit"] == n]
                print(f"T={T} design {n:>3} ({np.mean([c['evaluations'] for c in sel]):.0f} "
                      f"evals): HV ratio {np.mean([c['hv_ratio'] for c in sel]):.3f} "
                      f"(worst {np.min([c['hv_ratio'] for c in sel]):.3f}, floor "
                      f"{np.mean([c['floor'] for c in sel]):.3f}/"
                      f"{np.mean([c['floor_boot'] for c in sel]):.3f})")


if __name__ == "__main__":
    sys.exit(main())
