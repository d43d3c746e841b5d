import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.contour import QuadContourSet

from src import plotting as P
from src.core.nested import run_nested

NAMES8 = ["SUN397Val", "CarsVal", "DTDVal", "SVHNVal", "EuroSATVal", "GTSRBVal",
          "RESISC45Val", "MNISTVal"]


# ------------------------------------------------------------------ helpers


def rng(seed=0):
    return np.random.default_rng(seed)


def front_data(K, seed=0):
    g = rng(seed)
    return g.uniform(0.2, 0.8, (40, K)), g.uniform(0.6, 0.95, (12, K))


def plain(label):
    """Mathtext without grouping braces: '$c_{1}$' and '$c_1$' render the same."""
    return label.replace("{", "").replace("}", "")


def legend_labels(fig):
    assert len(fig.legends) == 1, "expected exactly one shared figure legend"
    assert all(ax.get_legend() is None for ax in fig.axes), "no per-panel legends"
    return [t.get_text() for t in fig.legends[0].get_texts()]


def data_axes(fig):
    """Visible panels, without colorbars."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def check_png(paths, fig_size_inches):
    """Every returned file exists; the PNG reads back at size * 300 dpi."""
    for p in paths:
        assert p.exists() and p.stat().st_size > 1000
    png = paths[0]
    assert png.suffix == ".png"
    img = mpimg.imread(png)
    w, h = np.asarray(fig_size_inches) * P.DPI
    assert abs(img.shape[0] - h) <= 2 and abs(img.shape[1] - w) <= 2, (img.shape, w, h)
    # A figure, not a thumbnail or a poster.
    assert 900 <= img.shape[1] <= 4000 and 600 <= img.shape[0] <= 4500
    # Something was drawn: not a blank canvas.
    assert img[..., :3].std() > 0.05


def check_clean_layout(fig):
    """Legend and labels inside the figure; the legend covers no panel and no title."""
    canvas = FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # runs the layout; no pixels needed
    r = canvas.get_renderer()
    page = fig.bbox.expanded(1.0, 1.0).padded(1.0)
    legend = fig.legends[0].get_window_extent(r)
    boxes = [legend]
    for ax in data_axes(fig):
        assert not legend.overlaps(ax.get_window_extent(r)), "legend overlaps a panel"
        boxes += [ax.xaxis.label.get_window_extent(r), ax.yaxis.label.get_window_extent(r)]
    if fig._suptitle is not None:
        title = fig._suptitle.get_window_extent(r)
        assert not legend.overlaps(title), "legend overlaps the title"
        boxes.append(title)
    for b in boxes:
        if b.width > 0:
            assert page.contains(b.x0, b.y0) and page.contains(b.x1, b.y1), b


# ------------------------------------------------------------------ front


def test_front_two_tasks_png_pdf_legend_and_sorted_line(tmp_path):
    evaluated, front = front_data(2)
    real = front[::3] - 0.01
    kw = dict(front_real=real, chosen=front[4])
    fig = P.front_figure(evaluated, front, ["SVHNVal", "MNISTVal"], "accuracy", **kw)
    assert legend_labels(fig) == ["evaluated merges", "MAP, predicted", "MAP, real",
                                  "chosen (preference), predicted"]
    (ax,) = data_axes(fig)
    assert ax.get_xlabel() == "SVHNVal accuracy" and ax.get_ylabel() == "MNISTVal accuracy"
    # The predicted front is one line, sorted along x, through every front point.
    (line,) = ax.get_lines()
    x, y = line.get_data()
    assert np.all(np.diff(x) >= 0)
    np.testing.assert_allclose(sorted(zip(x, y)), sorted(map(tuple, front)))
    check_clean_layout(fig)

    paths = P.plot_front(evaluated, front, ["SVHNVal", "MNISTVal"], "accuracy",
                         tmp_path / "sub" / "pareto_front.png", pdf=True, **kw)
    assert [p.name for p in paths] == ["pareto_front.png", "pareto_front.pdf"]
    check_png(paths, fig.get_size_inches())


def test_front_optional_layers_only_when_given():
    evaluated, front = front_data(2)
    fig = P.front_figure(evaluated, front, ["A", "B"], "loss")
    assert legend_labels(fig) == ["evaluated merges", "MAP, predicted"]
    assert data_axes(fig)[0].get_xlabel() == "A loss"


@pytest.mark.parametrize("K", [3, 4])
def test_front_many_tasks_pairwise_grid_with_one_legend(K):
    evaluated, front = front_data(K, seed=K)
    names = NAMES8[:K]
    fig = P.front_figure(evaluated, front, names, "accuracy", front_real=front[:3],
                         chosen=front[0], title=f"{K} tasks")
    axes = data_axes(fig)
    assert len(axes) == K * (K - 1) // 2
    pairs = {(ax.get_xlabel(), ax.get_ylabel()) for ax in axes}
    assert pairs == {(f"{names[i]} accuracy", f"{names[j]} accuracy")
                     for i in range(K) for j in range(i + 1, K)}
    assert legend_labels(fig) == ["evaluated merges", "MAP, predicted", "MAP, real",
                                  "chosen (preference), predicted"]
    # Each projection shows the chosen point at its own two coordinates.
    for ax in axes:
        i = names.index(ax.get_xlabel().split()[0])
        j = names.index(ax.get_ylabel().split()[0])
        star = ax.collections[-1]
        np.testing.assert_allclose(star.get_offsets()[0], front[0, [i, j]])
    check_clean_layout(fig)


def test_front_bad_input_raises_value_error():
    evaluated, front = front_data(3)
    with pytest.raises(ValueError, match="columns"):
        P.front_figure(evaluated, front, ["A", "B"], "accuracy")  # 3 columns, 2 names
    with pytest.raises(ValueError):
        P.front_figure(evaluated, front, ["A", "B", "C", "D"], "accuracy")
    with pytest.raises(ValueError, match="front_real"):
        P.front_figure(evaluated, front, ["A", "B", "C"], "accuracy", front_real=front[:, :2])
    with pytest.raises(ValueError, match="chosen"):
        P.front_figure(evaluated, front, ["A", "B", "C"], "accuracy", chosen=[0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        P.front_figure(evaluated, np.full((3, 3), np.nan), ["A", "B", "C"], "accuracy")
    with pytest.raises(ValueError, match="duplicates"):
        P.front_figure(evaluated, front, ["A", "A", "C"], "accuracy")


def test_save_requires_png_path(tmp_path):
    evaluated, front = front_data(2)
    with pytest.raises(ValueError, match=".png"):
        P.plot_front(evaluated, front, ["A", "B"], "accuracy", tmp_path / "front.pdf")


# ------------------------------------------------------------ surrogate fit


def test_surrogate_fit_shares_colour_scale_and_axes(tmp_path):
    g = rng(1)
    C = g.uniform(0, 1, (25, 2))
    Y = np.column_stack([C[:, 0] * 0.8 + 0.1, 0.9 - 0.5 * C[:, 1]])
    seen = []

    def wrong(G):  # a deliberately poor surrogate for task 2: its colours must not hide Y
        seen.append(G)
        return np.full(len(G), 0.2)

    predict = [lambda G: G[:, 0] * 0.8 + 0.1, wrong]
    fig = P.surrogate_fit_figure(C, Y, predict, ["SVHNVal", "MNISTVal"], "accuracy",
                                 low=0.0, high=1.0)
    grid = seen[0]
    assert grid.shape[1] == 2 and grid.min() == 0.0 and grid.max() == 1.0
    axes = data_axes(fig)
    assert len(axes) == 2
    cbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert [cb.get_ylabel() for cb in cbars] == ["SVHNVal accuracy", "MNISTVal accuracy"]
    for k, ax in enumerate(axes):
        assert plain(ax.get_xlabel()) == "$c_1$ (SVHNVal)"
        assert plain(ax.get_ylabel()) == "$c_2$ (MNISTVal)"
        (contour,) = [c for c in ax.collections if isinstance(c, QuadContourSet)]
        (points,) = [c for c in ax.collections
                     if isinstance(c, PathCollection) and not isinstance(c, QuadContourSet)]
        np.testing.assert_allclose(points.get_array(), Y[:, k])  # true values, not predictions
        assert (points.norm.vmin, points.norm.vmax) == (contour.norm.vmin, contour.norm.vmax)
        assert points.get_cmap().name == contour.get_cmap().name
        # The scale spans both the prediction and the truth, so neither saturates.
        assert points.norm.vmin <= min(Y[:, k].min(), 0.2 if k else 0.1) + 1e-12
        assert points.norm.vmax >= Y[:, k].max() - 1e-12
    assert legend_labels(fig) == ["surrogate prediction", "evaluated (true value)"]
    check_clean_layout(fig)
    check_png(P.plot_surrogate_fit(C, Y, predict, ["SVHNVal", "MNISTVal"], "accuracy",
                                   tmp_path / "surrogate.png"), fig.get_size_inches())


def test_surrogate_fit_bad_input():
    C, Y = rng().uniform(size=(5, 2)), rng().uniform(size=(5, 2))
    ok = [lambda G: G[:, 0], lambda G: G[:, 1]]
    with pytest.raises(ValueError, match="names"):
        P.surrogate_fit_figure(C, Y, ok, ["A", "B", "C"], "accuracy")
    with pytest.raises(ValueError, match="predict\\[1\\]"):
        P.surrogate_fit_figure(C, Y, [ok[0], lambda G: G], ["A", "B"], "accuracy")
    with pytest.raises(ValueError, match="rows"):
        P.surrogate_fit_figure(C, Y[:3], ok, ["A", "B"], "accuracy")
    with pytest.raises(ValueError, match="low < high"):
        P.surrogate_fit_figure(C, Y, ok, ["A", "B"], "accuracy", low=1.0, high=0.0)


@pytest.mark.parametrize("K", [2, 4])
def test_true_vs_predicted_r2_in_titles(K, tmp_path):
    g = rng(K)
    Y_true = g.uniform(0.3, 0.9, (30, K))
    Y_pred = Y_true + g.normal(0, 0.05 * np.arange(1, K + 1), (30, K))
    names = NAMES8[:K]
    fig = P.true_vs_predicted_figure(Y_true, Y_pred, names, "accuracy")
    axes = data_axes(fig)
    assert len(axes) == K
    for k, ax in enumerate(axes):
        ss_res = np.sum((Y_true[:, k] - Y_pred[:, k]) ** 2)
        ss_tot = np.sum((Y_true[:, k] - Y_true[:, k].mean()) ** 2)
        assert ax.get_title() == f"{names[k]} ($R^2$ = {1 - ss_res / ss_tot:.3f})"
        assert ax.get_xlabel() == f"true {names[k]} accuracy"
        (diag,) = ax.get_lines()
        x, y = diag.get_data()
        np.testing.assert_allclose(x, y)
        assert min(x) <= min(Y_true[:, k].min(), Y_pred[:, k].min())
    assert legend_labels(fig) == ["y = x", "evaluated points"]
    check_clean_layout(fig)
    if K == 2:
        check_png(P.plot_true_vs_predicted(Y_true, Y_pred, names, "accuracy", tmp_path / "p.png"),
                  fig.get_size_inches())
    with pytest.raises(ValueError, match="shape"):
        P.true_vs_predicted_figure(Y_true, Y_pred[:-1], names, "accuracy")
    with pytest.raises(ValueError):
        P.true_vs_predicted_figure(Y_true, Y_pred, names[:-1], "accuracy")


# ---------------------------------------------------------- bayesian rounds


@pytest.mark.parametrize("n_bins", [4, 3])
def test_bayesian_rounds_two_tasks_legend_and_bin_rays(n_bins, tmp_path):
    g = rng(n_bins)
    C = g.uniform(0.05, 0.8, (22, 2))
    rounds = np.repeat([0, 1, 2], [12, 5, 5])
    fig = P.bayesian_rounds_figure(C, rounds, ["SVHNVal", "MNISTVal"], n_bins=n_bins)
    assert legend_labels(fig) == ["angular bin edges", "initial design (round 0)",
                                  "round 1", "round 2"]
    (ax,) = data_axes(fig)
    angles = sorted(math.atan2(line.get_ydata()[1], line.get_xdata()[1]) for line in ax.get_lines())
    np.testing.assert_allclose(angles, [k * math.pi / 2 / n_bins for k in range(1, n_bins)])
    for line in ax.get_lines():  # rays start at the origin
        assert (line.get_xdata()[0], line.get_ydata()[0]) == (0, 0)
    # Each round's points are drawn as one layer, in the right place.
    layers = {c.get_label(): c.get_offsets() for c in ax.collections}
    np.testing.assert_allclose(layers["round 2"], C[rounds == 2])
    assert plain(ax.get_xlabel()) == "$c_1$ (SVHNVal)"
    assert plain(ax.get_ylabel()) == "$c_2$ (MNISTVal)"
    check_clean_layout(fig)
    if n_bins == 4:
        check_png(P.plot_bayesian_rounds(C, rounds, ["SVHNVal", "MNISTVal"], tmp_path / "r.png"),
                  fig.get_size_inches())


def test_bayesian_rounds_three_tasks_pairwise_no_rays():
    C = rng(3).uniform(0.05, 0.8, (20, 3))
    rounds = np.repeat([0, 1], 10)
    fig = P.bayesian_rounds_figure(C, rounds, NAMES8[:3])
    axes = data_axes(fig)
    assert len(axes) == 3 and all(not ax.get_lines() for ax in axes)
    assert legend_labels(fig) == ["initial design (round 0)", "round 1"]
    check_clean_layout(fig)


def test_bayesian_rounds_bad_input():
    C = rng().uniform(size=(6, 2))
    with pytest.raises(ValueError, match="round_of_point"):
        P.bayesian_rounds_figure(C, np.zeros(5, int), ["A", "B"])
    with pytest.raises(ValueError, match="non-negative"):
        P.bayesian_rounds_figure(C, np.array([0, 0, 0, 1, 1, -1]), ["A", "B"])
    with pytest.raises(ValueError, match="integers"):
        P.bayesian_rounds_figure(C, np.array([0, 0, 0, 1, 1, 1.5]), ["A", "B"])
    with pytest.raises(ValueError, match="n_bins"):
        P.bayesian_rounds_figure(C, np.zeros(6, int), ["A", "B"], n_bins=0)
    # Rounds read back from JSON as floats are fine when they are whole numbers.
    fig = P.bayesian_rounds_figure(C, np.array([0.0, 0, 0, 1, 1, 1]), ["A", "B"])
    assert legend_labels(fig)[1:] == ["initial design (round 0)", "round 1"]
    with pytest.raises(ValueError, match="name"):
        P.bayesian_rounds_figure(C, np.zeros(6, int), ["A", "B", "C"])


# -------------------------------------------------------------- merge tree


RECORDS4 = [
    {"round": 0, "left": "DigitsVal", "right": "RotateVal", "left_tasks": ["DigitsVal"],
     "right_tasks": ["RotateVal"], "merged": "merge1", "pair_coefficients": [0.6, 0.4],
     "measured": {"DigitsVal": 0.8, "RotateVal": 0.7},
     "pairing_accuracy": {"left": 0.9, "right": 0.85}},
    {"round": 1, "left": "InvertVal", "right": "BlurVal", "left_tasks": ["InvertVal"],
     "right_tasks": ["BlurVal"], "merged": "merge2", "pair_coefficients": [0.55, 0.5],
     "measured": {"InvertVal": 0.7, "BlurVal": 0.72},
     "pairing_accuracy": {"left": 0.8, "right": 0.82}},
    {"round": 2, "left": "merge1", "right": "merge2", "left_tasks": ["DigitsVal", "RotateVal"],
     "right_tasks": ["InvertVal", "BlurVal"], "merged": "merge3",
     "pair_coefficients": [0.7, 0.65], "measured": {},
     "pairing_accuracy": {"left": 0.75, "right": 0.71}},
]


def records8():
    """Records from the real nested loop, so the figure keeps up with its format."""
    single = dict(zip(NAMES8, [0.75, 0.78, 0.79, 0.97, 0.99, 0.99, 0.96, 0.997]))
    g = rng(8)

    def run_pair(a, b, round_idx):
        return g.uniform(0.3, 0.9, 2), {}

    def measure(coefficients, tasks):
        return {t: 0.9 * single[t] for t in tasks}

    res = run_nested(NAMES8, single, {t: 1.0 for t in NAMES8}, run_pair, measure)
    return res.records, single


def check_tree_layout(records, pos):
    leaves = sorted(x for x, y in pos.values() if y == 0.0)
    assert leaves == list(range(len(records) + 1))
    under: dict[str, list[float]] = {}
    for rec in sorted(records, key=lambda r: r["round"]):
        x, y = pos[rec["merged"]]
        assert y == rec["round"] + 1
        kids = [pos[rec["left"]], pos[rec["right"]]]
        assert all(ky < y for _, ky in kids)
        assert x == pytest.approx((kids[0][0] + kids[1][0]) / 2)
        xs = under.get(rec["left"], [kids[0][0]]) + under.get(rec["right"], [kids[1][0]])
        # No crossing branches: the leaves under a merge are adjacent.
        assert sorted(xs) == list(range(int(min(xs)), int(max(xs)) + 1))
        under[rec["merged"]] = xs


def test_merge_tree_four_leaves():
    pos = P.merge_tree_layout(RECORDS4)
    check_tree_layout(RECORDS4, pos)
    fig = P.merge_tree_figure(RECORDS4)
    texts = {t.get_text() for t in data_axes(fig)[0].texts}
    assert {"round 1\nc=(0.60, 0.40)", "round 2\nc=(0.55, 0.50)",
            "round 3\nc=(0.70, 0.65)"} <= texts
    # Leaf accuracy comes from the records' pairing accuracy when not given.
    assert {"DigitsVal\n0.900", "RotateVal\n0.850", "InvertVal\n0.800", "BlurVal\n0.820"} <= texts
    assert legend_labels(fig) == ["task (fine-tuned accuracy)", "merge (round, pair coefficients)"]
    check_clean_layout(fig)


def test_merge_tree_eight_leaves_from_nested_records(tmp_path):
    records, single = records8()
    pos = P.merge_tree_layout(records)
    check_tree_layout(records, pos)
    assert {n for n, (_, y) in pos.items() if y == 0.0} == set(NAMES8)
    override = {**single, "MNISTVal": 0.5}
    fig = P.merge_tree_figure(records, leaf_accuracy=override, title="nested MAP")
    texts = {t.get_text() for t in data_axes(fig)[0].texts}
    assert "MNISTVal\n0.500" in texts and "SVHNVal\n0.970" in texts
    assert {f"round {r}" for r in range(1, 8)} <= {t.split("\n")[0] for t in texts}
    check_clean_layout(fig)
    check_png(P.plot_merge_tree(records, tmp_path / "tree8.png", leaf_accuracy=override,
                                title="nested MAP"), fig.get_size_inches())


def test_merge_tree_bad_records():
    twice = [dict(RECORDS4[0]), dict(RECORDS4[1], left="DigitsVal")]
    with pytest.raises(ValueError, match="already merged"):
        P.merge_tree_layout(twice)
    early = [dict(RECORDS4[0], right="merge2"), RECORDS4[1]]
    with pytest.raises(ValueError, match="before the round"):
        P.merge_tree_layout(early)
    with pytest.raises(ValueError, match="not unique"):
        P.merge_tree_layout([RECORDS4[0], dict(RECORDS4[1], merged="merge1")])
    with pytest.raises(ValueError, match="round"):
        P.merge_tree_layout([{k: v for k, v in RECORDS4[0].items() if k != "round"}])
    with pytest.raises(ValueError, match="no merge records"):
        P.merge_tree_figure([])


# ----------------------------------------------------------- nested summary


def test_nested_summary_bars_and_legend(tmp_path):
    single = dict(zip(NAMES8, np.linspace(0.7, 0.99, 8)))
    final = {t: v - 0.1 for t, v in single.items()}
    ref = {t: v - 0.2 for t, v in single.items()}
    fig = P.nested_summary_figure(final, single, reference=ref, reference_label="TIES")
    assert legend_labels(fig) == ["fine-tuned (single task)", "nested MAP (final)", "TIES"]
    (ax,) = data_axes(fig)
    bars = ax.containers
    assert [len(b) for b in bars] == [9, 9, 9]  # 8 tasks + mean
    heights = [p.get_height() for p in bars[1]]
    np.testing.assert_allclose(heights, list(final.values()) + [np.mean(list(final.values()))])
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES8 + ["mean"]
    assert ax.get_ylabel() == "accuracy"
    check_clean_layout(fig)
    check_png(P.plot_nested_summary(final, single, tmp_path / "summary.png", reference=ref,
                                    reference_label="TIES"), fig.get_size_inches())

    fig2 = P.nested_summary_figure({"A": 0.5, "B": 0.6}, {"A": 0.9, "B": 0.8, "C": 0.7})
    assert legend_labels(fig2) == ["fine-tuned (single task)", "nested MAP (final)"]
    check_clean_layout(fig2)
    with pytest.raises(ValueError, match="lack tasks"):
        P.nested_summary_figure({"A": 0.5, "Z": 0.6}, {"A": 0.9})
