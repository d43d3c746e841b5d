"""Hugging Face CLIP vision folders -> open_clip ImageEncoder keys (task_vectors.hf_clip)."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel,
                          CLIPVisionModelWithProjection)

from map_common.errors import MAPError
from task_vectors import hf_clip
from task_vectors.modeling import ImageEncoder, drop_text_tower

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
            patch_size=8, intermediate_size=128, hidden_act="quick_gelu", projection_dim=16)
# Real sizes of the architectures task_vectors uses, with their open_clip names.
REAL = {
    "ViT-B-32": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     image_size=224, patch_size=32, intermediate_size=3072, projection_dim=512),
    "ViT-B-16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     image_size=224, patch_size=16, intermediate_size=3072, projection_dim=512),
    "ViT-L-14": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     image_size=224, patch_size=14, intermediate_size=4096, projection_dim=768),
}


def open_clip_visual(embed_dim: int, quick_gelu: bool = True) -> torch.nn.Module:
    """An open_clip ViT of the TINY size."""
    return open_clip.model._build_vision_tower(
        embed_dim, dict(image_size=32, patch_size=8, width=64, layers=2, head_width=16,
                        mlp_ratio=2.0), quick_gelu=quick_gelu).eval()


def prefixed(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {hf_clip.PREFIX + k: v for k, v in module.state_dict().items()}


def unprefixed(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(hf_clip.PREFIX):]: v for k, v in sd.items()}


def save_hf(model_cls, tmp_path, name="hf", **overrides):
    torch.manual_seed(0)
    model = model_cls(CLIPVisionConfig(**{**TINY, **overrides})).eval()
    folder = tmp_path / name
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture
def pixels():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_vision_model_matches_pooler_output(tmp_path, pixels):
    hf, folder = save_hf(CLIPVisionModel, tmp_path)
    assert hf_clip.is_hf_clip_folder(folder)
    visual = open_clip_visual(embed_dim=64)
    with torch.no_grad():
        visual.proj.copy_(torch.eye(64))  # compare the pre-projection pooled output
    sd, config = hf_clip.load_hf_clip_vision(folder, reference=prefixed(visual))
    assert config["hidden_act"] == "quick_gelu" and config["num_hidden_layers"] == 2
    assert torch.equal(sd[hf_clip.PREFIX + "proj"], torch.eye(64))  # filled from reference
    visual.load_state_dict(unprefixed(sd), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(visual(pixels), hf(pixel_values=pixels).pooler_output,
                                   rtol=0, atol=1e-4)


def test_gelu_mismatch_changes_the_output(tmp_path, pixels):
    # The activation matters: the same weights in a GELU tower give other features.
    hf, folder = save_hf(CLIPVisionModel, tmp_path)
    visual = open_clip_visual(embed_dim=64, quick_gelu=False)
    with torch.no_grad():
        visual.proj.copy_(torch.eye(64))
    sd, config = hf_clip.load_hf_clip_vision(folder, reference=prefixed(visual))
    assert hf_clip.needs_quick_gelu(config)
    visual.load_state_dict(unprefixed(sd))
    with torch.no_grad():
        diff = (visual(pixels) - hf(pixel_values=pixels).pooler_output).abs().max()
    assert diff > 1e-3


def test_projection_is_mapped(tmp_path, pixels):
    hf, folder = save_hf(CLIPVisionModelWithProjection, tmp_path)
    sd, _ = hf_clip.load_hf_clip_vision(folder)
    assert sd[hf_clip.PREFIX + "proj"].shape == (64, 16)
    visual = open_clip_visual(embed_dim=16)
    visual.load_state_dict(unprefixed(sd), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(visual(pixels), hf(pixel_values=pixels).image_embeds,
                                   rtol=0, atol=1e-4)


@pytest.mark.parametrize("weights_name", ["model.safetensors", "pytorch_model.bin"])
def test_transformers_4_key_prefix_and_bin_weights(tmp_path, weights_name):
    # transformers 4.x saved CLIPVisionModel weights under "vision_model." and often as .bin.
    _, folder = save_hf(CLIPVisionModel, tmp_path)
    plain = load_file(str(folder / "model.safetensors"))
    old = {"vision_model." + k: v.contiguous() for k, v in plain.items()}
    old["vision_model.embeddings.position_ids"] = torch.arange(17)[None]
    (folder / "model.safetensors").unlink()
    if weights_name.endswith(".bin"):
        torch.save(old, folder / weights_name)
    else:
        save_file(old, str(folder / weights_name))
    sd, _ = hf_clip.load_hf_clip_vision(folder)
    expected = hf_clip.convert_state_dict(plain, 2)
    assert sd.keys() == expected.keys()
    assert all(torch.equal(sd[k], expected[k]) for k in sd)


def test_full_clip_model_folder(tmp_path, pixels):
    torch.manual_seed(0)
    config = CLIPConfig(text_config=dict(hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64),
                        vision_config={k: v for k, v in TINY.items() if k != "projection_dim"},
                        projection_dim=16)
    hf = CLIPModel(config).eval()
    hf.save_pretrained(tmp_path / "clip")
    sd, vconfig = hf_clip.load_hf_clip_vision(tmp_path / "clip")
    assert vconfig["projection_dim"] == 16 and vconfig["hidden_size"] == 64
    visual = open_clip_visual(embed_dim=16)
    visual.load_state_dict(unprefixed(sd), strict=True)
    with torch.no_grad():
        expected = hf(pixel_values=pixels,
                      input_ids=torch.zeros(1, 4, dtype=torch.long)).image_embeds
        ours = visual(pixels)
        # CLIPModel returns L2-normalised image embeddings.
        torch.testing.assert_close(ours / ours.norm(dim=-1, keepdim=True), expected,
                                   rtol=0, atol=1e-4)


def test_folder_errors(tmp_path):
    with pytest.raises(MAPError, match="nothing: not a Hugging Face CLIP folder"):
        hf_clip.load_hf_clip_vision(tmp_path / "nothing")
    assert not hf_clip.is_hf_clip_folder(tmp_path / "nothing")
    _, folder = save_hf(CLIPVisionModel, tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    with pytest.raises(MAPError, match=f"{folder}: no weights found"):
        hf_clip.load_hf_clip_vision(folder)

    del weights["encoder.layers.1.self_attn.k_proj.bias"]
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(MAPError, match="layer 1 lacks self_attn.k_proj.bias"):
        hf_clip.load_hf_clip_vision(folder)

    weights["encoder.layers.1.self_attn.k_proj.bias"] = torch.zeros(64)
    weights["encoder.layers.1.self_attn.rel_pos.weight"] = torch.zeros(3)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(MAPError, match="unexpected weight 'encoder.layers.1.self_attn.rel_pos"):
        hf_clip.load_hf_clip_vision(folder)


@pytest.mark.parametrize("change,message", [
    ({"model_type": "bert"}, "unexpected architecture model_type='bert'"),
    ({"hidden_act": "gelu_new"}, "hidden_act='gelu_new' has no open_clip equivalent"),
    ({"num_hidden_layers": 3}, r"missing 12 weights .*resblocks\.2\.attn"),
    ({"patch_size": 4}, "conv1.weight has shape .*config.json implies"),
    ({"layer_norm_eps": 1e-6}, "layer_norm_eps=1e-06 differs"),
])
def test_config_disagreements_are_reported(tmp_path, change, message):
    _, folder = save_hf(CLIPVisionModel, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(MAPError, match=message):
        hf_clip.load_hf_clip_vision(folder)


def test_merge_missing_from_rejects_other_architectures():
    ref = {"model.visual.proj": torch.zeros(4, 2), "model.visual.conv1.weight": torch.zeros(4)}
    sd = {"model.visual.conv1.weight": torch.ones(4)}
    merged = hf_clip.merge_missing_from(sd, ref)
    assert list(merged) == list(ref) and torch.equal(merged["model.visual.conv1.weight"],
                                                     torch.ones(4))
    with pytest.raises(MAPError, match="f: model.visual.conv1.weight has shape \\(5,\\)"):
        hf_clip.merge_missing_from({"model.visual.conv1.weight": torch.ones(5)}, ref, "f")
    with pytest.raises(MAPError, match="model.visual.extra does not exist"):
        hf_clip.merge_missing_from({"model.visual.extra": torch.ones(1)}, ref)


def test_activation_and_architecture_names():
    vit_b32 = {"model_type": "clip_vision_model", **REAL["ViT-B-32"]}
    assert hf_clip.needs_quick_gelu(vit_b32)  # CLIPVisionConfig's default is quick_gelu
    assert hf_clip.open_clip_model_name(vit_b32) == "ViT-B-32-quickgelu"
    assert hf_clip.open_clip_model_name({**vit_b32, "hidden_act": "gelu"}) == "ViT-B-32"
    assert hf_clip.open_clip_model_name({"model_type": "clip", "projection_dim": 768,
                                         "vision_config": REAL["ViT-L-14"]}) == \
        "ViT-L-14-quickgelu"
    assert hf_clip.open_clip_model_name({"model_type": "clip_vision_model", **TINY}) is None
    for name in ("ViT-B-32-quickgelu", "ViT-B-16-quickgelu", "ViT-L-14-quickgelu"):
        assert name in open_clip.list_models()


def meta_encoder_state(name: str) -> dict[str, torch.Tensor]:
    """Keys/shapes of ImageEncoder(name) without materialising weights."""
    with torch.device("meta"):
        clip = open_clip.model.CLIP(**open_clip.get_model_config(name))
    drop_text_tower(clip)
    return {"model." + k: v for k, v in clip.state_dict().items()}


def converted_real_size(name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        hf = CLIPVisionModelWithProjection(CLIPVisionConfig(**REAL[name]))
    return hf_clip.convert_state_dict(hf.state_dict(), REAL[name]["num_hidden_layers"])


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_size_key_map_matches_open_clip(name):
    converted = converted_real_size(name)
    reference = meta_encoder_state(name)
    visual = {k: v for k, v in reference.items() if k.startswith(hf_clip.PREFIX)}
    assert converted.keys() == visual.keys()
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in visual.items()}
    assert hf_clip.merge_missing_from(converted, reference).keys() == reference.keys()


@pytest.fixture(scope="module")
def vit_b32_encoder_state():
    return ImageEncoder("ViT-B-32").state_dict()


def test_vit_b32_image_encoder_keys(vit_b32_encoder_state):
    # The real ImageEncoder: the converted vision keys plus what the merge fills in.
    without_proj = {k: v for k, v in converted_real_size("ViT-B-32").items()
                    if not k.endswith(".proj")}
    visual = {k for k in vit_b32_encoder_state if k.startswith(hf_clip.PREFIX)}
    assert set(without_proj) == visual - {hf_clip.PREFIX + "proj"}
    merged = hf_clip.merge_missing_from(without_proj, vit_b32_encoder_state)
    assert merged.keys() == vit_b32_encoder_state.keys()
    assert merged[hf_clip.PREFIX + "proj"] is vit_b32_encoder_state[hf_clip.PREFIX + "proj"]
