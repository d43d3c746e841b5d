"""Figures that say what they show: the preference pick drawn where it was predicted
(hollow) and where it was measured (filled), joined; baselines at the same point named
together; the nested summary against the pretrained model and chance; a sweep's R² panel
scaled to its values; the rounds figure showing points on its edges whole."""
from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")

NAMES = ["LetterVal", "DigitVal"]
PRED, REAL = np.array([0.8, 0.49]), np.array([0.78, 0.357])


def _legend(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def _collection(fig, label):
    found = [c for ax in fig.axes for c in ax.collections if c.get_label() == label]
    assert len(found) == 1, (label, [c.get_label() for ax in fig.axes for c in ax.collections])
    return found[0]


def _check_pick(fig) -> None:
    hollow = _collection(fig, "chosen (preference), predicted")
    filled = _collection(fig, "chosen (preference), real")
    np.testing.assert_allclose(hollow.get_offsets()[0], PRED)
    np.testing.assert_allclose(filled.get_offsets()[0], REAL)
    assert all(face[3] == 0 for face in hollow.get_facecolors())  # no face: hollow
    assert filled.get_facecolors()[0][3] == 1
    joins = [line for ax in fig.axes for line in ax.lines
             if len(line.get_xdata()) == 2
             and np.allclose(np.column_stack(line.get_data()), [PRED, REAL])]
    assert len(joins) == 1
    assert {"chosen (preference), predicted", "chosen (preference), real"} <= set(_legend(fig))


def test_the_front_figure_draws_the_pick_predicted_and_real():
    from src.plotting.fronts import front_figure

    front = np.array([[0.9, 0.3], PRED, [0.6, 0.6]])
    fig = front_figure(np.array([[0.7, 0.4]]), front, NAMES, "accuracy",
                       front_real=np.array([REAL]), chosen=PRED, chosen_real=REAL)
    _check_pick(fig)


def test_the_comparison_figure_draws_the_pick_predicted_and_real():
    from src.plotting.comparison import comparison_figure

    fig = comparison_figure(NAMES, "accuracy", grid_points=np.array([[0.9, 0.2], [0.5, 0.6]]),
                            grid_front=np.array([[0.9, 0.2], [0.5, 0.6]]),
                            runs=[("MAP", np.array([[0.9, 0.3], PRED]), np.array([REAL]))],
                            chosen=REAL, chosen_predicted=PRED)
    _check_pick(fig)


def test_baselines_at_the_same_point_share_one_marker_and_name_each_other():
    from src.plotting.comparison import comparison_figure

    ta, avg = [0.7, 0.5], [0.6, 0.6]
    fig = comparison_figure(NAMES, "accuracy", runs=[("MAP", np.array([[0.9, 0.3]]), None)],
                            baselines=[("Task Arithmetic", ta), ("TA with preference", ta),
                                       ("Fine-tuned average", avg), ("TA, tuned", avg),
                                       ("TIES-merging", [0.65, 0.55])])
    labels = _legend(fig)
    assert "Task Arithmetic = TA with preference" in labels
    assert "Fine-tuned average = TA, tuned" in labels
    assert "TIES-merging" in labels and "TA with preference" not in labels


def test_nested_summary_draws_pretrained_and_chance_and_marks_tasks_below_pretrained():
    from src.plotting.rounds import nested_summary_figure

    tasks = ["LetterVal", "ShapeVal", "SymbolVal"]
    final = dict(zip(tasks, [0.8, 0.028, 0.6]))
    single = dict(zip(tasks, [0.95, 0.93, 0.9]))
    pretrained = dict(zip(tasks, [0.3, 0.2, 0.4]))
    chance = dict(zip(tasks, [0.1, 0.1, 1 / 3]))
    fig = nested_summary_figure(final, single, pretrained=pretrained, chance=chance)
    labels = _legend(fig)
    assert "pretrained (c = 0)" in labels and "chance (1 / classes)" in labels
    ax = fig.axes[0]
    pre = [ln for ln in ax.lines if ln.get_label() == "pretrained (c = 0)"]
    assert sorted(round(y, 6) for ln in pre for y in ln.get_ydata()) == \
        sorted(round(v, 6) for v in pretrained.values() for _ in range(2))
    marked = [t.get_text() for t in ax.texts if "below" in t.get_text()]
    assert len(marked) == 1  # ShapeVal only
    ticks = {t.get_text(): t.get_color() for t in ax.get_xticklabels()}
    assert ticks["ShapeVal"] != ticks["LetterVal"]


def test_sweep_r2_panel_is_scaled_to_its_values():
    from src.modes.sweep import sweep_figure

    rows = [{"subset": f"A_{k}", "min_surrogate_r2": r2, "front_error": 0.01,
             "chosen_real_weighted": 0.7} for k, r2 in enumerate([0.991, 0.995, 0.987])]
    fig = sweep_figure(rows, "accuracy", "MAP on every pair of 3 models")
    low, high = fig.axes[0].get_ylim()
    assert 0.95 < low < 0.987 and 0.995 < high <= 1.0


def test_bayesian_rounds_leave_room_for_points_on_the_box_edges():
    from src.plotting.rounds import bayesian_rounds_figure

    C = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])
    fig = bayesian_rounds_figure(C, np.array([0, 0, 1, 1]), NAMES)
    ax = fig.axes[0]
    for low, high in (ax.get_xlim(), ax.get_ylim()):
        assert low < -0.02 and high > 1.02
