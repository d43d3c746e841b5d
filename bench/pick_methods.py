"""The preference pick with equal weights: weighted sum (the original) vs Tchebycheff.

    .venv/bin/python bench/pick_methods.py [--threads 1]

For several demo pairs (map mode) and the 4-task nested demo (its tree alone:
--nested-context none --pick-floor pretrained), runs the same command twice,
once per `--pick`, with equal weights, and prints each chosen model's real accuracy per
task, its worst task's normalised accuracy (accuracy / the fine-tuned model's accuracy, as
merging papers report it), and the mean accuracy. A user asking for "equal preference"
expects no task to be given up; the worst normalised accuracy shows whether one was.
Asserts nothing.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from common import (add_common_flags, demo_zoo, engine_for, read_json, run_cli, set_threads,
                    workdir)

PAIRS = [("LetterVal", "DigitVal"), ("DigitVal", "ShapeVal"), ("ShapeVal", "ColorVal"),
         ("PositionVal", "ArrowVal"), ("LetterVal", "SymbolVal"), ("TextureVal", "ColorVal")]
FOUR = ["LetterVal", "DigitVal", "ShapeVal", "SymbolVal"]
PICKS = ("weighted-sum", "tchebycheff")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(p)
    a = p.parse_args()
    set_threads(a.threads)
    zoo = demo_zoo()
    tasks = sorted({t for pair in PAIRS for t in pair} | set(FOUR))
    engine = engine_for(zoo, tasks)
    eye = np.eye(len(tasks))
    tuned = {t: engine.evaluate_at(eye[i], [t])[t]["accuracy"] for i, t in enumerate(tasks)}

    def share(acc: dict[str, float]) -> float:
        return min(acc[t] / tuned[t] for t in acc)

    with workdir(a.keep) as tmp:
        pref = tmp / "equal.json"
        pref.write_text(json.dumps({t: 1.0 for t in tasks}))
        rows = []
        for pair in PAIRS:
            for pick in PICKS:
                exp = f"{'_'.join(pair)}-{pick}"
                run_cli("--demo", "--zoo-dir", zoo.path.parent, "--method", "map",
                        "--zeroshot-merge-models", *pair, "--preference", pref, "--pick", pick,
                        "--reevaluate", 3, "--results-path", tmp, "--exp-id", exp)
                chosen = read_json(tmp / exp / "run.json")["summary"]["chosen"]
                rows.append((" / ".join(pair), pick, chosen["real"]))
        for pick in PICKS:
            exp = f"nested4-{pick}"
            run_cli("--demo", "--zoo-dir", zoo.path.parent, "--method", "nested",
                    "--zeroshot-merge-models", *FOUR, "--preference", pref, "--pick", pick,
                    # the tree alone: the TA floor (default from 4 tasks) would hand over TA
                    # under either rule and hide the rules' difference
                    "--nested-context", "none", "--pick-floor", "pretrained",
                    "--results-path", tmp, "--exp-id", exp)
            rows.append(("nested " + " / ".join(FOUR), pick,
                         read_json(tmp / exp / "final_model" / "merge.json")["accuracy"]))

    print(f"\n{'task set':46} {'pick':13} {'accuracy per task':34} {'worst norm.':>11} "
          f"{'mean':>6}")
    summary = {pick: [] for pick in PICKS}
    for name, pick, acc in rows:
        per_task = " ".join(f"{acc[t]:.3f}" for t in acc)
        summary[pick].append((share(acc), float(np.mean(list(acc.values())))))
        print(f"{name:46} {pick:13} {per_task:34} {share(acc):>11.3f} "
              f"{np.mean(list(acc.values())):>6.3f}")
    print("\nover all task sets (worst norm.: the worst task's accuracy / its fine-tuned accuracy)")
    for pick, values in summary.items():
        shares, means = np.array(values).T
        print(f"  {pick:13} mean worst norm. {shares.mean():.3f}, lowest {shares.min():.3f}; "
              f"mean accuracy {means.mean():.3f}")


if __name__ == "__main__":
    main()
