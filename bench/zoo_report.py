"""Build the demo zoo from scratch and report how long it takes and what it is good for.

    .venv/bin/python bench/zoo_report.py [--root DIR] [--threads N]

Prints the build time, per-task accuracy of pretrained+head (c = 0) against the fine-tuned
model (c = e_i) measured with MergeEngine on the freshly built zoo, and for a few task pairs
how many points of an 11x11 grid of c in [0, 1]^2 are non-dominated. Asserts nothing.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from src.pareto import non_dominated  # noqa: E402
from task_vectors import zoo as zoo_mod  # noqa: E402
from task_vectors.checkpoints import finetuned_path, head_path, zeroshot_path  # noqa: E402
from task_vectors.engine import MergeEngine  # noqa: E402

PAIRS = [("DigitsVal", "RotateVal"), ("DigitsVal", "InvertVal"), ("RotateVal", "FlipVal"),
         ("ParityVal", "Ge5Val")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="build into this folder and keep it "
                   "(default: a temporary folder, removed afterwards)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for evaluation (the model is tiny; default 1)")
    p.add_argument("--grid", type=int, default=11, help="grid points per axis")
    return p.parse_args(argv)


def grid_front(engine: MergeEngine, pair: tuple[str, str], n: int) -> tuple[int, float]:
    """Non-dominated count of the n x n grid on the pair's coefficients (others 0), and
    seconds per grid point."""
    idx = [engine.task_names.index(t) for t in pair]
    acc = []
    start = time.perf_counter()
    for a in np.linspace(0.0, 1.0, n):
        for b in np.linspace(0.0, 1.0, n):
            c = np.zeros(engine.n_tasks)
            c[idx] = a, b
            res = engine.evaluate_at(c, list(pair))
            acc.append([res[t]["accuracy"] for t in pair])
    seconds = (time.perf_counter() - start) / (n * n)
    return int(non_dominated(np.array(acc), ["max", "max"]).sum()), seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = None
    if args.root:
        folder = Path(args.root)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="zoo-report-")
        folder = Path(tmp)
    try:
        return report(folder, args)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def report(folder: Path, args: argparse.Namespace) -> int:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available; "
          f"recipe key {zoo_mod.recipe_key()}")
    print(f"building the demo zoo into {folder} ...", flush=True)
    start = time.perf_counter()
    summary = zoo_mod.build_zoo(folder, verbose=False)
    build_s = time.perf_counter() - start
    print(f"build: {build_s:.1f} s")

    cached = zoo_mod.default_root() / f"demo-zoo-{zoo_mod.recipe_key()}" / "zoo.json"
    if cached.exists():
        same = zoo_mod.Zoo(cached.parent).info["tasks"] == summary["tasks"]
        print(f"same accuracies as the cached zoo {cached.parent}: {same}")

    torch.set_num_threads(args.threads)
    built = zoo_mod.Zoo(folder)
    tasks = built.tasks
    start = time.perf_counter()
    engine = MergeEngine.from_checkpoints(
        model_name=built.model_name, pretrained=str(zeroshot_path(folder)),
        finetuned={t: str(finetuned_path(folder, t)) for t in tasks},
        heads={t: str(head_path(folder, t)) for t in tasks},
        datasets=tasks, data_location="", batch_size=512)
    print(f"engine load (8 checkpoints, 8 heads, 8 eval sets): "
          f"{time.perf_counter() - start:.2f} s")

    pre = engine.evaluate_at(np.zeros(len(tasks)))
    print(f"\n{'task':<14}{'n':>5}{'pre+head':>10}{'fine-tuned':>12}{'gain':>8}"
          f"{'  (zoo.json pre / ft)':>22}")
    for i, task in enumerate(tasks):
        ft = engine.evaluate_at(np.eye(len(tasks))[i], [task])[task]
        rec = summary["tasks"][task]
        p, f = pre[task]["accuracy"], ft["accuracy"]
        print(f"{task:<14}{len(engine.eval_sets[task].labels):>5}{p:>10.3f}{f:>12.3f}"
              f"{f - p:>+8.3f}    {rec['pretrained_accuracy']:.3f} / "
              f"{rec['finetuned_accuracy']:.3f}")

    print(f"\nnon-dominated points of the {args.grid}x{args.grid} grid of c in [0,1]^2 "
          f"(accuracy, both maximised; other coefficients 0):")
    for pair in PAIRS:
        count, per_point = grid_front(engine, pair, args.grid)
        print(f"  {pair[0]:>10} / {pair[1]:<12} {count:>3}   "
              f"({per_point * 1000:.1f} ms per point, 2 datasets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
