"""Figures of a run's rounds: where bayesian rounds sampled, the nested merge tree and its summary."""

from __future__ import annotations

from __future__ import annotations

import math
from itertools import combinations
from numbers import Integral
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D


from src.plotting.style import (BLUE, GREY, ORANGE, VERMILLION, PlotInputError, _grid_shape,
                               _hide_unused, _matrix, _names, _new_figure, _save,
                               _shared_legend, _style)

def bayesian_rounds_figure(
    C: np.ndarray, round_of_point: np.ndarray, names: Sequence[str], *, n_bins: int = 4,
) -> Figure:
    """Where each adaptive round sampled, in coefficient space (pairwise for T >= 3).

    For T=2 the angular bin edges (angles k*(pi/2)/n_bins from the c_1 axis, the
    convention of sampling.to_hyperspherical) are drawn as light rays from the origin.
    """
    names = _names(names)
    T = len(names)
    if T < 2:
        raise PlotInputError(f"need at least 2 tasks, got names={names}")
    C = _matrix(C, "C", T)
    rounds = np.asarray(round_of_point).reshape(-1)
    if rounds.shape[0] != C.shape[0]:
        raise PlotInputError(f"round_of_point has {rounds.shape[0]} entries, C has {C.shape[0]} rows")
    whole = np.issubdtype(rounds.dtype, np.integer) or (
        np.issubdtype(rounds.dtype, np.floating) and np.all(rounds == np.round(rounds)))
    if not whole or rounds.min() < 0:
        raise PlotInputError("round_of_point must hold non-negative integers (0 = initial design)")
    rounds = rounds.astype(int)
    if isinstance(n_bins, bool) or not isinstance(n_bins, Integral) or n_bins < 1:
        raise PlotInputError(f"n_bins must be a positive integer, got {n_bins!r}")

    later = [r for r in np.unique(rounds) if r > 0]
    palette = colormaps["viridis"](np.linspace(0.0, 0.85, max(len(later), 1)))
    styles = {0: dict(color="black", marker="o", facecolors="none", s=22, linewidths=0.8)}
    styles.update({r: dict(color=palette[n], marker="o", s=20, linewidths=0)
                   for n, r in enumerate(later)})

    pairs = list(combinations(range(T), 2))
    lo = min(0.0, float(C.min()))
    hi = max(1.0, float(C.max()))
    pad = 0.05 * (hi - lo)  # points on the box's edges are drawn whole, not halved
    lo, hi = lo - pad, hi + pad
    with _style():
        # Near-square panels (equal limits on both axes) once the legend has its rows;
        # a forced aspect would fight constrained layout and clip the x label.
        if T == 2:
            fig, axes = _new_figure(1, 1, (3.9, 4.4))
        else:
            fig, axes = _new_figure(*_grid_shape(len(pairs)), (2.9, 3.1))
        for ax, (i, j) in zip(axes, pairs):
            if T == 2:
                reach = hi * math.sqrt(2)  # long enough to cross the whole box
                for k in range(1, n_bins):
                    phi = k * (math.pi / 2) / n_bins
                    ax.plot([0, reach * math.cos(phi)], [0, reach * math.sin(phi)], ":",
                            color=GREY, lw=0.9, zorder=1,
                            label="angular bin edges" if k == 1 else None)
            for r in sorted(styles):
                m = rounds == r
                if m.any():
                    label = "initial design (round 0)" if r == 0 else f"round {r}"
                    ax.scatter(C[m, i], C[m, j], label=label, zorder=3, clip_on=False,
                               **styles[r])
            ax.set(xlim=(lo, hi), ylim=(lo, hi),
                   xlabel=f"$c_{{{i + 1}}}$ ({names[i]})", ylabel=f"$c_{{{j + 1}}}$ ({names[j]})")
        _hide_unused(axes, len(pairs))
        handles, labels = axes[0].get_legend_handles_labels()
        _shared_legend(fig, handles, labels, ncols=2 if T == 2 else min(len(labels), 5))
    return fig


def plot_bayesian_rounds(
    C: np.ndarray, round_of_point: np.ndarray, names: Sequence[str], path: str | Path,
    *, n_bins: int = 4, pdf: bool = False,
) -> list[Path]:
    """Write the sampling-rounds figure (see `bayesian_rounds_figure`)."""
    return _save(bayesian_rounds_figure(C, round_of_point, names, n_bins=n_bins), path, pdf)


# ------------------------------------------------------------------ merge tree


def merge_tree_layout(records: Sequence[Mapping]) -> dict[str, tuple[float, float]]:
    """(x, y) per node of the merge tree: leaves at y=0 on integer x, a merge at y=round+1.

    Leaves are ordered by a depth-first walk (left child first) from each root, oldest
    root first, so no branches cross; a merge sits midway between its two children.
    """
    ordered = sorted(records, key=_record_round)
    all_merged = [str(rec.get("merged", "")) for rec in ordered]
    children: dict[str, tuple[str, str]] = {}
    height: dict[str, float] = {}
    used: set[str] = set()
    for rec in ordered:
        left, right, merged = (str(rec.get(k, "")) for k in ("left", "right", "merged"))
        r = _record_round(rec)
        if not (left and right and merged) or left == right:
            raise PlotInputError(
                f"merge record of round {r} needs distinct 'left', 'right' and a 'merged' name, "
                f"got {dict(rec)}"
            )
        if merged in children or merged in used or all_merged.count(merged) > 1:
            raise PlotInputError(f"merged name {merged!r} of round {r} is not unique")
        for child in (left, right):
            if child in used:
                raise PlotInputError(f"round {r} merges {child!r}, which an earlier round already merged")
            if child in all_merged and child not in children:
                raise PlotInputError(f"round {r} merges {child!r} before the round that builds it")
        used.update((left, right))
        children[merged] = (left, right)
        height[merged] = r + 1.0
    if not children:
        raise PlotInputError("no merge records to draw")
    roots = sorted((m for m in children if m not in used), key=height.__getitem__)

    pos: dict[str, tuple[float, float]] = {}
    next_leaf = iter(range(len(used) + 1))

    def place(node: str) -> float:
        if node in children:
            xs = [place(c) for c in children[node]]
            pos[node] = (sum(xs) / 2.0, height[node])
        else:
            pos[node] = (float(next(next_leaf)), 0.0)
        return pos[node][0]

    for root in roots:
        place(root)
    return pos


def _record_round(rec: Mapping) -> int:
    try:
        r = rec["round"]
    except (KeyError, TypeError):
        raise PlotInputError(f"merge record without a 'round': {rec!r}") from None
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
        raise PlotInputError(f"merge record 'round' must be a non-negative integer, got {r!r}")
    return int(r)


def merge_tree_figure(
    records: Sequence[Mapping],
    *,
    leaf_accuracy: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Dendrogram of the nested merges; leaves show the single-task accuracy when known."""
    if isinstance(records, (str, Mapping)) or not isinstance(records, Sequence):
        raise PlotInputError("records must be a list of merge-round dicts")
    pos = merge_tree_layout(records)
    by_merged = {str(r["merged"]): r for r in records}
    leaf_acc = _leaf_accuracies(records, leaf_accuracy)
    leaves = [n for n, (_, y) in pos.items() if y == 0.0]
    top = max(y for _, y in pos.values())

    with _style():
        fig, (ax,) = _new_figure(1, 1, (max(4.5, 1.05 * len(leaves)), 1.1 + 0.8 * top))
        for name, rec in by_merged.items():
            x, y = pos[name]
            xl, yl = pos[str(rec["left"])]
            xr, yr = pos[str(rec["right"])]
            # Elbow connectors: up from each child, then across at the merge height.
            ax.plot([xl, xl, xr, xr], [yl, y, y, yr], color=BLUE, lw=1.3, zorder=2,
                    solid_joinstyle="miter")
            ax.scatter([x], [y], s=30, color=BLUE, edgecolors="white", linewidths=0.8, zorder=3)
            c = np.asarray(rec.get("pair_coefficients", []), dtype=float).reshape(-1)
            label = f"round {_record_round(rec) + 1}"  # as the round<k> folders and progress bars
            if c.size == 2:
                label += f"\nc=({c[0]:.2f}, {c[1]:.2f})"
            ax.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points",
                        ha="left", va="bottom", fontsize=7.5, zorder=4,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
        for name in leaves:
            x, _ = pos[name]
            ax.scatter([x], [0.0], s=34, marker="s", color=GREY, zorder=3)
            acc = leaf_acc.get(name)
            text = name if acc is None else f"{name}\n{acc:.3f}"
            ax.annotate(text, (x, 0.0), xytext=(0, -6), textcoords="offset points",
                        ha="center", va="top", fontsize=8)
        ax.set_xlim(-0.6, len(leaves) - 0.4)
        ax.set_ylim(-0.55 - 0.1 * (top <= 1), top + 0.55)
        ax.axis("off")
        handles = [
            Line2D([], [], ls="", marker="s", color=GREY,
                   label="task (fine-tuned accuracy)" if leaf_acc else "task"),
            Line2D([], [], ls="", marker="o", color=BLUE, label="merge (round, pair coefficients)"),
        ]
        _shared_legend(fig, handles, [h.get_label() for h in handles], below=bool(title))
        if title:
            fig.suptitle(title)
    return fig


def _leaf_accuracies(records: Sequence[Mapping], given: Mapping[str, float] | None) -> dict[str, float]:
    """Single-task accuracy per leaf: `given` first, else the record's pairing accuracy."""
    merged = {str(r["merged"]) for r in records}
    acc: dict[str, float] = {}
    for rec in records:
        pairing = rec.get("pairing_accuracy") or {}
        for side in ("left", "right"):
            name = str(rec[side])
            if name not in merged and isinstance(pairing.get(side), (int, float)):
                acc[name] = float(pairing[side])
    for name, value in (given or {}).items():
        acc[str(name)] = float(value)
    return acc


def plot_merge_tree(
    records: Sequence[Mapping],
    path: str | Path,
    *,
    leaf_accuracy: Mapping[str, float] | None = None,
    title: str | None = None,
    pdf: bool = False,
) -> list[Path]:
    """Write the nested merge tree (see `merge_tree_figure`)."""
    fig = merge_tree_figure(records, leaf_accuracy=leaf_accuracy, title=title)
    return _save(fig, path, pdf)


# --------------------------------------------------------------- nested summary


def nested_summary_figure(
    final_accuracy: Mapping[str, float],
    single_accuracy: Mapping[str, float],
    *,
    reference: Mapping[str, float] | None = None,
    reference_label: str = "task arithmetic",
    metric: str = "accuracy",
    show_mean: bool = True,
    pretrained: Mapping[str, float] | None = None,
    chance: Mapping[str, float] | None = None,
) -> Figure:
    """Grouped bars per task (in final_accuracy's order), plus their mean as a last group.
    ``pretrained`` (the model at c = 0) and ``chance`` (1 / classes) are drawn across each
    task's bars; a task whose final value is below its pretrained one is marked (its label
    in red and "below pretrained" over its bars): the merge lost what pretraining gave."""
    tasks = [str(t) for t in final_accuracy]
    if not tasks:
        raise PlotInputError("final_accuracy is empty")
    series = [("fine-tuned (single task)", single_accuracy, GREY),
              ("nested MAP (final)", final_accuracy, BLUE)]
    if reference is not None:
        series.append((reference_label, reference, ORANGE))
    values = []
    for label, mapping, _ in series:
        if not isinstance(mapping, Mapping):
            raise PlotInputError(f"accuracies for {label!r} must be a dict of task -> value")
        missing = [t for t in tasks if t not in mapping]
        if missing:
            raise PlotInputError(f"accuracies for {label!r} lack tasks {missing}")
        v = np.array([float(mapping[t]) for t in tasks])
        if not np.all(np.isfinite(v)):
            raise PlotInputError(f"accuracies for {label!r} contain NaN or infinite values")
        values.append(np.append(v, v.mean()) if show_mean else v)
    groups = tasks + (["mean"] if show_mean else [])

    n = len(series)
    width = 0.8 / n
    x = np.arange(len(groups), dtype=float)
    with _style():
        fig_width = max(4.5, 0.75 * len(groups) + 1.0)
        fig, (ax,) = _new_figure(1, 1, (fig_width, 3.2))
        for s, ((label, _, color), v) in enumerate(zip(series, values)):
            ax.bar(x + (s - (n - 1) / 2) * width, v, width, color=color, label=label,
                   edgecolor="white", linewidth=0.5, zorder=2)
        if show_mean:
            ax.axvline(len(tasks) - 0.5, color="black", lw=0.6, ls=":")
        tops = np.max([v[:len(tasks)] for v in values], axis=0)
        below = _reference_lines(ax, tasks, final_accuracy, pretrained, chance, tops)
        ax.set_xticks(x, groups, rotation=30 if len(groups) > 5 else 0,
                      ha="right" if len(groups) > 5 else "center", rotation_mode="anchor")
        for tick in ax.get_xticklabels():
            if tick.get_text() in below:
                tick.set_color(VERMILLION)
        ax.set_ylabel(metric)
        top = max(float(np.max(v)) for v in values)
        ax.set_ylim(0, 1.0 if 0 < top <= 1.0 else top * 1.08)
        if below:  # room for the marks over the highest bars
            ax.set_ylim(0, max(ax.get_ylim()[1], float(tops.max()) + 0.13))
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.grid(axis="x", visible=False)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))  # one entry per reference line, not per task
        # Three long labels need about 6 inches side by side; stack them on narrow figures.
        _shared_legend(fig, list(unique.values()), list(unique), ncols=n if fig_width >= 6.5
                       else 2)
    return fig


PRETRAINED_LABEL, CHANCE_LABEL = "pretrained (c = 0)", "chance (1 / classes)"


def _reference_lines(ax, tasks: Sequence[str], final: Mapping[str, float],
                     pretrained: Mapping[str, float] | None,
                     chance: Mapping[str, float] | None, tops: np.ndarray) -> list[str]:
    """Pretrained and chance levels across each task's group of bars; returns the tasks
    whose final value is below the pretrained one (marked over their bars)."""
    below = []
    for k, t in enumerate(tasks):
        if chance is not None and chance.get(t) is not None:
            ax.plot([k - 0.45, k + 0.45], [chance[t]] * 2, ":", color="black", lw=1.0,
                    label=CHANCE_LABEL, zorder=3)
        if pretrained is not None and pretrained.get(t) is not None:
            ax.plot([k - 0.45, k + 0.45], [pretrained[t]] * 2, "--", color=VERMILLION, lw=1.1,
                    label=PRETRAINED_LABEL, zorder=3)
            if float(final[t]) < float(pretrained[t]):
                below.append(t)
                ax.text(k, max(float(tops[k]), float(pretrained[t])) + 0.01,
                        "▼ below\npretrained", ha="center", va="bottom", fontsize=7,
                        color=VERMILLION, zorder=4)
    return below


def plot_nested_summary(
    final_accuracy: Mapping[str, float],
    single_accuracy: Mapping[str, float],
    path: str | Path,
    *,
    reference: Mapping[str, float] | None = None,
    reference_label: str = "task arithmetic",
    metric: str = "accuracy",
    pdf: bool = False,
    pretrained: Mapping[str, float] | None = None,
    chance: Mapping[str, float] | None = None,
) -> list[Path]:
    """Write the per-task summary bar chart (see `nested_summary_figure`)."""
    fig = nested_summary_figure(final_accuracy, single_accuracy, reference=reference,
                                reference_label=reference_label, metric=metric,
                                pretrained=pretrained, chance=chance)
    return _save(fig, path, pdf)
