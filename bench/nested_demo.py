"""Nested MAP on all 8 demo tasks against task arithmetic at one shared coefficient.

    .venv/bin/python bench/nested_demo.py [--point 20] [--n-gen 200] [--threads 1]

Runs `run_MAP.py --demo --method nested` on the 8 demo tasks (uniform preference) and
prints the evaluations it used and the final model's accuracy per task. Reference: task
arithmetic θ_pre + λ Σ τ_i for λ in 0.1..1.0, every task evaluated with our own engine,
the best λ by mean accuracy. Also the fine-tuned models' own accuracies (c = e_i).
Asserts nothing.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import (add_common_flags, demo_zoo, engine_for, read_json, run_cli, set_threads,
                    workdir)

EIGHT = ["LetterVal", "DigitVal", "ShapeVal", "ColorVal", "TextureVal", "PositionVal",
         "ArrowVal", "SymbolVal"]


@dataclass
class NestedRun:
    """The final model of an 8-task nested MAP run and what it cost."""

    coefficients: dict[str, float]   # on every task vector: theta_pre + sum_i c_i tau_i
    accuracy: dict[str, float]       # measured by the run, on the evaluation sets
    n_evaluations: int
    rounds: int
    wall: float
    search_seconds: float


def run_nested(zoo, tasks: list[str], folder: Path, point: int = 20, n_gen: int = 200
               ) -> NestedRun:
    """`run_MAP.py --demo --method nested` on ``tasks`` with the uniform preference, in
    ``folder``/nested8."""
    _, wall = run_cli("--demo", "--zoo-dir", zoo.path.parent, "--method", "nested",
                      "--zeroshot-merge-models", *tasks, "--point", point,
                      "--n-gen", n_gen, "--results-path", folder, "--exp-id", "nested8")
    run = read_json(folder / "nested8" / "run.json")
    merge = read_json(folder / "nested8" / "final_model" / "merge.json")
    return NestedRun(coefficients=merge["coefficients"], accuracy=merge["accuracy"],
                     n_evaluations=run["summary"]["n_evaluations"],
                     rounds=run["summary"]["rounds"], wall=wall,
                     search_seconds=run["timings"]["search_seconds"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--point", type=int, default=20, help="evaluations per pair")
    p.add_argument("--n-gen", type=int, default=200)
    add_common_flags(p)
    a = p.parse_args()
    threads = set_threads(a.threads)
    zoo = demo_zoo()
    print(f"demo zoo: {zoo.path}; torch threads: {threads}")

    with workdir(a.keep) as tmp:
        nested_run = run_nested(zoo, EIGHT, tmp, a.point, a.n_gen)

    engine = engine_for(zoo, EIGHT)
    eye = np.eye(len(EIGHT))
    finetuned = {t: engine.evaluate_at(eye[i], [t])[t]["accuracy"] for i, t in enumerate(EIGHT)}
    lambdas = np.round(np.arange(1, 11) / 10, 1)
    ta = {}
    for lam in lambdas:
        evals = engine.evaluate_at(np.full(len(EIGHT), lam), EIGHT)
        ta[lam] = {t: evals[t]["accuracy"] for t in EIGHT}
    best = max(lambdas, key=lambda lam: np.mean(list(ta[lam].values())))

    nested = nested_run.accuracy
    coefficients = nested_run.coefficients
    print(f"\nnested MAP: {nested_run.n_evaluations} evaluations in "
          f"{nested_run.rounds} rounds ({a.point} per pair), wall {nested_run.wall:.1f} s "
          f"(search {nested_run.search_seconds:.1f} s)")
    print(f"task arithmetic: {len(lambdas)} evaluations on all 8 tasks; best λ = {best}")
    print("mean accuracy of task arithmetic per λ: " + ", ".join(
        f"{lam}: {np.mean(list(ta[lam].values())):.3f}" for lam in lambdas))
    print(f"\n{'task':14} {'fine-tuned':>10} {'nested MAP':>10} {'coef':>6} "
          f"{f'TA λ={best}':>10}")
    for t in EIGHT:
        print(f"{t:14} {finetuned[t]:>10.4f} {nested[t]:>10.4f} {coefficients[t]:>6.3f} "
              f"{ta[best][t]:>10.4f}")
    mean = {k: float(np.mean(list(v.values())))
            for k, v in (("ft", finetuned), ("nested", nested), ("ta", ta[best]))}
    print(f"{'mean':14} {mean['ft']:>10.4f} {mean['nested']:>10.4f} {'':>6} {mean['ta']:>10.4f}")
    print(f"\nnested MAP mean / task arithmetic mean: {mean['nested'] / mean['ta']:.3f}")


if __name__ == "__main__":
    main()
