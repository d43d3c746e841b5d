"""The single-model baselines of the original's figure, evaluated next to a MAP run.

Each baseline (task_vectors.baselines) is one evaluator job; results go to
``baselines.json`` ({name: {"describe": ..., "evals": {dataset: {accuracy, loss, entropy}}}}) as
they complete, so a killed run resumes without evaluating a stored baseline again. The
Task Arithmetic lambda sweep yields one more entry, the sweep's best, marked as tuned on
the evaluation data it is scored on.

Unless left out (``--no-adamerging-baselines``), the four AdaMerging points (task-wise,
layer-wise, and their ++ on the TIES vectors) are learned first on the local engine, each
checkpointed in ``adamerging_<granularity>_<vectors>.pt`` beside baselines.json, then
evaluated as jobs like the others. They learn from the evaluation sets' unlabeled images,
so they are scored on the images they learned from (as AdaMerging uses its test sets).
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from src.core import indicators
from src.run.evaluation import progress
from src.run.results import read_json, write_json


def evaluate_baselines(evaluator, config, path: Path) -> dict[str, dict[str, Any]]:
    """{name: {"describe", "evals", "family"}} of every baseline, evaluating missing ones."""
    from task_vectors.baselines import SWEEP_GROUP, default_baselines, pick_tuned

    baselines = default_baselines(config.T, list(config.preference), seed=config.seed)
    stored: dict[str, dict[str, Any]] = read_json(path, {}) or {}
    # one stored before the run's metric was recorded (e.g. entropy) is evaluated again
    stored = {n: e for n, e in stored.items()
              if all(config.metric.name in v for v in e["evals"].values())}
    if config.adamerging is not None:
        baselines += adamerging_baselines(evaluator, config, path.parent, stored)
    todo = [b for b in baselines if b.name not in stored]
    if todo:
        with progress(len(todo), "baselines") as bar:
            for i, evals in evaluator.evaluate(todo, list(config.datasets)):
                b = todo[i]
                stored[b.name] = {"describe": b.describe(), "family": b.family, "evals": evals}
                write_json(path, stored)
                bar.update()
    sweep = [b for b in baselines if getattr(b, "group", "") == SWEEP_GROUP]
    if sweep:
        sense = 1.0 if config.metric.sense == "max" else -1.0
        scores = [sense * float(np.mean(metric_row(stored[b.name]["evals"], config)))
                  for b in sweep]
        tuned = pick_tuned(sweep, scores)
        source = stored[tuned.details["selected_from"]]
        stored[tuned.name] = {"describe": tuned.describe(), "family": "TA, tuned",
                              "evals": source["evals"]}
        write_json(path, stored)
    return stored


ADAMERGING_POINTS = (("task", "ta"), ("layer", "ta"), ("task", "ties"), ("layer", "ties"))
ADAMERGING_NOTE = ("learned on the evaluation sets' unlabeled images: scored on the images "
                   "it learned from")


def adamerging_settings_record(settings) -> dict[str, Any]:
    """What decides a learned point besides its granularity (checked on resume)."""
    record = settings.trajectory()
    record.pop("granularity")
    return record | {"steps": settings.steps}


def check_stored_adamerging(config, folder: Path,
                            stored: dict[str, dict[str, Any]] | None = None) -> None:
    """A stored AdaMerging baseline learned under other --adamerging-* settings is refused in
    one line (MAPError); open_run asks before anything is loaded."""
    from map_common.errors import MAPError
    from task_vectors.adamerging import method_name

    if config.adamerging is None or not config.baselines:
        return
    if stored is None:
        stored = read_json(folder / "baselines.json", {}) or {}
    record = adamerging_settings_record(config.adamerging)
    for granularity, vectors in ADAMERGING_POINTS:
        entry = stored.get(method_name(granularity, vectors))
        if entry is not None and entry["describe"].get("settings") != record:
            raise MAPError(f"{folder / 'baselines.json'} holds {method_name(granularity, vectors)} "
                           "learned with other --adamerging-* settings; rerun with them, use "
                           "another --exp-id, or add --no-adamerging-baselines")


def adamerging_baselines(evaluator, config, folder: Path, stored: dict[str, dict[str, Any]]
                         ) -> list:
    """The four AdaMerging points as baseline jobs, learning the ones ``stored`` lacks on
    the evaluator's local engine (a Ray pool has none in the driver: they are skipped with
    a line). A stored point learned under other settings is refused (MAPError)."""
    from task_vectors.adamerging import Layout, learn, method_name
    from task_vectors.baselines import TIES_DENSITY, AdaMergingBaseline
    from task_vectors.merging import ties_vectors

    check_stored_adamerging(config, folder, stored)
    missing = [(g, v) for g, v in ADAMERGING_POINTS if method_name(g, v) not in stored]
    if not missing:
        return []
    engine = getattr(evaluator, "engine", None)
    if engine is None:
        print("AdaMerging baselines skipped: they learn on a local engine (run without "
              "--workers / --ray-address, or add --no-adamerging-baselines)", file=sys.stderr)
        return []
    layout = Layout.of(engine)
    jobs = []
    for granularity, vectors in missing:
        name = method_name(granularity, vectors)
        # ++: a TIES copy of tau for the learning (T more encoders while it runs)
        tau = None if vectors == "ta" else ties_vectors(engine.tau.clone(), TIES_DENSITY)
        result = learn(engine, list(config.datasets),
                       replace(config.adamerging, granularity=granularity), tau=tau,
                       vectors=vectors, desc=name,
                       checkpoint=folder / f"adamerging_{granularity}_{vectors}.pt")
        del tau
        jobs.append(AdaMergingBaseline(
            name, lambdas=tuple(tuple(r) if granularity == "layer" else r
                                for r in result.lambdas.tolist()),
            spans=tuple(layout.spans) if granularity == "layer" else (), vectors=vectors,
            density=TIES_DENSITY,
            details={"settings": adamerging_settings_record(config.adamerging),
                     "entropy_first_step": float(result.curve[0].mean()),
                     "entropy_last_step": float(result.curve[-1].mean()),
                     "learning_seconds": result.seconds, "images": ADAMERGING_NOTE}))
    return jobs


def metric_row(evals: dict, config) -> list[float]:
    return [float(evals[d][config.metric.name]) for d in config.datasets]


def figure_baselines(stored: dict[str, dict[str, Any]], config
                     ) -> list[tuple[str, np.ndarray]]:
    """(legend label, metrics [m, T]) per family, the sweep's members left out (its tuned
    pick stands for it)."""
    families: dict[str, list[list[float]]] = {}
    for name, entry in stored.items():
        family = entry.get("family", name)
        if family == "TA, lambda sweep":
            continue
        families.setdefault(family, []).append(metric_row(entry["evals"], config))
    return [(label, np.array(rows)) for label, rows in families.items()]


def baseline_dominance(front_real: np.ndarray, stored: dict[str, dict[str, Any]], config
                       ) -> dict[str, dict[str, Any]]:
    """Per baseline: whether the MAP real front dominates it, and its distance to it."""
    names = list(stored)
    points = np.array([metric_row(stored[n]["evals"], config) for n in names])
    result = indicators.dominance_of_points(front_real, points, [config.metric.sense] * config.T)
    return {n: {"dominated_by_map": bool(d), "distance_to_map_front": float(x),
                "metrics": dict(zip(config.datasets, p.tolist())),
                "family": stored[n].get("family", n)}
            for n, d, x, p in zip(names, result["dominated"], result["distance"], points)}
