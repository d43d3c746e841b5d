"""What does choosing without labels cost? MAP on entropy against MAP on accuracy (demo zoo).

    .venv/bin/python bench/entropy_regret.py [--sets pairs|A,B;C,D] [--max-sets N]
        [--points N] [--seed 0] [--csv PATH]

Per task pair: one map design (map_mode.design, the CLI's --point default (T+1)(T+2)),
every design point evaluated once on the evaluation split, which gives accuracy and
entropy from the same forward pass (MergeEngine.evaluate). From the same evaluations
src.core.front.solve_front (the CLI's fit -> NSGA-III search -> pick, --pick tchebycheff,
its default) runs twice: on accuracy (maximised, sigmoid link) and on entropy (minimised,
softplus link; the labels are never read). For each preference, each front's pick is
merged and its accuracy measured on

  held-out  the base dataset's test split (common.heldout_dataset; all of its images),
            which neither front chose on: the fair measure, since the accuracy pick chose
            on the evaluation split's labels and the entropy pick on no labels;
  in-sample the evaluation split (the accuracy pick's own data; biased in its favour).

regret = w . accuracy(accuracy pick) - w . accuracy(entropy pick), w the preference
normalised to sum 1: positive when choosing on entropy costs accuracy. Per-pair rows, then
the mean and the worst (largest) regret per preference. Asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np

from common import demo_zoo, heldout_dataset, set_threads  # puts the repo on sys.path
from args import default_points
from src.core import pareto
from src.core.front import FrontTask, SearchSettings, solve_front
from src.core.metrics import get_metric
from src.modes.map_mode import design

PREFERENCES = [(0.2, 0.8), (0.5, 0.5), (0.8, 0.2)]
PICK = "tchebycheff"  # the CLI's --pick default
N_GEN = 100           # the CLI's --n-gen default


class Zoo:
    """One engine over every zoo task and its held-out split (same head); a pair's merge
    sets the other tasks' coefficients to 0. Every evaluation is cached by point, so both
    fronts share one set of evaluations and a pick both choose is merged once."""

    def __init__(self, zoo, tasks: Sequence[str]):
        from task_vectors.engine import MergeEngine

        root = zoo.path
        heads = {t: str(root / f"head_{t}.pt") for t in tasks}
        heads |= {heldout_dataset(t): heads[t] for t in tasks}
        self.engine = MergeEngine.from_checkpoints(
            model_name=zoo.model_name, pretrained=str(root / "zeroshot.pt"),
            finetuned={t: str(root / t / "finetuned.pt") for t in tasks}, heads=heads,
            datasets=list(heads), data_location=str(root))
        self.tasks = list(tasks)
        self.cache: dict[tuple, dict] = {}
        self.evaluations = 0

    def evals(self, pair: Sequence[str], c: np.ndarray, datasets: Sequence[str]) -> dict:
        key = (tuple(pair), tuple(np.round(c, 9)), tuple(datasets))
        if key not in self.cache:
            full = np.zeros(len(self.tasks))
            full[[self.tasks.index(t) for t in pair]] = c
            self.cache[key] = self.engine.evaluate_at(full, list(datasets))
            self.evaluations += 1
        return self.cache[key]

    def metric(self, pair: Sequence[str], C: np.ndarray, metric: str,
               held_out: bool = False) -> np.ndarray:
        """[n, 2] of ``metric`` at every row of C (evaluation split, or held-out)."""
        datasets = [heldout_dataset(t) for t in pair] if held_out else list(pair)
        return np.array([[self.evals(pair, c, datasets)[d][metric] for d in datasets]
                         for c in np.atleast_2d(C)], dtype=float)


def picks(C: np.ndarray, Y: np.ndarray, metric: str, seed: int) -> np.ndarray:
    """solve_front as the CLI runs it (nothing re-evaluated), then every preference's pick
    on the front with its anchors: [P, 2] coefficients."""
    m = get_metric(metric)
    with tempfile.TemporaryDirectory() as folder:
        task = FrontTask(C=C, Y=Y, labels=["a", "b"], metric=m, weights=PREFERENCES[0],
                         folder=Path(folder), names="bench", reevaluate=0)
        res = solve_front(task, SearchSettings(low=0.0, high=1.0, n_gen=N_GEN, seed=seed,
                                               pick=PICK))
    worst, best = np.array(res.anchors["worst"]), np.array(res.anchors["best"])
    rows = [pareto.pick(res.F_front, w, [m.sense] * 2, PICK, worst=worst, best=best)
            for w in PREFERENCES]
    return res.C_front[rows]


def weighted(acc: np.ndarray) -> np.ndarray:
    """[P] preference-weighted accuracy of row p under preference p."""
    W = np.array(PREFERENCES, dtype=float)
    W /= W.sum(axis=1, keepdims=True)
    return (acc * W).sum(axis=1)


def run_pair(zoo: Zoo, pair: tuple[str, str], points: int, seed: int) -> dict:
    C = design(SimpleNamespace(T=2, points=points, low=0.0, high=1.0, seed=seed,
                               design="grid"))
    acc, ent = zoo.metric(pair, C, "accuracy"), zoo.metric(pair, C, "entropy")
    by_acc, by_ent = picks(C, acc, "accuracy", seed), picks(C, ent, "entropy", seed)
    out = {"pair": "+".join(pair), "design": len(C), "acc_pick": by_acc, "ent_pick": by_ent}
    for split, held in (("held", True), ("in", False)):
        a = weighted(zoo.metric(pair, by_acc, "accuracy", held))
        e = weighted(zoo.metric(pair, by_ent, "accuracy", held))
        out[f"{split}_acc"], out[f"{split}_ent"], out[f"{split}_regret"] = a, e, a - e
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="pairs", help="pairs, or A,B;C,D")
    p.add_argument("--max-sets", type=int, default=None)
    p.add_argument("--points", type=int, default=None,
                   help="design points per pair (default: the CLI's default_points(2))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", default=None)
    a = p.parse_args()
    threads = set_threads(a.threads)
    zoo_files = demo_zoo()
    tasks = zoo_files.tasks
    pairs = (list(itertools.combinations(tasks, 2)) if a.sets == "pairs"
             else [tuple(s.split(",")) for s in a.sets.split(";")])[: a.max_sets]
    points = a.points or default_points(2)
    start = time.perf_counter()
    zoo = Zoo(zoo_files, tasks)
    sizes = {d: len(data.labels) for d, data in zoo.engine.eval_sets.items()}
    print(f"demo zoo {zoo_files.path}; torch threads {threads}; {len(pairs)} pairs; "
          f"{points} design points; pick {PICK}; preferences {PREFERENCES}")
    print("images per task: evaluation split "
          f"{sorted({sizes[t] for t in tasks})}, held-out split "
          f"{sorted({sizes[heldout_dataset(t)] for t in tasks})}")
    rows = [run_pair(zoo, pair, points, a.seed) for pair in pairs]
    seconds = time.perf_counter() - start

    prefs = [f"({w[0]:g},{w[1]:g})" for w in PREFERENCES]
    print("\nregret = preference-weighted accuracy of the accuracy front's pick minus that "
          "of the entropy front's pick\n(held-out: base test split; in-sample: the "
          "evaluation split the accuracy pick chose on)")
    head = "| pair | " + " | ".join(f"held-out {w}" for w in prefs) + " | " + \
        " | ".join(f"in-sample {w}" for w in prefs) + " |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(prefs)))
    for r in rows:
        print(f"| {r['pair']} | " + " | ".join(f"{x:+.4f}" for x in r["held_regret"]) + " | "
              + " | ".join(f"{x:+.4f}" for x in r["in_regret"]) + " |")
    held = np.array([r["held_regret"] for r in rows])
    ins = np.array([r["in_regret"] for r in rows])
    for name, f in (("mean", np.mean), ("worst (max)", np.max)):
        print(f"| **{name}** | " + " | ".join(f"{x:+.4f}" for x in f(held, axis=0)) + " | "
              + " | ".join(f"{x:+.4f}" for x in f(ins, axis=0)) + " |")
    acc_h = np.array([r["held_acc"] for r in rows]).mean(axis=0)
    ent_h = np.array([r["held_ent"] for r in rows]).mean(axis=0)
    print("\nmean held-out weighted accuracy, accuracy pick: " + ", ".join(
        f"{w} {x:.4f}" for w, x in zip(prefs, acc_h)))
    print("mean held-out weighted accuracy, entropy pick:  " + ", ".join(
        f"{w} {x:.4f}" for w, x in zip(prefs, ent_h)))
    same = np.array([np.all(np.abs(r["acc_pick"] - r["ent_pick"]) < 1e-3, axis=1)
                     for r in rows])
    print(f"pair x preference cases with held-out regret > 0: {(held > 0).mean():.2f}, "
          f"< 0: {(held < 0).mean():.2f}; both picks the same merge (coefficients within "
          f"1e-3): {same.mean():.2f}")
    print(f"{zoo.evaluations} merged-model evaluations; {seconds:.0f} s")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["pair", "preference", "acc_pick", "ent_pick", "held_acc", "held_ent",
                        "held_regret", "in_acc", "in_ent", "in_regret"])
            for r in rows:
                for k, pref in enumerate(PREFERENCES):
                    w.writerow([r["pair"], pref, r["acc_pick"][k].tolist(),
                                r["ent_pick"][k].tolist(), r["held_acc"][k], r["held_ent"][k],
                                r["held_regret"][k], r["in_acc"][k], r["in_ent"][k],
                                r["in_regret"][k]])


if __name__ == "__main__":
    main()
