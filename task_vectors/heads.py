"""Zero-shot classification heads from the CLIP text tower.

One batched pass over class names x templates, as open_clip's zero_shot_classifier does;
heads are cached as ``head_<Dataset>.pt`` under --save, tagged with the model they came
from so a different model never reuses them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import open_clip
import torch
from torch import nn

from src.errors import MAPError
from task_vectors.checkpoints import head_path, load_head, save_module
from task_vectors.modeling import ClassificationHead, ImageEncoder


def text_tower_key(model_name: str, clip_model: nn.Module) -> str:
    """Identifies the text tower a head was built from: architecture + weight digest."""
    digest = hashlib.sha1()
    with torch.no_grad():
        for name, tensor in sorted(clip_model.state_dict().items()):
            if not name.startswith("visual."):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
                digest.update(str(float(tensor.detach().float().sum())).encode())
    return f"{model_name}:{digest.hexdigest()[:16]}"


@torch.no_grad()
def zero_shot_weights(clip_model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                      templates: Sequence[Callable[[str], str]], *, device: str = "cpu",
                      batch_size: int = 512) -> torch.Tensor:
    """[n_classes, embed_dim]: per class, the mean of normalised template embeddings,
    renormalised and scaled by the logit scale."""
    clip_model = clip_model.to(device).eval()
    texts = [template(name) for name in classnames for template in templates]
    embeddings = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[start:start + batch_size]).to(device)
        emb = clip_model.encode_text(tokens)
        embeddings.append(emb / emb.norm(dim=-1, keepdim=True))
    emb = torch.cat(embeddings).reshape(len(classnames), len(templates), -1).mean(dim=1)
    emb = emb / emb.norm(dim=-1, keepdim=True)
    return emb * clip_model.logit_scale.exp()


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

    Heads without a tag (e.g. the public task_vectors heads) are trusted as they are.
    """
    from task_vectors.datasets.registry import get_dataset

    path = head_path(save, dataset_name)
    encoder = None
    if path.exists():
        head = load_head(path)
        tag = getattr(head, "model_key", None)
        if tag is None:
            return head
        encoder = _text_encoder(model_name, openclip_cachedir)
        if tag == text_tower_key(model_name, encoder.model):
            return head
    if encoder is None:
        encoder = _text_encoder(model_name, openclip_cachedir)
    dataset = get_dataset(dataset_name, data_location)
    tokenizer = open_clip.get_tokenizer(text_tower_source(model_name)[0])
    head = build_head(encoder.model, tokenizer, dataset.classnames, dataset.templates,
                      device=device)
    head.model_key = text_tower_key(model_name, encoder.model)
    save_module(head, path)
    return head
