"""The modes: ``registry.MODES`` names each (its flags, settings, checks, what it supports
and its run); one module per mode's run, ``sweep.py`` for --sweep, ``common.py`` shared."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from src.run.mode_registry import MODES

if TYPE_CHECKING:
    from src.run.config import RunConfig


def run(config: "RunConfig") -> dict[str, Any]:
    """Run the mode ``config.method`` names (over every subset with --sweep)."""
    if config.sweep is not None:
        from src.modes import sweep

        return sweep.run(config)
    return MODES[config.method].run(config)
