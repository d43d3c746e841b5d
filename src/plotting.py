"""Publication figures: Pareto fronts, surrogate fits, adaptive-sampling rounds, merge trees.

Every figure comes in two layers: a `*_figure(...)` builder returning a matplotlib
`Figure` (for tests and for users who want to restyle it) and a `plot_*(..., path)` that
builds, writes `path` as a 300-dpi PNG (plus a PDF beside it when pdf=True) and returns
the written paths. Figures are made with `matplotlib.figure.Figure` directly, never
pyplot, so no GUI backend or global figure registry is involved (headless, SLURM, threads)
and a figure is freed as soon as it goes out of scope.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from itertools import combinations
from numbers import Integral
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from map_common.errors import MAPError

DPI = 300

# Okabe-Ito: distinguishable under the common colour-vision deficiencies and in greyscale.
BLUE, ORANGE, VERMILLION, GREEN, SKY, PURPLE = (
    "#0072B2", "#E69F00", "#D55E00", "#009E73", "#56B4E9", "#CC79A7",
)
GREY = "#8c8c8c"

_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.4,
    "savefig.dpi": DPI,
    # Embed TrueType fonts: publishers reject PDFs with Type 3 fonts.
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}


class PlotInputError(MAPError, ValueError):
    """Bad arrays or names handed to a plotting function (a MAPError and a ValueError)."""


# ------------------------------------------------------------------------- helpers


@contextmanager
def _style() -> Iterator[None]:
    """The one place the look of every figure is set."""
    with rc_context(_RC):
        yield


def _new_figure(nrows: int, ncols: int, panel: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """Constrained-layout figure of nrows x ncols panels of `panel` inches each."""
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def _grid_shape(n_panels: int, max_cols: int = 3) -> tuple[int, int]:
    ncols = min(n_panels, max_cols)
    return math.ceil(n_panels / ncols), ncols


def _shared_legend(
    fig: Figure, handles: list, labels: list[str], ncols: int | None = None, *, below: bool = False,
) -> None:
    """One legend above (or below) all panels, outside the data area so it never hides points.

    Constrained layout stacks an outside legend and a suptitle on top of each other, so
    figures with a title put the legend below.
    """
    fig.legend(handles, labels, loc="outside lower center" if below else "outside upper center",
               ncols=ncols or min(len(labels), 4), handletextpad=0.4, columnspacing=1.2)


def _save(fig: Figure, path: str | Path, pdf: bool) -> list[Path]:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise PlotInputError(f"figure path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path]
    if pdf:
        out.append(path.with_suffix(".pdf"))
    with _style():
        for p in out:
            fig.savefig(p, dpi=DPI)
    fig.clear()  # release the artists now rather than at garbage collection
    return out


def _matrix(x: Any, name: str, cols: int | None = None, *, allow_empty: bool = False) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise PlotInputError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if a.ndim != 2:
        raise PlotInputError(f"{name} must be 2-D (rows, columns), got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise PlotInputError(f"{name} has {a.shape[1]} columns, expected {cols} (one per name)")
    if a.shape[0] == 0 and not allow_empty:
        raise PlotInputError(f"{name} has no rows")
    if not np.all(np.isfinite(a)):
        raise PlotInputError(f"{name} contains NaN or infinite values")
    return a


def _names(names: Any, expected: int | None = None, what: str = "names") -> list[str]:
    if isinstance(names, str) or not isinstance(names, (Sequence, np.ndarray)):
        raise PlotInputError(f"{what} must be a list of strings, got {names!r}")
    names = [str(n) for n in names]
    if expected is not None and len(names) != expected:
        raise PlotInputError(f"{what} has {len(names)} entries {names}, expected {expected}")
    if len(set(names)) != len(names):
        raise PlotInputError(f"{what} contains duplicates: {names}")
    return names


def _axis_label(name: str, metric: str) -> str:
    return f"{name} {metric}".strip()


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes[used:]:
        ax.set_visible(False)


# ------------------------------------------------------------------- Pareto front


def front_figure(
    evaluated: np.ndarray,
    front_pred: np.ndarray,
    names: Sequence[str],
    metric: str,
    *,
    front_real: np.ndarray | None = None,
    chosen: np.ndarray | None = None,
    title: str | None = None,
) -> Figure:
    """Evaluated merges, the predicted (and optionally re-evaluated) front and the chosen point.

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

    pairs = list(combinations(range(K), 2))
    with _style():
        if K == 2:
            fig, axes = _new_figure(1, 1, (4.2, 3.6))
        else:
            fig, axes = _new_figure(*_grid_shape(len(pairs)), (3.0, 2.8))
        for ax, (i, j) in zip(axes, pairs):
            _front_panel(ax, i, j, evaluated, front_pred, front_real, chosen, line=K == 2)
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
) -> list[Path]:
    """Write the Pareto-front figure (see `front_figure`); returns [png] or [png, pdf]."""
    fig = front_figure(evaluated, front_pred, names, metric,
                       front_real=front_real, chosen=chosen, title=title)
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
    hi = max(1.0, float(C.max())) * 1.03
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
                    ax.scatter(C[m, i], C[m, j], label=label, zorder=3, **styles[r])
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
) -> Figure:
    """Grouped bars per task (in final_accuracy's order), plus their mean as a last group."""
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
        ax.set_xticks(x, groups, rotation=30 if len(groups) > 5 else 0,
                      ha="right" if len(groups) > 5 else "center", rotation_mode="anchor")
        ax.set_ylabel(metric)
        top = max(float(np.max(v)) for v in values)
        ax.set_ylim(0, 1.0 if 0 < top <= 1.0 else top * 1.08)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.grid(axis="x", visible=False)
        handles, labels = ax.get_legend_handles_labels()
        # Three long labels need about 6 inches side by side; stack them on narrow figures.
        _shared_legend(fig, handles, labels, ncols=n if fig_width >= 6.5 else 2)
    return fig


def plot_nested_summary(
    final_accuracy: Mapping[str, float],
    single_accuracy: Mapping[str, float],
    path: str | Path,
    *,
    reference: Mapping[str, float] | None = None,
    reference_label: str = "task arithmetic",
    metric: str = "accuracy",
    pdf: bool = False,
) -> list[Path]:
    """Write the per-task summary bar chart (see `nested_summary_figure`)."""
    fig = nested_summary_figure(final_accuracy, single_accuracy, reference=reference,
                                reference_label=reference_label, metric=metric)
    return _save(fig, path, pdf)
