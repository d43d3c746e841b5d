"""How long run_MAP.py takes to refuse a mistake of the parser or of the run configuration
(a fresh interpreter each time, as a user types the command), against `import torch` alone.

    .venv/bin/python bench/refusal_speed.py [--repeats 5]

Prints the median wall time of each refusal over --repeats runs, and the command.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CASES = [  # (kind, what, arguments after run_MAP.py)
    ("parser", "--point 0", ["--demo", "--point", "0"]),
    ("parser", "--merge-method tie", ["--demo", "--merge-method", "tie"]),
    ("config", "mistyped demo model", ["--demo", "--method", "map", "--zeroshot-merge-models",
                                       "LetterVal", "DigitVa"]),
    ("config", "mistyped eval dataset", ["--method", "map", "--zeroshot-merge-models", "SVHN",
                                         "Cars", "--zeroshot-eval-datasets", "SVHNVal", "Car"]),
    ("config", "--bounds 1 0", ["--demo", "--bounds", "1", "0"]),
    ("config", "missing checkpoints", ["--method", "map", "--save", "/nonexistent"]),
]


def seconds(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True)
    return time.perf_counter() - t0, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = tempfile.mkdtemp(prefix="refusal-speed-")
    rows = [("reference", "import torch", [sys.executable, "-c", "import torch"])]
    rows += [(kind, what, [sys.executable, "run_MAP.py", *argv, "--results-path", results])
             for kind, what, argv in CASES]
    print(f"median of {args.repeats} runs, {len(__import__('os').sched_getaffinity(0))} cores")
    print("| kind | mistake | exit | median s | command |\n|---|---|---|---|---|")
    for kind, what, argv in rows:
        runs = [seconds(argv) for _ in range(args.repeats)]
        shown = " ".join(a for a in argv[1:] if a != results and a != "--results-path")
        print(f"| {kind} | {what} | {runs[0][1]} | "
              f"{statistics.median(t for t, _ in runs):.2f} | `{shown}` |")


if __name__ == "__main__":
    main()
