"""The entropy curve of an AdaMerging run: the objective it minimised, step by step."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from src.plotting.style import PlotInputError, _matrix, _names, _new_figure, _save, _style


def _running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at every step (fewer at the start)."""
    c = np.cumsum(np.insert(y, 0, 0.0, axis=0), axis=0)
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)[:, None]


def entropy_curve_figure(curve: np.ndarray, tasks: Sequence[str], *, title: str | None = None,
                         window: int | None = None) -> Figure:
    """Entropy (nats) of each task's batch per step, and their mean (the objective).

    Each step sees a new batch, so the raw values are noisy: the lines are running means
    over ``window`` steps (default: a twentieth of the run), the raw mean faint beneath."""
    y = _matrix(curve, "curve")
    tasks = _names(tasks, y.shape[1], "tasks")
    window = window or max(1, len(y) // 20)
    if window < 1:
        raise PlotInputError(f"window must be positive, got {window}")
    steps = np.arange(1, len(y) + 1)
    smooth = _running_mean(y, window)
    mean_raw = y.mean(axis=1)
    # tab10 without its grey (the raw mean is drawn in grey)
    palette = [colormaps["tab10"](i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]
    if len(tasks) > len(palette):
        palette = [colormaps["tab20"](i % 20) for i in range(len(tasks))]
    with _style():
        fig, (ax,) = _new_figure(1, 1, (5.2, 3.2))
        for k, t in enumerate(tasks):
            ax.plot(steps, smooth[:, k], color=palette[k], lw=0.9, alpha=0.85, label=t)
        ax.plot(steps, mean_raw, color="black", lw=0.6, alpha=0.25)
        ax.plot(steps, smooth.mean(axis=1), color="black", lw=2.0,
                label="mean over tasks (objective)")
        ax.set_xlabel("step" + (f" (lines: running mean of {window} steps)" if window > 1
                                else ""))
        ax.set_ylabel("entropy of the softmax (nats)")
        ax.set_xlim(1, max(2, len(y)))
        ax.set_ylim(bottom=0)
        if title:
            ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def plot_entropy_curve(curve: np.ndarray, tasks: Sequence[str], path: str | Path, *,
                       title: str | None = None, window: int | None = None,
                       pdf: bool = False) -> list[Path]:
    """Write the entropy curve (see ``entropy_curve_figure``)."""
    return _save(entropy_curve_figure(curve, tasks, title=title, window=window), path, pdf)
