"""The task_vectors checkpoint layout as paths: nothing here imports torch, so the run
configuration checks that every file exists before the model layer is loaded."""
from __future__ import annotations

import os
from pathlib import Path

from map_common.errors import MAPError

PathLike = str | os.PathLike


def zeroshot_path(save: PathLike) -> Path:
    return Path(save) / "zeroshot.pt"


def finetuned_path(save: PathLike, dataset: str) -> Path:
    """``<save>/<Dataset>/finetuned.pt``; a ``.safetensors`` file or an HF folder also do."""
    folder = Path(save) / dataset
    for candidate in (folder / "finetuned.pt", folder / "finetuned.safetensors"):
        if candidate.exists():
            return candidate
    if (folder / "config.json").exists():
        return folder
    return folder / "finetuned.pt"


def head_path(save: PathLike, dataset: str) -> Path:
    return Path(save) / f"head_{dataset}.pt"


def require_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise MAPError(f"{what} not found: {path}")
    return path
