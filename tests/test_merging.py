"""task_vectors.merging against hand computations and plain-loop reference implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from map_common.errors import MAPError
from task_vectors import merging
from task_vectors.merging import apply, task_arithmetic, tau_transform

SHAPES = {"a": (2, 2), "b": (2,)}  # 6 entries over two weights: trimming must span both


def _vector(flat, shapes=SHAPES, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Split a flat list of values into weights of the given shapes (in order)."""
    out, start = {}, 0
    for k, shape in shapes.items():
        n = int(np.prod(shape))
        out[k] = torch.tensor(flat[start:start + n], dtype=dtype).reshape(shape)
        start += n
    return out


def _flat(vector: dict, keys=tuple(SHAPES)) -> np.ndarray:
    return np.concatenate([vector[k].double().numpy().reshape(-1) for k in keys])


def _random_vectors(rng, n_tasks, shapes) -> list[dict[str, torch.Tensor]]:
    total = sum(int(np.prod(s)) for s in shapes.values())
    return [_vector(rng.normal(size=total).tolist(), shapes) for _ in range(n_tasks)]


# ---------------------------------------------------------------- task arithmetic

def test_task_arithmetic_by_hand():
    t1 = _vector([1, 2, 3, 4, 5, 6])
    t2 = _vector([-1, 0.5, 0, 2, -4, 1])
    got = task_arithmetic([t1, t2], (0.5, 2.0))
    assert set(got) == {"a", "b"}
    assert got["a"].shape == (2, 2) and got["b"].dtype == torch.float32
    np.testing.assert_allclose(_flat(got), [-1.5, 2.0, 1.5, 6.0, -5.5, 5.0], rtol=1e-6)


def test_task_arithmetic_random_against_numpy():
    rng = np.random.default_rng(3)
    shapes = {"w": (3, 5), "b": (5,), "s": ()}
    vectors = _random_vectors(rng, 4, shapes)
    c = rng.uniform(-1, 2, 4)
    got = task_arithmetic(vectors, c)
    for k in shapes:
        want = sum(ci * v[k].double().numpy() for ci, v in zip(c, vectors))
        np.testing.assert_allclose(got[k].numpy(), want, rtol=1e-5, atol=1e-6)


def test_task_arithmetic_common_keys_integers_and_inputs_untouched():
    t1 = _vector([1, 2, 3, 4, 5, 6]) | {"only1": torch.ones(2),
                                        "steps": torch.tensor([7, 8], dtype=torch.int64)}
    t2 = _vector([1, 1, 1, 1, 1, 1]) | {"steps": torch.tensor([1, 1], dtype=torch.int64)}
    before = {k: v.clone() for k, v in t1.items()}
    got = task_arithmetic([t1, t2], [1.0, 1.0])
    assert set(got) == {"a", "b"}  # "only1" is not in both, integers are never merged
    for k, v in before.items():
        assert torch.equal(t1[k], v), k
    # A single vector with coefficient 1 is a copy, not the same tensors.
    single = task_arithmetic([t1], [1.0])
    assert torch.equal(single["a"], t1["a"]) and single["a"].data_ptr() != t1["a"].data_ptr()


# ---------------------------------------------------------------- flat tau helpers

T3 = [[4, -1, 0.5, 3, -2, 0.1],     # density 0.5 keeps 4, 3, -2
      [-3, 2, 1, -0.2, 0.3, -5],    # keeps -3, 2, -5
      [1, 6, -0.4, -2.5, 0.2, 0.7]]  # keeps 1, 6, -2.5
# trimmed column sums: [2, 8, 0, 0.5, -2, -5] -> elected signs [+, +, 0, +, -, -]


def _tau(rows, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks and mask blocks of a few entries, so every code path crosses boundaries."""
    monkeypatch.setattr(merging, "CHUNK", 5)
    monkeypatch.setattr(merging, "MASK_BLOCK", 8)


def _trim_loops(rows: np.ndarray, density: float) -> np.ndarray:
    n = rows.shape[1]
    keep = max(1, int(round(density * n)))
    out = np.zeros_like(rows)
    for i, v in enumerate(rows):
        threshold = sorted((abs(float(x)) for x in v), reverse=True)[keep - 1]
        out[i] = [x if abs(x) >= threshold else 0.0 for x in v]
    return out


def _elect_loops(trimmed: np.ndarray) -> np.ndarray:
    """Zero entries whose sign differs from the sign of their column's sum."""
    out = trimmed.copy()
    for j in range(out.shape[1]):
        total = sum(float(x) for x in trimmed[:, j])
        sign = (total > 0) - (total < 0)
        for i in range(out.shape[0]):
            x = float(out[i, j])
            if ((x > 0) - (x < 0)) != sign:
                out[i, j] = 0.0
    return out


def _disjoint_mean_loops(agreeing: np.ndarray, lam: float) -> np.ndarray:
    merged = []
    for j in range(agreeing.shape[1]):
        kept = [float(x) for x in agreeing[:, j] if x != 0]
        merged.append(lam * sum(kept) / len(kept) if kept else 0.0)
    return np.array(merged)


def _ties_loops(rows: np.ndarray, density: float, lam: float) -> np.ndarray:
    return _disjoint_mean_loops(_elect_loops(_trim_loops(rows, density)), lam)


def _dare_reference(tau: torch.Tensor, p: float, seed: int) -> np.ndarray:
    """DARE from the documented mask (dare_mask) with plain numpy."""
    rows = tau.double().numpy()
    out = np.zeros_like(rows)
    for i in range(rows.shape[0]):
        keep = merging.dare_mask(i, 0, rows.shape[1], p, seed).numpy()
        out[i] = np.where(keep, rows[i] / (1 - p), 0.0)
    return out


# ---------------------------------------------------------------- TIES

def test_ties_merge_flat_by_hand():
    tau = _tau(T3)
    before = tau.clone()
    # entry 0: mean(4, 1); 1: mean(2, 6); 2: all trimmed; 3: 3 (-2.5 disagrees); 4: -2; 5: -5
    want = [2.5, 4.0, 0.0, 3.0, -2.0, -5.0]
    np.testing.assert_allclose(merging.ties_merge_flat(tau, density=0.5).numpy(), want,
                               rtol=1e-6)
    np.testing.assert_allclose(merging.ties_merge_flat(tau, density=0.5, lam=0.4).numpy(),
                               0.4 * np.array(want), rtol=1e-6)
    np.testing.assert_allclose(want, _ties_loops(np.array(T3, float), 0.5, 1.0))
    assert torch.equal(tau, before)  # not modified


def test_ties_vectors_by_hand_in_place():
    tau = _tau(T3)
    out = merging.ties_vectors(tau, density=0.5)
    assert out is tau
    want = [[4, 0, 0, 3, -2, 0],   # all agree with the elected signs
            [0, 2, 0, 0, 0, -5],   # -3 disagrees with + in column 0
            [1, 6, 0, 0, 0, 0]]    # -2.5 disagrees with + in column 3
    np.testing.assert_array_equal(tau.numpy(), np.array(want, dtype=np.float32))


def test_ties_cancelling_signs_and_density_one():
    tau = _tau([[2, 1, 1, 0, 1, 1], [-2, 3, -1, 1, 1, 1]])
    # column 0: 2 - 2 = 0 -> elected sign 0 -> zero; column 2 likewise; zeros stay zeros.
    np.testing.assert_allclose(merging.ties_merge_flat(tau, density=1.0).numpy(),
                               [0, 2, 0, 1, 1, 1], rtol=1e-6)
    merging.ties_vectors(tau, density=1.0)
    np.testing.assert_array_equal(tau.numpy(), [[0, 1, 0, 0, 1, 1], [0, 3, 0, 1, 1, 1]])


def test_ties_trim_threshold_is_per_row_with_ties_kept():
    tau = _tau([[5, -5, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    np.testing.assert_allclose(merging.trim_thresholds(tau, 1 / 6).reshape(-1).numpy(),
                               [5.0, 0.6])
    # Both 5 and -5 tie at the threshold of row 0: both kept (then -5 loses the election
    # only if the column sum says so: column 1 sums to -5 + 0 -> negative, so it stays).
    merging.ties_vectors(tau, density=1 / 6)
    np.testing.assert_allclose(tau.numpy(), [[5, -5, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0.6]])


@pytest.mark.parametrize("density,lam,n_tasks", [(0.2, 1.0, 3), (0.5, 0.7, 4),
                                                 (0.05, 1.3, 2), (1.0, 1.0, 5)])
def test_ties_random_against_loops(small_chunks, density, lam, n_tasks):
    rng = np.random.default_rng(int(density * 100) + n_tasks)
    rows = rng.normal(size=(n_tasks, 37))
    tau = torch.tensor(rows, dtype=torch.float64)
    np.testing.assert_allclose(merging.ties_merge_flat(tau, density, lam).numpy(),
                               _ties_loops(rows, density, lam), rtol=1e-12, atol=1e-12)
    merging.ties_vectors(tau, density)
    np.testing.assert_allclose(tau.numpy(), _elect_loops(_trim_loops(rows, density)),
                               rtol=0, atol=0)


# ---------------------------------------------------------------- DARE

def test_dare_mask_is_blockwise_and_range_independent(small_chunks):
    full = merging.dare_mask(2, 0, 50, 0.5, seed=3)
    parts = torch.cat([merging.dare_mask(2, a, b, 0.5, seed=3)
                       for a, b in [(0, 7), (7, 8), (8, 33), (33, 50)]])
    assert full.dtype == torch.bool and full.shape == (50,)
    assert torch.equal(full, parts)
    # The documented recipe: block b of row i from SeedSequence([seed, i, b]).
    state = np.random.SeedSequence([3, 2, 1]).generate_state(1, dtype=np.uint64)[0]
    u = torch.rand(8, generator=torch.Generator().manual_seed(int(state)))
    assert torch.equal(full[8:16], u >= 0.5)
    assert not torch.equal(full, merging.dare_mask(1, 0, 50, 0.5, seed=3))  # per row
    assert not torch.equal(full, merging.dare_mask(2, 0, 50, 0.5, seed=4))  # per seed


def test_dare_vectors_exact_against_mask_and_reproducible(small_chunks):
    rng = np.random.default_rng(0)
    tau = torch.tensor(rng.normal(size=(3, 41)), dtype=torch.float32)
    want = _dare_reference(tau, 0.4, seed=7)
    a = merging.dare_vectors(tau.clone(), 0.4, seed=7)
    b = merging.dare_vectors(tau.clone(), 0.4, seed=7)
    assert torch.equal(a, b)
    np.testing.assert_allclose(a.numpy(), want, rtol=1e-6, atol=0)
    # Survivors are exactly tau / (1 - p); a row's mask ignores the other rows' values.
    other = tau.clone()
    other[0] = 100.0
    merging.dare_vectors(other, 0.4, seed=7)
    assert torch.equal(other[1:], a[1:])
    assert not torch.equal(a, merging.dare_vectors(tau.clone(), 0.4, seed=8))
    same = tau.clone()
    assert torch.equal(merging.dare_vectors(same, 0.0, seed=7), tau)  # p = 0: identity


def test_dare_rate_and_rescale_on_a_large_tensor():
    rng = np.random.default_rng(1)
    n, p = 200_000, 0.6
    tau = torch.tensor(rng.uniform(0.5, 2.0, (1, n)) * rng.choice([-1, 1], (1, n)),
                       dtype=torch.float64)
    out = merging.dare_vectors(tau.clone(), p, seed=0)
    kept = out != 0
    np.testing.assert_allclose(out[kept].numpy(), (tau[kept] / (1 - p)).numpy(), rtol=1e-15)
    # Binomial(n, 1 - p) survivors, and E[tau'/tau] = 1: within 5 standard deviations.
    assert abs(kept.sum().item() - n * (1 - p)) < 5 * np.sqrt(n * p * (1 - p))
    ratio = (out / tau).mean().item()
    assert abs(ratio - 1.0) < 5 * np.sqrt(p / (1 - p) / n)


def test_dare_is_unbiased_over_seeds(small_chunks):
    tau = _tau([[1.0, -2.0, 0.5, 3.0, -0.25, 4.0, 1.5, -1.0, 2.0, 0.75]], torch.float64)
    p, n_seeds = 0.6, 2000
    total = torch.zeros_like(tau)
    for seed in range(n_seeds):
        total += merging.dare_vectors(tau.clone(), p, seed=seed)
    mean = (total / n_seeds).numpy()
    tolerance = 5 * np.abs(tau.numpy()) * np.sqrt(p / (1 - p)) / np.sqrt(n_seeds)
    assert np.all(np.abs(mean - tau.numpy()) < tolerance)


def test_dare_ta_flat_equals_dare_then_task_arithmetic(small_chunks):
    rng = np.random.default_rng(11)
    tau = torch.tensor(rng.normal(size=(3, 29)), dtype=torch.float64)
    before = tau.clone()
    c = [0.7, -1.2, 0.3]
    got = merging.dare_ta_flat(tau, c, 0.5, seed=2)
    assert torch.equal(tau, before)
    np.testing.assert_allclose(got.numpy(), np.array(c) @ _dare_reference(tau, 0.5, 2),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merging.dare_ta_flat(tau, c, 0.0, seed=2).numpy(),
                               np.array(c) @ tau.numpy(), rtol=1e-12)


@pytest.mark.parametrize("density", [None, 0.5])
def test_dare_ties_against_loops(small_chunks, density):
    rng = np.random.default_rng(5)
    tau = torch.tensor(rng.normal(size=(4, 33)), dtype=torch.float64)
    p, seed = 0.3, 9
    dared = _dare_reference(tau, p, seed)
    trimmed = dared if density is None else _trim_loops(dared, density)
    agreeing = _elect_loops(trimmed)
    got = merging.dare_ties_merge_flat(tau, p, seed, lam=0.9, density=density)
    np.testing.assert_allclose(got.numpy(), _disjoint_mean_loops(agreeing, 0.9),
                               rtol=1e-12, atol=1e-12)
    merging.dare_ties_vectors(tau, p, density=density, seed=seed)
    np.testing.assert_allclose(tau.numpy(), agreeing, rtol=1e-12, atol=0)


def test_dare_ties_without_drop_is_sign_election_only():
    tau = _tau(T3)
    merging.dare_ties_vectors(tau, 0.0)
    # column sums of the untrimmed rows: [2, 7, 1.1, 0.3, -1.5, -4.2]: all positive but the
    # last two, so every negative entry of columns 0-3 and positive of 4-5 is zeroed.
    want = [[4, 0, 0.5, 3, -2, 0], [0, 2, 1, 0, 0, -5], [1, 6, 0, 0, 0, 0]]
    np.testing.assert_allclose(tau.numpy(), np.array(want, np.float32))


def test_tau_transform_factory():
    import pickle

    assert merging.tau_transform("ta") is None
    rng = np.random.default_rng(2)
    tau = torch.tensor(rng.normal(size=(3, 20)), dtype=torch.float64)
    for method, direct in [("ties", lambda t: merging.ties_vectors(t, 0.3)),
                           ("dare", lambda t: merging.dare_vectors(t, 0.4, seed=1)),
                           ("dare-ties", lambda t: merging.dare_ties_vectors(t, 0.4, seed=1))]:
        fn = pickle.loads(pickle.dumps(
            merging.tau_transform(method, density=0.3, drop_rate=0.4, seed=1)))
        got = tau.clone()
        fn(got)  # in place
        assert torch.equal(got, direct(tau.clone())), method
    _one_line_error(lambda: merging.tau_transform("magic"), "unknown merge method")
    _one_line_error(lambda: merging.tau_transform("ties", density=0.0), "density")
    _one_line_error(lambda: merging.tau_transform("dare", drop_rate=1.0), "drop_rate")


# ---------------------------------------------------------------- SLERP

def test_slerp_endpoints_midpoint_and_angle():
    a = torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64)
    before = a.clone()
    np.testing.assert_allclose(merging.slerp_flat(a, b, 0.0).numpy(), a.numpy(), atol=1e-12)
    np.testing.assert_allclose(merging.slerp_flat(a, b, 1.0).numpy(), b.numpy(), atol=1e-12)
    mid = merging.slerp_flat(a, b, 0.5).numpy()
    np.testing.assert_allclose(mid, [3 / np.sqrt(2), 3 / np.sqrt(2), 0], rtol=1e-12)
    # Equal norms: the norm is kept and the angle to a grows linearly in t.
    c = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    d = torch.tensor([-2.0, 1.0, 1.0], dtype=torch.float64)
    omega = np.arccos(float(c @ d) / float(c @ c))
    for t in (0.2, 0.7):
        s = merging.slerp_flat(c, d, t)
        assert abs(float(s.norm()) - float(c.norm())) < 1e-12
        angle = np.arccos(float(s @ c) / float(s.norm() * c.norm()))
        assert abs(angle - t * omega) < 1e-9
    assert torch.equal(a, before)


def test_slerp_parallel_antiparallel_and_zero_fall_back_to_lerp():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    for b in (2 * a, -a, torch.zeros(3, dtype=torch.float64)):
        got = merging.slerp_flat(a, b, 0.3).numpy()
        np.testing.assert_allclose(got, 0.7 * a.numpy() + 0.3 * b.numpy(), rtol=1e-12)


# ---------------------------------------------------------------- errors

def _one_line_error(fn, match: str):
    with pytest.raises(MAPError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan"), "x"])
def test_ties_rejects_bad_density(density):
    tau = _tau(T3)
    _one_line_error(lambda: merging.ties_merge_flat(tau, density=density), "density")
    _one_line_error(lambda: merging.ties_vectors(tau, density=density), "density")
    _one_line_error(lambda: merging.dare_ties_vectors(tau, 0.5, density=density), "density")
    assert torch.equal(tau, _tau(T3))  # nothing was touched before the check


@pytest.mark.parametrize("rate", [1.0, -0.2, 2.0, float("nan")])
def test_dare_rejects_bad_drop_rate(rate):
    tau = _tau(T3)
    for fn in (lambda: merging.dare_vectors(tau, rate),
               lambda: merging.dare_ties_vectors(tau, rate),
               lambda: merging.dare_ties_merge_flat(tau, rate),
               lambda: merging.dare_ta_flat(tau, [1, 1, 1], rate)):
        _one_line_error(fn, "drop_rate")
    assert torch.equal(tau, _tau(T3))


def test_flat_programmer_errors():
    with pytest.raises(ValueError, match=r"\[T, P\]"):
        merging.ties_vectors(torch.ones(6))
    with pytest.raises(ValueError, match=r"\[T, P\]"):
        merging.dare_vectors(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError):
        merging.ties_merge_flat([[1.0, 2.0]])
    with pytest.raises(ValueError, match="one shape"):
        merging.slerp_flat(torch.ones(3), torch.ones(4), 0.5)
    _one_line_error(lambda: merging.dare_vectors(_tau(T3), 0.5, seed=-1), "seed")
    _one_line_error(lambda: merging.dare_ta_flat(_tau(T3), [1.0], 0.5), "3 task vectors but 1")
    _one_line_error(lambda: merging.ties_merge_flat(_tau(T3), lam=float("nan")), "lambda")


def test_task_arithmetic_and_apply_errors():
    v = _vector([1] * 6)
    wrong_shape = {"a": torch.ones(4), "b": torch.ones(2)}
    fn = lambda vs: task_arithmetic(vs, [1.0] * len(vs))  # noqa: E731
    _one_line_error(lambda: fn([]), "no task vectors")
    _one_line_error(lambda: fn([v, wrong_shape]), "shape")
    _one_line_error(lambda: fn([v, {"c": torch.ones(2)}]), "share no")
    _one_line_error(lambda: fn([{"n": torch.ones(2, dtype=torch.int64)}]), "share no")
    _one_line_error(lambda: fn(v), "sequence")
    _one_line_error(lambda: task_arithmetic([v, v], [1.0]), "2 task vectors but 1")
    _one_line_error(lambda: task_arithmetic([v], [float("inf")]), "finite")
    _one_line_error(lambda: apply(v, {"z": torch.ones(1)}), "lack 1 keys.*'z'")
    _one_line_error(lambda: apply(v, {"a": torch.ones(4)}), "shape")
    _one_line_error(lambda: apply({}, {}), "empty")


# ---------------------------------------------------------------- apply

def test_apply_adds_and_copies():
    pre = {"a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([10.0, 20.0]),
           "extra": torch.tensor([0.5]), "ids": torch.tensor([4, 5], dtype=torch.int64)}
    tau = {"a": torch.tensor([[0.5, -1.0], [0.0, 2.0]], dtype=torch.float64),
           "b": torch.tensor([1.0, -1.0])}
    got = apply(pre, tau)
    assert list(got) == list(pre)
    np.testing.assert_allclose(got["a"].numpy(), [[1.5, 1.0], [3.0, 6.0]])
    assert got["a"].dtype == torch.float32  # the pretrained dtype
    np.testing.assert_allclose(got["b"].numpy(), [11.0, 19.0])
    for k in ("extra", "ids"):
        assert torch.equal(got[k], pre[k]) and got[k].data_ptr() != pre[k].data_ptr()
    assert got["ids"].dtype == torch.int64
    np.testing.assert_allclose(pre["a"].numpy(), [[1, 2], [3, 4]])  # input untouched


# ---------------------------------------------------------------- the demo zoo

@pytest.mark.usefixtures("one_thread")
def test_task_arithmetic_on_the_zoo_equals_merge_engine(demo_zoo):
    from task_vectors.checkpoints import finetuned_path, load_state_dict, zeroshot_path
    from task_vectors.engine import MergeEngine

    tasks = demo_zoo.tasks[1:3]
    c = (0.3, 0.5)
    pre = load_state_dict(zeroshot_path(demo_zoo.path))
    vectors = []
    for t in tasks:
        ft = load_state_dict(finetuned_path(demo_zoo.path, t))
        vectors.append({k: ft[k] - v for k, v in pre.items() if v.is_floating_point()})
    merged = apply(pre, task_arithmetic(vectors, c))

    engine = MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(demo_zoo.path)),
        finetuned={t: str(finetuned_path(demo_zoo.path, t)) for t in tasks},
        heads={}, datasets=[], data_location="")
    engine.set_coefficients(c)
    live = engine.encoder.state_dict()
    assert set(live) == set(merged)
    changed = 0
    for k, v in live.items():
        np.testing.assert_allclose(merged[k].numpy(), v.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=k)
        changed += not torch.equal(merged[k], pre[k])
    assert changed > len(live) // 2  # the merge moved most weights


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("method", ["ties", "dare", "dare-ties"])
def test_engine_merge_of_a_method_equals_theta_pre_plus_its_transformed_vectors(demo_zoo,
                                                                                method):
    """theta(c) = theta_pre + sum_i c_i tau'_i, with tau' computed here from the checkpoint
    files (our own flattening), not read back from the engine."""
    from task_vectors.checkpoints import finetuned_path, load_state_dict, zeroshot_path
    from task_vectors.engine import MergeEngine

    tasks = demo_zoo.tasks[:3]
    c = np.array([0.4, 0.7, 0.2])
    pre = load_state_dict(zeroshot_path(demo_zoo.path))
    engine = MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(demo_zoo.path)),
        finetuned={t: str(finetuned_path(demo_zoo.path, t)) for t in tasks},
        heads={}, datasets=[], data_location="",
        tau_transform=tau_transform(method, density=0.3, drop_rate=0.5, seed=3))
    keys = engine.keys  # the merged weights, in the engine's flattening order
    flat_pre = torch.cat([pre[k].reshape(-1) for k in keys])
    fts = [load_state_dict(finetuned_path(demo_zoo.path, t)) for t in tasks]
    tau = torch.stack([torch.cat([ft[k].reshape(-1) for k in keys]) - flat_pre for ft in fts])
    tau_transform(method, density=0.3, drop_rate=0.5, seed=3)(tau)
    expected = flat_pre + (torch.as_tensor(c, dtype=torch.float32)[:, None] * tau).sum(0)
    engine.set_coefficients(c)
    live = engine.encoder.state_dict()
    got = torch.cat([live[k].reshape(-1) for k in keys])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(tau, torch.stack([torch.cat([ft[k].reshape(-1) for k in keys])
                                                - flat_pre for ft in fts]))  # it transformed
