"""DARE (Yu et al. 2024) and DARE-TIES on the task-vector matrix (see task_vectors.merging)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from task_vectors.merge_methods.base import MergeMethod, TauTransform, setting

DROP_RATE = dict(flag="--dare-drop-rate", low=0.0, high=1.0, high_open=True,
                 help="DARE: probability of dropping each task-vector entry (Yu et al. 2024: "
                      "0.9).")
# The DARE mask's seed is the run's --seed (recorded as merge_seed, as before).
SEED = dict(flag="--seed", record="merge_seed", help="Seed of every random step.")


@dataclass(frozen=True)
class DARE(MergeMethod):
    name = "dare"
    label = "DARE"
    help = ("dare (entries dropped with probability --dare-drop-rate, survivors rescaled by "
            "1/(1-p), a mask fixed by --seed)")
    drop_rate: float = setting(0.9, **DROP_RATE)
    seed: int = setting(0, **SEED)

    def __post_init__(self) -> None:
        from task_vectors import merging

        merging._check_drop_rate(self.drop_rate)
        merging._check_seed(self.seed)

    def tau_transform(self) -> TauTransform:
        from task_vectors import merging

        return partial(merging.dare_vectors, drop_rate=float(self.drop_rate),
                       seed=int(self.seed))


@dataclass(frozen=True)
class DARETIES(DARE):
    name = "dare-ties"
    label = "DARE-TIES"
    help = "dare-ties (DARE then TIES sign election)"

    def tau_transform(self) -> TauTransform:
        from task_vectors import merging

        # The common DARE-TIES: the random drop replaces TIES's magnitude trim.
        return partial(merging.dare_ties_vectors, drop_rate=float(self.drop_rate),
                       density=None, seed=int(self.seed))
