"""Single merged models to compare with the MAP front (the original MAP figure's baselines).

Each baseline is a small picklable dataclass with

* ``name``: the label drawn in figures and written in results,
* ``describe() -> dict``: method, coefficients and hyperparameters (JSON-able),
* ``theta(tau, theta_pre) -> Tensor[P]``: the flat merged weights, a new tensor; ``tau``
  ([T, P], MergeEngine.tau) and ``theta_pre`` ([P]) are never modified,
* ``coefficients``: the vector c when the model is theta_pre + sum_i c_i tau'_i (tau' = tau,
  or tau after the transform named by ``vectors``), so it can be drawn in coefficient
  space; None for the disjoint-mean merges (TIES-merging, DARE-TIES) and SLERP.

``default_baselines`` builds the set of the figure. Its defaults:

* Task Arithmetic, one shared lambda = 0.8: the coefficient of the task-vector addition
  example in the README of mlfoundations/task_vectors (``apply_to(..., scaling_coef=0.8)``;
  the paper, Ilharco et al., ICLR 2023, picks lambda on held-out validation data).
* A sweep of shared lambdas (group ``"ta_sweep"``); ``pick_tuned`` returns the best one,
  named as tuned on the evaluation data (it saw the data it is scored on).
* TIES-merging with density 0.2 (top-20%) and lambda 1 for the disjoint mean, the TIES
  paper's defaults (Yadav et al., NeurIPS 2023).
* DARE-TA (DARE then task arithmetic with the shared lambda above) and DARE-TIES (DARE
  then sign election and disjoint mean, lambda 1, no trim, as mergekit's dare_ties), drop
  rate 0.9 (Yu et al., ICML 2024: 90% of delta parameters can be dropped), seed fixed.
* TA with preference: c_i = T * lambda * w_i with w the preference normalised to sum 1,
  so a uniform preference gives plain Task Arithmetic (one baseline per preference).
* SLERP of the two task vectors (T = 2 only) at a few t: theta_pre + slerp(tau_1, tau_2, t).
* The average of the fine-tuned models: c_i = 1/T.

``AdaMergingBaseline`` holds coefficients learned elsewhere (task_vectors.adamerging, which
needs an engine's forward pass; src.run.baselines learns them): its ``theta`` only merges.

Semantics of the merge operations: ``task_vectors.merging``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from map_common.errors import MAPError
from map_common.preferences import normalised_weights
from task_vectors import merging

# mlfoundations/task_vectors README, "adding task vectors" example: scaling_coef=0.8.
TA_DEFAULT_LAMBDA = 0.8
TA_SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# TIES paper defaults: keep the top 20% per task, lambda 1 on the disjoint mean.
TIES_DENSITY = 0.2
TIES_LAMBDA = 1.0
# DARE paper: dropping 90% of the delta parameters keeps the fine-tuned abilities.
DARE_DROP_RATE = 0.9
SLERP_T = (0.25, 0.5, 0.75)
SWEEP_GROUP = "ta_sweep"

__all__ = ["Baseline", "TaskArithmetic", "TIESMerging", "DARETaskArithmetic", "DARETIES",
           "SLERP", "AdaMergingBaseline", "default_baselines", "pick_tuned",
           "TA_DEFAULT_LAMBDA", "TA_SWEEP", "TIES_DENSITY", "TIES_LAMBDA", "DARE_DROP_RATE", "SLERP_T", "SWEEP_GROUP"]


def _check_inputs(tau: torch.Tensor, theta_pre: torch.Tensor, what: str) -> None:
    if not isinstance(tau, torch.Tensor) or not isinstance(theta_pre, torch.Tensor):
        raise TypeError(f"{what}: tau and theta_pre must be tensors")
    if tau.ndim != 2 or theta_pre.ndim != 1 or tau.shape[1] != theta_pre.shape[0]:
        raise ValueError(f"{what}: need tau [T, P] and theta_pre [P], got "
                         f"{tuple(tau.shape)} and {tuple(theta_pre.shape)}")


def _plus_pre(theta_pre: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return delta.to(theta_pre.dtype).add_(theta_pre.to(delta.device))


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass
class Baseline:
    """Base of the baselines: subclasses set ``name`` and implement theta/describe."""

    name: str

    @property
    def coefficients(self) -> tuple[float, ...] | None:
        return None

    @property
    def family(self) -> str:
        """The legend label shared by related baselines (all SLERP t, all preferences)."""
        return self.name

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def theta(self, tau: torch.Tensor, theta_pre: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class TaskArithmetic(Baseline):
    """theta_pre + sum_i c_i tau_i. ``group`` marks members of a sweep (``pick_tuned``);
    ``details`` are extra JSON-able facts for describe() (lambda, preference, ...)."""

    coefs: tuple[float, ...] = ()
    group: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def coefficients(self) -> tuple[float, ...]:
        return self.coefs

    @property
    def family(self) -> str:
        return str(self.details.get("family", self.name))

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "method": "task_arithmetic", "vectors": "tau",
               "coefficients": list(self.coefs)}
        if self.group:
            out["group"] = self.group
        return out | dict(self.details)

    @torch.no_grad()
    def theta(self, tau: torch.Tensor, theta_pre: torch.Tensor) -> torch.Tensor:
        _check_inputs(tau, theta_pre, self.name)
        if len(self.coefs) != tau.shape[0]:
            raise ValueError(f"{self.name}: {len(self.coefs)} coefficients for "
                             f"{tau.shape[0]} task vectors")
        c = torch.tensor(self.coefs, dtype=tau.dtype, device=tau.device)
        return torch.addmv(theta_pre.to(tau.device, tau.dtype), tau.T, c).to(theta_pre.dtype)


@dataclass
class TIESMerging(Baseline):
    """theta_pre + lambda * disjoint mean of the trimmed, sign-agreeing task vectors."""

    density: float = TIES_DENSITY
    lam: float = TIES_LAMBDA

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "method": "ties_merging", "density": self.density,
                "lambda": self.lam}

    def theta(self, tau: torch.Tensor, theta_pre: torch.Tensor) -> torch.Tensor:
        _check_inputs(tau, theta_pre, self.name)
        return _plus_pre(theta_pre, merging.ties_merge_flat(tau, self.density, self.lam))


@dataclass
class DARETaskArithmetic(Baseline):
    """theta_pre + sum_i c_i dare(tau_i), one fixed seeded mask."""

    coefs: tuple[float, ...] = ()
    drop_rate: float = DARE_DROP_RATE
    seed: int = 0

    @property
    def coefficients(self) -> tuple[float, ...]:
        return self.coefs

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "method": "dare_task_arithmetic", "vectors": "dare",
                "coefficients": list(self.coefs), "drop_rate": self.drop_rate,
                "seed": self.seed}

    def theta(self, tau: torch.Tensor, theta_pre: torch.Tensor) -> torch.Tensor:
        _check_inputs(tau, theta_pre, self.name)
        return _plus_pre(theta_pre, merging.dare_ta_flat(tau, self.coefs, self.drop_rate,
                                                         self.seed))


@dataclass
class DARETIES(Baseline):
    """theta_pre + lambda * disjoint mean of the sign-agreeing DARE'd task vectors
    (trimmed first only when ``density`` is set)."""

    drop_rate: float = DARE_DROP_RATE
    seed: int = 0
    lam: float = TIES_LAMBDA
    density: float | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "method": "dare_ties", "drop_rate": self.drop_rate,
                "seed": self.seed, "lambda": self.lam, "density": self.density}

    def theta(self, tau: torch.Tensor, theta_pre: torch.Tensor) -> torch.Tensor:
        _check_inputs(tau, theta_pre, self.name)
        return _plus_pre(theta_pre, merging.dare_ties_merge_flat(
            tau, self.drop_rate, self.seed, lam=self.lam, density=self.density))


@dataclass
class SLERP(Baseline):
    """theta_pre + slerp(tau_a, tau_b, t) for the task pair ``pair``."""

    t: float = 0.5
    pair: tuple[int, int] = (0, 1)

    @property
    def family(self) -> str:
        return "SLERP"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "method": "slerp", "t": self.t, "pair": list(self.pair)}

    def theta(self, tau: torch.Tensor, theta_pre: torch.Tensor) -> torch.Tensor:
        _check_inputs(tau, theta_pre, self.name)
        a, b = self.pair
        if not (0 <= a < tau.shape[0] and 0 <= b < tau.shape[0]) or a == b:
            raise ValueError(f"{self.name}: pair {self.pair} is not two of the "
                             f"{tau.shape[0]} tasks")
        return _plus_pre(theta_pre, merging.slerp_flat(tau[a], tau[b], self.t))


@dataclass
class AdaMergingBaseline(Baseline):
    """theta_pre + sum_i lambda_i tau'_i with learned AdaMerging coefficients: ``lambdas``
    [T] (task-wise) or [T][L] (layer-wise, tensor l = columns ``spans[l]`` of tau);
    tau' = tau (``vectors="ta"``) or its TIES vectors at ``density`` ("ties": ++, computed
    on a copy of tau, which is left untouched). ``details``: JSON-able facts (settings,
    steps, entropy) for describe()."""

    lambdas: tuple = ()
    spans: tuple[tuple[int, int], ...] = ()
    vectors: str = "ta"
    density: float = TIES_DENSITY
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def granularity(self) -> str:
        return "layer" if self.lambdas and isinstance(self.lambdas[0], (tuple, list)) \
            else "task"

    @property
    def coefficients(self) -> tuple[float, ...] | None:
        # a point in the coefficient space of the plain task vectors only when task-wise
        return tuple(float(x) for x in self.lambdas) \
            if self.granularity == "task" and self.vectors == "ta" else None

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "method": "adamerging", "granularity": self.granularity,
               "vectors": self.vectors,
               "coefficients": [list(map(float, r)) if isinstance(r, (tuple, list))
                                else float(r) for r in self.lambdas]}
        if self.vectors == "ties":
            out["density"] = self.density
        return out | dict(self.details)

    @torch.no_grad()
    def theta(self, tau: torch.Tensor, theta_pre: torch.Tensor) -> torch.Tensor:
        from task_vectors.adamerging import Layout, merged_flat

        _check_inputs(tau, theta_pre, self.name)
        lam = np.asarray(self.lambdas, dtype=float)
        if lam.shape[0] != tau.shape[0]:
            raise ValueError(f"{self.name}: {lam.shape[0]} tasks' coefficients for "
                             f"{tau.shape[0]} task vectors")
        if lam.ndim == 2 and (len(self.spans) != lam.shape[1] or
                              self.spans[-1][1] != tau.shape[1]):
            raise ValueError(f"{self.name}: {lam.shape[1]} layers' coefficients do not fit "
                             f"{len(self.spans)} spans over {tau.shape[1]} weights")
        vectors = tau if self.vectors == "ta" else \
            merging.ties_vectors(tau.clone(), merging._check_density(self.density))
        spans = self.spans if lam.ndim == 2 else ((0, tau.shape[1]),)
        return merged_flat(theta_pre.to(tau.device), vectors, lam, Layout.of_spans(spans)
                           ).to(theta_pre.dtype)


def _preferences(preference: Any, T: int) -> list[np.ndarray]:
    """One or several preference vectors (1-D or 2-D), each normalised to sum 1."""
    if preference is None:
        return []
    try:
        p = np.asarray(preference, dtype=float)
    except (TypeError, ValueError):
        raise MAPError(f"preference must be numbers, got {preference!r}") from None
    rows = p.reshape(1, -1) if p.ndim == 1 else p
    if rows.ndim != 2 or rows.shape[1] != T:
        raise MAPError(f"preference needs {T} weights (one per task), got shape {p.shape}")
    out = []
    for w in rows:
        message = f"preference weights must be non-negative with a positive sum, got {w.tolist()}"
        out.append(normalised_weights(w, T, lambda _problem: MAPError(message)))
    return out


def _fmt(x: float) -> str:
    return f"{x:g}"


def default_baselines(T: int, preference: Sequence[float] | Sequence[Sequence[float]] | None
                      = None, *, ta_lambda: float = TA_DEFAULT_LAMBDA,
                      ta_sweep: Sequence[float] = TA_SWEEP, ties_density: float = TIES_DENSITY,
                      ties_lambda: float = TIES_LAMBDA, dare_drop_rate: float = DARE_DROP_RATE,
                      seed: int = 0, slerp_t: Sequence[float] = SLERP_T) -> list[Baseline]:
    """The baselines of the original MAP figure for T tasks (see the module docstring).

    ``preference`` is one weight vector or several (rows); None adds no TA-with-preference
    baseline. ``ta_sweep=()`` or ``slerp_t=()`` leaves those out.
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    T = int(T)
    ta_lambda = float(ta_lambda)
    if not math.isfinite(ta_lambda):
        raise MAPError(f"the Task Arithmetic lambda must be finite, got {ta_lambda}")
    merging._check_density(ties_density)
    merging._check_drop_rate(dare_drop_rate)
    merging._check_seed(seed)
    out: list[Baseline] = [
        TaskArithmetic("Task Arithmetic (TA)", _floats([ta_lambda] * T),
                       details={"lambda": ta_lambda}),
    ]
    out += [TaskArithmetic(f"TA, lambda={_fmt(lam)}", _floats([lam] * T), group=SWEEP_GROUP,
                           details={"lambda": float(lam), "family": "TA, lambda sweep"})
            for lam in ta_sweep]
    out += [
        TIESMerging("TIES-merging", float(ties_density), float(ties_lambda)),
        DARETaskArithmetic("DARE-TA", _floats([ta_lambda] * T), float(dare_drop_rate),
                           int(seed)),
        DARETIES("DARE-TIES", float(dare_drop_rate), int(seed), float(ties_lambda)),
    ]
    for w in _preferences(preference, T):
        c = T * ta_lambda * w
        label = ", ".join(_fmt(round(x, 3)) for x in w)
        out.append(TaskArithmetic(f"TA with preference ({label})", _floats(c),
                                  details={"lambda": ta_lambda,
                                           "preference": [float(x) for x in w],
                                           "family": "TA with preference"}))
    if T == 2:
        out += [SLERP(f"SLERP, t={_fmt(t)}", float(t)) for t in slerp_t]
    out.append(TaskArithmetic("Fine-tuned average", _floats([1.0 / T] * T)))
    return out


def pick_tuned(baselines: Sequence[Baseline], scores: Sequence[float], *,
               group: str = SWEEP_GROUP, higher_is_better: bool = True) -> TaskArithmetic:
    """The best member of a sweep by ``scores`` (one per baseline, e.g. the mean metric
    over tasks), renamed to say it was tuned on the data it is evaluated on."""
    if len(scores) != len(baselines):
        raise ValueError(f"{len(scores)} scores for {len(baselines)} baselines")
    members = [(float(s), b) for b, s in zip(baselines, scores)
               if isinstance(b, TaskArithmetic) and b.group == group]
    if not members:
        raise ValueError(f"no baseline in group {group!r}")
    if not all(math.isfinite(s) for s, _ in members):
        raise ValueError("sweep scores must be finite")
    pick = max if higher_is_better else min
    score, best = pick(members, key=lambda sb: sb[0])
    lam = best.details.get("lambda")
    name = "TA, tuned" + (f" (lambda={_fmt(lam)})" if lam is not None else "")
    details = {k: v for k, v in best.details.items() if k != "family"}
    return TaskArithmetic(name, best.coefs, details=details | {
        "tuned_on": "evaluation data", "selected_from": best.name, "score": score})
