"""--method bayesian: adaptive rounds that sample where the surrogates err most, or by
expected hypervolume improvement (--bayes-acquisition)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from src import plotting

from src.core import bayesian, refine
from src.run.config import RunConfig
from src.run.evaluation import evaluate_metric
from src.modes.common import (announce_resume, finish, json_log, open_run, refine_run,
                              refuse_other_settings, solve_run_front)
from map_common.errors import MAPError
from src.run.results import RunDirectory, ScalingResults, point_key, read_json, write_json

ROUNDS = "bayesian_rounds.json"
REFINE_ROUNDS = "refine_rounds.json"  # written by refine_run (--refine-rounds)
PLAN = "bayesian_plan.json"
# What decides which points the rounds draw, by the flag that sets it. The number of rounds
# may grow (stored rounds are the first rounds of a longer plan); the rest must not change.
PLAN_FLAGS = {"seed": "--seed", "design": "--design", "initial": "--bayes-initial-pts",
              "update": "--bayes-update-pts", "acquisition": "--bayes-acquisition",
              "bounds": "--bounds", "search_bounds": "--search-bounds", "n_gen": "--n-gen"}


def round_plan(config: RunConfig) -> dict[str, Any]:
    """bayesian_plan.json: the settings the rounds draw their points with (n_gen and the
    search box only steer EHVI rounds)."""
    n_initial, n_update, n_iter = config.bayes
    plan = {"seed": config.seed, "design": config.design, "initial": n_initial,
            "update": n_update, "iterations": n_iter, "acquisition": config.bayes_acquisition,
            "bounds": [config.low, config.high]}
    if config.bayes_acquisition != "error":
        plan |= {"search_bounds": [config.search_low, config.search_high],
                 "n_gen": config.n_gen}
    return plan


def check_plan(config: RunConfig, stored: dict[str, Any] | None, has_rounds: bool,
               n_stored: int) -> None:
    """One line, before anything is evaluated, when the run directory's points were not
    drawn by rounds of this plan: another --seed, schedule, acquisition or box (a resume
    would take them as this plan's rounds), or points another mode stored there."""
    where = config.run_path
    if stored is None:
        if n_stored and not has_rounds:  # a directory of a bayesian run has its plan or rounds
            raise MAPError(f"run dir {where} holds {n_stored} points that no bayesian rounds "
                           "drew (another --method's run?); use another --exp-id")
        return
    # a plan recorded before --design applied to bayesian drew a grid round 0
    refuse_other_settings(where / PLAN, "its rounds drew their points", PLAN_FLAGS,
                          {"design": "grid"} | stored, round_plan(config))


def rounds_done(store: ScalingResults, records: list[dict], complete: bool, datasets,
                metric: str, refined: list[dict] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(C, Y) of the stored points that belong to the rounds, in round order: the recorded
    rounds' points, then, when the rounds were not ``complete`` (a run killed inside a round,
    or while a resume rewrote the records), the other stored points in evaluation order
    but those of the front refinement that followed earlier rounds (``refined``:
    refine_rounds.json's records). Refinement points are never round points."""
    C_all, Y_all = store.arrays(datasets, metric)
    row = {point_key(c): k for k, c in enumerate(C_all)}
    order = [row.get(point_key(c)) for rec in records for c in rec.get("points", [])]
    if None in order:  # a recorded point missing from the store: the rounds end before it
        order = order[:order.index(None)]
        complete = False
    if not complete:
        taken = set(order) | {row.get(point_key(c)) for rec in (refined or [])
                              for c in rec.get("coefficients", [])}
        order += [k for k in range(len(C_all)) if k not in taken]
    return C_all[order].reshape(-1, C_all.shape[1]), Y_all[order].reshape(-1, Y_all.shape[1])


def _records(path: Path, key: str, T: int, what: str) -> list[dict]:
    """A per-round JSON log ([] when absent) whose records list their points under ``key``;
    one line when it is something else (a resume reads those points)."""
    records = read_json(path, None)
    if records is None:
        return []

    def is_point(c) -> bool:
        return isinstance(c, list) and len(c) == T and all(isinstance(x, (int, float))
                                                           for x in c)
    if not (isinstance(records, list) and all(
            isinstance(r, dict) and isinstance(r.get(key, []), list) and
            all(is_point(c) for c in r.get(key, [])) for r in records)):
        raise MAPError(f"{path}: not {what} (expected a list of round records); move it "
                       "away to start afresh")
    return records


def _round_files(config: RunConfig) -> tuple[dict | None, list[dict], list[dict]]:
    """The run directory's plan, round records and refinement records."""
    plan = read_json(config.run_path / PLAN, None)
    if plan is not None and not (isinstance(plan, dict) and
                                 isinstance(plan.get("iterations", 0), int)):
        raise MAPError(f"{config.run_path / PLAN}: not a bayesian plan (expected an object); "
                       "move it away to start afresh")
    records = _records(config.run_path / ROUNDS, "points", config.T, "bayesian rounds")
    refined = _records(config.run_path / REFINE_ROUNDS, "coefficients", config.T,
                       "front-refinement rounds")
    return plan, records, refined


def run(config: RunConfig) -> dict[str, Any]:
    n_initial, n_update, n_iter = config.bayes
    stored_plan, records, _ = _round_files(config)
    stored = ScalingResults(RunDirectory(config.results_path, config.exp_id, config.models)
                            .scaling_results, config.models, readonly=True,
                            needs=config.metric.name)
    check_plan(config, stored_plan, bool(records), len(stored))  # before anything is loaded
    with open_run(config) as ctx:
        stored_plan, records, refined = _round_files(config)  # again, under the run's lock
        store = ctx.store()
        check_plan(config, stored_plan, bool(records), len(store))
        write_json(ctx.run.file(PLAN, "the settings the rounds drew their points with "
                                      "(checked when the run resumes)"), round_plan(config))
        # complete: every round of the plan that stored them is recorded (a run written
        # before the plan was recorded is taken to have this run's number of rounds)
        iterations = (stored_plan or {}).get("iterations", n_iter)
        C_done, Y_done = rounds_done(store, records, len(records) >= iterations + 1,
                                     config.datasets, config.metric.name, refined)
        announce_resume(ctx, budget=n_initial + n_update * n_iter, done=len(C_done))
        rounds_path = ctx.run.file(ROUNDS, "per round: new points, bin "
                                   "posterior, bin scores, surrogate error")
        t0 = time.perf_counter()
        propose = None if config.bayes_acquisition == "error" else bayesian.ehvi_proposer(
            config.metric.link, [config.metric.sense] * config.T, low=config.search_low,
            high=config.search_high, n_gen=config.n_gen, seed=config.seed,
            min_distance=refine.MIN_DISTANCE * (config.high - config.low))
        result = bayesian.run_rounds(
            lambda C_new: evaluate_metric(config, ctx.evaluator, store, C_new), config.T,
            n_initial=n_initial, n_update=n_update, n_iter=n_iter, link=config.metric.link,
            low=config.low, high=config.high, seed=config.seed, on_round=json_log(rounds_path),
            C_done=C_done if len(C_done) else None, Y_done=Y_done if len(Y_done) else None,
            propose=propose, acquisition=config.bayes_acquisition,
            initial_design=config.design)
        write_json(rounds_path, result.records)
        C, Y, refined = refine_run(ctx, result.C, result.Y)
        ctx.timings["evaluation_seconds"] = time.perf_counter() - t0
        _, summary = solve_run_front(ctx, C, Y)
        if refined is not None:
            summary["refine"] = refined
        summary["figures"] += [str(f) for f in plotting.plot_bayesian_rounds(
            result.C, result.round_of_point, list(config.datasets),
            ctx.run.file("bayesian_rounds.png", "where each round sampled"),
            n_bins=bayesian.bins_per_angle(config.T), pdf=config.pdf)]
        summary["schedule"] = {"design": config.design, "initial": n_initial, "update": n_update,
                               "iterations": n_iter, "acquisition": config.bayes_acquisition}
        return finish(ctx, summary)
