"""Bayesian adaptive sampling against plain MAP at the same evaluation budget (demo zoo).

    .venv/bin/python bench/bayesian_vs_map.py [--pair LetterVal,DigitVal] [--seeds 0 1 2]
                                              [--held-out 30] [--front-points 15]

For each seed: `--method bayesian` with its default schedule, and `--method map` with
--point set to the same number of evaluations. Both are scored on the SAME held-out
coefficient vectors (uniform in the box, evaluated once with our own engine): the stored
surrogates' mean squared error and R² there. Then up to --front-points points spread along
each predicted front are merged and evaluated, and the hypervolume of those real
accuracies (reference point 0 for every task) is computed with src.pareto.hypervolume.
Prints per-seed rows, means and ratios (bayesian / map). Asserts nothing.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import (add_common_flags, demo_zoo, engine_for, evaluate, predict_all, r2,
                    read_front, read_json, run_cli, set_threads, spread_indices, workdir)
from args import default_bayes_schedule as default_schedule
from src.pareto import hypervolume, non_dominated


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", default="LetterVal,DigitVal")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--held-out", type=int, default=30)
    p.add_argument("--front-points", type=int, default=15)
    p.add_argument("--n-gen", type=int, default=100)
    add_common_flags(p)
    a = p.parse_args()
    threads = set_threads(a.threads)
    tasks = a.pair.split(",")
    T = len(tasks)
    names = "_".join(tasks)
    zoo = demo_zoo()
    engine = engine_for(zoo, tasks)
    initial, update, iterations = default_schedule(T)
    budget = initial + update * iterations
    print(f"demo zoo: {zoo.path}; torch threads: {threads}")
    print(f"pair {' / '.join(tasks)}; budget {budget} evaluations per run (bayesian: "
          f"{initial} initial + {iterations} x {update}); NSGA-III {a.n_gen} generations")

    rng = np.random.default_rng(12345)  # one held-out set for every run
    C_held = rng.uniform(0.0, 1.0, size=(a.held_out, T))
    Y_held = evaluate(engine, C_held, tasks)
    senses, ref = ["max"] * T, np.zeros(T)

    table: dict[str, list[dict]] = {"map": [], "bayesian": []}
    with workdir(a.keep) as tmp:
        for seed in a.seeds:
            for method in ("map", "bayesian"):
                exp_id = f"{method}-{seed}"
                extra = ["--point", budget] if method == "map" else []
                _, wall = run_cli("--demo", "--zoo-dir", zoo.path.parent, "--method", method,
                                  "--zeroshot-merge-models", *tasks, "--results-path", tmp,
                                  "--exp-id", exp_id, "--seed", seed, "--reevaluate", 0,
                                  "--n-gen", a.n_gen, *extra)
                run_dir = tmp / exp_id
                n_evals = read_json(run_dir / "run.json")["summary"]["n_evaluations"]
                P = predict_all(run_dir / f"{names}_surrogates.json", tasks, C_held)
                C_front, _ = read_front(run_dir / f"{names}pareto_front.json")
                F_real = evaluate(engine, C_front[spread_indices(len(C_front),
                                                                 a.front_points)], tasks)
                keep = non_dominated(F_real, senses)
                table[method].append({
                    "seed": seed, "evals": n_evals, "wall": wall,
                    "mse": float(((P - Y_held) ** 2).mean()),
                    "r2": float(np.mean([r2(Y_held[:, k], P[:, k]) for k in range(T)])),
                    "hv": hypervolume(F_real[keep], ref, senses),
                })

    print(f"\n{'method':9} {'seed':>4} {'evals':>5} {'held-out MSE':>12} {'mean R²':>8} "
          f"{'HV (real)':>9} {'wall s':>7}")
    for method, rows in table.items():
        for r in rows:
            print(f"{method:9} {r['seed']:>4} {r['evals']:>5} {r['mse']:>12.6f} {r['r2']:>8.3f} "
                  f"{r['hv']:>9.4f} {r['wall']:>7.1f}")
    means = {m: {k: float(np.mean([r[k] for r in rows])) for k in ("mse", "r2", "hv", "wall")}
             for m, rows in table.items()}
    print()
    for m, v in means.items():
        print(f"mean {m:9} held-out MSE {v['mse']:.6f}, R² {v['r2']:.3f}, HV {v['hv']:.4f}, "
              f"wall {v['wall']:.1f} s")
    b, m = means["bayesian"], means["map"]
    print(f"ratio bayesian / map: held-out MSE {b['mse'] / m['mse']:.3f} (lower is better), "
          f"HV {b['hv'] / m['hv']:.4f} (higher is better)")


if __name__ == "__main__":
    main()
