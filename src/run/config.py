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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from map_common.errors import MAPError
from src.core.metrics import Metric, get_metric
from src.core.objectives import file_prefix
from src.run.report_on_test import test_datasets
from src.run.names import tchebycheff_pick
from src.run.mode_registry import (MODES, SWEEP_DEMO_MODELS, SWEEP_SIZES, BayesSchedule, Mode,
                                   ModeSettings, either, get_mode)
from task_vectors.layout import finetuned_path, require_file
from task_vectors.merge_methods import MergeMethod, TaskArithmetic, method_from_flags


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
    # map, for T tasks per run, when the flag is not given: --design, --refine-rounds,
    # --refine-acquisition (the other modes: no refinement, spread)
    design: Callable[[int], str] = lambda T: "grid"
    refine_rounds: Callable[[int], int] = lambda T: 0
    refine_acquisition: Callable[[int], str] = lambda T: "spread"
    bayes_acquisition: Callable[[int], str] = lambda T: "error"  # bayesian's rounds
    # bayesian's round 0 (--design), by its --bayes-acquisition
    bayes_design: Callable[[str], str] = lambda acquisition: "grid"
    pick_floor: Callable[[int], str] = lambda T: "pretrained"  # map's and nested's --pick-floor
    nested_context: Callable[[int], str] = lambda T: "none"  # nested's --nested-context
    nested_pick: Callable[[str], str] = tchebycheff_pick  # nested's --pick, by floor


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
    engine_options: tuple[tuple[str, Any], ...] = ()  # precision, tau storage
    merge_method: MergeMethod = TaskArithmetic()  # --merge-method with its settings
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
        return {"max_eval_samples": self.max_eval_samples, **dict(self.engine_options),
                **self.merge_method.record()}


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
    points: int | None          # map: the merges of its design (None for other modes)
    reevaluate: int | str       # front points merged and evaluated for real, or "all"
    n_gen: int
    seed: int
    pick: str                   # tchebycheff | weighted-sum
    pick_from: str              # front | evaluated (src.core.front.PICK_FROM)
    preference: tuple[float, ...]  # weight of each dataset, same order
    bayes: BayesSchedule | None  # bayesian: (initial, update, iterations)
    grid_per_axis: int | None   # grid: points per coefficient axis
    truth: str | None           # a finished grid run to score the front against
    baselines: bool             # also evaluate the single-model baselines
    compare: tuple[str, ...]    # finished runs whose fronts join the baselines figure
    source: ModelSource
    evaluation: EvalSettings
    results_path: str
    exp_id: str
    pdf: bool
    final_checkpoint: bool = True  # final_model/finetuned.pt (--no-final-checkpoint: not)
    report_test: bool = False   # --report-test: the pick and references on the test splits
    sweep: str | None = None    # pairs | triples: map on every subset of the models
    arguments: dict[str, Any] = field(default_factory=dict, compare=False)
    refine_rounds: int = 0      # map / bayesian: front-refinement rounds (src.core.refine)
    refine_points: int = 5      # new front points evaluated per round
    refine_tol: float = 0.0     # stop once a round's mean |predicted - real| is at most this
    refine_acquisition: str = "spread"  # how a round picks its points: spread | ehvi | parego
    design: str = "grid"        # map: grid (one-hot, diagonal, grid points) | lhs | local;
    # bayesian: its round 0, grid | lhs
    bayes_acquisition: str = "error"  # bayesian: error | ehvi (src.core.bayesian.ACQUISITIONS)
    pair_points: int | None = None  # nested: merges evaluated per pair
    pick_floor: str = "pretrained"  # pretrained | task-arithmetic (src.core.front.PICK_FLOORS)
    nested_context: str = "none"  # nested: the other task vectors beside a pair (nested.CONTEXTS)

    @property
    def mode(self) -> Mode:
        return MODES[self.method]
    # task_vectors.adamerging.AdaMergingSettings: a mode that learns its coefficients, and the
    # AdaMerging points of --baselines (None: left out)
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
        return file_prefix(self.models)


def build_config(args: argparse.Namespace, defaults: Defaults) -> RunConfig:
    """Check every input and resolve every default; MAPError (one line) before anything
    is loaded or written. Plain settings are checked before the demo zoo is built."""
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

    mode = get_mode(args.method)
    demo_models = SWEEP_DEMO_MODELS if args.sweep and args.method_defaulted \
        else mode.demo_models
    default_models = getattr(defaults, demo_models) if args.demo else defaults.models
    models = tuple(args.zeroshot_merge_models or default_models)
    datasets = tuple(args.zeroshot_eval_datasets or models)
    _check_models(models, datasets)
    _check_names(args, models, datasets)
    if args.report_test:
        if not mode.hands_over:
            raise MAPError(f"--report-test goes with --method "
                           f"{either(MODES.names(_hands_over))} (the model it hands over, "
                           f"beside task arithmetic and the pretrained model), not {args.method}")
        test_datasets(datasets)
    sweep = _sweep(args, mode, len(models))
    if getattr(args, "design", None) is not None and not mode.supports_design:
        raise MAPError(f"--design goes with --method {either(MODES.names(_designs))} "
                       f"(bayesian: its first round); --method {args.method} has its own design")
    settings = mode.settings(args, defaults, len(models) if sweep is None else SWEEP_SIZES[sweep])
    if getattr(args, "nested_context", None) is not None and settings.nested_context is None:
        raise MAPError(f"--nested-context sets what lies beside nested's pairs; --method "
                       f"{args.method} merges no pairs")
    truth = None
    if args.truth is not None:
        if not mode.supports_truth:
            raise MAPError(f"--truth scores {either(MODES.names(_truth), 'and')} fronts; "
                           f"--method {args.method} has none to score")
        truth = str(require_file(args.truth, "grid run (--truth)"))
    preference = _preference(args.preference, datasets)

    merge_method = method_from_flags(args.merge_method, vars(args))
    baselines = bool(args.baselines)
    if baselines and not mode.supports_baselines:
        raise MAPError(f"--baselines goes with --method {either(MODES.names(_baselines))}, "
                       f"not {args.method}")
    if baselines and merge_method != TaskArithmetic():
        raise MAPError("--baselines evaluates the merges of the plain task vectors (TIES and "
                       "DARE baselines transform them themselves): run it with --merge-method "
                       "ta, and add this run's front with --compare")
    compare = tuple(str(require_file(p, "run to compare (--compare)"))
                    for p in (args.compare or ()))
    refine_rounds, refine_points, refine_tol = _refinement(args, mode, settings)
    refine_acquisition = args.refine_acquisition
    if refine_acquisition is None:  # the mode's default: never refused
        refine_acquisition = settings.refine_acquisition if refine_rounds else "spread"
    elif refine_acquisition != "spread" and refine_rounds == 0:
        raise MAPError(f"--refine-acquisition {refine_acquisition} chooses the points of the "
                       "refinement rounds: add --refine-rounds 1 or more")
    adamerging = _adamerging(args, mode) if mode.learns_coefficients or (
        args.baselines and not args.no_adamerging_baselines) else None
    # Checkpoint files before the device check imports torch (a refusal in under 2 s); the
    # demo zoo is built only once every plain setting has passed.
    source = None if args.demo else _model_source(args, models, None)
    evaluation = _eval_settings(args, merge_method)
    if source is None:
        from task_vectors.zoo import ZooFolderError, ensure_zoo

        try:
            zoo = ensure_zoo(args.zoo_dir)
        except ZooFolderError as e:
            where = "--zoo-dir" if args.zoo_dir is not None else \
                "$MAP_ZOO_DIR" if os.environ.get("MAP_ZOO_DIR") else "the zoo cache"
            raise MAPError(f"{where}: {e}") from None
        source = _model_source(args, models, zoo)
    _check_model_name(source.model_name)  # imports open_clip (seconds): the last check
    arguments = {k: v for k, v in vars(args).items() if k != "method_defaulted"}
    # the values in force, defaults resolved for this T (a resume compares them)
    pick_floor = args.pick_floor or settings.pick_floor
    pick = args.pick or settings.pick(pick_floor)
    arguments.update(design=settings.design, refine_rounds=refine_rounds,
                     refine_acquisition=refine_acquisition, pick_floor=pick_floor, pick=pick)
    if settings.nested_context is not None:
        arguments.update(nested_context=settings.nested_context)
    if settings.bayes_acquisition is not None:
        arguments.update(bayes_acquisition=settings.bayes_acquisition)
    arguments.update(model=source.model_name, save=source.save,
                     pretrained_checkpoint=source.pretrained, data_location=source.data_location)
    return RunConfig(
        method=args.method, models=models, datasets=datasets, metric=metric, low=low,
        high=high, search_low=search_low, search_high=search_high, points=settings.points,
        reevaluate=args.reevaluate, n_gen=args.n_gen, seed=args.seed, pick=pick,
        pick_from=args.pick_from, pick_floor=pick_floor,
        preference=preference, bayes=settings.bayes, grid_per_axis=settings.grid_per_axis,
        truth=truth,
        baselines=baselines, compare=compare,
        source=source, evaluation=evaluation,
        results_path=args.results_path, exp_id=args.exp_id, pdf=args.pdf,
        final_checkpoint=not args.no_final_checkpoint, report_test=args.report_test,
        sweep=sweep,
        arguments=arguments, refine_rounds=refine_rounds, refine_points=refine_points,
        refine_tol=refine_tol, refine_acquisition=refine_acquisition,
        design=settings.design, pair_points=settings.pair_points,
        bayes_acquisition=settings.bayes_acquisition or "error",
        nested_context=settings.nested_context or "none",
        adamerging=adamerging)


def _model_source(args: argparse.Namespace, models: Sequence[str], zoo) -> ModelSource:
    """The model, checkpoints and data (the demo zoo's when ``zoo`` is given); every file
    checked."""
    if zoo is not None:
        model_name, save = zoo.model_name, str(zoo.path)
        pretrained, data_location = str(zoo.path / "zeroshot.pt"), str(zoo.path)
    else:
        model_name, save, data_location = args.model, args.save, args.data_location
        pretrained = args.pretrained_checkpoint or str(Path(save) / "zeroshot.pt")
    require_file(pretrained, "pretrained checkpoint (--pretrained-checkpoint)")
    finetuned = tuple((m, str(require_file(finetuned_path(save, m),
                                           f"fine-tuned checkpoint of '{m}'")))
                      for m in models)
    return ModelSource(model_name=model_name, save=save, pretrained=pretrained,
                       finetuned=finetuned, data_location=data_location,
                       openclip_cachedir=args.openclip_cachedir,
                       zoo_recipe=None if zoo is None else zoo.path.name)


def _check_names(args: argparse.Namespace, models: Sequence[str],
                 datasets: Sequence[str]) -> None:
    """Names checked against the registry's list without importing torch; a model is called
    a model, a dataset a dataset, as the flag that gave it."""
    from task_vectors import names

    known = names.dataset_names()
    if args.demo:
        names.check_names("model", models, [f"{t}Val" for t in names.DEMO_DATASETS],
                          " in --zeroshot-merge-models (a model of the demo zoo)")
    elif args.zeroshot_eval_datasets is None:  # the models name their datasets
        names.check_names("model", models, known,
                          " in --zeroshot-merge-models (a model is named by its dataset)")
    names.check_names("dataset", datasets, known, " in --zeroshot-eval-datasets"
                      if args.zeroshot_eval_datasets else "")


def _eval_settings(args: argparse.Namespace, merge_method: MergeMethod) -> EvalSettings:
    """How merged models are evaluated: merge method, device, Ray pool; each checked."""
    device = args.device or _default_device()
    workers, ray_address = args.workers, args.ray_address
    if ray_address is not None and workers is None:
        workers = "auto"
    if workers is not None:
        _check_workers(workers, ray_address, args.cpus_per_worker, device)
    # a cluster's GPUs need not be on the driver's machine, unless it learns a merge method
    if ray_address is None or merge_method.kind == "learned":
        _check_device(device)
    return EvalSettings(device=device, batch_size=args.batch_size,
                        max_eval_samples=args.max_eval_samples,
                        num_workers=args.num_workers, cache_dir=args.cache_dir,
                        single_thread=bool(args.demo) and device == "cpu",
                        engine_options=tuple(_engine_options(args).items()),
                        merge_method=merge_method,
                        workers=workers, ray_address=ray_address,
                        cpus_per_worker=args.cpus_per_worker)


def _truth(mode: Mode) -> bool:
    return mode.supports_truth


def _hands_over(mode: Mode) -> bool:
    return mode.hands_over


def _baselines(mode: Mode) -> bool:
    return mode.supports_baselines


def _refines(mode: Mode) -> bool:
    return mode.supports_refinement


def _designs(mode: Mode) -> bool:
    return mode.supports_design


def _adamerging(args: argparse.Namespace, mode: Mode):
    """The AdaMerging settings (checked) of a mode that learns its coefficients or of
    --baselines, and what such a mode does not combine with."""
    from task_vectors.adamerging_settings import AdaMergingSettings

    if mode.learns_coefficients and args.merge_method not in ("ta", "ties"):
        raise MAPError(f"--method adamerging learns on task vectors as fine-tuned (--merge-method "
                       f"ta) or TIES-trimmed (ties: AdaMerging++), not {args.merge_method}")
    if mode.learns_coefficients and (args.workers is not None or args.ray_address is not None):
        raise MAPError("--method adamerging learns in one process; drop --workers / "
                       "--ray-address")
    return AdaMergingSettings.from_flags(vars(args))


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine settings besides the merge method that change an evaluation's value
    (recorded in run.json and the resume fingerprint): precision, task-vector storage."""
    return {"precision": args.precision, "tau_dtype": args.tau_dtype}


def _check_models(models: Sequence[str], datasets: Sequence[str]) -> None:
    if len(models) != len(datasets):
        raise MAPError(f"{len(models)} merge models ({' '.join(models)}) but {len(datasets)} "
                       f"eval datasets ({' '.join(datasets)}); give one eval dataset per model")
    if len(set(models)) != len(models):
        raise MAPError(f"a merge model is listed twice: {' '.join(models)}")
    if len(models) < 2:
        raise MAPError(f"MAP merges at least 2 models; got {len(models)} ({' '.join(models)})")


def _sweep(args: argparse.Namespace, mode: Mode, T: int) -> str | None:
    sweep = args.sweep
    if sweep is None:
        return None
    k = SWEEP_SIZES[sweep]
    if not mode.supports_sweep:
        raise MAPError(f"--sweep runs --method {MODES.sweep_mode().name} on every subset, not "
                       f"--method {args.method}")
    if T <= k:
        raise MAPError(f"--sweep {sweep} over {T} models is a single run; list more models "
                       "with --zeroshot-merge-models")
    for flag, value in (("--truth", args.truth), ("--baselines", args.baselines),
                        ("--compare", args.compare)):
        if value:
            raise MAPError(f"{flag} does not go with --sweep (run it on one subset's run)")
    if getattr(args, "design", None) == "local":
        raise MAPError("--design local does not go with --sweep: its second stage waits on "
                       "the first stage's values, while a sweep evaluates every subset's "
                       "design in one batch (run it on one subset)")
    return sweep


def _refinement(args: argparse.Namespace, mode: Mode, settings: ModeSettings
                ) -> tuple[int, int, float]:
    """(rounds, points per round, tolerance) of the front refinement (map and bayesian)."""
    given, points, tol = args.refine_rounds, args.refine_points, args.refine_tol
    if given is None:  # the mode's default for its T (map: args.default_refine_rounds)
        return (settings.refine_rounds if mode.supports_refinement else 0), points, tol
    rounds = given
    if rounds < 0 or points < 1 or tol < 0:
        raise MAPError(f"--refine-rounds {rounds} --refine-points {points} --refine-tol {tol}: "
                       "rounds and tolerance must be 0 or more, points per round positive")
    if rounds and not mode.supports_refinement:
        raise MAPError(f"--refine-rounds refines a {either(MODES.names(_refines))} front; "
                       f"--method {args.method} has its own design")
    return int(rounds), int(points), float(tol)


def _preference(path: str, datasets: Sequence[str]) -> tuple[float, ...]:
    from src.core.objectives import validate_preference
    from src.run.results import load_preference

    weights = validate_preference(load_preference(path), list(datasets))
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
