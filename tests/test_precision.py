"""Precision of the forward pass (fp32 / bf16 / fp16 autocast) and its validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from map_common.errors import MAPError
from task_vectors import precision as engine_module
from task_vectors.checkpoints import finetuned_path, head_path, zeroshot_path
from task_vectors.engine import MergeEngine

pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny

POINTS = [np.zeros(8), np.full(8, 0.3), np.eye(8)[5],
          np.random.default_rng(2).uniform(0.0, 1.0, 8)]


def _build(zoo, **kwargs) -> MergeEngine:
    return MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=str(zeroshot_path(zoo.path)),
        finetuned={t: str(finetuned_path(zoo.path, t)) for t in zoo.tasks},
        heads={t: str(head_path(zoo.path, t)) for t in zoo.tasks},
        datasets=zoo.tasks, data_location="", batch_size=512, **kwargs)


@pytest.fixture(scope="module")
def fp32(demo_zoo) -> MergeEngine:
    return _build(demo_zoo)


@pytest.fixture(scope="module")
def bf16(demo_zoo) -> MergeEngine:
    return _build(demo_zoo, precision="bf16")


def _accuracy_gap(a: MergeEngine, b: MergeEngine, c) -> tuple[float, float]:
    ra, rb = a.evaluate_at(c), b.evaluate_at(c)
    acc = max(abs(ra[d]["accuracy"] - rb[d]["accuracy"]) for d in ra)
    loss = max(abs(ra[d]["loss"] - rb[d]["loss"]) / max(ra[d]["loss"], 1e-3) for d in ra)
    return acc, loss


@pytest.mark.parametrize("ci", range(len(POINTS)))
def test_bf16_agrees_with_fp32_on_the_demo(fp32, bf16, ci):
    acc, loss = _accuracy_gap(fp32, bf16, POINTS[ci])
    # 143 images per task: 2 points is at most 2 images changing their argmax.
    assert acc <= 0.02
    assert loss <= 0.05
    assert loss > 0  # the forward did run in bf16 (an fp32 pass would match exactly)


def test_bf16_merge_itself_stays_fp32(fp32, bf16):
    for c in POINTS:
        fp32.set_coefficients(c)
        bf16.set_coefficients(c)
        for p, q in zip(fp32.encoder.parameters(), bf16.encoder.parameters()):
            assert q.dtype == torch.float32 and torch.equal(p, q)


@pytest.mark.parametrize("bad", ["fp64", "FP32", "half", ""])
def test_unknown_precision_names_the_accepted_values(demo_zoo, bad):
    with pytest.raises(MAPError, match=f"'{bad}'.*fp32, bf16, fp16"):
        _build(demo_zoo, precision=bad)
    with pytest.raises(MAPError, match=f"'{bad}'.*fp32, bf16"):
        _build(demo_zoo, tau_dtype=bad)


def _fp16_autocast_runs_on_cpu() -> bool:
    """An independent probe: one ViT-like block under CPU fp16 autocast."""
    try:
        block = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
            out = block(torch.randn(2, 5, 8))
            out = torch.nn.functional.conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 4, 4))
        return out.dtype == torch.float16
    except (RuntimeError, NotImplementedError):
        return False


def test_fp16_on_cpu_runs_or_refuses_as_torch_allows(demo_zoo, fp32):
    if _fp16_autocast_runs_on_cpu():
        half = _build(demo_zoo, precision="fp16")
        for c in POINTS[:2]:
            acc, loss = _accuracy_gap(fp32, half, c)
            assert acc <= 0.02 and 0 < loss <= 0.05
    else:
        with pytest.raises(MAPError, match=r"^--precision fp16 needs a CUDA device; use bf16 "
                                           r"on CPU$"):
            _build(demo_zoo, precision="fp16")


def test_fp16_refused_on_a_cpu_without_it_before_anything_is_loaded(demo_zoo, monkeypatch):
    monkeypatch.setattr(engine_module, "autocast_runs", lambda device_type, dtype: False)

    def no_loading(*args, **kwargs):
        raise AssertionError("checkpoints read before the precision was checked")

    monkeypatch.setattr("task_vectors.checkpoints.load_encoder", no_loading)
    with pytest.raises(MAPError) as err:
        _build(demo_zoo, precision="fp16")
    assert str(err.value) == "--precision fp16 needs a CUDA device; use bf16 on CPU"


def test_the_probe_tells_what_runs():
    assert engine_module.autocast_runs("cpu", torch.bfloat16)
    assert engine_module.autocast_runs("cpu", torch.float16) == _fp16_autocast_runs_on_cpu()
