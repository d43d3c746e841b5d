"""Figures of fronts over 4 and 8 tasks (src.plotting.many_tasks): what each artist holds,
the axis normalisation and its fallback, files of a sane size."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from src.plotting import PlotInputError
from src.plotting.many_tasks import (PAGE_INCHES, WINDOW, axis_scale, parallel_front_figure,
                                     plot_many_task_front, scatter_matrix_figure)


def _names(K: int) -> list[str]:
    from task_vectors.zoo import Zoo

    return Zoo(path=None).tasks[:K]  # the demo zoo's task names; no zoo is built


def _data(K: int, seed: int = 0) -> dict:
    g = np.random.default_rng(seed)
    pre = g.uniform(0.1, 0.4, K)
    ft = np.full((K, K), np.nan)
    for k in range(K):  # fine-tuned model k: high on its own task, low elsewhere
        ft[k] = g.uniform(0.05, 0.3, K)
        ft[k, k] = g.uniform(0.85, 0.95)
    front = pre + g.uniform(0.0, 1.0, (30, K)) * (np.diag(ft) - pre)
    return dict(evaluated=g.uniform(0.05, 0.9, (50, K)), front_pred=front,
                front_real=front[::6] - 0.02, pick_pred=front[3], pick_real=front[3] - 0.03,
                pretrained=pre, finetuned=ft, task_arithmetic=(pre + np.diag(ft)) / 2)


def _lines(ax, label: str):
    return [line for line in ax.get_lines() if line.get_label() == label]


def _points(ax, label: str):
    (coll,) = [c for c in ax.collections if c.get_label() == label]
    return coll.get_offsets()


@pytest.mark.parametrize("K", [4, 8])
def test_parallel_coordinates_draw_every_front_point_and_the_references_normalised(K):
    d = _data(K)
    fig = parallel_front_figure(d["front_pred"], _names(K), "accuracy", **{
        k: d[k] for k in ("front_real", "pick_pred", "pick_real", "pretrained", "finetuned",
                          "task_arithmetic")})
    (ax,) = fig.axes
    pre, own = d["pretrained"], np.diag(d["finetuned"])

    def norm(y):
        return np.clip((y - pre) / (own - pre), *WINDOW)

    blue = [line for line in ax.get_lines() if line.get_label().startswith("_child")
            and line.get_alpha() == 0.25]
    assert len(blue) == len(d["front_pred"])  # one line per front point
    np.testing.assert_allclose(np.array([line.get_ydata() for line in blue]),
                               norm(d["front_pred"]))
    (pick,) = _lines(ax, "pick, real")
    np.testing.assert_allclose(pick.get_ydata(), norm(d["pick_real"]))
    (pick_pred,) = _lines(ax, "pick, predicted")
    np.testing.assert_allclose(pick_pred.get_ydata(), norm(d["pick_pred"]))
    (ta,) = _lines(ax, "task arithmetic (best evaluated λ)")
    np.testing.assert_allclose(ta.get_ydata(), norm(d["task_arithmetic"]))
    (pretrained,) = _lines(ax, "pretrained (c = 0)")
    np.testing.assert_allclose(pretrained.get_ydata(), 0.0)
    np.testing.assert_allclose(_points(ax, "fine-tuned model, own task")[:, 1], 1.0)
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == _names(K)
    assert ax.get_title().startswith("0 = pretrained model, 1 = the task's fine-tuned model")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"pick, real", "pick, predicted", "pretrained (c = 0)", "MAP front, predicted",
            "MAP front, real", "task arithmetic (best evaluated λ)"} <= set(labels)


def test_parallel_coordinates_clip_far_values_and_say_how_many():
    K = 4
    d = _data(K)
    front = d["front_pred"].copy()
    front[:5, 0] = d["pretrained"][0] - 5 * (d["finetuned"][0, 0] - d["pretrained"][0])
    fig = parallel_front_figure(front, _names(K), "accuracy", pretrained=d["pretrained"],
                                finetuned=d["finetuned"])
    (ax,) = fig.axes
    front_lines = [line for line in ax.get_lines() if line.get_alpha() == 0.25]
    np.testing.assert_allclose([line.get_ydata()[0] for line in front_lines[:5]], WINDOW[0])
    assert [t.get_text() for t in ax.texts] == ["▼5"]
    assert "drawn at the edge" in ax.get_title()


def test_without_references_the_axes_span_the_values_drawn_and_say_so():
    K = 4
    d = _data(K)
    fig = parallel_front_figure(d["front_pred"], _names(K), "accuracy")
    (ax,) = fig.axes
    assert ax.get_title().startswith("0 = worst value drawn, 1 = best value drawn")
    ys = np.array([line.get_ydata() for line in ax.get_lines() if line.get_alpha() == 0.25])
    np.testing.assert_allclose(ys.min(axis=0), 0.0)
    np.testing.assert_allclose(ys.max(axis=0), 1.0)


def test_axis_scale_mixes_references_and_fallback_per_axis():
    values = np.array([[0.2, 0.5, 0.9], [0.4, 0.1, 0.3]])
    ft = np.full((3, 3), np.nan)
    ft[1] = [0.1, 0.8, 0.2]
    low, high, caption = axis_scale(values, "max", np.array([0.1, 0.1, 0.1]), ft)
    np.testing.assert_allclose(low, [0.1, 0.1, 0.1])
    np.testing.assert_allclose(high, [0.4, 0.8, 0.9])  # fine-tuned where evaluated, else max
    assert "where evaluated, else the best value drawn" in caption
    low, high, _ = axis_scale(values, "min", None, None)  # loss: 0 is the highest (worst)
    np.testing.assert_allclose(low, [0.4, 0.5, 0.9])
    np.testing.assert_allclose(high, [0.2, 0.1, 0.3])


@pytest.mark.parametrize("K", [4, 8])
def test_scatter_matrix_is_a_lower_triangle_on_one_page(K):
    d = _data(K)
    fig = scatter_matrix_figure(d["evaluated"], d["front_pred"], _names(K), "accuracy", **{
        k: d[k] for k in ("front_real", "pick_pred", "pick_real", "pretrained", "finetuned",
                          "task_arithmetic")})
    assert max(fig.get_size_inches()) <= PAGE_INCHES
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == K * (K - 1) // 2
    names = _names(K)
    n = K - 1
    for r in range(n):
        for c in range(r + 1):
            ax = fig.axes[r * n + c]
            i, j = c, r + 1
            np.testing.assert_allclose(_points(ax, "pick, real")[0], d["pick_real"][[i, j]])
            np.testing.assert_allclose(_points(ax, "pick, predicted")[0],
                                       d["pick_pred"][[i, j]])
            np.testing.assert_allclose(_points(ax, "pretrained (c = 0)")[0],
                                       d["pretrained"][[i, j]])
            np.testing.assert_allclose(_points(ax, "task arithmetic (best evaluated λ)")[0],
                                       d["task_arithmetic"][[i, j]])
            np.testing.assert_allclose(_points(ax, "fine-tuned models"),
                                       d["finetuned"][:, [i, j]])
            np.testing.assert_allclose(_points(ax, "MAP front, predicted"),
                                       d["front_pred"][:, [i, j]])
            assert ax.get_xlabel() == (names[i] if r == n - 1 else "")
            assert ax.get_ylabel() == (names[j] if c == 0 else "")
    assert all(not ax.get_visible() for ax in fig.axes if ax not in visible)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-2:] == ["pick, predicted", "pick, real"]


def test_fine_tuned_rows_not_evaluated_are_left_out_and_partial_rows_refused():
    K = 4
    d = _data(K)
    ft = d["finetuned"].copy()
    ft[2] = np.nan
    fig = scatter_matrix_figure(d["evaluated"], d["front_pred"], _names(K), "accuracy",
                                finetuned=ft)
    assert len(_points(fig.axes[0], "fine-tuned models")) == K - 1
    ft[1, 0] = np.nan
    with pytest.raises(PlotInputError, match="finetuned rows"):
        scatter_matrix_figure(d["evaluated"], d["front_pred"], _names(K), "accuracy",
                              finetuned=ft)


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.parametrize("K", [4, 8])
def test_plot_writes_both_figures_of_a_sane_size(tmp_path, K):
    d = _data(K)
    paths = plot_many_task_front(d.pop("evaluated"), d.pop("front_pred"), _names(K),
                                 "accuracy", tmp_path / "pareto_front.png",
                                 tmp_path / "pareto_front_parallel.png", pdf=True, **d)
    assert [p.name for p in paths] == ["pareto_front.png", "pareto_front.pdf",
                                      "pareto_front_parallel.png", "pareto_front_parallel.pdf"]
    w, h = _png_size(tmp_path / "pareto_front.png")
    assert w == h <= PAGE_INCHES * 300  # square, one page at 300 dpi
    w, h = _png_size(tmp_path / "pareto_front_parallel.png")
    assert h < w <= 12 * 300
    for p in paths:
        assert 10_000 < p.stat().st_size < 5_000_000
    assert (tmp_path / "pareto_front.pdf").read_bytes()[:5] == b"%PDF-"
