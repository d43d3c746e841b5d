"""The modes (--method), one object each: its name, its own flags, its settings, their
checks, what it supports, and its run.

argparse's choices, the dispatch and the config's checks all read ``MODES``; a mode's name
is compared nowhere else. The objects are light (numpy at most): args.py reads them before
anything heavy is imported, and a mode's ``run`` is imported only when it runs.

Adding a mode: a module with ``run(config) -> summary`` (using ``open_run``,
``evaluate_points`` and ``solve_front``), and a ``Mode`` here (or registered with
``MODES.register`` by a plugin) naming it, with ``add_arguments`` / ``settings`` if it has
flags of its own.
"""
from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from map_common.argtypes import MAX_POINTS, float_in, int_in, point_count
from map_common.errors import MAPError
from src.core import local_design, sampling
from src.run.names import NESTED_CONTEXTS, tchebycheff_pick
from src.core.bayesian import ACQUISITIONS as BAYES_ACQUISITIONS  # numpy only

if TYPE_CHECKING:
    from src.run.config import Defaults, RunConfig


# --sweep's choices: the size of each subset.
SWEEP_SIZES = {"pairs": 2, "triples": 3}
# With --demo and no --method, a sweep runs over the 4 demo models (this Defaults field).
SWEEP_DEMO_MODELS = "demo_nested"


class BayesSchedule(NamedTuple):
    """The bayesian mode's budget: initial design, points per round, rounds."""

    initial: int
    update: int
    iterations: int


@dataclass(frozen=True)
class ModeSettings:
    """The RunConfig fields a mode sets (a field left None: the mode has no such setting).
    ``points``: the merges of map's design; ``pair_points``: nested's merges per pair."""

    points: int | None = None
    pair_points: int | None = None
    bayes: BayesSchedule | None = None
    grid_per_axis: int | None = None
    design: str = "grid"
    refine_rounds: int = 0            # --refine-rounds when not given
    refine_acquisition: str = "spread"  # --refine-acquisition when not given
    bayes_acquisition: str | None = None  # bayesian: how a round chooses its points
    pick_floor: str = "pretrained"    # --pick-floor when not given
    nested_context: str | None = None  # nested: --nested-context in force
    # --pick when not given, from the --pick-floor in force
    pick: Callable[[str], str] = field(default=tchebycheff_pick, repr=False)


@dataclass(frozen=True)
class Mode:
    """A --method. ``run`` is a callable or "module:function" (imported when it runs)."""

    name: str
    help: str
    run_target: str | Callable[["RunConfig"], dict[str, Any]] = field(repr=False)
    demo_models: str = "demo_pair"      # the Defaults field --demo takes the models from
    supports_truth: bool = False        # --truth scores its front
    supports_refinement: bool = False   # --refine-rounds refines its front
    supports_design: bool = False       # --design chooses its merges (bayesian: round 0)
    supports_baselines: bool = False    # --baselines / --compare join its front's figure
    supports_sweep: bool = False        # --sweep runs it on every subset
    hands_over: bool = False            # --report-test scores the model it hands over
    makes_truth: bool = False           # a finished run of it is a --truth
    learns_coefficients: bool = False   # learns its merge from data (AdaMerging settings)
    reads_point: bool = False           # --point sets its merges (map: design; nested: pair)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The mode's own flags (none by default)."""

    def own_flags(self) -> dict[str, str]:
        """{dest: flag} of its own flags that default to None, where a value means the
        flag was given."""
        parser = argparse.ArgumentParser(add_help=False)
        self.add_arguments(parser)
        return {a.dest: a.option_strings[0] for a in parser._actions if a.default is None}

    def settings(self, args: argparse.Namespace, defaults: "Defaults", T: int) -> ModeSettings:
        """The mode's settings from the flags, checked (MAPError); T: tasks per run."""
        return ModeSettings()

    def run(self, config: "RunConfig") -> dict[str, Any]:
        target = self.run_target
        if isinstance(target, str):
            module, _, name = target.partition(":")
            target = getattr(importlib.import_module(module), name)
        return target(config)


def _given_points(args: argparse.Namespace) -> int | None:
    if args.point is not None and args.point <= 0:
        raise MAPError(f"--point {args.point}: the number of points must be positive")
    return args.point


@dataclass(frozen=True)
class MapMode(Mode):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("map")
        g.add_argument("--design", type=str, default=None, choices=("grid", "lhs", "local"),
                       help="map: the evaluated merges; bayesian: its first round (grid "
                            "or lhs). grid: one-hot, near-diagonal, then "
                            "points of a coarse grid (mostly the box's edges and corners for "
                            "2-3 tasks); lhs: one-hot, the centre, then a Latin hypercube "
                            "(interior points; better fronts on the demo bench, see "
                            "docs/front_quality.md); local: one-hot, task arithmetic's sweep "
                            "c = lambda*1 (10 values), then a Latin hypercube in the box "
                            "lambda*(1 +- 0.5) around its best lambda, where the surrogates "
                            "are fitted and the front searched (many tasks; needs --point >= "
                            "T + 10 + (T+1)(T+2)/2). Default: default_design(T) in args.py; "
                            "bayesian: default_bayes_design(acquisition). Other modes: "
                            "refused.")

    def settings(self, args, defaults, T):
        points = _given_points(args) or defaults.points(T)
        if points < sampling.min_points(T):
            raise MAPError(f"--point {points} is fewer than the {sampling.min_points(T)} "
                           f"parameters of a quadratic surrogate in {T} coefficients")
        design = args.design or defaults.design(T)
        if design == "local" and points < local_design.min_design_points(T):
            raise MAPError(f"--design local --point {points}: {T} tasks need at least "
                           f"{local_design.min_design_points(T)} points ({T} fine-tuned "
                           f"models, {local_design.DIAGONAL_STEPS} on the diagonal, "
                           f"{sampling.min_points(T)} in the local box)")
        return ModeSettings(points=points, design=design, pick_floor=defaults.pick_floor(T),
                            refine_rounds=defaults.refine_rounds(T),
                            refine_acquisition=defaults.refine_acquisition(T))


@dataclass(frozen=True)
class BayesianMode(Mode):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("bayesian")
        g.add_argument("--bayes-iter", type=int_in(1, MAX_POINTS), default=None,
                       help="Number of adaptive rounds (default: default_bayes_schedule in "
                            "args.py, 3).")
        g.add_argument("--bayes-update-pts", type=point_count, default=None,
                       help="Points added per round (default: default_bayes_schedule, 5).")
        g.add_argument("--bayes-initial-pts", type=point_count, default=None,
                       help="Initial design size (default: default_bayes_schedule, "
                            "(T+1)(T+2)/2 + 2).")
        g.add_argument("--bayes-acquisition", default=None, choices=BAYES_ACQUISITIONS,
                       help="How a round chooses its points. error: where the surrogates "
                            "err most (angular bins, the original's rounds); ehvi: the "
                            "predicted front's points of largest expected hypervolume "
                            "improvement under a bootstrap ensemble of the surrogates (the "
                            "bins fill what the front cannot). Default: "
                            "default_bayes_acquisition(T) in args.py.")

    def settings(self, args, defaults, T):
        from src.core import bayesian

        _given_points(args)
        n_initial, n_update, n_iter = defaults.bayes_schedule(T)
        schedule = BayesSchedule(
            args.bayes_initial_pts if args.bayes_initial_pts is not None else n_initial,
            args.bayes_update_pts if args.bayes_update_pts is not None else n_update,
            args.bayes_iter if args.bayes_iter is not None else n_iter)
        bayesian.check_schedule(T, *schedule)
        acquisition = args.bayes_acquisition or defaults.bayes_acquisition(T)
        design = args.design or defaults.bayes_design(acquisition)
        if design not in bayesian.INITIAL_DESIGNS:
            raise MAPError(f"--design {design} is map's two-stage design; bayesian's first round "
                           f"is {either(list(bayesian.INITIAL_DESIGNS))}")
        return ModeSettings(bayes=schedule, design=design, bayes_acquisition=acquisition)


@dataclass(frozen=True)
class NestedMode(Mode):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("nested")
        g.add_argument("--nested-context", type=str, default=None, choices=NESTED_CONTEXTS,
                       help="nested: the task vectors outside a pair while the pair is merged "
                            "and measured. none: 0 (each pair alone, the original's tree); "
                            "task-arithmetic: task arithmetic's best lambda over all the "
                            "tasks (its sweep, 10 merges, is evaluated first), so each pair "
                            "is chosen against the rest of the merge. Default: "
                            "default_nested_context(T) in args.py (task-arithmetic from 4 "
                            "tasks).")

    def settings(self, args, defaults, T):
        points = _given_points(args) or defaults.nested_pair_points
        if points < sampling.min_points(2):
            raise MAPError(f"--point {points}: nested mode needs at least "
                           f"{sampling.min_points(2)} points per pair")
        return ModeSettings(pair_points=points, pick_floor=defaults.pick_floor(T),
                            nested_context=args.nested_context or defaults.nested_context(T),
                            pick=defaults.nested_pick)


@dataclass(frozen=True)
class AdaMergingMode(Mode):
    """Coefficients learned without labels (AdaMerging); its flags also set the AdaMerging
    points of --baselines."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("AdaMerging (--method adamerging; defaults: Yang et al., ICLR 2024)")
        g.add_argument("--adamerging", type=str, default="layer", choices=("task", "layer"),
                       help="Coefficients learned: one per task (task-wise) or one per task and "
                            "per parameter tensor of the image encoder (layer-wise). With "
                            "--merge-method ties they are learned on the TIES vectors "
                            "(AdaMerging++). They minimise the entropy of each task's head on "
                            "unlabeled images: the evaluation sets' own images, as AdaMerging "
                            "uses its test sets, so the accuracy reported is measured on the "
                            "images it learned from (their labels are read only to report it).")
        g.add_argument("--adamerging-prior", type=float_in(0.0, 1.0), default=0.3,
                       help="Initial value of every coefficient (inside --adamerging-clamp).")
        g.add_argument("--adamerging-lr", type=float_in(0.0, 1e3, low_open=True), default=1e-3,
                       help="Adam learning rate.")
        g.add_argument("--adamerging-betas", type=float_in(0.0, 1.0, high_open=True), nargs=2,
                       default=[0.9, 0.999], metavar=("BETA1", "BETA2"), help="Adam betas.")
        g.add_argument("--adamerging-steps", type=int_in(1, 1_000_000), default=500,
                       help="Optimisation steps (each: one batch per task). A finished run "
                            "given more steps continues from its checkpoint.")
        g.add_argument("--adamerging-batch-size", type=int_in(1, 100_000), default=16,
                       help="Unlabeled images per task and step (shuffled by --seed).")
        g.add_argument("--adamerging-clamp", type=float_in(), nargs=2, default=[0.0, 1.0],
                       metavar=("LOW", "HIGH"),
                       help="Coefficients are clamped to [LOW, HIGH] after each step.")
        g.add_argument("--adamerging-checkpoint-every", type=int_in(1, 1_000_000), default=50,
                       help="Steps between checkpoints (coefficients, Adam state, step); a killed "
                            "run rerun with the same command continues from the last one and "
                            "ends with the same coefficients.")

    def settings(self, args, defaults, T):
        _given_points(args)
        return ModeSettings()


# A grid of more merges than this would take days even at a GPU's pace (~1 s per merge).
MAX_GRID_POINTS = 200_000


@dataclass(frozen=True)
class GridMode(Mode):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("grid")
        g.add_argument("--grid-points-per-axis", type=int_in(2, MAX_POINTS), default=None,
                       help="--method grid: values per coefficient axis over --bounds "
                            "(default: default_grid_points_per_axis(T) in args.py: 21 for 2 "
                            "tasks, 11 for 3; larger T must set it).")

    def settings(self, args, defaults, T):
        _given_points(args)
        per_axis = args.grid_points_per_axis or defaults.grid_points_per_axis(T)
        if per_axis is None:
            raise MAPError(f"--method grid with {T} tasks: set --grid-points-per-axis N (the "
                           f"grid has N**{T} merges, e.g. {5 ** T} for N = 5)")
        if per_axis < 2:
            raise MAPError(f"--grid-points-per-axis {per_axis}: need at least 2 points per "
                           "axis")
        if per_axis ** T > MAX_GRID_POINTS:
            raise MAPError(f"--grid-points-per-axis {per_axis} with {T} tasks is "
                           f"{per_axis ** T} merges; at most {MAX_GRID_POINTS} (largest per "
                           f"axis for {T} tasks: {int(MAX_GRID_POINTS ** (1 / T) + 1e-9)})")
        return ModeSettings(grid_per_axis=per_axis)


class ModeRegistry(dict):
    """{name: Mode}, in registration order (the order of --method's choices)."""

    def __init__(self, modes=(), default: str | None = None) -> None:
        super().__init__()
        for mode in modes:
            self.register(mode)
        self.default = default

    def register(self, mode: Mode) -> Mode:
        if mode.name in self and self[mode.name] is not mode:
            raise ValueError(f"mode {mode.name!r} is registered twice")
        self[mode.name] = mode
        return mode

    def names(self, supports: Callable[[Mode], bool] = lambda m: True) -> list[str]:
        return [name for name, mode in self.items() if supports(mode)]

    def sweep_mode(self) -> Mode:
        """The mode --sweep runs on every subset."""
        return next(m for m in self.values() if m.supports_sweep)

    def default_name(self, sweep: str | None) -> str:
        """--method when not given: the sweep's mode with --sweep, else the default."""
        return self.sweep_mode().name if sweep is not None else self.default


MODES = ModeRegistry([
    MapMode("map", "sample, fit quadratic surrogates, NSGA-III front",
            "src.modes.map_mode:run", supports_truth=True, supports_refinement=True,
            supports_design=True, supports_baselines=True, supports_sweep=True,
            hands_over=True, reads_point=True),
    BayesianMode("bayesian", "the same with adaptive sampling rounds (<= 6 tasks)",
                 "src.modes.bayesian_mode:run", supports_truth=True,
                 supports_refinement=True, supports_design=True, supports_baselines=True,
                 hands_over=True),
    NestedMode("nested", "merge two models at a time (many tasks)", "src.modes.nested_mode:run",
               demo_models="demo_nested", hands_over=True, reads_point=True),
    GridMode("grid", "evaluate a regular grid of merges, the ground truth (see --truth)",
             "src.modes.grid_mode:run", makes_truth=True),
    AdaMergingMode("adamerging", "learn merge coefficients without labels (AdaMerging, see "
                   "its flags)", "src.modes.adamerging_mode:run", demo_models="demo_nested",
                   learns_coefficients=True, hands_over=True),
], default="nested")


def unread_flags(args: argparse.Namespace, method: str) -> list[str]:
    """Notes for the flags of other modes given with --method ``method``, which it does not
    read (e.g. --bayes-iter with map): they are accepted, as the original tool accepted them,
    but change nothing."""
    mode = get_mode(method)
    read = {"design"} if mode.supports_design else set()  # map's flag, bayesian's round 0
    notes = [f"{flag} is a flag of --method {other.name}; --method {method} does not read it"
             for other in MODES.values() if other is not mode
             for dest, flag in other.own_flags().items()
             if getattr(args, dest, None) is not None and dest not in read]
    if getattr(args, "point", None) is not None and not mode.reads_point:
        notes.append(f"--point sets the merges of --method "
                     f"{either(MODES.names(lambda m: m.reads_point), 'and')}; --method "
                     f"{method} does not read it")
    return notes


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise MAPError(f"unknown --method {name!r}; choose one of {', '.join(MODES)}") from None


def either(names: list[str], word: str = "or") -> str:
    """'map or bayesian', 'a, b or c' (the modes a flag goes with, for messages)."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"
