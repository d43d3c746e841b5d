"""TaskVector arithmetic against hand computations on small modules (task_vectors.task_vector)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from task_vectors.checkpoints import save_module
from task_vectors.task_vector import TaskVector


def _net() -> nn.Module:
    # BatchNorm brings float buffers (running stats) and an int64 counter (num_batches_tracked).
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _perturbed(seed: int) -> nn.Module:
    """A copy of the pretrained net with every float tensor moved and the counter bumped,
    as a fine-tuning run would leave it."""
    torch.manual_seed(0)
    net = _net()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.add_(torch.randn(v.shape, generator=gen))
            else:
                v.add_(seed + 7)
    return net


@pytest.fixture
def pre() -> nn.Module:
    torch.manual_seed(0)
    return _net()


@pytest.fixture
def fts() -> list[nn.Module]:
    return [_perturbed(s) for s in (1, 2, 3)]


def _float_keys(sd) -> list[str]:
    return [k for k, v in sd.items() if v.is_floating_point()]


def _hand_tau(pre: nn.Module, ft: nn.Module) -> dict[str, torch.Tensor]:
    p, f = pre.state_dict(), ft.state_dict()
    return {k: f[k] - p[k] for k in _float_keys(p)}


def _assert_vector(tv: TaskVector, expected: dict[str, torch.Tensor]) -> None:
    assert set(tv.vector) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(tv.vector[k], v, rtol=0, atol=1e-6, msg=k)


def test_built_from_state_dicts_is_the_difference_and_skips_integer_buffers(pre, fts):
    tv = TaskVector(pre.state_dict(), fts[0].state_dict())
    _assert_vector(tv, _hand_tau(pre, fts[0]))
    assert "1.num_batches_tracked" in pre.state_dict()
    assert "1.num_batches_tracked" not in tv.vector
    # The float buffers are weights of the model too and are part of the vector.
    assert {"1.running_mean", "1.running_var"} <= set(tv.vector)


def test_built_from_modules_equals_built_from_state_dicts(pre, fts):
    _assert_vector(TaskVector(pre, fts[1]), _hand_tau(pre, fts[1]))


def test_built_from_checkpoint_paths(tmp_path, pre, fts):
    # Whole pickled module (task_vectors' format) and a plain state dict both work.
    pre_path = save_module(pre, tmp_path / "zeroshot.pt")
    ft_path = tmp_path / "Task" / "finetuned.pt"
    ft_path.parent.mkdir()
    torch.save(fts[2].state_dict(), ft_path)
    _assert_vector(TaskVector(str(pre_path), str(ft_path)), _hand_tau(pre, fts[2]))
    # ... and the other way round.
    sd_path = tmp_path / "pre_sd.pt"
    torch.save(pre.state_dict(), sd_path)
    mod_path = save_module(fts[0], tmp_path / "ft_module.pt")
    _assert_vector(TaskVector(str(sd_path), str(mod_path)), _hand_tau(pre, fts[0]))


def test_finetuned_without_the_integer_buffer_is_fine_but_missing_weights_are_not(pre, fts):
    ft = dict(fts[0].state_dict())
    del ft["1.num_batches_tracked"]
    _assert_vector(TaskVector(pre.state_dict(), ft), _hand_tau(pre, fts[0]))
    del ft["0.weight"]
    with pytest.raises(KeyError, match="0.weight"):
        TaskVector(pre.state_dict(), ft)


def test_arithmetic_matches_hand_computation(pre, fts):
    taus = [_hand_tau(pre, f) for f in fts]
    t1, t2, t3 = (TaskVector(pre, f) for f in fts)
    keys = list(taus[0])
    _assert_vector(t1 + t2, {k: taus[0][k] + taus[1][k] for k in keys})
    _assert_vector(t1 - t2, {k: taus[0][k] - taus[1][k] for k in keys})
    _assert_vector(-t3, {k: -taus[2][k] for k in keys})
    _assert_vector(t1 * 0.3, {k: 0.3 * taus[0][k] for k in keys})
    _assert_vector(-1.5 * t2, {k: -1.5 * taus[1][k] for k in keys})
    # sum() starts from the int 0.
    _assert_vector(sum([t1, t2, t3]), {k: taus[0][k] + taus[1][k] + taus[2][k] for k in keys})
    _assert_vector(sum([t2]), taus[1])
    _assert_vector(0.5 * (t1 + t3) - t2,
                   {k: 0.5 * (taus[0][k] + taus[2][k]) - taus[1][k] for k in keys})
    # Operands are left untouched.
    _assert_vector(t1, taus[0])


@pytest.mark.parametrize("coef", [1.0, 0.4, -0.7, 2.5])
def test_apply_to_adds_scaled_vector_in_place(pre, fts, coef):
    p = {k: v.clone() for k, v in pre.state_dict().items()}
    taus = [_hand_tau(pre, f) for f in fts[:2]]
    tv = TaskVector(pre, fts[0]) + TaskVector(pre, fts[1])
    model = _net()
    model.load_state_dict(p)
    out = tv.apply_to(model, coef)
    assert out is model
    got = model.state_dict()
    for k in _float_keys(p):
        torch.testing.assert_close(got[k], p[k] + coef * (taus[0][k] + taus[1][k]),
                                   rtol=0, atol=1e-5, msg=k)
    assert torch.equal(got["1.num_batches_tracked"], p["1.num_batches_tracked"])


def test_apply_to_with_coefficient_one_reproduces_the_finetuned_model(pre, fts):
    model = TaskVector(pre, fts[0]).apply_to(_net_with(pre), 1.0)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    model.eval(), fts[0].eval()
    torch.testing.assert_close(model(x), fts[0](x), rtol=0, atol=1e-5)


def _net_with(src: nn.Module) -> nn.Module:
    net = _net()
    net.load_state_dict(src.state_dict())
    return net


def test_apply_to_a_model_without_the_weight_fails(pre, fts):
    with pytest.raises(KeyError, match="0.weight"):
        TaskVector(pre, fts[0]).apply_to(nn.Linear(3, 4))
