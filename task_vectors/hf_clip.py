"""Hugging Face CLIP vision checkpoints -> the state dict of our ImageEncoder.

The public fine-tuned CLIP ViT models for the 8 tasks are ``transformers`` folders
(``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``) of a
``CLIPVisionModel``: the vision tower without its projection, which stays the pretrained
one. This module reads such folders without importing transformers and renames the
weights into open_clip's layout (``model.visual.*``, as keys of ``ImageEncoder``);
``merge_missing_from`` then takes the projection (and anything else the encoder has but
the folder lacks) from the pretrained encoder.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

import torch

from map_common.errors import MAPError

PREFIX = "model.visual."

# CLIPVisionConfig defaults, for configs saved without some fields.
_VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 32,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 512,
}
# open_clip's LayerNorm uses torch's default eps.
_OPEN_CLIP_LN_EPS = 1e-5

# Known open_clip architectures: (hidden, layers, heads, patch, image, intermediate, proj).
_OPEN_CLIP_NAMES = {
    (768, 12, 12, 32, 224, 3072, 512): "ViT-B-32",
    (768, 12, 12, 16, 224, 3072, 512): "ViT-B-16",
    (1024, 24, 16, 14, 224, 4096, 768): "ViT-L-14",
    (1024, 24, 16, 14, 336, 4096, 768): "ViT-L-14-336",
}

_TOP_LEVEL = {
    "embeddings.class_embedding": "class_embedding",
    "embeddings.patch_embedding.weight": "conv1.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "pre_layrnorm.weight": "ln_pre.weight",
    "pre_layrnorm.bias": "ln_pre.bias",
    "post_layernorm.weight": "ln_post.weight",
    "post_layernorm.bias": "ln_post.bias",
}
_IN_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "layer_norm2": "ln_2",
}
_LAYER_RE = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_QKV_RE = re.compile(r"self_attn\.([qkv])_proj$")
# Keys of a CLIPModel / older checkpoints that carry nothing for the vision encoder.
_IGNORED = re.compile(r"^(text_model\.|text_projection\.|logit_scale$|"
                      r"embeddings\.position_ids$)")


def is_hf_clip_folder(path: str | os.PathLike) -> bool:
    """True for a folder with a CLIP ``config.json`` (vision model or full CLIP)."""
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return False
    try:
        with open(config) as f:
            model_type = json.load(f).get("model_type")
    except (OSError, ValueError):
        return False
    return model_type in ("clip_vision_model", "clip")


def vision_config(config: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """The vision part of a CLIPVisionConfig / CLIPConfig dict, with defaults filled in."""
    model_type = config.get("model_type")
    if model_type == "clip":
        vision = dict(config.get("vision_config") or {})
        # A CLIPModel's projection size is the top-level one (the nested default is unused).
        if config.get("projection_dim") is not None:
            vision["projection_dim"] = config["projection_dim"]
    elif model_type == "clip_vision_model":
        vision = dict(config)
    else:
        raise MAPError(f"{source}: unexpected architecture model_type={model_type!r}; "
                       "expected a CLIP vision model ('clip_vision_model' or 'clip')")
    return {**_VISION_DEFAULTS, **vision}


def needs_quick_gelu(config: Mapping[str, Any], source: str = "config") -> bool:
    """Whether the open_clip model must use QuickGELU (OpenAI CLIP does; open_clip's
    ``ViT-B-32`` uses nn.GELU unless built as ``ViT-B-32-quickgelu`` / force_quick_gelu)."""
    if "model_type" in config:
        config = vision_config(config, source)
    act = config.get("hidden_act", _VISION_DEFAULTS["hidden_act"])
    if act not in ("quick_gelu", "gelu"):
        raise MAPError(f"{source}: hidden_act={act!r} has no open_clip equivalent; "
                       "expected 'quick_gelu' or 'gelu'")
    return act == "quick_gelu"


def open_clip_model_name(config: Mapping[str, Any], source: str = "config") -> str | None:
    """The open_clip architecture (``ViT-B-32-quickgelu`` ...) matching a HF vision config,
    or None when it is none of the known ones."""
    v = vision_config(config, source) if "model_type" in config else {**_VISION_DEFAULTS,
                                                                        **config}
    key = tuple(v[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                               "patch_size", "image_size", "intermediate_size",
                               "projection_dim"))
    name = _OPEN_CLIP_NAMES.get(key)
    if name is None:
        return None
    return name + "-quickgelu" if needs_quick_gelu(v, source) else name


def convert_state_dict(hf_state: Mapping[str, torch.Tensor], num_layers: int | None = None,
                       source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename a CLIPVisionModel(/WithProjection)/CLIPModel state dict into open_clip's
    ``model.visual.*`` keys; q/k/v projections become one ``in_proj`` [q; k; v]."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        k = key[len("vision_model."):] if key.startswith("vision_model.") else key
        if _IGNORED.match(k):
            continue
        if k in _TOP_LEVEL:
            out[PREFIX + _TOP_LEVEL[k]] = value
        elif k == "visual_projection.weight":  # Linear(width -> embed) vs open_clip's x @ proj
            out[PREFIX + "proj"] = value.t().contiguous()
        elif (m := _LAYER_RE.match(k)) and (m.group(2) in _IN_LAYER or _QKV_RE.match(m.group(2))):
            layer, module, kind = int(m.group(1)), m.group(2), m.group(3)
            if q := _QKV_RE.match(module):
                qkv.setdefault((layer, kind), {})[q.group(1)] = value
            else:
                out[f"{PREFIX}transformer.resblocks.{layer}.{_IN_LAYER[module]}.{kind}"] = value
        else:
            raise MAPError(f"{source}: unexpected weight {key!r} for a CLIP vision transformer")
    for (layer, kind), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            missing = sorted({"q", "k", "v"} - set(parts))
            raise MAPError(f"{source}: layer {layer} lacks self_attn.{missing[0]}_proj.{kind}")
        name = "in_proj_weight" if kind == "weight" else "in_proj_bias"
        out[f"{PREFIX}transformer.resblocks.{layer}.attn.{name}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]], dim=0)
    _check_complete(out, num_layers, source)
    return out


def _expected_keys(num_layers: int) -> set[str]:
    per_layer = [f"{m}.{k}" for m in ("ln_1", "attn.out_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
                 for k in ("weight", "bias")] + ["attn.in_proj_weight", "attn.in_proj_bias"]
    keys = {PREFIX + v for v in _TOP_LEVEL.values()}
    keys |= {f"{PREFIX}transformer.resblocks.{i}.{p}" for i in range(num_layers)
             for p in per_layer}
    return keys


def _check_complete(out: Mapping[str, torch.Tensor], num_layers: int | None,
                    source: str) -> None:
    layers = {int(k.split(".")[4]) for k in out if k.startswith(PREFIX + "transformer.")}
    n = num_layers if num_layers is not None else len(layers)
    if layers - set(range(n)):
        raise MAPError(f"{source}: found encoder layers {sorted(layers)}, the config says {n}")
    missing = sorted(_expected_keys(n) - set(out))
    if missing:
        raise MAPError(f"{source}: missing {len(missing)} weights of a CLIP vision "
                       f"transformer, e.g. {missing[0]}")


def _check_shapes(sd: Mapping[str, torch.Tensor], v: Mapping[str, Any], source: str) -> None:
    width, patch, image = v["hidden_size"], v["patch_size"], v["image_size"]
    expected = {
        PREFIX + "conv1.weight": (width, v["num_channels"], patch, patch),
        PREFIX + "positional_embedding": ((image // patch) ** 2 + 1, width),
        PREFIX + "class_embedding": (width,),
        PREFIX + "transformer.resblocks.0.mlp.c_fc.weight": (v["intermediate_size"], width),
    }
    for key, shape in expected.items():
        if tuple(sd[key].shape) != shape:
            raise MAPError(f"{source}: {key} has shape {tuple(sd[key].shape)}, but config.json "
                           f"implies {shape}")


def _read_weights(folder: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    def torch_file(path: str) -> dict[str, torch.Tensor]:
        return torch.load(path, map_location="cpu", weights_only=True)

    for name, reader in (("model.safetensors", load_file), ("pytorch_model.bin", torch_file)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return dict(reader(path))
        index = path + ".index.json"
        if os.path.isfile(index):  # sharded checkpoint
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            out: dict[str, torch.Tensor] = {}
            for shard in shards:
                out.update(reader(os.path.join(folder, shard)))
            return out
    raise MAPError(f"{folder}: no weights found; expected model.safetensors or "
                   "pytorch_model.bin (or their sharded .index.json)")


def load_hf_clip_vision(folder: str | os.PathLike,
                        reference: Mapping[str, torch.Tensor] | None = None
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a HF CLIP vision folder: (state dict in ImageEncoder keys, vision config).

    Without a projection in the folder, ``model.visual.proj`` is absent; pass the
    pretrained encoder's state dict as ``reference`` to fill it (and any other key the
    folder lacks) from there.
    """
    folder = os.fspath(folder)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise MAPError(f"{folder}: not a Hugging Face CLIP folder (no config.json)")
    try:
        with open(config_path) as f:
            raw = json.load(f)
    except ValueError as exc:
        raise MAPError(f"{config_path}: not valid JSON: {exc}") from None
    v = vision_config(raw, config_path)
    needs_quick_gelu(v, config_path)  # reject activations open_clip cannot express
    if abs(float(v["layer_norm_eps"]) - _OPEN_CLIP_LN_EPS) > 1e-12:
        raise MAPError(f"{config_path}: layer_norm_eps={v['layer_norm_eps']} differs from "
                       f"open_clip's {_OPEN_CLIP_LN_EPS}")
    sd = convert_state_dict(_read_weights(folder), v["num_hidden_layers"], folder)
    _check_shapes(sd, v, folder)
    if reference is not None:
        sd = merge_missing_from(sd, reference, source=folder)
    return sd, v


def merge_missing_from(state_dict: Mapping[str, torch.Tensor],
                       reference: Mapping[str, torch.Tensor],
                       source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``state_dict`` completed with the keys only ``reference`` has (e.g. the pretrained
    ``model.visual.proj`` and ``model.logit_scale``); keys and shapes must agree."""
    extra = sorted(set(state_dict) - set(reference))
    if extra:
        raise MAPError(f"{source}: weight {extra[0]} does not exist in the pretrained model "
                       "(different architecture?)")
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(reference[key].shape):
            raise MAPError(f"{source}: {key} has shape {tuple(value.shape)}, the pretrained "
                           f"model has {tuple(reference[key].shape)} (different architecture?)")
    return {key: state_dict.get(key, ref) for key, ref in reference.items()}
