"""The 8 standard datasets read from generated trees in task_vectors' layouts."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from fixtures_real import (CARS_CLASSES, MAKERS, label_from_image, label_from_pixel,
                           make_all_trees, make_cars_folder_tree, make_dtd_torchvision_tree)
from map_common.errors import MAPError
from task_vectors.datasets import registry, standard
from task_vectors.datasets.templates import get_templates

STANDARD = ["SUN397", "Cars", "DTD", "SVHN", "EuroSAT", "GTSRB", "RESISC45", "MNIST"]
CLASS_COUNTS = {"MNIST": 10, "SVHN": 10, "EuroSAT": 10, "GTSRB": 43, "RESISC45": 45,
                "DTD": 47, "SUN397": 397, "Cars": 196}
ARRAY_DATASETS = {"MNIST", "SVHN"}  # label in a pixel value rather than the image size


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return str(root), make_all_trees(str(root), n_per_class=2)


def check_items(dataset, name: str, num_classes: int, expected_len: int) -> None:
    assert len(dataset) == expected_len
    decode = label_from_pixel if name in ARRAY_DATASETS else label_from_image
    for i in range(len(dataset)):
        image, label = dataset[i]
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert len(image.getpixel((0, 0))) == 3  # pixels readable after the file is closed
        assert type(label) is int and 0 <= label < num_classes
        assert decode(image) == label, f"{name}[{i}] labelled {label}"


def test_all_eight_are_registered():
    assert set(STANDARD) <= set(registry.dataset_names())
    assert {n + "Val" for n in STANDARD} <= set(registry.dataset_names())
    assert set(MAKERS) == set(STANDARD) == set(standard.STANDARD_DATASETS)


@pytest.mark.parametrize("name", STANDARD)
def test_loads_from_its_tree(trees, name):
    location, made = trees
    dataset = registry.get_dataset(name, location)
    assert len(dataset.classnames) == CLASS_COUNTS[name] == made[name].num_classes
    assert all(isinstance(c, str) and c and "_" not in c for c in dataset.classnames)
    assert dataset.templates and dataset.templates == get_templates(name)
    prompt = dataset.templates[0](dataset.classnames[0])
    assert isinstance(prompt, str) and dataset.classnames[0] in prompt
    check_items(dataset.split("train"), name, CLASS_COUNTS[name], made[name].train)
    check_items(dataset.split("test"), name, CLASS_COUNTS[name], made[name].test)
    with pytest.raises(MAPError, match=f"{name}: unknown split 'validation'"):
        dataset.split("validation")


@pytest.mark.parametrize("name", STANDARD)
def test_val_variant(trees, name):
    location, made = trees
    val = registry.get_dataset(name + "Val", location)
    assert val.classnames == registry.get_dataset(name, location).classnames
    assert val.templates == get_templates(name + "Val")
    train, test = val.split("train"), val.split("test")
    if name == "EuroSAT":
        # As in task_vectors: EuroSATVal tests on the shipped val folder, trains on train.
        base = registry.get_dataset(name, location)
        assert (len(train), len(test)) == (made[name].train, len(base.split("val")))
        check_items(test, name, CLASS_COUNTS[name], len(base.split("val")))
        return
    n_val = int(made[name].train * 0.1)
    assert (len(train), len(test)) == (made[name].train - n_val, n_val)
    assert not set(train.indices) & set(test.indices)
    check_items(test, name, CLASS_COUNTS[name], n_val)


@pytest.mark.parametrize("name", STANDARD)
def test_missing_folder_names_it(tmp_path, name):
    expected = {"MNIST": os.path.join("MNIST", "raw"), "SVHN": "svhn",
                "EuroSAT": "EuroSAT_splits", "SUN397": "sun397", "DTD": "dtd",
                "RESISC45": "resisc45", "GTSRB": "gtsrb", "Cars": "stanford_cars"}[name]
    with pytest.raises(MAPError) as info:
        registry.get_dataset(name, str(tmp_path))
    message = str(info.value)
    assert os.path.join(str(tmp_path), expected) in message
    assert "nothing is downloaded" in message and name in message


def test_missing_file_inside_the_folder(trees, tmp_path):
    location, _ = trees
    os.makedirs(tmp_path / "MNIST" / "raw")
    mnist = registry.get_dataset("MNIST", str(tmp_path))  # folder exists: constructing is fine
    with pytest.raises(MAPError, match="train-images-idx3-ubyte not found"):
        mnist.split("train")
    os.makedirs(tmp_path / "resisc45" / "NWPU-RESISC45")
    with pytest.raises(MAPError, match="resisc45-test.txt not found"):
        registry.get_dataset("RESISC45", str(tmp_path)).split("test")


def test_construction_and_listing_do_not_decode_images(trees, monkeypatch):
    location, made = trees

    def refuse(*args, **kwargs):
        raise AssertionError("an image was opened")

    monkeypatch.setattr(Image, "open", refuse)
    for name in ("SUN397", "DTD", "EuroSAT", "RESISC45", "GTSRB", "Cars"):
        dataset = registry.get_dataset(name, location)
        assert len(dataset.split("train")) == made[name].train
    with pytest.raises(AssertionError, match="an image was opened"):
        registry.get_dataset("DTD", location).split("test")[0]


def test_class_names_are_task_vectors(trees):
    location, _ = trees
    names = {n: registry.get_dataset(n, location).classnames for n in STANDARD}
    assert names["EuroSAT"] == [
        "annual crop land", "forest", "brushland or shrubland", "highway or road",
        "industrial buildings or commercial buildings", "pasture land", "permanent crop land",
        "residential buildings or homes or apartments", "river", "lake or sea"]
    assert names["SUN397"][:3] == ["abbey", "airplane cabin", "airport terminal"]
    assert "bakery shop" in names["SUN397"] and "apartment building outdoor" in names["SUN397"]
    assert names["DTD"][:2] == ["banded", "blotchy"] and names["DTD"][-1] == "zigzagged"
    assert names["RESISC45"][2] == "baseball diamond" and names["RESISC45"][-1] == "wetland"
    assert names["GTSRB"][14] == "stop"
    assert names["Cars"][:2] == ["Car Model 000 2000", "Car Model 001 2001"]
    assert names["MNIST"] == names["SVHN"] == [str(d) for d in range(10)]


def test_task_vectors_val_split_of_mnist():
    # task_vectors asserts MNISTVal's first train index is 36044 (60000 images, seed 0).
    train, val = registry.train_val_indices(60000)
    assert train[0] == 36044 and len(val) == 5000


def test_eurosat_val_folder_is_available(trees):
    location, _ = trees
    eurosat = registry.get_dataset("EuroSAT", location)
    check_items(eurosat.split("val"), "EuroSAT", 10, 10 * 2)  # 10 classes x n_per_class


def test_cars_folder_based_fallback(tmp_path):
    made = make_cars_folder_tree(str(tmp_path), n_per_class=1)
    cars = registry.get_dataset("Cars", str(tmp_path))
    assert cars.classnames == [c.replace("_", " ") for c in CARS_CLASSES]
    check_items(cars.split("test"), "Cars", 196, made.test)


def test_dtd_torchvision_layout_fallback(tmp_path):
    made = make_dtd_torchvision_tree(str(tmp_path), n_per_class=1)
    dtd = registry.get_dataset("DTD", str(tmp_path))
    assert len(dtd.classnames) == 47 and dtd.classnames[0] == "banded"
    check_items(dtd.split("train"), "DTD", 47, made.train)
    check_items(dtd.split("test"), "DTD", 47, made.test)
