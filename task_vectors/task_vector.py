"""What counts as a weight of a task vector tau = theta_finetuned - theta_pretrained.

The task vectors themselves live flat, as the rows of one [T, P] matrix in
``task_vectors.engine.MergeEngine`` (loaded once, merged by one matrix-vector product);
``task_vectors.merging`` transforms that matrix (TIES, DARE).
"""
from __future__ import annotations

import torch


def is_mergeable(tensor: torch.Tensor) -> bool:
    # Integer buffers (counters, index tables) are not weights and are never merged.
    return tensor.is_floating_point()
