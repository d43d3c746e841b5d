"""CLIP zero-shot prompt templates of the 8 standard datasets, as task_vectors uses them.

Each template is a ``str`` subclass that can be called with a class name, so it is a
callable ``str -> str`` (what heads.py expects) and still prints and pickles as text.
"""
from __future__ import annotations


class Template(str):
    """A prompt pattern with one ``{}`` for the class name."""

    def __call__(self, classname: str) -> str:
        return self.format(classname)


def _templates(*patterns: str) -> list[Template]:
    return [Template(p) for p in patterns]


CARS = _templates(
    "a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!",
    "a photo of my dirty {}.", "a photo of my clean {}.", "a photo of my new {}.",
    "a photo of my old {}.",
)
DTD = _templates(
    "a photo of a {} texture.", "a photo of a {} pattern.", "a photo of a {} thing.",
    "a photo of a {} object.", "a photo of the {} texture.", "a photo of the {} pattern.",
    "a photo of the {} thing.", "a photo of the {} object.",
)
EUROSAT = _templates(
    "a centered satellite photo of {}.", "a centered satellite photo of a {}.",
    "a centered satellite photo of the {}.",
)
GTSRB = _templates(
    'a zoomed in photo of a "{}" traffic sign.', 'a centered photo of a "{}" traffic sign.',
    'a close up photo of a "{}" traffic sign.',
)
MNIST = _templates('a photo of the number: "{}".')
# 18 templates: {satellite, aerial} x {imagery, photo, view} x {no article, a, the}.
RESISC45 = _templates(*[
    f"{source} {kind} of {article}{{}}."
    for article in ("", "a ", "the ")
    for kind, source in (("imagery", "satellite"), ("imagery", "aerial"),
                         ("photo", "satellite"), ("photo", "aerial"),
                         ("view", "satellite"), ("view", "aerial"))
])
SUN397 = _templates("a photo of a {}.", "a photo of the {}.")
SVHN = _templates('a photo of the number: "{}".')

TEMPLATES: dict[str, list[Template]] = {
    "Cars": CARS, "DTD": DTD, "EuroSAT": EUROSAT, "GTSRB": GTSRB, "MNIST": MNIST,
    "RESISC45": RESISC45, "SUN397": SUN397, "SVHN": SVHN,
}


def get_templates(dataset: str) -> list[Template]:
    """Templates of a standard dataset, ``<Name>Val`` sharing its base's."""
    base = dataset[:-3] if dataset.endswith("Val") and dataset[:-3] in TEMPLATES else dataset
    return TEMPLATES[base]
