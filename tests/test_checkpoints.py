"""Checkpoints in the task_vectors layout and other formats (task_vectors.checkpoints)."""
from __future__ import annotations

import json
import os
import stat

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file
from torch import nn

from map_common.errors import MAPError
from task_vectors.checkpoints import (
    check_compatible,
    finetuned_path,
    head_path,
    load_encoder,
    load_head,
    load_state_dict,
    quickgelu_variant,
    save_module,
    zeroshot_path,
)
from task_vectors.modeling import ClassificationHead, ImageEncoder
from task_vectors.zoo import MODEL_CFG, PREPROCESS_CFG


@pytest.fixture(scope="module")
def model_name(tmp_path_factory) -> str:
    """A tiny open_clip architecture in a local folder (config only: random init)."""
    folder = tmp_path_factory.mktemp("tinyclip")
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}))
    return f"local-dir:{folder}"


def _encoder(model_name: str, seed: int) -> ImageEncoder:
    torch.manual_seed(seed)
    return ImageEncoder(model_name).eval()


def _images(n: int = 3) -> torch.Tensor:
    side = PREPROCESS_CFG["size"]
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(11))


def _assert_same_weights(a, b) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_round_trip_in_the_task_vectors_layout(tmp_path, model_name):
    pre = _encoder(model_name, 0)
    ft = _encoder(model_name, 1)  # different weights, same architecture
    head = ClassificationHead(True, torch.randn(10, MODEL_CFG["embed_dim"]), torch.randn(10))
    save_module(pre, zeroshot_path(tmp_path))
    save_module(ft, tmp_path / "TaskVal" / "finetuned.pt")
    save_module(head, head_path(tmp_path, "TaskVal"))
    assert zeroshot_path(tmp_path) == tmp_path / "zeroshot.pt"
    assert finetuned_path(tmp_path, "TaskVal") == tmp_path / "TaskVal" / "finetuned.pt"
    assert head_path(tmp_path, "TaskVal") == tmp_path / "head_TaskVal.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TaskVal", "head_TaskVal.pt",
                                                           "zeroshot.pt"]

    enc = load_encoder(zeroshot_path(tmp_path), model_name)
    _assert_same_weights(enc.state_dict(), pre.state_dict())
    ft_sd = load_state_dict(finetuned_path(tmp_path, "TaskVal"))
    _assert_same_weights(ft_sd, ft.state_dict())
    loaded_head = load_head(head_path(tmp_path, "TaskVal"))
    _assert_same_weights(loaded_head.state_dict(), head.state_dict())
    assert loaded_head.normalize is True

    x = _images()
    with torch.no_grad():
        assert torch.equal(enc.eval()(x), pre(x))
        assert torch.equal(loaded_head(enc(x)), head(pre(x)))
        ft_rebuilt = _encoder(model_name, 5)
        ft_rebuilt.load_state_dict(ft_sd)
        assert torch.equal(ft_rebuilt(x), ft(x))


def test_state_dict_formats_load_with_our_key_names(tmp_path, model_name):
    enc = _encoder(model_name, 2)
    ours = enc.state_dict()
    torch.save(ours, tmp_path / "plain.pt")
    save_file({k: v.contiguous() for k, v in ours.items()}, str(tmp_path / "w.safetensors"))
    _assert_same_weights(load_state_dict(tmp_path / "plain.pt"), ours)
    _assert_same_weights(load_state_dict(tmp_path / "w.safetensors"), ours)
    # DataParallel-style "module." prefix and a {"state_dict": ...} wrapper.
    torch.save({"state_dict": {f"module.{k}": v for k, v in ours.items()}},
               tmp_path / "wrapped.pt")
    _assert_same_weights(load_state_dict(tmp_path / "wrapped.pt"), ours)
    # load_encoder builds the architecture and loads either format into it.
    for name in ("plain.pt", "w.safetensors"):
        _assert_same_weights(load_encoder(tmp_path / name, model_name).state_dict(), ours)


def test_open_clip_state_dict_gets_the_model_prefix(tmp_path, model_name):
    torch.manual_seed(3)
    clip = open_clip.create_model(model_name)
    clip_sd = clip.state_dict()
    assert any(k.startswith("visual.") for k in clip_sd)
    torch.save(clip_sd, tmp_path / "clip.pt")
    save_file({k: v.contiguous() for k, v in clip_sd.items()}, str(tmp_path / "clip.safetensors"))
    for name in ("clip.pt", "clip.safetensors"):
        loaded = load_state_dict(tmp_path / name)
        _assert_same_weights(loaded, {f"model.{k}": v for k, v in clip_sd.items()})
    # The image tower lands in the encoder; the text tower is ignored.
    enc = load_encoder(tmp_path / "clip.pt", model_name)
    _assert_same_weights(enc.model.visual.state_dict(), clip.visual.state_dict())
    assert torch.equal(enc.model.logit_scale, clip.logit_scale)
    with torch.no_grad():
        assert torch.equal(enc(_images()), clip.encode_image(_images()))


def test_finetuned_path_falls_back_to_safetensors(tmp_path, model_name):
    (tmp_path / "A").mkdir()
    save_file({"x": torch.ones(1)}, str(tmp_path / "A" / "finetuned.safetensors"))
    assert finetuned_path(tmp_path, "A") == tmp_path / "A" / "finetuned.safetensors"
    torch.save({"x": torch.ones(1)}, tmp_path / "A" / "finetuned.pt")
    assert finetuned_path(tmp_path, "A") == tmp_path / "A" / "finetuned.pt"


def test_check_compatible_names_the_file(tmp_path, model_name):
    ref = _encoder(model_name, 0).state_dict()
    path = tmp_path / "Bad" / "finetuned.pt"
    check_compatible(ref, dict(ref), path)  # identical: fine
    # Text-tower weights are not part of the image encoder and are ignored.
    check_compatible(ref, {**ref, "model.transformer.extra": torch.ones(2)}, path)

    missing = {k: v for k, v in ref.items() if k != "model.visual.proj"}
    with pytest.raises(MAPError, match="1 missing") as err:
        check_compatible(ref, missing, path)
    assert str(path) in str(err.value) and "model.visual.proj" in str(err.value)

    extra = {**ref, "model.visual.extra.weight": torch.ones(2)}
    with pytest.raises(MAPError, match="1 unexpected") as err:
        check_compatible(ref, extra, path)
    assert str(path) in str(err.value) and "model.visual.extra.weight" in str(err.value)

    reshaped = {**ref, "model.visual.proj": torch.zeros(16, 32)}
    with pytest.raises(MAPError, match="shape") as err:
        check_compatible(ref, reshaped, path)
    assert str(path) in str(err.value) and "model.visual.proj" in str(err.value)


def test_load_encoder_refuses_weights_of_another_architecture(tmp_path, model_name):
    sd = _encoder(model_name, 0).state_dict()
    sd["model.visual.proj"] = torch.zeros(32, 16)
    torch.save(sd, tmp_path / "other.pt")
    with pytest.raises(MAPError, match="shape") as err:
        load_encoder(tmp_path / "other.pt", model_name)
    assert str(tmp_path / "other.pt") in str(err.value)


def test_missing_files_raise_map_error_naming_the_path(tmp_path, model_name):
    path = tmp_path / "nowhere" / "finetuned.pt"
    for load in (load_state_dict, load_head, lambda p: load_encoder(p, model_name)):
        with pytest.raises(MAPError) as err:
            load(path)
        assert str(path) in str(err.value)


def test_head_from_a_plain_dict(tmp_path):
    w, b = torch.randn(3, 8), torch.randn(3)
    torch.save({"weight": w, "bias": b}, tmp_path / "head.pt")
    head = load_head(tmp_path / "head.pt")
    assert torch.equal(head.weight, w) and torch.equal(head.bias, b)
    feats = torch.randn(4, 8)
    torch.testing.assert_close(head(feats), (feats / feats.norm(dim=-1, keepdim=True)) @ w.T + b)
    torch.save({"bias": b}, tmp_path / "nohead.pt")
    with pytest.raises(MAPError, match="weight") as err:
        load_head(tmp_path / "nohead.pt")
    assert str(tmp_path / "nohead.pt") in str(err.value)


def test_saved_files_follow_the_umask(tmp_path):
    # mkstemp would leave 0600; a saved checkpoint must be as readable as any new file.
    reference = tmp_path / "reference"
    reference.write_text("x")
    expected = stat.S_IMODE(reference.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert expected == 0o666 & ~umask
    path = save_module(nn.Linear(2, 2), tmp_path / "sub" / "m.pt")
    assert stat.S_IMODE(path.stat().st_mode) == expected
    # Atomic write leaves no temporary file behind.
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]


def test_quickgelu_variant_follows_the_activation():
    quick = nn.Sequential(nn.Linear(2, 2), nn.Sequential(QuickGELU()))
    plain = nn.Sequential(nn.Linear(2, 2), nn.GELU())
    assert quickgelu_variant("ViT-B-32", obj=quick) == "ViT-B-32-quickgelu"
    assert quickgelu_variant("ViT-B-32", obj=plain) == "ViT-B-32"
    assert quickgelu_variant("ViT-B-32", obj={"a": torch.ones(1)}) == "ViT-B-32"
    assert quickgelu_variant("ViT-B-32-quickgelu", obj=quick) == "ViT-B-32-quickgelu"
    # No such open_clip architecture: the name is kept rather than invented.
    assert quickgelu_variant("local-dir:/x", obj=quick) == "local-dir:/x"


def _damaged_files(folder) -> dict[str, tuple]:
    """name -> (path, words the error must say)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.ones(4096)}, folder / "good.pt")
    save_file({"w": torch.ones(4096)}, str(folder / "good.safetensors"))
    pt, st = (folder / "good.pt").read_bytes(), (folder / "good.safetensors").read_bytes()
    garbage = bytes(range(7, 256)) * 16
    files = {"empty.pt": (b"", "empty file"), "empty.safetensors": (b"", "empty file"),
             "truncated.pt": (pt[: len(pt) // 2], "truncated"),
             "truncated.safetensors": (st[: len(st) // 2], "truncated safetensors"),
             "text.pt": (b"<!DOCTYPE html>\n<title>404</title>\n", "text file"),
             "text.safetensors": (b"oid sha256:0123\nsize 42\n", "text file"),
             "garbage.pt": (garbage, "not a torch.save checkpoint"),
             "garbage.safetensors": (garbage, "not a safetensors file"),
             "renamed.pt": (st, "safetensors file under another name")}
    out = {}
    for name, (content, words) in files.items():
        (folder / name).write_bytes(content)
        out[name] = (folder / name, words)
    return out


def test_damaged_files_give_one_line_naming_file_and_problem(tmp_path):
    for name, (path, words) in _damaged_files(tmp_path).items():
        for load in (load_state_dict, load_head):
            with pytest.raises(MAPError) as err:
                load(path)
            message = str(err.value)
            assert message.startswith(f"{path}: "), (name, message)
            assert words in message and "\n" not in message, (name, message)
