"""Where the handed-over model comes from (src.core.front, --pick-from): the surrogate
front's pick, or the best evaluated model by the same rule, keepers of the pretrained
model first; and the measured pretrained model as the Tchebycheff anchor."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from src.core import pareto
from src.core.front import FrontTask, SearchSettings, front_summary, pick_evaluated, solve_front
from src.core.metrics import get_metric
from src.core.pick_check import keeps_pretrained

MAX2 = ["max", "max"]


class Flat:
    """A stand-in surrogate: predicts a constant (pick_evaluated only reads predict)."""

    def __init__(self, value: float):
        self.value = value

    def predict(self, C):
        return np.full(len(np.atleast_2d(C)), self.value)


def test_keepers_are_rows_at_or_above_pretrained_on_every_weighted_task():
    Y = np.array([[0.5, 0.5], [0.6, 0.39], [0.4, 0.9], [0.4, 0.4]])
    pre = np.array([0.4, 0.4])
    assert keeps_pretrained(Y, pre, MAX2, [1, 1]).tolist() == [True, False, True, True]
    # a task of weight 0 does not count; for a minimised metric "above" means lower
    assert keeps_pretrained(Y, pre, MAX2, [1, 0]).tolist() == [True, True, True, True]
    assert keeps_pretrained(Y, pre, ["min", "min"], [1, 1]).tolist() == \
        [False, False, False, True]


def test_a_keeper_is_chosen_over_a_better_scalarised_model_below_pretrained():
    pre = np.array([0.5, 0.5])
    worst, best = pre, np.array([1.0, 1.0])
    C = np.array([[1.0, 0.2], [0.4, 0.4]])
    Y = np.array([[0.95, 0.49],   # best weighted sum, but task 2 below pretrained
                  [0.6, 0.6]])     # keeps both
    ws = pick_evaluated([(C, Y, "design")], pre, [1, 1], MAX2, "weighted-sum", worst, best,
                        [Flat(0.0), Flat(1.0)])
    assert ws.source == "design" and ws.keeps_pretrained
    np.testing.assert_array_equal(ws.coefficients, C[1])
    np.testing.assert_array_equal(ws.real, Y[1])
    np.testing.assert_array_equal(ws.predicted, [0.0, 1.0])
    # without a measured pretrained model there is no keeper rule: the rule's best wins
    free = pick_evaluated([(C, Y, "design")], None, [1, 1], MAX2, "weighted-sum", worst,
                          best, [Flat(0.0), Flat(0.0)])
    np.testing.assert_array_equal(free.coefficients, C[0])
    assert free.keeps_pretrained is None


def test_without_a_keeper_the_rule_decides_and_the_pretrained_model_can_win():
    pre = np.array([0.5, 0.5])
    C = np.array([[1.0, 0.0], [0.0, 1.0]])
    Y = np.array([[0.9, 0.1], [0.1, 0.9]])  # each fine-tuned model destroys the other task
    got = pick_evaluated([(C, Y, "design")], pre, [1, 1], MAX2, "tchebycheff", pre,
                         np.array([0.9, 0.9]), [Flat(0.0), Flat(0.0)])
    # the pretrained model joins the candidates, keeps both tasks, so it is handed over
    assert got.source == "pretrained" and got.keeps_pretrained
    np.testing.assert_array_equal(got.coefficients, [0.0, 0.0])


def test_ties_go_to_the_earlier_group():
    C1, C2 = np.array([[0.3, 0.7]]), np.array([[0.7, 0.3]])
    Y = np.array([[0.8, 0.8]])
    got = pick_evaluated([(C1, Y, "re-evaluated front"), (C2, Y, "design")], None, [1, 1],
                         MAX2, "weighted-sum", None, None, [Flat(0.0), Flat(0.0)])
    assert got.source == "re-evaluated front"
    np.testing.assert_array_equal(got.coefficients, C1[0])


# ------------------------------------------------------------------ through solve_front
def _real(C: np.ndarray) -> np.ndarray:
    """A two-task 'real' metric the quadratic surrogates cannot fit exactly: each task rises
    with its own coefficient, falls with the other's, with a ripple."""
    C = np.atleast_2d(C)
    a, b = C[:, 0], C[:, 1]
    y1 = 0.5 + 0.4 * a - 0.25 * b ** 2 + 0.05 * np.sin(9 * a * b)
    y2 = 0.5 + 0.4 * b - 0.25 * a ** 2 + 0.05 * np.cos(7 * a + b)
    return np.clip(np.column_stack([y1, y2]), 0.01, 0.99)


def _task(tmp_path: Path, pretrained=None, reevaluate=5) -> FrontTask:
    rng = np.random.default_rng(3)
    C = np.vstack([[1.0, 0.0], [0.0, 1.0], rng.uniform(0, 1, (10, 2))])
    return FrontTask(C=C, Y=_real(C), labels=["A", "B"], metric=get_metric("accuracy"),
                     weights=[1.0, 1.0], folder=tmp_path, names="t", reevaluate=reevaluate,
                     evaluate_real=_real, pretrained=pretrained)


SETTINGS = dict(low=0.0, high=1.0, n_gen=40, seed=0, pick="tchebycheff")


def test_front_pick_is_the_default_and_unchanged_by_the_new_rule(tmp_path):
    task = _task(tmp_path)
    res = solve_front(task, SearchSettings(**SETTINGS))
    assert res.evaluated_pick is None
    np.testing.assert_array_equal(res.chosen_coefficients, res.C_front[res.chosen])
    np.testing.assert_array_equal(res.chosen_real, res.front_pick_real)
    summary = front_summary(task, res, ["a", "b"], "tchebycheff")
    assert summary["pick_from"] == "front" and summary["chosen"]["from"] == "front"
    assert "front_pick" not in summary["chosen"]


def test_evaluated_pick_is_the_rules_best_among_all_real_models(tmp_path):
    pre = _real(np.zeros((1, 2)))[0]
    task = _task(tmp_path, pretrained=pre)
    front = solve_front(task, SearchSettings(**SETTINGS))
    res = solve_front(task, SearchSettings(**SETTINGS, pick_from="evaluated"))
    # same search, same surrogate pick: only the handed-over model may differ
    np.testing.assert_array_equal(res.C_front, front.C_front)
    assert res.chosen == front.chosen
    ev = res.evaluated_pick
    assert ev is not None
    np.testing.assert_allclose(ev.real, _real(ev.coefficients)[0])  # a real, evaluated model
    # every candidate: design, re-evaluated front, pretrained; the keepers among them
    C_all = np.vstack([res.C_front[res.reevaluated], task.C, np.zeros((1, 2))])
    Y_all = np.vstack([res.F_real, task.Y, pre[None]])
    keep = keeps_pretrained(Y_all, pre, MAX2, task.weights)
    assert keep.any() and ev.keeps_pretrained
    worst, best = np.array(res.anchors["worst"]), np.array(res.anchors["best"])
    j = np.flatnonzero(keep)[pareto.pick(Y_all[keep], [1, 1], MAX2, "tchebycheff", worst,
                                         best)]
    np.testing.assert_array_equal(ev.coefficients, C_all[j])
    # it is never worse than the front's own pick by the rule, on the evaluated data
    both = np.vstack([ev.real, res.front_pick_real])
    assert pareto.pick(both, [1, 1], MAX2, "tchebycheff", worst, best) == 0
    # the surrogates' prediction at the handed-over model, for the figures
    np.testing.assert_allclose(ev.predicted, [s.predict(ev.coefficients[None])[0]
                                              for s in res.surrogates])
    summary = front_summary(task, res, ["a", "b"], "tchebycheff")
    chosen = summary["chosen"]
    assert summary["pick_from"] == "evaluated" and chosen["from"] == ev.source
    assert chosen["coefficients"] == dict(zip(["a", "b"], ev.coefficients.tolist()))
    assert chosen["real"] == dict(zip(["A", "B"], ev.real.tolist()))
    assert chosen["front_pick"]["coefficients"] == dict(
        zip(["a", "b"], res.C_front[res.chosen].tolist()))


def test_evaluated_pick_needs_real_front_points(tmp_path):
    res = solve_front(_task(tmp_path, reevaluate=0),
                      SearchSettings(**SETTINGS, pick_from="evaluated"))
    assert res.evaluated_pick is None and res.chosen_real is None


def test_the_measured_pretrained_model_is_the_tchebycheff_anchor(tmp_path):
    pre = np.array([0.3, 0.2])
    res = solve_front(_task(tmp_path, pretrained=pre), SearchSettings(**SETTINGS))
    assert res.anchors["worst"] == pre.tolist()
    res = solve_front(_task(tmp_path), SearchSettings(**SETTINGS))  # predicted at c = 0
    pred = [float(s.predict(np.zeros((1, 2)))[0]) for s in res.surrogates]
    np.testing.assert_allclose(res.anchors["worst"], pred)


def test_a_design_model_the_surrogates_cannot_see_is_handed_over(tmp_path):
    task = _task(tmp_path, pretrained=_real(np.zeros((1, 2)))[0])
    star = task.C[5].copy()

    def spiked(C):  # one design model far better than the smooth rest: a quadratic misses it
        C = np.atleast_2d(C)
        return _real(C) + 0.3 * np.all(np.isclose(C, star), axis=1)[:, None]

    task.evaluate_real, task.Y = spiked, spiked(task.C)
    res = solve_front(task, SearchSettings(**SETTINGS, pick_from="evaluated"))
    assert res.evaluated_pick.source == "design"
    np.testing.assert_array_equal(res.chosen_coefficients, star)
    np.testing.assert_allclose(res.chosen_real, spiked(star)[0])
    assert not np.allclose(res.chosen_real, res.front_pick_real)
