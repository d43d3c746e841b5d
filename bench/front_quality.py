"""How close does each method get to the Pareto front a dense grid of merges gives? (demo zoo)

    .venv/bin/python bench/front_quality.py [--sets pairs|triples|all|A,B;C,D,E]
        [--max-sets N] [--methods map refine ehvi bayesian bayesian-ehvi dare ties adamerging
                                  random botorch lhs]
        [--adamerging-steps 500]
        [--refine 2x5 ...] [--botorch-sets N] [--random-seeds 0 1 2]
        [--reevaluate 10] [--pair-grid 21] [--triple-grid 11] [--margin 0.01]
        [--cache DIR] [--csv PATH] [--no-curve]

Two disjoint splits per task: the evaluation split (the <Task>Val set the methods search
on) and a held-out split of the same size (common.heldout_dataset: the base dataset's test
split, cut to the evaluation split's size by common.equal_size_columns). Every method
selects on the evaluation split only.

Truth: every point of a grid over [0, 1]^T merged and evaluated on both splits (cached per
task set in --cache, so reruns skip it). The truth front is the grid models non-dominated
on the evaluation split; each preference's grid pick is chosen there too.

Budget: every method gets the same number of real evaluations and every evaluation is
counted (the bench checks the count against the method's record): budget = bayesian's
default schedule ((T+1)(T+2)/2 + 2 initial + 3 x 5) plus --reevaluate.
  map       map_mode.design of that many points, then src.core.front.solve_front as the CLI
            runs it (quadratic surrogates, NSGA-III, --reevaluate - (P - 1) front points
            spread along the front, the first preference's pick among them), then each of
            the other P - 1 preferences' picks evaluated when it is not among them;
  map+refine RxK  the same total: a design of R*K fewer points, then --refine-rounds R
            --refine-points K (src.core.refine), then the same front step;
  map dare / map ties / map adamerging  map with --merge-method dare / ties / adamerging
            (an engine over the set's tasks, as the CLI builds it), scored against the
            task-arithmetic grid as the original's figure does. adamerging learns its
            layer-wise profile first (--adamerging-steps, default 500, on the evaluation
            split's unlabeled images); those forward passes are not counted in the budget;
  map+ehvi RxK  map+refine whose rounds choose their points by expected hypervolume
            improvement under a bootstrap ensemble of the quadratic surrogates
            (src.core.acquisition) instead of spreading them along the front, after the
            default design and after --design lhs (map lhs+ehvi);
  map lhs   map with --design lhs (one-hot + centre + a Latin hypercube), also with refine;
  bayesian  src.core.bayesian.run_rounds with its default schedule, then the same front step;
            its rounds where the surrogates err most (--bayes-acquisition error) after the
            grid first round (--design grid);
  bayesian ehvi  the same, its rounds by EHVI (--bayes-acquisition ehvi,
            bayesian.ehvi_proposer);
  bayesian lhs+ehvi  (--methods bayesian-lhs) the same EHVI rounds after an LHS first round
            (--design lhs: sampling.lhs_design): bayesian's defaults for 2 to 4 tasks;
  random    the budget as uniform random merges (each --random-seeds seed);
  botorch   qLogNEHVI, GP per task (bench/mobo.py; needs botorch).
A method's front is the non-dominated set (on the evaluation split) of every model it
evaluated; its picks are its models chosen per preference (MAP/bayesian on the predicted
front, random/botorch among their evaluated models), all of them evaluated and counted.

Scores (one reference point per task set for every HV figure: per task, the truth front's
nadir over both splits minus --margin):
  held-out  the method's front models and picks measured on the held-out split (the same
            measurement for every method, not counted), against the truth front and the
            grid's picks measured on the held-out split: HV ratio (above 1 when the
            method's models beat the grid's choice on data neither chose on), IGD+, and
            preference regret (the grid pick's held-out preference-weighted accuracy minus
            the method pick's; negative when the method's pick is better);
  in-sample the method's own evaluation-split values against the grid's (every front here
            is biased upwards by choosing on the same noisy values; for comparison only).
noise gap: HV (held-out) of the grid front chosen on the evaluation split / that of the
grid front chosen on the held-out split itself (Truth.noise_gap): what choosing on a noisy
split of this size costs. It bounds nothing; the ratios are not divided by it.
MAP's held-out HV ratio as its design grows from (T+1)(T+2)/2 to 3(T+1)(T+2)/2 points
(--no-curve skips it). Per-set rows go to --csv; the summary table is printed. Asserts
nothing.

MAP and bayesian run on the CLI's own code path (map_mode.design, bayesian.run_rounds,
src.core.refine, src.core.front.solve_front; only the figures are skipped).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common import (add_common_flags, csv_value, csv_with,  # puts the repo on sys.path
                    demo_zoo, equal_size_columns, heldout_dataset, mean_interval,
                    set_threads)
from args import default_bayes_schedule
from src.core import bayesian, pareto, sampling
from src.core.indicators import (hypervolume, igd_plus, preference_regret,
                            preference_score, reference_point)
from src.core.pareto import non_dominated

TRIPLES = [("LetterVal", "DigitVal", "ShapeVal"), ("LetterVal", "ColorVal", "PositionVal"),
           ("DigitVal", "TextureVal", "ArrowVal"), ("ShapeVal", "ColorVal", "SymbolVal"),
           ("PositionVal", "ArrowVal", "SymbolVal"), ("LetterVal", "TextureVal", "SymbolVal")]
# Six more, drawn after the tables above were measured, to tell apart what six triples
# could not: numpy default_rng(7)'s permutation of the 50 other triples, taking each in turn
# unless a task would appear more than 3 times (`--sets triples-drawn`; `triples-12`: both).
TRIPLES_DRAWN = [("LetterVal", "ColorVal", "TextureVal"), ("ColorVal", "PositionVal", "SymbolVal"),
                 ("DigitVal", "ColorVal", "PositionVal"), ("DigitVal", "ShapeVal", "PositionVal"),
                 ("ShapeVal", "TextureVal", "SymbolVal"), ("DigitVal", "TextureVal", "SymbolVal")]
PREFERENCES = {2: [(1, 1), (3, 1), (1, 3)], 3: [(1, 1, 1), (3, 1, 1), (1, 3, 1), (1, 1, 3)]}
N_GEN = 100
SENSE = "max"
MARGIN = 0.01  # the reference point: the truth front's nadir minus this, per task


# ------------------------------------------------------------------ evaluation
class Evaluator:
    """One engine over every task of the zoo and each task's held-out split
    (common.heldout_dataset, same head); a task set's merge sets the other tasks'
    coefficients to 0 (theta_pre + sum over the set only). Counts every evaluation a method
    asks for (on the evaluation split); held-out scoring is measurement, the same for every
    method, and not counted."""

    def __init__(self, zoo, tasks: Sequence[str]):
        from task_vectors.engine import MergeEngine

        root = zoo.path
        heads = {t: str(root / f"head_{t}.pt") for t in tasks}
        heads |= {heldout_dataset(t): heads[t] for t in tasks}  # same classes, same head
        self.engine = MergeEngine.from_checkpoints(
            model_name=zoo.model_name, pretrained=str(root / "zeroshot.pt"),
            finetuned={t: str(root / t / "finetuned.pt") for t in tasks}, heads=heads,
            datasets=list(heads), data_location=str(root))
        self.tasks = list(tasks)
        self.count = 0

    def full(self, task_set: Sequence[str], c: np.ndarray) -> np.ndarray:
        full = np.zeros(len(self.tasks))
        full[[self.tasks.index(t) for t in task_set]] = c
        return full

    def accuracy(self, task_set: Sequence[str], engine=None
                 ) -> Callable[[np.ndarray], np.ndarray]:
        """evaluate(C [n, T]) -> accuracies [n, T] on the evaluation split, through
        MergeEngine.evaluate_at (of ``engine``, one over the task set's tasks only, when
        given); every row counts."""
        def evaluate(C: np.ndarray) -> np.ndarray:
            rows = []
            for c in np.atleast_2d(C):
                if engine is None:
                    res = self.engine.evaluate_at(self.full(task_set, c), list(task_set))
                else:
                    res = engine.evaluate_at(np.asarray(c, dtype=float), list(task_set))
                rows.append([res[d]["accuracy"] for d in task_set])
                self.count += 1
            return np.array(rows, dtype=float).reshape(-1, len(task_set))
        return evaluate

    def per_image(self, task_set: Sequence[str], C: np.ndarray,
                  datasets: Sequence[str] | None = None, engine=None) -> list[np.ndarray]:
        """Per-image correctness (n, N_k) of each merge on each dataset (default: the task
        set's evaluation sets; the engine only reports the mean, so its encoder and heads are
        run here directly). Not counted."""
        import torch

        eng = self.engine if engine is None else engine
        datasets = list(task_set) if datasets is None else list(datasets)
        out = [[] for _ in datasets]
        with torch.no_grad():
            for c in np.atleast_2d(C):
                eng.set_coefficients(self.full(task_set, c) if engine is None else c)
                for k, d in enumerate(datasets):
                    hits = [(eng.heads[d](eng.encoder(x)).argmax(dim=1) == y).cpu()
                            for x, y in eng.eval_sets[d].batches(eng.batch_size)]
                    out[k].append(torch.cat(hits).numpy())
        return [np.array(rows, dtype=bool).reshape(len(np.atleast_2d(C)), -1) for rows in out]


class HeldOut:
    """Accuracy [n, T] of merges on the held-out split, each task's held-out images cut to
    its evaluation split's size (common.equal_size_columns), so both carry the same noise."""

    def __init__(self, ev: Evaluator, task_set: Sequence[str]):
        self.ev, self.task_set = ev, list(task_set)
        self.names = [heldout_dataset(t) for t in task_set]
        sizes = {d: len(data.labels) for d, data in ev.engine.eval_sets.items()}
        self.columns = [equal_size_columns(sizes[h], sizes[t], h)
                        for t, h in zip(task_set, self.names)]

    def from_correct(self, correct: Sequence[np.ndarray]) -> np.ndarray:
        return np.column_stack([c[:, cols].mean(axis=1)
                                for c, cols in zip(correct, self.columns)])

    def __call__(self, C: np.ndarray, engine=None) -> np.ndarray:
        C = np.atleast_2d(C)
        if len(C) == 0:
            return np.zeros((0, len(self.task_set)))
        return self.from_correct(self.ev.per_image(self.task_set, C, self.names, engine))


def merged_engine(zoo, task_set: Sequence[str], method: str, seed: int,
                  adamerging_steps: int = 500):
    """An engine over the task set's tasks only (and their held-out splits), with
    --merge-method's tau transform (TIES elects signs among the merged tasks, so the other
    zoo tasks must not take part), built as the CLI builds it
    (task_vectors.merging.tau_transform, --seed as DARE's mask). adamerging: the profile
    is learned as a run learns it (AdaMergingProfile.learn on the plain task vectors, the
    task set's evaluation splits' unlabeled images, AdaMerging's default settings but
    ``adamerging_steps``), then applied to tau; (engine, learned method)."""
    import tempfile

    from task_vectors.adamerging_settings import AdaMergingSettings
    from task_vectors.engine import MergeEngine
    from task_vectors.merge_methods import AdaMergingProfile
    from task_vectors.merging import tau_transform

    root = zoo.path
    heads = {t: str(root / f"head_{t}.pt") for t in task_set}
    heads |= {heldout_dataset(t): heads[t] for t in task_set}
    learned = method == "adamerging"
    engine = MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=str(root / "zeroshot.pt"),
        finetuned={t: str(root / t / "finetuned.pt") for t in task_set},
        heads=heads, datasets=list(heads), data_location=str(root),
        tau_transform=None if learned else tau_transform(method, seed=seed))
    if not learned:
        return engine, None
    profile = AdaMergingProfile(AdaMergingSettings(steps=adamerging_steps, seed=seed))
    with tempfile.TemporaryDirectory(prefix="front_quality_profile") as folder:
        profile = profile.learn(engine, list(task_set), folder)
    engine.transform_tau(profile.tau_transform())
    return engine, profile


def grid_truth(ev: Evaluator, task_set: Sequence[str], per_axis: int, cache: Path
               ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], float]:
    """(C_grid, per-image correctness per task on the evaluation split, the same on the
    held-out split, seconds), from the cache when present."""
    key = cache / f"grid-v3_{'_'.join(task_set)}_{per_axis}.npz"
    T = len(task_set)
    if key.exists():
        data = np.load(key)
        return (data["C"], [data[f"correct{k}"] for k in range(T)],
                [data[f"held{k}"] for k in range(T)], 0.0)
    start = time.perf_counter()
    C = sampling.grid_points(T, per_axis)
    correct = ev.per_image(task_set, C)
    held = ev.per_image(task_set, C, [heldout_dataset(t) for t in task_set])
    seconds = time.perf_counter() - start
    cache.mkdir(parents=True, exist_ok=True)
    tmp = key.with_name(key.stem + ".tmp.npz")
    np.savez_compressed(tmp, C=C, **{f"correct{k}": c for k, c in enumerate(correct)},
                        **{f"held{k}": h for k, h in enumerate(held)})
    tmp.replace(key)
    return C, correct, held, seconds


class Truth:
    """The grid of one task set, chosen on the evaluation split and scored on both.

    front: the grid models non-dominated on the evaluation split (the truth front);
    picks: the grid model each preference picks there. ref: THE reference point of every
    HV figure of this set: per task, the lowest accuracy of a truth-front model on either
    split (the truth front's nadir), ``margin`` lower."""

    def __init__(self, C: np.ndarray, val: np.ndarray, held: np.ndarray, preferences,
                 margin: float):
        self.C, self.val, self.held = C, val, held
        self.front = np.flatnonzero(non_dominated(val, SENSE))
        self.ref = reference_point(np.vstack([val[self.front], held[self.front]]), SENSE,
                                   margin)
        T = val.shape[1]
        self.picks = [pareto.pick(val, w, [SENSE] * T, PICK) for w in preferences]
        self.hv_val = hypervolume(val[self.front], self.ref, SENSE)
        self.hv_held = hypervolume(held[self.front], self.ref, SENSE)

    def noise_gap(self) -> float:
        """HV (held-out) of the grid front chosen on the evaluation split / HV (held-out)
        of the grid front chosen on the held-out split itself: what choosing on a noisy
        split of this size costs, read against a front that is biased upwards by the same
        noise. A figure of the data's noise, not a bound on any method."""
        own = hypervolume(self.held[non_dominated(self.held, SENSE)], self.ref, SENSE)
        return self.hv_held / own


# ------------------------------------------------------------------ methods
# MAP and bayesian run on the CLI's own code path: map_mode.design, bayesian.run_rounds,
# src.core.refine (as --refine-rounds) and src.core.front.solve_front (fit -> search -> pick ->
# re-evaluate), with the CLI's defaults (NSGA-III over the sampled box, N_GEN generations).
# Only solve_front's figures are skipped (drawing is not what is measured).
PICK = "weighted-sum"  # preference regret is a weighted-sum regret: pick by the same rule
EVALUATED_PICK = ", evaluated pick"  # a run's second row: the same run, --pick-from evaluated


def map_default_label(T: int) -> str:
    """The label of the rows that run map as its default flags do at T tasks (args.py's
    default_design / default_refine_rounds / default_refine_acquisition, --pick-from
    evaluated), at this bench's budget (refinement points taken from the design)."""
    from args import default_design, default_refine_acquisition, default_refine_rounds

    lhs = " lhs" if default_design(T) == "lhs" else ""
    rounds = default_refine_rounds(T)
    if rounds:
        kind = "ehvi" if default_refine_acquisition(T) == "ehvi" else "refine"
        return f"map{lhs}+{kind} {rounds}x5{EVALUATED_PICK}"
    return f"map{lhs}{EVALUATED_PICK}"


def bayes_default_label(T: int) -> str:
    """The label of the rows that run bayesian as its default flags do at T tasks
    (args.default_bayes_design, args.default_bayes_acquisition, --pick-from evaluated)."""
    from args import default_bayes_acquisition, default_bayes_design

    acquisition = default_bayes_acquisition(T)
    lhs = default_bayes_design(acquisition) == "lhs"
    if acquisition == "ehvi":
        return f"bayesian {'lhs+' if lhs else ''}ehvi{EVALUATED_PICK}"
    return f"bayesian{' lhs+error' if lhs else ''}{EVALUATED_PICK}"  # lhs+error: unmeasured


def bayes_labels(T: int) -> tuple[str, ...]:
    """The labels of bayesian's rows to compare at T tasks, the first one measured first:
    its defaults' (bayes_default_label), then, for rows written before, its EHVI rounds
    after the grid round (where EHVI is the default) and its error rounds (the front's pick,
    as CSVs written before --pick-from have it)."""
    from args import default_bayes_acquisition

    before = (f"bayesian ehvi{EVALUATED_PICK}",) if default_bayes_acquisition(T) == "ehvi" \
        else ()
    return (bayes_default_label(T), *before, "bayesian")


def budget_for(T: int, reevaluate: int) -> tuple[int, int]:
    """(points the surrogate methods fit on, total real evaluations of every method)."""
    n_initial, n_update, n_iter = default_bayes_schedule(T)
    n_fit = n_initial + n_update * n_iter
    return n_fit, n_fit + reevaluate


def front_step(evaluate, C: np.ndarray, Y: np.ndarray, task_set, preferences, n_reeval: int,
               seed: int, pick: str = PICK, pretrained: np.ndarray | None = None,
               box: tuple[float, float] | None = None, pick_floor: str = "pretrained"
               ) -> dict:
    """src.core.front.solve_front as the CLI runs it, then each preference's pick on its front.

    Equal budget, every evaluation counted: solve_front re-evaluates n_reeval - (P - 1)
    front points (the first preference's pick among them); the other P - 1 preferences'
    picks are evaluated too when they are not among those (counted, part of the method's
    evaluations), so the method spends at most n_reeval on its front and hands over only
    models it has evaluated, as random search and BoTorch do. ``pick``: the pick rule
    (weighted-sum here, the rule preference regret scores; many_tasks.py passes the CLI's).

    "evaluated": the same run under --pick-from evaluated: each preference's best real
    model by the same rule among the design, the re-evaluated front (picks included) and,
    when ``pretrained`` (its measured metrics) is given, the pretrained model; no further
    evaluation. ``box``: map's local design: the surrogates fit the points inside it and
    NSGA-III searches it (the CLI's --design local). ``pick_floor``: the CLI's
    --pick-floor, for each preference's front and evaluated pick."""
    import tempfile

    from src.core.front import (FrontTask, SearchSettings, pick_evaluated, pick_floor as
                                floor_of, pick_front, solve_front)
    from src.core.metrics import get_metric

    T = C.shape[1]
    n_spread = n_reeval - (len(preferences) - 1)
    if n_spread < 1:
        raise SystemExit(f"--reevaluate {n_reeval}: needs at least {len(preferences)} "
                         "(one per preference)")
    with tempfile.TemporaryDirectory() as folder:
        task = FrontTask(C=C, Y=Y, labels=list(task_set), metric=get_metric("accuracy"),
                         weights=preferences[0], folder=Path(folder), names="bench",
                         reevaluate=n_spread, evaluate_real=evaluate, pretrained=pretrained,
                         fit_box=box)
        low, high = box or (0.0, 1.0)
        res = solve_front(task, SearchSettings(low=low, high=high, n_gen=N_GEN, seed=seed,
                                               pick=pick, pick_floor=pick_floor))
    rows = list(res.reevaluated)
    real = list(res.F_real) if res.F_real is not None else []
    floors = [floor_of(pick_floor, C, Y, w, SENSE, (0.0, 1.0)) for w in preferences]
    picks = [pick_front(res.F_front, w, [SENSE] * T, pick, np.array(res.anchors["worst"]),
                        np.array(res.anchors["best"]), f) for w, f in zip(preferences, floors)]
    missing = sorted(set(picks) - set(rows))
    if missing:
        real += list(evaluate(res.C_front[missing]))
        rows += missing
    real = np.array(real).reshape(-1, Y.shape[1])
    real_of = dict(zip(rows, real))
    worst, best = np.array(res.anchors["worst"]), np.array(res.anchors["best"])
    evaluated = [pick_evaluated([(res.C_front[rows], real, "re-evaluated front"),
                                 (C, Y, "design")], pretrained, w, [SENSE] * T, pick, worst,
                                best, res.surrogates, floor=f)
                 for w, f in zip(preferences, floors)]
    return {"C_all": np.vstack([C, res.C_front[rows]]), "Y_all": np.vstack([Y, real]),
            "predicted": res.F_front[rows], "real": real,
            "chosen_real": [real_of[p] for p in picks], "chosen_C": res.C_front[picks],
            "evaluated": {"chosen_real": [e.real for e in evaluated],
                          "chosen_C": np.array([e.coefficients for e in evaluated]),
                          "sources": [e.source for e in evaluated]},
            "anchors": (worst, best), "refine": None}


def run_refine(evaluate, C, Y, rounds: int, points: int, seed: int,
               acquisition: str = "spread", preference=None):
    """--refine-rounds / --refine-points with the CLI's search settings; acquisition
    "ehvi" / "parego" chooses each round's points by src.core.acquisition.ehvi_selector /
    parego_selector (its first point by ``preference``)."""
    from src.core import acquisition as acq
    from src.core import refine

    T = C.shape[1]
    search = refine.surrogate_search("sigmoid", [SENSE] * T, low=0.0, high=1.0, n_gen=N_GEN,
                                     seed=seed)
    select = acq.refine_selector(acquisition, "sigmoid", [SENSE] * T, seed=seed,
                                 min_distance=refine.MIN_DISTANCE, preference=preference)
    return refine.refine_front(evaluate, search, C, Y, rounds=rounds, points=points,
                               min_distance=refine.MIN_DISTANCE, select=select)


def run_map(evaluate, task_set, n_fit: int, preferences, n_reeval: int, seed: int,
            rounds: int = 0, points: int = 5, design_kind: str = "tool",
            acquisition: str = "spread", pick: str = PICK,
            pretrained: np.ndarray | None = None, pick_floor: str = "pretrained") -> dict:
    """map_mode.design of n_fit - rounds * points points, refinement, the front step."""
    from types import SimpleNamespace

    from src.modes.map_mode import design

    T = len(task_set)
    n_design = n_fit - rounds * points
    if design_kind == "local":  # map's --design local: two stages, fit and search in its box
        from src.core import local_design

        if rounds:
            raise SystemExit("the bench runs --design local without refinement rounds")
        local = local_design.run_design(evaluate, T, n_design, 0.0, 1.0, preferences[0],
                                        SENSE, seed)
        out = front_step(evaluate, local.C, local.Y, task_set, preferences, n_reeval, seed,
                         pick, pretrained, box=local.box, pick_floor=pick_floor)
        out["refine"], out["design"] = None, local.summary()
        return out
    if n_design < sampling.min_points(T):
        raise SystemExit(f"--refine {rounds}x{points}: leaves {n_design} design points of "
                         f"{n_fit}, fewer than a quadratic's {sampling.min_points(T)}")
    C = design(SimpleNamespace(T=T, points=n_design, low=0.0, high=1.0, seed=seed,
                               design="lhs" if design_kind == "lhs" else "grid"))
    Y = evaluate(C)
    info = None
    if rounds:
        r = run_refine(evaluate, C, Y, rounds, points, seed, acquisition, preferences[0])
        C, Y, info = r.C, r.Y, r.summary()
    out = front_step(evaluate, C, Y, task_set, preferences, n_reeval, seed, pick, pretrained,
                     pick_floor=pick_floor)
    out["refine"] = info
    return out


def run_bayes(evaluate, task_set, preferences, n_reeval: int, seed: int, pick: str = PICK,
              pretrained: np.ndarray | None = None, acquisition: str = "error",
              initial_design: str = "grid") -> dict:
    """bayesian.run_rounds with its default schedule (rounds chosen by ``acquisition``, as
    --bayes-acquisition; round 0 by ``initial_design``), then the front step."""
    from src.core.refine import MIN_DISTANCE

    T = len(task_set)
    n_initial, n_update, n_iter = default_bayes_schedule(T)
    propose = (bayesian.ehvi_proposer("sigmoid", [SENSE] * T, low=0.0, high=1.0, n_gen=N_GEN,
                                      seed=seed, min_distance=MIN_DISTANCE)
               if acquisition == "ehvi" else None)
    res = bayesian.run_rounds(evaluate, T, n_initial=n_initial, n_update=n_update,
                              n_iter=n_iter, link="sigmoid", seed=seed, propose=propose,
                              acquisition=acquisition, initial_design=initial_design)
    return front_step(evaluate, res.C, res.Y, task_set, preferences, n_reeval, seed, pick,
                      pretrained)


def direct(C: np.ndarray, Y: np.ndarray, preferences) -> dict:
    """A direct-search method: every evaluation is real; picks among its evaluated models."""
    picks = [pareto.pick_by_preference(Y, w, [SENSE] * Y.shape[1]) for w in preferences]
    return {"C_all": C, "Y_all": Y, "predicted": None, "real": None,
            "chosen_real": [Y[i] for i in picks], "chosen_C": C[picks]}


def score(out: dict, truth: Truth, held: np.ndarray, preferences) -> dict:
    """Every figure of one method's run on one task set, against one reference point.

    held-out (the figures that count): the models the method hands over - its front (the
    non-dominated part of everything it evaluated, chosen on the evaluation split) and
    each preference's pick - measured on the held-out split; the truth is the grid front
    chosen on the evaluation split, measured on the held-out split too, so selection on
    noise costs the method and the grid alike. ``held``: held-out accuracies of
    out["C_all"]'s front rows then of out["chosen_C"].
    val (in-sample): the method's own evaluations against the grid's, both chosen and
    scored on the evaluation split (biased upwards for every front; kept for comparison
    with earlier tables)."""
    front = non_dominated(out["Y_all"], SENSE)
    n_front = int(front.sum())
    H_front, H_chosen = held[:n_front], held[n_front:]
    grid_held = truth.held[truth.front]
    regret_held = [float(preference_score(truth.held[[g]], w, SENSE)[0]
                         - preference_score(h[None], w, SENSE)[0])
                   for g, h, w in zip(truth.picks, H_chosen, preferences)]
    regret_val = [preference_regret(truth.val, chosen, w, SENSE)
                  for chosen, w in zip(out["chosen_real"], preferences)]
    row = {"hv_ratio_held": hypervolume(H_front, truth.ref, SENSE) / truth.hv_held,
           "igd_plus_held": igd_plus(H_front, grid_held, SENSE),
           "regret_held": float(np.mean(regret_held)),
           "hv_ratio_val": hypervolume(out["Y_all"][front], truth.ref, SENSE) / truth.hv_val,
           "igd_plus_val": igd_plus(out["Y_all"][front], truth.val[truth.front], SENSE),
           "regret_val": float(np.mean(regret_val)),
           "evaluations": int(len(out["Y_all"]))}
    if out["predicted"] is not None and len(out["real"]):
        row["pred_real_mae"] = float(np.abs(out["predicted"] - out["real"]).mean())
    return row


def heldout_rows(out: dict, scorer: HeldOut, engine=None) -> np.ndarray:
    """Held-out accuracies of the method's front models, then of its picks (see score)."""
    front_C = out["C_all"][non_dominated(out["Y_all"], SENSE)]
    return scorer(np.vstack([front_C, out["chosen_C"]]), engine)


# ------------------------------------------------------------------ main
def task_sets(spec: str, tasks: Sequence[str]) -> list[tuple[str, ...]]:
    pairs = list(itertools.combinations(tasks, 2))
    if spec == "pairs":
        return pairs
    if spec == "triples":
        return TRIPLES
    if spec == "triples-drawn":
        return TRIPLES_DRAWN
    if spec == "triples-12":
        return TRIPLES + TRIPLES_DRAWN
    if spec == "all":
        return pairs + TRIPLES
    sets = [tuple(s.split(",")) for s in spec.split(";")]
    for task_set in sets:
        if len(task_set) not in PREFERENCES or set(task_set) - set(tasks) \
                or len(set(task_set)) < len(task_set):
            raise SystemExit(f"--sets: {','.join(task_set)!r} is not a pair or triple of "
                             f"{', '.join(tasks)}; or give pairs, triples, triples-drawn, "
                             "triples-12 or all")
    return sets


# --methods' choices (a mistyped name would run the grid truth and then nothing)
METHODS = ("map", "refine", "ehvi", "lhs", "bayesian", "bayesian-ehvi", "bayesian-lhs", "dare",
           "ties", "adamerging", "random", "botorch")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="all",
                   help="pairs, triples, triples-drawn (six more), triples-12 (both), all "
                        "(pairs and triples), or sets as A,B;C,D,E")
    p.add_argument("--max-sets", type=int, default=None, help="only the first N task sets")
    p.add_argument("--methods", nargs="+", default=["map", "refine", "bayesian", "dare", "ties",
                                                     "random", "botorch"], choices=METHODS,
                   help="refine: map + --refine-rounds at the same total budget (each "
                        "--refine spec); dare / ties / adamerging: map with --merge-method "
                        "dare / ties / adamerging, scored against the task-arithmetic grid "
                        "as the original's figure")
    p.add_argument("--adamerging-steps", type=int, default=500,
                   help="map adamerging: steps of the profile's learning (AdaMerging: 500)")
    p.add_argument("--refine", nargs="+", default=["2x5"], metavar="RxK",
                   help="refinement rounds x new points per round (taken from the design)")
    p.add_argument("--botorch-sets", type=int, default=None,
                   help="run botorch on the first N pairs and first N triples only "
                        "(default: every set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reevaluate", type=int, default=10)
    p.add_argument("--pair-grid", type=int, default=21)
    p.add_argument("--triple-grid", type=int, default=11)
    p.add_argument("--margin", type=float, default=MARGIN,
                   help="the reference point lies this far below the truth front's nadir")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "map-merging" / "bench"))
    p.add_argument("--csv", default=None)
    p.add_argument("--no-curve", action="store_true")
    p.add_argument("--from-csv", nargs="+", metavar="CSV", default=None,
                   type=csv_with("tasks", "T", "method", "seed", "hv_ratio_held",
                                 "regret_held"),
                   help="print the summary and the goal table of earlier runs' --csv files "
                        "(e.g. a pairs run and a triples run) and exit; measures nothing")
    p.add_argument("--markdown", action="store_true", help="tables as Markdown")
    add_common_flags(p)
    a = p.parse_args()
    if a.from_csv:
        rows, curve = read_csvs(a.from_csv)
        summarise(rows, curve, a.markdown)
        print_goals(rows, a.markdown)
        return
    threads = set_threads(a.threads)
    zoo = demo_zoo()
    tasks = zoo.tasks
    sets = task_sets(a.sets, tasks)[: a.max_sets]
    if "botorch" in a.methods:
        import importlib.util

        if importlib.util.find_spec("botorch") is None:
            print("botorch is not installed (pip install '.[bench]'): its rows are skipped")
            a.methods = [m for m in a.methods if m != "botorch"]
    ev = Evaluator(zoo, tasks)
    cache = Path(a.cache)
    print(f"demo zoo {zoo.path}; torch threads {threads}; {len(sets)} task sets; "
          f"re-evaluate {a.reevaluate}; reference point: truth front's nadir - {a.margin}")

    rows: list[dict] = []
    curve: list[dict] = []
    for task_set in sets:
        T = len(task_set)
        prefs = PREFERENCES[T]
        scorer = HeldOut(ev, task_set)
        C_grid, correct, held_correct, grid_s = grid_truth(
            ev, task_set, a.pair_grid if T == 2 else a.triple_grid, cache)
        truth = Truth(C_grid, np.column_stack([c.mean(axis=1) for c in correct]),
                      scorer.from_correct(held_correct), prefs, a.margin)
        n_fit, budget = budget_for(T, a.reevaluate)
        evaluate = ev.accuracy(task_set)
        # the grid's per-image path must agree with the engine's own accuracy
        step = max(1, len(C_grid) // 3)
        check = np.abs(evaluate(C_grid[::step]) - truth.val[::step]).max()
        if check > 1e-9:
            raise SystemExit(f"per-image accuracies differ from MergeEngine.evaluate by {check}")
        base = {"tasks": "+".join(task_set), "T": T, "grid_points": len(C_grid),
                "grid_seconds": grid_s, "truth_front": len(truth.front),
                "eval_images": [c.shape[1] for c in correct],
                "heldout_images": [len(c) for c in scorer.columns],
                "reference_point": truth.ref.tolist(), "noise_gap": truth.noise_gap(),
                "budget": budget}

        runs: list[tuple[str, int, Callable[[], dict]]] = []
        if "map" in a.methods:
            runs.append(("map", a.seed, lambda s=a.seed: run_map(
                evaluate, task_set, n_fit, prefs, a.reevaluate, s)))
        if "refine" in a.methods:
            for spec in a.refine:
                R, K = map(int, spec.split("x"))
                runs.append((f"map+refine {spec}", a.seed, lambda s=a.seed, R=R, K=K: run_map(
                    evaluate, task_set, n_fit, prefs, a.reevaluate, s, R, K)))
        if "ehvi" in a.methods:  # refinement rounds chosen by EHVI under a bootstrap ensemble
            for spec in a.refine:
                R, K = map(int, spec.split("x"))
                runs.append((f"map+ehvi {spec}", a.seed, lambda s=a.seed, R=R, K=K: run_map(
                    evaluate, task_set, n_fit, prefs, a.reevaluate, s, R, K,
                    acquisition="ehvi")))
                runs.append((f"map lhs+ehvi {spec}", a.seed, lambda s=a.seed, R=R, K=K:
                             run_map(evaluate, task_set, n_fit, prefs, a.reevaluate, s,
                                     R, K, design_kind="lhs", acquisition="ehvi")))
        if "lhs" in a.methods:  # measurement only: is the design's edge-heavy grid a loss?
            runs.append(("map lhs", a.seed, lambda s=a.seed: run_map(
                evaluate, task_set, n_fit, prefs, a.reevaluate, s, design_kind="lhs")))
            for spec in a.refine if "refine" in a.methods else []:
                R, K = map(int, spec.split("x"))
                runs.append((f"map lhs+refine {spec}", a.seed, lambda s=a.seed, R=R, K=K:
                             run_map(evaluate, task_set, n_fit, prefs, a.reevaluate, s,
                                     R, K, design_kind="lhs")))

        if "bayesian" in a.methods:
            runs.append(("bayesian", a.seed, lambda s=a.seed: run_bayes(
                evaluate, task_set, prefs, a.reevaluate, s)))
        if "bayesian-ehvi" in a.methods:  # its rounds by EHVI (--bayes-acquisition ehvi)
            runs.append(("bayesian ehvi", a.seed, lambda s=a.seed: run_bayes(
                evaluate, task_set, prefs, a.reevaluate, s, acquisition="ehvi")))
        if "bayesian-lhs" in a.methods:  # EHVI rounds after an LHS round 0
            runs.append(("bayesian lhs+ehvi", a.seed, lambda s=a.seed: run_bayes(
                evaluate, task_set, prefs, a.reevaluate, s, acquisition="ehvi",
                initial_design="lhs")))
        for merge in ("dare", "ties", "adamerging"):
            if merge in a.methods:
                def run_merged(s=a.seed, merge=merge):
                    engine, profile = merged_engine(zoo, task_set, merge, s,
                                                    a.adamerging_steps)
                    out = run_map(ev.accuracy(task_set, engine=engine), task_set, n_fit, prefs,
                                  a.reevaluate, s)
                    out["engine"] = engine  # its models are scored on held-out by it
                    if profile is not None:
                        out["profile"] = profile
                    return out
                runs.append((f"map {merge}", a.seed, run_merged))
        if "random" in a.methods:
            from mobo import random_search
            for s in a.random_seeds:
                runs.append(("random", s, lambda s=s: direct(*random_search(
                    evaluate, T, budget, seed=s), prefs)))
        index_of_kind = sum(1 for t in sets[: sets.index(task_set)] if len(t) == T)
        if "botorch" in a.methods and (a.botorch_sets is None or index_of_kind < a.botorch_sets):
            from mobo import botorch_qnehvi
            runs.append(("botorch", a.seed, lambda s=a.seed: direct(*botorch_qnehvi(
                evaluate, T, budget, seed=s), prefs)))

        for method, seed, fn in runs:
            ev.count = 0
            start = time.perf_counter()
            out = fn()
            wall = time.perf_counter() - start
            counted = ev.count
            if counted != len(out["Y_all"]):
                raise SystemExit(f"{method}: {counted} evaluations counted, "
                                 f"{len(out['Y_all'])} in its record")
            row = base | {"method": method, "seed": seed, "seconds": wall,
                          "counted_evaluations": counted} | score(
                out, truth, heldout_rows(out, scorer, out.get("engine")), prefs)
            if out.get("profile") is not None:  # where the AdaMerging model sits: c = m
                learning = dict(out["profile"].learning)
                row |= {"profile_divisor": out["profile"].divisor(),
                        "profile_seconds": learning["seconds_this_process"],
                        "profile_entropy": [learning["entropy_first_step"],
                                            learning["entropy_last_step"]]}
            if out.get("refine"):
                row |= {"refine_points": sum(out["refine"]["points_per_round"]),
                        "refine_agreement": out["refine"]["agreement"][-1]}
            rows.append(row)
            print(f"{row['tasks']:<28} {method:<9} seed {seed}: held-out HV ratio "
                  f"{row['hv_ratio_held']:.3f}, IGD+ {row['igd_plus_held']:.4f}, regret "
                  f"{row['regret_held']:+.4f}; in-sample HV ratio {row['hv_ratio_val']:.3f}; "
                  f"{counted} evals, {wall:.1f} s (noise gap {truth.noise_gap():.3f})",
                  flush=True)
            if out.get("evaluated") is not None:  # the same run, --pick-from evaluated
                alt = out | out["evaluated"]
                alt_row = row | {"method": method + EVALUATED_PICK} | score(
                    alt, truth, heldout_rows(alt, scorer, out.get("engine")), prefs)
                rows.append(alt_row)
                print(f"{'':<28} {'':<9} evaluated pick: regret "
                      f"{alt_row['regret_held']:+.4f} (from "
                      f"{', '.join(out['evaluated']['sources'])})", flush=True)
            if "profile_divisor" in row:
                print(f"{'':<28} profile: AdaMerging model at c = "
                      f"{np.round(row['profile_divisor'], 3).tolist()}, learned in "
                      f"{row['profile_seconds']:.1f} s, entropy {row['profile_entropy'][0]:.3f}"
                      f" -> {row['profile_entropy'][1]:.3f}", flush=True)

        if a.csv:  # after every set, so a stopped run keeps what it measured
            write_csv(Path(a.csv), rows, quiet=True)

        if not a.no_curve and "map" in a.methods:
            m = sampling.min_points(T)
            for n in sorted({m, 3 * m // 2, 2 * m, 3 * m}):
                out = run_map(evaluate, task_set, n, prefs, a.reevaluate, a.seed)
                r = score(out, truth, heldout_rows(out, scorer), prefs)
                curve.append({"tasks": base["tasks"], "T": T, "n_fit": n,
                              "evaluations": len(out["Y_all"]),
                              "hv_ratio_held": r["hv_ratio_held"],
                              "hv_ratio_val": r["hv_ratio_val"]})

    summarise(rows, curve)
    print_goals(rows)
    if a.csv:
        write_csv(Path(a.csv), rows)
        if curve:
            write_csv(Path(a.csv).with_name(Path(a.csv).stem + "_curve.csv"), curve)


def write_csv(path: Path, rows: list[dict], quiet: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    if not quiet:
        print(f"wrote {path}")


def read_csvs(paths: Sequence[Path]) -> tuple[list[dict], list[dict]]:
    """Rows (and the design curves, when a <stem>_curve.csv lies beside) of --csv files."""
    rows: list[dict] = []
    curve: list[dict] = []
    for path in paths:
        with open(path, newline="") as f:
            # a key another method's row has is written empty: leave it out, as in the run
            rows += [{k: csv_value(v) for k, v in r.items() if v != ""}
                     for r in csv.DictReader(f)]
        curve_path = path.with_name(path.stem + "_curve.csv")
        if curve_path.exists():
            with open(curve_path, newline="") as f:
                curve += [{k: csv_value(v) for k, v in r.items()} for r in csv.DictReader(f)]
    return rows, curve


def print_goals(rows: list[dict], markdown: bool = False) -> None:
    """The "Beyond two tasks" issue's goals this bench measures, each with its figure.

    Held-out scores throughout. MAP = the CLI's default flags: the map_default_label(T) rows
    (the "map" rows where a CSV lacks them, as CSVs written before --pick-from do), seed by
    seed against
    random search's seed of the same number (MAP's first seed where it lacks that one).
    Against BoTorch only the task sets where BoTorch ran count, MAP at BoTorch's seed.
    bayesian = its default flags' rows (bayes_default_label(T); where a CSV lacks them, those
    of its defaults before: bayes_labels(T)), seed by seed against MAP's rows of the same
    seed, then every (set, seed) run pooled.
    Regret goal: MAP's mean regret <= BoTorch's + 0.5 |BoTorch's| (1.5x when BoTorch's is
    positive; regret is negative where a pick beats the grid's).
    """
    def of(method: str, T: int, seed=None, sets=None) -> dict[str, dict]:
        return {r["tasks"]: r for r in rows if r["method"] == method and r["T"] == T
                and (seed is None or r["seed"] == seed) and (sets is None or r["tasks"] in sets)}

    def seeds_of(method: str, T: int) -> list:
        return sorted({r["seed"] for r in rows if r["method"] == method and r["T"] == T})

    lines = []

    def paired(a: Sequence[float], b: Sequence[float], lower_is_better: bool = False) -> str:
        """a − b over the same sets: mean, its 95 % interval (Student t over the sets) and
        in how many sets a is ahead; whether a goal's miss or margin is beyond the noise."""
        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        ahead = int(np.sum(d < 0 if lower_is_better else d > 0))
        if len(d) < 2:
            return f"{d.mean():+.4f}; ahead in {ahead} of {len(d)}"
        mean, half = mean_interval(d)
        return (f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]; "
                f"ahead in {ahead} of {len(d)}")

    for T in sorted({r["T"] for r in rows}):
        name = {2: "pairs", 3: "triples"}.get(T, f"T={T}")
        method = map_default_label(T) if seeds_of(map_default_label(T), T) else "map"
        map_seeds = seeds_of(method, T)
        if not map_seeds:
            continue

        def mp(seed) -> dict[str, dict]:
            return of(method, T, seed if seed in map_seeds else map_seeds[0])
        for seed in seeds_of("random", T):
            m_hv = {k: r["hv_ratio_held"] for k, r in mp(seed).items()}
            rs = of("random", T, seed, set(m_hv))
            common = sorted(set(rs) & set(m_hv))
            if not common:
                continue
            mm = np.mean([m_hv[k] for k in common])
            rm = np.mean([rs[k]["hv_ratio_held"] for k in common])
            mw = min(m_hv[k] for k in common)
            rw = min(rs[k]["hv_ratio_held"] for k in common)
            used = seed if seed in map_seeds else map_seeds[0]
            lines.append((f"{method} (seed {used}) vs random (seed {seed}), {name}, "
                          f"{len(common)} sets",
                          f"mean {mm:.3f} vs {rm:.3f}; worst set {mw:.3f} vs {rw:.3f}",
                          "ahead on both", mm > rm and mw > rw,
                          paired([m_hv[k] for k in common],
                                 [rs[k]["hv_ratio_held"] for k in common])))
        bo_seeds = seeds_of("botorch", T)
        bo_pooled: dict[str, tuple[list, list]] = {"hv": ([], []), "regret": ([], [])}

        def botorch_lines(m_hv, b_hv, m_rg, b_rg, what: str) -> None:
            goal = 0.98 if T == 2 else 0.95
            ratio = np.mean(m_hv) / np.mean(b_hv)
            lines.append((f"{method} / botorch HV ratio, {what}", f"{ratio:.3f}",
                          f">= {goal}", ratio >= goal, paired(m_hv, b_hv)))
            mr, br = np.mean(m_rg), np.mean(b_rg)
            lines.append((f"{method} vs botorch regret, {what}", f"{mr:+.4f} vs {br:+.4f}",
                          "<= 1.5x botorch's", mr <= br + 0.5 * abs(br),
                          paired(m_rg, b_rg, lower_is_better=True)))
        for bo_seed in bo_seeds:
            bo, m = of("botorch", T, bo_seed), mp(bo_seed)
            common = sorted(set(bo) & set(m))
            if not common:
                continue
            got = [[m[k]["hv_ratio_held"] for k in common],
                   [bo[k]["hv_ratio_held"] for k in common],
                   [m[k]["regret_held"] for k in common], [bo[k]["regret_held"] for k in common]]
            for pool, a, b in ((bo_pooled["hv"], *got[:2]), (bo_pooled["regret"], *got[2:])):
                pool[0].extend(a)
                pool[1].extend(b)
            seed = f" (seed {bo_seed})" if len(bo_seeds) > 1 else ""
            botorch_lines(*got, f"{name}{seed}, {len(common)} sets")
        if len(bo_seeds) > 1 and bo_pooled["hv"][0]:
            botorch_lines(*bo_pooled["hv"], *bo_pooled["regret"],
                          f"{name}, pooled over seeds, {len(bo_pooled['hv'][0])} runs")
        bayes = next((b for b in bayes_labels(T) if seeds_of(b, T)), "bayesian")
        pooled: tuple[list, list] = ([], [])
        for by_seed in seeds_of(bayes, T):
            by, m = of(bayes, T, by_seed), mp(by_seed)
            common = sorted(set(by) & set(m))
            if not common:
                continue
            b_hv = [by[k]["hv_ratio_held"] for k in common]
            m_hv = [m[k]["hv_ratio_held"] for k in common]
            pooled[0].extend(b_hv)
            pooled[1].extend(m_hv)
            lines.append((f"{bayes} (seed {by_seed}) vs {method}, {name}, {len(common)} sets",
                          f"{np.mean(b_hv):.3f} vs {np.mean(m_hv):.3f}", ">= map",
                          np.mean(b_hv) >= np.mean(m_hv), paired(b_hv, m_hv)))
        if len(seeds_of(bayes, T)) > 1 and pooled[0]:
            # every (set, seed) run as one pair; runs of one set share it, so the interval
            # is narrower than independent sets would give
            bm, mm = np.mean(pooled[0]), np.mean(pooled[1])
            lines.append((f"{bayes} vs {method}, {name}, pooled over seeds, "
                          f"{len(pooled[0])} runs", f"{bm:.3f} vs {mm:.3f}", ">= map",
                          bm >= mm, paired(*pooled)))
    if not lines:
        return
    print("\ngoals (issue \"Beyond two tasks\"; held-out HV ratio and regret). paired "
          "difference: first minus second, per set, mean [95 % interval over the sets]; "
          "an interval holding 0 means the sets cannot tell the two apart\n")
    print_table(["figure", "measured", "goal", "met", "paired difference"],
                [[label, figure, goal, "yes" if met else "no", diff]
                 for label, figure, goal, met, diff in lines], markdown)


def print_table(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> None:
    """Aligned text, or a Markdown table to paste into the docs."""
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in body:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    for line in [header, *body]:
        print("  ".join(f"{x:<{w}}" if i == 0 else f"{x:>{w}}"
                        for i, (x, w) in enumerate(zip(line, widths))))


def summarise(rows: list[dict], curve: list[dict], markdown: bool = False) -> None:
    if not rows:
        return
    print("\nper method and T (means over task sets and seeds; worst = lowest held-out HV "
          "ratio). held-out: the method's front and picks measured on the held-out split, "
          "against the grid front chosen on the evaluation split and measured there too "
          "(above 1: better than the grid's choice). in-sample: the method's own evaluations "
          "against the grid's (both biased upwards by selection). Every evaluation counted. "
          "noise gap: see Truth.noise_gap\n")
    header = ["method", "T", "runs", "HV ratio", "worst", "IGD+", "regret", "in-sample HV",
              "in-sample regret", "pred err", "evals", "sec", "noise gap"]
    body = []
    for (method, T) in dict.fromkeys((r["method"], r["T"]) for r in rows):
        sel = [r for r in rows if r["method"] == method and r["T"] == T]
        mae = [r["pred_real_mae"] for r in sel if "pred_real_mae" in r]

        def mean(key: str) -> float:
            return float(np.mean([r[key] for r in sel]))
        body.append([method, f"{T}", f"{len(sel)}", f"{mean('hv_ratio_held'):.3f}",
                     f"{np.min([r['hv_ratio_held'] for r in sel]):.3f}",
                     f"{mean('igd_plus_held'):.4f}", f"{mean('regret_held'):+.4f}",
                     f"{mean('hv_ratio_val'):.3f}", f"{mean('regret_val'):+.4f}",
                     f"{np.mean(mae):.4f}" if mae else "-", f"{mean('evaluations'):.0f}",
                     f"{mean('seconds'):.1f}", f"{mean('noise_gap'):.3f}"])
    print_table(header, body, markdown)
    if curve:
        print("\nMAP's held-out HV ratio as its design grows (mean over task sets; + the front "
              "step's re-evaluations)\n")
        body = []
        for T in sorted({c["T"] for c in curve}):
            for n in sorted({c["n_fit"] for c in curve if c["T"] == T}):
                sel = [c for c in curve if c["T"] == T and c["n_fit"] == n]
                body.append([f"{T}", f"{n}", f"{np.mean([c['evaluations'] for c in sel]):.0f}",
                             f"{np.mean([c['hv_ratio_held'] for c in sel]):.3f}",
                             f"{np.min([c['hv_ratio_held'] for c in sel]):.3f}",
                             f"{np.mean([c['hv_ratio_val'] for c in sel]):.3f}"])
        print_table(["T", "design", "evals", "held-out HV ratio", "worst", "in-sample"], body,
                    markdown)


if __name__ == "__main__":
    sys.exit(main())
