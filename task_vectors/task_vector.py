"""Task vectors: tau = theta_finetuned - theta_pretrained, with the usual arithmetic."""
from __future__ import annotations

import os
from typing import Mapping

import torch
from torch import nn

StateDict = Mapping[str, torch.Tensor]


def is_mergeable(tensor: torch.Tensor) -> bool:
    # Integer buffers (counters, index tables) are not weights and are never merged.
    return tensor.is_floating_point()


class TaskVector:
    """A dict of per-parameter differences.

    Build it from two checkpoints or state dicts (``TaskVector(pre, ft)``) or directly from
    a dict (``TaskVector(vector=...)``). Supports ``+``, ``-``, scalar ``*``, ``sum([...])``
    and ``apply_to(model, scaling_coef)``.
    """

    def __init__(self, pretrained: StateDict | str | os.PathLike | None = None,
                 finetuned: StateDict | str | os.PathLike | None = None, *,
                 vector: Mapping[str, torch.Tensor] | None = None):
        if vector is not None:
            self.vector = dict(vector)
            return
        if pretrained is None or finetuned is None:
            raise ValueError("TaskVector needs (pretrained, finetuned) or vector=")
        pre = _as_state_dict(pretrained)
        ft = _as_state_dict(finetuned)
        missing = sorted(k for k in pre if is_mergeable(pre[k]) and k not in ft)
        if missing:
            raise KeyError(f"fine-tuned weights lack {len(missing)} keys, e.g. {missing[:3]}")
        with torch.no_grad():
            self.vector = {k: ft[k].to(pre[k].dtype) - pre[k]
                           for k in pre if is_mergeable(pre[k])}

    def __add__(self, other: "TaskVector | int") -> "TaskVector":
        if isinstance(other, int) and other == 0:  # lets sum() start from 0
            return self
        with torch.no_grad():
            return TaskVector(vector={k: v + other.vector[k] for k, v in self.vector.items()
                                      if k in other.vector})

    __radd__ = __add__

    def __neg__(self) -> "TaskVector":
        return TaskVector(vector={k: -v for k, v in self.vector.items()})

    def __sub__(self, other: "TaskVector") -> "TaskVector":
        return self + (-other)

    def __mul__(self, scalar: float) -> "TaskVector":
        return TaskVector(vector={k: scalar * v for k, v in self.vector.items()})

    __rmul__ = __mul__

    def apply_to(self, model: nn.Module, scaling_coef: float = 1.0) -> nn.Module:
        """Add scaling_coef * tau to model's weights in place and return the model."""
        with torch.no_grad():
            params = model.state_dict(keep_vars=True)
            for k, v in self.vector.items():
                if k not in params:
                    raise KeyError(f"model has no weight '{k}'")
                params[k].add_(v.to(params[k].device, params[k].dtype), alpha=scaling_coef)
        return model


def _as_state_dict(source: StateDict | str | nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(source, (str, os.PathLike)):
        from task_vectors.checkpoints import load_state_dict
        return load_state_dict(os.fspath(source))
    if isinstance(source, nn.Module):
        return source.state_dict()
    return dict(source)
