"""task_vectors.baselines: each baseline's merged weights on a tiny tau, by hand."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from map_common.errors import MAPError
from task_vectors import baselines as B
from task_vectors import merging

TAU = torch.tensor([[4, -1, 0.5, 3, -2, 0.1],
                    [-3, 2, 1, -0.2, 0.3, -5]], dtype=torch.float64)
PRE = torch.tensor([10, 20, 30, 40, 50, 60], dtype=torch.float64)


def _check_untouched(fn):
    tau, pre = TAU.clone(), PRE.clone()
    out = fn(tau, pre)
    assert torch.equal(tau, TAU) and torch.equal(pre, PRE)
    assert out.shape == PRE.shape and out.dtype == PRE.dtype
    return out.numpy()


def test_task_arithmetic_theta_and_coefficients():
    b = B.TaskArithmetic("TA", (0.5, 2.0))
    got = _check_untouched(b.theta)
    np.testing.assert_allclose(got, PRE.numpy() + 0.5 * TAU[0].numpy() + 2.0 * TAU[1].numpy())
    assert b.coefficients == (0.5, 2.0)
    assert b.describe()["coefficients"] == [0.5, 2.0]
    with pytest.raises(ValueError, match="3 coefficients for 2"):
        B.TaskArithmetic("x", (1.0, 1.0, 1.0)).theta(TAU, PRE)
    with pytest.raises(ValueError, match=r"\[T, P\]"):
        b.theta(TAU, PRE[:3])


def test_ties_baseline_by_hand():
    b = B.TIESMerging("TIES-merging", density=0.5, lam=0.5)
    # density 0.5 keeps 3 of 6: row 0 -> 4, 3, -2; row 1 -> -3, 2, -5.
    # column sums [1, 2, 0, 3, -2, -5]; column 0: +, only 4 agrees.
    delta = np.array([4, 2, 0, 3, -2, -5]) * 0.5
    np.testing.assert_allclose(_check_untouched(b.theta), PRE.numpy() + delta)
    assert b.coefficients is None
    assert b.describe() == {"name": "TIES-merging", "method": "ties_merging",
                            "density": 0.5, "lambda": 0.5}


def test_dare_baselines_match_merging_and_are_seeded():
    ta = B.DARETaskArithmetic("DARE-TA", (0.8, 0.8), drop_rate=0.5, seed=3)
    got = _check_untouched(ta.theta)
    dared = merging.dare_vectors(TAU.clone(), 0.5, seed=3)
    np.testing.assert_allclose(got, PRE.numpy() + 0.8 * dared.sum(dim=0).numpy())
    np.testing.assert_array_equal(got, ta.theta(TAU, PRE).numpy())  # fixed seed
    assert ta.coefficients == (0.8, 0.8) and ta.describe()["vectors"] == "dare"

    ties = B.DARETIES("DARE-TIES", drop_rate=0.5, seed=3, lam=1.0)
    got = _check_untouched(ties.theta)
    agreeing = merging.dare_ties_vectors(TAU.clone(), 0.5, seed=3)
    count = (agreeing != 0).sum(dim=0).clamp(min=1)
    np.testing.assert_allclose(got, PRE.numpy() + (agreeing.sum(dim=0) / count).numpy())
    # No drop: disjoint mean of the sign-agreeing raw entries, by hand.
    plain = B.DARETIES("x", drop_rate=0.0).theta(TAU, PRE).numpy()
    # column sums [1, 1, 1.5, 2.8, -1.7, -4.9]: keep 4 | 2 | mean(0.5, 1) | 3 | -2 | -5
    np.testing.assert_allclose(plain, PRE.numpy() + [4, 2, 0.75, 3, -2, -5])


def test_slerp_baseline():
    tau = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    pre = torch.tensor([5.0, 5.0], dtype=torch.float64)
    got = B.SLERP("SLERP", t=0.5).theta(tau, pre).numpy()
    np.testing.assert_allclose(got, [5 + 0.5 ** 0.5, 5 + 0.5 ** 0.5])
    np.testing.assert_allclose(B.SLERP("s", t=0.0).theta(tau, pre).numpy(), [6, 5])
    assert B.SLERP("s", t=0.3).family == "SLERP"
    with pytest.raises(ValueError, match="pair"):
        B.SLERP("s", pair=(0, 2)).theta(tau, pre)


def test_default_baselines_two_tasks():
    bs = B.default_baselines(2, preference=[[1, 3], [1, 1]], ta_sweep=(0.3, 0.6))
    names = [b.name for b in bs]
    assert names == ["Task Arithmetic (TA)", "TA, lambda=0.3", "TA, lambda=0.6",
                     "TIES-merging", "DARE-TA", "DARE-TIES",
                     "TA with preference (0.25, 0.75)", "TA with preference (0.5, 0.5)",
                     "SLERP, t=0.25", "SLERP, t=0.5", "SLERP, t=0.75",
                     "Fine-tuned average"]
    by = {b.name: b for b in bs}
    assert by["Task Arithmetic (TA)"].coefficients == (0.8, 0.8)
    # c_i = T * lambda * w_i: a uniform preference is plain TA.
    np.testing.assert_allclose(by["TA with preference (0.25, 0.75)"].coefficients, [0.4, 1.2])
    np.testing.assert_allclose(by["TA with preference (0.5, 0.5)"].coefficients, [0.8, 0.8])
    assert by["Fine-tuned average"].coefficients == (0.5, 0.5)
    assert by["TIES-merging"].describe()["density"] == 0.2
    assert by["TIES-merging"].describe()["lambda"] == 1.0
    assert by["DARE-TA"].describe()["drop_rate"] == 0.9
    assert {b.family for b in bs if "preference" in b.name} == {"TA with preference"}
    for b in bs:  # picklable, JSON-able, and a merged model of the right size
        json.dumps(b.describe())
        copy = pickle.loads(pickle.dumps(b))
        assert copy == b
        out = b.theta(TAU, PRE)
        assert out.shape == PRE.shape and torch.isfinite(out).all()
    # Average of the fine-tuned models = mean of theta_pre + tau_i.
    np.testing.assert_allclose(by["Fine-tuned average"].theta(TAU, PRE).numpy(),
                               (PRE + TAU).mean(dim=0).numpy())


def test_default_baselines_more_tasks_has_no_slerp():
    bs = B.default_baselines(3, preference=None)
    assert not any(isinstance(b, B.SLERP) for b in bs)
    assert not any("preference" in b.name for b in bs)
    assert len([b for b in bs if getattr(b, "group", "") == B.SWEEP_GROUP]) == len(B.TA_SWEEP)
    assert all(len(b.coefficients) == 3 for b in bs if b.coefficients is not None)


def test_default_baselines_bad_inputs():
    with pytest.raises(MAPError, match="2 weights"):
        B.default_baselines(2, preference=[1, 2, 3])
    with pytest.raises(MAPError, match="non-negative"):
        B.default_baselines(2, preference=[-1, 2])
    with pytest.raises(MAPError, match="drop_rate"):
        B.default_baselines(2, dare_drop_rate=1.0)
    with pytest.raises(MAPError, match="density"):
        B.default_baselines(2, ties_density=0.0)
    with pytest.raises(ValueError):
        B.default_baselines(0)


def test_pick_tuned():
    bs = B.default_baselines(2, ta_sweep=(0.2, 0.5, 0.9), slerp_t=())
    scores = [0.0] * len(bs)
    scores[0] = 99.0  # not a sweep member: ignored
    scores[1:4] = [0.6, 0.8, 0.7]
    best = B.pick_tuned(bs, scores)
    assert best.coefficients == (0.5, 0.5) and best.name == "TA, tuned (lambda=0.5)"
    d = best.describe()
    assert d["tuned_on"] == "evaluation data" and d["selected_from"] == "TA, lambda=0.5"
    assert B.pick_tuned(bs, scores, higher_is_better=False).coefficients == (0.2, 0.2)
    with pytest.raises(ValueError):
        B.pick_tuned(bs, scores[:-1])
