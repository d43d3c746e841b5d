"""The metrics a run can optimise, each with its surrogate link and its sense.

One table, so the surrogate (link), the Pareto search and the preference pick (sense) and
the CLI (choices) cannot disagree about what "accuracy" or "loss" means.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A per-task metric: its name in scaling_results.json, surrogate link and sense."""

    name: str
    link: str   # sigmoid keeps predictions in (0, 1); softplus keeps them positive
    sense: str  # "max" or "min"


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", link="sigmoid", sense="max"),
    "loss": Metric("loss", link="softplus", sense="min"),
}


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (ValueError for an unknown one; the CLI offers choices)."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; expected one of {sorted(METRICS)}") from None
