"""Shared style, saving and input checks of the figures (see the package docstring)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

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


class PlotInputError(ValueError):
    """Bad arrays or names handed to a plotting function: a caller's bug, not a user's input."""


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


PICK_PREDICTED = "chosen (preference), predicted"
PICK_REAL = "chosen (preference), real"


def draw_pick(ax, i: int, j: int, predicted: np.ndarray | None, real: np.ndarray | None,
              *, size: float = 150, zorder: float = 6, color: str = VERMILLION) -> None:
    """The preference pick in panel (i, j): a hollow star where the surrogates put it, a
    filled star where it was measured, joined by a dashed line (the prediction's error)."""
    points = [p for p in (predicted, real) if p is not None]
    if len(points) == 2:
        ax.plot([predicted[i], real[i]], [predicted[j], real[j]], "--", color=color,
                lw=0.9, zorder=zorder - 0.5)
    if predicted is not None:
        ax.scatter([predicted[i]], [predicted[j]], s=size, marker="*", facecolors="none",
                   edgecolors=color, linewidths=1.1, label=PICK_PREDICTED, zorder=zorder,
                   clip_on=False)  # a big marker at the data edge must stay whole
    if real is not None:
        ax.scatter([real[i]], [real[j]], s=size, marker="*", color=color,
                   edgecolors="black", linewidths=0.6, label=PICK_REAL, zorder=zorder + 0.1,
                   clip_on=False)
