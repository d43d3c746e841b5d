"""The names the command line checks before torch is imported, so that a mistyped name is
refused in well under a second: the registered datasets (the merge methods' registry,
task_vectors.merge_methods, imports no torch).

The modules that implement them (``datasets.demo``, ``datasets.standard``)
import torch; tests/test_fast_errors.py keeps these lists equal to theirs.
"""
from __future__ import annotations

import difflib
from typing import Sequence

from map_common.errors import MAPError

STANDARD_DATASETS = ("SUN397", "Cars", "DTD", "SVHN", "EuroSAT", "GTSRB", "RESISC45", "MNIST")
DEMO_DATASETS = ("Letter", "Digit", "Shape", "Color", "Texture", "Position", "Arrow", "Symbol")


def with_val(bases: Sequence[str]) -> list[str]:
    """Every base name and its ``<name>Val`` variant, as the registry lists them."""
    names = sorted(bases)
    return names + [n + "Val" for n in names]


def dataset_names() -> list[str]:
    return with_val((*STANDARD_DATASETS, *DEMO_DATASETS))


def unknown_name(kind: str, name: str, known: Sequence[str], where: str = "", *,
                 list_all: bool = False) -> MAPError:
    """The one-line refusal of a name: what it was taken for, the closest known names
    (or all of them when none is close, or with ``list_all``)."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    every = f"known {kind}s: {', '.join(known)}"
    hint = (f"did you mean {' or '.join(close)}?" + (f" ({every})" if list_all else "")
            if close else every)
    return MAPError(f"unknown {kind} '{name}'{where}; {hint}")


def check_names(kind: str, names: Sequence[str], known: Sequence[str], where: str = "") -> None:
    for name in names:
        if name not in known:
            raise unknown_name(kind, name, known, where)
