"""The single-model baselines of the original's figure, evaluated next to a MAP run.

Each baseline (task_vectors.baselines) is one evaluator job; results go to
``baselines.json`` ({name: {"describe": ..., "evals": {dataset: {accuracy, loss}}}}) as
they complete, so a killed run resumes without evaluating a stored baseline again. The
Task Arithmetic lambda sweep yields one more entry, the sweep's best, marked as tuned on
the evaluation data it is scored on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src import indicators
from src.evaluation import progress
from src.results import read_json, write_json


def evaluate_baselines(evaluator, config, path: Path) -> dict[str, dict[str, Any]]:
    """{name: {"describe", "evals", "family"}} of every baseline, evaluating missing ones."""
    from task_vectors.baselines import SWEEP_GROUP, default_baselines, pick_tuned

    baselines = default_baselines(config.T, list(config.preference), seed=config.seed)
    stored: dict[str, dict[str, Any]] = read_json(path, {}) or {}
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
