"""src.plotting.comparison: files written, legend entries, the grid-front staircase."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
import pytest

from src.plotting import comparison as FC
from src.plotting import DPI, PlotInputError


def _legend(fig):
    assert len(fig.legends) == 1
    return [t.get_text() for t in fig.legends[0].get_texts()]


def _data(T, seed=0):
    g = np.random.default_rng(seed)
    grid = g.uniform(0.3, 0.8, (60, T))
    front = grid[np.argsort(-grid.sum(axis=1))[:6]]
    return grid, front, g


def test_two_tasks_writes_png_and_pdf_with_every_legend_entry(tmp_path):
    grid, front, g = _data(2)
    runs = [("MAP (TA)", g.uniform(0.6, 0.8, (20, 2)), g.uniform(0.6, 0.8, (5, 2))),
            ("MAP (DARE)", g.uniform(0.6, 0.8, (20, 2)), None)]
    baselines = [("Task Arithmetic (TA)", [0.7, 0.7]), ("TIES-merging", [0.72, 0.69]),
                 ("SLERP", [0.6, 0.75]), ("SLERP", [0.75, 0.6]),
                 ("TA with preference", np.array([[0.65, 0.7], [0.7, 0.65]]))]
    paths = FC.plot_comparison(["SUN397", "Cars"], "accuracy", tmp_path / "cmp.png",
                               grid_points=grid, grid_front=front, runs=runs,
                               baselines=baselines, chosen=[0.7, 0.71], title="t", pdf=True)
    assert [p.name for p in paths] == ["cmp.png", "cmp.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    image = mpimg.imread(paths[0])
    assert image.shape[1] == round(3.5 * DPI)  # one column of a two-column paper

    fig = FC.comparison_figure(["SUN397", "Cars"], "accuracy", grid_points=grid,
                               grid_front=front, runs=runs, baselines=baselines,
                               chosen=[0.7, 0.71])
    assert _legend(fig) == ["grid points", "grid search Pareto front",
                            "MAP (TA), predicted", "MAP (TA), real", "MAP (DARE), predicted",
                            "Task Arithmetic (TA)", "TIES-merging", "SLERP",
                            "TA with preference", "chosen (preference), real"]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "SUN397 accuracy" and ax.get_ylabel() == "Cars accuracy"
    # Same-label baselines share one artist holding all their points.
    slerp = [c for c in ax.collections if c.get_label() == "SLERP"]
    assert len(slerp) == 1 and len(slerp[0].get_offsets()) == 2


def test_three_tasks_draws_every_pair(tmp_path):
    grid, front, g = _data(3)
    names = ["A", "B", "C"]
    paths = FC.plot_comparison(names, "loss", tmp_path / "cmp3.png", grid_points=grid,
                               grid_front=front,
                               runs=[("MAP (TA)", front + 0.01, front[:2])],
                               baselines=[("DARE-TIES", [0.5, 0.5, 0.5])])
    assert paths[0].exists()
    fig = FC.comparison_figure(names, "loss", grid_points=grid, grid_front=front,
                               runs=[("MAP (TA)", front + 0.01, front[:2])],
                               baselines=[("DARE-TIES", [0.5, 0.5, 0.5])])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in visible] == [
        ("A loss", "B loss"), ("A loss", "C loss"), ("B loss", "C loss")]
    assert _legend(fig) == ["grid points", "grid search Pareto front", "MAP (TA), predicted",
                            "MAP (TA), real", "DARE-TIES"]


def test_staircase_by_hand():
    front = np.array([[0.3, 0.9], [0.6, 0.5], [0.4, 0.8]])
    xs, ys = FC._staircase(front, 0, 1, maximize=True)
    # Maximising: y holds at the next point's value between two x.
    np.testing.assert_allclose(xs, [0.3, 0.3, 0.4, 0.4, 0.6])
    np.testing.assert_allclose(ys, [0.9, 0.8, 0.8, 0.5, 0.5])
    xs, ys = FC._staircase(np.array([[0.1, 0.9], [0.5, 0.2]]), 0, 1, maximize=False)
    np.testing.assert_allclose(xs, [0.1, 0.5, 0.5])
    np.testing.assert_allclose(ys, [0.9, 0.9, 0.2])


def test_grid_front_line_is_the_staircase():
    front = np.array([[0.3, 0.9], [0.6, 0.5], [0.4, 0.8]])
    fig = FC.comparison_figure(["a", "b"], "accuracy", grid_front=front)
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_label() == "grid search Pareto front"]
    np.testing.assert_allclose(line.get_xdata(), [0.3, 0.3, 0.4, 0.4, 0.6])


def test_bad_inputs():
    with pytest.raises(PlotInputError, match="nothing to draw"):
        FC.comparison_figure(["a", "b"], "accuracy")
    with pytest.raises(PlotInputError, match="columns"):
        FC.comparison_figure(["a", "b"], "accuracy", baselines=[("x", [1, 2, 3])])
    with pytest.raises(PlotInputError, match="run"):
        FC.comparison_figure(["a", "b"], "accuracy", runs=[("x", [[0.1, 0.2]])])
    with pytest.raises(PlotInputError, match="at least 2"):
        FC.comparison_figure(["a"], "accuracy", grid_points=[[0.1]])
    with pytest.raises(PlotInputError, match="png"):
        FC.plot_comparison(["a", "b"], "accuracy", "/tmp/x.jpg", grid_points=[[0.1, 0.2]])
