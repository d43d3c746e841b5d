"""Choices the parser offers without importing pymoo (seconds on a busy machine), so a
mistake on the command line is refused at once; the modules that implement them import
these names."""
from __future__ import annotations

PICKS = ("tchebycheff", "weighted-sum")  # src.core.pareto.pick_by_preference
PICK_FROM = ("front", "evaluated")  # src.core.front.PICK_FROM
PICK_FLOORS = ("pretrained", "task-arithmetic")  # src.core.front.PICK_FLOORS
NESTED_CONTEXTS = ("none", "task-arithmetic")  # src.core.nested.CONTEXTS
REFINE_ACQUISITIONS = ("spread", "ehvi", "parego")  # src.core.acquisition.REFINE_ACQUISITIONS


def tchebycheff_pick(pick_floor: str) -> str:
    """--pick when not given, whatever the --pick-floor: every mode's default (nested's from
    4 tasks is args.default_nested_pick)."""
    return "tchebycheff"
