"""Zero-shot classification heads from the CLIP text tower.

One batched pass over class names x templates, as open_clip's zero_shot_classifier does;
heads are cached as ``head_<Dataset>.pt`` under --save, tagged with the model they came
from so a different model never reuses them.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable, Sequence

import open_clip
import torch
from torch import nn

from map_common.errors import MAPError
from task_vectors.checkpoints import head_path, load_head, save_module
from task_vectors.modeling import ClassificationHead, ImageEncoder

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def model_key(model_name: str) -> str:
    """Identifies the text tower heads of ``model_name`` come from, without building it.

    An architecture name means its pretrained tag's weights (``ViT-B-32-quickgelu:openai``).
    A local folder is named by the bytes of its config and weight files, not by its path
    (the demo zoo is built in a staging folder and renamed), so a folder with other weights
    never reuses a head, and the same weights anywhere always do.
    """
    name, pretrained = text_tower_source(model_name)
    if pretrained is not None:
        return f"{name}:{pretrained}"
    folder = Path(model_name[len("local-dir:"):])
    digest = hashlib.sha1()
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.name.endswith(".json") or path.suffix in WEIGHT_SUFFIXES):
            digest.update(path.name.encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return f"local-dir:{digest.hexdigest()[:16]}"


@torch.no_grad()
def zero_shot_weights(clip_model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                      templates: Sequence[Callable[[str], str]], *, device: str = "cpu",
                      classes_per_batch: int = 32) -> torch.Tensor:
    """[n_classes, embed_dim]: per class, the mean of normalised template embeddings,
    renormalised (open_clip's zero-shot classifier), scaled by the logit scale as
    task_vectors' heads are."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    clip_model = clip_model.to(device).eval()
    weights = build_zero_shot_classifier(clip_model, tokenizer, list(classnames), list(templates),
                                         num_classes_per_batch=classes_per_batch, device=device)
    return weights.T * clip_model.logit_scale.exp()


def build_head(clip_model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
               templates: Sequence[Callable[[str], str]], *, device: str = "cpu"
               ) -> ClassificationHead:
    weights = zero_shot_weights(clip_model, tokenizer, classnames, templates, device=device)
    return ClassificationHead(normalize=True, weights=weights.cpu())


def text_tower_source(model_name: str) -> tuple[str, str | None]:
    """(open_clip model name, pretrained tag) whose text tower builds zero-shot heads.

    A local model folder carries its own weights. For an architecture name the text tower
    must be the pretrained CLIP one (task_vectors uses OpenAI's weights, which need
    QuickGELU); a randomly initialised text tower would give meaningless heads.
    """
    if model_name.startswith("local-dir:"):
        return model_name, None
    base = model_name.removesuffix("-quickgelu")
    if "openai" in open_clip.list_pretrained_tags_by_model(f"{base}-quickgelu"):
        return f"{base}-quickgelu", "openai"
    if open_clip.list_pretrained_tags_by_model(model_name):
        return model_name, open_clip.list_pretrained_tags_by_model(model_name)[0]
    raise MAPError(f"no pretrained text tower is known for model '{model_name}'; put "
                   "head_<Dataset>.pt files under --save")


@functools.lru_cache(maxsize=1)  # one CLIP build serves every missing head of a run
def _text_encoder(model_name: str, openclip_cachedir: str | None) -> ImageEncoder:
    name, pretrained = text_tower_source(model_name)
    try:
        return ImageEncoder(name, keep_lang=True, pretrained=pretrained,
                            openclip_cachedir=openclip_cachedir)
    except MAPError as exc:
        raise MAPError(f"building zero-shot heads needs the '{pretrained}' weights of {name} "
                       f"(in --openclip-cachedir, or downloadable): {exc}") from None


def get_zero_shot_head(dataset_name: str, model_name: str, save: str | Path,
                       data_location: str, *, device: str = "cpu",
                       openclip_cachedir: str | None = None) -> ClassificationHead:
    """``head_<Dataset>.pt`` under ``save`` if it was built for this model, else build it.

    Heads without a tag (e.g. the public task_vectors heads) are trusted as they are; a
    tagged head is checked against ``model_key`` (cheap: nothing is built to check it).
    """
    from task_vectors.datasets.registry import get_dataset

    path = head_path(save, dataset_name)
    if path.exists():
        head = load_head(path)
        tag = getattr(head, "model_key", None)
        if tag is None or tag == model_key(model_name):
            return head
    key = model_key(model_name)
    encoder = _text_encoder(model_name, openclip_cachedir)
    dataset = get_dataset(dataset_name, data_location)
    tokenizer = open_clip.get_tokenizer(text_tower_source(model_name)[0])
    head = build_head(encoder.model, tokenizer, dataset.classnames, dataset.templates,
                      device=device)
    head.model_key = key
    save_module(head, path)
    return head


def release_text_encoder() -> None:
    """Free the CLIP kept for building heads (call once every head is built)."""
    _text_encoder.cache_clear()
