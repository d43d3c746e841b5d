"""Reading and writing checkpoints.

Formats read: task_vectors pickles (whole ``ImageEncoder`` / ``ClassificationHead``
modules, read through a restricted unpickler), ``.pt`` state dicts, ``.safetensors``,
and Hugging Face CLIP vision folders. Written: the task_vectors layout
``<save>/zeroshot.pt``, ``<save>/<Dataset>/finetuned.pt``, ``<save>/head_<Dataset>.pt``.

Why ~310 lines: every checkpoint format's reader and its one-line diagnosis of a
damaged file sit together so that a format is handled in one place.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from map_common.errors import MAPError
from map_common.files import atomic_write
from task_vectors.modeling import ClassificationHead, ImageEncoder

PathLike = str | os.PathLike


# ---------------------------------------------------------------- layout
# (torch-free, in task_vectors/layout.py, so that the config checks files before torch loads)
from task_vectors.layout import (finetuned_path, head_path, require_file,  # noqa: E402,F401
                                  zeroshot_path)


# ---------------------------------------------------------------- writing
def save_atomic(obj: Any, path: PathLike) -> Path:
    """torch.save through a temporary file, so a killed job never leaves half a file."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_module(module: nn.Module, path: PathLike) -> Path:
    """Save a whole module as task_vectors does (``torch.save(module)``), on the CPU."""
    return save_atomic(module.cpu(), path)


# ---------------------------------------------------------------- damaged files
def _looks_like_text(head: bytes) -> bool:
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            text = head[:len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return bool(text) and all(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return False


def _safetensors_problem(path: Path, head: bytes, size: int) -> str | None:
    import json

    if size < 8:
        return f"too short for a safetensors file ({size} bytes)"
    n = int.from_bytes(head[:8], "little")
    if head[8:9] != b"{":
        hint = " (it looks like a torch.save checkpoint)" if head.startswith(b"PK") else ""
        return f"not a safetensors file: no JSON header after the first 8 bytes{hint}"
    if 8 + n > size:
        return f"truncated safetensors file: its header alone needs {8 + n} bytes, " \
               f"the file has {size}"
    with open(path, "rb") as f:
        f.seek(8)
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items()
                       if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "not a safetensors file: its header is not valid safetensors JSON"
    if 8 + n + end > size:
        return f"truncated safetensors file: {size} bytes of the {8 + n + end} its " \
               "header describes"
    return None


def file_problem(path: PathLike) -> str | None:
    """What is visibly wrong with a checkpoint file, from its size and first bytes (empty,
    truncated, text, not the format its name says), or None."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(4096)
    if _looks_like_text(head):
        return f"a text file ({size} bytes), not a checkpoint"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path, head, size)
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        return f"truncated or damaged torch.save archive ({size} bytes); save or copy it again"
    if head[8:9] == b"{" and not head.startswith(b"PK"):
        return "a safetensors file under another name; name it *.safetensors"
    if not head.startswith(b"PK") and head[:1] != b"\x80":
        return "not a torch.save checkpoint (neither a zip archive nor a pickle)"
    return None


def _unreadable(path: Path, exc: Exception) -> MAPError:
    """One line naming the file: the visible problem if there is one, else the error's
    first line."""
    problem = file_problem(path)
    if problem:
        return MAPError(f"{path}: {problem}")
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return MAPError(lines[0])


# ---------------------------------------------------------------- reading
def load_object(path: PathLike) -> Any:
    """Unpickle a ``.pt`` file through the restricted unpickler (no arbitrary code)."""
    from task_vectors import safe_pickle

    path = require_file(path, "checkpoint")
    if path.is_file() and path.stat().st_size == 0:
        raise MAPError(f"{path}: empty file (0 bytes)")
    try:
        return safe_pickle.load(str(path), map_location="cpu")
    except MAPError as exc:
        raise _unreadable(path, exc) from None


def normalize_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Key names as in our ImageEncoder's state dict (``model.visual...``)."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    if any(k.startswith("visual.") for k in state_dict) and not any(
            k.startswith("model.") for k in state_dict):
        state_dict = {f"model.{k}": v for k, v in state_dict.items()}
    return dict(state_dict)


def load_state_dict(path: PathLike, reference: Mapping[str, torch.Tensor] | None = None
                    ) -> dict[str, torch.Tensor]:
    """The weights stored at ``path`` (any supported format) under our key names.

    ``reference`` (the pretrained encoder's state dict) fills weights a format does not
    carry, such as the visual projection of a Hugging Face ``CLIPVisionModel``.
    """
    path = require_file(path, "checkpoint")
    if path.is_dir():
        from task_vectors import hf_clip

        if not hf_clip.is_hf_clip_folder(path):
            raise MAPError(f"{path}: a folder checkpoint must be a Hugging Face CLIP model "
                           "(config.json + model.safetensors or pytorch_model.bin)")
        state_dict, _ = hf_clip.load_hf_clip_vision(path)
        if reference is not None:
            state_dict = hf_clip.merge_missing_from(state_dict, reference)
        return state_dict
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return normalize_keys(load_file(str(path)))
        except Exception as exc:  # safetensors raises its own error types
            raise _unreadable(path, MAPError(
                f"{path}: not a readable safetensors file ({exc})")) from None
    from task_vectors import safe_pickle

    return normalize_keys(safe_pickle.extract_state_dict(load_object(path)))


def encoder_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image-encoder part of a state dict (text-tower weights are ignored)."""
    return {k: v for k, v in state_dict.items()
            if k.startswith("model.visual.") or k == "model.logit_scale"}


def check_compatible(reference: Mapping[str, torch.Tensor],
                     state_dict: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """MAPError naming the file when its weights do not fit the pretrained model."""
    ref = {k for k, v in reference.items() if k.startswith("model.visual.")}
    got = {k for k in state_dict if k.startswith("model.visual.")}
    missing, unexpected = sorted(ref - got), sorted(got - ref)
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise MAPError(f"{path}: keys do not match the pretrained model: {'; '.join(detail)}")
    for k in sorted(ref):
        if tuple(reference[k].shape) != tuple(state_dict[k].shape):
            raise MAPError(f"{path}: weight '{k}' has shape {tuple(state_dict[k].shape)}, "
                           f"the pretrained model has {tuple(reference[k].shape)}")


def uses_quick_gelu(module: nn.Module) -> bool:
    """Whether a built model has QuickGELU activations (OpenAI CLIP's)."""
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in module.modules())


def hf_needs_quick_gelu(folder: PathLike) -> bool:
    """Whether a Hugging Face CLIP folder's config asks for QuickGELU activations."""
    import json

    from task_vectors import hf_clip

    config = json.loads((Path(folder) / "config.json").read_text())
    return hf_clip.needs_quick_gelu(hf_clip.vision_config(config, str(folder)))


def check_activation(encoder: ImageEncoder, finetuned_paths: Iterable[PathLike]) -> None:
    """A Hugging Face checkpoint says whether it needs QuickGELU; a pretrained state dict
    does not. Mixing the two activations gives wrong features silently, so refuse it."""
    has_quick = uses_quick_gelu(encoder)
    for path in map(Path, finetuned_paths):
        if not (path / "config.json").is_file():
            continue
        needs_quick = hf_needs_quick_gelu(path)
        if needs_quick != has_quick:
            want = "QuickGELU" if needs_quick else "GELU"
            raise MAPError(f"{path} was trained with {want} activations but the pretrained "
                           f"model ({encoder.model_name}) uses "
                           f"{'QuickGELU' if has_quick else 'GELU'}; pass --model "
                           f"{encoder.model_name.removesuffix('-quickgelu')}"
                           f"{'-quickgelu' if needs_quick else ''}")


def quickgelu_variant(model_name: str, obj: Any = None, hf_folder: PathLike | None = None
                      ) -> str:
    """OpenAI CLIP weights (task_vectors pickles, HF checkpoints) need QuickGELU; open_clip's
    plain ``ViT-B-32`` builds GELU and would silently give wrong features."""
    import open_clip

    wants_quick = False
    if hf_folder is not None:
        wants_quick = hf_needs_quick_gelu(hf_folder)
    elif isinstance(obj, nn.Module):
        wants_quick = uses_quick_gelu(obj)
    quick = f"{model_name}-quickgelu"
    if wants_quick and not model_name.endswith("-quickgelu") and quick in open_clip.list_models():
        return quick
    return model_name


def load_encoder(path: PathLike, model_name: str, *, openclip_cachedir: str | None = None
                 ) -> ImageEncoder:
    """The pretrained image encoder.

    A pickle of our own current ImageEncoder is used as it is; anything else (a legacy
    task_vectors pickle, a state dict, safetensors, an HF folder) is loaded into a freshly
    built ``model_name`` architecture, so old pickled internals never run.
    """
    path = require_file(path, "pretrained checkpoint")
    if path.is_file() and path.suffix != ".safetensors":
        obj = load_object(path)
        if isinstance(obj, ImageEncoder) and getattr(obj, "model_name", None):
            return obj
        from task_vectors import safe_pickle

        state_dict = normalize_keys(safe_pickle.extract_state_dict(obj))
        model_name = quickgelu_variant(model_name, obj=obj)
    else:
        state_dict = None
        if path.is_dir():
            model_name = quickgelu_variant(model_name, hf_folder=path)
    encoder = ImageEncoder(model_name, openclip_cachedir=openclip_cachedir)
    own = encoder.state_dict()
    if state_dict is None:
        state_dict = load_state_dict(path, reference=own)
    state_dict = encoder_keys(state_dict)
    check_compatible(own, state_dict, path)
    encoder.load_state_dict(state_dict, strict=False)
    return encoder


def load_head(path: PathLike) -> ClassificationHead:
    """A classification head: a pickled ClassificationHead or a dict with weight (+bias)."""
    path = require_file(path, "classification head")
    obj = load_object(path)
    if isinstance(obj, ClassificationHead):
        return obj
    from task_vectors import safe_pickle

    state = safe_pickle.extract_state_dict(obj)
    if "weight" not in state:
        raise MAPError(f"{path}: not a classification head (no 'weight' tensor)")
    normalize = bool(getattr(obj, "normalize", True))
    return ClassificationHead(normalize, state["weight"], state.get("bias"))
