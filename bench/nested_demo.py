"""Nested MAP on all 8 demo tasks against task arithmetic at one shared coefficient.

    .venv/bin/python bench/nested_demo.py [--point 20] [--n-gen 200] [--alone] [--seed S]
        [--pick tchebycheff|weighted-sum] [--threads 1]

Runs `run_MAP.py --demo --method nested` on the 8 demo tasks (uniform preference) and
prints the evaluations it used, the accuracy per task of the tree's own final model and of
the model handed over (the same unless the TA floor, default from 4 tasks, replaced it). Reference: task
arithmetic θ_pre + λ Σ τ_i for λ in 0.1..1.0, every task evaluated with our own engine,
the best λ by mean accuracy. Also the fine-tuned models' own accuracies (c = e_i), and the
segment from the tree's final model to TA at its best λ, c = (1 - s) c_tree + s λ 1 (is any
merge on it at or above TA on both the mean and the worst task? measured, not counted).
--seed and --pick go to run_MAP.py as they are (its defaults when not given).
Asserts nothing.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import (add_common_flags, demo_zoo, engine_for, read_json, run_cli, set_threads,
                    workdir)
from args import MAX_SEED  # common put the repository on the path
from map_common.argtypes import int_in

ALONE = ("--nested-context", "none", "--pick-floor", "pretrained")
EIGHT = ["LetterVal", "DigitVal", "ShapeVal", "ColorVal", "TextureVal", "PositionVal",
         "ArrowVal", "SymbolVal"]


@dataclass
class NestedRun:
    """The final model of an 8-task nested MAP run and what it cost."""

    coefficients: dict[str, float]   # on every task vector: theta_pre + sum_i c_i tau_i
    accuracy: dict[str, float]       # measured by the run, on the evaluation sets
    tree_accuracy: dict[str, float]  # the tree's own final model (the last round's merge)
    tree_coefficients: list[float]   # its coefficients, in the run's task order
    handed_over: str                 # "nested tree", or what the TA floor handed over
    n_evaluations: int
    rounds: int
    wall: float
    search_seconds: float


def run_nested(zoo, tasks: list[str], folder: Path, point: int = 20, n_gen: int = 200,
               flags: tuple[str, ...] = ()) -> NestedRun:
    """`run_MAP.py --demo --method nested` on ``tasks`` with the uniform preference (and
    ``flags``), in ``folder``/nested8."""
    _, wall = run_cli("--demo", "--zoo-dir", zoo.path.parent, "--method", "nested",
                      "--zeroshot-merge-models", *tasks, "--point", point,
                      "--n-gen", n_gen, "--results-path", folder, "--exp-id", "nested8", *flags)
    run = read_json(folder / "nested8" / "run.json")
    merge = read_json(folder / "nested8" / "final_model" / "merge.json")
    top = read_json(folder / "nested8" / "merge_tree.json")["rounds"][-1]
    floor = run["summary"]["final"].get("floor")
    return NestedRun(coefficients=merge["coefficients"], accuracy=merge["accuracy"],
                     tree_accuracy=top["measured"], tree_coefficients=top["coefficients"],
                     handed_over="nested tree" if floor is None else floor["handed_over"],
                     n_evaluations=run["summary"]["n_evaluations"],
                     rounds=run["summary"]["rounds"], wall=wall,
                     search_seconds=run["timings"]["search_seconds"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--point", type=int, default=20, help="evaluations per pair")
    p.add_argument("--n-gen", type=int, default=200)
    p.add_argument("--alone", action="store_true", help="--nested-context none --pick-floor "
                   "pretrained: the original's tree (nested's default before the TA context)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=None,
                   help="run_MAP.py --seed (pair designs), checked as run_MAP.py checks it")
    p.add_argument("--pick", choices=("tchebycheff", "weighted-sum"), default=None,
                   help="run_MAP.py --pick (each pair's pick)")
    add_common_flags(p)
    a = p.parse_args()
    threads = set_threads(a.threads)
    zoo = demo_zoo()
    print(f"demo zoo: {zoo.path}; torch threads: {threads}")

    with workdir(a.keep) as tmp:
        flags = (*(ALONE if a.alone else ()),
                 *(("--seed", a.seed) if a.seed is not None else ()),
                 *(("--pick", a.pick) if a.pick is not None else ()))
        nested_run = run_nested(zoo, EIGHT, tmp, a.point, a.n_gen, flags)

    engine = engine_for(zoo, EIGHT)
    eye = np.eye(len(EIGHT))
    finetuned = {t: engine.evaluate_at(eye[i], [t])[t]["accuracy"] for i, t in enumerate(EIGHT)}
    lambdas = np.round(np.arange(1, 11) / 10, 1)
    ta = {}
    for lam in lambdas:
        evals = engine.evaluate_at(np.full(len(EIGHT), lam), EIGHT)
        ta[lam] = {t: evals[t]["accuracy"] for t in EIGHT}
    best = max(lambdas, key=lambda lam: np.mean(list(ta[lam].values())))

    nested, tree = nested_run.accuracy, nested_run.tree_accuracy
    coefficients = nested_run.coefficients
    print(f"\nnested MAP: {nested_run.n_evaluations} evaluations in "
          f"{nested_run.rounds} rounds ({a.point} per pair), wall {nested_run.wall:.1f} s "
          f"(search {nested_run.search_seconds:.1f} s); handed over: {nested_run.handed_over}")
    print(f"task arithmetic: {len(lambdas)} evaluations on all 8 tasks; best λ = {best}")
    print("mean accuracy of task arithmetic per λ: " + ", ".join(
        f"{lam}: {np.mean(list(ta[lam].values())):.3f}" for lam in lambdas))
    print(f"\n{'task':14} {'fine-tuned':>10} {'tree':>10} {'nested MAP':>10} {'coef':>6} "
          f"{f'TA λ={best}':>10}")
    for t in EIGHT:
        print(f"{t:14} {finetuned[t]:>10.4f} {tree[t]:>10.4f} {nested[t]:>10.4f} "
              f"{coefficients[t]:>6.3f} {ta[best][t]:>10.4f}")
    mean = {k: float(np.mean(list(v.values()))) for k, v in (
        ("ft", finetuned), ("tree", tree), ("nested", nested), ("ta", ta[best]))}
    print(f"{'mean':14} {mean['ft']:>10.4f} {mean['tree']:>10.4f} {mean['nested']:>10.4f} "
          f"{'':>6} {mean['ta']:>10.4f}")
    print(f"{'worst':14} {min(finetuned.values()):>10.4f} {min(tree.values()):>10.4f} "
          f"{min(nested.values()):>10.4f} {'':>6} {min(ta[best].values()):>10.4f}")
    print(f"\nnested MAP mean / task arithmetic mean: {mean['nested'] / mean['ta']:.3f} "
          f"(the tree's own final model: {mean['tree'] / mean['ta']:.3f})")

    c_tree, c_ta = np.asarray(nested_run.tree_coefficients), np.full(len(EIGHT), best)
    ta_worst = min(ta[best].values())
    print(f"\nfrom the tree's model to TA (λ = {best}): c = (1 - s) c_tree + s λ 1")
    print(f"{'s':>5} {'mean':>8} {'worst':>8}  at or above TA on both")
    for step in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0):
        evals = engine.evaluate_at((1 - step) * c_tree + step * c_ta, EIGHT)
        acc = [evals[t]["accuracy"] for t in EIGHT]
        above = np.mean(acc) >= mean["ta"] and min(acc) >= ta_worst
        print(f"{step:>5.2f} {np.mean(acc):>8.4f} {min(acc):>8.4f}  {'yes' if above else 'no'}")


if __name__ == "__main__":
    main()
