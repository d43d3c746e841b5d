"""Small helpers shared by the test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import functools
from pathlib import Path


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


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains ``text`` (to find and clean up the
    Ray processes a test started)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids
