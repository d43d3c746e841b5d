"""task_vectors.merging against hand computations and independent numpy implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from map_common.errors import MAPError
from task_vectors.merging import apply, dare, dare_merge, task_arithmetic, ties_merge

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


# ---------------------------------------------------------------- TIES

def _ties_loops(vectors: list[np.ndarray], density: float, scale: float) -> np.ndarray:
    """TIES written with plain loops: per task, sort magnitudes to find the threshold."""
    n = len(vectors[0])
    keep = max(1, int(round(density * n)))
    trimmed = []
    for v in vectors:
        v = [float(x) for x in v]
        threshold = sorted((abs(x) for x in v), reverse=True)[keep - 1]
        trimmed.append([x if abs(x) >= threshold else 0.0 for x in v])
    merged = []
    for j in range(n):
        column = [t[j] for t in trimmed]
        total = sum(column)
        sign = (total > 0) - (total < 0)
        agreeing = [x for x in column if x != 0 and ((x > 0) - (x < 0)) == sign]
        merged.append(scale * sum(agreeing) / len(agreeing) if agreeing else 0.0)
    return np.array(merged)


def test_ties_by_hand():
    # density 0.5 keeps 3 of 6 entries per task, chosen over both weights together.
    t1 = [4, -1, 0.5, 3, -2, 0.1]     # keeps 4, 3, -2
    t2 = [-3, 2, 1, -0.2, 0.3, -5]    # keeps -3, 2, -5
    t3 = [1, 6, -0.4, -2.5, 0.2, 0.7]  # keeps 1, 6, -2.5
    # trimmed sums: [2, 8, 0, 0.5, -2, -5] -> signs [+, +, 0, +, -, -]
    # entry 0: mean(4, 1); entry 1: mean(2, 6); entry 2: all trimmed; entry 3: 3 (-2.5 disagrees)
    want = [2.5, 4.0, 0.0, 3.0, -2.0, -5.0]
    vectors = [_vector(t) for t in (t1, t2, t3)]
    got = ties_merge(vectors, density=0.5)
    assert {k: v.shape for k, v in got.items()} == {"a": (2, 2), "b": (2,)}
    np.testing.assert_allclose(_flat(got), want, rtol=1e-6)
    np.testing.assert_allclose(_flat(ties_merge(vectors, density=0.5, scale=0.4)),
                               0.4 * np.array(want), rtol=1e-6)
    np.testing.assert_allclose(want, _ties_loops([np.array(t, float) for t in (t1, t2, t3)],
                                                 0.5, 1.0))


def test_ties_trim_is_global_not_per_weight():
    # All of t1's large entries are in "a": a per-weight trim would keep one entry of "b".
    t1 = [5, 4, 3, 2, 0.1, 0.2]
    got = ties_merge([_vector(t1)], density=0.5)
    np.testing.assert_allclose(_flat(got), [5, 4, 3, 0, 0, 0], rtol=1e-6)


def test_ties_cancelling_signs_give_zero_and_density_one_keeps_all():
    t1 = [2, 1, 1, 1, 1, 1]
    t2 = [-2, 3, -1, 1, 1, 1]
    got = ties_merge([_vector(t1), _vector(t2)], density=1.0)
    # entry 0: 2 + -2 = 0 -> elected sign 0 -> 0; entry 2 likewise; entry 1: mean(1, 3).
    np.testing.assert_allclose(_flat(got), [0, 2, 0, 1, 1, 1], rtol=1e-6)


@pytest.mark.parametrize("density,scale,n_tasks", [(0.2, 1.0, 3), (0.5, 0.7, 4),
                                                   (0.05, 1.3, 2), (1.0, 1.0, 5)])
def test_ties_random_against_loops(density, scale, n_tasks):
    rng = np.random.default_rng(int(density * 100) + n_tasks)
    shapes = {"w": (4, 6), "b": (6,), "s": (), "ln": (3,)}
    vectors = _random_vectors(rng, n_tasks, shapes)
    got = ties_merge(vectors, density=density, scale=scale)
    keys = tuple(shapes)
    want = _ties_loops([_flat(v, keys) for v in vectors], density, scale)
    np.testing.assert_allclose(_flat(got, keys), want, rtol=1e-5, atol=1e-6)


def test_ties_leaves_integers_and_inputs_alone():
    t1 = _vector([4, -1, 0.5, 3, -2, 0.1]) | {"n": torch.tensor([3], dtype=torch.int32)}
    before = {k: v.clone() for k, v in t1.items()}
    got = ties_merge([t1, _vector([1, 1, 1, 1, 1, 1])], density=0.5)
    assert set(got) == {"a", "b"}
    for k, v in before.items():
        assert torch.equal(t1[k], v)


# ---------------------------------------------------------------- DARE

def test_dare_survivors_are_exactly_rescaled_and_rate_is_right():
    rng = np.random.default_rng(0)
    v = {"w": torch.tensor(rng.uniform(0.5, 2.0, (100, 200)) * rng.choice([-1, 1], (100, 200)),
                           dtype=torch.float32)}
    p = 0.3
    out = dare(v, drop_rate=p, generator=torch.Generator().manual_seed(1))
    kept = out["w"] != 0
    np.testing.assert_allclose(out["w"][kept].numpy(), (v["w"][kept] / (1 - p)).numpy(),
                               rtol=1e-6, atol=0)
    n = v["w"].numel()
    # Binomial(n, 1 - p): within 5 standard deviations.
    assert abs(kept.sum().item() - n * (1 - p)) < 5 * np.sqrt(n * p * (1 - p))


def test_dare_is_unbiased_over_seeds():
    v = _vector([1.0, -2.0, 0.5, 3.0, -0.25, 4.0])
    p, n_seeds = 0.6, 3000
    total = {k: torch.zeros_like(t, dtype=torch.float64) for k, t in v.items()}
    for seed in range(n_seeds):
        out = dare(v, drop_rate=p, generator=torch.Generator().manual_seed(seed))
        for k in total:
            total[k] += out[k].double()
    mean = _flat({k: t / n_seeds for k, t in total.items()})
    original = _flat(v)
    # Per entry: std of the mean = |v| sqrt(p / (1 - p)) / sqrt(n_seeds); allow 5 of them.
    tolerance = 5 * np.abs(original) * np.sqrt(p / (1 - p)) / np.sqrt(n_seeds)
    assert np.all(np.abs(mean - original) < tolerance)


def test_dare_reproducible_and_zero_rate_is_identity():
    rng = np.random.default_rng(5)
    v = _random_vectors(rng, 1, {"w": (20, 20), "b": (20,)})[0]
    a = dare(v, drop_rate=0.5, generator=torch.Generator().manual_seed(7))
    b = dare(v, drop_rate=0.5, generator=torch.Generator().manual_seed(7))
    c = dare(v, drop_rate=0.5, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(a[k], b[k]) for k in v)
    assert not torch.equal(a["w"], c["w"])
    same = dare(v, drop_rate=0.0, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(same[k], v[k]) for k in v)


def test_dare_copies_integer_tensors():
    steps = torch.tensor([1, 2, 3], dtype=torch.int64)
    v = {"w": torch.ones(50), "steps": steps}
    out = dare(v, drop_rate=0.9, generator=torch.Generator().manual_seed(0))
    assert list(out) == ["w", "steps"]
    assert torch.equal(out["steps"], steps) and out["steps"].data_ptr() != steps.data_ptr()
    assert (out["w"] == 0).any()


def test_dare_merge_reproducible_and_consistent_with_task_arithmetic():
    rng = np.random.default_rng(11)
    shapes = {"w": (10, 10), "b": (10,)}
    vectors = _random_vectors(rng, 2, shapes)
    c = [0.7, -1.2]
    p = 0.4
    a = dare_merge(vectors, c, drop_rate=p, seed=3)
    b = dare_merge(vectors, c, drop_rate=p, seed=3)
    other = dare_merge(vectors, c, drop_rate=p, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in shapes)
    assert not torch.equal(a["w"], other["w"])
    # Each entry is c1 m1 t1 / (1-p) + c2 m2 t2 / (1-p) for some masks m1, m2 in {0, 1}.
    t1, t2 = (_flat(v, tuple(shapes)) for v in vectors)
    got = _flat(a, tuple(shapes))
    options = np.stack([m1 * c[0] * t1 / (1 - p) + m2 * c[1] * t2 / (1 - p)
                        for m1 in (0, 1) for m2 in (0, 1)])
    distance = np.abs(options - got).min(axis=0)
    assert distance.max() < 1e-5
    # Both masks drop something and keep something.
    assert np.abs(options[3] - got).min() < 1e-5 and np.abs(options[0] - got).min() < 1e-5
    # No dropping: plain task arithmetic.
    plain = task_arithmetic(vectors, c)
    zero = dare_merge(vectors, c, drop_rate=0.0, seed=0)
    assert all(torch.equal(zero[k], plain[k]) for k in shapes)


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


# ---------------------------------------------------------------- errors

def _one_line_error(fn, match: str):
    with pytest.raises(MAPError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan"), "x"])
def test_ties_rejects_bad_density(density):
    _one_line_error(lambda: ties_merge([_vector([1] * 6)], density=density), "density")


@pytest.mark.parametrize("rate", [1.0, -0.2, 2.0, float("nan")])
def test_dare_rejects_bad_drop_rate(rate):
    v = _vector([1] * 6)
    _one_line_error(lambda: dare(v, drop_rate=rate, generator=torch.Generator()), "drop_rate")
    _one_line_error(lambda: dare_merge([v], [1.0], drop_rate=rate, seed=0), "drop_rate")


def test_errors_on_bad_inputs():
    v = _vector([1] * 6)
    wrong_shape = {"a": torch.ones(4), "b": torch.ones(2)}
    for fn in (lambda vs: task_arithmetic(vs, [1.0] * len(vs)),
               lambda vs: ties_merge(vs),
               lambda vs: dare_merge(vs, [1.0] * len(vs), drop_rate=0.1, seed=0)):
        _one_line_error(lambda: fn([]), "no task vectors")
        _one_line_error(lambda: fn([v, wrong_shape]), "shape")
        _one_line_error(lambda: fn([v, {"c": torch.ones(2)}]), "share no")
        _one_line_error(lambda: fn([{"n": torch.ones(2, dtype=torch.int64)}]), "share no")
        _one_line_error(lambda: fn(v), "sequence")
    _one_line_error(lambda: task_arithmetic([v, v], [1.0]), "2 task vectors but 1")
    _one_line_error(lambda: task_arithmetic([v], [float("inf")]), "finite")
    _one_line_error(lambda: dare_merge([v, v], [1.0, 2.0, 3.0], drop_rate=0.1, seed=0),
                    "coefficients")
    _one_line_error(lambda: dare_merge([v], [1.0], drop_rate=0.1, seed=-1), "seed")
    _one_line_error(lambda: dare({}, drop_rate=0.1, generator=torch.Generator()), "empty")
    _one_line_error(lambda: dare(v, drop_rate=0.1, generator=3), "Generator")
    _one_line_error(lambda: ties_merge([v], scale=float("nan")), "scale")
    _one_line_error(lambda: apply(v, {"z": torch.ones(1)}), "lack 1 keys.*'z'")
    _one_line_error(lambda: apply(v, {"a": torch.ones(4)}), "shape")
    _one_line_error(lambda: apply({}, {}), "empty")


# ---------------------------------------------------------------- the demo zoo

@pytest.mark.usefixtures("one_thread")
def test_task_arithmetic_on_the_zoo_equals_merge_engine(demo_zoo):
    from task_vectors.checkpoints import finetuned_path, load_state_dict, zeroshot_path
    from task_vectors.engine import MergeEngine
    from task_vectors.task_vector import TaskVector

    tasks = demo_zoo.tasks[1:3]
    c = (0.3, 0.5)
    pre = load_state_dict(zeroshot_path(demo_zoo.path))
    vectors = [TaskVector(pre, load_state_dict(finetuned_path(demo_zoo.path, t))).vector
               for t in tasks]
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
