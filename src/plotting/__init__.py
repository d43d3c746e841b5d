"""Publication figures: Pareto fronts, surrogate fits, adaptive-sampling rounds, merge trees,
and fronts compared with the grid and the baselines.

Every figure comes in two layers: a `*_figure(...)` builder returning a matplotlib
`Figure` (for tests and for users who want to restyle it) and a `plot_*(..., path)` that
builds, writes `path` as a 300-dpi PNG (plus a PDF beside it when pdf=True) and returns
the written paths. Figures are made with `matplotlib.figure.Figure` directly, never
pyplot, so no GUI backend or global figure registry is involved (headless, SLURM, threads)
and a figure is freed as soon as it goes out of scope.
"""
from src.plotting.comparison import comparison_figure, plot_comparison
from src.plotting.fronts import (front_figure, plot_front, plot_surrogate_fit,
                                 plot_true_vs_predicted, surrogate_fit_figure,
                                 true_vs_predicted_figure)
from src.plotting.many_tasks import (parallel_front_figure, plot_many_task_front,
                                     scatter_matrix_figure)
from src.plotting.rounds import (bayesian_rounds_figure, merge_tree_figure, merge_tree_layout,
                                 nested_summary_figure, plot_bayesian_rounds, plot_merge_tree,
                                 plot_nested_summary)
from src.plotting.style import DPI, PlotInputError

__all__ = ["comparison_figure", "plot_comparison", "front_figure", "plot_front",
           "plot_surrogate_fit", "plot_true_vs_predicted", "surrogate_fit_figure",
           "true_vs_predicted_figure", "bayesian_rounds_figure", "merge_tree_figure",
           "merge_tree_layout", "nested_summary_figure", "plot_bayesian_rounds",
           "plot_merge_tree", "plot_nested_summary", "parallel_front_figure",
           "plot_many_task_front", "scatter_matrix_figure", "DPI", "PlotInputError"]
