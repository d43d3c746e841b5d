"""The run configuration: built once from the command line, checked, then frozen.

``build_config(args, defaults)`` is the only place that reads the argparse Namespace.
Every mode receives the resulting ``RunConfig`` and nothing else, so what a run does is
decided (and validated) before anything is loaded or written. Defaults that depend on the
number of tasks T come from ``args.py`` through ``Defaults``, so users keep editing them
there; this package never imports the CLI module.

Why ~390 lines: every flag's cross-checks live here, in one place, so that nothing is
loaded or written before all of them pass.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from map_common.errors import MAPError
from src import sampling
from src.metrics import Metric, get_metric


# A grid of more merges than this would take days even at a GPU's pace (~1 s per merge).
MAX_GRID_POINTS = 200_000


@dataclass(frozen=True)
class Defaults:
    """The defaults of args.py that depend on the mode or on T."""

    models: tuple[str, ...]              # --zeroshot-merge-models without --demo
    demo_pair: tuple[str, ...]           # with --demo, map / bayesian / grid
    demo_nested: tuple[str, ...]         # with --demo, nested
    points: Callable[[int], int]         # map: evaluated merges for T tasks
    nested_pair_points: int              # nested: evaluated merges per pair
    bayes_schedule: Callable[[int], tuple[int, int, int]]  # (initial, per round, rounds)
    grid_points_per_axis: Callable[[int], int | None]       # None: the user must choose
    refine_rounds: int = 0               # map / bayesian: --refine-rounds when not given


@dataclass(frozen=True)
class ModelSource:
    """Where the models and data come from."""

    model_name: str
    save: str
    pretrained: str
    finetuned: tuple[tuple[str, str], ...]  # (model, checkpoint path), task order
    data_location: str
    openclip_cachedir: str | None
    zoo_recipe: str | None = None  # demo runs: the zoo's recipe key


@dataclass(frozen=True)
class EvalSettings:
    """How merged models are evaluated (what may change a value is in ``value_settings``)."""

    device: str
    batch_size: int
    max_eval_samples: int | None
    num_workers: int | None
    cache_dir: str | None
    single_thread: bool  # the demo's tiny ops: extra torch threads only add overhead
    engine_options: tuple[tuple[str, Any], ...] = ()  # precision, merge method, ...
    # Ray (none of these changes a value, so none is in the resume fingerprint):
    workers: int | str | None = None  # engines; "auto": Ray sizes the pool; None: no Ray
    ray_address: str | None = None    # join this cluster ("auto" or host:port)
    cpus_per_worker: int = 1

    @property
    def uses_ray(self) -> bool:
        return self.workers is not None or self.ray_address is not None

    @property
    def shares_decoding(self) -> bool:
        """Decode the evaluation sets once in the driver for the workers to read: a pool
        that may hold more than one engine and no --cache-dir to share already."""
        return self.uses_ray and self.workers != 1 and self.cache_dir is None

    def value_settings(self) -> dict[str, Any]:
        """The settings that decide an evaluation's value (for the resume fingerprint)."""
        return {"max_eval_samples": self.max_eval_samples, **dict(self.engine_options)}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run does, resolved and checked."""

    method: str
    models: tuple[str, ...]     # fine-tuned models merged (task vectors), in order
    datasets: tuple[str, ...]   # evaluation dataset of each model, same order
    metric: Metric
    low: float                  # the box the designs sample
    high: float
    search_low: float           # the box NSGA-III searches (default: the sampled box)
    search_high: float
    points: int                 # map: merges evaluated; nested: per pair
    reevaluate: int | str       # front points merged and evaluated for real, or "all"
    n_gen: int
    seed: int
    pick: str                   # tchebycheff | weighted-sum
    preference: tuple[float, ...]  # weight of each dataset, same order
    bayes: tuple[int, int, int] | None  # (initial, per round, rounds) for bayesian
    grid_per_axis: int | None   # grid: points per coefficient axis
    truth: str | None           # a finished grid run to score the front against
    baselines: bool             # also evaluate the single-model baselines
    compare: tuple[str, ...]    # finished runs whose fronts join the baselines figure
    source: ModelSource
    evaluation: EvalSettings
    results_path: str
    exp_id: str
    pdf: bool
    sweep: str | None = None    # pairs | triples: map on every subset of the models
    arguments: dict[str, Any] = field(default_factory=dict, compare=False)
    refine_rounds: int = 0      # map / bayesian: front-refinement rounds (src.refine)
    refine_points: int = 5      # new front points evaluated per round
    refine_tol: float = 0.0     # stop once a round's mean |predicted - real| is at most this
    design: str = "grid"        # map: grid (one-hot, diagonal, grid points) | lhs
    # task_vectors.adamerging.AdaMergingSettings: --method adamerging, and the AdaMerging
    # points of --baselines (None: left out)
    adamerging: Any = None

    @property
    def T(self) -> int:
        return len(self.models)

    @property
    def run_path(self) -> Path:
        return Path(self.results_path) / self.exp_id

    @property
    def names(self) -> str:
        """The original tool's file-name prefix: the merged models joined by '_'."""
        return "_".join(self.models)


def build_config(args: argparse.Namespace, defaults: Defaults) -> RunConfig:
    """Check every input and resolve every default; MAPError (one line) before anything
    is loaded or written. Plain settings are checked before the demo zoo is built."""
    from task_vectors.checkpoints import finetuned_path, require_file
    from task_vectors.datasets.registry import check_dataset_name

    metric = get_metric(args.metric_type)
    low, high = map(float, args.bounds)
    if not low < high:
        raise MAPError(f"--bounds {low} {high}: LOW must be below HIGH")
    search_low, search_high = (low, high) if args.search_bounds is None else \
        map(float, args.search_bounds)
    if not search_low < search_high:
        raise MAPError(f"--search-bounds {search_low} {search_high}: LOW must be below HIGH")
    if args.n_gen <= 0:
        raise MAPError(f"--n-gen {args.n_gen}: must be positive")

    default_models = (defaults.demo_nested if args.method in ("nested", "adamerging")
                      else defaults.demo_pair) if args.demo else defaults.models
    models = tuple(args.zeroshot_merge_models or default_models)
    datasets = tuple(args.zeroshot_eval_datasets or models)
    _check_models(models, datasets)
    for name in datasets:
        check_dataset_name(name)
    sweep = _sweep(args, len(models))
    if sweep is not None and args.method == "nested":  # the default: a sweep runs map
        args = argparse.Namespace(**{**vars(args), "method": "map"})
    points, bayes = _budget(args, defaults, len(models) if sweep is None else
                            {"pairs": 2, "triples": 3}[sweep])
    grid_per_axis = _grid_per_axis(args, defaults, len(models))
    truth = None
    if args.truth is not None:
        if args.method not in ("map", "bayesian"):
            raise MAPError(f"--truth scores map and bayesian fronts; --method {args.method} "
                           "has none to score")
        truth = str(require_file(args.truth, "grid run (--truth)"))
    preference = _preference(args.preference, datasets)
    adamerging = _adamerging(args) if args.method == "adamerging" or (
        args.baselines and not args.no_adamerging_baselines) else None

    zoo_recipe = None
    if args.demo:  # built (once, about a minute) only after the plain settings passed
        from task_vectors.zoo import ensure_zoo

        zoo = ensure_zoo(args.zoo_dir)
        model_name, save = zoo.model_name, str(zoo.path)
        pretrained, data_location = str(zoo.path / "zeroshot.pt"), str(zoo.path)
        zoo_recipe = zoo.path.name
    else:
        model_name, save, data_location = args.model, args.save, args.data_location
        pretrained = args.pretrained_checkpoint or str(Path(save) / "zeroshot.pt")
    _check_model_name(model_name)
    require_file(pretrained, "pretrained checkpoint (--pretrained-checkpoint)")
    finetuned = tuple((m, str(require_file(finetuned_path(save, m),
                                           f"fine-tuned checkpoint of '{m}'")))
                      for m in models)
    device = args.device or _default_device()
    workers, ray_address = args.workers, args.ray_address
    if ray_address is not None and workers is None:
        workers = "auto"
    if workers is not None:
        _check_workers(workers, ray_address, args.cpus_per_worker, device)
    if ray_address is None:  # a cluster's GPUs need not be on the driver's machine
        _check_device(device)
    source = ModelSource(model_name=model_name, save=save, pretrained=pretrained,
                         finetuned=finetuned, data_location=data_location,
                         openclip_cachedir=args.openclip_cachedir, zoo_recipe=zoo_recipe)
    evaluation = EvalSettings(device=device, batch_size=args.batch_size,
                              max_eval_samples=args.max_eval_samples,
                              num_workers=args.num_workers, cache_dir=args.cache_dir,
                              single_thread=bool(args.demo) and device == "cpu",
                              engine_options=tuple(_engine_options(args).items()),
                              workers=workers, ray_address=ray_address,
                              cpus_per_worker=args.cpus_per_worker)
    baselines = bool(args.baselines)
    if baselines and args.method not in ("map", "bayesian"):
        raise MAPError(f"--baselines goes with --method map or bayesian, not {args.method}")
    if baselines and args.merge_method != "ta":
        raise MAPError("--baselines evaluates the merges of the plain task vectors (TIES and "
                       "DARE baselines transform them themselves): run it with --merge-method "
                       "ta, and add this run's front with --compare")
    compare = tuple(str(require_file(p, "run to compare (--compare)"))
                    for p in (args.compare or ()))
    refine_rounds, refine_points, refine_tol = _refinement(args, defaults)
    arguments = {k: v for k, v in vars(args).items()}
    arguments.update(model=model_name, save=save, pretrained_checkpoint=pretrained,
                     data_location=data_location)
    return RunConfig(
        method=args.method, models=models, datasets=datasets, metric=metric, low=low,
        high=high, search_low=search_low, search_high=search_high, points=points,
        reevaluate=args.reevaluate, n_gen=args.n_gen, seed=args.seed, pick=args.pick,
        preference=preference, bayes=bayes, grid_per_axis=grid_per_axis, truth=truth,
        baselines=baselines, compare=compare,
        source=source, evaluation=evaluation,
        results_path=args.results_path, exp_id=args.exp_id, pdf=args.pdf, sweep=sweep,
        arguments=arguments, refine_rounds=refine_rounds, refine_points=refine_points,
        refine_tol=refine_tol, design=args.design, adamerging=adamerging)


def _adamerging(args: argparse.Namespace):
    """The AdaMerging settings (checked) of --method adamerging or of --baselines, and what
    the mode does not combine with."""
    from task_vectors.adamerging import AdaMergingSettings

    if args.method == "adamerging" and args.merge_method not in ("ta", "ties"):
        raise MAPError(f"--method adamerging learns on task vectors as fine-tuned (--merge-method "
                       f"ta) or TIES-trimmed (ties: AdaMerging++), not {args.merge_method}")
    if args.method == "adamerging" and (args.workers is not None or
                                        args.ray_address is not None):
        raise MAPError("--method adamerging learns in one process; drop --workers / "
                       "--ray-address")
    low, high = args.adamerging_clamp
    if not low < high:
        raise MAPError(f"--adamerging-clamp {low} {high}: LOW must be below HIGH")
    if not low <= args.adamerging_prior <= high:
        raise MAPError(f"--adamerging-prior {args.adamerging_prior} lies outside "
                       f"--adamerging-clamp {low} {high}")
    return AdaMergingSettings(
        granularity=args.adamerging, prior=args.adamerging_prior, lr=args.adamerging_lr,
        beta1=args.adamerging_betas[0], beta2=args.adamerging_betas[1],
        steps=args.adamerging_steps, batch_size=args.adamerging_batch_size, seed=args.seed,
        low=low, high=high, checkpoint_every=args.adamerging_checkpoint_every)


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine settings that change an evaluation's value (recorded in run.json and the
    resume fingerprint): precision, task-vector storage, merge method and its own settings."""
    options: dict[str, Any] = {"precision": args.precision, "tau_dtype": args.tau_dtype,
                               "merge_method": args.merge_method}
    if args.merge_method in ("ties",):
        options["ties_density"] = args.ties_density
    if args.merge_method in ("dare", "dare-ties"):
        options["dare_drop_rate"] = args.dare_drop_rate
        options["merge_seed"] = args.seed  # the DARE mask
    return options


def _check_models(models: Sequence[str], datasets: Sequence[str]) -> None:
    if len(models) != len(datasets):
        raise MAPError(f"{len(models)} merge models ({' '.join(models)}) but {len(datasets)} "
                       f"eval datasets ({' '.join(datasets)}); give one eval dataset per model")
    if len(set(models)) != len(models):
        raise MAPError(f"a merge model is listed twice: {' '.join(models)}")
    if len(models) < 2:
        raise MAPError(f"MAP merges at least 2 models; got {len(models)} ({' '.join(models)})")


def _budget(args: argparse.Namespace, defaults: Defaults, T: int
            ) -> tuple[int, tuple[int, int, int] | None]:
    """(points, bayesian schedule) of the mode, checked against the surrogate's needs."""
    if args.point is not None and args.point <= 0:
        raise MAPError(f"--point {args.point}: the number of points must be positive")
    if args.method == "nested":
        points = args.point or defaults.nested_pair_points
        if points < sampling.min_points(2):
            raise MAPError(f"--point {points}: nested mode needs at least "
                           f"{sampling.min_points(2)} points per pair")
        return points, None
    points = args.point or defaults.points(T)
    if args.method == "map" and points < sampling.min_points(T):
        raise MAPError(f"--point {points} is fewer than the {sampling.min_points(T)} "
                       f"parameters of a quadratic surrogate in {T} coefficients")
    if args.method != "bayesian":
        return points, None
    from src import bayesian

    n_initial, n_update, n_iter = defaults.bayes_schedule(T)
    schedule = (args.bayes_initial_pts if args.bayes_initial_pts is not None else n_initial,
                args.bayes_update_pts if args.bayes_update_pts is not None else n_update,
                args.bayes_iter if args.bayes_iter is not None else n_iter)
    bayesian.check_schedule(T, *schedule)
    return points, schedule


def _sweep(args: argparse.Namespace, T: int) -> str | None:
    sweep = args.sweep
    if sweep is None:
        return None
    k = {"pairs": 2, "triples": 3}[sweep]
    if args.method not in ("map", "nested"):  # nested, the default, is taken as map
        raise MAPError(f"--sweep runs --method map on every subset, not --method {args.method}")
    if T <= k:
        raise MAPError(f"--sweep {sweep} over {T} models is a single run; list more models "
                       "with --zeroshot-merge-models")
    for flag, value in (("--truth", args.truth), ("--baselines", args.baselines),
                        ("--compare", args.compare)):
        if value:
            raise MAPError(f"{flag} does not go with --sweep (run it on one subset's run)")
    return sweep


def _refinement(args: argparse.Namespace, defaults: Defaults) -> tuple[int, int, float]:
    """(rounds, points per round, tolerance) of the front refinement (map and bayesian)."""
    given, points, tol = args.refine_rounds, args.refine_points, args.refine_tol
    if given is None:  # the default refines map and bayesian fronts only
        return (defaults.refine_rounds if args.method in ("map", "bayesian") else 0), \
            points, tol
    rounds = given
    if rounds < 0 or points < 1 or tol < 0:
        raise MAPError(f"--refine-rounds {rounds} --refine-points {points} --refine-tol {tol}: "
                       "rounds and tolerance must be 0 or more, points per round positive")
    if rounds and args.method not in ("map", "bayesian"):
        raise MAPError(f"--refine-rounds refines a map or bayesian front; --method "
                       f"{args.method} has its own design")
    return int(rounds), int(points), float(tol)


def _grid_per_axis(args: argparse.Namespace, defaults: Defaults, T: int) -> int | None:
    if args.method != "grid":
        return None
    per_axis = args.grid_points_per_axis or defaults.grid_points_per_axis(T)
    if per_axis is None:
        raise MAPError(f"--method grid with {T} tasks: set --grid-points-per-axis N (the grid "
                       f"has N**{T} merges, e.g. {5 ** T} for N = 5)")
    if per_axis < 2:
        raise MAPError(f"--grid-points-per-axis {per_axis}: need at least 2 points per axis")
    if per_axis ** T > MAX_GRID_POINTS:
        raise MAPError(f"--grid-points-per-axis {per_axis} with {T} tasks is {per_axis ** T} "
                       f"merges; at most {MAX_GRID_POINTS} (largest per axis for {T} tasks: "
                       f"{int(MAX_GRID_POINTS ** (1 / T) + 1e-9)})")
    return per_axis


def _preference(path: str, datasets: Sequence[str]) -> tuple[float, ...]:
    from src import nested
    from src.results import load_preference

    weights = nested.validate_preference(load_preference(path), list(datasets))
    return tuple(float(weights[d]) for d in datasets)


def _check_model_name(model_name: str) -> None:
    if model_name.startswith("local-dir:"):
        return
    import open_clip

    if model_name not in open_clip.list_models():
        raise MAPError(f"cannot build open_clip model '{model_name}': unknown architecture "
                       "(e.g. ViT-B-32, ViT-B-16, ViT-L-14, or local-dir:<folder>)")


def _check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise MAPError(f"--device {device}: not a device (cpu, cuda, cuda:1, ...)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise MAPError(f"--device {device}: CUDA is not available on this machine")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise MAPError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")


def _check_workers(workers: int | str, ray_address: str | None, cpus_per_worker: int,
                   device: str) -> None:
    """A local pool must fit this machine (the cluster's size is Ray's to check)."""
    import importlib.util
    import os

    if importlib.util.find_spec("ray") is None:
        raise MAPError("--workers / --ray-address need Ray: pip install '.[ray]'")
    if cpus_per_worker < 1:
        raise MAPError(f"--cpus-per-worker {cpus_per_worker}: must be positive")
    if ray_address is not None or workers == "auto":
        return
    if device.startswith("cuda"):
        import torch

        if workers > torch.cuda.device_count():
            raise MAPError(f"--workers {workers} with --device {device}: one GPU per worker, "
                           f"this machine has {torch.cuda.device_count()}")
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if workers * cpus_per_worker > 8 * (cpus or 1):
        raise MAPError(f"--workers {workers} x --cpus-per-worker {cpus_per_worker} is far more "
                       f"than the {cpus} CPUs of this machine; use --ray-address for a cluster")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
