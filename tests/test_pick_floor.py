"""--pick-floor task-arithmetic: the pick among the models at or above task arithmetic at its
best evaluated λ on both the preference-weighted mean and the worst task, when any are."""
from __future__ import annotations


import numpy as np
import pytest

from src.core import pareto
from src.core.front import pick_evaluated, pick_floor, pick_front
from src.core.pick_check import at_or_above, ta_floor
from src.core.surrogate import fit_surrogates

MAX = ["max", "max"]


def test_ta_floor_is_the_best_equal_merge_by_the_weighted_mean():
    C = np.array([[0.2, 0.2], [0.4, 0.4], [0.9, 0.1], [0.6, 0.6]])
    Y = np.array([[0.6, 0.5], [0.7, 0.6], [0.95, 0.9], [0.8, 0.4]])
    # (0.9, 0.1) is best but not an equal merge; (0.4) and (0.6) tie on the mean: the first
    assert ta_floor(C, Y, [1, 1], "max", tol=0.1) == pytest.approx((0.65, 0.6))
    assert ta_floor(C, Y, [1, 3], "max", tol=0.1) == pytest.approx((0.625, 0.6))
    assert ta_floor(C[2:3], Y[2:3], [1, 1], "max", tol=0.1) is None
    losses = 1 - Y
    assert ta_floor(C, losses, [1, 1], "min", tol=0.1) == pytest.approx((0.35, 0.4))


def test_at_or_above_needs_both_measures():
    Y = np.array([[0.7, 0.6], [0.8, 0.55], [0.66, 0.65], [0.64, 0.64]])
    floor = (0.65, 0.6)
    np.testing.assert_array_equal(at_or_above(Y, floor, [1, 1], "max"),
                                  [True, False, True, False])
    np.testing.assert_array_equal(at_or_above(1 - Y, (0.35, 0.4), [1, 1], "min"),
                                  [True, False, True, False])


def test_pick_floor_kinds():
    C, Y = np.array([[0.5, 0.5]]), np.array([[0.7, 0.6]])
    assert pick_floor("pretrained", C, Y, [1, 1], "max", (0.0, 1.0)) is None
    assert pick_floor("task-arithmetic", C, Y, [1, 1], "max", (0.0, 1.0)) == \
        pytest.approx((0.65, 0.6))
    with pytest.raises(ValueError, match="pick floor"):
        pick_floor("ta", C, Y, [1, 1], "max", (0.0, 1.0))


def test_front_pick_keeps_to_the_points_predicted_at_or_above_the_floor():
    # a bowed front: Tchebycheff prefers the balanced (0.7, 0.7), whose mean is below 0.72
    F = np.array([[0.95, 0.4], [0.85, 0.62], [0.7, 0.7], [0.6, 0.8]])
    worst, best = np.array([0.3, 0.3]), np.array([1.0, 1.0])
    free = pick_front(F, [1, 1], MAX, "tchebycheff", worst, best)
    assert free == 2 == pareto.pick(F, [1, 1], MAX, "tchebycheff", worst=worst, best=best)
    assert pick_front(F, [1, 1], MAX, "tchebycheff", worst, best, floor=(0.72, 0.6)) == 1
    # no point reaches the floor: the rule over the whole front
    assert pick_front(F, [1, 1], MAX, "tchebycheff", worst, best, floor=(0.9, 0.9)) == 2


def test_evaluated_pick_prefers_keepers_at_or_above_the_floor():
    C = np.array([[0.4, 0.4], [0.6, 0.3], [0.9, 0.1], [0.3, 0.6]])
    Y = np.array([[0.70, 0.60],    # TA: the floor (0.65, 0.60)
                  [0.75, 0.62],    # above TA on both: taken
                  [0.95, 0.25],    # above TA's mean, below the pretrained model's 0.3
                  [0.64, 0.64]])   # the most balanced, below TA's mean
    pre = np.array([0.3, 0.3])
    worst, best = pre, np.array([1.0, 1.0])
    surrogates = fit_surrogates(np.vstack([C, np.eye(2), [[0.5, 0.5], [0.2, 0.8]]]),
                                np.vstack([Y, [[0.9, 0.2], [0.2, 0.9]], [[0.7, 0.6]],
                                           [[0.5, 0.7]]]), "sigmoid")
    args = ([(C, Y, "design")], pre, [1, 1], MAX, "tchebycheff", worst, best, surrogates)
    free = pick_evaluated(*args)
    np.testing.assert_array_equal(free.coefficients, [0.3, 0.6])
    assert free.at_or_above_floor is None
    floored = pick_evaluated(*args, floor=ta_floor(C, Y, [1, 1], "max", 0.1))
    np.testing.assert_array_equal(floored.coefficients, [0.6, 0.3])
    assert floored.at_or_above_floor and floored.keeps_pretrained
    # with nothing at or above it but TA itself, TA is handed over
    alone = pick_evaluated([(C[[0, 3]], Y[[0, 3]], "design")], *args[1:],
                           floor=ta_floor(C, Y, [1, 1], "max", 0.1))
    np.testing.assert_array_equal(alone.coefficients, [0.4, 0.4])


# ------------------------------------------------------------------ the CLI
# A run with the floor (map's default at 4 tasks) end to end: test_many_tasks_cli.py,
# test_the_default_pick_floor_hands_over_a_model_at_or_above_ta.
def test_a_bad_pick_floor_is_refused_in_one_line(tmp_path, capsys):
    import run_MAP

    assert run_MAP.main(["--demo", "--pick-floor", "ta", "--results-path",
                         str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--pick-floor: invalid choice: 'ta'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_floored_pick_finds_the_rules_best_point_above_the_floor():
    """Two tasks trading off through a sigmoid: the constrained search returns a point
    predicted at or above the floor, as good by the rule as the best such point of a fine
    grid; an unreachable floor gives None."""
    from src.core.sampling import full_grid

    def truth(C):
        z1 = -1 + 3 * C[:, 0] - 1.5 * C[:, 1] - 0.5 * C[:, 0] ** 2
        z2 = -1.5 + 2 * C[:, 1] - 1 * C[:, 0]
        return np.column_stack([1 / (1 + np.exp(-z1)), 1 / (1 + np.exp(-z2))])

    C = full_grid(2, 11)
    surrogates = fit_surrogates(C, truth(C), "sigmoid")
    worst, best = truth(np.zeros((1, 2)))[0], np.diag(truth(np.eye(2)))
    G = full_grid(2, 201)
    FG = np.column_stack([s.predict(G) for s in surrogates])
    free = pareto.pick(FG, [1, 1], MAX, "tchebycheff", worst=worst, best=best)
    top = int(np.argmax(FG.mean(axis=1)))  # a floor just below the best mean: reachable
    floor = (float(FG[top].mean()) - 0.005, float(FG[top].min()) - 0.005)
    assert not at_or_above(FG[free][None], floor, [1, 1], "max")[0]  # the rule alone misses
    found = pareto.floored_pick(surrogates, MAX, [1, 1], "tchebycheff", floor, FG, worst,
                                best, n_gen=60, seed=0)
    assert found is not None
    c, f = found
    assert at_or_above(f[None], floor, [1, 1], "max")[0]
    ok = at_or_above(FG, floor, [1, 1], "max")
    scores = pareto.PICK_METHODS["tchebycheff"].scores(
        np.vstack([FG, f]), np.array([0.5, 0.5]), MAX, worst, best)
    assert scores[-1] <= scores[:-1][ok].min() + 1e-3
    assert pareto.floored_pick(surrogates, MAX, [1, 1], "tchebycheff", (0.99, 0.99), FG,
                               worst, best, n_gen=20, seed=0) is None


def test_the_floor_line_says_what_the_floor_did():
    from src.run.outputs import floor_line

    ta = {"coefficients": {"a": 0.3, "b": 0.3}, "mean": 0.68, "worst": 0.38}
    floor = {"task_arithmetic": {"mean": 0.68, "worst": 0.38}}
    base = {"preference": {"a": 1.0, "b": 1.0}, "floor": floor,
            "front_pick": {"real": {"a": 0.79, "b": 0.56}}}

    def summary(at_or_above, pick):
        return {"chosen": {**base, "at_or_above_floor": at_or_above},
                "pick_check": {"sense": "max", "pick": pick, "task_arithmetic": ta}}

    other = {"coefficients": {"a": 0.4, "b": 0.2}, "mean": 0.69, "worst": 0.41}
    assert floor_line(summary(True, other)) == (
        "Pick floor: the model handed over is at or above task arithmetic at its best "
        "evaluated lambda (mean 0.6800, worst 0.3800) on both: mean 0.6900, worst 0.4100")
    line = floor_line(summary(True, ta))
    assert "so TA itself is handed over" in line
    assert "the front's pick (mean 0.6750, worst 0.5600) is not" in line
    assert floor_line(summary(False, other)).startswith(
        "Pick floor: no evaluated model that keeps the pretrained model's tasks")
    assert floor_line({"chosen": {"preference": {}}, "pick_check": None}) is None
