"""Comparators for the front-quality bench: uniform random search and BoTorch's qLogNEHVI.

Both take `evaluate(C [n, T]) -> Y [n, K]` (real evaluations, larger is better, e.g.
accuracies) and return every point they evaluated, in order: (C [budget, T], Y [budget, K]).
Their front is the non-dominated part of Y; every row is a real evaluation, so nothing needs
re-evaluating. BoTorch is a bench-only dependency (`pip install botorch`, extra "bench") and
is imported only when botorch_qnehvi runs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Evaluate = Callable[[np.ndarray], np.ndarray]


def _check(T: int, budget: int, low: float, high: float) -> None:
    if T < 1 or budget < 1:
        raise ValueError(f"T={T} and budget={budget} must be positive")
    if not low < high:
        raise ValueError(f"low={low} must be below high={high}")


def _call(evaluate: Evaluate, C: np.ndarray) -> np.ndarray:
    Y = np.asarray(evaluate(C), dtype=float)
    if Y.ndim != 2 or len(Y) != len(C):
        raise ValueError(f"evaluate returned shape {Y.shape} for {len(C)} points")
    return Y


def random_search(evaluate: Evaluate, T: int, budget: int, low: float = 0.0,
                  high: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`budget` coefficient vectors uniform in [low, high]^T, each merged and evaluated."""
    _check(T, budget, low, high)
    C = np.random.default_rng(seed).uniform(low, high, size=(budget, T))
    return C, _call(evaluate, C)


def botorch_qnehvi(evaluate: Evaluate, T: int, budget: int, low: float = 0.0,
                   high: float = 1.0, seed: int = 0, *, n_initial: int | None = None,
                   batch_size: int = 5, mc_samples: int = 32, num_restarts: int = 2,
                   raw_samples: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Multi-objective Bayesian optimisation: Sobol start, then batches chosen by qLogNEHVI.

    One GP per objective (SingleTaskGP, inputs normalised to the box, outcomes
    standardised; they are fitted by marginal likelihood every batch). The acquisition's
    reference point is the worst observed value of each objective minus 10% of its range,
    recomputed each batch (BoTorch's usual heuristic: nothing about the truth is used).
    n_initial defaults to 2(T + 1) Sobol points (at most the budget).
    """
    import torch
    from botorch.acquisition.multi_objective.logei import \
        qLogNoisyExpectedHypervolumeImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import ModelListGP, SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler
    from botorch.utils.sampling import draw_sobol_samples
    from gpytorch.mlls import SumMarginalLogLikelihood

    _check(T, budget, low, high)
    n_initial = min(budget, n_initial or 2 * (T + 1))
    torch.manual_seed(seed)
    bounds = torch.tensor([[low] * T, [high] * T], dtype=torch.double)
    X = draw_sobol_samples(bounds=bounds, n=n_initial, q=1, seed=seed).squeeze(1)
    Y = torch.as_tensor(_call(evaluate, X.numpy()), dtype=torch.double)
    K = Y.shape[1]
    while len(X) < budget:
        q = min(batch_size, budget - len(X))
        models = [SingleTaskGP(X, Y[:, k:k + 1], input_transform=Normalize(d=T, bounds=bounds),
                               outcome_transform=Standardize(m=1)) for k in range(K)]
        model = ModelListGP(*models)
        fit_gpytorch_mll(SumMarginalLogLikelihood(model.likelihood, model))
        span = (Y.max(dim=0).values - Y.min(dim=0).values).clamp_min(1e-6)
        ref = Y.min(dim=0).values - 0.1 * span
        acqf = qLogNoisyExpectedHypervolumeImprovement(
            model=model, ref_point=ref.tolist(), X_baseline=X, prune_baseline=True,
            sampler=SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed))
        candidates, _ = optimize_acqf(acqf, bounds=bounds, q=q, num_restarts=num_restarts,
                                      raw_samples=raw_samples, sequential=True,
                                      options={"batch_limit": 5, "maxiter": 50})
        candidates = candidates.detach()
        Y_new = torch.as_tensor(_call(evaluate, candidates.numpy()), dtype=torch.double)
        X, Y = torch.cat([X, candidates]), torch.cat([Y, Y_new])
    return X.numpy(), Y.numpy()
