"""Figures of one front: the front over the evaluated merges, surrogate fit, true vs predicted."""

from __future__ import annotations

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch


from src.plotting.style import (BLUE, GREY, ORANGE, PlotInputError, VERMILLION,
                               _axis_label, _grid_shape, _hide_unused, _matrix, _names,
                               _new_figure, _save, _shared_legend, _style, draw_pick)

def front_figure(
    evaluated: np.ndarray,
    front_pred: np.ndarray,
    names: Sequence[str],
    metric: str,
    *,
    front_real: np.ndarray | None = None,
    chosen: np.ndarray | None = None,
    title: str | None = None,
    chosen_real: np.ndarray | None = None,
) -> Figure:
    """Evaluated merges, the predicted (and optionally re-evaluated) front and the chosen point
    (``chosen``: where the surrogates put it, hollow; ``chosen_real``: measured, filled).

    K=2: one panel, the predicted front as a line sorted along the x axis.
    K>2: one panel per task pair (2-D projections); the projected front is drawn as
    markers only, since a line through a projection would suggest an order it lacks.
    """
    names = _names(names)
    K = len(names)
    if K < 2:
        raise PlotInputError(f"a front needs at least 2 tasks, got names={names}")
    evaluated = _matrix(evaluated, "evaluated", K, allow_empty=True)
    front_pred = _matrix(front_pred, "front_pred", K)
    if front_real is not None:
        front_real = _matrix(front_real, "front_real", K)
    if chosen is not None:
        chosen = _matrix(np.reshape(np.asarray(chosen, dtype=float), (1, -1)), "chosen", K)
    if chosen_real is not None:
        chosen_real = _matrix(np.reshape(np.asarray(chosen_real, dtype=float), (1, -1)),
                              "chosen_real", K)[0]

    pairs = list(combinations(range(K), 2))
    with _style():
        if K == 2:
            fig, axes = _new_figure(1, 1, (4.2, 3.6))
        else:
            fig, axes = _new_figure(*_grid_shape(len(pairs)), (3.0, 2.8))
        for ax, (i, j) in zip(axes, pairs):
            _front_panel(ax, i, j, evaluated, front_pred, front_real, None, line=K == 2)
            draw_pick(ax, i, j, None if chosen is None else chosen[0], chosen_real)
            ax.set_xlabel(_axis_label(names[i], metric))
            ax.set_ylabel(_axis_label(names[j], metric))
        _hide_unused(axes, len(pairs))
        handles, labels = axes[0].get_legend_handles_labels()
        _shared_legend(fig, handles, labels, ncols=2 if K == 2 else None, below=bool(title))
        if title:
            fig.suptitle(title)
    return fig


def _front_panel(
    ax: Axes, i: int, j: int, evaluated: np.ndarray, front_pred: np.ndarray,
    front_real: np.ndarray | None, chosen: np.ndarray | None, *, line: bool,
) -> None:
    if len(evaluated):
        ax.scatter(evaluated[:, i], evaluated[:, j], s=9, color=GREY, alpha=0.6,
                   linewidths=0, label="evaluated merges", zorder=2)
    if line:
        order = np.argsort(front_pred[:, i], kind="stable")
        ax.plot(front_pred[order, i], front_pred[order, j], "-o", color=BLUE, ms=3.5,
                label="MAP, predicted", zorder=3)
    else:
        ax.scatter(front_pred[:, i], front_pred[:, j], s=14, color=BLUE,
                   label="MAP, predicted", zorder=3)
    if front_real is not None:
        ax.scatter(front_real[:, i], front_real[:, j], s=26, marker="s", facecolors="none",
                   edgecolors=ORANGE, linewidths=1.2, label="MAP, real", zorder=4)
    if chosen is not None:
        ax.scatter(chosen[:, i], chosen[:, j], s=150, marker="*", color=VERMILLION,
                   edgecolors="black", linewidths=0.6, label="chosen (preference)", zorder=5,
                   clip_on=False)  # a big marker at the data edge must stay whole


def plot_front(
    evaluated: np.ndarray,
    front_pred: np.ndarray,
    names: Sequence[str],
    metric: str,
    path: str | Path,
    *,
    front_real: np.ndarray | None = None,
    chosen: np.ndarray | None = None,
    title: str | None = None,
    pdf: bool = False,
    chosen_real: np.ndarray | None = None,
) -> list[Path]:
    """Write the Pareto-front figure (see `front_figure`); returns [png] or [png, pdf]."""
    fig = front_figure(evaluated, front_pred, names, metric,
                       front_real=front_real, chosen=chosen, title=title,
                       chosen_real=chosen_real)
    return _save(fig, path, pdf)


# ----------------------------------------------------------------- surrogate fit


def surrogate_fit_figure(
    C: np.ndarray,
    Y: np.ndarray,
    predict: Sequence[Callable[[np.ndarray], np.ndarray]],
    names: Sequence[str],
    metric: str,
    *,
    low: float = 0.0,
    high: float = 1.0,
    resolution: int = 101,
) -> Figure:
    """Two tasks: per task, the surrogate over [low, high]^2 with the evaluated points on top.

    Fill and points share one colormap and normalisation per panel, so a point whose
    colour differs from the fill around it is where the surrogate is wrong.
    """
    names = _names(names, 2, "names (surrogate-fit figures are for 2 tasks)")
    C = _matrix(C, "C", 2)
    Y = _matrix(Y, "Y", 2)
    if Y.shape[0] != C.shape[0]:
        raise PlotInputError(f"C has {C.shape[0]} rows but Y has {Y.shape[0]}")
    if isinstance(predict, str) or not isinstance(predict, Sequence) or len(predict) != 2:
        raise PlotInputError("predict must be a list of 2 callables (one per task)")
    if not all(callable(p) for p in predict):
        raise PlotInputError("every entry of predict must be callable: C (m, 2) -> (m,)")
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise PlotInputError(f"need finite low < high, got low={low}, high={high}")

    axis = np.linspace(low, high, resolution)
    XX, YY = np.meshgrid(axis, axis)
    grid = np.column_stack([XX.ravel(), YY.ravel()])
    cmap = colormaps["viridis"]
    xlim = (min(low, C[:, 0].min()), max(high, C[:, 0].max()))
    ylim = (min(low, C[:, 1].min()), max(high, C[:, 1].max()))

    with _style():
        fig, axes = _new_figure(1, 2, (3.6, 3.3))
        for k, ax in enumerate(axes):
            Z = np.asarray(predict[k](grid), dtype=float).reshape(-1)
            if Z.shape[0] != grid.shape[0] or not np.all(np.isfinite(Z)):
                raise PlotInputError(
                    f"predict[{k}] must return {grid.shape[0]} finite values for "
                    f"{grid.shape[0]} points, got shape {np.shape(Z)}"
                )
            vmin, vmax = min(Z.min(), Y[:, k].min()), max(Z.max(), Y[:, k].max())
            if vmax - vmin < 1e-12:  # constant: widen so the colormap is defined
                vmin, vmax = vmin - 0.5e-3, vmax + 0.5e-3
            norm = Normalize(vmin=vmin, vmax=vmax)
            ax.contourf(XX, YY, Z.reshape(XX.shape), levels=np.linspace(vmin, vmax, 16),
                        cmap=cmap, norm=norm)
            ax.scatter(C[:, 0], C[:, 1], c=Y[:, k], cmap=cmap, norm=norm, s=26,
                       edgecolors="white", linewidths=0.7, zorder=3)
            fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                         label=_axis_label(names[k], metric), shrink=0.9)
            ax.set(xlim=xlim, ylim=ylim, aspect="equal", title=names[k],
                   xlabel=f"$c_1$ ({names[0]})", ylabel=f"$c_2$ ({names[1]})")
            ax.grid(False)  # a grid over a filled contour is noise
        handles = [Patch(facecolor=cmap(0.55), label="surrogate prediction"),
                   Line2D([], [], ls="", marker="o", ms=5.5, color=cmap(0.55), mec="white",
                          label="evaluated (true value)")]
        _shared_legend(fig, handles, [h.get_label() for h in handles])
    return fig


def plot_surrogate_fit(
    C: np.ndarray,
    Y: np.ndarray,
    predict: Sequence[Callable[[np.ndarray], np.ndarray]],
    names: Sequence[str],
    metric: str,
    path: str | Path,
    *,
    low: float = 0.0,
    high: float = 1.0,
    pdf: bool = False,
) -> list[Path]:
    """Write the surrogate-vs-evaluated contour figure (see `surrogate_fit_figure`)."""
    fig = surrogate_fit_figure(C, Y, predict, names, metric, low=low, high=high)
    return _save(fig, path, pdf)


def true_vs_predicted_figure(
    Y_true: np.ndarray, Y_pred: np.ndarray, names: Sequence[str], metric: str,
) -> Figure:
    """Parity plot, one panel per task, R^2 of the surrogate in each panel title."""
    # Imported here: scikit-learn takes seconds to import and only this figure needs it.
    from sklearn.metrics import r2_score

    names = _names(names)
    K = len(names)
    Y_true = _matrix(Y_true, "Y_true", K)
    Y_pred = _matrix(Y_pred, "Y_pred", K)
    if Y_true.shape != Y_pred.shape:
        raise PlotInputError(f"Y_true has shape {Y_true.shape} but Y_pred has {Y_pred.shape}")

    with _style():
        fig, axes = _new_figure(*_grid_shape(K, 4), (2.8, 2.8))
        for k, ax in enumerate(axes[:K]):
            t, p = Y_true[:, k], Y_pred[:, k]
            lo, hi = min(t.min(), p.min()), max(t.max(), p.max())
            pad = 0.05 * (hi - lo) if hi > lo else 0.01
            lims = (lo - pad, hi + pad)
            ax.plot(lims, lims, "--", color="black", lw=0.9, label="y = x", zorder=2)
            ax.scatter(t, p, s=12, color=BLUE, alpha=0.75, linewidths=0,
                       label="evaluated points", zorder=3)
            r2 = f"{r2_score(t, p):.3f}" if len(t) >= 2 else "n/a"
            ax.set(xlim=lims, ylim=lims, aspect="equal", title=f"{names[k]} ($R^2$ = {r2})",
                   xlabel=f"true {_axis_label(names[k], metric)}",
                   ylabel=f"surrogate {_axis_label(names[k], metric)}")
        _hide_unused(axes, K)
        handles, labels = axes[0].get_legend_handles_labels()
        _shared_legend(fig, handles, labels)
    return fig


def plot_true_vs_predicted(
    Y_true: np.ndarray, Y_pred: np.ndarray, names: Sequence[str], metric: str,
    path: str | Path, *, pdf: bool = False,
) -> list[Path]:
    """Write the parity plot (see `true_vs_predicted_figure`)."""
    return _save(true_vs_predicted_figure(Y_true, Y_pred, names, metric), path, pdf)


# ------------------------------------------------------------- Bayesian rounds
