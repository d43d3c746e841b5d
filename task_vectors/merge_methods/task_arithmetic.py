"""Task arithmetic (Ilharco et al. 2023): the task vectors as fine-tuned."""
from __future__ import annotations

from dataclasses import dataclass

from task_vectors.merge_methods.base import MergeMethod


@dataclass(frozen=True)
class TaskArithmetic(MergeMethod):
    name = "ta"
    label = "TA"
    help = "ta (as fine-tuned)"
