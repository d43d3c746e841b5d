"""Merging methods as pure functions on task vectors (dicts name -> tensor, as in
``TaskVector.vector``): task arithmetic, TIES-Merging and DARE, plus ``apply`` to add a
merged vector to the pretrained weights.

Every function returns new tensors and never modifies its inputs. Only floating-point
entries are merged (``is_mergeable``); integer buffers are not weights.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from map_common.errors import MAPError
from task_vectors.task_vector import is_mergeable

Vector = Mapping[str, torch.Tensor]

__all__ = ["task_arithmetic", "ties_merge", "dare", "dare_merge", "apply"]


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


def _check_fraction(value: float, name: str, *, low_open: bool, high_open: bool) -> float:
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
def ties_merge(task_vectors: Sequence[Vector], *, density: float = 0.2, scale: float = 1.0
               ) -> dict[str, torch.Tensor]:
    """TIES-Merging (Yadav et al., 2023): trim, elect sign, disjoint merge, times ``scale``.

    Trim: each task vector keeps its entries whose magnitude is at least its k-th largest
    magnitude, k = max(1, round(density * n)) over the n entries of the whole vector (all
    its weights flattened together; ties at the threshold are all kept, as in the authors'
    code). Elect: the sign of the sum of the trimmed values per entry. Merge: the mean of the
    trimmed values that are non-zero and carry the elected sign. Where the trimmed values
    sum to exactly zero the elected sign is 0 and, as in the paper's equations, the merged
    entry is 0.
    """
    density = _check_fraction(density, "TIES density", low_open=True, high_open=False)
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise MAPError(f"TIES scale must be a number, got {scale!r}") from None
    if not math.isfinite(scale):
        raise MAPError(f"TIES scale must be finite, got {scale}")
    keys = _common_keys(task_vectors, "TIES merging")
    ref = [task_vectors[0][k] for k in keys]
    sizes = [t.numel() for t in ref]
    # One row per task: the trim threshold is global over each task vector.
    flat = torch.stack([torch.cat([tv[k].to(r.device, r.dtype).reshape(-1)
                                   for k, r in zip(keys, ref)]) for tv in task_vectors])
    n = flat.shape[1]
    keep = min(n, max(1, round(density * n)))
    magnitude = flat.abs()
    # The keep-th largest magnitude is the (n - keep + 1)-th smallest.
    threshold = magnitude.kthvalue(n - keep + 1, dim=1, keepdim=True).values
    trimmed = torch.where(magnitude >= threshold, flat, torch.zeros((), dtype=flat.dtype,
                                                                    device=flat.device))
    elected = torch.sign(trimmed.sum(dim=0))
    # sign(0) = 0: trimmed entries never join a non-zero elected sign, and where the elected
    # sign is 0 every candidate sums to 0 anyway.
    agree = torch.sign(trimmed) == elected
    count = agree.sum(dim=0)
    total = torch.where(agree, trimmed, torch.zeros_like(trimmed)).sum(dim=0)
    merged = total / count.clamp(min=1).to(total.dtype) * scale
    return {k: part.view(r.shape).clone() for k, r, part in zip(keys, ref, merged.split(sizes))}


@torch.no_grad()
def dare(task_vector: Vector, *, drop_rate: float, generator: torch.Generator
         ) -> dict[str, torch.Tensor]:
    """Drop And REscale (Yu et al., 2024): zero each entry with probability ``drop_rate``
    and divide the survivors by (1 - drop_rate), so the expectation is unchanged.

    Entries are drawn in sorted key order from ``generator`` (so the result depends only on
    the vector's contents and the generator's state). Integer tensors are copied untouched.
    """
    p = _check_fraction(drop_rate, "DARE drop_rate", low_open=False, high_open=True)
    if not isinstance(generator, torch.Generator):
        raise MAPError(f"DARE needs a torch.Generator, got {type(generator).__name__}")
    if not isinstance(task_vector, Mapping):
        raise MAPError(f"DARE: expected a dict name -> tensor, got {type(task_vector).__name__}")
    if not task_vector:
        raise MAPError("DARE: the task vector is empty")
    out = {}
    for k in sorted(task_vector):
        v = task_vector[k]
        if not isinstance(v, torch.Tensor):
            raise MAPError(f"DARE: entry '{k}' is not a tensor")
        if not is_mergeable(v):
            out[k] = v.clone()
            continue
        # Drawn on the generator's device, so any generator works for any tensor device.
        u = torch.rand(v.shape, generator=generator, device=generator.device)
        survive = (u >= p).to(v.device)
        out[k] = torch.where(survive, v / (1.0 - p), torch.zeros((), dtype=v.dtype,
                                                                  device=v.device))
    return {k: out[k] for k in task_vector}  # the caller's key order


def _seeds(seed: int, n: int) -> list[int]:
    # Independent streams per task vector: a task's mask does not depend on the others' sizes.
    return [int(s.generate_state(1, dtype=np.uint64)[0])
            for s in np.random.SeedSequence(seed).spawn(n)]


@torch.no_grad()
def dare_merge(task_vectors: Sequence[Vector], coefficients: Sequence[float], *,
               drop_rate: float, seed: int) -> dict[str, torch.Tensor]:
    """Task arithmetic of DARE'd task vectors; the same ``seed`` gives the same result."""
    _check_fraction(drop_rate, "DARE drop_rate", low_open=False, high_open=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MAPError(f"DARE seed must be a non-negative integer, got {seed!r}")
    keys = _common_keys(task_vectors, "DARE merging")
    _check_coefficients(coefficients, len(task_vectors), "DARE merging")
    dropped = []
    for tv, s in zip(task_vectors, _seeds(int(seed), len(task_vectors))):
        generator = torch.Generator().manual_seed(s)
        dropped.append(dare({k: tv[k] for k in keys}, drop_rate=drop_rate, generator=generator))
    return task_arithmetic(dropped, coefficients)


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
