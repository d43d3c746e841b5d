"""Zero-shot heads from the CLIP text tower, and their cache under --save (task_vectors.heads)."""
from __future__ import annotations

import shutil

import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file

from fixtures_real import make_mnist_tree
from task_vectors import heads
from task_vectors.checkpoints import head_path, load_head, save_module
from task_vectors.datasets.registry import get_dataset
from task_vectors.modeling import ClassificationHead
from task_vectors.zoo import DEMO_TASKS

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def zoo_clip(demo_zoo):
    """The demo zoo's full CLIP (both towers, trained weights from the folder)."""
    return open_clip.create_model(demo_zoo.model_name).eval()


@pytest.fixture(scope="module")
def tokenizer(demo_zoo):
    return open_clip.get_tokenizer(demo_zoo.model_name)


@torch.no_grad()
def hand_weights(clip, tokenizer, classnames, templates) -> torch.Tensor:
    """One text at a time: normalise, mean over templates, renormalise, scale."""
    rows = []
    for name in classnames:
        embs = []
        for template in templates:
            e = clip.encode_text(tokenizer([template(name)]))[0]
            embs.append(e / e.norm())
        mean = torch.stack(embs).mean(0)
        rows.append(mean / mean.norm())
    return torch.stack(rows) * clip.logit_scale.exp()


def failing(*args, **kwargs):
    raise AssertionError("build_head must not be called: the cached head fits")


@pytest.mark.parametrize("task", ["Letter", "Position"])
def test_zero_shot_weights_match_hand_computation(zoo_clip, tokenizer, demo_zoo, task):
    dataset = get_dataset(f"{task}Val", str(demo_zoo.path))
    expected = hand_weights(zoo_clip, tokenizer, dataset.classnames, dataset.templates)
    assert expected.shape == (len(dataset.classnames), zoo_clip.text_projection.shape[1])
    # A batch of classes that splits them unevenly must not change anything.
    got = heads.zero_shot_weights(zoo_clip, tokenizer, dataset.classnames, dataset.templates,
                                  classes_per_batch=3)
    torch.testing.assert_close(got, expected, **TOL)
    head = heads.build_head(zoo_clip, tokenizer, dataset.classnames, dataset.templates)
    assert isinstance(head, ClassificationHead) and head.normalize
    torch.testing.assert_close(head.weight.detach(), expected, **TOL)
    assert torch.equal(head.bias.detach(), torch.zeros(len(dataset.classnames)))


def test_zoo_heads_equal_a_fresh_build(zoo_clip, tokenizer, demo_zoo):
    for task in DEMO_TASKS:
        dataset = get_dataset(f"{task}Val", str(demo_zoo.path))
        stored = load_head(head_path(demo_zoo.path, f"{task}Val"))
        fresh = heads.build_head(zoo_clip, tokenizer, dataset.classnames, dataset.templates)
        torch.testing.assert_close(stored.weight.detach(), fresh.weight.detach(), **TOL)
        assert stored.normalize


def test_head_is_built_cached_and_reused(tmp_path, demo_zoo, zoo_clip, tokenizer, monkeypatch):
    name, data = demo_zoo.model_name, str(demo_zoo.path)
    dataset = get_dataset("DigitVal", data)
    head = heads.get_zero_shot_head("DigitVal", name, tmp_path, data)
    expected = hand_weights(zoo_clip, tokenizer, dataset.classnames, dataset.templates)
    torch.testing.assert_close(head.weight.detach(), expected, **TOL)
    cached = load_head(tmp_path / "head_DigitVal.pt")
    assert torch.equal(cached.weight, head.weight)
    assert cached.model_key == head.model_key == heads.model_key(name)

    monkeypatch.setattr(heads, "build_head", failing)
    again = heads.get_zero_shot_head("DigitVal", name, tmp_path, data)
    assert torch.equal(again.weight, head.weight)


def test_head_tagged_for_another_model_is_rebuilt(tmp_path, demo_zoo, zoo_clip, tokenizer):
    name, data = demo_zoo.model_name, str(demo_zoo.path)
    stale = ClassificationHead(True, torch.full((10, 32), 3.0))
    stale.model_key = "ViT-B-32:0123456789abcdef"
    save_module(stale, tmp_path / "head_LetterVal.pt")
    head = heads.get_zero_shot_head("LetterVal", name, tmp_path, data)
    dataset = get_dataset("LetterVal", data)
    expected = hand_weights(zoo_clip, tokenizer, dataset.classnames, dataset.templates)
    torch.testing.assert_close(head.weight.detach(), expected, **TOL)
    rewritten = load_head(tmp_path / "head_LetterVal.pt")
    assert rewritten.model_key == heads.model_key(name)
    torch.testing.assert_close(rewritten.weight.detach(), expected, **TOL)


@pytest.fixture
def other_model(tmp_path, demo_zoo):
    """The zoo's CLIP with a perturbed text tower, as a second local-dir model."""
    folder = tmp_path / "other_clip"
    folder.mkdir()
    shutil.copy(demo_zoo.path / "clip" / "open_clip_config.json", folder)
    weights = load_file(str(demo_zoo.path / "clip" / "open_clip_model.safetensors"))
    g = torch.Generator().manual_seed(0)
    for k, v in weights.items():
        if k.startswith("transformer.") and v.is_floating_point():
            weights[k] = v + 0.05 * torch.randn(v.shape, generator=g)
    save_file(weights, str(folder / "open_clip_model.safetensors"))
    return f"local-dir:{folder}"


def test_a_different_model_never_reuses_a_head(tmp_path, demo_zoo, other_model, monkeypatch):
    data = str(demo_zoo.path)
    save = tmp_path / "save"
    calls = []
    build = heads.build_head

    def counting(*args, **kwargs):
        calls.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(heads, "build_head", counting)
    zoo_head = heads.get_zero_shot_head("ArrowVal", demo_zoo.model_name, save, data)
    other_head = heads.get_zero_shot_head("ArrowVal", other_model, save, data)
    assert len(calls) == 2
    assert not torch.allclose(zoo_head.weight, other_head.weight, atol=1e-3)
    assert zoo_head.model_key != other_head.model_key
    back = heads.get_zero_shot_head("ArrowVal", demo_zoo.model_name, save, data)
    assert len(calls) == 3
    torch.testing.assert_close(back.weight, zoo_head.weight, **TOL)
    heads.get_zero_shot_head("ArrowVal", demo_zoo.model_name, save, data)
    assert len(calls) == 3  # the same model again: reused


def test_untagged_head_is_used_as_is(tmp_path, demo_zoo, monkeypatch):
    # Like the public task_vectors heads: no tag, trusted, and no CLIP is even built.
    head = ClassificationHead(True, torch.randn(10, 32, generator=torch.Generator().manual_seed(1)))
    save_module(head, tmp_path / "head_LetterVal.pt")
    monkeypatch.setattr(heads, "build_head", failing)
    monkeypatch.setattr(heads, "ImageEncoder", failing)
    got = heads.get_zero_shot_head("LetterVal", "ViT-B-32", tmp_path, str(demo_zoo.path))
    assert torch.equal(got.weight, head.weight) and got.normalize


# ---------------------------------------------------------------- reuse across runs
# These pin down what makes a cached head reusable by a later run of the same model.

def test_zoo_heads_are_reused_for_the_zoo_model(tmp_path, demo_zoo, monkeypatch):
    # The zoo was built in a staging folder, then renamed, with one torch thread.
    shutil.copy(head_path(demo_zoo.path, "ShapeVal"), tmp_path)
    stored = load_head(tmp_path / "head_ShapeVal.pt")
    monkeypatch.setattr(heads, "build_head", failing)
    got = heads.get_zero_shot_head("ShapeVal", demo_zoo.model_name, tmp_path, str(demo_zoo.path))
    assert torch.equal(got.weight, stored.weight)


def test_model_key_names_the_weights_not_the_folder(tmp_path, demo_zoo, other_model):
    copy = tmp_path / "moved_clip"
    shutil.copytree(demo_zoo.path / "clip", copy)
    assert heads.model_key(f"local-dir:{copy}") == heads.model_key(demo_zoo.model_name)
    assert heads.model_key(other_model) != heads.model_key(demo_zoo.model_name)
    assert heads.model_key("ViT-B-32") == "ViT-B-32-quickgelu:openai"


class Requested(Exception):
    """Raised by the stand-in model factory once it has recorded what was asked for."""


def test_builtin_model_heads_use_openai_text_tower(tmp_path, monkeypatch):
    # A randomly initialised text tower would give meaningless heads without any error:
    # for an architecture name the heads must come from OpenAI's CLIP (QuickGELU).
    make_mnist_tree(str(tmp_path / "data"), n_per_class=1)
    requests = []

    def record(model_name, pretrained=None, **kwargs):
        requests.append((model_name, pretrained, kwargs.get("force_quick_gelu", False)))
        raise Requested

    monkeypatch.setattr(open_clip, "create_model_and_transforms", record)
    monkeypatch.setattr(open_clip, "create_model", record)
    with pytest.raises(Requested):
        heads.get_zero_shot_head("MNISTVal", "ViT-B-32", tmp_path / "save",
                                 str(tmp_path / "data"))
    (name, pretrained, force_quick), = requests
    assert pretrained == "openai"
    assert name == "ViT-B-32-quickgelu" or (name == "ViT-B-32" and force_quick)
