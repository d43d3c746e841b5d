"""Evaluation precision (autocast) and the storage dtype of the task vectors."""
from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch
import torch.nn.functional as F

from map_common.errors import MAPError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}
TAU_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


@functools.cache
def autocast_runs(device_type: str, dtype: torch.dtype) -> bool:
    """Whether this torch can autocast a ViT's ops (conv, linear, layer norm, GELU,
    attention) to ``dtype`` on ``device_type``: tried, not assumed from the version."""
    try:
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype):
            x = torch.randn(2, 3, 8, 8, device=device_type)
            y = F.conv2d(x, torch.randn(4, 3, 4, 4, device=device_type), stride=4)
            y = y.flatten(2).transpose(1, 2)  # [2, 4 tokens, 4 channels]
            y = F.gelu(F.layer_norm(F.linear(y, torch.randn(8, 4, device=device_type)), (8,)))
            q = y.view(2, 4, 2, 4).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, q, q)
        return out.dtype == dtype and bool(torch.isfinite(out.float()).all())
    except (RuntimeError, NotImplementedError, TypeError, AssertionError):
        return False


def autocast_for(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the context the forward pass runs in; MAPError for a precision this
    device cannot run."""
    if precision not in PRECISIONS:
        raise MAPError(f"unknown precision '{precision}'; accepted values: "
                       f"{', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext
    if not autocast_runs(device.type, dtype):
        if precision == "fp16" and device.type == "cpu":
            raise MAPError("--precision fp16 needs a CUDA device; use bf16 on CPU")
        raise MAPError(f"--precision {precision} cannot run on {device.type} with this torch; "
                       "use fp32")
    return functools.partial(torch.autocast, device.type, dtype=dtype)


def check_tau_dtype(tau_dtype: str) -> torch.dtype:
    if tau_dtype not in TAU_DTYPES:
        raise MAPError(f"unknown tau dtype '{tau_dtype}'; accepted values: "
                       f"{', '.join(TAU_DTYPES)}")
    return TAU_DTYPES[tau_dtype]
