"""The comparison figure of the original MAP paper: grid search, MAP fronts, baselines.

For one task pair (T = 2) a single panel: the grid points (light grey), the grid-search
Pareto front (a staircase: the boundary of what the grid points attain), each MAP run's
predicted front (a line) with its re-evaluated solutions (stars of the same colour), and
every single-model baseline as its own marker. For T >= 3 the same content in 2-D
projections, one panel per task pair (fronts as markers: a line through a projection
would suggest an order it lacks). The legend sits below the panels so a ~3.5 in wide
figure fits one column of a two-column paper.

Style, saving and input checks come from ``src.plotting``.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from src.plotting.style import (BLUE, GREEN, ORANGE, PURPLE, SKY, VERMILLION, PlotInputError,
                                _axis_label, _grid_shape, _hide_unused, _matrix, _names,
                                _new_figure, _save, _shared_legend, _style, draw_pick)

# Runs: strong colours, one per MAP variant; baselines: other colours and distinct markers.
RUN_COLOURS = (VERMILLION, BLUE, SKY, "#CC6677")
FRONT_COLOUR = "#333333"
BASELINE_STYLES = (
    dict(marker="s", color=PURPLE), dict(marker="^", color=ORANGE),
    dict(marker=">", color=GREEN), dict(marker="<", color="#994F00"),
    dict(marker="x", color="#117733"), dict(marker="+", color="#AA4499"),
    dict(marker="D", color="#44AA99"), dict(marker="v", color="#882255"),
    dict(marker="P", color="#666666"), dict(marker="h", color="#DDCC77"),
    dict(marker="d", color="#332288"), dict(marker="p", color="#88CCEE"),
    dict(marker="X", color="#CC3311"), dict(marker="H", color="#009988"),
)
LIGHT_GREY = "#c9c9c9"


def _maximize(metric: str, maximize: bool | None) -> bool:
    if maximize is not None:
        return maximize
    return not any(word in metric.lower() for word in ("loss", "entropy", "lower is better"))


def _staircase(front: np.ndarray, i: int, j: int, maximize: bool) -> tuple[np.ndarray, np.ndarray]:
    """x, y of the attainment boundary of the front's points in the (i, j) plane."""
    x, y = front[:, i], front[:, j]
    order = np.lexsort((y, x))  # by x, ties by y
    x, y = x[order], y[order]
    # Between two points of a maximisation front the best y reachable for x in
    # (x_k, x_k+1] is y_k+1 (steps-pre); for minimisation it is y_k (steps-post).
    xs, ys = [x[0]], [y[0]]
    for k in range(1, len(x)):
        if maximize:
            xs += [x[k - 1], x[k]]
            ys += [y[k], y[k]]
        else:
            xs += [x[k], x[k]]
            ys += [y[k - 1], y[k]]
    return np.array(xs), np.array(ys)


def _group_baselines(baselines, T: int) -> list[tuple[str, np.ndarray]]:
    """(label, points [m, T]) per distinct label, in first-seen order."""
    groups: dict[str, list[np.ndarray]] = {}
    for item in baselines:
        try:
            label, metrics = item
        except (TypeError, ValueError):
            raise PlotInputError("each baseline must be a (label, metrics) pair") from None
        pts = _matrix(np.atleast_2d(np.asarray(metrics, dtype=float)),
                      f"baseline {label!r} metrics", T)
        groups.setdefault(str(label), []).append(pts)
    return [(label, np.vstack(parts)) for label, parts in groups.items()]


def combine_coincident(groups: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Baselines at the same points (e.g. TA with equal preferences is TA) as one entry
    whose label names each ("Task Arithmetic = TA with preference"): drawn apart, the
    later marker would hide the earlier."""
    out: list[tuple[list[str], np.ndarray]] = []
    for label, pts in groups:
        for labels, seen in out:
            if seen.shape == pts.shape and np.allclose(seen, pts, rtol=0, atol=1e-12):
                labels.append(label)
                break
        else:
            out.append(([label], pts))
    return [(" = ".join(labels), pts) for labels, pts in out]


def _check_runs(runs, T: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    out = []
    for item in runs:
        try:
            label, front, real = item
        except (TypeError, ValueError):
            raise PlotInputError("each run must be (label, predicted_front, real_points or "
                                 "None)") from None
        front = _matrix(front, f"run {label!r} predicted front", T)
        if real is not None:
            real = _matrix(real, f"run {label!r} real points", T, allow_empty=True)
        out.append((str(label), front, real))
    return out


def comparison_figure(
    names: Sequence[str],
    metric: str,
    *,
    grid_points: np.ndarray | None = None,
    grid_front: np.ndarray | None = None,
    runs: Sequence[tuple[str, np.ndarray, np.ndarray | None]] = (),
    baselines: Sequence[tuple[str, np.ndarray]] = (),
    chosen: np.ndarray | None = None,
    title: str | None = None,
    maximize: bool | None = None,
    chosen_predicted: np.ndarray | None = None,
) -> Figure:
    """Grid search, MAP runs and single-model baselines in metric space.

    ``grid_points`` [n, T]: every evaluated grid merge. ``grid_front`` [k, T]: its Pareto
    front. ``runs``: (label, predicted_front [n, T], real_points [m, T] or None) per MAP
    run (e.g. "MAP (TA)", "MAP (DARE)"). ``baselines``: (label, metrics [T] or [m, T]);
    entries sharing a label share one marker and legend entry (e.g. several SLERP t).
    ``chosen`` [T]: the model picked by the preference, measured (filled star);
    ``chosen_predicted`` [T]: where the surrogates put it (hollow, joined). Baselines
    at the same point share one marker, their labels joined by " = ". ``maximize``
    (default: True unless the metric name contains "loss", "entropy" or "lower is
    better") sets which side of the staircase the grid front is.
    """
    names = _names(names)
    T = len(names)
    if T < 2:
        raise PlotInputError(f"a comparison needs at least 2 tasks, got names={names}")
    if grid_points is not None:
        grid_points = _matrix(grid_points, "grid_points", T, allow_empty=True)
    if grid_front is not None:
        grid_front = _matrix(grid_front, "grid_front", T)
    runs = _check_runs(runs, T)
    groups = combine_coincident(_group_baselines(baselines, T))
    if chosen is not None:
        chosen = _matrix(np.reshape(np.asarray(chosen, dtype=float), (1, -1)), "chosen", T)
    if chosen_predicted is not None:
        chosen_predicted = _matrix(np.reshape(np.asarray(chosen_predicted, dtype=float),
                                              (1, -1)), "chosen_predicted", T)[0]
    if grid_points is None and grid_front is None and not runs and not groups \
            and chosen is None:
        raise PlotInputError("nothing to draw: give grid points, a front, runs or baselines")
    if len(groups) > len(BASELINE_STYLES):
        raise PlotInputError(f"at most {len(BASELINE_STYLES)} baseline labels, got "
                             f"{len(groups)}")
    maximize = _maximize(metric, maximize)

    pairs = list(combinations(range(T), 2))
    n_entries = (grid_points is not None) + (grid_front is not None) + len(groups) \
        + sum(1 + (real is not None) for _, _, real in runs) + (chosen is not None) \
        + (chosen_predicted is not None)
    # one legend column when a label (e.g. coincident baselines joined) would not fit half
    per_row = 1 if any(len(label) > 30 for label, _ in groups) else (2 if T == 2 else 3)
    legend_rows = -(-n_entries // per_row)
    with _style():
        if T == 2:
            fig, axes = _new_figure(1, 1, (3.5, 2.9 + 0.16 * legend_rows))
        else:
            nrows, ncols = _grid_shape(len(pairs))
            fig, axes = _new_figure(nrows, ncols, (3.0, 2.8 + 0.16 * legend_rows / nrows))
        for ax, (i, j) in zip(axes, pairs):
            _panel(ax, i, j, grid_points, grid_front, runs, groups, None,
                   line=T == 2, maximize=maximize)
            # black: the first run's stars are vermillion already
            draw_pick(ax, i, j, chosen_predicted, None if chosen is None else chosen[0],
                      size=120, color="black")
            ax.set_xlabel(_axis_label(names[i], metric))
            ax.set_ylabel(_axis_label(names[j], metric))
        _hide_unused(axes, len(pairs))
        handles, labels = axes[0].get_legend_handles_labels()
        # A smaller legend font: two columns of labels must fit a 3.5 in wide figure.
        with rc_context({"legend.fontsize": 7, "legend.handlelength": 1.4}):
            _shared_legend(fig, handles, labels, ncols=min(per_row, len(labels)), below=True)
        if title:
            fig.suptitle(title)
    return fig


def _panel(ax: Axes, i: int, j: int, grid_points, grid_front, runs, groups, chosen, *,
           line: bool, maximize: bool) -> None:
    if grid_points is not None and len(grid_points):
        ax.scatter(grid_points[:, i], grid_points[:, j], s=8, color=LIGHT_GREY, linewidths=0,
                   label="grid points", zorder=1)
    if grid_front is not None:
        if line:
            xs, ys = _staircase(grid_front, i, j, maximize)
            ax.plot(xs, ys, "-", color=FRONT_COLOUR, lw=1.0, label="grid search Pareto front",
                    zorder=2)
        else:
            ax.scatter(grid_front[:, i], grid_front[:, j], s=12, marker="o",
                       facecolors="none", edgecolors=FRONT_COLOUR, linewidths=0.7,
                       label="grid search Pareto front", zorder=2)
    for k, (label, front, real) in enumerate(runs):
        colour = RUN_COLOURS[k % len(RUN_COLOURS)]
        if line:
            order = np.argsort(front[:, i], kind="stable")
            ax.plot(front[order, i], front[order, j], "-", color=colour, lw=1.4,
                    label=f"{label}, predicted", zorder=3)
        else:
            ax.scatter(front[:, i], front[:, j], s=8, color=colour, alpha=0.7, linewidths=0,
                       label=f"{label}, predicted", zorder=3)
        if real is not None:
            ax.scatter(real[:, i], real[:, j], s=42, marker="*", color=colour,
                       edgecolors="white", linewidths=0.4, label=f"{label}, real",
                       zorder=4)
    for k, ((label, pts), style) in enumerate(zip(groups, BASELINE_STYLES)):
        filled = style["marker"] not in ("x", "+")
        # Earlier baselines on top: the caller lists the headline ones (TA, TIES) first.
        ax.scatter(pts[:, i], pts[:, j], s=30, marker=style["marker"], color=style["color"],
                   edgecolors="white" if filled else None, linewidths=0.4 if filled else 1.3,
                   label=label, zorder=5 + 0.01 * (len(groups) - k), clip_on=False)
    if chosen is not None:
        ax.scatter(chosen[:, i], chosen[:, j], s=120, marker="*", color=VERMILLION,
                   edgecolors="black", linewidths=0.6, label="chosen (preference)", zorder=6,
                   clip_on=False)


def plot_comparison(
    names: Sequence[str],
    metric: str,
    path: str | Path,
    *,
    grid_points: np.ndarray | None = None,
    grid_front: np.ndarray | None = None,
    runs: Sequence[tuple[str, np.ndarray, np.ndarray | None]] = (),
    baselines: Sequence[tuple[str, np.ndarray]] = (),
    chosen: np.ndarray | None = None,
    title: str | None = None,
    maximize: bool | None = None,
    pdf: bool = False,
    chosen_predicted: np.ndarray | None = None,
) -> list[Path]:
    """Write the comparison figure (see `comparison_figure`); returns [png] or [png, pdf]."""
    fig = comparison_figure(names, metric, grid_points=grid_points, grid_front=grid_front,
                            runs=runs, baselines=baselines, chosen=chosen, title=title,
                            maximize=maximize, chosen_predicted=chosen_predicted)
    return _save(fig, path, pdf)
