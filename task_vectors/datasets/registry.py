"""Dataset registry shared by the demo tasks and the 8 standard datasets.

A name ending in ``Val`` is the validation variant of its base dataset, as in
task_vectors: its test split is 10% of the base train split (at most 5000 images,
seed 0) and its train split is the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol, Sequence

import torch
from torch.utils.data import Dataset, Subset

from task_vectors.datasets.demo import DEMO_DATASETS
from task_vectors.datasets.standard import STANDARD_DATASETS

Split = Literal["train", "test"]
VAL_FRACTION = 0.1
MAX_VAL_SAMPLES = 5000
VAL_SEED = 0


class TaskDataset(Protocol):
    """What every dataset module provides: class names, prompt templates, two splits.

    ``split(which)`` returns a torch Dataset whose items are (PIL image, int label).
    """

    classnames: list[str]
    templates: Sequence[Callable[[str], str]]

    def split(self, which: Split) -> Dataset: ...


Factory = Callable[[str], TaskDataset]
# The built-in datasets; the dataset modules define them and never import this module.
_REGISTRY: dict[str, Factory] = {**DEMO_DATASETS, **STANDARD_DATASETS}


def register(base_name: str, factory: Factory) -> None:
    """Register a dataset under its base name; ``<base_name>Val`` comes for free."""
    _REGISTRY[base_name] = factory


def dataset_names() -> list[str]:
    names = sorted(_REGISTRY)
    return names + [n + "Val" for n in names]


def base_name(name: str) -> str:
    return name[: -len("Val")] if name.endswith("Val") and name[: -3] in _REGISTRY else name


def check_dataset_name(name: str) -> None:
    if base_name(name) not in _REGISTRY:
        from task_vectors.names import unknown_name

        raise unknown_name("dataset", name, dataset_names(), list_all=True)


def train_val_indices(n_total: int) -> tuple[list[int], list[int]]:
    """The task_vectors split of a train set: (train indices, val indices)."""
    n_val = min(int(n_total * VAL_FRACTION), MAX_VAL_SAMPLES)
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(VAL_SEED)).tolist()
    return perm[: n_total - n_val], perm[n_total - n_val:]


@dataclass
class ValVariant:
    """``<Name>Val``: test = held-out 10% of the base train split, train = the rest;
    for a dataset that ships a val split (EuroSAT), test = that split, as in task_vectors."""

    base: TaskDataset
    _indices: tuple[list[int], list[int]] | None = field(default=None, repr=False)

    @property
    def classnames(self) -> list[str]:
        return self.base.classnames

    @property
    def templates(self) -> Sequence[Callable[[str], str]]:
        return self.base.templates

    def split(self, which: Split) -> Dataset:
        if "val" in getattr(self.base, "splits", ()):  # a dataset with its own val folder
            return self.base.split("val" if which == "test" else "train")
        full = self.base.split("train")
        if self._indices is None:
            self._indices = train_val_indices(len(full))
        train_idx, val_idx = self._indices
        return Subset(full, val_idx if which == "test" else train_idx)


def get_dataset(name: str, location: str) -> TaskDataset:
    """Look a dataset up by name (``MNIST``, ``MNISTVal``, ``LetterVal`` ...)."""
    check_dataset_name(name)
    base = base_name(name)
    dataset = _REGISTRY[base](location)
    return ValVariant(dataset) if name != base else dataset
