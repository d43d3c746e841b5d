"""Restricted unpickling of task_vectors-style checkpoints (task_vectors.safe_pickle)."""
from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import open_clip
import pytest
import torch
from open_clip import transformer as oc_transformer
from PIL import Image
from torchvision import transforms as T

from map_common.errors import MAPError
from task_vectors import modeling, safe_pickle

from fixtures_real import legacy_task_vectors_names

legacy_names = legacy_task_vectors_names  # pickles reference src.modeling.* and old names


def tiny_clip() -> torch.nn.Module:
    torch.manual_seed(0)
    model = open_clip.model.CLIP(
        embed_dim=32, quick_gelu=True,
        vision_cfg=dict(image_size=16, patch_size=4, width=64, layers=2, head_width=16,
                        mlp_ratio=2.0),
        text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=4, layers=1))
    del model.transformer  # what task_vectors' ImageEncoder drops
    return model.eval()


def old_style_preprocess(train: bool) -> T.Compose:
    # open_clip 2.0's image_transform: resize/crop, _convert_to_rgb, ToTensor, Normalize.
    first = ([T.RandomResizedCrop(16, scale=(0.9, 1.0), interpolation=T.InterpolationMode.BICUBIC)]
             if train else [T.Resize(16, interpolation=T.InterpolationMode.BICUBIC),
                            T.CenterCrop(16)])
    return T.Compose(first + [open_clip.transform._convert_to_rgb, T.ToTensor(),
                              T.Normalize(open_clip.OPENAI_DATASET_MEAN,
                                          open_clip.OPENAI_DATASET_STD)])


def pickled_globals(path) -> set[str]:
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    return {m.decode() for m in (b"src.modeling", b"open_clip.model", b"VisualTransformer",
                                 b"_convert_to_rgb") if m in data}


@pytest.fixture
def legacy_checkpoints(tmp_path):
    """zeroshot-style encoder, head and classifier pickled with legacy class names."""
    with legacy_names(tmp_path) as legacy:
        enc = legacy.ImageEncoder(tiny_clip(), old_style_preprocess(True),
                                  old_style_preprocess(False), cache_dir=None)
        g = torch.Generator().manual_seed(1)
        head = legacy.ClassificationHead(True, torch.randn(5, 32, generator=g),
                                         torch.randn(5, generator=g))
        clf = legacy.ImageClassifier(enc, head)
        paths = {name: tmp_path / f"{name}.pt" for name in ("encoder", "head", "classifier")}
        for name, obj in (("encoder", enc), ("head", head), ("classifier", clf)):
            torch.save(obj, paths[name])
    return paths, enc, head, clf


def test_legacy_checkpoint_fixture_really_uses_old_names(legacy_checkpoints):
    paths, *_ = legacy_checkpoints
    assert pickled_globals(paths["encoder"]) == {"src.modeling", "open_clip.model",
                                                 "VisualTransformer", "_convert_to_rgb"}
    assert "src.modeling" in pickled_globals(paths["head"])


def test_legacy_encoder_loads_into_our_classes_with_equal_outputs(legacy_checkpoints):
    paths, enc, _, _ = legacy_checkpoints
    loaded = safe_pickle.load(paths["encoder"])
    assert type(loaded) is modeling.ImageEncoder
    assert type(loaded.model.visual) is oc_transformer.VisionTransformer
    assert any(type(m) is oc_transformer.QuickGELU for m in loaded.modules())
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), enc(x), rtol=0, atol=0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), np.uint8))
    torch.testing.assert_close(loaded.val_preprocess(image), enc.val_preprocess(image))
    assert loaded.cache_dir is None


def test_legacy_head_and_classifier_load_with_equal_outputs(legacy_checkpoints):
    paths, enc, head, clf = legacy_checkpoints
    loaded_head = safe_pickle.load(paths["head"])
    loaded_clf = safe_pickle.load(paths["classifier"])
    assert type(loaded_head) is modeling.ClassificationHead and loaded_head.normalize
    assert type(loaded_clf) is modeling.ImageClassifier
    feats = torch.randn(4, 32, generator=torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(loaded_head(feats), head(feats), rtol=0, atol=0)
        torch.testing.assert_close(loaded_clf(x), clf(x), rtol=0, atol=0)


def test_extract_state_dict_from_module_and_dicts(legacy_checkpoints):
    paths, enc, _, _ = legacy_checkpoints
    sd = safe_pickle.extract_state_dict(safe_pickle.load(paths["encoder"]))
    ref = enc.state_dict()
    assert sd.keys() == ref.keys()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    assert safe_pickle.extract_state_dict({"state_dict": ref, "epoch": 3}).keys() == ref.keys()
    assert safe_pickle.extract_state_dict(dict(ref)).keys() == ref.keys()
    with pytest.raises(MAPError, match="'epoch' is int"):
        safe_pickle.extract_state_dict({**ref, "epoch": 3}, source="x.pt")
    with pytest.raises(MAPError, match="x.pt: expected an nn.Module"):
        safe_pickle.extract_state_dict([1, 2], source="x.pt")


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_plain_state_dict_loads(tmp_path, zipfile_format):
    sd = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.float16),
          "n": torch.tensor([1, 2], dtype=torch.int64)}
    path = tmp_path / "sd.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=zipfile_format)
    loaded = safe_pickle.load(path)
    assert list(loaded) == ["w", "b", "n"]
    assert all(torch.equal(loaded[k], sd[k]) and loaded[k].dtype == sd[k].dtype for k in sd)


class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


def test_pickle_that_runs_code_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "payload": RunsShell(marker)}, path)
    with pytest.raises(MAPError, match=r"evil\.pt: refusing to unpickle (posix|nt|os)\.system"):
        safe_pickle.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"),
    ("builtins", "__import__"), ("subprocess", "Popen"), ("os", "system"),
    ("torch", "load"), ("torch.nn.modules.module", "torch"),  # a module re-exported there
    ("torch.nn.modules.module", "Module.__init__"), ("open_clip.factory", "create_model"),
    ("open_clip.timm_model", "TimmModel"), ("open_clip.transform", "image_transform"),
    ("torchvision.transforms.functional", "to_tensor"),
])
def test_globals_outside_the_allow_list_are_refused(module, name):
    with pytest.raises(MAPError, match=f"ckpt.pt: refusing to unpickle {module}.{name}"):
        safe_pickle.resolve_global(module, name, "ckpt.pt")


def test_refused_module_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_mod_for_safe_pickle.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\ndef run():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = pickle.dumps(0)[:2] + b"cevil_mod_for_safe_pickle\nrun\n)R."  # GLOBAL + call
    path = tmp_path / "raw.pt"
    path.write_bytes(raw)
    with pytest.raises(MAPError, match="refusing to unpickle evil_mod_for_safe_pickle.run"):
        safe_pickle.load(path)
    assert not marker.exists()


def test_allowed_globals_resolve_to_current_classes():
    r = safe_pickle.resolve_global
    assert r("src.modeling", "ImageEncoder") is modeling.ImageEncoder
    assert r("open_clip.model", "VisualTransformer") is oc_transformer.VisionTransformer
    assert r("open_clip.model", "ModifiedResNet") is open_clip.modified_resnet.ModifiedResNet
    assert r("torch.nn.modules.linear", "_LinearWithBias") is \
        torch.nn.modules.linear.NonDynamicallyQuantizableLinear
    assert r("__builtin__", "set") is set  # protocol-2 spelling
    assert r("torchvision.transforms.functional", "InterpolationMode") is T.InterpolationMode
    assert r("open_clip.transform", "_convert_to_rgb") is open_clip.transform._convert_to_rgb


def test_transform_missing_from_installed_open_clip_loads_as_stand_in(tmp_path):
    class ResizeMaxSize(torch.nn.Module):  # open_clip 2.0 had it; 3.x does not
        def __init__(self):
            super().__init__()
            self.max_size, self.fn = 16, min

    ResizeMaxSize.__module__, ResizeMaxSize.__qualname__ = "open_clip.transform", "ResizeMaxSize"
    open_clip.transform.ResizeMaxSize = ResizeMaxSize
    path = tmp_path / "t.pt"
    try:
        torch.save({"pre": ResizeMaxSize(), "w": torch.ones(1)}, path)
    finally:
        del open_clip.transform.ResizeMaxSize
    loaded = safe_pickle.load(path)
    assert isinstance(loaded["pre"], safe_pickle.MissingTransform)
    assert loaded["pre"].max_size == 16 and loaded["pre"].fn is min
    with pytest.raises(MAPError, match="older open_clip"):
        loaded["pre"](Image.new("RGB", (4, 4)))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_non_pickle_files_give_clear_errors(tmp_path):
    from safetensors.torch import save_file

    st = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(st))
    with pytest.raises(MAPError, match=r"model\.safetensors: not a readable torch.save "
                                       r"checkpoint \(it looks like a safetensors file\)"):
        safe_pickle.load(st)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(MAPError, match=r"notes\.pt: not a readable torch.save checkpoint"):
        safe_pickle.load(text)
    with pytest.raises(MAPError, match=r"missing\.pt: no such checkpoint file"):
        safe_pickle.load(tmp_path / "missing.pt")
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))
    with pytest.raises(MAPError, match="TorchScript"):
        safe_pickle.load(scripted)


def test_map_location_is_passed_through(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"w": torch.ones(2)}, path)
    loaded = safe_pickle.load(path, map_location=torch.device("meta"))
    assert loaded["w"].device.type == "meta"
