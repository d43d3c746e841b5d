"""How good is MAP's amortized front on the demo zoo?

    .venv/bin/python bench/map_accuracy.py [--pairs LetterVal,DigitVal ShapeVal,SymbolVal]
                                           [--held-out 30] [--front-points 20] [--threads 1]

For each task pair: run `run_MAP.py --demo --method map` (default settings), then
- evaluate held-out coefficient vectors (uniform in the box, never used in the fit) with an
  engine of our own and report the stored surrogates' R² and mean absolute error there;
- merge and evaluate up to --front-points points spread along the predicted front and
  report the mean absolute error between predicted and real accuracies;
- print the run's evaluation count and wall times (load, evaluation, search) from run.json.
Asserts nothing.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import (add_common_flags, demo_zoo, engine_for, evaluate, predict_all, r2,
                    read_front, read_json, run_cli, set_threads, spread_indices, workdir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=["LetterVal,DigitVal", "ShapeVal,SymbolVal"])
    p.add_argument("--held-out", type=int, default=30)
    p.add_argument("--front-points", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    add_common_flags(p)
    a = p.parse_args()
    threads = set_threads(a.threads)
    zoo = demo_zoo()
    print(f"demo zoo: {zoo.path}; torch threads: {threads}")

    rows = []
    with workdir(a.keep) as tmp:
        for pair in a.pairs:
            tasks = pair.split(",")
            exp_id = "_".join(tasks)
            _, wall = run_cli("--demo", "--zoo-dir", zoo.path.parent, "--method", "map",
                              "--zeroshot-merge-models", *tasks, "--results-path", tmp,
                              "--exp-id", exp_id, "--seed", a.seed)
            run_dir = tmp / exp_id
            names = "_".join(tasks)
            run = read_json(run_dir / "run.json")
            engine = engine_for(zoo, tasks)

            rng = np.random.default_rng(1000 + a.seed)  # not the design's stream
            C_held = rng.uniform(0.0, 1.0, size=(a.held_out, len(tasks)))
            Y_held = evaluate(engine, C_held, tasks)
            P_held = predict_all(run_dir / f"{names}_surrogates.json", tasks, C_held)

            C_front, F_front = read_front(run_dir / f"{names}pareto_front.json")
            idx = spread_indices(len(C_front), a.front_points)
            F_real = evaluate(engine, C_front[idx], tasks)

            summary, timings = run["summary"], run["timings"]
            rows.append({
                "pair": " / ".join(tasks),
                "evals": summary["n_evaluations"],
                "fit_r2": [summary["surrogate_r2"][t] for t in tasks],
                "held_r2": [r2(Y_held[:, k], P_held[:, k]) for k in range(len(tasks))],
                "held_mae": float(np.abs(Y_held - P_held).mean()),
                "front_size": len(C_front),
                "front_checked": len(idx),
                "front_mae": float(np.abs(F_real - F_front[idx]).mean()),
                "front_max_err": float(np.abs(F_real - F_front[idx]).max()),
                "run_reeval_mae": (summary["reevaluated"] or {}).get("mean_abs_error"),
                "load": timings["load_seconds"], "evaluation": timings["evaluation_seconds"],
                "search": timings["search_seconds"], "total": timings["total_seconds"],
                "wall": wall,
            })

    print(f"\nheld-out points per pair: {a.held_out} uniform in [0, 1]^T (seed {1000 + a.seed})")
    for r in rows:
        print(f"\n== {r['pair']} ==")
        print(f"  evaluations used by the run:        {r['evals']} "
              f"(+ {r['front_checked']} front points re-evaluated here)")
        print("  surrogate R² on the fitted points:  " + ", ".join(f"{v:.3f}" for v in r["fit_r2"]))
        print("  surrogate R² on held-out points:    " + ", ".join(f"{v:.3f}" for v in r["held_r2"]))
        print(f"  held-out mean |pred - real| acc:    {r['held_mae']:.4f}")
        print(f"  front: {r['front_size']} points; {r['front_checked']} re-evaluated: mean "
              f"|pred - real| {r['front_mae']:.4f}, max {r['front_max_err']:.4f}")
        if r["run_reeval_mae"] is not None:
            print(f"  run's own re-evaluation (--reevaluate 5) mean error: {r['run_reeval_mae']:.4f}")
        print(f"  wall seconds: load {r['load']:.2f}, evaluation {r['evaluation']:.2f}, "
              f"search {r['search']:.2f}, run total {r['total']:.2f} "
              f"(in-process call {r['wall']:.2f})")
        print(f"  seconds per evaluated merge: {r['evaluation'] / r['evals']:.3f}")


if __name__ == "__main__":
    main()
