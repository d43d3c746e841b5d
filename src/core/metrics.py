"""The metrics a run can optimise, each with its surrogate link and its sense.

One table, so the surrogate (link), the Pareto search and the preference pick (sense) and
the CLI (choices) cannot disagree about what "accuracy" or "loss" means. Every evaluation
records all of them (one forward pass); "entropy" (the mean Shannon entropy, in nats, of a
task head's softmax over the task's evaluation images) reads no label, so a run that
optimises it chooses without labels.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A per-task metric: its name in scaling_results.json, surrogate link and sense."""

    name: str
    link: str   # sigmoid keeps predictions in (0, 1); softplus keeps them positive
    sense: str  # "max" or "min"
    labels: bool = True  # whether computing it reads the images' labels

    @property
    def axis_label(self) -> str:
        """The figures' axis text: the name, and which way is better for a minimised one."""
        return self.name if self.sense == "max" else f"{self.name} (lower is better)"


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", link="sigmoid", sense="max"),
    "loss": Metric("loss", link="softplus", sense="min"),
    "entropy": Metric("entropy", link="softplus", sense="min", labels=False),
}


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (ValueError for an unknown one; the CLI offers choices)."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; expected one of {sorted(METRICS)}") from None
