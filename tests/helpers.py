"""Small helpers shared by the test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

# --max-eval-samples for demo runs whose checks need no precise accuracy (files, flags,
# resume, plumbing, values against an engine built with the same cap): the zoo's sets hold
# 1,200 images and a run's time grows with them (decoding and every forward pass).
FEW_IMAGES = 200


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


def kill_processes_mentioning(text: str) -> None:
    """SIGKILL what processes_mentioning(text) finds: only what the test started."""
    for pid in processes_mentioning(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_for_exit(pids: list[int], hang_limit: float = 300.0) -> list[int]:
    """Wait for each process to exit, on the exit itself (a pidfd becomes readable when
    its process ends), not on a fixed delay; ``hang_limit`` only keeps a process that never
    ends from blocking the suite. Returns the pids still running after it."""
    import select
    import time

    end = time.monotonic() + hang_limit
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already gone
        try:
            if not select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive
