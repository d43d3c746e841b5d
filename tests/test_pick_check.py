"""The pick against the pretrained model and task arithmetic (src.core.pick_check), on hand-built
arrays: cases where it must fire and where it must not."""
from __future__ import annotations

import numpy as np
import pytest

from src.core.pick_check import (best_equal_merge, check_pick, equal_mask, finetuned_rows,
                            pretrained_row)

LABELS = ["A", "B", "C"]
NAMES = ["a", "b", "c"]
EQUAL = [1.0, 1.0, 1.0]
PRE = np.array([0.80, 0.30, 0.40])


def _check(pick_c, pick_y, C, Y, *, pretrained=PRE, weights=EQUAL, sense="max", sources=None):
    return check_pick(pick_c, pick_y, np.array(C, dtype=float), np.array(Y, dtype=float),
                      pretrained=pretrained, weights=weights, sense=sense, labels=LABELS,
                      coefficient_names=NAMES, equal_tol=0.1, sources=sources)


def test_below_pretrained_names_the_best_merge_that_keeps_every_task():
    C = [[0.0, 0.0, 0.0],           # the pretrained model itself: never "the better model"
         [0.2, 0.1, 0.05],          # keeps every task >= pretrained, mean 0.5667
         [0.3, 0.3, 0.05],          # keeps every task too, mean 0.6: the better one
         [0.9, 0.1, 0.7]]           # higher mean, but below pretrained on A
    Y = [PRE, [0.80, 0.40, 0.50], [0.85, 0.45, 0.50], [0.60, 0.95, 0.95]]
    rec = _check([0.5, 0.5, 0.5], [0.70, 0.60, 0.45], C, Y,
                 sources=["design", "design", "re-evaluated front", "design"])
    below = rec["below_pretrained"]
    assert below["tasks"] == {"A": pytest.approx(0.10)}
    assert below["better"]["coefficients"] == {"a": 0.3, "b": 0.3, "c": 0.05}
    assert below["better"]["real"] == {"A": 0.85, "B": 0.45, "C": 0.50}
    assert below["better"]["source"] == "re-evaluated front"
    line = next(m for m in rec["messages"] if "pretrained" in m)
    assert "A by 0.1000" in line and "c = (0.300, 0.300, 0.050)" in line and "A 0.8500" in line
    assert rec["pretrained"]["real"] == dict(zip(LABELS, PRE.tolist()))


def test_below_pretrained_without_a_better_merge_is_recorded_without_a_better_model():
    C = [[0.5, 0.2, 0.1]]
    Y = [[0.70, 0.90, 0.90]]  # below pretrained on A too
    rec = _check([0.4, 0.4, 0.4], [0.50, 0.30, 0.40], C, Y)
    assert rec["below_pretrained"]["tasks"] == {"A": pytest.approx(0.30)}
    assert rec["below_pretrained"]["better"] is None
    assert any("no evaluated merge keeps every task" in m for m in rec["messages"])


@pytest.mark.parametrize("pick_y", [PRE, PRE + 0.01])
def test_at_or_above_pretrained_does_not_fire(pick_y):
    C = [[0.2, 0.2, 0.9]]
    Y = [[0.9, 0.9, 0.9]]
    rec = _check([0.1, 0.1, 0.1], pick_y, C, Y)
    assert rec["below_pretrained"] is None
    assert not any("pretrained" in m for m in rec["messages"])


def test_no_pretrained_value_means_no_pretrained_check():
    rec = _check([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [[0.2, 0.3, 0.4]], [[0.9, 0.9, 0.9]],
                 pretrained=None)
    assert rec["pretrained"] is None and rec["below_pretrained"] is None


def test_below_task_arithmetic_on_mean_and_on_worst_task():
    C = [[0.30, 0.31, 0.29],   # equal coefficients: TA at lambda 0.3, mean 0.6, worst 0.5
         [0.60, 0.60, 0.61],   # TA at lambda 0.6, mean 0.5: not the best lambda
         [0.90, 0.10, 0.50]]   # not equal: its higher mean must not count as TA
    Y = [[0.70, 0.60, 0.50], [0.50, 0.50, 0.50], [0.99, 0.99, 0.99]]
    rec = _check([0.5, 0.2, 0.2], [0.90, 0.45, 0.30], C, Y, pretrained=None)
    ta = rec["task_arithmetic"]
    assert ta["coefficients"] == {"a": 0.30, "b": 0.31, "c": 0.29}
    assert ta["lambda"] == pytest.approx(0.30)
    assert rec["below_task_arithmetic"] == {"mean": pytest.approx(0.05),
                                            "worst task": pytest.approx(0.20)}
    line = next(m for m in rec["messages"] if "task arithmetic" in m)
    assert "the mean by 0.0500 and the worst task by 0.2000" in line
    assert "lambda = 0.300" in line


def test_below_task_arithmetic_names_a_merge_at_or_above_it_on_both():
    C = [[0.30, 0.30, 0.30],   # TA: mean 0.6, worst 0.5
         [0.50, 0.20, 0.30],   # mean 0.65, worst 0.55: above TA on both
         [0.40, 0.30, 0.20],   # mean 0.6333, worst 0.60: above on both, best worst task
         [0.90, 0.00, 0.00],   # mean 0.70 but worst 0.40: not at or above TA
         [0.31, 0.30, 0.30]]   # TA's own values (a tie on both): not named
    Y = [[0.70, 0.60, 0.50], [0.80, 0.60, 0.55], [0.60, 0.70, 0.60], [0.90, 0.80, 0.40],
         [0.70, 0.60, 0.50]]
    sources = ["design", "design", "re-evaluated front", "design", "design"]
    rec = _check([0.2, 0.2, 0.9], [0.50, 0.55, 0.70], C, Y, pretrained=None, sources=sources)
    assert rec["below_task_arithmetic"] == {"mean": pytest.approx(0.6 - 1.75 / 3)}
    above = rec["above_task_arithmetic"]
    assert above["coefficients"] == {"a": 0.4, "b": 0.3, "c": 0.2}
    assert above["source"] == "re-evaluated front"
    assert above["worst"] == pytest.approx(0.60)
    line = next(m for m in rec["messages"] if "task arithmetic" in m)
    assert ("the re-evaluated front merge c = (0.400, 0.300, 0.200) is at or above TA on "
            "both: mean 0.6333, worst 0.6000") in line


def test_no_merge_above_task_arithmetic_names_none():
    C = [[0.3, 0.3, 0.3], [0.0, 0.0, 0.0], [0.9, 0.1, 0.1]]
    Y = [[0.6, 0.6, 0.6], [0.9, 0.9, 0.9], [0.95, 0.95, 0.50]]  # c = 0 is never named
    rec = _check([0.9, 0.0, 0.0], [0.95, 0.55, 0.55], C, Y, pretrained=None)
    assert rec["below_task_arithmetic"] == {"worst task": pytest.approx(0.05)}
    assert rec["above_task_arithmetic"] is None
    assert "at or above TA" not in next(m for m in rec["messages"] if "task arithmetic" in m)


def test_a_merge_above_task_arithmetic_in_loss():
    C = [[0.3, 0.3, 0.3], [0.5, 0.2, 0.2]]
    Y = [[0.9, 1.5, 1.6], [0.9, 1.4, 1.5]]  # lower mean loss and lower worst loss than TA
    rec = _check([0.9, 0.9, 0.9], [1.2, 1.8, 1.8], C, Y, pretrained=None, sense="min")
    assert rec["above_task_arithmetic"]["coefficients"] == {"a": 0.5, "b": 0.2, "c": 0.2}


def test_below_task_arithmetic_on_one_measure_only():
    C, Y = [[0.3, 0.3, 0.3]], [[0.6, 0.6, 0.6]]
    rec = _check([0.9, 0.0, 0.0], [0.95, 0.55, 0.55], C, Y, pretrained=None)  # mean higher
    assert rec["below_task_arithmetic"] == {"worst task": pytest.approx(0.05)}


def test_at_or_above_task_arithmetic_does_not_fire():
    C, Y = [[0.3, 0.3, 0.3]], [[0.6, 0.6, 0.6]]
    for pick_y in ([0.6, 0.6, 0.6], [0.7, 0.6, 0.65]):
        rec = _check([0.3, 0.3, 0.3], pick_y, C, Y, pretrained=None)
        assert rec["below_task_arithmetic"] is None and rec["messages"] == []


def test_no_equal_merge_means_no_task_arithmetic_check():
    rec = _check([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [[0.9, 0.1, 0.5]], [[0.9, 0.9, 0.9]],
                 pretrained=None)
    assert rec["task_arithmetic"] is None and rec["below_task_arithmetic"] is None


def test_preference_weights_the_mean():
    C, Y = [[0.3, 0.3, 0.3]], [[0.6, 0.6, 0.6]]
    pick_y = [0.9, 0.4, 0.4]  # mean 0.5667 < 0.6 with equal weights, 0.8 with weight on A
    assert "mean" in _check([1, 0, 0], pick_y, C, Y, pretrained=None)["below_task_arithmetic"]
    rec = _check([1, 0, 0], pick_y, C, Y, pretrained=None, weights=[6.0, 1.0, 1.0])
    assert "mean" not in rec["below_task_arithmetic"]
    assert rec["pick"]["mean"] == pytest.approx(0.9 * 0.75 + 0.4 * 0.25)


def test_loss_is_worse_when_higher():
    pre = np.array([1.0, 2.0, 2.0])
    C = [[0.3, 0.3, 0.3], [0.5, 0.1, 0.1]]
    Y = [[0.9, 1.5, 1.6], [0.8, 1.9, 2.0]]
    rec = _check([0.9, 0.9, 0.9], [1.2, 1.0, 1.0], C, Y, pretrained=pre, sense="min")
    assert rec["below_pretrained"]["tasks"] == {"A": pytest.approx(0.2)}
    # the better model has the lowest mean loss among those at or below pretrained loss
    assert rec["below_pretrained"]["better"]["coefficients"] == {"a": 0.3, "b": 0.3, "c": 0.3}
    assert rec["task_arithmetic"]["worst"] == pytest.approx(1.6)  # worst loss: the highest
    assert rec["below_task_arithmetic"] is None  # lower mean and worst loss than TA
    rec = _check([0.9, 0.9, 0.9], [1.2, 1.8, 1.8], C, Y, pretrained=pre, sense="min")
    assert rec["below_task_arithmetic"] == {"mean": pytest.approx(4.8 / 3 - 4.0 / 3),
                                            "worst task": pytest.approx(0.2)}


def test_equal_mask_and_anchor_lookups():
    C = np.array([[0.0, 0.0, 0.0], [0.336, 0.331, 0.346], [0.038, 0.029, 0.067],
                  [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.9]])
    Y = np.arange(18, dtype=float).reshape(6, 3)
    # jittered diagonal: TA; near c = 0 with a spread twice its smallest value: not TA;
    # the zero row: the pretrained model, not TA
    assert equal_mask(C, 0.1).tolist() == [False, True, False, False, False, False]
    assert best_equal_merge(C, Y, EQUAL, "max", 0.1) == 1
    np.testing.assert_array_equal(pretrained_row(C, Y), Y[0])
    assert pretrained_row(C[1:], Y[1:]) is None
    ft = finetuned_rows(C, Y)
    np.testing.assert_array_equal(ft[0], Y[3])
    np.testing.assert_array_equal(ft[1], Y[4])
    assert np.isnan(ft[2]).all()


def test_shape_mismatch_and_bad_sense_are_refused():
    with pytest.raises(ValueError, match="shapes"):
        _check([0.1, 0.1], [0.1, 0.1, 0.1], [[0.2, 0.3, 0.4]], [[0.9, 0.9, 0.9]])
    with pytest.raises(ValueError, match="sense"):
        _check([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [[0.2, 0.3, 0.4]], [[0.9, 0.9, 0.9]],
               sense="up")
