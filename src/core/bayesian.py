"""Adaptive sampling: spend new evaluations where the surrogates are least accurate.

Evaluated coefficients c are mapped to hyperspherical coordinates (radius and T-1 angles
in [0, pi/2]); each angle is cut into equal bins and the joint bins tile the positive
orthant by direction. Every round scores each bin by the surrogates' squared error there
(plus a resampled spread, so a bin whose error rests on one bad point is not over-trusted),
turns the scores into a posterior over bins (shares in proportion to the scores, with a
floor of exploration; each round on its own, not multiplied into the last) and draws new
points from it.

Every step is a small function of arrays and a numpy Generator; `run_rounds` wires them
into the loop and is resumable from already-evaluated points.

A round may instead be proposed by another acquisition (`propose`): `ehvi_proposer`
takes the predicted front's points of largest expected hypervolume improvement under a
bootstrap ensemble of the quadratic fits (src.core.acquisition), the uncertainty-aware
choice qNEHVI makes with a GP; the bins then only fill a round the front cannot.

Why ~490 lines: bins, acquisition, drawing and the round loop share the hyperspherical
bin geometry; about a third is input checking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from map_common.errors import MAPError
from src.core.sampling import (design, from_hyperspherical, lhs_design, min_points,
                               to_hyperspherical)

MAX_TASKS = 6
DEFAULT_LAMBDA = 0.5
# Temperature 1: draws in proportion to each bin's score (see acquisition_posterior).
DEFAULT_TEMPERATURE = 1.0
# Share of every round's draws spread evenly over the bins: no bin is ever given up.
DEFAULT_EXPLORE = 0.1
DEFAULT_RADIUS = (0.2, 0.8)
# An empty bin scores this fraction above the best non-empty bin: first choice, but a
# badly fitted bin still keeps a fair share of the draws.
EMPTY_MARGIN = 0.1
# Squared errors below this fraction of the metric's variance are rounding noise (a fit
# that is exact up to floating point). Scores are compared by their ratios, so that noise
# would otherwise look like real differences between bins.
ERROR_FLOOR = 1e-6
# How a round chooses its points (--bayes-acquisition): where the surrogates err most
# (the bins above), or by expected hypervolume improvement (ehvi_proposer).
ACQUISITIONS = ("error", "ehvi")
INITIAL_DESIGNS = ("grid", "lhs")  # round 0: run_rounds' initial_design, --design

# (C done [n, T], Y done [n, T], k, round r) -> up to k new points [k', T] (a function of
# its arguments alone, so a resumed run proposes what the original did)
Propose = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]

_HALF_PI = math.pi / 2


@dataclass
class BayesianResult:
    """Everything the rounds produced; `records` is JSON-friendly (plain lists/floats)."""

    C: np.ndarray  # (n, T) every evaluated point, in evaluation order
    Y: np.ndarray  # (n, T) metric per task
    round_of_point: np.ndarray  # (n,) 0 for the initial design, r for round r
    records: list[dict[str, Any]] = field(default_factory=list)
    surrogates: list = field(default_factory=list)  # fitted on all of C, Y


# --------------------------------------------------------------------------- bins


def bins_per_angle(T: int) -> int:
    """Bins per angle: 4 for T < 4, 2 for 4 <= T <= 6 (keeps the joint count <= 32)."""
    if not isinstance(T, Integral) or isinstance(T, bool) or T < 2:
        raise MAPError(f"bayesian mode needs at least 2 tasks, got {T!r}")
    if T > MAX_TASKS:
        raise MAPError(
            f"bayesian mode supports at most {MAX_TASKS} tasks, got {T}; "
            "use --method nested for more tasks"
        )
    return 4 if T < 4 else 2


def n_joint_bins(T: int) -> int:
    """Number of joint angular bins for T tasks: bins_per_angle(T) ** (T - 1)."""
    return bins_per_angle(T) ** (T - 1)


def assign_bins(C: np.ndarray, bins: int) -> np.ndarray:
    """Joint bin index (n,) of each row of C (n, T); the first angle is most significant."""
    C = np.atleast_2d(np.asarray(C, dtype=float))
    _, angles = to_hyperspherical(C)
    per_angle = np.floor(np.asarray(angles) / (_HALF_PI / bins)).astype(int)
    # An angle of exactly pi/2 (or rounding just past it) belongs to the last bin.
    per_angle = np.clip(per_angle, 0, bins - 1)
    shape = (bins,) * per_angle.shape[1]
    return np.ravel_multi_index(tuple(per_angle.T), shape).astype(int)


def bin_bounds(index: int | np.ndarray, bins: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Angle bounds of a joint bin: (lo (T-1,), hi (T-1,)); an array of indices adds a leading axis."""
    per_angle = np.stack(np.unravel_index(np.asarray(index), (bins,) * (T - 1)), axis=-1)
    width = _HALF_PI / bins
    return per_angle * width, (per_angle + 1) * width


# --------------------------------------------------------------------------- scores


def squared_errors(surrogates: Sequence, C: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per-point squared error (n,): mean over tasks of (prediction - truth)^2."""
    P = np.column_stack([np.asarray(s.predict(C), dtype=float).reshape(-1) for s in surrogates])
    Y = np.asarray(Y, dtype=float)
    if P.shape != Y.shape:
        raise ValueError(f"surrogate predictions have shape {P.shape}, metrics have {Y.shape}")
    return np.mean((P - Y) ** 2, axis=1)


def bin_scores(
    sq_err: np.ndarray,
    bin_idx: np.ndarray,
    n_joint: int,
    lam: float = DEFAULT_LAMBDA,
    n_resamples: int = 30,
    drop: float = 0.2,
    rng: np.random.Generator | None = None,
    floor: float = 0.0,
) -> np.ndarray:
    """Acquisition score per joint bin (n_joint,): mean squared error + lam * resampled spread.

    Spread: `n_resamples` subsets of the bin's points, each leaving out ceil(drop * m) of
    its m points (at least one point kept, each subset drawn from the full bin); spread is
    the std of the subset means. A bin with one point therefore has spread 0.

    Empty bins: nothing is known there, so they score strictly above every non-empty bin,
    at (1 + EMPTY_MARGIN) * max(best non-empty score, floor), or 1.0 when that is 0. If
    every bin is empty all score 1.0 (a uniform preference). `floor` is the smallest error
    that means anything (see run_rounds): when every bin's error is below it, the empty
    bins still stand out.
    """
    rng = np.random.default_rng() if rng is None else rng
    sq_err = np.asarray(sq_err, dtype=float).reshape(-1)
    bin_idx = np.asarray(bin_idx).reshape(-1)
    if sq_err.shape != bin_idx.shape:
        raise ValueError(f"sq_err has {sq_err.size} entries, bin_idx has {bin_idx.size}")
    if bin_idx.size and (bin_idx.min() < 0 or bin_idx.max() >= n_joint):
        raise ValueError(f"bin indices must lie in [0, {n_joint}), got {bin_idx.min()}..{bin_idx.max()}")
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"drop must be in [0, 1), got {drop}")

    scores = np.zeros(n_joint)
    filled = np.zeros(n_joint, dtype=bool)
    for b in np.unique(bin_idx):
        err = sq_err[bin_idx == b]
        m = err.size
        keep = max(1, m - math.ceil(drop * m))
        subsets = rng.permuted(np.tile(err, (n_resamples, 1)), axis=1)[:, :keep]
        scores[b] = err.mean() + lam * subsets.mean(axis=1).std()
        filled[b] = True

    best = max(scores[filled].max() if filled.any() else 0.0, floor)
    scores[~filled] = best * (1.0 + EMPTY_MARGIN) if best > 0 else 1.0
    return scores


def acquisition_posterior(
    scores: np.ndarray,
    temperature: float = DEFAULT_TEMPERATURE,
    explore: float = DEFAULT_EXPLORE,
) -> np.ndarray:
    """Share of the next draws per bin: (1 - explore) * s^(1/temperature) / sum + explore / n.

    At temperature 1 a bin's share is proportional to its score, so a bin that errs twice
    as much gets twice the draws, and a bin whose error is comparable to the worst keeps a
    comparable share. The power form is a softmax of log-scores: it depends on the ratios
    of the scores only (the metric's scale drops out), temperature < 1 sharpens it and
    > 1 flattens it. `explore` spreads that fraction of the draws evenly, so no bin ever
    gets 0 (the surrogate's error there is only known from the points already drawn).
    The posterior is a function of this round's scores alone: rounds do not compound.
    """
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if scores.size == 0:
        raise ValueError("scores is empty")
    if not np.all(np.isfinite(scores)) or np.any(scores < 0):
        raise ValueError("scores must be finite and non-negative")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= explore <= 1.0:
        raise ValueError(f"explore must be in [0, 1], got {explore}")
    n = scores.size
    top = scores.max()
    if top <= 0:
        return np.full(n, 1.0 / n)
    with np.errstate(divide="ignore"):
        # log space: s^(1/t) for t << 1 would underflow; a zero score stays at weight 0
        logw = np.log(scores / top) / temperature
    w = np.exp(logw - logw.max())
    return (1.0 - explore) * w / w.sum() + explore / n


def draw_counts(posterior: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Bin index of n draws (n,), by systematic resampling: each bin gets floor or ceil of
    n * p_b draws (in expectation exactly n * p_b), so a round of 5 draws follows the
    posterior instead of a multinomial's luck. Shuffled."""
    p = np.asarray(posterior, dtype=float).reshape(-1)
    edges = np.cumsum(p / p.sum())
    edges[-1] = 1.0
    u = (rng.random() + np.arange(n)) / n
    idx = np.searchsorted(edges, u, side="right")
    return rng.permutation(np.minimum(idx, p.size - 1))


def draw_points(
    posterior: np.ndarray,
    n: int,
    bins: int,
    T: int,
    radius: tuple[float, float] = DEFAULT_RADIUS,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """n new points: (C (n, T), bin_idx (n,)).

    Bins follow the posterior (systematic resampling, see draw_counts), angles uniformly
    inside it, the radius uniformly in `radius`; hyperspherical coordinates are mapped back
    to c.
    """
    rng = np.random.default_rng() if rng is None else rng
    p = np.asarray(posterior, dtype=float).reshape(-1)
    if p.size != bins ** (T - 1):
        raise ValueError(f"posterior has {p.size} bins, expected {bins ** (T - 1)}")
    idx = draw_counts(p, n, rng)
    lo, hi = bin_bounds(idx, bins, T)
    angles = rng.uniform(lo, hi)
    r = rng.uniform(radius[0], radius[1], size=n)
    C = np.asarray(from_hyperspherical(r, angles), dtype=float).reshape(n, T)
    return C, idx.astype(int)


# --------------------------------------------------------------------------- schedule


def check_schedule(T: int, n_initial: int, n_update: int, n_iter: int) -> None:
    """Raise MAPError (one line) for a schedule the bayesian mode cannot run."""
    bins_per_angle(T)  # T in [2, 6]
    for name, value in (("n_initial", n_initial), ("n_update", n_update), ("n_iter", n_iter)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value <= 0:
            raise MAPError(f"bayesian {name} must be a positive integer, got {value!r}")
    need = min_points(T)  # (T + 1)(T + 2) / 2
    if n_initial < need:
        raise MAPError(
            f"bayesian n_initial={n_initial} is too small for {T} tasks: the quadratic "
            f"surrogate has {need} parameters, so use at least {need} initial points"
        )


def _check_settings(lam: float, temperature: float, radius: tuple[float, float]) -> None:
    if not (np.isfinite(lam) and lam >= 0):
        raise MAPError(f"bayesian lambda must be a finite number >= 0, got {lam!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise MAPError(f"bayesian temperature must be a finite number > 0, got {temperature!r}")
    if len(radius) != 2 or not (0 < radius[0] <= radius[1] and np.isfinite(radius[1])):
        raise MAPError(f"bayesian radius must be (low, high) with 0 < low <= high, got {radius!r}")


# --------------------------------------------------------------------------- loop


def _as_done(C_done, Y_done, T: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    if C_done is None and Y_done is None:
        return np.zeros((0, T)), np.zeros((0, T))
    if C_done is None or Y_done is None:
        raise ValueError("pass both C_done and Y_done, or neither")
    C_done = np.asarray(C_done, dtype=float).reshape(-1, T)
    Y_done = np.asarray(Y_done, dtype=float).reshape(-1, T)
    if len(C_done) != len(Y_done):
        raise ValueError(f"C_done has {len(C_done)} rows, Y_done has {len(Y_done)}")
    if len(C_done) > total:
        raise MAPError(
            f"the run already holds {len(C_done)} points, more than this schedule's {total}; "
            "resume with the schedule it was started with"
        )
    return C_done, Y_done


def _evaluate(evaluate: Callable[[np.ndarray], np.ndarray], C: np.ndarray, T: int) -> np.ndarray:
    Y = np.asarray(evaluate(C), dtype=float)
    if Y.shape != (len(C), T):
        raise ValueError(f"evaluate returned shape {Y.shape} for {len(C)} points, expected {(len(C), T)}")
    return Y


class Batch(NamedTuple):
    """Points and their metrics, in evaluation order."""

    C: np.ndarray  # (n, T)
    Y: np.ndarray  # (n, T)


class RoundDraw(NamedTuple):
    """One round's acquisition: the new points and the numbers that chose them."""

    points: np.ndarray  # (n_update, T)
    posterior: np.ndarray  # (n_joint,) share of the draws per bin
    scores: np.ndarray  # (n_joint,) bin_scores before the floor
    surrogate_mse: float  # surrogates' error on the data before this round's points


@dataclass(frozen=True)
class Acquisition:
    """The settings that turn the surrogates' errors into new points."""

    T: int
    lam: float = DEFAULT_LAMBDA
    temperature: float = DEFAULT_TEMPERATURE
    explore: float = DEFAULT_EXPLORE
    radius: tuple[float, float] = DEFAULT_RADIUS

    @property
    def bins(self) -> int:
        return bins_per_angle(self.T)

    @property
    def n_joint(self) -> int:
        return self.bins ** (self.T - 1)


def draw_round(
    surrogates: Sequence, data: Batch, n: int, acq: Acquisition, rng: np.random.Generator
) -> RoundDraw:
    """Score the bins by the surrogates' error on `data`, then draw n points from the posterior."""
    err = squared_errors(surrogates, data.C, data.Y)
    floor = ERROR_FLOOR * float(np.mean(np.var(data.Y, axis=0)))
    scores = bin_scores(err, assign_bins(data.C, acq.bins), acq.n_joint, lam=acq.lam, rng=rng,
                        floor=floor)
    # A bin is "as good as perfect" below the floor: lift every score to it so noise
    # differences vanish (real errors far above it are unaffected).
    posterior = acquisition_posterior(np.maximum(scores, floor), acq.temperature, acq.explore)
    C_new, _ = draw_points(posterior, n, acq.bins, acq.T, acq.radius, rng)
    return RoundDraw(C_new, posterior, scores, float(err.mean()))


def complete_batch(
    evaluate: Callable[[np.ndarray], np.ndarray], C_new: np.ndarray, start: int, done: Batch, T: int
) -> Batch:
    """Take the already-done prefix of this batch (rows from `start` on) from `done`,
    evaluate the rest."""
    n_have = int(np.clip(len(done.C) - start, 0, len(C_new)))
    C_new = np.concatenate([done.C[start:start + n_have], C_new[n_have:]])
    Y_new = done.Y[start:start + n_have]
    if n_have < len(C_new):
        Y_new = np.concatenate([Y_new, _evaluate(evaluate, C_new[n_have:], T)])
    return Batch(C_new, Y_new)


def round_record(r: int, points: np.ndarray, n_points: int, posterior: np.ndarray,
                 scores: np.ndarray | None, surrogate_mse: float | None,
                 acquisition: str = "error", proposed: int = 0) -> dict[str, Any]:
    """The JSON-friendly record of round r (see run_rounds)."""
    return {
        "round": r,
        "points": points.tolist(),
        "bin_posterior": posterior.tolist(),
        "bin_scores": None if scores is None else scores.tolist(),
        "surrogate_mse": surrogate_mse,
        "n_points": int(n_points),
        "acquisition": acquisition,
        "proposed": int(proposed),  # of "points", those `propose` chose (the rest: bins)
    }


def ehvi_proposer(link: str, senses: Sequence[str], *, low: float, high: float,
                  n_gen: int, seed: int, min_distance: float) -> Propose:
    """A round by expected hypervolume improvement: fit on every point so far, search the
    predicted front (NSGA-III, as the front step does), then take up to k of its points by
    EHVI under a bootstrap ensemble (src.core.acquisition.ehvi_selector), none within
    ``min_distance`` of an evaluated or chosen point. Round r's ensemble is seeded by
    (seed, r) alone."""
    from src.core.acquisition import ehvi_selector
    from src.core.refine import surrogate_search

    search = surrogate_search(link, senses, low=low, high=high, n_gen=n_gen, seed=seed)

    def propose(C: np.ndarray, Y: np.ndarray, k: int, r: int) -> np.ndarray:
        C_front, F_front = search(C, Y)
        round_seed = int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
        select = ehvi_selector(link, senses, seed=round_seed, min_distance=min_distance)
        return np.atleast_2d(C_front[select(C_front, F_front, C, Y, k)]).reshape(-1, C.shape[1])

    return propose


def _default_fit(link: str | Sequence[str]) -> Callable[[np.ndarray, np.ndarray], list]:
    from src.core.surrogate import fit_surrogates  # imported late: only the default needs it

    def fit(C: np.ndarray, Y: np.ndarray) -> list:
        return fit_surrogates(C, Y, link)

    return fit


def run_rounds(
    evaluate: Callable[[np.ndarray], np.ndarray],
    T: int,
    *,
    n_initial: int,
    n_update: int,
    n_iter: int,
    link: str | Sequence[str] = "sigmoid",
    low: float = 0.0,
    high: float = 1.0,
    lam: float = DEFAULT_LAMBDA,
    temperature: float = DEFAULT_TEMPERATURE,
    radius: tuple[float, float] = DEFAULT_RADIUS,
    seed: int = 0,
    explore: float = DEFAULT_EXPLORE,
    fit: Callable[[np.ndarray, np.ndarray], list] | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    C_done: np.ndarray | None = None,
    Y_done: np.ndarray | None = None,
    propose: Propose | None = None,
    acquisition: str = "error",
    initial_design: str = "grid",
) -> BayesianResult:
    """Initial design, then n_iter rounds of fit -> score bins -> posterior -> draw -> evaluate.

    Resuming: `C_done, Y_done` are the points an earlier run with the same schedule and
    seed already evaluated, in evaluation order. They are used as given and not evaluated
    again. Each round's generator is np.random.default_rng([seed, round]) and everything
    else is recomputed from the data, so a resumed run draws the points the original run
    would have drawn.

    ``initial_design``: round 0's points. grid: the one-hot models, the plain
    task-arithmetic diagonal point, coarse-grid points (the original's); lhs: the one-hot
    models, the box's centre, a Latin hypercube (sampling.lhs_design, map's --design lhs).

    Records: one per round, round 0 being the initial design (its "bin_scores" and
    "surrogate_mse" are None). "points" are the round's new points, "n_points" the total
    after the round, "surrogate_mse" the surrogates' error on the data before the round's
    new points. `on_round(record)` is called after each round.

    `fit(C, Y)` returns one fitted regressor per task (anything with predict); the default
    is src.core.surrogate.fit_surrogates(C, Y, link).

    `propose(C, Y, n_update, r)`, when given, chooses each round's points first (e.g.
    ehvi_proposer); when it offers fewer than n_update, the bins draw the rest. Records name
    the round's `acquisition` and how many points it `proposed`.
    """
    check_schedule(T, n_initial, n_update, n_iter)
    _check_settings(lam, temperature, radius)
    if not 0.0 <= explore <= 1.0:
        raise MAPError(f"bayesian explore must be in [0, 1], got {explore!r}")
    fit = _default_fit(link) if fit is None else fit
    acq = Acquisition(T, lam=lam, temperature=temperature, explore=explore, radius=radius)
    done = Batch(*_as_done(C_done, Y_done, T, n_initial + n_update * n_iter))
    records: list[dict[str, Any]] = []

    def finish(record: dict[str, Any]) -> None:
        records.append(record)
        if on_round is not None:
            on_round(record)

    # round 0 by the design's own seed stream; later rounds use [seed, r]
    if initial_design == "lhs":
        C0 = lhs_design(T, n_initial, low, high, seed)
    elif initial_design == "grid":
        C0 = design(T, n_initial, low=low, high=high, n_diagonal=1, n_disturbed=0, seed=seed)
    else:
        raise ValueError(f"initial_design must be one of {INITIAL_DESIGNS}, not "
                         f"{initial_design!r}")
    C0 = np.asarray(C0, dtype=float)
    data = complete_batch(evaluate, C0, 0, done, T)
    rounds = np.zeros(len(data.C), dtype=int)
    uniform = np.full(acq.n_joint, 1.0 / acq.n_joint)
    finish(round_record(0, data.C, len(data.C), uniform, None, None))

    for r in range(1, n_iter + 1):
        proposed = np.zeros((0, T)) if propose is None else \
            np.asarray(propose(data.C, data.Y, n_update, r), dtype=float).reshape(-1, T)[:n_update]
        drawn = draw_round(fit(*data), data, n_update - len(proposed), acq,
                           np.random.default_rng([seed, r]))
        new = complete_batch(evaluate, np.concatenate([proposed, drawn.points]), len(data.C),
                             done, T)
        data = Batch(np.concatenate([data.C, new.C]), np.concatenate([data.Y, new.Y]))
        rounds = np.concatenate([rounds, np.full(len(new.C), r)])
        finish(round_record(r, new.C, len(data.C), drawn.posterior, drawn.scores,
                            drawn.surrogate_mse, acquisition, len(proposed)))

    return BayesianResult(C=data.C, Y=data.Y, round_of_point=rounds, records=records,
                          surrogates=fit(data.C, data.Y))
