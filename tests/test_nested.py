import json

import numpy as np
import pytest

from map_common.errors import MAPError
from src.core.nested import (
    PoolModel,
    compose_coefficients,
    model_preference,
    pair_closest,
    pair_design,
    pair_preference,
    run_nested,
    side_scores,
    validate_preference,
)

TASKS8 = ["SUN397", "Cars", "DTD", "SVHN", "EuroSAT", "GTSRB", "RESISC45", "MNIST"]


def leaf(name, acc, T=3, idx=0):
    return PoolModel(name=name, tasks=(name,), coefficients=np.eye(T)[idx], accuracy=acc,
                     measured={name: acc})


# ------------------------------------------------------------------ pairing


def test_pair_closest_picks_smallest_gap():
    pool = [leaf("a", 0.9), leaf("b", 0.5), leaf("c", 0.62), leaf("d", 0.2)]
    assert pair_closest(pool) == (1, 2)


def test_pair_closest_tie_goes_to_sorted_names_not_pool_order():
    # gaps b-c and x-a are both 0.1 (up to float noise); ("a", "x") sorts first.
    pool = [leaf("b", 0.8), leaf("c", 0.7), leaf("x", 0.4), leaf("a", 0.3)]
    assert pair_closest(pool) == (2, 3)
    assert pair_closest(pool[::-1]) == (0, 1)


def test_pair_closest_needs_two():
    with pytest.raises(ValueError):
        pair_closest([leaf("a", 0.5)])


# --------------------------------------------------------------- preference


def test_model_preference_sums_tasks():
    pref = {"a": 1.0, "b": 2.5, "c": 0.5}
    merged = PoolModel("merge1", ("a", "c"), np.zeros(3), 0.0)
    assert model_preference(merged, pref) == pytest.approx(1.5)
    assert model_preference(leaf("b", 0.1), pref) == pytest.approx(2.5)
    np.testing.assert_allclose(pair_preference(merged, leaf("b", 0.1), pref), [1.5, 2.5])


def test_side_scores_weighted_means_by_hand():
    pref = {"a": 1.0, "b": 3.0, "c": 2.0}
    metrics = np.array([[0.2, 0.6, 0.9], [1.0, 0.0, 0.5]])  # columns a, b, c
    out = side_scores(metrics, ["a", "b"], ["c"], pref)
    expected = np.array([[(1 * 0.2 + 3 * 0.6) / 4, 0.9], [(1 * 1.0 + 3 * 0.0) / 4, 0.5]])
    np.testing.assert_allclose(out, expected)


def test_side_scores_dict_and_columns_agree():
    pref = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 1.0}
    rng = np.random.default_rng(0)
    arr = rng.random((5, 4))
    cols = ["c", "a", "d", "b"]
    from_array = side_scores(arr, ["a", "b"], ["c", "d"], pref, columns=cols)
    from_dict = side_scores({t: arr[:, k] for k, t in enumerate(cols)}, ["a", "b"], ["c", "d"], pref)
    np.testing.assert_allclose(from_array, from_dict)
    np.testing.assert_allclose(from_array[:, 1], (2 * arr[:, 0] + 1 * arr[:, 2]) / 3)


def test_side_scores_zero_weight_side_uses_plain_mean():
    pref = {"a": 0.0, "b": 0.0, "c": 1.0, "d": 0.0}
    metrics = np.array([[0.2, 0.6, 0.9, 0.1]])
    out = side_scores(metrics, ["a", "b"], ["c", "d"], pref)
    np.testing.assert_allclose(out, [[0.4, 0.9]])  # zero-weight d drops out of side B


def test_side_scores_shape_errors():
    with pytest.raises(ValueError):
        side_scores(np.zeros((3, 2)), ["a", "b"], ["c"], {"a": 1, "b": 1, "c": 1})
    with pytest.raises(ValueError):
        side_scores({"a": np.zeros(3)}, ["a"], ["c"], {"a": 1, "c": 1})


# --------------------------------------------------------------- composition


def test_compose_coefficients():
    a, b = np.array([0.3, 0.0, 0.7]), np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(compose_coefficients(a, b, np.array([2.0, 0.5])), [0.6, 0.5, 1.4])
    with pytest.raises(ValueError):
        compose_coefficients(a, b, np.array([1.0, 2.0, 3.0]))


def test_pair_design_shape_box_and_diagonal():
    X = pair_design(20, n_diagonal=6, seed=3)
    assert X.shape == (20, 2)
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert len({tuple(r) for r in X.round(12)}) == 20
    near_diag = np.abs(X[:, 0] - X[:, 1]) < 0.15
    assert near_diag.sum() >= 6
    np.testing.assert_array_equal(X, pair_design(20, n_diagonal=6, seed=3))
    assert pair_design().shape == (20, 2)


# ------------------------------------------------------------------- rounds


class FakeLinearWorld:
    """θ(a) = Σ a_i τ_i with random τ_i; a 'model' is its coefficient vector."""

    def __init__(self, tasks, d=16, seed=0):
        rng = np.random.default_rng(seed)
        self.tasks = list(tasks)
        self.tau = rng.normal(size=(len(tasks), d))
        self.target = rng.normal(size=(len(tasks), d))
        self.rng = np.random.default_rng(seed + 1)
        self.pair_calls = []
        self.measure_calls = 0

    def theta(self, a):
        return np.asarray(a) @ self.tau

    def run_pair(self, model_a, model_b, round_idx):
        self.pair_calls.append((model_a.name, model_b.name, round_idx))
        c = self.rng.uniform(0.2, 1.2, size=2)
        return c, {"n_points": 20, "front": np.array([[0.1, 0.2]]), "seed": np.int64(round_idx)}

    def measure(self, coefficients, tasks):
        self.measure_calls += 1
        theta = self.theta(coefficients)
        # Accuracy falls with distance to each task's target; only depends on θ.
        return {t: float(1 / (1 + np.linalg.norm(theta - self.target[self.tasks.index(t)])))
                for t in tasks}


def single_acc(tasks, seed=0):
    rng = np.random.default_rng(seed + 100)
    return {t: float(a) for t, a in zip(tasks, rng.uniform(0.5, 0.95, len(tasks)))}


def test_eight_tasks_seven_rounds_final_coefficients_compose_along_tree():
    world = FakeLinearWorld(TASKS8)
    pref = {t: float(w) for t, w in zip(TASKS8, [1, 2, 0, 1, 3, 1, 1, 0.5])}
    seen = []
    res = run_nested(TASKS8, single_acc(TASKS8), pref, world.run_pair, world.measure,
                     on_round=seen.append)
    assert len(res.records) == 7 and len(seen) == 7
    assert set(res.final.tasks) == set(TASKS8) and len(res.final.tasks) == 8
    assert res.final.name == "merge7"
    assert res.pool_history[0] == TASKS8 and res.pool_history[-1] == ["merge7"]

    # Recompose by hand from the pair coefficients along the tree.
    def coeffs(name):
        if name in TASKS8:
            return np.eye(8)[TASKS8.index(name)]
        rec = next(r for r in res.records if r["merged"] == name)
        c1, c2 = rec["pair_coefficients"]
        return c1 * coeffs(rec["left"]) + c2 * coeffs(rec["right"])

    hand = coeffs(res.final.name)
    np.testing.assert_allclose(res.final.coefficients, hand)
    # θ of the final model: Σ_i composed_i τ_i, not a fixed-weight average.
    np.testing.assert_allclose(world.theta(res.final.coefficients), hand @ world.tau)
    assert not np.allclose(hand, hand[0])

    # Each round's pairing accuracy of the merge is the preference-weighted mean.
    for rec in res.records:
        w = np.array([pref[t] for t in rec["tasks"]])
        acc = np.array([rec["measured"][t] for t in rec["tasks"]])
        assert rec["pairing_accuracy"]["merged"] == pytest.approx(w @ acc / w.sum())
        assert rec["left_preference"] == pytest.approx(sum(pref[t] for t in rec["left_tasks"]))

    # Records are JSON-friendly as they are.
    json.dumps(res.records)


def test_each_round_pairs_the_closest_models():
    world = FakeLinearWorld(TASKS8, seed=4)
    acc = single_acc(TASKS8, seed=4)
    res = run_nested(TASKS8, acc, {t: 1.0 for t in TASKS8}, world.run_pair, world.measure)
    # Level by level: 8 -> 4 -> 2 -> 1 models; each level's pairs are disjoint, closest
    # first, each the closest pair of the models not yet paired at that level.
    assert [len(names) for names in res.pool_history] == [8, 4, 2, 1]
    assert [rec["level"] for rec in res.records] == [0, 0, 0, 0, 1, 1, 2]
    for level, names in enumerate(res.pool_history[:-1]):
        left = [res.models[n] for n in names]
        for rec in [r for r in res.records if r["level"] == level]:
            i, j = pair_closest(left)
            assert (rec["left"], rec["right"]) == (left[i].name, left[j].name)
            left = [m for k, m in enumerate(left) if k not in (i, j)]
        assert left == []
    # First round: the globally closest pair of single accuracies.
    vals = sorted(acc.items(), key=lambda kv: kv[1])
    gaps = [(vals[k + 1][1] - vals[k][1], {vals[k][0], vals[k + 1][0]}) for k in range(7)]
    assert {res.records[0]["left"], res.records[0]["right"]} == min(gaps, key=lambda g: g[0])[1]


def test_resume_replays_stored_rounds_without_calling_run_pair():
    pref = {t: 1.0 + k for k, t in enumerate(TASKS8)}
    acc = single_acc(TASKS8, seed=2)
    full_world = FakeLinearWorld(TASKS8, seed=2)
    full = run_nested(TASKS8, acc, pref, full_world.run_pair, full_world.measure)

    stored = json.loads(json.dumps(full.records[:4]))  # as read back from merge_tree.json
    # A world whose run_pair continues the same random stream from round 4 on.
    resumed_world = FakeLinearWorld(TASKS8, seed=2)
    for _ in range(4):
        resumed_world.rng.uniform(0.2, 1.2, size=2)
    written = []
    resumed = run_nested(TASKS8, acc, pref, resumed_world.run_pair, resumed_world.measure,
                         on_round=written.append, completed_rounds=stored)
    assert [call[2] for call in resumed_world.pair_calls] == [4, 5, 6]
    assert resumed_world.measure_calls == 3
    assert [r["round"] for r in written] == [4, 5, 6]
    np.testing.assert_allclose(resumed.final.coefficients, full.final.coefficients)
    assert resumed.records == json.loads(json.dumps(full.records))


def test_resume_with_every_round_stored_calls_nothing():
    world = FakeLinearWorld(TASKS8[:4])
    acc = single_acc(TASKS8[:4])
    pref = {t: 1.0 for t in TASKS8[:4]}
    full = run_nested(TASKS8[:4], acc, pref, world.run_pair, world.measure)

    def boom(*_):
        raise AssertionError("must not be called")

    again = run_nested(TASKS8[:4], acc, pref, boom, boom, completed_rounds=full.records)
    np.testing.assert_allclose(again.final.coefficients, full.final.coefficients)


def test_resume_rejects_records_of_another_tree():
    world = FakeLinearWorld(TASKS8[:4])
    acc = single_acc(TASKS8[:4])
    pref = {t: 1.0 for t in TASKS8[:4]}
    full = run_nested(TASKS8[:4], acc, pref, world.run_pair, world.measure)
    bad = json.loads(json.dumps(full.records[:1]))
    bad[0]["left"], bad[0]["right"] = bad[0]["right"], "nope"
    with pytest.raises(MAPError, match="stored round 0"):
        run_nested(TASKS8[:4], acc, pref, world.run_pair, world.measure, completed_rounds=bad)
    bad = json.loads(json.dumps(full.records[:1]))
    bad[0]["coefficients"][0] += 0.5
    with pytest.raises(MAPError, match="composed coefficients"):
        run_nested(TASKS8[:4], acc, pref, world.run_pair, world.measure, completed_rounds=bad)
    with pytest.raises(MAPError, match="stored rounds"):
        run_nested(TASKS8[:4], acc, pref, world.run_pair, world.measure,
                   completed_rounds=full.records * 2)


def test_run_pair_bad_coefficients_rejected():
    world = FakeLinearWorld(TASKS8[:3])
    with pytest.raises(ValueError, match="pair coefficients"):
        run_nested(TASKS8[:3], single_acc(TASKS8[:3]), {t: 1 for t in TASKS8[:3]},
                   lambda a, b, r: (np.array([1.0, np.nan]), {}), world.measure)


# --------------------------------------------------------------- validation


def test_validate_preference_ok_returns_floats_for_tasks_only():
    out = validate_preference({"a": 1, "b": 0.5, "extra": 7}, ["a", "b"])
    assert out == {"a": 1.0, "b": 0.5} and all(type(v) is float for v in out.values())


@pytest.mark.parametrize(
    "pref, tasks, match",
    [
        ([("a", 1)], ["a", "b"], "mapping"),
        ({"a": 1}, ["a", "b"], "'b'"),
        ({"a": 1, "b": -0.1}, ["a", "b"], "'b'.*>= 0"),
        ({"a": "high", "b": 1}, ["a", "b"], "'a'.*number"),
        ({"a": None, "b": 1}, ["a", "b"], "'a'.*number"),
        ({"a": float("nan"), "b": 1}, ["a", "b"], "'a'"),
        ({"a": 1}, ["a"], "at least 2"),
        ({"a": 0, "b": 0}, ["a", "b"], "all 0"),
        ({"a": 1, "b": 1}, ["a", "b", "a"], "distinct"),
    ],
)
def test_validate_preference_errors(pref, tasks, match):
    with pytest.raises(MAPError, match=match):
        validate_preference(pref, tasks)


def test_run_nested_validates_inputs():
    world = FakeLinearWorld(TASKS8[:3])
    tasks = TASKS8[:3]
    with pytest.raises(MAPError, match="'DTD'"):
        run_nested(tasks, single_acc(tasks), {"SUN397": 1, "Cars": 1}, world.run_pair, world.measure)
    with pytest.raises(MAPError, match="single-task accuracy for task 'Cars'"):
        run_nested(tasks, {"SUN397": 0.5, "DTD": 0.5}, {t: 1 for t in tasks},
                   world.run_pair, world.measure)
    assert world.pair_calls == []


def test_a_level_is_one_run_level_and_one_measure_level_call():
    world = FakeLinearWorld(TASKS8, seed=3)
    acc, pref = single_acc(TASKS8, seed=3), {t: 1.0 for t in TASKS8}
    levels, measured = [], []

    def run_level(pairs):
        levels.append([(a.name, b.name, r) for a, b, r in pairs])
        return [world.run_pair(a, b, r) for a, b, r in pairs]

    def measure_level(items):
        measured.append(len(items))
        return [world.measure(c, t) for c, t in items]

    batched = run_nested(TASKS8, acc, pref, run_level=run_level, measure_level=measure_level)
    assert [len(level) for level in levels] == [4, 2, 1] and measured == [4, 2, 1]
    assert [r for level in levels for _, _, r in level] == list(range(7))
    # One pair at a time (run_pair / measure) gives the same tree.
    single = run_nested(TASKS8, acc, pref, FakeLinearWorld(TASKS8, seed=3).run_pair,
                        FakeLinearWorld(TASKS8, seed=3).measure)
    assert single.records == batched.records


def test_resume_inside_a_level_replays_its_stored_pairs():
    acc, pref = single_acc(TASKS8, seed=5), {t: 1.0 for t in TASKS8}
    full = run_nested(TASKS8, acc, pref, FakeLinearWorld(TASKS8).run_pair,
                      FakeLinearWorld(TASKS8).measure)
    world = FakeLinearWorld(TASKS8)
    for a, b, r in [(full.models[rec["left"]], full.models[rec["right"]], rec["round"])
                    for rec in full.records[:2]]:
        world.run_pair(a, b, r)  # advance the stream past the two stored rounds
    world.pair_calls.clear()
    resumed = run_nested(TASKS8, acc, pref, world.run_pair, world.measure,
                         completed_rounds=full.records[:2])
    assert [r for _, _, r in world.pair_calls] == [2, 3, 4, 5, 6]
    assert resumed.records == full.records


# ------------------------------------------------------------------ context and floor
def test_with_context_sets_every_other_task_vector_to_lambda():
    from src.core.nested import with_context

    models = ["A", "B", "C", "D"]
    c = np.array([0.7, 0.0, 0.4, 0.0])
    np.testing.assert_array_equal(with_context(c, ("A", "C"), models, 0.3), [0.7, 0.3, 0.4, 0.3])
    np.testing.assert_array_equal(with_context(c, ("A", "C"), models, None), c)
    np.testing.assert_array_equal(with_context(c, tuple(models), models, 0.3), c)  # no other


def test_hand_over_keeps_the_tree_at_or_above_the_floor_else_takes_the_best_above_it():
    from src.core.front import pick_evaluated
    from src.core.nested import hand_over
    from src.core.pick_check import ta_floor

    w = np.ones(3)
    ta_C = np.array([[0.3] * 3, [0.5] * 3])
    ta_Y = np.array([[0.60, 0.50, 0.70], [0.65, 0.52, 0.74]])  # best λ 0.5: mean 0.6367
    floor = ta_floor(ta_C, ta_Y, w, "max", 1e-9)
    assert floor == pytest.approx((np.mean(ta_Y[1]), 0.52))
    pre, best = np.full(3, 0.3), np.full(3, 0.95)

    def choose(groups):
        ev = pick_evaluated(groups, pre, w, ["max"] * 3, "tchebycheff", pre, best, [], floor)
        return ev.coefficients, ev.real, ev.source

    above = (np.array([0.6, 0.4, 0.5]), np.array([0.66, 0.55, 0.72]))
    below_mean = (np.array([0.6, 0.4, 0.5]), np.array([0.60, 0.60, 0.62]))
    design = (np.array([[0.2, 0.6, 0.5], [0.7, 0.3, 0.5]]),
              np.array([[0.70, 0.45, 0.80], [0.64, 0.53, 0.75]]), "design")
    ta = (ta_C, ta_Y, "task arithmetic")
    c, y, source = hand_over(above, [design, ta], floor, w, "max", choose)
    assert source == "nested tree" and np.array_equal(c, above[0])
    # the tree's worst task is above TA's, its mean is not: the design's second row is at or
    # above TA on both (the first has a worse worst task), and is handed over
    c, y, source = hand_over(below_mean, [design, ta], floor, w, "max", choose)
    assert source == "design" and np.array_equal(c, design[0][1])
    # no other evaluated merge reaches the floor: TA itself
    c, y, source = hand_over(below_mean, [(design[0][:1], design[1][:1], "design"), ta], floor,
                             w, "max", choose)
    assert source == "task arithmetic" and np.array_equal(c, ta_C[1])
    # without a floor the tree's model is always handed over
    assert hand_over(below_mean, [design, ta], None, w, "max", choose)[2] == "nested tree"


def test_segment_to_gives_the_merges_between_two_models_at_the_given_steps():
    from src.core.nested import SEGMENT_STEPS, segment_to

    tree, ta = np.array([0.6, 0.2, 0.4]), np.full(3, 0.3)
    C = segment_to(tree, ta)
    assert C.shape == (len(SEGMENT_STEPS), 3) and SEGMENT_STEPS == (0.25, 0.5, 0.75)
    np.testing.assert_allclose(C[0], [0.525, 0.225, 0.375])
    np.testing.assert_allclose(C[1], (tree + ta) / 2)
    np.testing.assert_allclose(segment_to(tree, ta, (0.0, 1.0)), [tree, ta])
