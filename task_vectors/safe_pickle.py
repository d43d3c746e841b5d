"""Restricted unpickling of task_vectors checkpoints.

The public task_vectors checkpoints (``zeroshot.pt``, ``<Dataset>/finetuned.pt``,
``head_<Dataset>.pt``) are whole modules written by ``torch.save(module)``. Their classes
live in that project's ``src.modeling`` and in open_clip 2.0.2 / torch 1.12. Unpickling
them needs ``weights_only=False``, which would run any callable a crafted file names, so
``load`` resolves every global through an allow list instead: tensor rebuilding (torch's
own weights-only list), torch.nn modules, open_clip model and preprocessing classes,
torchvision transforms and our ``task_vectors.modeling`` classes. Anything else is
refused with a MAPError before it is imported.

Old objects unpickled into current classes keep their old attributes; read them with
``extract_state_dict`` and load that into a freshly built model rather than running the
unpickled module itself.
"""
from __future__ import annotations

import _compat_pickle
import copyreg
import functools
import importlib
import os
import pickle
import types
import zipfile
from typing import Any

import torch
from torch import nn
from torch._weights_only_unpickler import _get_allowed_globals

from map_common.errors import MAPError

# task_vectors' src.modeling -> ours.
_MODELING = ("ImageEncoder", "ClassificationHead", "ImageClassifier")

# Names older open_clip / torch releases pickled, mapped to where they live now.
_RENAMES: dict[tuple[str, str], tuple[str, str]] = {
    **{("src.modeling", n): ("task_vectors.modeling", n) for n in _MODELING},
    # open_clip < 2.0 kept the transformer pieces in model.py and called the ViT
    # "VisualTransformer"; 2.0 moved them to transformer.py.
    ("open_clip.model", "VisualTransformer"): ("open_clip.transformer", "VisionTransformer"),
    **{("open_clip.model", n): ("open_clip.transformer", n) for n in (
        "LayerNorm", "LayerNormFp32", "QuickGELU", "LayerScale", "PatchDropout", "Attention",
        "ResidualAttentionBlock", "Transformer", "VisionTransformer", "TextTransformer")},
    **{("open_clip.model", n): ("open_clip.modified_resnet", n) for n in (
        "ModifiedResNet", "Bottleneck", "AttentionPool2d")},
    # torch < 1.9 used this for MultiheadAttention.out_proj.
    ("torch.nn.modules.linear", "_LinearWithBias"):
        ("torch.nn.modules.linear", "NonDynamicallyQuantizableLinear"),
}

# Plain functions and builtins a checkpoint may name, beyond torch's weights-only list
# (which covers tensor/storage rebuilding, dtypes, devices, OrderedDict and set).
_EXTRA_GLOBALS = {
    "builtins.object": object,
    "builtins.frozenset": frozenset,
    "builtins.min": min,  # open_clip 2.0's ResizeMaxSize keeps min/max as an attribute
    "builtins.max": max,
    "copyreg._reconstructor": copyreg._reconstructor,  # protocol 0/1 objects
}
_FUNCTIONS = {("open_clip.transform", "_convert_to_rgb")}

# Modules whose nn.Module subclasses may be rebuilt (their constructors only build layers).
_MODULE_PACKAGES = ("torch.nn.modules.", "open_clip.model", "open_clip.transformer",
                    "open_clip.modified_resnet")
_TRANSFORM_MODULES = ("open_clip.transform", "torchvision.transforms")
_ALLOWED_WHAT = ("allowed are torch tensors, torch.nn modules, open_clip models and "
                 "transforms, torchvision transforms and task_vectors.modeling classes")


class MissingTransform(nn.Module):
    """Stand-in for a preprocessing class an older open_clip had and the installed one lacks.

    Unpickling keeps its state so the checkpoint's weights stay readable; calling it fails.
    """

    name = "open_clip.transform.<missing>"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()
        self.args, self.kwargs = args, kwargs

    def forward(self, *args: Any) -> Any:
        raise MAPError(f"{self.name} comes from an older open_clip and is not available; "
                       "use the preprocessing of a freshly built model")


def _missing_transform(name: str) -> type:
    return type(name, (MissingTransform,), {"name": f"open_clip.transform.{name}"})


def _compat_name(module: str, name: str) -> tuple[str, str]:
    # Protocol-2 pickles written by Python 3 use Python 2 names (__builtin__, copy_reg).
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p.rstrip(".") or module.startswith(p.rstrip(".") + ".")
               for p in prefixes)


def resolve_global(module: str, name: str, path: str = "<checkpoint>") -> Any:
    """The object a pickle may reference as ``module.name``; MAPError if not allowed."""
    module, name = _compat_name(module, name)
    module, name = _RENAMES.get((module, name), (module, name))
    full = f"{module}.{name}"
    allowed = _allowed_globals()
    if full in allowed:
        return allowed[full]

    def refuse(reason: str) -> MAPError:
        return MAPError(f"{path}: refusing to unpickle {full}: {reason}")

    in_modules = _under(module, _MODULE_PACKAGES)
    in_transforms = _under(module, _TRANSFORM_MODULES)
    is_modeling = module == "task_vectors.modeling" and name in _MODELING
    is_pil_enum = (module, name) == ("PIL.Image", "Resampling")
    if "." in name or not (in_modules or in_transforms or is_modeling or is_pil_enum):
        raise refuse(f"not on the allow list ({_ALLOWED_WHAT})")
    # Only now import: the module is one of ours or a known library's.
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        if module == "open_clip.transform":
            return _missing_transform(name)
        raise refuse("no such class in the installed libraries") from None
    if (module, name) in _FUNCTIONS:
        return obj
    if not isinstance(obj, type) or not _under(obj.__module__, (module,)):
        raise refuse(f"not a class defined in {module} ({_ALLOWED_WHAT})")
    if in_modules and not issubclass(obj, nn.Module):
        raise refuse("not a torch.nn.Module class")
    return obj


@functools.cache
def _allowed_globals() -> dict[str, Any]:
    # torch's audited list for weights_only loading (tensors, storages, dtypes ...).
    return {**_get_allowed_globals(), **_EXTRA_GLOBALS}


def _pickle_module(path: str) -> types.ModuleType:
    """A stand-in for the ``pickle`` module, as torch.load's ``pickle_module`` expects."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return resolve_global(module, name, path)

    mod = types.ModuleType("task_vectors_restricted_pickle")
    mod.Unpickler = Unpickler
    mod.load = lambda f, **kwargs: Unpickler(f, **kwargs).load()
    mod.UnpicklingError = pickle.UnpicklingError
    return mod


def _format_hint(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{":
        return " (it looks like a safetensors file)"
    return ""


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1] == "constants.pkl" for n in z.namelist())


def load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` a task_vectors checkpoint, resolving globals through the allow list."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MAPError(f"{path}: no such checkpoint file")
    if _is_torchscript(path):
        raise MAPError(f"{path}: a TorchScript archive, not a torch.save checkpoint; "
                       "TorchScript files are not loaded")
    try:
        # A file object, not the path: newer torch would route *.safetensors paths
        # around the pickle module.
        with open(path, "rb") as f:
            return torch.load(f, map_location=map_location, pickle_module=_pickle_module(path),
                              weights_only=False)
    except MAPError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a readable checkpoint"
        raise MAPError(f"{path}: not a readable torch.save checkpoint{_format_hint(path)}: "
                       f"{type(exc).__name__}: {exc}") from None


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Tensors of a loaded checkpoint: a module's state dict, ``obj["state_dict"]``, or
    a plain dict of tensors."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and obj:
        bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
        if not bad:
            return dict(obj)
        raise MAPError(f"{source}: expected a dict of tensors, but entry {bad[0]!r} is "
                       f"{type(obj[bad[0]]).__name__}")
    raise MAPError(f"{source}: expected an nn.Module, a dict with 'state_dict' or a dict of "
                   f"tensors, got {type(obj).__name__}")
