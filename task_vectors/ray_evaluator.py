"""RayEvaluator: the Evaluator interface on a pool of Ray actors, one MergeEngine each.

Each actor builds its engine once from an ``EngineSpec`` (checkpoints, heads and decoded
evaluation tensors come from the shared filesystem), then evaluates jobs one at a time.
The driver hands a job to whichever actor is free and yields results as they complete,
tagged with the job's index. Ray does the placement (GPUs, nodes); this module only keeps
the pool busy and survives lost workers:

* a worker that dies (killed, out of memory, node lost) is replaced, and the jobs it held
  (up to ``queue_depth``) go back to the front of the queue for the next free worker; the
  one it was running counts as a failed attempt of that job;
* a job that raises is retried up to ``max_retries`` times, then ``JobFailedError`` names
  it; a ``MAPError`` (bad input the user can fix) is not retried;
* results already yielded stay with the caller whatever happens afterwards.

Ray is an optional dependency (``pip install .[ray]``); it is imported only when a
``RayEvaluator`` is made.

Why ~470 lines: the pool's scheduling, retries of lost workers and failing jobs, and
starting or joining Ray belong together; the worker actor is small.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from map_common.errors import MAPError
from task_vectors.evaluators import EngineSpec, Evals, merged_state, run_job

PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


class JobFailedError(RuntimeError):
    """A job kept failing on the workers (its own exception, or its workers dying)."""


def describe_job(index: int, job: Any) -> str:
    """A short, readable name for a job in error messages."""
    if hasattr(job, "theta"):
        text = repr(job)
    else:
        try:
            text = np.array2string(np.asarray(job, dtype=float), precision=4, separator=", ")
        except (TypeError, ValueError):
            text = repr(job)
    if len(text) > 200:
        text = text[:197] + "..."
    return f"job {index} ({text})"


def _import_ray():
    try:
        import ray
    except ImportError as e:  # the extra is optional
        raise MAPError("Ray is not installed; install the extra: pip install '.[ray]'") from e
    return ray


def _quiet_init_options(ray) -> dict[str, Any]:
    # Keep Ray from rewriting CUDA_VISIBLE_DEVICES for CPU-only actors (and its warning).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    return dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                configure_logging=True,
                job_config=ray.job_config.JobConfig(code_search_path=[PROJECT_ROOT]))


def start_local_ray(num_cpus: int, num_gpus: int = 0) -> None:
    """Start a private Ray on this machine with exactly these resources (on 127.0.0.1, no
    dashboard, quiet logs). ``address="local"``: never join one found through RAY_ADDRESS
    or ``ray start``."""
    ray = _import_ray()
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus,
             object_store_memory=256 * 2**20,  # results are a few floats per job
             _node_ip_address="127.0.0.1", **_quiet_init_options(ray))


class _Worker:
    """Body of the Ray actor: one engine, built once, evaluating one job at a time."""

    def __init__(self, spec: EngineSpec, device: str, threads: int):
        import torch

        torch.set_num_threads(threads)  # the actor's share of the node, not all its cores
        if spec.num_workers is None and threads <= 1:
            spec = replace(spec, num_workers=0)  # no decoding subprocesses on a 1-core share
        start = time.perf_counter()
        self.engine, self.error = None, None
        try:
            self.engine = spec.build(device)
        except Exception as e:  # kept, so the driver gets the real error (not "actor died")
            self.error = e
        self.build_seconds = time.perf_counter() - start
        self.jobs = 0
        self.busy_seconds = self.cpu_seconds = 0.0

    def info(self) -> dict[str, Any]:
        """Raises the engine's build error, if any; else who and where this worker is."""
        import socket

        import ray

        if self.error is not None:
            raise self.error
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "node": ray.get_runtime_context().get_node_id(),
                "build_seconds": self.build_seconds}

    def run(self, job: Any, datasets: Sequence[str]) -> Evals:
        start, cpu = time.perf_counter(), time.thread_time()  # the job's thread, not Ray's
        evals = run_job(self.engine, job, datasets)
        self.busy_seconds += time.perf_counter() - start
        self.cpu_seconds += time.thread_time() - cpu
        self.jobs += 1
        return evals

    def merged_state(self, coefficients: Sequence[float]) -> dict[str, Any]:
        return merged_state(self.engine, coefficients)

    def stats(self) -> dict[str, Any]:
        import ray

        engine_stats = getattr(self.engine, "stats", None)
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "jobs": self.jobs, "busy_seconds": self.busy_seconds,
                "cpu_seconds": self.cpu_seconds, "build_seconds": self.build_seconds,
                "engine": engine_stats() if callable(engine_stats) else {}}


@dataclass(eq=False)
class _Slot:
    """One actor of the pool; ``ready`` is pending until its engine is built."""

    actor: Any
    ready: Any
    info: dict[str, Any] | None = None


class RayEvaluator:
    """Evaluates jobs on ``workers`` Ray actors, each holding its own ``MergeEngine``.

    ``address=None`` starts a private local Ray sized to the pool (no dashboard, quiet
    logs); ``"auto"`` or ``"host:port"`` joins a running cluster. ``workers=None`` uses
    every GPU (CUDA specs) or every ``cpus_per_worker`` cores of the machine or cluster.
    ``gpus_per_worker=None`` means 1 for a CUDA spec, else 0 (fractions share a GPU).
    Each worker is handed up to ``queue_depth`` jobs at a time, so it starts the next one
    without waiting for the driver's round trip. ``max_retries``: further attempts of a job
    whose own code raised or whose worker died while running it.
    """

    def __init__(self, spec: EngineSpec, workers: int | None = None, address: str | None = None,
                 cpus_per_worker: int = 1, gpus_per_worker: float | None = None,
                 max_retries: int = 3, queue_depth: int = 2, start_timeout_s: float = 900.0):
        if cpus_per_worker < 1:
            raise ValueError(f"cpus_per_worker must be >= 1, got {cpus_per_worker}")
        if workers is not None and workers < 1:
            raise MAPError(f"--workers must be at least 1, got {workers}")
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be >= 1, got {queue_depth}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        ray = self._ray = _import_ray()
        self.spec = spec
        self.address = address
        self.cpus_per_worker = int(cpus_per_worker)
        uses_cuda = str(spec.device).startswith("cuda")
        self.gpus_per_worker = float(gpus_per_worker if gpus_per_worker is not None
                                     else (1 if uses_cuda else 0))
        self.max_retries = max_retries
        self.queue_depth = queue_depth
        self.start_timeout_s = start_timeout_s
        # Ray pins each GPU actor to its own device(s), which it then sees as cuda:0.
        self._device = "cuda" if self.gpus_per_worker > 0 else spec.device
        self._started_ray = False
        if not ray.is_initialized():
            self._init_ray(workers)
            self._started_ray = True
        self.workers = workers or self._default_workers()
        self._remote = ray.remote(_Worker).options(
            num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=0,
            max_task_retries=0)
        self._slots: list[_Slot] = [self._start_slot() for _ in range(self.workers)]
        self._counts = {"jobs": 0, "retries": 0, "worker_restarts": 0}
        self._start_failures = 0

    # ------------------------------------------------------------------ set-up
    def _init_ray(self, workers: int | None) -> None:
        if self.address is None:
            n = workers or self._local_capacity()
            gpus = int(np.ceil(n * self.gpus_per_worker))
            if gpus:
                import torch

                visible = torch.cuda.device_count()
                if gpus > visible:
                    raise MAPError(f"{n} workers with {self.gpus_per_worker:g} GPU each need "
                                   f"{gpus} GPUs; {visible} visible")
            start_local_ray(num_cpus=n * self.cpus_per_worker, num_gpus=gpus)
            return
        try:
            self._ray.init(address=self.address, **_quiet_init_options(self._ray))
        except ConnectionError as e:
            raise MAPError(f"cannot reach the Ray cluster at {self.address!r}: {e}") from e

    def _local_capacity(self) -> int:
        if self.gpus_per_worker > 0:
            import torch

            gpus = torch.cuda.device_count()
            if gpus == 0:
                raise MAPError(f"device {self.spec.device!r} asks for GPUs, but none is visible")
            return max(1, int(gpus / self.gpus_per_worker))
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, (cpus or 1) // self.cpus_per_worker)

    def _default_workers(self) -> int:
        if self._started_ray and self.address is None:
            return self._local_capacity()
        resources = self._ray.cluster_resources()
        if self.gpus_per_worker > 0:
            n = int(resources.get("GPU", 0) / self.gpus_per_worker)
        else:
            n = int(resources.get("CPU", 0) // self.cpus_per_worker)
        if n < 1:
            raise MAPError(f"the Ray cluster has no room for one worker: {resources}")
        return n

    def _start_slot(self) -> _Slot:
        actor = self._remote.remote(self.spec, self._device, self.cpus_per_worker)
        return _Slot(actor, actor.info.remote())

    def _replace(self, slot: _Slot) -> _Slot:
        """Kill ``slot``'s actor (if not already dead) and start a fresh one in its place."""
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # already gone with its node
            pass
        self._counts["worker_restarts"] += 1
        fresh = self._start_slot()
        self._slots[next(i for i, s in enumerate(self._slots) if s is slot)] = fresh
        return fresh

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, jobs: Sequence[Any], datasets: Sequence[str]) -> Iterator[tuple[int, Evals]]:
        """Yield ``(index, evals)`` for every job as it completes, each exactly once."""
        if not self._slots:
            raise RuntimeError("this RayEvaluator is closed")
        run = _EvaluationRun(self, jobs, datasets)
        while run.queue or run.owner:
            run.submit()
            ref = run.wait_next()
            if ref in run.starting:
                run.worker_started(ref)
                continue
            result = run.collect(ref)
            if result is None:  # lost or failed: the job is back in the queue
                continue
            run.submit()  # keep the workers busy while the caller handles this result
            self._counts["jobs"] += 1
            yield result

    # ------------------------------------------------------------------ the rest
    def worker_info(self) -> list[dict[str, Any]]:
        """Each worker's pid, host, Ray node id and engine build time (waits for them)."""
        infos = self._ray.get([s.ready for s in self._slots])
        for slot, info in zip(self._slots, infos):
            slot.info = info
        return infos

    def merged_state(self, coefficients: Sequence[float]) -> dict[str, Any]:
        """θ(c) as a CPU state dict, built by the first worker that can (tried in turn)."""
        error: BaseException | None = None
        for slot in list(self._slots):
            try:
                return self._ray.get(slot.actor.merged_state.remote(list(map(float,
                                                                           coefficients))))
            except self._ray.exceptions.RayError as e:
                error = e
        raise JobFailedError(f"no Ray worker could build the merged model at "
                             f"{list(coefficients)}: {error}")

    def wait_ready(self, timeout: float | None = None) -> int:
        """Wait (at most ``timeout`` s) until every worker has built its engine; returns how
        many have. A worker that failed to build is left for evaluate() to report."""
        ray = self._ray
        pending = {s.ready: s for s in self._slots if s.info is None}
        if pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
            for ref in done:
                try:
                    pending[ref].info = ray.get(ref)
                except ray.exceptions.RayError:
                    pass
        return sum(s.info is not None for s in self._slots)

    def worker_pids(self) -> list[int]:
        return [info["pid"] for info in self.worker_info()]

    def stats(self) -> dict[str, Any]:
        """Counts of this evaluator plus each worker's own figures (None: still loading,
        busy for 30 s, or gone)."""
        ray = self._ray
        loading = {s.ready: s for s in self._slots if s.info is None}
        for ref in ray.wait(list(loading), num_returns=len(loading), timeout=0)[0]:
            try:
                loading[ref].info = ray.get(ref)
            except ray.exceptions.RayError:  # evaluate() deals with it
                pass
        refs = {s.actor.stats.remote(): i for i, s in enumerate(self._slots) if s.info}
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=30) if refs else ([], [])
        per_worker: list[dict[str, Any] | None] = [None] * len(self._slots)
        for ref in done:
            try:
                per_worker[refs[ref]] = ray.get(ref)
            except ray.exceptions.RayError:
                pass
        return {"backend": "ray", "workers": self.workers, **self._counts,
                "per_worker": per_worker}

    def close(self) -> None:
        """Stop the workers, and the local Ray if this evaluator started it."""
        ray = self._ray
        for slot in self._slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # already gone
                pass
        self._slots = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False

    def __enter__(self) -> "RayEvaluator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lost_worker_errors(ray) -> tuple[type[BaseException], ...]:
    """Ray's errors that mean the worker (not the job) is gone."""
    return (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError,
            ray.exceptions.ObjectLostError)


class _EvaluationRun:
    """The state of one ``RayEvaluator.evaluate`` call: the queue of job indices, which
    worker holds which jobs, and how often each job has failed."""

    def __init__(self, pool: RayEvaluator, jobs: Sequence[Any], datasets: Sequence[str]):
        self.pool = pool
        self.ray = pool._ray
        self.lost_worker = _lost_worker_errors(self.ray)
        self.jobs = jobs
        self.datasets = list(datasets)
        self.queue = deque(range(len(jobs)))
        self.failures = [0] * len(jobs)
        self.ready = [s for s in pool._slots if s.info is not None]  # engine built, taking jobs
        self.starting = {s.ready: s for s in pool._slots if s.info is None}
        # Each worker's jobs in submission order, which is the order an actor runs them in.
        self.flight: dict[_Slot, dict[Any, int]] = {s: {} for s in self.ready}
        self.owner: dict[Any, _Slot] = {}
        self.waited_since = time.monotonic()

    # ------------------------------------------------------------------ submission
    def submit(self) -> None:
        """Hand queued jobs to ready workers, up to ``queue_depth`` each."""
        for depth in range(1, self.pool.queue_depth + 1):  # spread first, then queue up
            for slot in self.ready:
                if self.queue and len(self.flight[slot]) < depth:
                    index = self.queue.popleft()
                    ref = slot.actor.run.remote(self.jobs[index], self.datasets)
                    self.flight[slot][ref] = index
                    self.owner[ref] = slot

    def wait_next(self) -> Any:
        """The next finished reference: a job's result or a worker's start."""
        if not self.owner and not self.starting:
            raise JobFailedError("no Ray worker is left to run the remaining jobs")
        # Only a pool that is all still loading can stall; bound that wait.
        timeout = None if self.owner else max(
            1.0, self.pool.start_timeout_s - (time.monotonic() - self.waited_since))
        done, _ = self.ray.wait([*self.owner, *self.starting], num_returns=1, timeout=timeout)
        if not done:
            raise JobFailedError(f"no Ray worker became ready within "
                                 f"{self.pool.start_timeout_s:.0f} s ({len(self.queue)} jobs "
                                 f"left); does the cluster have the resources for one?")
        return done[0]

    # ------------------------------------------------------------------ workers
    def worker_started(self, ref: Any) -> None:
        """A worker finished loading: it takes jobs now, or it failed to load (a build
        error is raised; a worker that died while loading is replaced)."""
        ray = self.ray
        slot = self.starting.pop(ref)
        try:
            slot.info = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the engine could not be built
            if isinstance(e.cause, MAPError):
                raise MAPError(f"a Ray worker could not load the models: "
                               f"{e.cause}") from e.cause
            raise RuntimeError(f"a Ray worker could not build its engine: "
                               f"{e.cause or e}") from e
        except self.lost_worker as e:  # died while loading (killed, out of memory)
            self.pool._start_failures += 1
            if self.pool._start_failures > self.pool.max_retries * len(self.pool._slots):
                raise JobFailedError(f"Ray workers keep dying while loading the "
                                     f"models; last error: {e}") from e
            self._restart(slot)
            return
        self.ready.append(slot)
        self.flight[slot] = {}
        self.waited_since = time.monotonic()

    def _restart(self, slot: _Slot) -> None:
        fresh = self.pool._replace(slot)
        self.starting[fresh.ready] = fresh

    def _lose(self, slot: _Slot, error: BaseException) -> None:
        """``slot``'s worker is gone: its jobs go back to the front of the queue, the one
        it was running (the first) takes the blame, and a fresh worker starts."""
        self.ready.remove(slot)
        lost = list(self.flight.pop(slot).items())
        for ref, _ in lost:
            self.owner.pop(ref, None)
        self.queue.extendleft(reversed([index for _, index in lost]))
        self.pool._counts["retries"] += len(lost)
        self._restart(slot)
        if lost:
            self._blame(lost[0][1], error)

    # ------------------------------------------------------------------ results and failures
    def collect(self, ref: Any) -> tuple[int, Evals] | None:
        """``(index, evals)`` of a finished job; None when it is back in the queue (its
        worker was lost, or it raised and has retries left)."""
        slot = self.owner[ref]
        try:
            evals = self.ray.get(ref)
        except self.lost_worker as e:
            self._lose(slot, e)
            return None
        except self.ray.exceptions.RayTaskError as e:  # the job raised; the worker lives on
            self._job_raised(slot, ref, e.cause if e.cause is not None else e)
            return None
        index = self.flight[slot].pop(ref)
        del self.owner[ref]
        return index, evals

    def _job_raised(self, slot: _Slot, ref: Any, error: BaseException) -> None:
        index = self.flight[slot].pop(ref)
        del self.owner[ref]
        if isinstance(error, MAPError):  # bad input: the same on every worker
            raise MAPError(f"{describe_job(index, self.jobs[index])}: {error}") from error
        self._blame(index, error)
        self.pool._counts["retries"] += 1
        self.queue.appendleft(index)

    def _blame(self, index: int, error: BaseException) -> None:
        """Count a failed attempt of job ``index``; past ``max_retries`` the job fails."""
        self.failures[index] += 1
        if self.failures[index] > self.pool.max_retries:
            raise JobFailedError(f"{describe_job(index, self.jobs[index])} failed "
                                 f"{self.failures[index]} times; last error: {error}") from error
