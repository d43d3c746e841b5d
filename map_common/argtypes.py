"""argparse value types shared by the command line and the flags modes and merge methods
add themselves: a bad value is refused in one line naming the range."""
from __future__ import annotations

import argparse
import math
from typing import Callable

# Budgets beyond this could not finish: each point is a full evaluation of a merged model
# (seconds for a ViT-B-32 on four validation sets: 10,000 points is already days).
MAX_POINTS = 10_000


def int_in(low: int, high: int | None = None, why: str = "") -> Callable[[str], int]:
    """argparse type: an integer in [low, high]; the message says the range (and why)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < low:
            wanted = {0: "0 or more", 1: "a positive integer"}.get(low, f"at least {low}")
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is more than {high:,}, the largest "
                                             f"sensible value{why}")
        return value
    parse.__name__ = f"int_in[{low},{high}]"
    return parse


def float_in(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in a range (open or closed at each end)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low or (low_open and value == low) or value > high or \
                (high_open and value == high):
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            raise argparse.ArgumentTypeError(f"must be in {left}{low:g}, {high:g}{right}, "
                                             f"got {value:g}")
        return value
    parse.__name__ = "float_in"
    return parse


positive_int = int_in(1)
nonnegative_int = int_in(0)
point_count = int_in(1, MAX_POINTS, ": every point is a full evaluation of a merged model")
