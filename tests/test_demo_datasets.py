"""The demo tasks in the dataset registry (task_vectors.datasets.demo / registry)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from map_common.errors import MAPError
from task_vectors.datasets import demo
from task_vectors.datasets.registry import (
    check_dataset_name,
    dataset_names,
    get_dataset,
)
from task_vectors.eval_data import decode_dataset
from task_vectors.modeling import ImageEncoder

TASKS = ["Letter", "Digit", "Shape", "Color", "Texture", "Position", "Arrow", "Symbol"]
N_CLASSES = {"Letter": 26, "Digit": 10, "Shape": 6, "Color": 10, "Texture": 6, "Position": 5,
             "Arrow": 8, "Symbol": 10}


def test_registry_names():
    assert demo.DEMO_TASKS == TASKS
    names = dataset_names()
    for t in TASKS:
        assert t in names and f"{t}Val" in names
        check_dataset_name(t)
        check_dataset_name(f"{t}Val")
        dataset = get_dataset(f"{t}Val", "")
        assert len(dataset.classnames) == len(set(dataset.classnames)) == N_CLASSES[t]
        assert dataset.templates and all("{}" in p for p in dataset.templates)


@pytest.mark.parametrize("name", ["Nope", "NopeVal", "LetterValVal", "letter"])
def test_unknown_name_lists_known_names(name):
    with pytest.raises(MAPError) as err:
        get_dataset(name, "")
    msg = str(err.value)
    assert f"'{name}'" in msg
    for t in TASKS:
        assert t in msg and f"{t}Val" in msg


@pytest.mark.parametrize("task", TASKS)
def test_val_split_and_held_out_split(task):
    """<Task>Val test (the evaluation set) and <Task> test (the held-out set): same size,
    >= 1000 images; the Val split follows task_vectors' rule."""
    base = get_dataset(task, "")
    full, held_out = base.split("train"), base.split("test")
    val = get_dataset(f"{task}Val", "")
    evaluation, rest = val.split("test"), val.split("train")
    n = len(full)
    n_val = min(int(0.1 * n), 5000)
    assert len(evaluation) == n_val == len(held_out) >= 1000
    assert len(rest) == n - n_val
    assert set(evaluation.indices).isdisjoint(rest.indices)
    assert sorted([*evaluation.indices, *rest.indices]) == list(range(n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    assert sorted(evaluation.indices) == sorted(perm[n - n_val:])
    assert list(get_dataset(f"{task}Val", "").split("test").indices) == list(evaluation.indices)


@pytest.mark.parametrize("task", TASKS)
def test_images_are_deterministic_and_splits_differ(task):
    a = get_dataset(task, "").split("train")
    b = get_dataset(task, "").split("train")
    test = get_dataset(task, "").split("test")
    labels = set()
    for i in range(40):
        (img, label), (again, label2) = a[i], b[i]
        pixels = np.asarray(img)
        assert img.mode == "RGB" and pixels.shape == (demo.IMAGE_SIZE, demo.IMAGE_SIZE, 3)
        assert np.array_equal(pixels, np.asarray(again)) and label == label2
        assert not np.array_equal(pixels, np.asarray(test[i][0]))
        assert 0 <= label < N_CLASSES[task]
        labels.add(label)
    assert len(labels) > 1
    with pytest.raises(IndexError):
        a[len(a)]


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_evaluation_and_held_out_sets_share_no_image(task):
    val = get_dataset(f"{task}Val", "").split("test")
    held_out = get_dataset(task, "").split("test")
    ev_images, ev_labels = val.dataset.tensors(val.indices)
    ho_images, ho_labels = held_out.tensors()
    assert len(ev_labels) == len(ho_labels)
    seen = {bytes(x.numpy()) for x in ev_images}
    assert not any(bytes(x.numpy()) in seen for x in ho_images)
    # Every class is in both, with no class under a third of its fair share.
    for labels in (ev_labels, ho_labels):
        counts = np.bincount(labels.numpy(), minlength=N_CLASSES[task])
        assert counts.min() >= len(labels) / N_CLASSES[task] / 3, counts


def test_handwritten_digits_of_the_held_out_set_are_other_originals():
    _, _, pools = demo._digits()
    assert set(pools["test"]).isdisjoint(pools["train"])
    assert len(pools["test"]) + len(pools["train"]) == 1797


def _centre_colour(pixels: np.ndarray) -> np.ndarray:
    c = demo.IMAGE_SIZE // 2
    return pixels[c - 2:c + 2, c - 2:c + 2].reshape(-1, 3).mean(0)


def test_color_labels_name_the_blob_colour():
    split = get_dataset("Color", "").split("test")
    palette = np.array(list(demo.COLOURS.values()), dtype=float)
    hits = 0
    for i in range(100):
        pixels, label = split.item(i)
        nearest = np.argmin(np.abs(palette - _centre_colour(pixels.astype(float))).sum(1))
        hits += nearest == label
    assert hits >= 80


def test_position_labels_say_where_the_spot_is():
    split = get_dataset("Position", "").split("test")
    hits = 0
    for i in range(100):
        pixels, label = split.item(i)
        # The spot has the colour farthest from the median (background) colour.
        far = np.abs(pixels.astype(float) - np.median(pixels.reshape(-1, 3), 0)).sum(-1)
        y, x = ndimage.center_of_mass(far > 0.6 * far.max())
        centre = (x / demo.IMAGE_SIZE, y / demo.IMAGE_SIZE)
        nearest = np.argmin([np.hypot(centre[0] - a, centre[1] - b) for a, b in demo._CELLS])
        hits += nearest == label
    assert hits >= 80


def _statistics(pixels: np.ndarray) -> np.ndarray:
    x = pixels.astype(float) / 255.0
    grey = x.mean(-1)
    return np.concatenate([x.mean((0, 1)), x.std((0, 1)),
                           [np.abs(np.diff(grey, axis=0)).mean(),
                            np.abs(np.diff(grey, axis=1)).mean(), (grey > grey.mean()).mean()]])


def test_tasks_have_their_own_image_statistics():
    """Not transforms of one image set: which task an image comes from can be told from a
    few pixel statistics (colour, contrast, edges) by a linear classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats, task_of = [], []
    for k, t in enumerate(TASKS):
        split = get_dataset(t, "").split("test")
        feats += [_statistics(split.item(i)[0]) for i in range(150)]
        task_of += [k] * 150
    feats, task_of = np.array(feats), np.array(task_of)
    train = np.arange(len(task_of)) % 3 != 0
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(feats[train], task_of[train])
    assert clf.score(feats[~train], task_of[~train]) >= 0.6  # chance: 1/8


@pytest.fixture(scope="module")
def val_preprocess(demo_zoo):
    return ImageEncoder(demo_zoo.model_name).val_preprocess


@pytest.mark.parametrize("task", TASKS)
def test_tensors_equal_the_pil_path_through_val_preprocess(task, val_preprocess):
    split = torch.utils.data.Subset(get_dataset(task, "").split("test"), range(64))
    images, labels = split.dataset.tensors(split.indices)
    decoded = decode_dataset(split, val_preprocess)
    assert images.dtype == torch.uint8 and images.shape == decoded.images.shape
    assert torch.equal(images, decoded.images)
    assert torch.equal(labels, decoded.labels)
    # And the normalised floats equal val_preprocess itself on a few PIL images.
    direct = torch.stack([val_preprocess(split[i][0]) for i in range(8)])
    x, _ = next(decoded.batches(8))
    torch.testing.assert_close(x, direct, rtol=0, atol=1e-6)
