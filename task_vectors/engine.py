"""MergeEngine: holds theta_pre and every tau_i once and writes theta(c) into one live model.

theta(c) = theta_pre + sum_i c_i tau_i is one matrix-vector product over flat weights,
copied into the live encoder's parameters in place: no deepcopy, no load_state_dict and
nothing read from disk per evaluated point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T_
from tqdm.auto import tqdm

from map_common.errors import MAPError
from task_vectors.modeling import ClassificationHead, ImageEncoder
from task_vectors.task_vector import is_mergeable


@dataclass
class EvalTensors:
    """A decoded evaluation set: uint8 images after resize/crop, normalised on the fly."""

    images: torch.Tensor  # [N, 3, H, W] uint8
    labels: torch.Tensor  # [N] int64
    mean: torch.Tensor    # [3]
    std: torch.Tensor     # [3]

    def to(self, device: str | torch.device) -> "EvalTensors":
        return EvalTensors(self.images.to(device), self.labels.to(device),
                           self.mean.to(device), self.std.to(device))

    def batches(self, batch_size: int, order: torch.Tensor | None = None
                ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised (images, labels) batches, in stored order or in ``order``."""
        mean = self.mean.view(1, -1, 1, 1)
        std = self.std.view(1, -1, 1, 1)
        for start in range(0, len(self.labels), batch_size):
            idx = slice(start, start + batch_size) if order is None else \
                order[start:start + batch_size]
            x = self.images[idx].float().div_(255.0)
            yield (x - mean) / std, self.labels[idx]


def split_normalize(preprocess: T_.Compose) -> tuple[T_.Compose, torch.Tensor, torch.Tensor]:
    """Cut the trailing Normalize off a preprocessing pipeline, so images can be kept as
    uint8 (4x less memory) and normalised on the device, with identical values."""
    steps = list(getattr(preprocess, "transforms", [preprocess]))
    if not steps or not isinstance(steps[-1], T_.Normalize):
        raise MAPError("the model's val_preprocess must end with a Normalize transform")
    norm = steps[-1]
    return (T_.Compose(steps[:-1]), torch.tensor(norm.mean, dtype=torch.float32),
            torch.tensor(norm.std, dtype=torch.float32))


class _Uint8Collate:
    """Resize/crop a batch of (PIL, label) and keep it as uint8 (a class, not a closure,
    so DataLoader workers can receive it under any start method)."""

    def __init__(self, geometric: T_.Compose):
        self.geometric = geometric

    def __call__(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([(self.geometric(img) * 255.0).round().to(torch.uint8)
                              for img, _ in items])
        return images, torch.tensor([int(label) for _, label in items], dtype=torch.int64)


def default_workers(n_images: int) -> int:
    """Worker processes worth starting: none for small sets (forking costs more than it
    saves), else up to 8 of the CPUs this process may use (SLURM's --cpus-per-task)."""
    import os

    if n_images < 1024:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(8, max(0, (cpus or 1) - 1))


def decode_dataset(dataset: torch.utils.data.Dataset, preprocess: T_.Compose, *,
                   max_samples: int | None = None, num_workers: int | None = None,
                   batch_size: int = 256, desc: str = "decoding") -> EvalTensors:
    """Read and preprocess every image once into one uint8 tensor."""
    geometric, mean, std = split_normalize(preprocess)
    if max_samples is not None and max_samples < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(max_samples))
    if num_workers is None:
        num_workers = default_workers(len(dataset))

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers,
                                         collate_fn=_Uint8Collate(geometric))
    images, labels = [], []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=len(loader) < 4):
        images.append(x)
        labels.append(y)
    if not images:
        raise MAPError(f"{desc}: the evaluation set is empty")
    return EvalTensors(torch.cat(images), torch.cat(labels), mean, std)


def cached_decode(dataset_name: str, data_location: str, preprocess: T_.Compose, *,
                  cache_dir: str | None = None, max_samples: int | None = None,
                  num_workers: int | None = None) -> EvalTensors:
    """decode_dataset of a registry dataset's test split, optionally cached on disk
    (``--cache-dir``) under a key of the dataset, its location, the preprocessing and the
    sample cap, so a second run skips reading and resizing the images."""
    import hashlib
    import os

    from task_vectors.checkpoints import save_atomic
    from task_vectors.datasets.registry import get_dataset

    path = None
    if cache_dir:
        key = hashlib.sha1(repr((dataset_name, os.path.abspath(data_location), repr(preprocess),
                                 max_samples)).encode()).hexdigest()[:16]
        path = os.path.join(cache_dir, f"eval_{dataset_name}_{key}.pt")
        if os.path.exists(path):
            stored = torch.load(path, map_location="cpu", weights_only=True)
            return EvalTensors(**stored)
    split = get_dataset(dataset_name, data_location).split("test")
    data = decode_dataset(split, preprocess, max_samples=max_samples, num_workers=num_workers,
                          desc=f"decoding {dataset_name}")
    if path:
        save_atomic({"images": data.images, "labels": data.labels, "mean": data.mean,
                     "std": data.std}, path)
    return data


def check_activation(encoder: ImageEncoder, finetuned_paths: Iterable[str]) -> None:
    """A Hugging Face checkpoint says whether it needs QuickGELU; a pretrained state dict
    does not. Mixing the two activations gives wrong features silently, so refuse it."""
    import json
    from pathlib import Path

    from open_clip.transformer import QuickGELU

    from task_vectors import hf_clip

    has_quick = any(isinstance(m, QuickGELU) for m in encoder.modules())
    for path in map(Path, finetuned_paths):
        if not (path / "config.json").is_file():
            continue
        config = json.loads((path / "config.json").read_text())
        needs_quick = hf_clip.needs_quick_gelu(hf_clip.vision_config(config, str(path)))
        if needs_quick != has_quick:
            want = "QuickGELU" if needs_quick else "GELU"
            raise MAPError(f"{path} was trained with {want} activations but the pretrained "
                           f"model ({encoder.model_name}) uses "
                           f"{'QuickGELU' if has_quick else 'GELU'}; pass --model "
                           f"{encoder.model_name.removesuffix('-quickgelu')}"
                           f"{'-quickgelu' if needs_quick else ''}")


class MergeEngine:
    """Merged models theta(c) on one live encoder, evaluated on prepared tensors.

    Parameters: the pretrained ``encoder`` (becomes the live model), one fine-tuned state
    dict per task (in task order), one head per evaluation dataset, and the decoded
    evaluation sets.
    """

    def __init__(self, encoder: ImageEncoder, finetuned: Sequence[Mapping[str, torch.Tensor]],
                 heads: Mapping[str, ClassificationHead], eval_sets: Mapping[str, EvalTensors],
                 *, task_names: Sequence[str] | None = None, device: str = "cpu",
                 batch_size: int = 128):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.encoder = encoder.to(self.device).eval()
        self.task_names = list(task_names or [f"task{i}" for i in range(len(finetuned))])
        live = dict(self.encoder.named_parameters())
        pre = self.encoder.state_dict()
        # Merge every floating weight that is a parameter of the live model.
        self.keys = [k for k in pre if k in live and is_mergeable(pre[k])]
        self._params = [live[k] for k in self.keys]
        self._shapes = [p.shape for p in self._params]
        self._sizes = [p.numel() for p in self._params]
        with torch.no_grad():
            self._pre = torch.cat([pre[k].reshape(-1) for k in self.keys]).to(self.device)
            taus = []
            for name, sd in zip(self.task_names, finetuned):
                missing = [k for k in self.keys if k not in sd]
                if missing:
                    raise MAPError(f"fine-tuned weights of '{name}' lack {len(missing)} "
                                   f"keys of the pretrained model, e.g. {missing[0]}")
                flat = torch.cat([sd[k].to(self.device, self._pre.dtype).reshape(-1)
                                  for k in self.keys])
                taus.append(flat - self._pre)
            self._tau = torch.stack(taus) if taus else self._pre.new_zeros((0, len(self._pre)))
        self.heads = {name: head.to(self.device).eval() for name, head in heads.items()}
        self.eval_sets = {name: data.to(self.device) for name, data in eval_sets.items()}
        self.coefficients = np.zeros(len(self.task_names))

    @classmethod
    def from_checkpoints(cls, *, model_name: str, pretrained: str, finetuned: Mapping[str, str],
                         heads: Mapping[str, ClassificationHead | str], datasets: Sequence[str],
                         data_location: str, device: str = "cpu", batch_size: int = 128,
                         max_eval_samples: int | None = None, num_workers: int | None = None,
                         openclip_cachedir: str | None = None, cache_dir: str | None = None
                         ) -> "MergeEngine":
        """Load everything once: the pretrained encoder, each task's fine-tuned weights
        (``finetuned``: task -> path, in task order), a head per evaluation dataset (a head
        or a path), and the decoded evaluation split of each dataset."""
        from task_vectors.checkpoints import check_compatible, load_encoder, load_head, \
            load_state_dict
        from task_vectors.datasets.registry import check_dataset_name

        for name in datasets:
            check_dataset_name(name)
        encoder = load_encoder(pretrained, model_name, openclip_cachedir=openclip_cachedir)
        check_activation(encoder, finetuned.values())
        reference = encoder.state_dict()
        states = []
        for task, path in tqdm(list(finetuned.items()), desc="loading fine-tuned models",
                               leave=False, disable=len(finetuned) < 3):
            sd = load_state_dict(path, reference=reference)
            check_compatible(reference, sd, path)
            states.append(sd)
        loaded_heads = {name: head if isinstance(head, ClassificationHead) else load_head(head)
                        for name, head in heads.items()}
        eval_sets = {name: cached_decode(name, data_location, encoder.val_preprocess,
                                         cache_dir=cache_dir, max_samples=max_eval_samples,
                                         num_workers=num_workers) for name in datasets}
        return cls(encoder, states, loaded_heads, eval_sets, task_names=list(finetuned),
                   device=device, batch_size=batch_size)

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    def task_vector(self, i: int) -> dict[str, torch.Tensor]:
        parts = self._tau[i].split(self._sizes)
        return {k: t.view(s) for k, t, s in zip(self.keys, parts, self._shapes)}

    @torch.no_grad()
    def set_coefficients(self, coefficients: Sequence[float]) -> None:
        """Write theta_pre + sum_i c_i tau_i into the live encoder, in place."""
        c = torch.as_tensor(np.asarray(coefficients, dtype=np.float64), dtype=self._pre.dtype,
                            device=self.device)
        if c.shape != (self.n_tasks,):
            raise MAPError(f"expected {self.n_tasks} coefficients, got {tuple(c.shape)}")
        theta = torch.addmv(self._pre, self._tau.T, c) if self.n_tasks else self._pre
        torch._foreach_copy_(self._params,
                             [t.view(s) for t, s in zip(theta.split(self._sizes), self._shapes)])
        self.coefficients = np.asarray(coefficients, dtype=float).copy()

    @torch.no_grad()
    def evaluate(self, datasets: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """{dataset: {"accuracy", "loss"}} of the live model; one host sync per dataset."""
        results = {}
        for name in datasets or list(self.eval_sets):
            if name not in self.eval_sets or name not in self.heads:
                raise MAPError(f"no evaluation data or head prepared for '{name}'")
            head, data = self.heads[name], self.eval_sets[name]
            correct = torch.zeros((), device=self.device)
            loss = torch.zeros((), device=self.device)
            for x, y in data.batches(self.batch_size):
                logits = head(self.encoder(x))
                correct += (logits.argmax(dim=1) == y).sum()
                loss += F.cross_entropy(logits, y, reduction="sum")
            n = len(data.labels)
            stats = torch.stack([correct, loss]).cpu()
            results[name] = {"accuracy": float(stats[0]) / n, "loss": float(stats[1]) / n}
        return results

    def evaluate_at(self, coefficients: Sequence[float], datasets: Sequence[str] | None = None
                    ) -> dict[str, dict[str, float]]:
        self.set_coefficients(coefficients)
        return self.evaluate(datasets)
