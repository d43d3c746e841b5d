"""Evaluators: the one interface through which every mode evaluates merged models.

A mode hands an evaluator a batch of *jobs* and receives ``(index, evals)`` pairs as the
jobs complete, in any order. A job is a coefficient vector over the run's task vectors
(θ = θ_pre + Σ c_i τ'_i) or a baseline object with ``theta(tau, theta_pre) -> flat θ``.
Only the driver (the caller) writes the run directory, so an evaluator never touches it.
A job may carry its own datasets (``job.datasets``, e.g. one subset of a sweep over one
pool of task vectors); otherwise it is evaluated on the ``datasets`` of the call.
``merged_state(coefficients)`` returns θ(c) as a CPU state dict (nested's final model).

``LocalEvaluator`` runs jobs on one in-process ``MergeEngine``. An ``EngineSpec`` is the
picklable recipe of an engine, so other processes (Ray actors) build identical engines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

Evals = dict[str, dict[str, float]]  # {dataset: {"accuracy": a, "loss": l, "entropy": h}}


@runtime_checkable
class Evaluator(Protocol):
    """Evaluates merged models; yields ``(index into jobs, evals)`` as each completes."""

    def evaluate(self, jobs: Sequence[Any], datasets: Sequence[str]) -> Iterator[tuple[int, Evals]]:
        ...

    def close(self) -> None:
        ...

    def stats(self) -> dict[str, Any]:
        ...


@dataclass(frozen=True)
class EngineSpec:
    """Everything needed to build a ``MergeEngine`` anywhere the files are reachable.

    ``finetuned`` and ``heads`` are (name, path) pairs in task / dataset order; ``options``
    holds further keyword arguments of ``MergeEngine.from_checkpoints`` (precision, merge
    method, ...), so new engine settings travel without changing this class.
    """

    model_name: str
    pretrained: str
    finetuned: tuple[tuple[str, str], ...]
    heads: tuple[tuple[str, str], ...]
    datasets: tuple[str, ...]
    data_location: str
    device: str = "cpu"
    batch_size: int = 128
    max_eval_samples: int | None = None
    num_workers: int | None = None
    openclip_cachedir: str | None = None
    cache_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def build(self, device: str | None = None):
        """Load checkpoints, heads and evaluation tensors once (on ``device`` if given)."""
        from task_vectors.engine import MergeEngine

        return MergeEngine.from_checkpoints(
            model_name=self.model_name, pretrained=self.pretrained,
            finetuned=dict(self.finetuned), heads=dict(self.heads), datasets=list(self.datasets),
            data_location=self.data_location, device=device or self.device,
            batch_size=self.batch_size, max_eval_samples=self.max_eval_samples,
            num_workers=self.num_workers, openclip_cachedir=self.openclip_cachedir,
            cache_dir=self.cache_dir, **self.options)


def run_job(engine, job: Any, datasets: Sequence[str]) -> Evals:
    """Evaluate one job on ``engine``: a coefficient vector, or a baseline's flat θ; on
    the job's own datasets if it carries them."""
    datasets = getattr(job, "datasets", None) or datasets
    if hasattr(job, "theta"):
        return engine.evaluate_theta(job.theta(engine.tau, engine.theta_pre), datasets)
    return engine.evaluate_at(np.asarray(getattr(job, "coefficients", job), dtype=float),
                              datasets)


@dataclass(frozen=True)
class SubsetJob:
    """A coefficient vector evaluated on its own datasets (a sweep's subset of tasks)."""

    coefficients: tuple[float, ...]
    datasets: tuple[str, ...]


def merged_state(engine, coefficients: Sequence[float]) -> dict[str, Any]:
    """The encoder's state dict at θ(c), copied to the CPU (for writing a model file)."""
    engine.set_coefficients(np.asarray(coefficients, dtype=float))
    return {k: v.detach().to("cpu", copy=True) for k, v in engine.encoder.state_dict().items()}


class LocalEvaluator:
    """Jobs run one after another on a single in-process engine, in submission order."""

    def __init__(self, engine):
        self.engine = engine

    def evaluate(self, jobs: Sequence[Any], datasets: Sequence[str]) -> Iterator[tuple[int, Evals]]:
        for i, job in enumerate(jobs):
            yield i, run_job(self.engine, job, datasets)

    def merged_state(self, coefficients: Sequence[float]) -> dict[str, Any]:
        return merged_state(self.engine, coefficients)

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return self.engine.stats()
