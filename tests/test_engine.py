"""MergeEngine: theta(c), evaluation and data preparation against independent computations."""
from __future__ import annotations

import builtins
import io
import json

import numpy as np
import open_clip
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from helpers import random_tiny_clip
from PIL import Image

from map_common.errors import MAPError
from task_vectors import safe_pickle
from task_vectors.checkpoints import finetuned_path, head_path, zeroshot_path
from task_vectors.datasets.registry import get_dataset
from task_vectors.engine import MergeEngine
from task_vectors.eval_data import EvalTensors, decode_dataset
from task_vectors.modeling import ClassificationHead, ImageEncoder
from task_vectors.zoo import MODEL_CFG, PREPROCESS_CFG

COEFFICIENTS = [
    np.zeros(8),
    np.eye(8)[3],
    np.full(8, 0.3),
    np.array([-0.5, 1.7, 0.0, 2.5, -1.2, 0.4, 1.0, -0.1]),
    np.random.default_rng(0).uniform(-1.0, 2.0, 8),
]


def _torch_load(path) -> torch.nn.Module:
    # Plain torch.load of files we built ourselves: independent of the restricted unpickler.
    return torch.load(path, map_location="cpu", weights_only=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny


@pytest.fixture(scope="module")
def tasks(demo_zoo) -> list[str]:
    return demo_zoo.tasks


@pytest.fixture(scope="module")
def engine(demo_zoo, tasks) -> MergeEngine:
    return MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(demo_zoo.path)),
        finetuned={t: str(finetuned_path(demo_zoo.path, t)) for t in tasks},
        heads={t: str(head_path(demo_zoo.path, t)) for t in tasks},
        datasets=tasks, data_location="", batch_size=512)


@pytest.fixture(scope="module")
def states(demo_zoo, tasks) -> tuple[dict, list[dict]]:
    pre = _torch_load(zeroshot_path(demo_zoo.path)).state_dict()
    fts = [_torch_load(finetuned_path(demo_zoo.path, t)).state_dict() for t in tasks]
    return pre, fts


def _hand_theta(pre: dict, fts: list[dict], c) -> dict[str, torch.Tensor]:
    """theta_pre + sum_i c_i (theta_i - theta_pre), in float64."""
    out = {}
    for k, p in pre.items():
        if not p.is_floating_point():
            out[k] = p
            continue
        acc = p.double().clone()
        for ci, ft in zip(c, fts):
            acc += float(ci) * (ft[k].double() - p.double())
        out[k] = acc.to(p.dtype)
    return out


def _assert_theta(encoder: torch.nn.Module, expected: dict) -> None:
    got = encoder.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-5, msg=k)


@pytest.mark.parametrize("ci", range(len(COEFFICIENTS)))
def test_theta_equals_hand_built_model(engine, states, ci):
    c = COEFFICIENTS[ci]
    engine.set_coefficients(c)
    _assert_theta(engine.encoder, _hand_theta(*states, c))
    np.testing.assert_array_equal(engine.coefficients, c)


def test_every_float_parameter_is_merged(engine, states):
    pre, fts = states
    params = dict(engine.encoder.named_parameters())
    assert set(engine.keys) == {k for k in params if pre[k].is_floating_point()}
    # tau_i as the engine holds it is the plain difference.
    for i in (0, 5):
        tau = engine.task_vector(i)
        for k in ("model.visual.conv1.weight", "model.visual.proj"):
            torch.testing.assert_close(tau[k], fts[i][k] - pre[k], rtol=0, atol=1e-6)


def test_set_coefficients_does_not_accumulate(engine, states):
    a, b = COEFFICIENTS[3], COEFFICIENTS[4]
    engine.set_coefficients(a)
    first = {k: v.clone() for k, v in engine.encoder.state_dict().items()}
    engine.set_coefficients(b)
    engine.set_coefficients(b)
    _assert_theta(engine.encoder, _hand_theta(*states, b))
    engine.set_coefficients(a)
    for k, v in engine.encoder.state_dict().items():
        assert torch.equal(v, first[k]), k


def _independent_eval(demo_zoo, states, c, task) -> dict[str, float]:
    """Fresh model loaded with the hand-built theta(c), PIL images through val_preprocess."""
    model = _torch_load(zeroshot_path(demo_zoo.path))
    model.load_state_dict(_hand_theta(*states, c))
    model.eval()
    head = _torch_load(head_path(demo_zoo.path, task)).eval()
    split = get_dataset(task, "").split("test")
    xs, ys = [], []
    for i in range(len(split)):
        image, label = split[i]
        xs.append(model.val_preprocess(image))
        ys.append(label)
    with torch.no_grad():
        logits = head(model(torch.stack(xs)))
    y = torch.tensor(ys)
    return {"accuracy": (logits.argmax(1) == y).sum().item() / len(y),
            "loss": F.cross_entropy(logits, y).item()}


@pytest.mark.parametrize("ci", [2, 3])
def test_evaluate_equals_independent_computation(engine, states, demo_zoo, ci):
    c = COEFFICIENTS[ci]
    engine.set_coefficients(c)
    got = engine.evaluate(["DigitVal", "PositionVal"])
    assert list(got) == ["DigitVal", "PositionVal"]
    for task in got:
        want = _independent_eval(demo_zoo, states, c, task)
        assert got[task]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-9)
        assert got[task]["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_one_hot_coefficients_give_the_recorded_finetuned_accuracy(engine, demo_zoo, tasks):
    info = json.loads((demo_zoo.path / "zoo.json").read_text())["tasks"]
    pre = engine.evaluate_at(np.zeros(8))
    for i, task in enumerate(tasks):
        n = len(engine.eval_sets[task].labels)
        assert round(pre[task]["accuracy"] * n) == round(info[task]["pretrained_accuracy"] * n)
        ft = engine.evaluate_at(np.eye(8)[i], [task])[task]
        assert round(ft["accuracy"] * n) == round(info[task]["finetuned_accuracy"] * n), task


def test_nothing_is_read_from_disk_per_point(engine, monkeypatch):
    c = COEFFICIENTS[4]
    before = engine.evaluate_at(c)

    def refuse(*args, **kwargs):
        raise AssertionError("read from disk while evaluating a point")

    for target, name in [(torch, "load"), (safe_pickle, "load"), (builtins, "open"),
                         (io, "open"), (safetensors.torch, "load_file"),
                         (np, "load")]:
        monkeypatch.setattr(target, name, refuse)
    for point in (COEFFICIENTS[1], c):
        engine.set_coefficients(point)
        after = engine.evaluate()
    monkeypatch.undo()
    assert after == before


@pytest.mark.parametrize("bad", [np.zeros(7), np.zeros(9), np.zeros((1, 8)), []])
def test_wrong_number_of_coefficients(engine, bad):
    engine.set_coefficients(COEFFICIENTS[2])
    theta = {k: v.clone() for k, v in engine.encoder.state_dict().items()}
    with pytest.raises(MAPError, match="expected 8 coefficients"):
        engine.set_coefficients(bad)
    for k, v in engine.encoder.state_dict().items():
        assert torch.equal(v, theta[k]), k  # a refused point leaves the model alone


def test_unknown_dataset(engine, demo_zoo):
    with pytest.raises(MAPError, match="Nope"):
        engine.evaluate(["Nope"])
    with pytest.raises(MAPError, match="unknown dataset 'Nope'"):
        MergeEngine.from_checkpoints(model_name=demo_zoo.model_name,
                                     pretrained=str(zeroshot_path(demo_zoo.path)),
                                     finetuned={}, heads={}, datasets=["Nope"],
                                     data_location="")


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape"])
def test_mismatched_finetuned_checkpoint_names_the_file(tmp_path, demo_zoo, states, damage):
    sd = dict(states[1][0])
    if damage == "missing":
        del sd["model.visual.proj"]
    elif damage == "unexpected":
        sd["model.visual.extra"] = torch.ones(3)
    else:
        sd["model.visual.proj"] = torch.zeros(16, 33)
    bad = tmp_path / "BadVal" / "finetuned.pt"
    bad.parent.mkdir()
    torch.save(sd, bad)
    with pytest.raises(MAPError) as err:
        MergeEngine.from_checkpoints(
            model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(demo_zoo.path)),
            finetuned={"LetterVal": str(finetuned_path(demo_zoo.path, "LetterVal")),
                       "BadVal": str(bad)},
            heads={}, datasets=[], data_location="")
    assert str(bad) in str(err.value)
    assert ("model.visual.extra" if damage == "unexpected" else "model.visual.proj") \
        in str(err.value)


# ----------------------------------------------------------- direct construction, tiny model
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A randomly initialised tiny open_clip encoder, 3 synthetic fine-tuned versions,
    2 heads and 2 synthetic evaluation sets (sizes not a multiple of the batch size)."""
    folder = tmp_path_factory.mktemp("tinyclip")
    gen = torch.Generator().manual_seed(1)
    encoder, pre, fts = random_tiny_clip(folder, 3, generator=gen)
    dim = MODEL_CFG["embed_dim"]
    heads = {"A": ClassificationHead(True, torch.randn(5, dim, generator=gen)),
             "B": ClassificationHead(False, torch.randn(3, dim, generator=gen),
                                     torch.randn(3, generator=gen))}
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.3, 0.25])
    side = PREPROCESS_CFG["size"]
    data = {"A": EvalTensors(torch.randint(0, 256, (21, 3, side, side), dtype=torch.uint8,
                                           generator=gen),
                             torch.randint(0, 5, (21,), generator=gen), mean, std),
            "B": EvalTensors(torch.randint(0, 256, (10, 3, side, side), dtype=torch.uint8,
                                           generator=gen),
                             torch.randint(0, 3, (10,), generator=gen), mean, std)}
    eng = MergeEngine(encoder, fts, heads, data, task_names=["t0", "t1", "t2"], batch_size=8)
    rebuilt = ImageEncoder(f"local-dir:{folder}").eval()
    return eng, pre, fts, heads, data, rebuilt


@pytest.mark.parametrize("c", [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, -0.8, 1.9],
                               [-1.0, -1.0, 3.0]])
def test_direct_engine_theta_and_evaluate(tiny, c):
    eng, pre, fts, heads, data, rebuilt = tiny
    assert eng.task_names == ["t0", "t1", "t2"] and eng.n_tasks == 3
    res = eng.evaluate_at(c)
    expected = _hand_theta(pre, fts, c)
    _assert_theta(eng.encoder, expected)
    rebuilt.load_state_dict(expected)
    for name in ("A", "B"):
        d = data[name]
        x = (d.images.double() / 255.0 - d.mean.double().view(1, 3, 1, 1)) \
            / d.std.double().view(1, 3, 1, 1)
        with torch.no_grad():
            logits = heads[name](rebuilt(x.float()))
        assert res[name]["accuracy"] == pytest.approx(
            (logits.argmax(1) == d.labels).double().mean().item(), abs=1e-9)
        assert res[name]["loss"] == pytest.approx(
            F.cross_entropy(logits, d.labels).item(), rel=1e-5)
        p = torch.softmax(logits.double(), dim=1)  # the entropy metric, by its definition
        assert res[name]["entropy"] == pytest.approx(
            -torch.special.xlogy(p, p).sum(dim=1).mean().item(), rel=1e-4, abs=1e-6)


def test_direct_engine_refuses_incomplete_finetuned_weights(tiny):
    _, pre, fts, heads, data, _ = tiny
    torch.manual_seed(0)
    enc = ImageEncoder(tiny[-1].model_name)
    broken = {k: v for k, v in fts[1].items() if k != "model.visual.conv1.weight"}
    with pytest.raises(MAPError, match="'second'.*model.visual.conv1.weight"):
        MergeEngine(enc, [fts[0], broken], heads, data, task_names=["first", "second"])


# ----------------------------------------------------------- decoding
class _Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i % 4


def _check_decode(dataset, preprocess, batch_size=7):
    decoded = decode_dataset(dataset, preprocess, batch_size=batch_size)
    assert decoded.images.dtype == torch.uint8
    direct = torch.stack([preprocess(dataset[i][0]) for i in range(len(dataset))])
    got = torch.cat([x for x, _ in decoded.batches(5)])
    assert got.shape == direct.shape
    torch.testing.assert_close(got, direct, rtol=0, atol=1e-6)
    assert decoded.labels.tolist() == [dataset[i][1] for i in range(len(dataset))]


def test_decoded_tensors_equal_val_preprocess(demo_zoo):
    # The zoo model's own preprocessing on demo images ...
    val_preprocess = ImageEncoder(demo_zoo.model_name).val_preprocess
    digits = get_dataset("DigitVal", "").split("test")
    _check_decode(torch.utils.data.Subset(digits, range(40)), val_preprocess)
    # ... and CLIP's 224-pixel pipeline (a real resize and crop) on odd-sized colour images.
    clip_preprocess = open_clip.image_transform(
        224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for h, w in [(30, 50), (64, 17), (240, 240), (9, 9), (100, 300)]]
    images.append(images[0].convert("L"))  # greyscale goes through the RGB conversion
    _check_decode(_Images(images), clip_preprocess, batch_size=4)


def test_decode_respects_max_samples_and_rejects_pipelines_without_normalize(demo_zoo):
    val_preprocess = ImageEncoder(demo_zoo.model_name).val_preprocess
    digits = get_dataset("LetterVal", "").split("test")
    assert len(decode_dataset(digits, val_preprocess, max_samples=10).labels) == 10
    without = open_clip.image_transform(16, is_train=False)
    without.transforms = without.transforms[:-1]
    with pytest.raises(MAPError, match="Normalize"):
        decode_dataset(digits, without)


def test_decode_with_worker_processes_equals_in_process(demo_zoo):
    from task_vectors.eval_data import default_workers

    val_preprocess = ImageEncoder(demo_zoo.model_name).val_preprocess
    digits = get_dataset("ShapeVal", "").split("test")
    inline = decode_dataset(digits, val_preprocess, num_workers=0, batch_size=32)
    workers = decode_dataset(digits, val_preprocess, num_workers=2, batch_size=32)
    assert torch.equal(inline.images, workers.images)
    assert torch.equal(inline.labels, workers.labels)
    assert default_workers(100) == 0  # small sets decode in-process
    assert 0 <= default_workers(50_000) <= 8
    # one worker would only add a fork: none on 1 or 2 CPUs, then one CPU left over, at most 8
    assert [default_workers(50_000, cpus=n) for n in (1, 2, 3, 4, 16)] == [0, 0, 2, 3, 8]
