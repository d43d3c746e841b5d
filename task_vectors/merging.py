"""Merging methods as pure torch functions.

Two layers:

* Dict task vectors (name -> tensor): ``task_arithmetic`` and
  ``apply``, the plain reference used to check MergeEngine.
* The flat ``[T, P]`` task-vector matrix ``tau`` that MergeEngine holds (row i = task i's
  vector, every mergeable weight flattened in one order). Real sizes are T = 8 and
  P ~ 113M (ViT-B-32), so these functions work in column chunks of ``CHUNK`` entries and
  never build a temporary of the whole matrix (at most one row-sized temporary, for a
  trim threshold).

Why one file of ~460 lines: TIES, DARE and their merges share the chunked column loop, the
trim thresholds, the sign election and the seeded masks; split, each would import the rest.

In-place / new-tensor contract:

* ``*_vectors(tau, ...)`` (``ties_vectors``, ``dare_vectors``, ``dare_ties_vectors``)
  rewrite ``tau`` IN PLACE and return it. They keep one vector per task, so a merge
  coefficient c_i still scales task i: the MAP search then runs on
  theta(c) = theta_pre + sum_i c_i tau'_i. These are the engine's ``tau_transform``.
* ``*_flat(...)`` (``ties_merge_flat``, ``dare_ties_merge_flat``, ``dare_ta_flat``,
  ``slerp_flat``) never modify their inputs and return a new ``[P]`` tensor: the
  theta-delta of one merged model (theta = theta_pre + delta).

Semantics (all on rows of tau; ``k(n) = min(n, max(1, round(density * n)))``):

TIES, Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
NeurIPS 2023 (arXiv:2306.01708).
  Trim: row i keeps the entries with |tau_ij| >= its k(P)-th largest magnitude (the
  threshold is over the whole row, all weights together; ties at the threshold are all
  kept). Elect: s_j = sign(sum_i trimmed_ij). ``ties_vectors`` then zeroes every entry
  whose sign differs from s_j (where s_j = 0, i.e. the trimmed column sums to exactly 0,
  the whole column is zeroed). ``ties_merge_flat`` is the paper's merged model:
  delta_j = lam * mean{trimmed_ij : trimmed_ij != 0, sign = s_j} (0 if none): the
  "disjoint mean", paper default lam = 1 with density 0.2 (top-20%).

DARE, Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous
Models as a Free Lunch", ICML 2024 (arXiv:2311.03099).
  Each entry is dropped with probability p and survivors are divided by (1 - p), so
  E[tau'] = tau. The paper shows 90% (even 99%) of delta parameters can be dropped; we
  default to p = 0.9. The mask is a pure function of (seed, task row, position): row i's
  entries are drawn in blocks of ``MASK_BLOCK`` from a CPU ``torch.Generator`` seeded
  from numpy ``SeedSequence([seed, i, block])``, entry kept iff u >= p. So the mask does
  not depend on the device, on the chunking, or on the other rows (``dare_mask``).

DARE-TIES (the common definition, as in mergekit's ``dare_ties``): DARE on every row,
  then TIES sign election on the DARE'd rows; by default NO magnitude trim (the random
  drop replaces it). ``density`` optionally adds the TIES trim after the drop (the DARE
  paper's "DARE + TIES-Merging" variant). ``dare_ties_vectors`` keeps per-task rows;
  ``dare_ties_merge_flat`` is the disjoint mean of the sign-agreeing DARE'd entries
  times lam (mergekit's dare_ties with unit weights and normalisation).

DARE-TA: theta = theta_pre + sum_i c_i dare(tau_i) (``dare_ta_flat``; equal to
  ``dare_vectors`` followed by task arithmetic, without copying tau).

SLERP of task vectors (``slerp_flat``): with cos(Omega) = <a, b> / (|a| |b|),
  slerp(a, b, t) = sin((1-t) Omega)/sin(Omega) a + sin(t Omega)/sin(Omega) b, and the
  merged model is theta_pre + slerp(tau_a, tau_b, t). Where sin(Omega) is tiny (nearly
  parallel or anti-parallel vectors) or a vector is zero it falls back to the linear
  (1-t) a + t b. Dot products and norms are accumulated in float64.

Integer buffers are never merged (``is_mergeable``); MergeEngine leaves them out of tau.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from map_common.errors import MAPError
from task_vectors.task_vector import is_mergeable

Vector = Mapping[str, torch.Tensor]

# Columns processed at a time: 8 tasks x 4M float32 = 128 MiB of temporaries.
CHUNK = 1 << 22
# DARE mask block: part of the mask's definition (changing it changes every mask).
MASK_BLOCK = 1 << 22

__all__ = ["task_arithmetic", "apply", "ties_vectors", "dare_mask", "dare_vectors",
           "dare_ties_vectors", "ties_merge_flat", "dare_ties_merge_flat", "dare_ta_flat",
           "slerp_flat", "trim_thresholds", "tau_transform", "MERGE_METHODS"]

from task_vectors.names import MERGE_METHODS  # noqa: E402  (torch-free, for the parser)


# ------------------------------------------------------------------ dict task vectors

def _common_keys(task_vectors: Sequence[Vector], what: str) -> list[str]:
    """The mergeable keys present in every vector (in the first vector's order), after
    checking that each key has one shape across the vectors."""
    if isinstance(task_vectors, Mapping) or not isinstance(task_vectors, Sequence):
        raise MAPError(f"{what}: expected a sequence of task vectors (dicts name -> tensor)")
    if len(task_vectors) == 0:
        raise MAPError(f"{what}: no task vectors given")
    for i, tv in enumerate(task_vectors):
        if not isinstance(tv, Mapping):
            raise MAPError(f"{what}: task vector {i} is a {type(tv).__name__}, "
                           "not a dict name -> tensor")
        bad = [k for k, v in tv.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise MAPError(f"{what}: task vector {i} entry '{bad[0]}' is not a tensor")
    first = task_vectors[0]
    keys = [k for k, v in first.items() if is_mergeable(v)
            and all(k in tv and is_mergeable(tv[k]) for tv in task_vectors[1:])]
    if not keys:
        raise MAPError(f"{what}: the task vectors share no floating-point weights")
    for k in keys:
        shape = first[k].shape
        for i, tv in enumerate(task_vectors[1:], start=1):
            if tv[k].shape != shape:
                raise MAPError(f"{what}: weight '{k}' has shape {tuple(tv[k].shape)} in task "
                               f"vector {i} but {tuple(shape)} in task vector 0")
    return keys


def _check_coefficients(coefficients: Sequence[float], n: int, what: str) -> list[float]:
    try:
        values = [float(c) for c in np.asarray(coefficients, dtype=float).reshape(-1)]
    except (TypeError, ValueError):
        raise MAPError(f"{what}: coefficients must be numbers, got {coefficients!r}") from None
    if len(values) != n:
        raise MAPError(f"{what}: {n} task vectors but {len(values)} coefficients")
    if not all(math.isfinite(c) for c in values):
        raise MAPError(f"{what}: coefficients must be finite, got {values}")
    return values


@torch.no_grad()
def task_arithmetic(task_vectors: Sequence[Vector], coefficients: Sequence[float]
                    ) -> dict[str, torch.Tensor]:
    """sum_i c_i tau_i over the floating-point keys present in every task vector."""
    keys = _common_keys(task_vectors, "task arithmetic")
    c = _check_coefficients(coefficients, len(task_vectors), "task arithmetic")
    out = {}
    for k in keys:
        ref = task_vectors[0][k]
        acc = ref.mul(c[0])
        for ci, tv in zip(c[1:], task_vectors[1:]):
            acc.add_(tv[k].to(ref.device, ref.dtype), alpha=ci)
        out[k] = acc
    return out


@torch.no_grad()
def apply(pretrained_state_dict: Mapping[str, torch.Tensor], merged_vector: Vector
          ) -> dict[str, torch.Tensor]:
    """theta_pre + tau as a new state dict. Weights tau lacks and integer tensors are copies
    of theta_pre's; tau is cast to each weight's dtype and device."""
    if not isinstance(pretrained_state_dict, Mapping) or not pretrained_state_dict:
        raise MAPError("apply: the pretrained state dict is empty or not a dict")
    if not isinstance(merged_vector, Mapping):
        raise MAPError(f"apply: expected a dict name -> tensor, got "
                       f"{type(merged_vector).__name__}")
    unknown = [k for k in merged_vector if k not in pretrained_state_dict]
    if unknown:
        raise MAPError(f"apply: the pretrained weights lack {len(unknown)} keys of the merged "
                       f"vector, e.g. '{unknown[0]}'")
    out = {}
    for k, p in pretrained_state_dict.items():
        tau = merged_vector.get(k)
        if tau is None or not is_mergeable(p):
            out[k] = p.clone()
            continue
        if not isinstance(tau, torch.Tensor):
            raise MAPError(f"apply: merged entry '{k}' is not a tensor")
        if tau.shape != p.shape:
            raise MAPError(f"apply: weight '{k}' has shape {tuple(p.shape)} but the merged "
                           f"vector has {tuple(tau.shape)}")
        out[k] = p + tau.to(p.device, p.dtype)
    return out


# ------------------------------------------------------------------ checks

def _check_fraction(value: float, name: str, *, low_open: bool, high_open: bool) -> float:
    """A user setting (--ties-density, --dare-drop-rate): a MAPError when out of range."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MAPError(f"{name} must be a number, got {value!r}") from None
    ok_low = value > 0.0 if low_open else value >= 0.0
    ok_high = value < 1.0 if high_open else value <= 1.0
    if not (ok_low and ok_high):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise MAPError(f"{name} must lie in {interval}, got {value}")
    return value


def _check_density(density: float) -> float:
    return _check_fraction(density, "TIES density", low_open=True, high_open=False)


def _check_drop_rate(drop_rate: float) -> float:
    return _check_fraction(drop_rate, "DARE drop_rate", low_open=False, high_open=True)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MAPError(f"DARE seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_scale(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MAPError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise MAPError(f"{name} must be finite, got {value}")
    return value


def _check_matrix(tau: torch.Tensor, what: str) -> torch.Tensor:
    # Wrong shapes or types here are the caller's bug, not the user's: plain errors.
    if not isinstance(tau, torch.Tensor):
        raise TypeError(f"{what}: tau must be a torch.Tensor, got {type(tau).__name__}")
    if tau.ndim != 2 or not tau.is_floating_point():
        raise ValueError(f"{what}: tau must be a floating [T, P] matrix, got "
                         f"{tau.dtype} of shape {tuple(tau.shape)}")
    return tau


def _chunks(n: int, size: int = 0):
    size = size or CHUNK
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _keep_count(n: int, density: float) -> int:
    return min(n, max(1, round(density * n)))


# ------------------------------------------------------------------ TIES

@torch.no_grad()
def trim_thresholds(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Per row, the k-th largest magnitude, k = max(1, round(density * P)): [T, 1].

    One row-sized temporary at a time (|row| and kthvalue's working copy), never a sorted
    copy of the whole matrix.
    """
    _check_matrix(tau, "TIES trim")
    density = _check_density(density)
    n = tau.shape[1]
    keep = _keep_count(n, density)
    out = tau.new_empty((tau.shape[0], 1))
    for i in range(tau.shape[0]):
        if keep == n:  # density 1 keeps everything (also when the row has zeros)
            out[i, 0] = 0.0
            continue
        # The keep-th largest magnitude is the (n - keep + 1)-th smallest.
        out[i, 0] = tau[i].abs().kthvalue(n - keep + 1).values
    return out


def _elect_(chunk: torch.Tensor) -> torch.Tensor:
    """Zero, in place, the entries of a [T, c] chunk whose sign differs from the sign of
    the column sum; returns the elected signs [c]."""
    elected = torch.sign(chunk.sum(dim=0))
    chunk.masked_fill_(torch.sign(chunk) != elected, 0.0)
    return elected


@torch.no_grad()
def ties_vectors(tau: torch.Tensor, density: float = 0.2) -> torch.Tensor:
    """TIES trim and sign election per task, IN PLACE; returns ``tau``.

    Row i keeps its top-``density`` magnitudes, then every kept entry whose sign differs
    from the elected sign of its column is zeroed. Each row stays task i's own vector.
    """
    _check_matrix(tau, "TIES")
    threshold = trim_thresholds(tau, density)
    for start, stop in _chunks(tau.shape[1]):
        chunk = tau[:, start:stop]
        chunk.masked_fill_(chunk.abs() < threshold, 0.0)
        _elect_(chunk)
    return tau


# ------------------------------------------------------------------ DARE

def _block_generator(seed: int, row: int, block: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, row, block]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state))


def dare_mask(row: int, start: int, stop: int, drop_rate: float, seed: int) -> torch.Tensor:
    """The DARE keep-mask of task ``row`` over columns [start, stop), a CPU bool tensor.

    Entry j of row i is kept iff u >= drop_rate, u the (j mod MASK_BLOCK)-th draw of
    torch.rand from a CPU generator seeded by SeedSequence([seed, i, j // MASK_BLOCK]).
    """
    p = _check_drop_rate(drop_rate)
    seed = _check_seed(seed)
    if not 0 <= start <= stop:
        raise ValueError(f"dare_mask: need 0 <= start <= stop, got {start}, {stop}")
    parts = []
    for block in range(start // MASK_BLOCK, (stop - 1) // MASK_BLOCK + 1 if stop > start else 0):
        lo = block * MASK_BLOCK
        u = torch.rand(MASK_BLOCK, generator=_block_generator(seed, row, block))
        parts.append(u[max(start, lo) - lo:min(stop, lo + MASK_BLOCK) - lo] >= p)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


def _dare_chunk_(chunk: torch.Tensor, rows: Sequence[int], start: int, p: float,
                 seed: int) -> None:
    """Drop and rescale a [len(rows), c] chunk beginning at column ``start``, in place."""
    if p == 0.0:
        return
    stop = start + chunk.shape[1]
    for r, row in enumerate(rows):
        keep = dare_mask(row, start, stop, p, seed).to(chunk.device)
        chunk[r].div_(1.0 - p).masked_fill_(~keep, 0.0)


@torch.no_grad()
def dare_vectors(tau: torch.Tensor, drop_rate: float = 0.9, seed: int = 0) -> torch.Tensor:
    """DARE on every row, IN PLACE; returns ``tau``. Same seed, same mask on any device."""
    _check_matrix(tau, "DARE")
    p = _check_drop_rate(drop_rate)
    seed = _check_seed(seed)
    for start, stop in _chunks(tau.shape[1], MASK_BLOCK):
        _dare_chunk_(tau[:, start:stop], range(tau.shape[0]), start, p, seed)
    return tau


@torch.no_grad()
def dare_ties_vectors(tau: torch.Tensor, drop_rate: float = 0.9, density: float | None = None,
                      seed: int = 0) -> torch.Tensor:
    """DARE then TIES sign election (trim only when ``density`` is given), IN PLACE."""
    _check_matrix(tau, "DARE-TIES")
    if density is not None:
        _check_density(density)  # before tau is touched
    dare_vectors(tau, drop_rate, seed)
    threshold = None if density is None else trim_thresholds(tau, density)
    for start, stop in _chunks(tau.shape[1]):
        chunk = tau[:, start:stop]
        if threshold is not None:
            chunk.masked_fill_(chunk.abs() < threshold, 0.0)
        _elect_(chunk)
    return tau


# ------------------------------------------------------------------ single merged models

@torch.no_grad()
def _disjoint_merge(tau: torch.Tensor, lam: float, *, density: float | None,
                    drop_rate: float, seed: int) -> torch.Tensor:
    """lam * disjoint mean of the (DARE'd, trimmed) sign-agreeing entries: a new [P]."""
    T, n = tau.shape
    threshold = None
    if density is not None:
        if drop_rate > 0.0:
            # Thresholds of the DARE'd rows: one row-sized copy at a time.
            threshold = tau.new_empty((T, 1))
            for i in range(T):
                row = tau[i:i + 1].clone()
                for start, stop in _chunks(n, MASK_BLOCK):
                    _dare_chunk_(row[:, start:stop], [i], start, drop_rate, seed)
                threshold[i] = trim_thresholds(row, density)[0]
                del row
        else:
            threshold = trim_thresholds(tau, density)
    out = tau.new_empty(n)
    for start, stop in _chunks(n, MASK_BLOCK):  # chunk = mask block: one draw per block
        chunk = tau[:, start:stop].clone()
        _dare_chunk_(chunk, range(T), start, drop_rate, seed)
        if threshold is not None:
            chunk.masked_fill_(chunk.abs() < threshold, 0.0)
        _elect_(chunk)
        count = (chunk != 0).sum(dim=0).clamp_(min=1)
        out[start:stop] = chunk.sum(dim=0).div_(count).mul_(lam)
    return out


def ties_merge_flat(tau: torch.Tensor, density: float = 0.2, lam: float = 1.0) -> torch.Tensor:
    """The TIES-merging model's theta-delta [P] (trim, elect, disjoint mean, times lam)."""
    _check_matrix(tau, "TIES merging")
    return _disjoint_merge(tau, _check_scale(lam, "TIES lambda"),
                           density=_check_density(density), drop_rate=0.0, seed=0)


def dare_ties_merge_flat(tau: torch.Tensor, drop_rate: float = 0.9, seed: int = 0,
                         lam: float = 1.0, density: float | None = None) -> torch.Tensor:
    """The DARE-TIES model's theta-delta [P]: disjoint mean of sign-agreeing DARE'd
    entries (trimmed first only when ``density`` is given), times lam."""
    _check_matrix(tau, "DARE-TIES merging")
    if density is not None:
        density = _check_density(density)
    return _disjoint_merge(tau, _check_scale(lam, "DARE-TIES lambda"), density=density,
                           drop_rate=_check_drop_rate(drop_rate), seed=_check_seed(seed))


@torch.no_grad()
def dare_ta_flat(tau: torch.Tensor, coefficients: Sequence[float], drop_rate: float = 0.9,
                 seed: int = 0) -> torch.Tensor:
    """sum_i c_i dare(tau_i) as a new [P], without copying tau."""
    _check_matrix(tau, "DARE-TA")
    c = _check_coefficients(coefficients, tau.shape[0], "DARE-TA")
    p = _check_drop_rate(drop_rate)
    seed = _check_seed(seed)
    weights = torch.tensor(c, dtype=tau.dtype, device=tau.device)
    out = tau.new_empty(tau.shape[1])
    for start, stop in _chunks(tau.shape[1], MASK_BLOCK):
        chunk = tau[:, start:stop].clone()
        _dare_chunk_(chunk, range(tau.shape[0]), start, p, seed)
        out[start:stop] = weights @ chunk
    return out


@torch.no_grad()
def slerp_flat(tau_a: torch.Tensor, tau_b: torch.Tensor, t: float, *,
               eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation of two task vectors (a new tensor): t=0 gives tau_a, t=1
    tau_b; linear interpolation where sin(Omega) < eps or a vector is zero."""
    if not (isinstance(tau_a, torch.Tensor) and isinstance(tau_b, torch.Tensor)):
        raise TypeError("slerp_flat: tau_a and tau_b must be tensors")
    if tau_a.shape != tau_b.shape or tau_a.ndim != 1:
        raise ValueError(f"slerp_flat: need two [P] vectors of one shape, got "
                         f"{tuple(tau_a.shape)} and {tuple(tau_b.shape)}")
    t = _check_scale(t, "SLERP t")
    dot = aa = bb = 0.0
    for start, stop in _chunks(tau_a.shape[0]):
        a = tau_a[start:stop].double()
        b = tau_b[start:stop].to(a.device, torch.float64)
        dot += float(a @ b)
        aa += float(a @ a)
        bb += float(b @ b)
    norm = math.sqrt(aa) * math.sqrt(bb)
    cos = max(-1.0, min(1.0, dot / norm)) if norm > 0 else 1.0
    omega = math.acos(cos)
    sin = math.sin(omega)
    if sin < eps:
        wa, wb = 1.0 - t, t
    else:
        wa, wb = math.sin((1.0 - t) * omega) / sin, math.sin(t * omega) / sin
    return tau_a.mul(wa).add_(tau_b.to(tau_a.device, tau_a.dtype), alpha=wb)


def tau_transform(method: str, *, density: float = 0.2, drop_rate: float = 0.9,
                  seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The in-place tau preprocessing of ``--merge-method`` (None for plain "ta"), with its
    settings checked now rather than after the models are loaded. A picklable partial."""
    if method == "ta":
        return None
    if method == "ties":
        return partial(ties_vectors, density=_check_density(density))
    if method == "dare":
        return partial(dare_vectors, drop_rate=_check_drop_rate(drop_rate),
                       seed=_check_seed(seed))
    if method == "dare-ties":
        # The common DARE-TIES: the random drop replaces TIES's magnitude trim.
        return partial(dare_ties_vectors, drop_rate=_check_drop_rate(drop_rate),
                       density=None, seed=_check_seed(seed))
    raise MAPError(f"unknown merge method {method!r}; choose one of {', '.join(MERGE_METHODS)}")
