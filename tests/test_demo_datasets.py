"""The demo tasks in the dataset registry (task_vectors.datasets.demo / registry)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from map_common.errors import MAPError
from task_vectors.datasets import demo
from task_vectors.datasets.registry import check_dataset_name, dataset_names, get_dataset
from task_vectors.eval_data import decode_dataset
from task_vectors.modeling import ImageEncoder

TASKS = ["Digits", "Rotate", "Flip", "Invert", "Transpose", "Parity", "Ge5", "Mod3"]
# Independent statement of each task: 8x8 image transform and label from the digit.
IMAGE = {"Digits": lambda x: x, "Rotate": np.rot90, "Flip": np.fliplr,
         "Invert": lambda x: 16.0 - x, "Transpose": lambda x: x.T,
         "Parity": lambda x: x, "Ge5": lambda x: x, "Mod3": lambda x: x}
LABEL = {"Parity": lambda d: d % 2, "Ge5": lambda d: int(d >= 5), "Mod3": lambda d: d % 3}
N_CLASSES = {"Parity": 2, "Ge5": 2, "Mod3": 3}


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.images, d.target


def test_registry_names():
    assert demo.DEMO_TASKS == TASKS
    names = dataset_names()
    for t in TASKS:
        assert t in names and f"{t}Val" in names
        check_dataset_name(t)
        check_dataset_name(f"{t}Val")


@pytest.mark.parametrize("name", ["Nope", "NopeVal", "DigitsValVal", "digits"])
def test_unknown_name_lists_known_names(name):
    with pytest.raises(MAPError) as err:
        get_dataset(name, "")
    msg = str(err.value)
    assert f"'{name}'" in msg
    for t in TASKS:
        assert t in msg and f"{t}Val" in msg


def test_base_splits_partition_the_digits(digits):
    n = len(digits[1])
    train = get_dataset("Digits", "").split("train")
    test = get_dataset("Digits", "").split("test")
    assert len(test) == round(0.2 * n) and len(train) + len(test) == n
    order = demo._digits()[2]
    assert sorted([*order["train"], *order["test"]]) == list(range(n))


@pytest.mark.parametrize("task", TASKS)
def test_val_split_follows_the_rule(task):
    full = get_dataset(task, "").split("train")
    val = get_dataset(f"{task}Val", "")
    held_out, rest = val.split("test"), val.split("train")
    n = len(full)
    n_val = min(int(0.1 * n), 5000)
    assert len(held_out) == n_val and len(rest) == n - n_val
    # Disjoint, together the whole train split, and the seed-0 permutation's tail is held out.
    assert set(held_out.indices).isdisjoint(rest.indices)
    assert sorted([*held_out.indices, *rest.indices]) == list(range(n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    assert sorted(held_out.indices) == sorted(perm[n - n_val:])
    # Same split every time it is asked for.
    assert list(get_dataset(f"{task}Val", "").split("test").indices) == list(held_out.indices)


@pytest.mark.parametrize("task", TASKS)
def test_labels_and_images_from_the_untransformed_digits(task, digits):
    raw_images, raw_labels = digits
    order = demo._digits()[2]["train"]  # which digit each train item is
    dataset = get_dataset(f"{task}Val", "")
    held_out = dataset.split("test")
    label_of = LABEL.get(task, lambda d: d)
    assert len(dataset.classnames) == N_CLASSES.get(task, 10)
    seen = set()
    for j, k in enumerate(held_out.indices):
        image, label = held_out[j]
        digit = int(raw_labels[order[k]])
        assert label == label_of(digit)
        seen.add(label)
        # 8x8 in [0, 16] -> grey levels, each pixel doubled to 16x16, as RGB.
        grey = np.round(np.clip(IMAGE[task](raw_images[order[k]]) * 255 / 16, 0, 255))
        expected = np.repeat(np.repeat(grey, 2, 0), 2, 1).astype(np.uint8)
        pixels = np.asarray(image)
        assert image.size == (16, 16) and pixels.shape == (16, 16, 3)
        assert np.array_equal(pixels[..., 0], expected), (task, j)
        assert np.array_equal(pixels[..., 1], pixels[..., 0])
    assert seen == set(range(len(dataset.classnames)))


def test_tasks_really_differ(digits):
    a = get_dataset("Digits", "").split("test")[0][0]
    for t in ("Rotate", "Flip", "Invert", "Transpose"):
        assert not np.array_equal(np.asarray(get_dataset(t, "").split("test")[0][0]),
                                  np.asarray(a)), t


@pytest.fixture(scope="module")
def val_preprocess(demo_zoo):
    return ImageEncoder(demo_zoo.model_name).val_preprocess


@pytest.mark.parametrize("task", TASKS)
def test_tensors_equal_the_pil_path_through_val_preprocess(task, val_preprocess):
    split = get_dataset(task, "").split("test")
    images, labels = split.tensors()
    decoded = decode_dataset(split, val_preprocess)
    assert images.dtype == torch.uint8 and images.shape == decoded.images.shape
    assert torch.equal(images, decoded.images)
    assert torch.equal(labels, decoded.labels)
    # And the normalised floats equal val_preprocess itself on a few PIL images.
    direct = torch.stack([val_preprocess(split[i][0]) for i in range(8)])
    x, _ = next(decoded.batches(8))
    torch.testing.assert_close(x, direct, rtol=0, atol=1e-6)
