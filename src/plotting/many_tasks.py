"""Figures of a front over four or more tasks, where every pairwise projection is too many
panels: parallel coordinates (one line per front point, tasks on the axes) and a compact
lower-triangle scatter matrix that fits one page."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from src.plotting.style import (BLUE, GREEN, GREY, ORANGE, PURPLE, PlotInputError, VERMILLION,
                               _matrix, _names, _save, _style)

MIN_TASKS = 4  # from here on the front figures are these two instead of every projection
PAGE_INCHES = 8.0
SMALL = 6.5
WINDOW = (-1.0, 1.5)  # normalised values drawn; beyond it a value is clipped and counted


def _row(x, name: str, K: int) -> np.ndarray | None:
    if x is None:
        return None
    return _matrix(np.reshape(np.asarray(x, dtype=float), (1, -1)), name, K)[0]


def _finetuned(x, K: int) -> np.ndarray | None:
    """[K, K], row k the metrics of fine-tuned model k, NaN rows where not evaluated."""
    if x is None:
        return None
    a = np.asarray(x, dtype=float)
    if a.shape != (K, K):
        raise PlotInputError(f"finetuned must be [K, K] = [{K}, {K}], got shape {a.shape}")
    nan = np.isnan(a)
    if np.isinf(a).any() or (nan.any(axis=1) != nan.all(axis=1)).any():
        raise PlotInputError("finetuned rows must be finite, or all NaN where not evaluated")
    return a


def axis_scale(values: np.ndarray, sense: str, pretrained: np.ndarray | None,
               finetuned: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Per task the raw values drawn at 0 and at 1, and a caption saying what they are.

    0 is the pretrained model and 1 the task's fine-tuned model where those were evaluated;
    otherwise the worst / best value drawn on that axis. Either way higher is better."""
    worst = values.min(axis=0) if sense == "max" else values.max(axis=0)
    best = values.max(axis=0) if sense == "max" else values.min(axis=0)
    own = np.full(values.shape[1], np.nan) if finetuned is None else np.diag(finetuned)
    low = worst if pretrained is None else pretrained.copy()
    high = np.where(np.isnan(own), best, own)
    flat = np.abs(high - low) < 1e-12  # a degenerate axis: widen it around its value
    high = np.where(flat, low + (1.0 if sense == "max" else -1.0) * 1e-3, high)
    from_pre = pretrained is not None
    from_ft = ~np.isnan(own) & ~flat
    if from_pre and from_ft.all():
        caption = "0 = pretrained model, 1 = the task's fine-tuned model"
    else:
        zero = "pretrained model" if from_pre else "worst value drawn"
        one = ("the task's fine-tuned model" if from_ft.all() else "best value drawn"
               if not from_ft.any() else "the task's fine-tuned model where evaluated, "
               "else the best value drawn")
        caption = f"0 = {zero}, 1 = {one}"
    return low, high, caption


def parallel_front_figure(
    front_pred: np.ndarray,
    names: Sequence[str],
    metric: str,
    *,
    sense: str = "max",
    front_real: np.ndarray | None = None,
    pick_pred: np.ndarray | None = None,
    pick_real: np.ndarray | None = None,
    pretrained: np.ndarray | None = None,
    finetuned: np.ndarray | None = None,
    task_arithmetic: np.ndarray | None = None,
    title: str | None = None,
) -> Figure:
    """Parallel coordinates: one line per front point, each task's axis normalised so that
    0 is the pretrained model and 1 the task's fine-tuned model (see ``axis_scale``);
    the pick (predicted dashed, real solid), the pretrained model, task arithmetic and the
    fine-tuned models drawn over the front."""
    names = _names(names)
    K = len(names)
    front_pred = _matrix(front_pred, "front_pred", K)
    front_real = None if front_real is None else _matrix(front_real, "front_real", K)
    pick_pred, pick_real = _row(pick_pred, "pick_pred", K), _row(pick_real, "pick_real", K)
    pretrained = _row(pretrained, "pretrained", K)
    task_arithmetic = _row(task_arithmetic, "task_arithmetic", K)
    finetuned = _finetuned(finetuned, K)
    if sense not in ("max", "min"):
        raise PlotInputError(f"sense must be 'max' or 'min', got {sense!r}")

    drawn = [front_pred] + [a for a in (front_real,) if a is not None] + \
        [a[None] for a in (pick_pred, pick_real, pretrained, task_arithmetic) if a is not None]
    low, high, caption = axis_scale(np.vstack(drawn), sense, pretrained, finetuned)

    def norm(Y: np.ndarray) -> np.ndarray:
        # a task whose pretrained model is close to its fine-tuned one would stretch its
        # axis over the whole figure: values beyond the window are drawn at its edge
        return np.clip((np.atleast_2d(Y) - low) / (high - low), *WINDOW)

    unclipped = (np.vstack(drawn) - low) / (high - low)
    below = (unclipped < WINDOW[0] - 1e-12).sum(axis=0)
    above = (unclipped > WINDOW[1] + 1e-12).sum(axis=0)

    x = np.arange(K)
    with _style():
        fig = Figure(figsize=(max(6.0, 0.85 * K + 1.5), 3.6), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(x, norm(front_pred).T, color=BLUE, lw=0.6, alpha=0.25, zorder=2)
        ax.plot([], [], color=BLUE, lw=1.0, alpha=0.6, label="MAP front, predicted")
        if front_real is not None:
            ax.plot(x, norm(front_real).T, color=ORANGE, lw=0.9, alpha=0.8, zorder=3)
            ax.plot([], [], color=ORANGE, lw=0.9, label="MAP front, real")
        if pretrained is not None:
            ax.plot(x, norm(pretrained)[0], color="black", lw=1.3, ls=":", marker="o", ms=3,
                    label="pretrained (c = 0)", zorder=4)
        if task_arithmetic is not None:
            ax.plot(x, norm(task_arithmetic)[0], color=GREEN, lw=1.6, marker="D", ms=3.5,
                    label="task arithmetic (best evaluated λ)", zorder=5)
        if finetuned is not None and not np.isnan(finetuned).all():
            own = np.diag(finetuned)
            k = np.flatnonzero(~np.isnan(own))
            ax.scatter(x[k], norm(own)[0, k], marker="^", s=30, color=PURPLE, zorder=5,
                       label="fine-tuned model, own task", clip_on=False)
        if pick_pred is not None:
            ax.plot(x, norm(pick_pred)[0], color=VERMILLION, lw=1.6, ls="--", marker="*",
                    ms=8, mfc="white", label="pick, predicted", zorder=6)
        if pick_real is not None:
            ax.plot(x, norm(pick_real)[0], color=VERMILLION, lw=2.2, marker="*", ms=9,
                    mec="black", mew=0.5, label="pick, real", zorder=7)
        for level in (0.0, 1.0):
            ax.axhline(level, color=GREY, lw=0.8, zorder=1)
        for xi in x:
            ax.axvline(xi, color="black", lw=0.6, alpha=0.5, zorder=1)
        ax.grid(False)
        for xi, nb, na in zip(x, below, above):
            for count, level, va, mark in ((nb, WINDOW[0], "bottom", "▼"),
                                           (na, WINDOW[1], "top", "▲")):
                if count:
                    ax.annotate(f"{mark}{count}", (xi, level), xytext=(4, 0),
                                textcoords="offset points", fontsize=6.5, va="center",
                                ha="left", zorder=8, bbox=dict(boxstyle="round,pad=0.15",
                                                               fc="white", ec="none", alpha=0.85))
        caption += f"; raw {metric} of both under each task".rstrip()
        if below.any() or above.any():
            caption += (f"\nvalues beyond [{WINDOW[0]:g}, {WINDOW[1]:g}] drawn at the edge "
                        "(▼n / ▲n: how many)")
        ax.set_xticks(x, [f"{n}\n{lo:.3g} → {hi:.3g}" for n, lo, hi in zip(names, low, high)],
                      fontsize=7, rotation=20 if K > 6 else 0)
        ax.set_xlim(-0.3, K - 0.7)
        ax.set_ylim(min(WINDOW[0], 0) - 0.05 if below.any() else None,
                    WINDOW[1] + 0.05 if above.any() else None)
        ax.set_ylabel(f"normalised {metric}".strip())
        ax.set_title(caption, fontsize=7.5)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3)
        if title:
            fig.suptitle(title)
    return fig


def scatter_matrix_figure(
    evaluated: np.ndarray,
    front_pred: np.ndarray,
    names: Sequence[str],
    metric: str,
    *,
    front_real: np.ndarray | None = None,
    pick_pred: np.ndarray | None = None,
    pick_real: np.ndarray | None = None,
    pretrained: np.ndarray | None = None,
    finetuned: np.ndarray | None = None,
    task_arithmetic: np.ndarray | None = None,
    title: str | None = None,
) -> Figure:
    """Lower-triangle matrix of every task pair (x: the column's task, y: the row's), at
    most PAGE_INCHES square, axes shared along rows and columns, the legend in the empty
    upper triangle."""
    names = _names(names)
    K = len(names)
    if K < 3:
        raise PlotInputError(f"a scatter matrix needs at least 3 tasks, got names={names}")
    evaluated = _matrix(evaluated, "evaluated", K, allow_empty=True)
    front_pred = _matrix(front_pred, "front_pred", K)
    front_real = None if front_real is None else _matrix(front_real, "front_real", K)
    pick_pred, pick_real = _row(pick_pred, "pick_pred", K), _row(pick_real, "pick_real", K)
    pretrained = _row(pretrained, "pretrained", K)
    task_arithmetic = _row(task_arithmetic, "task_arithmetic", K)
    finetuned = _finetuned(finetuned, K)
    if finetuned is not None:
        finetuned = finetuned[~np.isnan(finetuned).any(axis=1)]

    n = K - 1
    size = min(PAGE_INCHES, 2.0 * n + 0.6)
    with _style():
        fig = Figure(figsize=(size, size), layout="constrained")
        axes = fig.subplots(n, n, sharex="col", sharey="row", squeeze=False)
        for r in range(n):
            for c in range(n):
                ax = axes[r, c]
                if c > r:
                    ax.set_visible(False)
                    continue
                i, j = c, r + 1  # x: task i, y: task j
                _matrix_panel(ax, i, j, evaluated, front_pred, front_real, pick_pred,
                              pick_real, pretrained, finetuned, task_arithmetic)
                ax.xaxis.set_major_locator(MaxNLocator(3))
                ax.yaxis.set_major_locator(MaxNLocator(3))
                ax.tick_params(labelsize=SMALL, labelleft=c == 0, labelbottom=r == n - 1,
                               length=2, pad=1)
                if c == 0:
                    ax.set_ylabel(names[j], fontsize=SMALL + 0.5)
                if r == n - 1:
                    ax.set_xlabel(names[i], fontsize=SMALL + 0.5)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", fontsize=7,
                   title=f"{metric} per task pair".strip(), title_fontsize=7)
        if title:
            fig.suptitle(title)
    return fig


def _matrix_panel(ax: Axes, i: int, j: int, evaluated: np.ndarray, front_pred: np.ndarray,
                  front_real: np.ndarray | None, pick_pred: np.ndarray | None,
                  pick_real: np.ndarray | None, pretrained: np.ndarray | None,
                  finetuned: np.ndarray | None, task_arithmetic: np.ndarray | None) -> None:
    if len(evaluated):
        ax.scatter(evaluated[:, i], evaluated[:, j], s=3, color=GREY, alpha=0.5,
                   linewidths=0, label="evaluated merges", zorder=2)
    ax.scatter(front_pred[:, i], front_pred[:, j], s=4, color=BLUE, alpha=0.6, linewidths=0,
               label="MAP front, predicted", zorder=3)
    if front_real is not None:
        ax.scatter(front_real[:, i], front_real[:, j], s=12, marker="s", facecolors="none",
                   edgecolors=ORANGE, linewidths=0.8, label="MAP front, real", zorder=4)
    if finetuned is not None and len(finetuned):
        ax.scatter(finetuned[:, i], finetuned[:, j], s=16, marker="^", color=PURPLE,
                   linewidths=0, label="fine-tuned models", zorder=5)
    if pretrained is not None:
        ax.scatter(pretrained[i], pretrained[j], s=22, marker="X", color="black",
                   linewidths=0, label="pretrained (c = 0)", zorder=5)
    if task_arithmetic is not None:
        ax.scatter(task_arithmetic[i], task_arithmetic[j], s=20, marker="D", color=GREEN,
                   edgecolors="black", linewidths=0.4,
                   label="task arithmetic (best evaluated λ)", zorder=5)
    if pick_pred is not None:
        ax.scatter(pick_pred[i], pick_pred[j], s=70, marker="*", facecolors="none",
                   edgecolors=VERMILLION, linewidths=0.9, label="pick, predicted", zorder=6,
                   clip_on=False)
    if pick_real is not None:
        ax.scatter(pick_real[i], pick_real[j], s=70, marker="*", color=VERMILLION,
                   edgecolors="black", linewidths=0.4, label="pick, real", zorder=7,
                   clip_on=False)


def plot_many_task_front(
    evaluated: np.ndarray,
    front_pred: np.ndarray,
    names: Sequence[str],
    metric: str,
    matrix_path: str | Path,
    parallel_path: str | Path,
    *,
    sense: str = "max",
    front_real: np.ndarray | None = None,
    pick_pred: np.ndarray | None = None,
    pick_real: np.ndarray | None = None,
    pretrained: np.ndarray | None = None,
    finetuned: np.ndarray | None = None,
    task_arithmetic: np.ndarray | None = None,
    title: str | None = None,
    pdf: bool = False,
) -> list[Path]:
    """Write the scatter matrix to ``matrix_path`` and the parallel coordinates to
    ``parallel_path`` (PNG, plus PDF with pdf=True); returns the written paths."""
    common = dict(front_real=front_real, pick_pred=pick_pred, pick_real=pick_real,
                  pretrained=pretrained, finetuned=finetuned, task_arithmetic=task_arithmetic,
                  title=title)
    out = _save(scatter_matrix_figure(evaluated, front_pred, names, metric, **common),
                matrix_path, pdf)
    out += _save(parallel_front_figure(front_pred, names, metric, sense=sense, **common),
                 parallel_path, pdf)
    return out


