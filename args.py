"""Command-line arguments of run_MAP.py: every flag of the original MAP tool, plus ours.

Edit the defaults here to change what a bare `python run_MAP.py` does.

Why ~390 lines: one argparse definition per flag, with its help text and range check.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from map_common.argtypes import (MAX_POINTS, float_in, int_in, nonnegative_int,  # noqa: F401
                                 point_count, positive_int)
from src.run.config import Defaults
from src.core.metrics import METRICS
from src.run.mode_registry import MODES, SWEEP_SIZES
from src.run.names import PICK_FLOORS, PICK_FROM, PICKS, REFINE_ACQUISITIONS
from src.core.sampling import min_points
from task_vectors.merge_methods import METHODS as MERGE_METHODS

REPO = Path(__file__).resolve().parent
DEFAULT_DATASETS = ["SUN397Val", "CarsVal", "DTDVal", "SVHNVal"]
# Demo defaults: a pair that trades off for map/bayesian, four tasks for nested.
DEMO_PAIR = ["LetterVal", "DigitVal"]
DEMO_NESTED = ["LetterVal", "DigitVal", "ShapeVal", "SymbolVal"]
METHODS = tuple(MODES)  # --method's choices (src/modes/registry.py)


# ---- defaults that depend on the number of tasks T (edit them here)
def default_points(T: int) -> int:
    """--point for map: twice the quadratic surrogate's (T+1)(T+2)/2 parameters, so each
    is over-determined."""
    return 2 * min_points(T)


NESTED_PAIR_POINTS = 20  # --point for nested: merges evaluated per pair (T = 2 there)


def default_bayes_schedule(T: int) -> tuple[int, int, int]:
    """(--bayes-initial-pts, --bayes-update-pts, --bayes-iter) for T tasks. The initial
    design determines the full quadratic plus 2 points, so the first fit does not
    interpolate exactly (zero error everywhere would say nothing about where to sample)."""
    return min_points(T) + 2, 5, 3


def default_grid_points_per_axis(T: int) -> int | None:
    """--grid-points-per-axis: 21 for 2 tasks (441 merges), 11 for 3 (1331); larger T
    must set it, since the grid grows as per_axis ** T."""
    return {2: 21, 3: 11}.get(T)


# map's design and front refinement when their flags are not given (docs/front_quality.md).
# LHS and EHVI refinement gave better fronts at 2 and 3 tasks in bench/front_quality.py (at
# its equal budget the rounds replace design points; here they come on top of
# default_points(T)). EHVI computes exact hypervolumes, whose cost grows steeply with the
# number of objectives, so from 4 tasks on map has no refinement. From 4 tasks the local
# design (TA's sweep, then a box around its best λ) gave equal-preference picks better on
# the mean and the worst task than the grid design at 4 and 8 tasks, with a third of its
# front error (bench/many_tasks.py). The other modes (bayesian included) refine only when
# --refine-rounds is given.
MEASURED_TASKS = 3  # the largest T at which the LHS + EHVI defaults were measured


def default_design(T: int) -> str:
    """--design for map: lhs up to MEASURED_TASKS tasks, else local."""
    return "lhs" if T <= MEASURED_TASKS else "local"


def default_refine_rounds(T: int) -> int:
    """--refine-rounds for map (of --refine-points each): 2 up to MEASURED_TASKS tasks, else
    0 (plain MAP)."""
    return 2 if T <= MEASURED_TASKS else 0


def default_refine_acquisition(T: int) -> str:
    """--refine-acquisition for map: ehvi up to MEASURED_TASKS tasks, else spread."""
    return "ehvi" if T <= MEASURED_TASKS else "spread"


def default_pick_floor(T: int) -> str:
    """--pick-floor for map and nested: pretrained up to MEASURED_TASKS tasks, else
    task-arithmetic (nested: on its final model, against TA's sweep over every task).
    From 4 tasks map's default design evaluates TA's whole sweep (λ = 0.1..1.0), so the floor
    is TA at its best λ; the evaluated pick then stays at or above it on the evaluation
    split (bench/many_tasks.py). The 2-3 task tables were measured without a floor, where
    the LHS design holds TA at λ = 0.5 only."""
    return "pretrained" if T <= MEASURED_TASKS else "task-arithmetic"


def default_nested_pick(pick_floor: str) -> str:
    """--pick for nested under the --pick-floor in force: weighted-sum with the TA floor (its
    default from 4 tasks), else tchebycheff. Held at or above TA on both measures by the
    floor, the weighted mean cannot run to an end of the front; over the 4- and 8-task sets
    of bench/many_tasks.py (seeds 0-2) it handed over models at or above TA on both in 9 of
    9 runs on the evaluation split and 7 of 9 held out (tchebycheff: 9 and 4 of 9, three of
    them TA itself), and at 8 tasks a merge above TA instead of TA itself."""
    return "weighted-sum" if pick_floor == "task-arithmetic" else "tchebycheff"


NESTED_CONTEXT_TASKS = 4  # the smallest T at which nested's context was measured


def default_nested_context(T: int) -> str:
    """--nested-context for nested: none below NESTED_CONTEXT_TASKS tasks, else
    task-arithmetic. Merging each pair beside the other task vectors at TA's best λ lifted
    the tree's final model on both the mean and the worst task at 4 and 8 tasks
    (bench/many_tasks.py, docs/front_quality.md); with 2 tasks there is no other vector."""
    return "none" if T < NESTED_CONTEXT_TASKS else "task-arithmetic"


BAYES_EHVI_TASKS = 4  # the largest T at which bayesian's EHVI rounds were measured


def default_bayes_acquisition(T: int) -> str:
    """--bayes-acquisition for bayesian: ehvi up to BAYES_EHVI_TASKS tasks, else error (the
    original's rounds). EHVI rounds gave better fronts than the error bins on the pairs
    and triples of bench/front_quality.py and better 4-task picks in bench/many_tasks.py,
    in the same seconds; beyond 4 tasks their exact hypervolumes are unmeasured."""
    return "ehvi" if T <= BAYES_EHVI_TASKS else "error"


def default_bayes_design(acquisition: str) -> str:
    """--design for bayesian (its round 0), by its --bayes-acquisition: lhs (a Latin
    hypercube in the box, map's --design lhs) before EHVI rounds (the default up to
    BAYES_EHVI_TASKS tasks), grid (the original's one-hot models, plain task arithmetic and
    coarse-grid points) before the error rounds (the original's). Before EHVI rounds the LHS
    round 0 raised the mean held-out HV over the grid one on the demo pairs and triples at
    every seed of three and the 4-task pick's mean and worst task (docs/front_quality.md,
    "bayesian with an LHS first round"); before the error rounds it is unmeasured."""
    return "lhs" if acquisition == "ehvi" else "grid"


DEFAULTS = Defaults(
    models=tuple(DEFAULT_DATASETS), demo_pair=tuple(DEMO_PAIR), demo_nested=tuple(DEMO_NESTED),
    points=default_points, nested_pair_points=NESTED_PAIR_POINTS,
    bayes_schedule=default_bayes_schedule, grid_points_per_axis=default_grid_points_per_axis,
    design=default_design, refine_rounds=default_refine_rounds,
    refine_acquisition=default_refine_acquisition, bayes_acquisition=default_bayes_acquisition,
    bayes_design=default_bayes_design,
    pick_floor=default_pick_floor, nested_context=default_nested_context,
    nested_pick=default_nested_pick)


# Budgets beyond these could not finish (MAX_POINTS: map_common.argtypes).
MAX_GENERATIONS = 100_000  # NSGA-III on quadratics: ~30 ms a generation
MAX_SEED = 2**32 - 1       # numpy's seed range


class OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line on stderr and exit 2 (argparse would add the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")




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


def worker_count(text: str) -> int | str:
    """--workers: a positive integer or 'auto'."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got "
                                         f"'{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {value}")
    return value


def ray_address(text: str) -> str:
    """--ray-address: 'auto' or HOST:PORT."""
    if text == "auto":
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected 'auto' or HOST:PORT (e.g. 10.0.0.1:6379), "
                                         f"got '{text}'")
    return text


def get_hex_time() -> str:
    """A fresh experiment id: the current time in hex (as the original tool)."""
    return hex(int(time.time() * 1000))[2:]


def _reevaluate_count(value: str) -> int | str:
    """argparse type for --reevaluate: a count in [0, MAX_POINTS] or 'all'."""
    return value if value == "all" else int_in(0, MAX_POINTS)(value)


def _comma_list(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def add_merge_method_flags(parser: argparse.ArgumentParser, group) -> None:
    """--merge-method and each registered method's setting flags (a flag already defined,
    such as --seed, is shared)."""
    group.add_argument("--merge-method", type=str, default="ta", choices=tuple(MERGE_METHODS),
                       help="Task vectors merged: " + ", ".join(
                           m.help for m in MERGE_METHODS.values()) +
                       ". theta(c) = theta_pre + sum c_i tau'_i.")
    for f in MERGE_METHODS.flags():
        meta = f.metadata
        if meta["flag"] in parser._option_string_actions:
            continue
        bounded = {k: meta[k] for k in ("low", "high") if meta[k] is not None}
        if meta["type"] is int:
            parse = int_in(int(meta.get("low") or 0), meta["high"])
        else:
            parse = float_in(**bounded, low_open=meta["low_open"], high_open=meta["high_open"])
        group.add_argument(meta["flag"], type=parse, default=f.default, help=meta["help"])


def _data_flags(p: argparse.ArgumentParser) -> None:
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
                   help="Use the embedded demo zoo (a small CLIP ViT fine-tuned on 8 procedural "
                        "image tasks, built offline on first use): sets --model, --save, "
                        "--pretrained-checkpoint and --data-location, and demo tasks as "
                        "defaults for the model/dataset lists.")
    g.add_argument("--zoo-dir", type=folder_path, default=None,
                   help="Where the demo zoo is cached (default: $MAP_ZOO_DIR or "
                        "~/.cache/map-merging); the folder of a built zoo of this version "
                        "(demo-zoo-<recipe>) is also taken as is.")


def _map_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MAP")
    g.add_argument("--method", type=str, default=None, choices=tuple(MODES),
                   help="; ".join(f"{m.name}: {m.help}" for m in MODES.values()) +
                        f". Default: {MODES.default}, or {MODES.sweep_mode().name} with --sweep.")
    g.add_argument("--zeroshot-merge-models", nargs="+", default=None,
                   help=f"Fine-tuned models to merge, by dataset name (default: "
                        f"{' '.join(DEFAULT_DATASETS)}; with --demo: {' '.join(DEMO_PAIR)}, or "
                        f"{' '.join(DEMO_NESTED)} for nested).")
    g.add_argument("--zeroshot-eval-datasets", nargs="+", default=None,
                   help="Datasets to evaluate merged models on, one per merged model, in the "
                        "same order (default: the merge models).")
    g.add_argument("--metric-type", type=str, default="accuracy", choices=sorted(METRICS),
                   help="Objective per task: accuracy (maximised, sigmoid link), loss "
                        "(minimised, softplus link) or entropy (minimised, softplus link: "
                        "the mean Shannon entropy of the task head's softmax; chooses "
                        "without labels, which are read for reporting only).")
    g.add_argument("--point", type=point_count, default=None,
                   help="Number of coefficient vectors to evaluate (default: default_points(T) "
                        "in args.py, (T+1)(T+2); nested: per pair, NESTED_PAIR_POINTS).")
    g.add_argument("--preference", type=str, default=str(REPO / "example_preference.yaml"),
                   help="YAML (or JSON) file {dataset: weight} used to pick a model from the "
                        "front.")
    g.add_argument("--bounds", type=finite_float, nargs=2, default=[0.0, 1.0], metavar=("LOW", "HIGH"),
                   help="Box of the merging coefficients sampled (and searched, unless "
                        "--search-bounds is given).")
    g.add_argument("--search-bounds", type=finite_float, nargs=2, default=None,
                   metavar=("LOW", "HIGH"),
                   help="Box NSGA-III searches on the surrogates (default: --bounds). The "
                        "original sampled [0, 1] and searched [-3, 3].")
    g.add_argument("--pick", type=str, default=None, choices=PICKS,
                   help="How --preference picks one model from the front. tchebycheff: "
                        "metrics normalised between each task's pretrained (c = 0) and "
                        "fine-tuned value, the model whose worst weighted task keeps the "
                        "largest share of its gain (equal weights give a balanced model); "
                        "weighted-sum: the original's weighted sum of raw metrics (often an "
                        "end of the front). Default: tchebycheff; nested with --pick-floor "
                        "task-arithmetic (its default from 4 tasks): weighted-sum "
                        "(default_nested_pick in args.py).")
    g.add_argument("--pick-from", type=str, default="evaluated", choices=PICK_FROM,
                   help="Where the handed-over model comes from. front: the --pick of the "
                        "surrogate front (re-evaluated). evaluated: the best real model by the "
                        "same --pick among all the run evaluated (design, re-evaluated front, "
                        "pretrained model), models that keep every weighted task at or above "
                        "the pretrained model first; the front's pick is among them (the "
                        "default; docs/front_quality.md). Needs --reevaluate > 0, else the "
                        "front's pick is kept.")
    g.add_argument("--pick-floor", type=str, default=None, choices=PICK_FLOORS,
                   help="Which models the pick prefers when there are any. pretrained: "
                        "(--pick-from evaluated) those that keep every weighted task at or "
                        "above the pretrained model. task-arithmetic: first those at or "
                        "above task arithmetic at its best evaluated lambda (the best "
                        "equal-coefficient merge the run evaluated) on both the "
                        "preference-weighted mean and the worst task, front points by their "
                        "prediction and evaluated models by their real metric (TA itself is "
                        "one), then as pretrained. For preferences near equal; see 'Many "
                        "tasks at once' in the README. nested: its final model against TA's "
                        "sweep over every task; below it, the best evaluated merge at or above "
                        "it is handed over. Default: default_pick_floor(T) in args.py for map "
                        "and nested (task-arithmetic from 4 tasks), pretrained for the other "
                        "modes.")
    g.add_argument("--reevaluate", type=_reevaluate_count, default=5,
                   help="Front points merged and evaluated for real after the search "
                        "('MAP, real'); 0 to skip, 'all' for every front point. The "
                        "preference pick is always among them.")
    g.add_argument("--n-gen", type=int_in(1, MAX_GENERATIONS), default=100,
                   help="NSGA-III generations (the surrogates are smooth quadratics: 100 is "
                        "plenty; pymoo costs ~30 ms a generation).")
    g.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="Seed of every random step.")


def _merge_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("merge methods and baselines")
    add_merge_method_flags(p, g)
    g.add_argument("--baselines", action="store_true",
                   help="map / bayesian: also evaluate the single merged models of the "
                        "original's figure (Task Arithmetic, tuned TA, TIES-merging, DARE-TA, "
                        "DARE-TIES, TA with preference, SLERP for 2 tasks, the average) and "
                        "the four AdaMerging points (learned first, on the evaluation sets' "
                        "unlabeled images) into baselines.json, and draw "
                        "pareto_front_withbaselines.png.")
    g.add_argument("--no-adamerging-baselines", action="store_true",
                   help="--baselines without the four AdaMerging points (task-wise, "
                        "layer-wise and their ++ on TIES vectors; learned with the "
                        "--adamerging-* settings, e.g. a low --adamerging-steps for a quick "
                        "look), for a quick run.")
    g.add_argument("--compare", type=str, nargs="+", default=None, metavar="RUN_DIR",
                   help="Finished map / bayesian runs of the same models (e.g. with "
                        "--merge-method dare) whose fronts join pareto_front_withbaselines.png.")


def _mode_flags(p: argparse.ArgumentParser) -> None:
    """Each mode's own flags (src/modes/registry.py)."""
    for mode in MODES.values():
        mode.add_arguments(p)


def _truth_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ground truth")
    g.add_argument("--truth", type=str, default=None, metavar="RUN_DIR",
                   help="A finished --method grid run of the same models, datasets and box: "
                        "map and bayesian runs score their front against its front "
                        "(indicators.json) and draw it beneath theirs.")


def _refinement_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("front refinement (map, bayesian)")
    g.add_argument("--refine-rounds", type=nonnegative_int, default=None,
                   help="Rounds of: refit the surrogates on every evaluated point, search "
                        "again, evaluate --refine-points NEW points of the predicted front "
                        "(chosen by --refine-acquisition; none near an evaluated one); before "
                        "the final front (default: "
                        "default_refine_rounds(T) in args.py: map 2 for 2-3 tasks, else 0; "
                        "other modes 0; 0 keeps plain MAP).")
    g.add_argument("--refine-points", type=positive_int, default=5,
                   help="New front points evaluated per refinement round.")
    g.add_argument("--refine-tol", type=nonnegative_float, default=0.0,
                   help="Stop refining once a round's mean |predicted - real| at its new "
                        "points is at most this (metric units; 0: run every round).")
    g.add_argument("--refine-acquisition", choices=REFINE_ACQUISITIONS, default=None,
                   help="How a refinement round chooses its new front points: spread along "
                        "the predicted front; by expected hypervolume improvement under a "
                        "bootstrap ensemble of the surrogates; or parego: each point the best "
                        "by the Tchebycheff pick under one ensemble member and one weight "
                        "vector, the first the run's --preference (no hypervolume: for many "
                        "tasks) (src/core/acquisition.py; compared in docs/front_quality.md "
                        "and the README's 'Many tasks at once'). Default: "
                        "default_refine_acquisition(T) in args.py: map ehvi for 2-3 tasks, "
                        "else spread; other modes spread.")


def _output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output and run")
    g.add_argument("--results-path", type=folder_path, default="nested_experiments4",
                   help="Folder of run directories; a run writes <results-path>/<exp-id>/.")
    g.add_argument("--exp-id", type=run_name, default=None,
                   help="Run id (default: hex timestamp). Re-running with the same id resumes: "
                        "stored evaluations are not repeated.")
    g.add_argument("--device", type=str, default=None,
                   help="cuda, cuda:1 or cpu (default: cuda if available).")
    g.add_argument("--precision", type=str, default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="Evaluation precision (autocast of the forward pass; the merge stays "
                        "exact fp32). bf16 is 2-4x faster on GPUs; fp16 needs CUDA.")
    g.add_argument("--tau-dtype", type=str, default="fp32", choices=("fp32", "bf16"),
                   help="Storage of the task vectors: bf16 halves their memory (T encoders); "
                        "each merge is still computed in fp32.")
    g.add_argument("--batch-size", type=positive_int, default=128, help="Evaluation batch size.")
    g.add_argument("--max-eval-samples", type=positive_int, default=None,
                   help="Evaluate on at most this many images per dataset (quick looks).")
    g.add_argument("--num-workers", type=nonnegative_int, default=None,
                   help="DataLoader workers for decoding evaluation sets (once per run; "
                        "default: up to 8 of the CPUs this job may use, one left to the run, "
                        "for sets of 1024+ images, none on 2 CPUs; 0 decodes in the main "
                        "process).")
    g.add_argument("--pdf", action="store_true", help="Also write figures as PDF.")
    g.add_argument("--report-test", action="store_true",
                   help="After the run, also score the model handed over, task arithmetic at "
                        "its best evaluated lambda (adamerging: at its prior) and the "
                        "pretrained model on each "
                        "evaluation dataset's test split (<Dataset> for <Dataset>Val, the "
                        "same head), where nothing was chosen: run.json summary.test and a "
                        "table on the terminal.")
    g.add_argument("--no-final-checkpoint", action="store_true",
                   help="Do not write the merged encoder handed over "
                        "(final_model/finetuned.pt, one encoder's size: about 350 MB for "
                        "ViT-B/32), e.g. in a sweep or an array job; final_model/merge.json "
                        "still records its coefficients.")


def _execution_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution (Ray: several engines, one or more machines)")
    g.add_argument("--workers", type=worker_count, default=None, metavar="N|auto",
                   help="Evaluate on N engines in a private local Ray (one process each; "
                        "results are identical to a run without it). 'auto': one per visible "
                        "GPU with a CUDA --device, else one per --cpus-per-worker CPUs of this "
                        "machine (of the cluster with --ray-address). Default: no Ray, one "
                        "engine in this process. With more than one worker and no --cache-dir "
                        "the evaluation sets are decoded once, into <run>/.eval_cache (kept, "
                        "so a resumed run skips decoding; delete it freely). A merge that keeps "
                        "failing on the workers stops the run: one line naming it, exit 2, "
                        "everything finished stored.")
    g.add_argument("--ray-address", type=ray_address, default=None, metavar="auto|HOST:PORT",
                   help="Join a running Ray cluster (e.g. the one scripts/slurm/"
                        "map_ray_multinode.sbatch starts) instead of starting one; --workers "
                        "defaults to 'auto' then. --device is the workers' (give --device "
                        "cuda when this machine has no GPU but the cluster's nodes do).")
    g.add_argument("--sweep", choices=tuple(SWEEP_SIZES), default=None,
                   help="Run MAP (--method map, the default --method with --sweep) on "
                        "every pair (triple) of --zeroshot-merge-models (with --demo: of the "
                        "4 demo models), "
                        "each in <results-path>/<exp-id>/<A>_<B>/, all on one pool of engines "
                        "(every subset's design in one batch); writes sweep.csv and sweep.png "
                        "there. --point counts per subset (default: for 2 or 3 tasks).")
    g.add_argument("--cpus-per-worker", type=positive_int, default=1,
                   help="CPU cores (and torch threads) of each Ray worker.")


def _kept_flags(p: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="run_MAP.py",
        description="MAP: merge fine-tuned CLIP models by task arithmetic and find the Pareto "
                    "front of trade-offs between tasks with few evaluations.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    _data_flags(p)
    _map_flags(p)
    _merge_flags(p)
    _mode_flags(p)
    _truth_flags(p)
    _refinement_flags(p)
    _output_flags(p)
    _execution_flags(p)
    _kept_flags(p)
    return p


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    # --method not given: the sweep's mode with --sweep, else the default (the sweep then
    # runs over the demo's 4 models with --demo); not recorded among the arguments
    args.method_defaulted = args.method is None
    if args.method is None:
        args.method = MODES.default_name(args.sweep)
    if args.exp_id is None:
        args.exp_id = get_hex_time()
    if args.load is not None and len(args.load) == 1:
        args.load = args.load[0]
    return args
