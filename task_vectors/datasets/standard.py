"""The 8 standard datasets of task_vectors, read from that project's on-disk layouts.

Layouts under ``--data-location`` (as task_vectors' ``src/datasets/*.py`` read them):

- MNIST     ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (torchvision's files)
- SVHN      ``svhn/{train,test}_32x32.mat`` (the official .mat files)
- EuroSAT   ``EuroSAT_splits/{train,val,test}/<ClassFolder>/*`` (test = ``test``)
- SUN397    ``sun397/{train,val}/<x_class_name>/*`` (test = ``val``)
- DTD       ``dtd/{train,val}/<class>/*`` (test = ``val``), or torchvision's
            ``dtd/dtd/{images,labels}`` with partition 1
- RESISC45  ``resisc45/NWPU-RESISC45/<class>/*`` + ``resisc45/resisc45-{train,test}.txt``
- GTSRB     ``gtsrb/GTSRB/Training/<000NN>/*.ppm`` (train) and
            ``gtsrb/GTSRB/Final_Test/Images/*.ppm`` + ``gtsrb/GT-final_test.csv`` (test)
- Cars      ``stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/,
            cars_test_annos_withlabels.mat, cars_test/}``, or
            ``stanford_cars_folder_based/{train,test}/<class>/*``

Nothing is downloaded. Constructing a dataset only checks that its folder exists; files
are listed in ``split()`` and images decoded in ``__getitem__``. Items are (RGB PIL image,
int label); class names and templates are task_vectors'.

Why one file of ~440 lines: eight small readers (30-60 lines each) that share the folder and
.mat helpers at the top; one module per dataset would spread those helpers over nine files.
"""
from __future__ import annotations

import os
import re
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from map_common.errors import MAPError
from task_vectors.datasets import templates as tpl

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")

RESISC45_CLASSES = [
    "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge",
    "chaparral", "church", "circular_farmland", "cloud", "commercial_area",
    "dense_residential", "desert", "forest", "freeway", "golf_course", "ground_track_field",
    "harbor", "industrial_area", "intersection", "island", "lake", "meadow",
    "medium_residential", "mobile_home_park", "mountain", "overpass", "palace", "parking_lot",
    "railway", "railway_station", "rectangular_farmland", "river", "roundabout", "runway",
    "sea_ice", "ship", "snowberg", "sparse_residential", "stadium", "storage_tank",
    "tennis_court", "terrace", "thermal_power_station", "wetland",
]

# From CLIP's prompts (openai/CLIP data/prompts.md), as task_vectors uses them.
GTSRB_CLASSNAMES = [
    "red and white circle 20 kph speed limit", "red and white circle 30 kph speed limit",
    "red and white circle 50 kph speed limit", "red and white circle 60 kph speed limit",
    "red and white circle 70 kph speed limit", "red and white circle 80 kph speed limit",
    "end / de-restriction of 80 kph speed limit", "red and white circle 100 kph speed limit",
    "red and white circle 120 kph speed limit",
    "red and white circle red car and black car no passing",
    "red and white circle red truck and black car no passing",
    "red and white triangle road intersection warning",
    "white and yellow diamond priority road",
    "red and white upside down triangle yield right-of-way", "stop",
    "empty red and white circle", "red and white circle no truck entry",
    "red circle with white horizonal stripe no entry",
    "red and white triangle with exclamation mark warning",
    "red and white triangle with black left curve approaching warning",
    "red and white triangle with black right curve approaching warning",
    "red and white triangle with black double curve approaching warning",
    "red and white triangle rough / bumpy road warning",
    "red and white triangle car skidding / slipping warning",
    "red and white triangle with merging / narrow lanes warning",
    "red and white triangle with person digging / construction / road work warning",
    "red and white triangle with traffic light approaching warning",
    "red and white triangle with person walking warning",
    "red and white triangle with child and person walking warning",
    "red and white triangle with bicyle warning",
    "red and white triangle with snowflake / ice warning",
    "red and white triangle with deer warning",
    "white circle with gray strike bar no speed limit",
    "blue circle with white right turn arrow mandatory",
    "blue circle with white left turn arrow mandatory",
    "blue circle with white forward arrow mandatory",
    "blue circle with white forward or right turn arrow mandatory",
    "blue circle with white forward or left turn arrow mandatory",
    "blue circle with white keep right arrow mandatory",
    "blue circle with white keep left arrow mandatory",
    "blue circle with white arrows indicating a traffic circle",
    "white circle with gray strike bar indicating no passing for cars has ended",
    "white circle with gray strike bar indicating no passing for trucks has ended",
]

# EuroSAT folder names, prettified, -> the OpenAI CLIP class names task_vectors uses.
EUROSAT_OPENAI_NAMES = {
    "annual crop": "annual crop land",
    "forest": "forest",
    "herbaceous vegetation": "brushland or shrubland",
    "highway": "highway or road",
    "industrial area": "industrial buildings or commercial buildings",
    "pasture": "pasture land",
    "permanent crop": "permanent crop land",
    "residential area": "residential buildings or homes or apartments",
    "river": "river",
    "sea lake": "lake or sea",
}
DIGITS = [str(d) for d in range(10)]


# ---------------------------------------------------------------------------- helpers

def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _require(path: str, dataset: str, layout: str) -> str:
    if not os.path.exists(path):
        raise MAPError(f"{dataset}: {path} not found; expected the task_vectors layout "
                       f"{layout} under --data-location (nothing is downloaded)")
    return path


def _check_split(which: str, dataset: str, splits: Sequence[str] = SPLITS) -> None:
    if which not in splits:
        raise MAPError(f"{dataset}: unknown split '{which}'; expected one of {', '.join(splits)}")


def _class_folders(folder: str, dataset: str) -> list[str]:
    _require(folder, dataset, "<split>/<class>/<image>")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not classes:
        raise MAPError(f"{dataset}: no class folders in {folder}")
    return classes


def _images_in(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS))


class ImageFiles(Dataset):
    """(path, label) pairs; the image is decoded when an item is read."""

    def __init__(self, samples: Sequence[tuple[str, int]]):
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        path, label = self.samples[i]
        with Image.open(path) as image:
            return image.convert("RGB"), int(label)  # a decoded copy; the file is closed


class Wrapped(Dataset):
    """A torchvision dataset's items as (RGB image, int label), optionally relabelled."""

    def __init__(self, data: Dataset, relabel: Sequence[int] | None = None):
        self.data, self.relabel = data, relabel

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        image, label = self.data[i]
        label = int(label)
        return _to_rgb(image), self.relabel[label] if self.relabel is not None else label


class ImageArray(Dataset):
    """Images held as a uint8 array [N, H, W(, C)] (SVHN)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return _to_rgb(Image.fromarray(self.images[i])), int(self.labels[i])


def folder_samples(folder: str, classes: Sequence[str], dataset: str,
                   keep: Callable[[str], bool] | None = None) -> list[tuple[str, int]]:
    """Images of ``folder/<class>/*`` labelled by the position of <class> in ``classes``."""
    _require(folder, dataset, "<split>/<class>/<image>")
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for name in sorted(e.name for e in os.scandir(folder) if e.is_dir()):
        if name not in index:
            raise MAPError(f"{dataset}: class folder {os.path.join(folder, name)} is not one "
                           f"of the {len(classes)} classes of the train split")
        samples += [(p, index[name]) for p in _images_in(os.path.join(folder, name))
                    if keep is None or keep(os.path.basename(p))]
    if not samples:
        raise MAPError(f"{dataset}: no images found under {folder}")
    return samples


class StandardDataset:
    """Common part: a root folder checked at construction, splits built once on demand."""

    name: str = ""
    layout: str = ""
    templates: Sequence[Callable[[str], str]] = ()
    splits: tuple[str, ...] = SPLITS

    def __init__(self, location: str, root: str):
        self.location = os.path.expanduser(location)
        self.root = _require(os.path.join(self.location, root), self.name, self.layout)
        self._splits: dict[str, Dataset] = {}

    @property
    def classnames(self) -> list[str]:
        raise NotImplementedError

    def split(self, which: str) -> Dataset:
        _check_split(which, self.name, self.splits)
        if which not in self._splits:
            self._splits[which] = self._build(which)
        return self._splits[which]

    def _build(self, which: str) -> Dataset:
        raise NotImplementedError


def _torchvision(dataset: str, factory: Callable[[], Any]) -> Any:
    try:
        return factory()
    except (RuntimeError, FileNotFoundError, ValueError, KeyError) as exc:
        raise MAPError(f"{dataset}: cannot read the data: {exc}") from None


# ---------------------------------------------------------------------------- datasets

class MNIST(StandardDataset):
    name, templates = "MNIST", tpl.MNIST
    layout = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"
    classnames = DIGITS

    def __init__(self, location: str):
        super().__init__(location, os.path.join("MNIST", "raw"))

    def _build(self, which: str) -> Dataset:
        from torchvision.datasets import MNIST as TorchvisionMNIST

        prefix = "train" if which == "train" else "t10k"
        for kind in ("images-idx3", "labels-idx1"):
            _require(os.path.join(self.root, f"{prefix}-{kind}-ubyte"), self.name, self.layout)
        return Wrapped(_torchvision(self.name, lambda: TorchvisionMNIST(
            self.location, train=which == "train", download=False)))


class SVHN(StandardDataset):
    name, templates = "SVHN", tpl.SVHN
    layout = "svhn/{train,test}_32x32.mat"
    classnames = DIGITS

    def __init__(self, location: str):
        super().__init__(location, "svhn")

    def _build(self, which: str) -> Dataset:
        # Read the .mat directly: torchvision's SVHN insists on the official md5.
        from scipy.io import loadmat

        path = _require(os.path.join(self.root, f"{which}_32x32.mat"), self.name, self.layout)
        mat = loadmat(path)
        images = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)))
        labels = mat["y"].astype(np.int64).reshape(-1)
        labels[labels == 10] = 0  # the files label the digit 0 as 10
        return ImageArray(images, labels)


def _eurosat_classname(folder: str) -> str:
    words = " ".join(w.lower() for w in re.findall(r"[A-Z](?:[a-z]+|[A-Z]*(?=[A-Z]|$))", folder))
    pretty = words + " area" if words.endswith("al") else words
    if pretty not in EUROSAT_OPENAI_NAMES:
        raise MAPError(f"EuroSAT: unknown class folder '{folder}'; expected the 10 EuroSAT "
                       "classes (AnnualCrop, Forest, ..., SeaLake)")
    return EUROSAT_OPENAI_NAMES[pretty]


class FolderDataset(StandardDataset):
    """Image folders per split, classes from the train split's folder names."""

    split_folders = {"train": "train", "test": "val"}

    def _folder(self, which: str) -> str:
        return os.path.join(self.root, self.split_folders[which])

    @cached_property
    def class_folders(self) -> list[str]:
        return _class_folders(self._folder("train"), self.name)

    @property
    def classnames(self) -> list[str]:
        return [self.pretty(c) for c in self.class_folders]

    def pretty(self, folder: str) -> str:
        return folder.replace("_", " ")

    def _build(self, which: str) -> Dataset:
        return ImageFiles(folder_samples(self._folder(which), self.class_folders, self.name))


class EuroSAT(FolderDataset):
    name, templates = "EuroSAT", tpl.EUROSAT
    layout = "EuroSAT_splits/{train,val,test}/<ClassFolder>/<image>"
    # task_vectors' EuroSATVal tests on the 'val' folder; split("val") gives it.
    split_folders = {"train": "train", "test": "test", "val": "val"}
    splits = ("train", "test", "val")

    def __init__(self, location: str):
        super().__init__(location, "EuroSAT_splits")

    def pretty(self, folder: str) -> str:
        return _eurosat_classname(folder)


class SUN397(FolderDataset):
    name, templates = "SUN397", tpl.SUN397
    layout = "sun397/{train,val}/<x_class_name>/<image>"

    def __init__(self, location: str):
        super().__init__(location, "sun397")

    def pretty(self, folder: str) -> str:
        return folder[2:].replace("_", " ")  # 'b_bakery_shop' -> 'bakery shop'


class DTD(FolderDataset):
    name, templates = "DTD", tpl.DTD
    layout = "dtd/{train,val}/<class>/<image> (or torchvision's dtd/dtd/{images,labels})"

    def __init__(self, location: str):
        super().__init__(location, "dtd")
        # task_vectors falls back to torchvision's DTD layout (partition 1).
        self.torchvision_layout = not os.path.isdir(self._folder("train")) and \
            os.path.isdir(os.path.join(self.root, "dtd", "images"))

    @cached_property
    def class_folders(self) -> list[str]:
        if self.torchvision_layout:
            return self._torchvision_split("train").classes
        return super().class_folders

    def _torchvision_split(self, which: str) -> Any:
        from torchvision.datasets import DTD as TorchvisionDTD

        return _torchvision(self.name, lambda: TorchvisionDTD(
            self.location, split=which, partition=1, download=False))

    def _build(self, which: str) -> Dataset:
        if not self.torchvision_layout:
            return super()._build(which)
        data = self._torchvision_split(which)
        index = {c: i for i, c in enumerate(self.class_folders)}
        return Wrapped(data, relabel=[index[c] for c in data.classes])


class RESISC45(StandardDataset):
    name, templates = "RESISC45", tpl.RESISC45
    layout = "resisc45/NWPU-RESISC45/<class>/<image> + resisc45/resisc45-{train,test}.txt"
    classnames = [c.replace("_", " ") for c in RESISC45_CLASSES]

    def __init__(self, location: str):
        super().__init__(location, "resisc45")

    def _build(self, which: str) -> Dataset:
        listing = _require(os.path.join(self.root, f"resisc45-{which}.txt"), self.name,
                           self.layout)
        with open(listing) as f:
            names = {line.strip() for line in f if line.strip()}
        images = os.path.join(self.root, "NWPU-RESISC45")
        return ImageFiles(folder_samples(images, RESISC45_CLASSES, self.name,
                                         keep=names.__contains__))


class GTSRB(StandardDataset):
    name, templates = "GTSRB", tpl.GTSRB
    layout = ("gtsrb/GTSRB/Training/<000NN>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm "
              "and gtsrb/GT-final_test.csv")
    classnames = GTSRB_CLASSNAMES

    def __init__(self, location: str):
        super().__init__(location, "gtsrb")

    def _build(self, which: str) -> Dataset:
        from torchvision.datasets import GTSRB as TorchvisionGTSRB

        needed = ["GTSRB/Training"] if which == "train" else [
            "GTSRB/Final_Test/Images", "GT-final_test.csv"]
        for rel in needed:
            _require(os.path.join(self.root, *rel.split("/")), self.name, self.layout)
        return Wrapped(_torchvision(self.name, lambda: TorchvisionGTSRB(
            self.location, split=which, download=False)))


class Cars(StandardDataset):
    name, templates = "Cars", tpl.CARS
    layout = ("stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
              "cars_train/, cars_test_annos_withlabels.mat, cars_test/} "
              "or stanford_cars_folder_based/{train,test}/<class>/<image>")

    def __init__(self, location: str):
        location = os.path.expanduser(location)
        # The folder-based copy is what task_vectors reads once the original is gone.
        root = "stanford_cars"
        if not os.path.isdir(os.path.join(location, root)) and \
                os.path.isdir(os.path.join(location, "stanford_cars_folder_based")):
            root = "stanford_cars_folder_based"
        super().__init__(location, root)
        self.folder_based = root == "stanford_cars_folder_based"

    @cached_property
    def classnames(self) -> list[str]:
        if self.folder_based:
            folders = _class_folders(os.path.join(self.root, "train"), self.name)
            return [c.replace("_", " ") for c in folders]
        from scipy.io import loadmat

        meta = _require(os.path.join(self.root, "devkit", "cars_meta.mat"), self.name,
                        self.layout)
        return [str(c).replace("_", " ") for c in
                loadmat(meta, squeeze_me=True)["class_names"].tolist()]

    def _build(self, which: str) -> Dataset:
        if self.folder_based:
            train = os.path.join(self.root, "train")
            return ImageFiles(folder_samples(os.path.join(self.root, which),
                                             _class_folders(train, self.name), self.name))
        from torchvision.datasets import StanfordCars

        return Wrapped(_torchvision(self.name, lambda: StanfordCars(
            self.location, split=which, download=False)))


STANDARD_DATASETS = {cls.name: cls for cls in (SUN397, Cars, DTD, SVHN, EuroSAT, GTSRB,
                                                RESISC45, MNIST)}

