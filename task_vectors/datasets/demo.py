"""The demo tasks: 8 procedural image tasks with their own label spaces and image statistics.

Every image is drawn from a seeded generator (glyphs in the DejaVu fonts matplotlib ships,
shapes, textures, dots, arrows, scikit-learn's handwritten digits), so nothing is
downloaded and any number of images is available. Image ``i`` of a split depends only on
(task, split, i), so a split can be read in any order or in part.

Each task is a dataset in the same registry as the real ones. Splits:

* ``<Task>`` train: ``N_TRAIN`` images; ``<Task>Val`` cuts it as task_vectors does
  (test = 10%, seed 0: ``N_TEST`` images, the evaluation set; train = the rest);
* ``<Task>`` test: ``N_TEST`` other images (another seed stream; for DigitVal other
  handwritten originals), disjoint from every Val image: the held-out set.
* ``pretrain`` (zoo only): images of every task at a chosen ``hardness`` with captions.

Images are IMAGE_SIZE x IMAGE_SIZE RGB PIL images, so the same open_clip preprocessing
runs as for real data.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from task_vectors.datasets.templates import Template

IMAGE_SIZE = 24
TASK_HARDNESS = 0.35
GENERATOR_VERSION = 4  # bump when any image generator changes: it is part of the zoo recipe
N_TRAIN = 12_000
N_TEST = 1_200  # = 10% of N_TRAIN: the Val evaluation set and the held-out set are equal
SPLIT_STREAMS = {"train": 0, "test": 1, "pretrain": 2}
DIGIT_TEST_FRACTION = 0.3

RGB = tuple[int, int, int]
# name -> ((image, label) sampler, class names, templates); filled below.
TASKS: dict[str, tuple[Callable, list[str], list[Template]]] = {}


# ------------------------------------------------------------------ drawing helpers
@cache
def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
         "DejaVuSansMono-Bold.ttf"]


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_dir() / name), size)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _contrasting(rng: np.random.Generator, other: np.ndarray, gap: float = 120.0) -> np.ndarray:
    for _ in range(20):
        c = _colour(rng)
        if np.abs(c - other).sum() >= gap:
            return c
    return 255.0 - other


def _background(rng: np.random.Generator, hard: float, base: np.ndarray | None = None
                ) -> np.ndarray:
    """[S, S, 3] float: a plain colour, a gradient, or blotches, plus noise ~ hard."""
    s = IMAGE_SIZE
    base = _colour(rng) if base is None else base
    kind = rng.integers(3) if hard > 0.3 else 0
    img = np.broadcast_to(base, (s, s, 3)).astype(np.float32).copy()
    if kind == 1:
        other = _colour(rng)
        t = np.linspace(0, 1, s, dtype=np.float32)
        ramp = t[:, None] if rng.random() < 0.5 else t[None, :]
        img += (ramp[..., None] * (other - base) * 0.5 * hard)
    elif kind == 2:
        blotch = rng.normal(0, 1, (4, 4, 3)).astype(np.float32)
        img += np.kron(blotch, np.ones((s // 4, s // 4, 1), np.float32)) * 30 * hard
    return img


def _finish(img: np.ndarray, rng: np.random.Generator, hard: float) -> np.ndarray:
    noise = rng.normal(0, 1, img.shape).astype(np.float32) * (4 + 16 * hard * rng.random())
    return np.clip(img + noise, 0, 255).round().astype(np.uint8)


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    a = mask[..., None]
    return img * (1 - a) + colour * a


def _mask_from(draw_fn: Callable[[ImageDraw.ImageDraw, int], None], angle: float = 0.0,
               scale: int = 3) -> np.ndarray:
    """[S, S] in [0, 1]: a shape drawn at ``scale`` x resolution, rotated, box-downsampled."""
    big = IMAGE_SIZE * scale
    canvas = Image.new("L", (big, big), 0)
    draw_fn(ImageDraw.Draw(canvas), big)
    if angle:
        canvas = canvas.rotate(angle, resample=Image.BILINEAR)
    return np.asarray(canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX),
                      dtype=np.float32) / 255.0


def _glyph_mask(rng: np.random.Generator, text: str, hard: float, *, fill: tuple = (0.55, 0.85),
                max_angle: float = 20.0, font: str | None = None) -> np.ndarray:
    scale = 3
    big = IMAGE_SIZE * scale
    size = int(big * rng.uniform(*fill))
    face = _font(font or FONTS[rng.integers(len(FONTS))], size)
    jitter = big * 0.15 * hard

    def draw(d: ImageDraw.ImageDraw, n: int) -> None:
        x = n / 2 + rng.uniform(-jitter, jitter)
        y = n / 2 + rng.uniform(-jitter, jitter)
        d.text((x, y), text, fill=255, font=face, anchor="mm")

    return _mask_from(draw, rng.uniform(-max_angle, max_angle) * hard, scale)


def _polygon(kind: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: float, offset: float = 0.0) -> list[tuple[float, float]]:
        return [(cx + radius * math.cos(turn + offset + 2 * math.pi * k / n),
                 cy + radius * math.sin(turn + offset + 2 * math.pi * k / n)) for k in range(n)]

    if kind == "triangle":
        return ring(3, r)
    if kind == "square":
        return ring(4, r, math.pi / 4)
    if kind == "diamond":
        pts = ring(4, r)
        return [(cx + (x - cx) * 0.6, y) for x, y in pts]
    if kind == "hexagon":
        return ring(6, r)
    if kind == "star":
        outer, inner = ring(5, r), ring(5, r * 0.42, math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == "cross":
        w = r * 0.35
        base = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r),
                (-w, w), (-r, w), (-r, -w), (-w, -w)]
        c, s = math.cos(turn), math.sin(turn)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in base]
    raise ValueError(kind)


# ------------------------------------------------------------------ the 8 tasks
LETTERS = [chr(ord("A") + k) for k in range(26)]


def letter(rng: np.random.Generator, hard: float, split: str) -> tuple[np.ndarray, int]:
    """A capital letter in a random DejaVu face, dark on a light background."""
    label = int(rng.integers(len(LETTERS)))
    paper = rng.uniform(170, 255, 3).astype(np.float32)
    ink = rng.uniform(0, 110, 3).astype(np.float32)
    mask = _glyph_mask(rng, LETTERS[label], hard)
    return _finish(_paint(_background(rng, hard * 0.5, paper), mask, ink), rng, hard), label


SYMBOLS = ["+", "=", "%", "$", "#", "&", "@", "?", "!", "*"]
SYMBOL_NAMES = ["plus sign", "equals sign", "percent sign", "dollar sign", "hash sign",
                "ampersand", "at sign", "question mark", "exclamation mark", "asterisk"]


def symbol(rng: np.random.Generator, hard: float, split: str) -> tuple[np.ndarray, int]:
    """A punctuation or currency symbol, light on a dark cluttered background."""
    label = int(rng.integers(len(SYMBOLS)))
    back = rng.uniform(0, 90, 3).astype(np.float32)
    img = _background(rng, hard, back)
    mask = _glyph_mask(rng, SYMBOLS[label], hard, fill=(0.6, 0.95), max_angle=30.0)
    return _finish(_paint(img, mask, rng.uniform(160, 255, 3)), rng, hard), label


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """scikit-learn's 8x8 handwritten digits, the originals cut into train / test pools."""
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))
    n_test = int(round(len(perm) * DIGIT_TEST_FRACTION))
    pools = {"test": perm[:n_test], "train": perm[n_test:], "pretrain": perm[n_test:]}
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64), pools


def digit(rng: np.random.Generator, hard: float, split: str) -> tuple[np.ndarray, int]:
    """A handwritten digit (scikit-learn's), enlarged, placed and tinted at random."""
    images, labels, pools = _digits()
    k = pools[split][rng.integers(len(pools[split]))]
    side = int(round(IMAGE_SIZE * rng.uniform(1.0 - 0.35 * hard, 1.0)))
    small = Image.fromarray((images[k] * 255).astype(np.uint8)).resize((side, side),
                                                                      Image.BILINEAR)
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    x, y = rng.integers(0, IMAGE_SIZE - side + 1, 2)
    mask[y:y + side, x:x + side] = np.asarray(small, np.float32) / 255.0
    back = rng.uniform(0, 60, 3).astype(np.float32)
    ink = rng.uniform(150, 255, 3).astype(np.float32)
    return _finish(_paint(_background(rng, hard * 0.5, back), mask, ink), rng, hard), \
        int(labels[k])


SHAPES = ["circle", "square", "triangle", "star", "cross", "ring"]


def shape(rng: np.random.Generator, hard: float, split: str) -> tuple[np.ndarray, int]:
    """A filled shape of random colour, size, place and turn on a plain background."""
    label = int(rng.integers(len(SHAPES)))
    kind = SHAPES[label]
    r_frac = rng.uniform(0.42 - 0.2 * hard, 0.46)
    turn = rng.uniform(-1, 1) * math.pi / 2 * hard
    off = rng.uniform(-0.12, 0.12, 2) * hard

    def draw(d: ImageDraw.ImageDraw, n: int) -> None:
        r = r_frac * n
        cx, cy = n / 2 + off[0] * n, n / 2 + off[1] * n
        if kind in ("circle", "ring"):
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            if kind == "ring":
                q = r * 0.55
                d.ellipse([cx - q, cy - q, cx + q, cy + q], fill=0)
        else:
            d.polygon(_polygon(kind, cx, cy, r, turn), fill=255)

    back = _colour(rng)
    img = _background(rng, hard, back)
    return _finish(_paint(img, _mask_from(draw), _contrasting(rng, back)), rng, hard), label


COLOURS = {"red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 225, 40),
           "green": (40, 170, 50), "cyan": (40, 210, 220), "blue": (30, 60, 220),
           "purple": (130, 40, 180), "pink": (250, 140, 200), "white": (245, 245, 245),
           "black": (15, 15, 15)}
COLOUR_NAMES = list(COLOURS)


def colour(rng: np.random.Generator, hard: float, split: str) -> tuple[np.ndarray, int]:
    """A blob of one named colour (hue jittered) on a grey, textured background."""
    label = int(rng.integers(len(COLOUR_NAMES)))
    tint = np.array(COLOURS[COLOUR_NAMES[label]], np.float32) + rng.normal(0, 18 * hard, 3)
    rx, ry = rng.uniform(0.22, 0.4, 2)
    off = rng.uniform(-0.12, 0.12, 2) * hard

    def draw(d: ImageDraw.ImageDraw, n: int) -> None:
        cx, cy = n / 2 + off[0] * n, n / 2 + off[1] * n
        d.ellipse([cx - rx * n, cy - ry * n, cx + rx * n, cy + ry * n], fill=255)

    back = np.full(3, rng.uniform(70, 190), np.float32)
    img = _background(rng, hard, back)
    return _finish(_paint(img, _mask_from(draw, rng.uniform(0, 180)), tint), rng, hard), label


TEXTURES = ["horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard",
            "polka dots", "speckles"]


def texture(rng: np.random.Generator, hard: float, split: str) -> tuple[np.ndarray, int]:
    """A full-frame pattern in two random colours, with random period and phase."""
    label = int(rng.integers(len(TEXTURES)))
    s = IMAGE_SIZE
    period = rng.uniform(5.0, 9.0)
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) + rng.uniform(0, period, 2)[:, None, None]
    def wave(v):
        return np.mod(v, period) < period / 2

    kind = TEXTURES[label]
    if kind == "horizontal stripes":
        m = wave(y)
    elif kind == "vertical stripes":
        m = wave(x)
    elif kind == "diagonal stripes":
        m = wave(x + y if rng.random() < 0.5 else x - y)
    elif kind == "checkerboard":
        m = wave(x) ^ wave(y)
    elif kind == "polka dots":
        m = (np.mod(x, period) - period / 2) ** 2 + (np.mod(y, period) - period / 2) ** 2 \
            < (period * 0.3) ** 2
    else:
        m = rng.random((s, s)) < 0.3
    a = _colour(rng)
    b = _contrasting(rng, a, 90.0)
    img = _paint(np.broadcast_to(a, (s, s, 3)).astype(np.float32), m.astype(np.float32), b)
    return _finish(img, rng, hard), label


POSITION_NAMES = ["top left", "top right", "bottom left", "bottom right", "center"]
_CELLS = [(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73), (0.5, 0.5)]


def position(rng: np.random.Generator, hard: float, split: str) -> tuple[np.ndarray, int]:
    """A small disc or square in one of five places, on a blotchy background."""
    label = int(rng.integers(len(POSITION_NAMES)))
    cx, cy = np.array(_CELLS[label]) + rng.uniform(-0.1, 0.1, 2) * hard
    r = rng.uniform(0.1, 0.16)
    square = rng.random() < 0.5

    def draw(d: ImageDraw.ImageDraw, n: int) -> None:
        box = [(cx - r) * n, (cy - r) * n, (cx + r) * n, (cy + r) * n]
        (d.rectangle if square else d.ellipse)(box, fill=255)

    back = _colour(rng)
    img = _background(rng, hard, back)
    return _finish(_paint(img, _mask_from(draw), _contrasting(rng, back, 200.0)), rng, hard), label


ARROW_NAMES = ["right", "upper right", "up", "upper left", "left", "lower left", "down",
               "lower right"]


def arrow(rng: np.random.Generator, hard: float, split: str) -> tuple[np.ndarray, int]:
    """An arrow pointing one of 8 ways, random colour, length and place."""
    label = int(rng.integers(len(ARROW_NAMES)))
    angle = label * 45.0 + rng.uniform(-10, 10) * hard
    length = rng.uniform(0.55, 0.8)
    off = rng.uniform(-0.1, 0.1, 2) * hard

    def draw(d: ImageDraw.ImageDraw, n: int) -> None:
        cx, cy, h = n / 2 + off[0] * n, n / 2 + off[1] * n, length * n / 2
        w = n * 0.07
        pts = [(-h, -w), (h * 0.25, -w), (h * 0.25, -w * 2.6), (h, 0), (h * 0.25, w * 2.6),
               (h * 0.25, w), (-h, w)]
        d.polygon([(cx + x, cy + y) for x, y in pts], fill=255)

    back = _colour(rng)
    img = _background(rng, hard, back)
    return _finish(_paint(img, _mask_from(draw, angle), _contrasting(rng, back)), rng, hard), label


def _t(*patterns: str) -> list[Template]:
    return [Template(p) for p in patterns]


TASKS.update({
    "Letter": (letter, LETTERS, _t("a photo of the letter {}.", "the capital letter {}.")),
    "Digit": (digit, DIGIT_NAMES, _t("a photo of the handwritten digit {}.",
                                     "a handwritten {}.")),
    "Shape": (shape, SHAPES, _t("a photo of a {} shape.", "a drawing of a {}.")),
    "Color": (colour, COLOUR_NAMES, _t("a photo of a {} blob.", "something coloured {}.")),
    "Texture": (texture, TEXTURES, _t("a photo of a {} texture.", "a {} pattern.")),
    "Position": (position, POSITION_NAMES, _t("a photo of a spot in the {}.",
                                              "something at the {}.")),
    "Arrow": (arrow, ARROW_NAMES, _t("an arrow pointing {}.", "a photo of an arrow to the {}.")),
    "Symbol": (symbol, SYMBOL_NAMES, _t("a photo of a {}.", "the symbol {}.")),
})
DEMO_TASKS = list(TASKS)


# ------------------------------------------------------------------ datasets
def render(task: str, split: str, index: int, hard: float | None = None
           ) -> tuple[np.ndarray, int]:
    """Image ``index`` of a split: [S, S, 3] uint8 and its label; a pure function of its
    arguments (its own seed stream per task, split and index). ``hard`` (default: the
    tasks' TASK_HARDNESS) scales the nuisances: turn, offset, clutter, noise."""
    hard = TASK_HARDNESS if hard is None else hard
    rng = np.random.default_rng([DEMO_TASKS.index(task), SPLIT_STREAMS[split], index])
    return TASKS[task][0](rng, hard, split)


class DemoSplit(Dataset):
    """A split of a demo task: (PIL image, label) items, rendered on first use."""

    def __init__(self, task: str, which: str, size: int):
        self.task, self.which, self.size = task, which, size

    def __len__(self) -> int:
        return self.size

    def item(self, i: int) -> tuple[np.ndarray, int]:
        if not 0 <= i < self.size:
            raise IndexError(i)
        return render(self.task, self.which, i)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        pixels, label = self.item(i)
        return Image.fromarray(pixels, mode="RGB"), label

    def tensors(self, indices=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``indices`` (default all) as uint8 [N, 3, S, S] and labels, without PIL:
        what the model's preprocessing yields at its native size (checked by a test)."""
        items = [self.item(int(i)) for i in (range(self.size) if indices is None else indices)]
        pixels = torch.from_numpy(np.stack([p for p, _ in items])).permute(0, 3, 1, 2)
        return pixels.contiguous(), torch.tensor([y for _, y in items], dtype=torch.int64)


@dataclass
class DemoTask:
    task: str

    @property
    def classnames(self) -> list[str]:
        return TASKS[self.task][1]

    @property
    def templates(self) -> list[Template]:
        return TASKS[self.task][2]

    def split(self, which: str) -> Dataset:
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {which!r}")
        return DemoSplit(self.task, which, N_TRAIN if which == "train" else N_TEST)


# base name -> factory(location); the registry collects these (this module imports no registry)
DEMO_DATASETS = {_task: (lambda location, _t=_task: DemoTask(_t)) for _task in TASKS}
