"""Where the algorithms meet the models: build the run's evaluator, evaluate points, store them.

``open_evaluator`` loads checkpoints, heads and evaluation sets once (torch is imported
here, lazily, never by the algorithm modules), or starts a pool of Ray workers that do.
``evaluate_points`` sends the points a run directory does not hold yet to the evaluator
and stores each result in job order as soon as the earlier ones are in, so a killed run
loses at most the points in flight and files are the same with or without Ray.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from src.run.config import RunConfig
from src.run.results import ScalingResults


def engine_spec(config: RunConfig):
    """The picklable recipe of the run's engine. Missing heads are built zero-shot (and
    written under --save) here, once, so every engine reads them from disk."""
    from task_vectors.checkpoints import head_path
    from task_vectors.evaluators import EngineSpec
    from task_vectors.heads import get_zero_shot_head, release_text_encoder

    src, ev = config.source, config.evaluation
    for d in config.datasets:
        get_zero_shot_head(d, src.model_name, src.save, src.data_location, device=ev.device,
                           openclip_cachedir=src.openclip_cachedir)
    release_text_encoder()
    heads = tuple((d, str(head_path(src.save, d))) for d in config.datasets)
    if config.report_test:  # each test split is scored with its validation set's head
        from src.run.report_on_test import test_datasets

        heads += tuple((t, str(head_path(src.save, d)))
                       for d, t in test_datasets(config.datasets).items())
    return EngineSpec(
        model_name=src.model_name, pretrained=src.pretrained, finetuned=src.finetuned,
        heads=heads, datasets=tuple(d for d, _ in heads),
        data_location=src.data_location, device=ev.device,
        batch_size=ev.batch_size, max_eval_samples=ev.max_eval_samples,
        num_workers=ev.num_workers, openclip_cachedir=src.openclip_cachedir,
        cache_dir=ev.cache_dir,
        options={**dict(ev.engine_options), "merge_method": ev.merge_method})


def open_evaluator(config: RunConfig, timings: dict[str, float]):
    """The run's evaluator, everything loaded once; ``timings['load_seconds']`` is set.

    Without --workers / --ray-address: a ``LocalEvaluator`` (one engine in this process).
    With them: a ``RayEvaluator``; the driver then builds no engine of its own (the workers
    load the checkpoints), only the missing zero-shot heads and, for a pool of more than
    one worker without --cache-dir, the decoded evaluation sets (``<run>/.eval_cache``)."""
    from task_vectors.evaluators import LocalEvaluator

    start = time.perf_counter()
    ev = config.evaluation
    if ev.single_thread:
        import torch

        torch.set_num_threads(1)  # the demo model's ops are tiny: threads only add overhead
    spec = engine_spec(config)
    engine = None
    if ev.merge_method.kind == "learned":
        engine, spec = learn_merge_method(config, spec, timings)
    if ev.uses_ray:
        from dataclasses import replace

        from task_vectors.ray_evaluator import RayEvaluator

        del engine  # the workers build their own from the spec, the learned method in it

        if ev.shares_decoding:
            spec = replace(spec, cache_dir=str(decode_once(config, spec)))
        pool = RayEvaluator(spec, workers=None if ev.workers == "auto" else int(ev.workers),
                            address=ev.ray_address, cpus_per_worker=ev.cpus_per_worker)
        # Loading is load_seconds, not evaluation time (a worker that cannot be placed
        # or built is reported by the first evaluate()).
        pool.wait_ready(timeout=pool.start_timeout_s)
        evaluator = OneLineFailures(pool)
    else:
        evaluator = LocalEvaluator(spec.build() if engine is None else engine)
    # the merge method as the engines apply it (a learned one with its coefficients)
    evaluator.merge_method = spec.options["merge_method"]
    timings["load_seconds"] = time.perf_counter() - start
    return evaluator


def learn_merge_method(config: RunConfig, spec, timings: dict[str, float]):
    """A learned --merge-method (kind "learned"): learned once per run on a local engine of
    the task vectors as fine-tuned, its state kept in the run directory (a resumed run reads
    it and learns nothing); then that engine's tau is transformed in place. Returns the
    engine and the spec carrying the learned method, so a Ray worker's engine applies the
    same transform. Under Ray the learning runs here, in the driver, on --device."""
    from dataclasses import replace

    start = time.perf_counter()
    engine = replace(spec, options={**spec.options, "merge_method": None}).build()
    method = config.evaluation.merge_method.learn(engine, list(config.datasets),
                                                  config.run_path)
    engine.transform_tau(method.tau_transform())
    timings["merge_method_learning_seconds"] = time.perf_counter() - start
    return engine, replace(spec, options={**spec.options, "merge_method": method})


EVAL_CACHE = ".eval_cache"


def decode_once(config: RunConfig, spec) -> Path:
    """Decode the run's evaluation sets into ``<run>/.eval_cache`` (the --cache-dir format,
    so a worker's engine reads them instead of decoding them again). Needs only the
    pretrained encoder's preprocessing, on the CPU. Kept after the run: a resume reuses it."""
    from task_vectors.checkpoints import load_encoder
    from task_vectors.eval_data import cached_decode

    folder = config.run_path / EVAL_CACHE
    folder.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(spec.pretrained, spec.model_name,
                           openclip_cachedir=spec.openclip_cachedir)
    for name in spec.datasets:
        cached_decode(name, spec.data_location, encoder.val_preprocess, cache_dir=str(folder),
                      max_samples=spec.max_eval_samples, num_workers=spec.num_workers)
    return folder


class OneLineFailures:
    """A RayEvaluator whose ``JobFailedError`` (a merge that kept failing, or no worker
    left) becomes a MAPError: run_MAP.py prints one line naming the job and exits with 2;
    every evaluation that finished before is already stored, and rerunning the command
    resumes."""

    def __init__(self, inner):
        self.inner = inner

    def evaluate(self, jobs, datasets):
        from map_common.errors import MAPError
        from task_vectors.ray_evaluator import JobFailedError

        try:
            yield from self.inner.evaluate(jobs, datasets)
        except JobFailedError as e:
            raise MAPError(f"evaluation stopped on the Ray workers: {e} (finished "
                           "evaluations are stored; rerun the same command to resume)") from e

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def evaluate_points(evaluator, store: ScalingResults, C: np.ndarray, datasets: Sequence[str],
                    coefficients: Callable[[np.ndarray], np.ndarray] | None = None,
                    desc: str = "evaluating merges") -> list[dict]:
    """Evaluations of every row of C, evaluating (and storing) only those ``store`` lacks.

    ``coefficients`` maps a stored point to the engine's coefficients over the original
    task vectors (identity, except for nested pairs)."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    todo = [c for c in _distinct(C) if store.get(c) is None]
    if todo:
        jobs = [c if coefficients is None else coefficients(c) for c in todo]
        with progress(len(jobs), desc) as bar:
            store_in_order(evaluator.evaluate(jobs, list(datasets)),
                           lambda i, evals: store.add(todo[i], evals), bar)
    return [store.get(c) for c in C]


Group = tuple[ScalingResults, np.ndarray, Sequence[str],
              Callable[[np.ndarray], np.ndarray] | None]  # store, C, datasets, coefficients


def evaluate_groups(evaluator, groups: Sequence[Group], desc: str = "evaluating merges"
                    ) -> list[list[dict]]:
    """evaluate_points for several stores at once (nested's pairs of a level, a sweep's
    subsets): ONE evaluate() call, each job carrying its own datasets, so a pool of workers
    runs them all concurrently. Returns the evaluations of each group's rows of C."""
    from task_vectors.evaluators import SubsetJob

    jobs, where = [], []
    for g, (store, C, datasets, coefficients) in enumerate(groups):
        for c in _distinct(np.atleast_2d(np.asarray(C, dtype=float))):
            if store.get(c) is None:
                full = c if coefficients is None else coefficients(c)
                jobs.append(SubsetJob(tuple(float(x) for x in full), tuple(datasets)))
                where.append((g, c))
    if jobs:
        with progress(len(jobs), desc) as bar:
            store_in_order(evaluator.evaluate(jobs, []),
                           lambda i, evals: groups[where[i][0]][0].add(where[i][1], evals), bar)
    return [[store.get(c) for c in np.atleast_2d(np.asarray(C, dtype=float))]
            for store, C, _, _ in groups]


class InOrder:
    """Hands results on in job order, whatever order they complete in (a pool of workers),
    so a run's files are the same with or without Ray. A result waits only for the earlier
    jobs still in flight (a few per worker); ``drain()`` gives the waiting ones when the
    evaluation stops early (a job that keeps failing, Ctrl-C), so they are stored too."""

    def __init__(self, bar: tqdm | None = None):
        self.bar, self.pending, self.next_index = bar, {}, 0

    def push(self, index: int, result: Any) -> Iterator[tuple[int, Any]]:
        if self.bar is not None:
            self.bar.update()
        self.pending[index] = result
        while self.next_index in self.pending:
            yield self.next_index, self.pending.pop(self.next_index)
            self.next_index += 1

    def drain(self) -> list[tuple[int, Any]]:
        out = sorted(self.pending.items())
        self.pending.clear()
        return out


def store_in_order(results: Iterator[tuple[int, Any]], add: Callable[[int, Any], None],
                   bar: tqdm | None = None) -> None:
    """``add(index, result)`` for every result, in job order; on an error or interrupt the
    results that were waiting for an earlier job are added before it propagates."""
    order = InOrder(bar)
    try:
        for i, result in results:
            for j, ready in order.push(i, result):
                add(j, ready)
    finally:
        for j, ready in order.drain():
            add(j, ready)


def progress(total: int, desc: str) -> tqdm:
    """A progress bar in merged models per second. Written to a log file (a SLURM job's
    stderr is no terminal) it updates every 30 s rather than filling the log with lines."""
    import sys

    interactive = getattr(sys.stderr, "isatty", lambda: False)()
    return tqdm(total=total, desc=desc, unit="model", mininterval=0.1 if interactive else 30.0)


def _distinct(C: np.ndarray) -> list[np.ndarray]:
    from src.run.results import point_key

    seen, out = set(), []
    for c in C:
        key = point_key(c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def metric_matrix(evals: Sequence[dict], datasets: Sequence[str], metric: str) -> np.ndarray:
    """[n, K] of one metric from evaluation records."""
    return np.array([[e[d][metric] for d in datasets] for e in evals], dtype=float
                    ).reshape(len(evals), len(datasets))


def evaluate_metric(config: RunConfig, evaluator, store: ScalingResults, C: np.ndarray,
                    desc: str = "evaluating merges") -> np.ndarray:
    """[n, T] of the run's metric at the points of C (evaluating only the missing ones)."""
    return metric_matrix(evaluate_points(evaluator, store, C, config.datasets, desc=desc),
                         config.datasets, config.metric.name)

