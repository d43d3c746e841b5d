"""Tiny on-disk trees of the 8 standard datasets in task_vectors' layouts.

Every ``make_<name>_tree(root, n_per_class)`` writes generated images (PIL) where
task_vectors expects them and returns what a loader should find. Labels are recoverable
from each image, so tests can check that a loader labels what it reads correctly: file
images get a size that encodes the label (``label_from_image``), array datasets (MNIST,
SVHN) a pixel value. Colours depend on the class, so a model can learn something.

Also helpers for checkpoints as other projects write them: pickles that reference
task_vectors' ``src.modeling`` (``legacy_task_vectors_names``) and open_clip ``local-dir:``
model folders (``write_open_clip_folder``).
"""
from __future__ import annotations

import contextlib
import csv
import importlib
import json
import os
import sys
import types
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image

from task_vectors.datasets.standard import RESISC45_CLASSES

BASE = 16  # smallest image side

EUROSAT_FOLDERS = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
                   "Pasture", "PermanentCrop", "Residential", "River", "SeaLake"]
DTD_CLASSES = """banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched
crystalline dotted fibrous flecked freckled frilly gauzy grid grooved honeycombed interlaced
knitted lacelike lined marbled matted meshed paisley perforated pitted pleated polka-dotted
porous potholed scaly smeared spiralled sprinkled stained stratified striped studded swirly
veined waffled woven wrinkled zigzagged""".split()
# SUN397's categories (ClassName.txt without the leading "/<letter>/").
SUN397_CATEGORIES = """
abbey airplane_cabin airport_terminal alley amphitheater amusement_arcade amusement_park
anechoic_chamber apartment_building/outdoor apse/indoor aquarium aqueduct arch archive
arrival_gate/outdoor art_gallery art_school art_studio assembly_line athletic_field/outdoor
atrium/public attic auditorium auto_factory
badlands badminton_court/indoor baggage_claim bakery/shop balcony/exterior balcony/interior
ball_pit ballroom bamboo_forest banquet_hall bar barn barndoor baseball_field basement
basilica basketball_court/outdoor bathroom batters_box bayou bazaar/indoor bazaar/outdoor
beach beauty_salon bedroom berth biology_laboratory bistro/indoor boardwalk boat_deck
boathouse bookstore booth/indoor botanical_garden bow_window/indoor bow_window/outdoor
bowling_alley boxing_ring brewery/indoor bridge building_facade bullring burial_chamber
bus_interior butchers_shop butte
cabin/outdoor cafeteria campsite campus canal/natural canal/urban candy_store canyon
car_interior/backseat car_interior/frontseat carrousel casino/indoor castle catacomb
cathedral/indoor cathedral/outdoor cavern/indoor cemetery chalet cheese_factory
chemistry_lab chicken_coop/indoor chicken_coop/outdoor childs_room church/indoor
church/outdoor classroom clean_room cliff cloister/indoor closet clothing_store coast
cockpit coffee_shop computer_room conference_center conference_room construction_site
control_room control_tower/outdoor corn_field corral corridor cottage_garden courthouse
courtroom courtyard covered_bridge/exterior creek crevasse crosswalk cubicle/office
dam delicatessen dentists_office desert/sand desert/vegetation diner/indoor diner/outdoor
dinette/home dinette/vehicle dining_car dining_room discotheque dock doorway/outdoor
dorm_room driveway driving_range/outdoor drugstore
electrical_substation elevator/door elevator/interior elevator_shaft engine_room
escalator/indoor excavation
factory/indoor fairway fastfood_restaurant field/cultivated field/wild fire_escape
fire_station firing_range/indoor fishpond florist_shop/indoor food_court forest/broadleaf
forest/needleleaf forest_path forest_road formal_garden fountain
galley game_room garage/indoor garbage_dump gas_station gazebo/exterior general_store/indoor
general_store/outdoor gift_shop golf_course greenhouse/indoor greenhouse/outdoor
gymnasium/indoor
hangar/indoor hangar/outdoor harbor hayfield heliport herb_garden highway hill home_office
hospital hospital_room hot_spring hot_tub/outdoor hotel/outdoor hotel_room house
hunting_lodge/outdoor
ice_cream_parlor ice_floe ice_shelf ice_skating_rink/indoor ice_skating_rink/outdoor iceberg
igloo industrial_area inn/outdoor islet
jacuzzi/indoor jail/indoor jail_cell jewelry_shop
kasbah kennel/indoor kennel/outdoor kindergarden_classroom kitchen kitchenette
labyrinth/outdoor lake/natural landfill landing_deck laundromat lecture_room library/indoor
library/outdoor lido_deck/outdoor lift_bridge lighthouse limousine_interior living_room
lobby lock_chamber locker_room
mansion manufactured_home market/indoor market/outdoor marsh martial_arts_gym mausoleum
medina moat/water monastery/outdoor mosque/indoor mosque/outdoor motel mountain
mountain_snowy movie_theater/indoor museum/indoor music_store music_studio
nuclear_power_plant/outdoor nursery
oast_house observatory/outdoor ocean office office_building oil_refinery/outdoor oilrig
operating_room orchard outhouse/outdoor
pagoda palace pantry park parking_garage/indoor parking_garage/outdoor parking_lot parlor
pasture patio pavilion pharmacy phone_booth physics_laboratory picnic_area pilothouse/indoor
planetarium/outdoor playground playroom plaza podium/indoor podium/outdoor pond
poolroom/establishment poolroom/home power_plant/outdoor promenade_deck pub/indoor pulpit
putting_green
racecourse raceway raft railroad_track rainforest reception recreation_room
residential_neighborhood restaurant restaurant_kitchen restaurant_patio rice_paddy
riding_arena river rock_arch rope_bridge ruin runway
sandbar sandbox sauna schoolhouse sea_cliff server_room shed shoe_shop shopfront
shopping_mall/indoor shower skatepark ski_lodge ski_resort ski_slope sky skyscraper slum
snowfield squash_court stable stadium/baseball stadium/football stage/indoor staircase
street subway_interior subway_station/platform supermarket sushi_bar swamp
swimming_pool/indoor swimming_pool/outdoor synagogue/indoor synagogue/outdoor
television_studio temple/east_asia temple/south_asia tennis_court/indoor
tennis_court/outdoor tent/outdoor theater/indoor_procenium theater/indoor_seats thriftshop
throne_room ticket_booth toll_plaza topiary_garden tower toyshop track/outdoor train_railway
train_station/platform tree_farm tree_house trench
underwater/coral_reef utility_room
valley van_interior vegetable_garden veranda veterinarians_office viaduct videostore village
vineyard volcano volleyball_court/indoor volleyball_court/outdoor
waiting_room warehouse/indoor water_tower waterfall/block waterfall/fan waterfall/plunge
watering_hole wave wet_bar wheat_field wind_farm windmill wine_cellar/barrel_storage
wine_cellar/bottle_storage wrestling_ring/indoor
yard youth_hostel
""".split()
CARS_CLASSES = [f"Car_Model_{i:03d} {2000 + i % 13}" for i in range(196)]


@dataclass
class Tree:
    """What a loader should find in a generated tree."""

    folder: str          # the dataset's folder under the data location
    num_classes: int     # length of the class name list
    train: int           # number of train images
    test: int            # number of test images


def label_size(label: int) -> tuple[int, int]:
    return BASE + label // 16, BASE + label % 16


def label_from_image(image: Image.Image) -> int:
    """The label a generated file image was written for (from its size)."""
    w, h = image.size
    return (w - BASE) * 16 + (h - BASE)


def label_from_pixel(image: Image.Image) -> int:
    """The label a generated MNIST/SVHN image was written for (from pixel (0, 0))."""
    return image.convert("L").getpixel((0, 0)) // 25


def _pixels(label: int, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    color = np.array([(label * 67) % 256, (label * 131) % 256, (label * 199) % 256])
    noise = rng.integers(-20, 21, (size[1], size[0], 3))
    return np.clip(color + noise, 0, 255).astype(np.uint8)


def _write(path: str, label: int, rng: np.random.Generator) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(_pixels(label, rng, label_size(label))).save(path)


def _digit_arrays(n_per_class: int, rng: np.random.Generator, shape: tuple[int, ...]
                  ) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(10), n_per_class)
    rng.shuffle(labels)
    value = (labels * 25).astype(np.uint8)
    images = rng.integers(0, 20, (len(labels), *shape)).astype(np.uint8)
    images += value.reshape(-1, *[1] * len(shape))
    images[:, 0, 0] = value.reshape(-1, *[1] * (len(shape) - 2))  # exact, for label_from_pixel
    return images, labels


def make_mnist_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    """``MNIST/raw/*-ubyte`` in the IDX format torchvision reads."""
    rng = np.random.default_rng(seed)
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for prefix in ("train", "t10k"):
        images, labels = _digit_arrays(n_per_class, rng, (28, 28))
        with open(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), "wb") as f:
            f.write(np.array([0x803, len(labels), 28, 28], ">i4").tobytes() + images.tobytes())
        with open(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(np.array([0x801, len(labels)], ">i4").tobytes()
                    + labels.astype(np.uint8).tobytes())
    return Tree(raw, 10, 10 * n_per_class, 10 * n_per_class)


def make_svhn_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    """``svhn/{train,test}_32x32.mat``: X [32, 32, 3, N], y [N, 1] with 10 for the digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "svhn")
    os.makedirs(folder, exist_ok=True)
    for split in ("train", "test"):
        images, labels = _digit_arrays(n_per_class, rng, (32, 32, 3))
        y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
        savemat(os.path.join(folder, f"{split}_32x32.mat"),
                {"X": np.transpose(images, (1, 2, 3, 0)), "y": y})
    return Tree(folder, 10, 10 * n_per_class, 10 * n_per_class)


def _class_folders(split_dir: str, folders: list[str], n: int, rng: np.random.Generator,
                   ext: str = ".jpg") -> int:
    # Labels follow the sorted folder names, as ImageFolder assigns them.
    for label, name in enumerate(sorted(folders)):
        for k in range(n):
            _write(os.path.join(split_dir, name, f"{name}_{k}{ext}"), label, rng)
    return n * len(folders)


def make_eurosat_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "EuroSAT_splits")
    counts = {s: _class_folders(os.path.join(folder, s), EUROSAT_FOLDERS, n_per_class, rng)
              for s in ("train", "val", "test")}
    return Tree(folder, 10, counts["train"], counts["test"])


def sun397_folder(category: str) -> str:
    """task_vectors' folder name: 'bakery/shop' -> 'b_bakery_shop'."""
    return f"{category[0]}_{category.replace('/', '_')}"


def make_sun397_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "sun397")
    folders = [sun397_folder(c) for c in SUN397_CATEGORIES]
    counts = {s: _class_folders(os.path.join(folder, s), folders, n_per_class, rng)
              for s in ("train", "val")}
    return Tree(folder, 397, counts["train"], counts["val"])


def make_dtd_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "dtd")
    counts = {s: _class_folders(os.path.join(folder, s), DTD_CLASSES, n_per_class, rng)
              for s in ("train", "val")}
    return Tree(folder, 47, counts["train"], counts["val"])


def make_dtd_torchvision_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    """torchvision's DTD layout: ``dtd/dtd/images/<class>/*`` + ``labels/{split}1.txt``."""
    rng = np.random.default_rng(seed)
    data = os.path.join(root, "dtd", "dtd")
    os.makedirs(os.path.join(data, "labels"), exist_ok=True)
    for split in ("train", "val", "test"):
        lines = []
        for label, name in enumerate(DTD_CLASSES):
            for k in range(n_per_class):
                rel = f"{name}/{name}_{split}_{k}.jpg"
                _write(os.path.join(data, "images", *rel.split("/")), label, rng)
                lines.append(rel)
        with open(os.path.join(data, "labels", f"{split}1.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return Tree(os.path.join(root, "dtd"), 47, 47 * n_per_class, 47 * n_per_class)


def make_resisc45_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "resisc45")
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(RESISC45_CLASSES):
        for k in range(3 * n_per_class):
            filename = f"{name}_{k + 1:03d}.jpg"
            _write(os.path.join(folder, "NWPU-RESISC45", name, filename), label, rng)
            lists[("train", "val", "test")[k // n_per_class]].append(filename)
    for split, names in lists.items():
        with open(os.path.join(folder, f"resisc45-{split}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    return Tree(folder, 45, 45 * n_per_class, 45 * n_per_class)


def make_gtsrb_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "gtsrb")
    for label in range(43):
        for k in range(n_per_class):
            _write(os.path.join(folder, "GTSRB", "Training", f"{label:05d}",
                                f"{k:05d}_{label:05d}.ppm"), label, rng)
    rows = []
    for i in range(43 * n_per_class):
        label = i % 43
        _write(os.path.join(folder, "GTSRB", "Final_Test", "Images", f"{i:05d}.ppm"), label, rng)
        w, h = label_size(label)
        rows.append([f"{i:05d}.ppm", w, h, 0, 0, w, h, label])
    with open(os.path.join(folder, "GT-final_test.csv"), "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2",
                         "Roi.Y2", "ClassId"])
        writer.writerows(rows)
    return Tree(folder, 43, 43 * n_per_class, 43 * n_per_class)


def _cars_annotations(path: str, fnames: list[str], labels: list[int]) -> None:
    from scipy.io import savemat

    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annos = np.zeros((1, len(fnames)), dtype=[(f, "O") for f in fields])
    for i, (fname, label) in enumerate(zip(fnames, labels)):
        w, h = label_size(label)
        annos[0, i] = (0, 0, w, h, label + 1, fname)  # classes are 1-based in the files
    savemat(path, {"annotations": annos})


def make_cars_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    """``stanford_cars`` with the devkit .mat files torchvision's StanfordCars reads."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "stanford_cars")
    os.makedirs(os.path.join(folder, "devkit"), exist_ok=True)
    savemat(os.path.join(folder, "devkit", "cars_meta.mat"),
            {"class_names": np.array(CARS_CLASSES, dtype=object)[None, :]})
    for split, annos in (("train", os.path.join("devkit", "cars_train_annos.mat")),
                         ("test", "cars_test_annos_withlabels.mat")):
        labels = [label for label in range(len(CARS_CLASSES)) for _ in range(n_per_class)]
        fnames = [f"{i + 1:05d}.jpg" for i in range(len(labels))]
        for fname, label in zip(fnames, labels):
            _write(os.path.join(folder, f"cars_{split}", fname), label, rng)
        _cars_annotations(os.path.join(folder, annos), fnames, labels)
    return Tree(folder, 196, 196 * n_per_class, 196 * n_per_class)


def make_cars_folder_tree(root: str, n_per_class: int = 2, seed: int = 0) -> Tree:
    """The folder-based copy: ``stanford_cars_folder_based/{train,test}/<class>/*``."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "stanford_cars_folder_based")
    folders = [c.replace(" ", "_") for c in CARS_CLASSES]
    counts = {s: _class_folders(os.path.join(folder, s), folders, n_per_class, rng)
              for s in ("train", "test")}
    return Tree(folder, 196, counts["train"], counts["test"])


MAKERS = {
    "MNIST": make_mnist_tree, "SVHN": make_svhn_tree, "EuroSAT": make_eurosat_tree,
    "SUN397": make_sun397_tree, "DTD": make_dtd_tree, "RESISC45": make_resisc45_tree,
    "GTSRB": make_gtsrb_tree, "Cars": make_cars_tree,
}


def make_all_trees(root: str, n_per_class: int = 2, seed: int = 0) -> dict[str, Tree]:
    """All 8 standard datasets under one data location."""
    return {name: make(root, n_per_class, seed + i)
            for i, (name, make) in enumerate(MAKERS.items())}


# ---------------------------------------------------------------- task_vectors-style checkpoints
# A stand-in for task_vectors' src/modeling.py: its class and attribute names, so pickles
# written while it is importable reference ``src.modeling.*`` as the public checkpoints do.
LEGACY_MODELING = '''
import torch

class ImageEncoder(torch.nn.Module):
    def __init__(self, model, train_preprocess, val_preprocess, cache_dir=None):
        super().__init__()
        self.model = model
        self.train_preprocess = train_preprocess
        self.val_preprocess = val_preprocess
        self.cache_dir = cache_dir

    def forward(self, images):
        return self.model.encode_image(images)

class ClassificationHead(torch.nn.Linear):
    def __init__(self, normalize, weights, biases=None):
        output_size, input_size = weights.shape
        super().__init__(input_size, output_size)
        self.normalize = normalize
        self.weight = torch.nn.Parameter(weights.clone())
        self.bias = torch.nn.Parameter(biases.clone() if biases is not None
                                       else torch.zeros_like(self.bias))

    def forward(self, inputs):
        if self.normalize:
            inputs = inputs / inputs.norm(dim=-1, keepdim=True)
        return super().forward(inputs)

class ImageClassifier(torch.nn.Module):
    def __init__(self, image_encoder, classification_head):
        super().__init__()
        self.image_encoder = image_encoder
        self.classification_head = classification_head
        self.train_preprocess = image_encoder.train_preprocess
        self.val_preprocess = image_encoder.val_preprocess

    def forward(self, inputs):
        return self.classification_head(self.image_encoder(inputs))
'''


def _old_open_clip_names() -> dict:
    """Classes open_clip < 2.0 pickled from ``open_clip.model`` (and the old ViT name)."""
    from open_clip import transformer as oc

    return {oc.VisionTransformer: "VisualTransformer", oc.Transformer: "Transformer",
            oc.ResidualAttentionBlock: "ResidualAttentionBlock", oc.LayerNorm: "LayerNorm",
            oc.QuickGELU: "QuickGELU"}


@contextlib.contextmanager
def legacy_task_vectors_names(workdir: str | os.PathLike) -> Iterator[types.ModuleType]:
    """While active, ``torch.save`` pickles reference ``src.modeling.*`` and open_clip's old
    class names, as the public task_vectors checkpoints do; yields the stand-in module.

    Our own ``src`` package is hidden meanwhile: only build and save objects inside.
    """
    import open_clip

    base = os.path.join(os.fspath(workdir), "legacy_src")
    os.makedirs(os.path.join(base, "src"), exist_ok=True)
    with open(os.path.join(base, "src", "__init__.py"), "w"):
        pass
    with open(os.path.join(base, "src", "modeling.py"), "w") as f:
        f.write(LEGACY_MODELING)
    renamed = _old_open_clip_names()
    saved_modules = {k: sys.modules.get(k) for k in ("src", "src.modeling")}
    saved_attrs = {cls: (cls.__module__, cls.__qualname__) for cls in renamed}
    had_visual = hasattr(open_clip.model, "VisualTransformer")
    sys.path.insert(0, base)
    sys.modules.pop("src", None)
    sys.modules.pop("src.modeling", None)
    try:
        legacy = importlib.import_module("src.modeling")
        for cls, old in renamed.items():
            cls.__module__, cls.__qualname__ = "open_clip.model", old
            setattr(open_clip.model, old, cls)
        yield legacy
    finally:
        sys.path.remove(base)
        for k, mod in saved_modules.items():
            if mod is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = mod
        for cls, (mod, qual) in saved_attrs.items():
            cls.__module__, cls.__qualname__ = mod, qual
        if not had_visual:
            del open_clip.model.VisualTransformer


def write_open_clip_folder(folder: str | os.PathLike, model_cfg: dict,
                           preprocess_cfg: dict | None = None) -> str:
    """An open_clip ``local-dir:`` model (config only, so it builds with random weights);
    returns the --model value."""
    os.makedirs(folder, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return f"local-dir:{os.fspath(folder)}"
