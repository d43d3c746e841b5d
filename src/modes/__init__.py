"""One module per mode; each takes a RunConfig and returns the run's summary."""
from __future__ import annotations

from typing import Any, Callable

from src.config import RunConfig


def run(config: RunConfig) -> dict[str, Any]:
    """Run the mode ``config.method`` names (over every subset with --sweep)."""
    from src.modes import bayesian_mode, grid_mode, map_mode, nested_mode

    if config.sweep is not None:
        from src.modes import sweep

        return sweep.run(config)

    if config.method == "adamerging":
        from src.modes import adamerging_mode

        return adamerging_mode.run(config)

    modes: dict[str, Callable[[RunConfig], dict[str, Any]]] = {
        "map": map_mode.run, "bayesian": bayesian_mode.run, "nested": nested_mode.run,
        "grid": grid_mode.run}
    return modes[config.method](config)
