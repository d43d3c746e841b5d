"""Small helpers shared by the test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import functools


class CountingEvaluate:
    """Stands in for MergeEngine.evaluate: counts calls; raises KeyboardInterrupt (a user's
    Ctrl-C) on the call after `stop_after`."""

    def __init__(self, original, stop_after: int | None = None):
        self.original, self.stop_after, self.calls = original, stop_after, 0

    def __call__(self, engine, *args, **kwargs):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.original(engine, *args, **kwargs)

    def __get__(self, engine, owner=None):  # bind like a method when set on the class
        return self if engine is None else functools.partial(self, engine)
