"""Image encoder, classification head and classifier.

Attribute names follow the task_vectors project's classes of the same names
(``model``, ``train_preprocess``, ``val_preprocess``, ``cache_dir``; ``normalize``,
``weight``, ``bias``) so that its public pickled checkpoints map onto these classes.
"""
from __future__ import annotations

from typing import Any

import open_clip
import torch
from torch import nn

from map_common.errors import MAPError

# Everything of an open_clip CLIP that belongs to the text tower.
TEXT_TOWER_ATTRS = ("transformer", "token_embedding", "positional_embedding", "ln_final",
                    "text_projection", "attn_mask")


def create_clip(model_name: str, *, pretrained: str | None = None,
                cache_dir: str | None = None) -> tuple[nn.Module, Any, Any]:
    """Build an open_clip model + (train, val) transforms without touching the network.

    ``model_name`` is an open_clip architecture (``ViT-B-32``) or ``local-dir:<folder>``
    holding ``open_clip_config.json`` (and optionally weights).
    """
    try:
        model, train_pre, val_pre = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, cache_dir=cache_dir)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        raise MAPError(f"cannot build open_clip model '{model_name}': {exc}") from None
    return model, train_pre, val_pre


class ImageEncoder(nn.Module):
    """An open_clip CLIP used as image encoder; the text tower is dropped unless kept."""

    def __init__(self, model_name: Any = "ViT-B-32", keep_lang: bool = False, *,
                 pretrained: str | None = None, cache_dir: str | None = None,
                 openclip_cachedir: str | None = None):
        super().__init__()
        if not isinstance(model_name, str):  # task_vectors style: ImageEncoder(args)
            args = model_name
            model_name = args.model
            cache_dir = getattr(args, "cache_dir", cache_dir)
            openclip_cachedir = getattr(args, "openclip_cachedir", openclip_cachedir)
        self.model_name = model_name
        self.model, self.train_preprocess, self.val_preprocess = create_clip(
            model_name, pretrained=pretrained, cache_dir=openclip_cachedir)
        self.cache_dir = cache_dir
        if not keep_lang:
            drop_text_tower(self.model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)



def drop_text_tower(model: nn.Module) -> None:
    for name in TEXT_TOWER_ATTRS:
        if hasattr(model, name):
            delattr(model, name)


class ClassificationHead(nn.Linear):
    """Optional L2 normalisation of the features, then a linear layer."""

    def __init__(self, normalize: bool, weights: torch.Tensor, biases: torch.Tensor | None = None):
        output_size, input_size = weights.shape
        super().__init__(input_size, output_size)
        self.normalize = normalize
        self.weight = nn.Parameter(weights.detach().clone())
        if biases is not None:
            self.bias = nn.Parameter(biases.detach().clone())
        else:
            self.bias = nn.Parameter(torch.zeros_like(self.bias))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            inputs = inputs / inputs.norm(dim=-1, keepdim=True)
        return super().forward(inputs)



class ImageClassifier(nn.Module):
    """Encoder + head, with the encoder's preprocessing."""

    def __init__(self, image_encoder: ImageEncoder, classification_head: ClassificationHead):
        super().__init__()
        self.image_encoder = image_encoder
        self.classification_head = classification_head
        if image_encoder is not None:
            self.train_preprocess = image_encoder.train_preprocess
            self.val_preprocess = image_encoder.val_preprocess

    def freeze_head(self) -> None:
        self.classification_head.weight.requires_grad_(False)
        self.classification_head.bias.requires_grad_(False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classification_head(self.image_encoder(inputs))

