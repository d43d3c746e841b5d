"""The demo model zoo: a tiny open_clip ViT, pretrained and fine-tuned per demo task.

Built offline from scikit-learn's digits, seeded and deterministic, in the exact
task_vectors layout (``zeroshot.pt``, ``<Task>Val/finetuned.pt``, ``head_<Task>Val.pt``).
The cache folder's name carries a hash of the recipe, so a changed recipe rebuilds.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F

from map_common.files import process_umask
from task_vectors.checkpoints import finetuned_path, head_path, save_module, zeroshot_path
from task_vectors.datasets.demo import DEMO_TASKS, TASKS
from task_vectors.datasets.registry import get_dataset
from task_vectors.eval_data import EvalTensors
from task_vectors.heads import build_head, model_key
from task_vectors.modeling import ClassificationHead, ImageEncoder

MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "head_width": 16,
                   "layers": 3, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}
PREPROCESS_CFG = {"size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                  "interpolation": "bicubic", "resize_mode": "shortest"}
RECIPE = {
    "version": 4,  # 4: heads from open_clip's zero-shot classifier builder
    "model_cfg": MODEL_CFG,
    "preprocess_cfg": PREPROCESS_CFG,
    "seed": 0,
    # The image tower is pretrained on upright digits only, so the other tasks need tuning.
    "pretrain_image": {"task": "Digits", "epochs": 4, "lr": 3e-3, "batch_size": 128, "wd": 0.1},
    "align_text": {"steps": 200, "lr": 3e-3},
    "finetune": {"epochs": 5, "lr": 2e-3, "batch_size": 64, "wd": 0.1},
    "tasks": DEMO_TASKS,
}


def recipe_key() -> str:
    return hashlib.sha1(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:10]


def default_root() -> Path:
    base = os.environ.get("MAP_ZOO_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "map-merging")
    return Path(base)


@dataclass
class Zoo:
    """Where a built zoo lives and what to pass as --model / --save / --data-location."""

    path: Path

    @property
    def model_name(self) -> str:
        return f"local-dir:{self.path / 'clip'}"

    @property
    def info(self) -> dict:
        return json.loads((self.path / "zoo.json").read_text())

    @property
    def tasks(self) -> list[str]:
        return [f"{t}Val" for t in DEMO_TASKS]


def ensure_zoo(root: str | Path | None = None, *, verbose: bool = True) -> Zoo:
    """The cached zoo for the current recipe, built first if missing."""
    root = Path(root) if root is not None else default_root()
    target = root / f"demo-zoo-{recipe_key()}"
    if (target / "zoo.json").exists():
        return Zoo(target)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    os.chmod(staging, 0o777 & ~process_umask())  # mkdtemp makes 0700; a shared MAP_ZOO_DIR must be readable
    try:
        if verbose:
            print(f"Building the demo model zoo in {target} (once; about a minute on 2 cores)")
        build_zoo(staging, verbose=verbose)
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first; its zoo is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Zoo(target)


def _write_model_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))


def task_tensors(task: str, which: str, mean: torch.Tensor, std: torch.Tensor) -> EvalTensors:
    """A demo split as tensors, straight from the arrays (no PIL round trip)."""
    subset = get_dataset(f"{task}Val", "").split(which)
    images, labels = subset.dataset.tensors()
    idx = torch.as_tensor(subset.indices)
    return EvalTensors(images[idx], labels[idx], mean, std)


def _train(model: torch.nn.Module, head: torch.nn.Module, params, data: EvalTensors,
           cfg: dict, generator: torch.Generator) -> None:
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["wd"])
    model.train()
    for _ in range(cfg["epochs"]):
        order = torch.randperm(len(data.labels), generator=generator)
        for x, y in data.batches(cfg["batch_size"], order):
            loss = F.cross_entropy(head(model(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def _align_text(clip: torch.nn.Module, tokenizer, data: EvalTensors, cfg: dict) -> None:
    """Teach the text tower every demo caption: each caption's embedding is pulled to the
    mean image embedding of its class, so zero-shot heads start where CLIP's would."""
    with torch.no_grad():
        feats = torch.cat([F.normalize(clip.encode_image(x), dim=-1)
                           for x, _ in data.batches(512)])
    texts, targets = [], []
    for task in DEMO_TASKS:
        dataset = get_dataset(f"{task}Val", "")
        relabel, names = TASKS[task][1], dataset.classnames
        classes = torch.tensor([relabel(int(d)) for d in data.labels])
        protos = F.normalize(torch.stack([feats[classes == c].mean(0)
                                          for c in range(len(names))]), dim=-1)
        for template in dataset.templates:
            texts += [template(n) for n in names]
            targets.append(protos)
    tokens, targets = tokenizer(texts), torch.cat(targets)
    params = [p for n, p in clip.named_parameters()
              if not n.startswith("visual.") and n != "token_embedding.weight"]
    opt = torch.optim.AdamW(params, lr=cfg["lr"])
    for _ in range(cfg["steps"]):
        emb = F.normalize(clip.encode_text(tokens), dim=-1)
        loss = (1.0 - (emb * targets).sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def _accuracy(encoder: ImageEncoder, head: ClassificationHead, data: EvalTensors) -> float:
    correct = sum(int((head(encoder(x)).argmax(1) == y).sum()) for x, y in data.batches(512))
    return correct / len(data.labels)


def build_zoo(folder: str | Path, *, verbose: bool = True) -> dict:
    """Build every file of the zoo into ``folder``; returns the summary written to zoo.json."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is as fast, and the result is the same anywhere
    try:
        return _build(Path(folder), verbose)
    finally:
        torch.set_num_threads(threads)


def _build(folder: Path, verbose: bool) -> dict:
    start = time.perf_counter()
    torch.manual_seed(RECIPE["seed"])
    generator = torch.Generator().manual_seed(RECIPE["seed"])
    clip_dir = folder / "clip"
    _write_model_folder(clip_dir)
    model_name = f"local-dir:{clip_dir}"
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that it starts untrained
    clip = open_clip.create_model(model_name)
    tokenizer = open_clip.get_tokenizer(model_name)
    mean, std = torch.tensor(PREPROCESS_CFG["mean"]), torch.tensor(PREPROCESS_CFG["std"])
    train = {t: task_tensors(t, "train", mean, std) for t in DEMO_TASKS}
    val = {t: task_tensors(t, "test", mean, std) for t in DEMO_TASKS}

    pre_cfg = RECIPE["pretrain_image"]
    probe = torch.nn.Linear(MODEL_CFG["embed_dim"], 10)
    _train(clip.visual, probe, [*clip.visual.parameters(), *probe.parameters()],
           train[pre_cfg["task"]], pre_cfg, generator)
    clip.eval()
    _align_text(clip, tokenizer, train[pre_cfg["task"]], RECIPE["align_text"])
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()},
              str(clip_dir / "open_clip_model.safetensors"))

    key = model_key(model_name)  # after the weights are written: it hashes them
    heads = {}
    for task in DEMO_TASKS:
        dataset = get_dataset(f"{task}Val", "")
        heads[task] = build_head(clip, tokenizer, dataset.classnames, dataset.templates)
        heads[task].model_key = key
        save_module(heads[task], head_path(folder, f"{task}Val"))
        heads[task].requires_grad_(False)

    encoder = ImageEncoder(model_name)
    save_module(encoder, zeroshot_path(folder))
    summary = {"recipe": RECIPE, "recipe_key": recipe_key(), "tasks": {}}
    for task in DEMO_TASKS:
        tuned = copy.deepcopy(encoder)
        _train(tuned, heads[task], tuned.parameters(), train[task], RECIPE["finetune"], generator)
        save_module(tuned, finetuned_path(folder, f"{task}Val"))
        summary["tasks"][f"{task}Val"] = {
            "pretrained_accuracy": _accuracy(encoder, heads[task], val[task]),
            "finetuned_accuracy": _accuracy(tuned, heads[task], val[task]),
        }
        if verbose:
            s = summary["tasks"][f"{task}Val"]
            print(f"  {task}Val: pretrained+head {s['pretrained_accuracy']:.3f} -> "
                  f"fine-tuned {s['finetuned_accuracy']:.3f}")
    summary["build_seconds"] = time.perf_counter() - start
    (folder / "zoo.json").write_text(json.dumps(summary, indent=2))
    return summary
