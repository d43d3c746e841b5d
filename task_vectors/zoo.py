"""The demo model zoo: a small open_clip ViT pretrained CLIP-style, fine-tuned per demo task.

Built offline from the procedural demo tasks (task_vectors.datasets.demo), seeded and
deterministic, in the exact task_vectors layout (``zeroshot.pt``, ``<Task>Val/finetuned.pt``,
``head_<Task>Val.pt``). The cache folder's name carries a hash of the recipe, so a changed
recipe rebuilds.

Recipe, chosen on merging statistics only (bench/zoo_report.py; the tried recipes are in
the README): both towers are trained from scratch with CLIP's image-to-caption loss on
images of every task kind, each captioned with its class name or, half the time, with a
partner class's name; heads are built from its text tower; each task fine-tunes the image
tower gently (AdamW, cosine schedule, its own seed) against its frozen head.
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from map_common.files import process_umask
from task_vectors.checkpoints import (
    finetuned_path,
    head_path,
    load_encoder,
    load_head,
    save_module,
    zeroshot_path,
)
from task_vectors.datasets import demo
from task_vectors.datasets.demo import DEMO_TASKS
from task_vectors.datasets.registry import get_dataset
from task_vectors.eval_data import EvalTensors
from task_vectors.heads import build_head, model_key
from task_vectors.modeling import ClassificationHead, ImageEncoder

MODEL_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": demo.IMAGE_SIZE, "patch_size": 12, "width": 128,
                   "head_width": 32, "layers": 4, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 2},
}
PREPROCESS_CFG = {"size": demo.IMAGE_SIZE, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                  "interpolation": "bicubic", "resize_mode": "shortest"}
RECIPE = {
    "version": 6,  # 6: 8 procedural tasks, CLIP-style pretraining against captions
    "model_cfg": MODEL_CFG,
    "preprocess_cfg": PREPROCESS_CFG,
    "data": {"image_size": demo.IMAGE_SIZE, "n_train": demo.N_TRAIN, "n_test": demo.N_TEST,
             "task_hardness": demo.TASK_HARDNESS, "generator_version": demo.GENERATOR_VERSION},
    "seed": 0,
    # Both towers are trained from scratch with CLIP's image-to-caption loss on images of
    # every task kind (hardness up to the tasks' own), each captioned with its class name,
    # or with a partner class's name half the time (every class has one): the image tower
    # learns every task, while the zero-shot heads built from the class names hesitate
    # between partners, so zero-shot accuracy is about half the fine-tuned one.
    "pretrain": {"images_per_task": 2500, "max_hardness": 0.35, "renamed_fraction": 1.0,
                 "rename_prob": 0.5, "steps": 2200, "batch_size": 128, "lr": 3e-3,
                 "wd": 0.1, "warmup": 30},
    # Gentle fine-tuning of the image tower against the frozen zero-shot head (AdamW,
    # cosine schedule, a few hundred steps).
    "finetune": {"images": 4000, "steps": 400, "batch_size": 64, "lr": 5e-4, "wd": 0.1},
    "tasks": demo.DEMO_TASKS,
}


def recipe_key(recipe: dict | None = None) -> str:
    """The hash that names a zoo: the recipe's (``RECIPE`` unless another is given)."""
    recipe = RECIPE if recipe is None else recipe
    return hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


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
        return [f"{t}Val" for t in RECIPE["tasks"]]


def ensure_zoo(root: str | Path | None = None, *, verbose: bool = True) -> Zoo:
    """The cached zoo for the current recipe, built first if missing. Processes that find
    it missing at the same time (a SLURM array on a fresh cache, parallel tests) build it
    once: the others wait for the first."""
    root = Path(root) if root is not None else default_root()
    given_zoo = built_recipe(root)
    if given_zoo == recipe_key():  # the folder of a built zoo, not the cache that holds it
        return Zoo(root)
    if given_zoo is not None:  # never a 4-minute build nested inside an old zoo
        raise ZooFolderError(f"{root} is a built demo zoo of another recipe ({given_zoo}; "
                             f"this version's is {recipe_key()}): give the folder that holds "
                             f"the zoos ({root.parent}) or an empty folder")
    target = root / f"demo-zoo-{recipe_key()}"
    if (target / "zoo.json").exists():
        return Zoo(target)
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root / f".demo-zoo-{recipe_key()}.lock", verbose):
        if (target / "zoo.json").exists():  # built while this process waited
            return Zoo(target)
        return _build_into(root, target, verbose)


class ZooFolderError(ValueError):
    """The zoo folder given cannot hold this version's zoo."""


def built_recipe(folder: Path) -> str | None:
    """The recipe key of the zoo built in ``folder`` itself, or None if it holds none."""
    try:
        return str(json.loads((folder / "zoo.json").read_text())["recipe_key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def _build_lock(path: Path, verbose: bool):
    """An exclusive flock on ``path`` (released by the kernel if the holder dies). Where
    no lock can be had (a cache folder of another user, a file system without locks) the
    build goes ahead unlocked: concurrent builds are identical, the first one kept."""
    held = _flock(path, verbose)
    try:
        yield
    finally:
        if held is not None:
            # Safe to remove while locked: a process that opens the path anew finds the zoo
            # built (or builds it, after a failure) once it holds the lock.
            path.unlink(missing_ok=True)
            held.close()  # releases the lock


def _flock(path: Path, verbose: bool):
    """The open file holding an exclusive flock on ``path`` (waiting for it if another
    process holds it), or None where no lock can be had."""
    try:
        f = open(path, "a")
    except OSError:
        return None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if verbose:
            print(f"Waiting for another process that builds the demo model zoo ({path})",
                  flush=True)
        fcntl.flock(f, fcntl.LOCK_EX)
    except OSError:
        f.close()
        return None
    return f


def _build_into(root: Path, target: Path, verbose: bool) -> Zoo:
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    os.chmod(staging, 0o777 & ~process_umask())  # mkdtemp makes 0700; a shared MAP_ZOO_DIR must be readable
    try:
        if verbose:
            print(f"Building the demo model zoo in {target} (once; about 4 minutes)")
        build_zoo(staging, verbose=verbose)
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first; its zoo is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Zoo(target)


def _write_model_folder(folder: Path, recipe: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": recipe["model_cfg"], "preprocess_cfg": recipe["preprocess_cfg"]}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))


def _norm() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(PREPROCESS_CFG["mean"]), torch.tensor(PREPROCESS_CFG["std"])


def task_tensors(task: str, which: str, limit: int | None = None) -> EvalTensors:
    """A split of ``<task>Val`` as tensors (its first ``limit`` images), straight from the
    generator (no PIL round trip)."""
    subset = get_dataset(f"{task}Val", "").split(which)
    indices = list(subset.indices)[:limit]
    images, labels = subset.dataset.tensors(indices)
    return EvalTensors(images, labels, *_norm())


def _pretrain_data(cfg: dict, rng: np.random.Generator
                   ) -> tuple[EvalTensors, torch.Tensor, list[tuple[int, int]]]:
    """Images of every task at hardness ~ U(0, max_hardness), and each one's caption key
    (task index, class)."""
    images, keys = [], []
    for t, task in enumerate(DEMO_TASKS):
        partner = _partner_classes(len(get_dataset(task, "").classnames),
                                   cfg["renamed_fraction"], rng)
        for i in range(cfg["images_per_task"]):
            pixels, label = demo.render(task, "pretrain", i,
                                        float(rng.uniform(0, cfg["max_hardness"])))
            images.append(pixels)
            keys.append((t, partner[label] if rng.random() < cfg["rename_prob"] else label))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    key_ids = sorted(set(keys))
    index = {k: j for j, k in enumerate(key_ids)}
    y = torch.tensor([index[k] for k in keys])
    return EvalTensors(x, y, *_norm()), y, key_ids


def _partner_classes(n_classes: int, fraction: float, rng: np.random.Generator) -> list[int]:
    """Each class's partner: itself, except for a ``fraction`` of the classes, which form a
    cycle; in pretraining a class's images are captioned with the partner's name with
    probability ``rename_prob``. Like names the web uses loosely: the image tower still
    tells the classes apart, but the zero-shot head from their names is unsure between
    partners."""
    partner = list(range(n_classes))
    k = int(round(fraction * n_classes))
    if k >= 2:
        renamed = rng.permutation(n_classes)[:k]
        for a, b in zip(renamed, np.roll(renamed, 1)):
            partner[a] = int(b)
    return partner


def _lr_at(step: int, cfg: dict) -> float:
    warm = cfg.get("warmup", 0)
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, cfg["steps"] - warm)))


def _pretrain(clip: torch.nn.Module, tokenizer, cfg: dict, generator: torch.Generator,
              rng: np.random.Generator, progress: bool = False) -> None:
    """CLIP's loss, image to caption: each image against the captions of the classes in
    its batch (one template drawn per class per step; a class's images share a caption)."""
    data, _, key_ids = _pretrain_data(cfg, rng)
    templates = {t: get_dataset(f"{task}Val", "").templates for t, task in enumerate(DEMO_TASKS)}
    names = {t: get_dataset(f"{task}Val", "").classnames for t, task in enumerate(DEMO_TASKS)}
    n_templates = min(len(v) for v in templates.values())
    tokens = torch.stack([tokenizer([templates[t][k](names[t][c]) for t, c in key_ids])
                          for k in range(n_templates)])  # [templates, keys, context]
    # The token embedding stays at its seeded init (49k x width: most rows are never used),
    # and without a gradient (its dense 49k-row gradient was filled every step: 4% of the
    # pretraining time; the weights are bit-identical).
    clip.token_embedding.weight.requires_grad_(False)
    params = [p for p in clip.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["wd"])
    clip.train()
    step, n = 0, len(data.labels)
    # The first build's longest silent stretch (minutes): a bar, which draws no random number.
    bar = tqdm(total=cfg["steps"], desc="pretraining the zoo's CLIP", unit="step",
               disable=not progress, mininterval=1.0)
    while step < cfg["steps"]:
        order = torch.randperm(n, generator=generator)
        for x, y in data.batches(cfg["batch_size"], order):
            if step >= cfg["steps"] or len(y) < cfg["batch_size"]:
                break
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, cfg)
            keys, target = torch.unique(y, return_inverse=True)
            which = torch.randint(n_templates, (len(keys),), generator=generator)
            text = clip.encode_text(tokens[which, keys], normalize=True)
            image = clip.encode_image(x, normalize=True)
            loss = F.cross_entropy(clip.logit_scale.exp() * image @ text.T, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                clip.logit_scale.clamp_(0, math.log(100))
            step += 1
            bar.update()
    bar.close()
    clip.eval()


FINETUNE_OPTIMIZERS = ("adamw", "sgd")


def _finetune(model: torch.nn.Module, head: torch.nn.Module, data: EvalTensors, cfg: dict,
              generator: torch.Generator) -> None:
    """AdamW with a cosine schedule against the frozen head, as task_vectors fine-tunes
    (the recipe's). ``cfg["optimizer"] = "sgd"``: SGD with momentum 0.9 instead, for
    bench/zoo_probe.py's probes of other fine-tunings."""
    kind = cfg.get("optimizer", "adamw")
    if kind == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    elif kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9,
                              weight_decay=cfg["wd"])
    else:
        raise ValueError(f"fine-tuning optimizer {kind!r}: one of {FINETUNE_OPTIMIZERS}")
    model.train()
    step = 0
    while step < cfg["steps"]:
        order = torch.randperm(len(data.labels), generator=generator)
        for x, y in data.batches(cfg["batch_size"], order):
            if step >= cfg["steps"]:
                break
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, cfg)
            loss = F.cross_entropy(head(model(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    model.eval()


@torch.no_grad()
def _accuracy(encoder: ImageEncoder, head: ClassificationHead, data: EvalTensors) -> float:
    correct = sum(int((head(encoder(x)).argmax(1) == y).sum()) for x, y in data.batches(512))
    return correct / len(data.labels)


def build_zoo(folder: str | Path, *, verbose: bool = True, workers: int | None = None,
              recipe: dict | None = None) -> dict:
    """Build every file of the zoo into ``folder``; returns the summary written to zoo.json.

    ``workers``: processes that fine-tune the tasks side by side (default: one per core, at
    most one per task). Every process runs one thread, so the files are the same whatever
    the count. ``recipe``: ``RECIPE`` unless given (bench/zoo_probe.py's other model
    sizes; its tasks must be RECIPE's)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread is as fast, and the result is the same anywhere
    if workers is None:
        workers = min(len(DEMO_TASKS), len(os.sched_getaffinity(0)))
    try:
        return _build(Path(folder), verbose, max(1, workers), RECIPE if recipe is None else recipe)
    finally:
        torch.set_num_threads(threads)


def _finetune_task(folder: str, model_name: str, task: str, cfg: dict, seed: int) -> dict:
    """Fine-tune one task from the zoo's saved zero-shot encoder and head, save it; its
    accuracies before and after. A worker process's whole job (the recipe comes as
    arguments: the worker imports this module afresh)."""
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)
    encoder = load_encoder(zeroshot_path(folder), model_name)
    head = load_head(head_path(folder, f"{task}Val")).requires_grad_(False)
    train, val = task_tensors(task, "train", cfg["images"]), task_tensors(task, "test")
    tuned = copy.deepcopy(encoder)
    _finetune(tuned, head, train, cfg, torch.Generator().manual_seed(seed))
    save_module(tuned, finetuned_path(folder, f"{task}Val"))
    return {"pretrained_accuracy": _accuracy(encoder, head, val),
            "finetuned_accuracy": _accuracy(tuned, head, val)}


def _finetune_all(folder: Path, model_name: str, workers: int, verbose: bool,
                  cfg: dict | None = None, seed: int | None = None) -> dict:
    """Every task's _finetune_task, in ``workers`` processes; results in task order.
    ``cfg``: the recipe's fine-tuning unless given (bench/zoo_probe.py).

    The workers are fresh interpreters running this module (``python -m
    task_vectors.zoo JOBS.json``), not multiprocessing children: those would re-import the
    caller's main script (anyone's, guarded or not), and a forked copy of a process that
    has run torch's thread pool can hang."""
    cfg = RECIPE["finetune"] if cfg is None else cfg
    seed = RECIPE["seed"] if seed is None else seed
    # Each task's own seed: its fine-tuning does not depend on the other tasks.
    jobs = [{"folder": str(folder), "model_name": model_name, "task": task, "cfg": cfg,
             "seed": seed + 1 + i, "verbose": verbose}
            for i, task in enumerate(DEMO_TASKS)]
    if workers == 1:
        return _report({j["task"]: _run_job(j) for j in jobs}, verbose)
    import subprocess
    import sys

    shares = [jobs[w::workers] for w in range(workers)]
    path = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    procs = []
    for w, share in enumerate(shares):
        spec = folder / f".finetune-{w}.json"
        spec.write_text(json.dumps(share))
        procs.append((spec, subprocess.Popen([sys.executable, "-m", "task_vectors.zoo",
                                              str(spec)], env=env)))
    if verbose:
        print(f"  fine-tuning {len(jobs)} tasks in {workers} processes", flush=True)
    results = {}
    try:
        for spec, proc in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"a zoo fine-tuning process failed (exit {proc.returncode})")
            results |= json.loads(spec.with_suffix(".out.json").read_text())
            spec.unlink()
            spec.with_suffix(".out.json").unlink()
    finally:  # stopped (Ctrl-C, SIGTERM, a failed worker): no worker outlives the build
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return _report(results, verbose)


def _run_job(job: dict) -> dict:
    result = _finetune_task(job["folder"], job["model_name"], job["task"], job["cfg"],
                            job["seed"])
    if job.get("verbose"):  # from a worker process too: the build's progress as it goes
        print(f"  fine-tuned {job['task']}Val", flush=True)
    return result


def _report(results: dict, verbose: bool) -> dict:
    out = {}
    for task in DEMO_TASKS:
        out[f"{task}Val"] = s = results[task]
        if verbose:
            print(f"  {task}Val: pretrained+head {s['pretrained_accuracy']:.3f} -> "
                  f"fine-tuned {s['finetuned_accuracy']:.3f}", flush=True)
    return out


def _worker_main(spec: str) -> None:
    """A fine-tuning worker: the jobs in ``spec``, results to ``<spec>.out.json``."""
    jobs = json.loads(Path(spec).read_text())
    results = {job["task"]: _run_job(job) for job in jobs}
    Path(spec).with_suffix(".out.json").write_text(json.dumps(results))


def _build(folder: Path, verbose: bool, workers: int, recipe: dict) -> dict:
    if recipe["tasks"] != RECIPE["tasks"]:
        raise ValueError("a zoo recipe's tasks are RECIPE's (the demo datasets' own)")
    start = time.perf_counter()
    torch.manual_seed(recipe["seed"])
    generator = torch.Generator().manual_seed(recipe["seed"])
    rng = np.random.default_rng(recipe["seed"])
    clip_dir = folder / "clip"
    _write_model_folder(clip_dir, recipe)
    model_name = f"local-dir:{clip_dir}"
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that it starts untrained
    clip = open_clip.create_model(model_name)
    tokenizer = open_clip.get_tokenizer(model_name)
    _pretrain(clip, tokenizer, recipe["pretrain"], generator, rng, progress=verbose)
    pretrain_s = time.perf_counter() - start
    if verbose:
        print(f"  pretrained in {pretrain_s:.0f} s", flush=True)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()},
              str(clip_dir / "open_clip_model.safetensors"))

    key = model_key(model_name)  # after the weights are written: it hashes them
    for task in DEMO_TASKS:
        dataset = get_dataset(f"{task}Val", "")
        head = build_head(clip, tokenizer, dataset.classnames, dataset.templates)
        head.model_key = key
        save_module(head, head_path(folder, f"{task}Val"))

    save_module(ImageEncoder(model_name), zeroshot_path(folder))
    summary = {"recipe": recipe, "recipe_key": recipe_key(recipe),
               "tasks": _finetune_all(folder, model_name, workers, verbose,
                                      recipe["finetune"], recipe["seed"])}
    summary["pretrain_seconds"] = pretrain_s
    summary["build_seconds"] = time.perf_counter() - start
    (folder / "zoo.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":  # a fine-tuning worker (_finetune_all)
    import sys

    _worker_main(sys.argv[1])
