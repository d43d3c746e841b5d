"""--sweep pairs|triples: MAP on every pair (or triple) of --zeroshot-merge-models.

One pool of engines serves the whole sweep: the engine holds every model's task vector,
and a subset's coefficient vector is padded with zeros over the others (θ_pre + Σ_{i in S}
c_i τ_i), each job carrying the subset's own datasets. The designs of ALL subsets are one
evaluate() call, so a Ray pool runs them concurrently; then each subset's front is solved
through the shared front step in its own run directory, ``<results>/<exp-id>/<A>_<B>/``,
exactly as ``--method map --zeroshot-merge-models A B`` would (same files, the same
design and refinement defaults for the subset's size; a resumed sweep skips stored
points). Refinement rounds run subset by subset, after the shared design batch. At the
end: ``sweep.csv`` and ``sweep.png`` in ``<results>/<exp-id>/``: per subset, the front
size, the surrogates' worst R² and the chosen model's real metric per dataset and
preference-weighted.
"""
from __future__ import annotations

import csv
import time
from dataclasses import replace
from itertools import combinations
from typing import Any, Sequence

import numpy as np

from src.run.config import RunConfig
from src.run.evaluation import evaluate_groups, metric_matrix
from src.modes import map_mode
from src.modes.common import (RunContext, finish, open_run, refine_run, run_fingerprint,
                              solve_run_front)
from src.run.fingerprint import check_fingerprint
from src.run.mode_registry import SWEEP_SIZES
from src.core.objectives import file_prefix
from src.run.results import RunDirectory

SIZES = SWEEP_SIZES


def subsets(config: RunConfig) -> list[tuple[int, ...]]:
    """Indices of every subset of the sweep, in combinations order of the models."""
    return list(combinations(range(config.T), SIZES[config.sweep]))


def subset_config(config: RunConfig, index: Sequence[int]) -> RunConfig:
    """The map run of one subset, in ``<run>/<A>_<B>/`` of the sweep."""
    models = tuple(config.models[i] for i in index)
    finetuned = dict(config.source.finetuned)
    return replace(config, models=models, datasets=tuple(config.datasets[i] for i in index),
                   preference=tuple(config.preference[i] for i in index),
                   results_path=str(config.run_path), exp_id=file_prefix(models), sweep=None,
                   source=replace(config.source,
                                  finetuned=tuple((m, finetuned[m]) for m in models)))


class SubsetView:
    """The sweep's evaluator seen by one subset: its coefficient vectors are padded with
    zeros to the pool's task vectors and evaluated on the subset's datasets."""

    def __init__(self, inner, index: Sequence[int], T: int, datasets: Sequence[str]):
        self.inner, self.index, self.T, self.datasets = inner, list(index), T, tuple(datasets)

    def pad(self, c: np.ndarray) -> np.ndarray:
        full = np.zeros(self.T)
        full[self.index] = np.asarray(c, dtype=float)
        return full

    def evaluate(self, jobs, datasets):
        from task_vectors.evaluators import SubsetJob

        if any(hasattr(job, "theta") for job in jobs):
            raise TypeError("a sweep's subsets evaluate coefficient vectors only")
        return self.inner.evaluate([SubsetJob(tuple(self.pad(j).tolist()), tuple(datasets))
                                    for j in jobs], [])

    def merged_state(self, coefficients) -> dict[str, Any]:
        return self.inner.merged_state(self.pad(coefficients))

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def close(self) -> None:  # the sweep closes the pool
        pass


def run(config: RunConfig) -> dict[str, Any]:
    index_sets = subsets(config)
    with open_run(config) as pool:
        contexts: list[RunContext] = []
        for index in index_sets:
            sub = subset_config(config, index)
            run_dir = RunDirectory(sub.results_path, sub.exp_id, sub.models, sub.metric.name)
            run_dir.stores = pool.run.stores  # folded when the pool's run ends
            check_fingerprint(run_dir.path, run_fingerprint(sub))
            view = SubsetView(pool.evaluator, index, config.T, sub.datasets)
            contexts.append(RunContext(sub, run_dir, view, time.perf_counter(),
                                       {"load_seconds": pool.timings.get("load_seconds", 0.0)}))
        designs = [map_mode.design(ctx.config) for ctx in contexts]
        t0 = time.perf_counter()
        evals = evaluate_groups(
            pool.evaluator, [(ctx.store(), C, ctx.config.datasets, ctx.evaluator.pad)
                             for ctx, C in zip(contexts, designs)],
            desc=f"{len(contexts)} {config.sweep}")
        seconds = time.perf_counter() - t0
        rows = []
        for ctx, C, subset_evals in zip(contexts, designs, evals):
            ctx.timings["evaluation_seconds"] = seconds  # shared by every subset
            Y = metric_matrix(subset_evals, ctx.config.datasets, config.metric.name)
            C, Y, rounds = refine_run(ctx, C, Y)  # per subset, after the shared design batch
            _, summary = solve_run_front(ctx, C, Y)
            if rounds is not None:
                summary["refine"] = rounds
            finish(ctx, summary, show=False)
            rows.append(sweep_row(ctx.config, summary))
        files = write_sweep_table(pool, rows)
        summary = {"sweep": config.sweep, "subsets": rows, "files": files}
        finish(pool, summary, show=False)
    print_sweep(config, pool.run.path, rows)
    return summary


def sweep_row(config: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """One subset's line of sweep.csv."""
    real = summary["chosen"]["real"]
    weights = np.asarray(config.preference, dtype=float)
    row = {"subset": file_prefix(config.models), "models": " ".join(config.models),
           "n_evaluations": summary["n_evaluations"], "front_size": summary["front_size"],
           "min_surrogate_r2": float(min(summary["surrogate_r2"].values())),
           "front_error": None if summary["reevaluated"] is None
           else summary["reevaluated"]["mean_abs_error"]}
    if real is not None:
        values = np.array([real[d] for d in config.datasets])
        row["chosen_real_weighted"] = float(values @ weights / weights.sum())
        row["chosen_real"] = " ".join(f"{d}={real[d]:.4f}" for d in config.datasets)
    return row


def write_sweep_table(pool: RunContext, rows: list[dict[str, Any]]) -> list[str]:
    """sweep.csv and sweep.png in the sweep's directory."""
    from src.plotting.style import _save

    path = pool.run.file("sweep.csv", "one line per subset: front size, worst surrogate R2, "
                                      "predicted-vs-real front error, the chosen model's "
                                      "real metric")
    fields = ["subset", "models", "n_evaluations", "front_size", "min_surrogate_r2",
              "front_error", "chosen_real_weighted", "chosen_real"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    fig = sweep_figure(rows, pool.config.metric.axis_label,
                       f"MAP on every {pool.config.sweep[:-1]} of {pool.config.T} models")
    figures = _save(fig, pool.run.file("sweep.png", "the sweep table as bars"),
                    pool.config.pdf)
    return [str(path), *map(str, figures)]


def sweep_figure(rows: list[dict[str, Any]], metric: str, title: str):
    """sweep.png: one panel of bars per column of sweep.csv. The R² panel is scaled to
    its values (R² near 1 everywhere would be bars of equal height on a 0-1 axis)."""
    from matplotlib.figure import Figure

    from src.plotting.style import BLUE, _style

    names = [r["subset"].replace("_", "\n") for r in rows]
    columns = [("worst surrogate R²", "min_surrogate_r2"),
               ("front error\n(mean |predicted − real|)", "front_error"),
               (f"chosen model, real {metric}\n(preference-weighted)", "chosen_real_weighted")]
    with _style():
        fig = Figure(figsize=(max(6.0, 1.2 * len(rows)), 7.5))
        axes = fig.subplots(len(columns), 1, sharex=True)
        for ax, (label, key) in zip(axes, columns):
            values = np.array([np.nan if r.get(key) is None else r[key] for r in rows],
                              dtype=float)
            bars = ax.bar(range(len(rows)), values, color=BLUE)
            ax.set_ylabel(label)
            if key == "min_surrogate_r2" and np.isfinite(values).any():
                ax.bar_label(bars, fmt="%.3f", fontsize=7)  # the axis does not start at 0
                low, high = np.nanmin(values), np.nanmax(values)
                pad = max(0.15 * (high - low), 0.002)
                ax.set_ylim(low - 3 * pad, min(1.0, high + pad) if high <= 1 else high + pad)
        axes[-1].set_xticks(range(len(rows)), names, fontsize=7)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def print_sweep(config: RunConfig, path, rows: list[dict[str, Any]]) -> None:
    print(f"\nSweep directory: {path} ({len(rows)} {config.sweep}, one run directory each)")
    for r in rows:
        real = r.get("chosen_real_weighted")
        print(f"  {r['subset']}: front {r['front_size']}, worst R2 {r['min_surrogate_r2']:.3f}"
              + ("" if real is None else f", chosen real {real:.4f}"))
