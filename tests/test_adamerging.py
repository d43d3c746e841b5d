"""AdaMerging's core (task_vectors/adamerging.py) on the demo zoo: the gradient against
finite differences, layer-wise against task-wise, clamping, AdaMerging++ on the TIES
vectors, an exact resume, the entropy against a hand computation, labels never read."""
from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from map_common.errors import MAPError
from task_vectors import adamerging as am
from task_vectors.checkpoints import finetuned_path, head_path, zeroshot_path
from task_vectors.engine import MergeEngine
from task_vectors.eval_data import EvalTensors
from task_vectors.merging import ties_vectors

pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny

FEW = am.AdaMergingSettings(steps=6, batch_size=8, lr=1e-2, checkpoint_every=2)


def _engine(zoo, tasks, tau_transform=None) -> MergeEngine:
    return MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=str(zeroshot_path(zoo.path)),
        finetuned={t: str(finetuned_path(zoo.path, t)) for t in tasks},
        heads={t: str(head_path(zoo.path, t)) for t in tasks},
        datasets=tasks, data_location="", batch_size=512, tau_transform=tau_transform)


@pytest.fixture(scope="module")
def tasks(demo_zoo) -> list[str]:
    return demo_zoo.tasks[:4]


@pytest.fixture(scope="module")
def engine(demo_zoo, tasks) -> MergeEngine:
    return _engine(demo_zoo, tasks)


def _lambdas(engine, settings, values=None) -> torch.Tensor:
    lam = am.initial_coefficients(engine.n_tasks, len(am.Layout.of(engine)), settings)
    if values is not None:
        lam = torch.as_tensor(values, dtype=torch.float32).reshape(lam.shape).clone()
    return lam.requires_grad_(True)


# ------------------------------------------------------------------ the objective

def test_entropy_matches_a_hand_computation():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e4, -1e4],
                           [5.0, 5.0, 5.0, 5.0]])
    # uniform over 4 classes: ln 4; p = (3/4, 1/4): -(3/4 ln 3/4 + 1/4 ln 1/4)
    expected = [math.log(4.0), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)),
                math.log(4.0)]
    assert am.entropy(logits).tolist() == pytest.approx(expected, abs=1e-6)
    assert am.entropy(logits.half()).dtype == torch.float32


def test_objective_value_is_the_mean_entropy_of_each_head_on_its_batch(engine, tasks):
    """The objective against the live encoder at theta(prior) and the heads, by hand."""
    settings = am.AdaMergingSettings(granularity="task", batch_size=8)
    objective = am.EntropyObjective(engine, tasks, settings)
    values = objective.values(_lambdas(engine, settings), step=3)
    engine.set_coefficients([settings.prior] * engine.n_tasks)
    for k, d in enumerate(tasks):
        data = engine.eval_sets[d]
        idx = am.batch_indices(len(data.labels), 8, settings.seed, k, 3)
        with torch.no_grad():
            p = torch.softmax(engine.heads[d](engine.encoder(data.normalized(idx))), dim=1)
        by_hand = float((-(p * p.log()).sum(dim=1)).mean())
        assert float(values[k]) == pytest.approx(by_hand, rel=1e-5)


def test_task_wise_gradient_matches_finite_differences(engine, tasks):
    settings = am.AdaMergingSettings(granularity="task", batch_size=8)
    objective = am.EntropyObjective(engine, tasks, settings)
    lam = _lambdas(engine, settings, [0.3, 0.5, 0.2, 0.4])
    objective.gradient(lam, step=0)
    eps = 1e-2
    for i in range(engine.n_tasks):
        up, down = lam.detach().clone(), lam.detach().clone()
        up[i] += eps
        down[i] -= eps
        fd = (float(objective.values(up, 0).mean()) -
              float(objective.values(down, 0).mean())) / (2 * eps)
        assert float(lam.grad[i]) == pytest.approx(fd, rel=2e-2, abs=1e-4)
    assert lam.grad.abs().max() > 1e-3  # a gradient to check, not zeros


def test_per_task_backward_equals_the_all_graphs_at_once_gradient(engine, tasks):
    settings = replace(FEW, granularity="layer")
    objective = am.EntropyObjective(engine, tasks, settings)
    values = torch.rand(engine.n_tasks * len(am.Layout.of(engine)),
                        generator=torch.Generator().manual_seed(1))
    a, b = _lambdas(engine, settings, values), _lambdas(engine, settings, values)
    ha = objective.gradient(a, step=2)
    hb = objective.gradient(b, step=2, joint=True)
    torch.testing.assert_close(ha, hb)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_layer_wise_with_equal_lambdas_is_task_wise(engine, tasks):
    layout = am.Layout.of(engine)
    task_s = am.AdaMergingSettings(granularity="task", batch_size=8)
    layer_s = replace(task_s, granularity="layer")
    per_task = [0.1, 0.7, 0.35, 0.9]
    lt = _lambdas(engine, task_s, per_task)
    ll = _lambdas(engine, layer_s, np.repeat(per_task, len(layout)))
    for wt, wl in zip(am.merged_weights(engine.theta_pre, engine.tau, lt, layout),
                      am.merged_weights(engine.theta_pre, engine.tau, ll, layout)):
        torch.testing.assert_close(wt, wl)
    ht = am.EntropyObjective(engine, tasks, task_s).gradient(lt, step=1)
    hl = am.EntropyObjective(engine, tasks, layer_s).gradient(ll, step=1)
    torch.testing.assert_close(ht, hl)
    # the task coefficient scales every tensor: its derivative is the sum over layers (float32
    # dot products over ~600k weights summed in another order: cancellations leave ~1e-4)
    torch.testing.assert_close(lt.grad, ll.grad.sum(dim=1), rtol=1e-3, atol=1e-6)


def test_merged_flat_is_theta_pre_plus_the_scaled_task_vectors(engine):
    layout = am.Layout.of(engine)
    rng = np.random.default_rng(0)
    lam = rng.uniform(0, 1, (engine.n_tasks, len(layout)))
    flat = am.merged_flat(engine.theta_pre, engine.tau, lam, layout)
    for layer, (a, b) in enumerate(layout.spans):
        expected = engine.theta_pre[a:b] + sum(float(lam[i, layer]) * engine.tau[i, a:b]
                                               for i in range(engine.n_tasks))
        torch.testing.assert_close(flat[a:b], expected)


# ------------------------------------------------------------------ learning

def test_coefficients_are_clamped_after_every_step(engine, tasks, monkeypatch):
    settings = replace(FEW, lr=5.0, steps=3, low=0.2, high=0.4, prior=0.3)
    seen, original = [], am.EntropyObjective.gradient

    def record(self, lambdas, step, **kw):
        seen.append(lambdas.detach().clone())
        return original(self, lambdas, step, **kw)

    monkeypatch.setattr(am.EntropyObjective, "gradient", record)
    result = am.learn(engine, tasks, settings, progress=False)
    low, high = np.float32(0.2), np.float32(0.4)
    for lam in [*seen[1:], torch.as_tensor(result.lambdas)]:  # after steps 1, 2 and 3
        assert float(lam.min()) >= low and float(lam.max()) <= high
        # an lr this large drives coefficients to both bounds
        assert (lam == low).any() and (lam == high).any()


def test_learning_lowers_the_entropy(engine, tasks):
    settings = replace(FEW, granularity="task", steps=30, batch_size=32, lr=2e-2)
    result = am.learn(engine, tasks, settings, progress=False)
    assert result.curve.shape == (30, engine.n_tasks)
    assert result.curve[-5:].mean() < result.curve[:5].mean()
    assert not np.allclose(result.lambdas, settings.prior)


def test_labels_are_never_read(engine, tasks, monkeypatch):
    expected = am.learn(engine, tasks, FEW, progress=False).lambdas
    for d in tasks:
        data = engine.eval_sets[d]
        monkeypatch.setitem(engine.eval_sets, d, EvalTensors(
            data.images, torch.full_like(data.labels, -12345), data.mean, data.std))
    np.testing.assert_array_equal(am.learn(engine, tasks, FEW, progress=False).lambdas,
                                  expected)


def test_batches_cover_each_epoch_once_and_follow_the_seed():
    n, b = 50, 8  # 6 full batches per epoch
    epoch = torch.cat([am.batch_indices(n, b, 0, 1, s) for s in range(6)])
    assert len(set(epoch.tolist())) == 48
    assert not torch.equal(am.batch_indices(n, b, 0, 1, 6), am.batch_indices(n, b, 0, 1, 0))
    assert torch.equal(am.batch_indices(n, b, 0, 1, 3), am.batch_indices(n, b, 0, 1, 3))
    assert not torch.equal(am.batch_indices(n, b, 0, 2, 0), am.batch_indices(n, b, 0, 1, 0))
    assert not torch.equal(am.batch_indices(n, b, 1, 1, 0), am.batch_indices(n, b, 0, 1, 0))
    assert sorted(am.batch_indices(5, 16, 0, 0, 0).tolist()) == list(range(5))


def test_plus_plus_learns_on_the_ties_vectors(demo_zoo, engine, tasks):
    ties_engine = _engine(demo_zoo, tasks, tau_transform=partial(ties_vectors, density=0.2))
    ties = ties_vectors(engine.tau.clone(), density=0.2)
    torch.testing.assert_close(ties_engine.tau, ties)
    assert (ties == 0).float().mean() > 0.8  # top 20% kept, then signs elected
    on_engine = am.learn(ties_engine, tasks, FEW, vectors="ties", progress=False)
    given = am.learn(engine, tasks, FEW, tau=ties, vectors="ties", progress=False)
    np.testing.assert_array_equal(on_engine.lambdas, given.lambdas)
    plain = am.learn(engine, tasks, FEW, progress=False)
    assert not np.allclose(plain.lambdas, given.lambdas)
    # the merged model is theta_pre + sum lambda tau'_i with the TIES vectors
    layout = am.Layout.of(engine)
    flat = am.merged_flat(engine.theta_pre, ties, given.lambdas, layout)
    a, b = layout.spans[0]
    torch.testing.assert_close(flat[a:b], engine.theta_pre[a:b] + torch.as_tensor(
        given.lambdas[:, 0], dtype=torch.float32) @ ties[:, a:b])


class _Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_uninterrupted_coefficients(engine, tasks, tmp_path,
                                                                monkeypatch):
    settings = replace(FEW, steps=7, checkpoint_every=3)
    expected = am.learn(engine, tasks, settings, progress=False)
    path = tmp_path / "adamerging.pt"
    original, calls = am.EntropyObjective.gradient, []

    def dies_at_step_5(self, lambdas, step, **kw):
        calls.append(step)
        if step == 5:
            raise _Killed
        return original(self, lambdas, step, **kw)

    monkeypatch.setattr(am.EntropyObjective, "gradient", dies_at_step_5)
    with pytest.raises(_Killed):
        am.learn(engine, tasks, settings, checkpoint=path, progress=False)
    monkeypatch.setattr(am.EntropyObjective, "gradient", original)
    assert torch.load(path, weights_only=True)["step"] == 3  # steps 4-5 were lost
    resumed = am.learn(engine, tasks, settings, checkpoint=path, progress=False)
    assert resumed.resumed_from == 3
    np.testing.assert_array_equal(resumed.lambdas, expected.lambdas)
    np.testing.assert_array_equal(resumed.curve, expected.curve)
    # finished: a rerun learns nothing and returns the same
    again = am.learn(engine, tasks, settings, checkpoint=path, progress=False)
    assert again.resumed_from == 7
    np.testing.assert_array_equal(again.lambdas, expected.lambdas)


def test_more_steps_continue_a_finished_run(engine, tasks, tmp_path):
    path = tmp_path / "adamerging.pt"
    long = replace(FEW, steps=5)
    am.learn(engine, tasks, replace(long, steps=3), checkpoint=path, progress=False)
    continued = am.learn(engine, tasks, long, checkpoint=path, progress=False)
    np.testing.assert_array_equal(continued.lambdas,
                                  am.learn(engine, tasks, long, progress=False).lambdas)
    with pytest.raises(MAPError, match="more than the 2"):
        am.learn(engine, tasks, replace(long, steps=2), checkpoint=path, progress=False)


def test_a_checkpoint_of_other_settings_is_refused(engine, tasks, tmp_path):
    path = tmp_path / "adamerging.pt"
    am.learn(engine, tasks, replace(FEW, steps=2), checkpoint=path, progress=False)
    with pytest.raises(MAPError, match="settings.lr"):
        am.learn(engine, tasks, replace(FEW, steps=2, lr=0.5), checkpoint=path,
                 progress=False)
    with pytest.raises(MAPError, match="vectors"):
        am.learn(engine, tasks, replace(FEW, steps=2), checkpoint=path, vectors="ties",
                 progress=False)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(MAPError, match="unreadable"):
        am.learn(engine, tasks, FEW, checkpoint=path, progress=False)


@pytest.mark.parametrize("change", [
    {"granularity": "block"}, {"lr": 0.0}, {"lr": float("nan")}, {"beta1": 1.0},
    {"steps": 0}, {"batch_size": -1}, {"checkpoint_every": 0}, {"prior": 1.5},
    {"low": 1.0, "high": 0.0}, {"seed": -1}, {"steps": 2.5}])
def test_bad_settings_are_refused(change):
    with pytest.raises(MAPError):
        am.AdaMergingSettings(**change)


def test_evaluate_merged_reports_accuracy_loss_and_entropy(engine, tasks):
    layout = am.Layout.of(engine)
    lam = np.full(engine.n_tasks, 0.3)
    got = am.evaluate_merged(engine, am.merged_flat(engine.theta_pre, engine.tau, lam, layout),
                             tasks)
    plain = engine.evaluate_at(lam, tasks)
    for d in tasks:
        assert got[d]["accuracy"] == pytest.approx(plain[d]["accuracy"])
        assert got[d]["loss"] == pytest.approx(plain[d]["loss"], rel=1e-5)
        assert 0.0 < got[d]["entropy"] < math.log(engine.heads[d].out_features)


# ------------------------------------------------------------------ the baseline job

def test_adamerging_baseline_merges_its_learned_coefficients(engine):
    from task_vectors.baselines import AdaMergingBaseline, TaskArithmetic

    layout = am.Layout.of(engine)
    tau_before = engine.tau.clone()
    rng = np.random.default_rng(3)
    task = tuple(rng.uniform(0, 1, engine.n_tasks).tolist())
    layer = tuple(tuple(r) for r in rng.uniform(0, 1, (engine.n_tasks, len(layout))).tolist())
    pre, tau = engine.theta_pre, engine.tau

    job = AdaMergingBaseline("AdaMerging (task-wise)", lambdas=task)
    torch.testing.assert_close(job.theta(tau, pre), TaskArithmetic("ta", task).theta(tau, pre))
    assert job.coefficients == task and job.granularity == "task"

    job = AdaMergingBaseline("AdaMerging (layer-wise)", lambdas=layer,
                             spans=tuple(layout.spans))
    torch.testing.assert_close(job.theta(tau, pre), am.merged_flat(pre, tau, layer, layout))
    assert job.coefficients is None and job.granularity == "layer"

    job = AdaMergingBaseline("AdaMerging++ (layer-wise)", lambdas=layer,
                             spans=tuple(layout.spans), vectors="ties", density=0.2)
    ties = ties_vectors(tau.clone(), density=0.2)
    torch.testing.assert_close(job.theta(tau, pre), am.merged_flat(pre, ties, layer, layout))
    assert job.describe()["density"] == 0.2 and len(job.describe()["coefficients"][0]) == \
        len(layout)
    torch.testing.assert_close(engine.tau, tau_before, rtol=0, atol=0)  # tau untouched
    with pytest.raises(ValueError, match="spans"):
        AdaMergingBaseline("x", lambdas=layer, spans=tuple(layout.spans[:-1])).theta(tau, pre)
