"""Could another pick rule reach task arithmetic? Equal-preference picks among the models a
many-task run evaluated, by several rules, against TA at its best λ.

    .venv/bin/python bench/pick_rules.py [--sets "A,B,C,D;E,F,G,H;all"] [--seeds 0 1 2]
        [--methods map-no-floor map-parego] [--rhos 0.05 0.2 1] [--csv PATH] [--threads 1]

Task sets, seeds, methods and budgets as bench/many_tasks.py: map with its default design
without the pick floor (map no-floor) and map+parego 2x5, each run once per seed; TA
(c = λ·1, λ in 0.1..1.0, the best mean). Each rule is applied to every model the run
evaluated (design, refinement, re-evaluated front and the pretrained model), as
--pick-from evaluated does (src.core.front.pick_evaluated:
models that keep every task at or above the pretrained model first; each task rescaled
between the run's own anchors, its pretrained and fine-tuned values as the run knows them).
Rules:
  tchebycheff           the CLI's default (max_k w_k d_k, d_k = 1 - the task's share);
  weighted-sum          the original's (raw accuracies);
  augmented ρ           max_k w_k d_k + ρ Σ_k w_k d_k (pymoo's AASF with weights 1/w),
                        bench-only: registered here for the run, not a CLI option;
  mean share            Σ_k w_k d_k alone (the limit of large ρ), bench-only.
Prints per T, method and rule: means over task sets and seeds of the pick's mean and
worst-task accuracy (evaluation and held-out split), the runs whose pick is at or above
TA on both measures, and the runs that evaluated any such model (no rule applied to the
evaluated models can do better). The runs are evaluated once; the rules cost nothing.
Asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import add_common_flags, demo_zoo, set_threads  # repo on path
from front_quality import Evaluator, HeldOut, write_csv
from many_tasks import (NO_FLOOR, PAREGO, TA_LAMBDAS, Counted, beats_ta, direct_run, surrogate_run,
                        task_sets)
from src.core import pareto
from src.core.front import pick_evaluated

SENSE = "max"
# map-no-floor: map's default design without --pick-floor task-arithmetic (the rules here
# replace the pick; the floor is measured in many_tasks.py)
METHOD_LABEL = {"map-no-floor": NO_FLOOR, "map-parego": PAREGO}


class AugmentedTchebycheff(pareto.Tchebycheff):
    """Tchebycheff plus ρ times the weighted sum of the same normalised distances."""

    def __init__(self, rho: float):
        self.rho, self.name = float(rho), f"augmented {rho:g}"

    def scores(self, F, weights, senses, worst=None, best=None):
        from pymoo.decomposition.aasf import AASF

        d = self.distances(F, senses, worst, best)
        return AASF(rho=self.rho).do(d, 1.0 / np.clip(weights, 1e-12, None),
                                     utopian_point=np.zeros(F.shape[1]))


class MeanShare(pareto.Tchebycheff):
    """The weighted sum of the normalised distances alone."""

    name = "mean share"

    def scores(self, F, weights, senses, worst=None, best=None):
        return self.distances(F, senses, worst, best) @ weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=None, help="as bench/many_tasks.py")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHOD_LABEL), choices=METHOD_LABEL)
    p.add_argument("--rhos", type=float, nargs="+", default=[0.05, 0.2, 1.0])
    p.add_argument("--csv", default=None)
    add_common_flags(p)
    a = p.parse_args()
    set_threads(a.threads)
    zoo = demo_zoo()
    tasks = list(zoo.tasks)
    sets = task_sets(a.sets or f"{','.join(tasks[:4])};{','.join(tasks[4:])};all", tasks)
    # bench-only rules join the registry for this process, so pick_evaluated applies them
    extra = [AugmentedTchebycheff(r) for r in a.rhos] + [MeanShare()]
    for rule in extra:
        pareto.PICK_METHODS[rule.name] = rule
    rules = ["tchebycheff", "weighted-sum", *(r.name for r in extra)]
    ev = Evaluator(zoo, tasks)
    rows = []
    for task_set in sets:
        rows += run_set(ev, task_set, a.methods, a.seeds, rules)
    report(rows, rules)
    if a.csv:
        write_csv(Path(a.csv), rows)


def run_set(ev, task_set, methods, seeds, rules) -> list[dict]:
    T = len(task_set)
    evaluate, scorer = Counted(ev, task_set), HeldOut(ev, task_set)
    pre = evaluate(np.zeros((1, T)))[0]
    C_ta = TA_LAMBDAS[:, None] * np.ones((1, T))
    ta = direct_run(C_ta, evaluate(C_ta))
    ta_eval = ta["pick_y"]
    ta_held = scorer(ta["pick_c"][None])[0]
    print(f"\n{'+'.join(task_set)} (T={T}): TA at λ={ta['pick_c'][0]:.1f}: mean "
          f"{ta_eval.mean():.4f}, worst {ta_eval.min():.4f}", flush=True)
    rows = []
    for method in methods:
        for seed in seeds:
            run = surrogate_run(method, evaluate, task_set, seed)
            # the run's models; the pretrained model (its last row) joins as pick_evaluated's own
            C, Y = run["C_all"][:-1], run["Y_all"][:-1]
            beater = beats_ta(Y, (ta_eval.mean(), ta_eval.min()), better_on_one=True)
            for rule in rules:
                pick = pick_evaluated([(C, Y, "evaluated")], pre, (1.0,) * T, [SENSE] * T,
                                      rule, *run["anchors"], [])
                held = scorer(pick.coefficients[None])[0]
                rows.append({
                    "tasks": "+".join(task_set), "T": T, "method": METHOD_LABEL[method],
                    "seed": seed, "rule": rule, "evaluations": len(run["Y_all"]),
                    "eval_mean": pick.real.mean(), "eval_worst": pick.real.min(),
                    "held_mean": held.mean(), "held_worst": held.min(),
                    "ta_eval_mean": ta_eval.mean(), "ta_eval_worst": ta_eval.min(),
                    "ta_held_mean": ta_held.mean(), "ta_held_worst": ta_held.min(),
                    "ge_ta_eval": beats_ta(pick.real[None], (ta_eval.mean(), ta_eval.min())),
                    "ge_ta_held": beats_ta(held[None], (ta_held.mean(), ta_held.min())),
                    "ta_beater_evaluated": beater,
                    "coefficients": np.round(pick.coefficients, 3).tolist()})
            tcheb = rows[-len(rules)]
            if not np.allclose(tcheb["eval_mean"], run["evaluated"]["pick_y"].mean()):
                print(f"  note: the tchebycheff rule here differs from the run's own evaluated "
                      f"pick (mean {run['evaluated']['pick_y'].mean():.4f}; ties broken in "
                      "another order)", flush=True)
            print(f"  {METHOD_LABEL[method]:<15} seed {seed}: tchebycheff pick mean "
                  f"{tcheb['eval_mean']:.4f} worst {tcheb['eval_worst']:.4f}; evaluated a "
                  f"TA-beater: {'yes' if beater else 'no'}", flush=True)
    return rows


def report(rows: list[dict], rules) -> None:
    print("\nmeans over task sets and seeds; >= TA: runs whose pick is at or above TA at its "
          "best λ on both the mean and the worst task (evaluation / held-out split); "
          "TA-beater: runs that evaluated a merge other than TA at or above it on both and "
          "above it on one (evaluation split)")
    print("| T | method | rule | eval mean | eval worst | held mean | held worst | >= TA eval "
          "| >= TA held | TA-beater evaluated |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for T in sorted({r["T"] for r in rows}):
        for method in dict.fromkeys(r["method"] for r in rows):
            for rule in rules:
                sel = [r for r in rows if r["T"] == T and r["method"] == method and
                       r["rule"] == rule]
                if not sel:
                    continue
                n = len(sel)

                def m(k: str) -> float:
                    return float(np.mean([r[k] for r in sel]))
                print(f"| {T} | {method} | {rule} | {m('eval_mean'):.4f} | "
                      f"{m('eval_worst'):.4f} | {m('held_mean'):.4f} | {m('held_worst'):.4f} "
                      f"| {sum(r['ge_ta_eval'] for r in sel)}/{n} | "
                      f"{sum(r['ge_ta_held'] for r in sel)}/{n} | "
                      f"{sum(r['ta_beater_evaluated'] for r in sel)}/{n} |")
    for T in sorted({r["T"] for r in rows}):
        ta = {r["tasks"]: r for r in rows if r["T"] == T}
        print(f"TA at its best λ, T={T}: eval mean "
              f"{np.mean([r['ta_eval_mean'] for r in ta.values()]):.4f} worst "
              f"{np.mean([r['ta_eval_worst'] for r in ta.values()]):.4f}; held-out mean "
              f"{np.mean([r['ta_held_mean'] for r in ta.values()]):.4f} worst "
              f"{np.mean([r['ta_held_worst'] for r in ta.values()]):.4f}")


if __name__ == "__main__":
    sys.exit(main())
