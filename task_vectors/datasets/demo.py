"""The demo tasks: scikit-learn's 8x8 digits, transformed into 8 tasks that conflict.

Data ships with scikit-learn, so nothing is downloaded. Each task is a dataset in the
same registry as the real ones (``DigitsVal`` is its validation variant). Images are
16x16 RGB PIL images, so the same open_clip preprocessing path runs as for real data.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


IMAGE_SIZE = 16
TEST_FRACTION = 0.2
SPLIT_SEED = 0
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _identity(x: np.ndarray) -> np.ndarray:
    return x


# name -> (image transform on an 8x8 array in [0, 16], label from digit, class names, template)
TASKS: dict[str, tuple[Callable, Callable[[int], int], list[str], str]] = {
    "Digits": (_identity, lambda d: d, DIGIT_NAMES, "a photo of the digit {}."),
    "Rotate": (np.rot90, lambda d: d, DIGIT_NAMES, "a rotated photo of the digit {}."),
    "Flip": (np.fliplr, lambda d: d, DIGIT_NAMES, "a mirrored photo of the digit {}."),
    "Invert": (lambda x: 16.0 - x, lambda d: d, DIGIT_NAMES, "an inverted photo of the digit {}."),
    "Transpose": (np.transpose, lambda d: d, DIGIT_NAMES, "a transposed photo of the digit {}."),
    "Parity": (_identity, lambda d: d % 2, ["even", "odd"], "a photo of an {} number."),
    "Ge5": (_identity, lambda d: int(d >= 5), ["small", "large"], "a photo of a {} number."),
    "Mod3": (_identity, lambda d: d % 3, ["zero", "one", "two"],
             "a photo of a number with remainder {} modulo three."),
}
DEMO_TASKS = list(TASKS)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target.astype(np.int64)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = int(round(len(labels) * TEST_FRACTION))
    return images, labels, {"test": perm[:n_test], "train": perm[n_test:]}


def to_pixels(image8: np.ndarray) -> np.ndarray:
    """An 8x8 array in [0, 16] as 16x16 uint8 grey levels (nearest upsampling)."""
    pixels = np.clip(np.asarray(image8) * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(pixels).repeat(IMAGE_SIZE // 8, 0).repeat(IMAGE_SIZE // 8, 1)


def to_pil(image8: np.ndarray) -> Image.Image:
    return Image.fromarray(to_pixels(image8), mode="L").convert("RGB")


class DigitsTaskSplit(Dataset):
    def __init__(self, task: str, which: str):
        transform, relabel, _, _ = TASKS[task]
        images, labels, splits = _digits()
        idx = splits[which]
        self.images = [np.asarray(transform(images[i])) for i in idx]
        self.labels = [relabel(int(labels[i])) for i in idx]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return to_pil(self.images[i]), self.labels[i]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as uint8 [N, 3, 16, 16] and labels, without PIL: what the model's
        preprocessing yields for these images at its native 16x16 size (checked by a test)."""
        pixels = torch.from_numpy(np.stack([to_pixels(x) for x in self.images]))
        return (pixels[:, None].expand(-1, 3, -1, -1).contiguous(),
                torch.tensor(self.labels, dtype=torch.int64))


@dataclass
class DemoTask:
    task: str

    @property
    def classnames(self) -> list[str]:
        return TASKS[self.task][2]

    @property
    def templates(self) -> list[Callable[[str], str]]:
        template = TASKS[self.task][3]
        return [template.format, lambda c: f"{c}."]

    def split(self, which: str) -> Dataset:
        return DigitsTaskSplit(self.task, which)


# base name -> factory(location); the registry collects these (this module imports no registry)
DEMO_DATASETS = {_task: (lambda location, _t=_task: DemoTask(_t)) for _task in TASKS}
