"""Command-line arguments of run_MAP.py: every flag of the original MAP tool, plus ours.

Edit the defaults here to change what a bare `python run_MAP.py` does.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from typing import Callable

DEFAULT_DATASETS = ["SUN397Val", "CarsVal", "DTDVal", "SVHNVal"]
# Demo defaults: a pair that trades off for map/bayesian, four tasks for nested.
DEMO_PAIR = ["DigitsVal", "RotateVal"]
DEMO_NESTED = ["DigitsVal", "RotateVal", "FlipVal", "Mod3Val"]
METHODS = ("map", "bayesian", "nested")


# Budgets beyond these could not finish: each point is a full evaluation of a merged model
# (seconds for a ViT-B-32 on four validation sets: 10,000 points is already days).
MAX_POINTS = 10_000
MAX_GENERATIONS = 100_000  # NSGA-III on quadratics: ~30 ms a generation
MAX_SEED = 2**32 - 1       # numpy's seed range


class OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line on stderr and exit 2 (argparse would add the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_in(low: int, high: int | None = None, why: str = "") -> Callable[[str], int]:
    """argparse type: an integer in [low, high]; the message says the range (and why)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < low:
            wanted = {0: "0 or more", 1: "a positive integer"}.get(low, f"at least {low}")
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is more than {high:,}, the largest "
                                             f"sensible value{why}")
        return value
    parse.__name__ = f"int_in[{low},{high}]"
    return parse


positive_int = int_in(1)
nonnegative_int = int_in(0)
point_count = int_in(1, MAX_POINTS, ": every point is a full evaluation of a merged model")


def float_in(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in a range (open or closed at each end)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low or (low_open and value == low) or value > high or \
                (high_open and value == high):
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            raise argparse.ArgumentTypeError(f"must be in {left}{low:g}, {high:g}{right}, "
                                             f"got {value:g}")
        return value
    parse.__name__ = "float_in"
    return parse


finite_float = float_in()
nonnegative_float = float_in(0.0)


def run_name(text: str) -> str:
    """argparse type for --exp-id: a name inside --results-path, never a path."""
    if not text or text in (".", "..") or "/" in text or "\\" in text or \
            (os.altsep and os.altsep in text) or "\0" in text:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a run name; an exp-id names a folder inside --results-path "
            "(no '/', '..' or empty names)")
    return text


def folder_path(text: str) -> str:
    """argparse type: a folder that may not exist yet, but is not a file."""
    path = os.path.expanduser(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


def get_hex_time() -> str:
    """A fresh experiment id: the current time in hex (as the original tool)."""
    return hex(int(time.time() * 1000))[2:]


def _comma_list(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="run_MAP.py",
        description="MAP: merge fine-tuned CLIP models by task arithmetic and find the Pareto "
                    "front of trade-offs between tasks with few evaluations.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    g = p.add_argument_group("data and checkpoints")
    g.add_argument("--data-location", type=folder_path, default=os.path.expanduser("/data"),
                   help="Root folder of the datasets (task_vectors layouts).")
    g.add_argument("--model", type=str, default="ViT-B-32",
                   help="open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14) or "
                        "local-dir:<folder> with an open_clip_config.json.")
    g.add_argument("--save", type=folder_path, default="/checkpoints/ViT-B-32",
                   help="Checkpoint folder in the task_vectors layout: <save>/<Dataset>/"
                        "finetuned.pt and <save>/head_<Dataset>.pt (heads missing there are "
                        "built zero-shot from the CLIP text tower and cached).")
    g.add_argument("--pretrained-checkpoint", type=str, default=None,
                   help="Pretrained encoder checkpoint (default: <save>/zeroshot.pt).")
    g.add_argument("--cache-dir", type=folder_path, default=None,
                   help="Folder for caching decoded evaluation sets between runs.")
    g.add_argument("--openclip-cachedir", type=folder_path, default=".cache/open_clip",
                   help="Cache folder for open_clip model files.")
    g.add_argument("--demo", action="store_true",
                   help="Use the embedded demo zoo (a tiny CLIP ViT fine-tuned on 8 digit tasks, "
                        "built offline on first use): sets --model, --save, "
                        "--pretrained-checkpoint and --data-location, and demo tasks as "
                        "defaults for the model/dataset lists.")
    g.add_argument("--zoo-dir", type=folder_path, default=None,
                   help="Where the demo zoo is cached (default: $MAP_ZOO_DIR or "
                        "~/.cache/map-merging).")

    g = p.add_argument_group("MAP")
    g.add_argument("--method", type=str, default="nested", choices=METHODS,
                   help="map: sample, fit quadratic surrogates, NSGA-III front; bayesian: the "
                        "same with adaptive sampling rounds (<= 6 tasks); nested: merge two "
                        "models at a time (many tasks).")
    g.add_argument("--zeroshot-merge-models", nargs="+", default=None,
                   help=f"Fine-tuned models to merge, by dataset name (default: "
                        f"{' '.join(DEFAULT_DATASETS)}; with --demo: {' '.join(DEMO_PAIR)}, or "
                        f"{' '.join(DEMO_NESTED)} for nested).")
    g.add_argument("--zeroshot-eval-datasets", nargs="+", default=None,
                   help="Datasets to evaluate merged models on, one per merged model, in the "
                        "same order (default: the merge models).")
    g.add_argument("--metric-type", type=str, default="accuracy", choices=("accuracy", "loss"),
                   help="Objective per task: accuracy (maximised, sigmoid link) or loss "
                        "(minimised, softplus link).")
    g.add_argument("--point", type=point_count, default=None,
                   help="Number of coefficient vectors to evaluate (default (T+1)(T+2), twice "
                        "the quadratic surrogate's parameter count; nested: per pair, "
                        "default 20).")
    g.add_argument("--preference", type=str, default="example_preference.yaml",
                   help="YAML (or JSON) file {dataset: weight} used to pick a model from the "
                        "front.")
    g.add_argument("--bounds", type=finite_float, nargs=2, default=[0.0, 1.0],
                   metavar=("LOW", "HIGH"),
                   help="Box of the merging coefficients searched.")
    g.add_argument("--reevaluate", type=int_in(0, MAX_POINTS), default=5,
                   help="Front points merged and evaluated for real after the search "
                        "('MAP, real'); 0 to skip. The preference pick is always among them.")
    g.add_argument("--n-gen", type=int_in(1, MAX_GENERATIONS), default=100,
                   help="NSGA-III generations (the surrogates are smooth quadratics: 100 is "
                        "plenty; pymoo costs ~30 ms a generation).")
    g.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="Seed of every random step.")

    g = p.add_argument_group("bayesian")
    g.add_argument("--bayes-iter", type=int_in(1, MAX_POINTS), default=None,
                   help="Number of adaptive rounds (default 3).")
    g.add_argument("--bayes-update-pts", type=point_count, default=None,
                   help="Points added per round (default 5).")
    g.add_argument("--bayes-initial-pts", type=point_count, default=None,
                   help="Initial design size (default (T+1)(T+2)/2 + 2).")

    g = p.add_argument_group("output and run")
    g.add_argument("--results-path", type=folder_path, default="nested_experiments4",
                   help="Folder of run directories; a run writes <results-path>/<exp-id>/.")
    g.add_argument("--exp-id", type=run_name, default=None,
                   help="Run id (default: hex timestamp). Re-running with the same id resumes: "
                        "stored evaluations are not repeated.")
    g.add_argument("--device", type=str, default=None,
                   help="cuda, cuda:1 or cpu (default: cuda if available).")
    g.add_argument("--batch-size", type=positive_int, default=128, help="Evaluation batch size.")
    g.add_argument("--max-eval-samples", type=positive_int, default=None,
                   help="Evaluate on at most this many images per dataset (quick looks).")
    g.add_argument("--num-workers", type=nonnegative_int, default=None,
                   help="DataLoader workers for decoding evaluation sets (once per run; "
                        "default: up to 8 of the CPUs this job may use, for sets of 1024+ "
                        "images; 0 decodes in the main process).")
    g.add_argument("--pdf", action="store_true", help="Also write figures as PDF.")

    g = p.add_argument_group("kept from task_vectors (fine-tuning flags; recorded, unused here)")
    g.add_argument("--eval-datasets", default=None, type=_comma_list,
                   help="Datasets for evaluation, comma separated, e.g. MNIST,EuroSAT.")
    g.add_argument("--train-dataset", default=None, type=_comma_list,
                   help="Dataset(s) to fine-tune on.")
    g.add_argument("--exp_name", type=str, default=None, help="Experiment name (organisation).")
    g.add_argument("--results-db", type=str, default=None, help="Where to store results.")
    g.add_argument("--lr", type=nonnegative_float, default=0.001, help="Learning rate.")
    g.add_argument("--wd", type=nonnegative_float, default=0.1, help="Weight decay.")
    g.add_argument("--ls", type=float_in(0.0, 1.0, high_open=True), default=0.0,
                   help="Label smoothing.")
    g.add_argument("--warmup_length", type=nonnegative_int, default=500)
    g.add_argument("--epochs", type=nonnegative_int, default=10)
    g.add_argument("--load", type=_comma_list, default=None,
                   help="Classifiers to load, comma separated.")
    return p


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.exp_id is None:
        args.exp_id = get_hex_time()
    if args.load is not None and len(args.load) == 1:
        args.load = args.load[0]
    return args
