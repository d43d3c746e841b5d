"""The merge methods, by name: ``METHODS[name]`` is the method's settings class.

Adding a data-free method: a module here with a frozen ``MergeMethod`` dataclass (its
settings made with ``setting``, its ``tau_transform``), and one line in the list below.
Methods that learn from data have ``kind = "learned"`` (see ``base``; ``adamerging``).
"""
from __future__ import annotations

from typing import Any, Mapping

from map_common.errors import MAPError
from task_vectors.merge_methods.adamerging import AdaMergingProfile
from task_vectors.merge_methods.base import LearnedMerge, MergeMethod, Registry, setting
from task_vectors.merge_methods.dare import DARE, DARETIES
from task_vectors.merge_methods.task_arithmetic import TaskArithmetic
from task_vectors.merge_methods.ties import TIES

METHODS = Registry([
    TaskArithmetic,
    TIES,
    DARE,
    DARETIES,
    AdaMergingProfile,
])

__all__ = ["METHODS", "MergeMethod", "LearnedMerge", "Registry", "setting", "TaskArithmetic",
           "TIES", "DARE", "DARETIES", "AdaMergingProfile", "get_method", "method_from_flags", "label_of"]


def get_method(name: str) -> type[MergeMethod]:
    try:
        return METHODS[name]
    except KeyError:
        raise MAPError(f"unknown merge method {name!r}; choose one of "
                       f"{', '.join(METHODS)}") from None


def method_from_flags(name: str, values: Mapping[str, Any]) -> MergeMethod:
    """The --merge-method object with its settings read from the parsed flags."""
    return get_method(name).from_flags(values)


def label_of(name: str) -> str:
    """The figure label of a method by name (the name itself for one no longer known)."""
    method = METHODS.get(name)
    return name if method is None else method.label
