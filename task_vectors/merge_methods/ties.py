"""TIES (Yadav et al. 2023) on the task-vector matrix: trim, elect signs, keep one row per
task (see task_vectors.merging)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from task_vectors.merge_methods.base import MergeMethod, TauTransform, setting


@dataclass(frozen=True)
class TIES(MergeMethod):
    name = "ties"
    label = "TIES"
    help = ("ties (trimmed to the top --ties-density magnitudes per task, entries against "
            "the elected sign zeroed)")
    density: float = setting(0.2, flag="--ties-density", low=0.0, high=1.0, low_open=True,
                             help="TIES: fraction of each task vector's largest magnitudes "
                                  "kept (Yadav et al. 2023: 0.2).")

    def __post_init__(self) -> None:
        from task_vectors import merging

        merging._check_density(self.density)

    def tau_transform(self) -> TauTransform:
        from task_vectors import merging

        return partial(merging.ties_vectors, density=float(self.density))
