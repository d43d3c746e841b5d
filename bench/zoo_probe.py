"""Probe another fine-tuning or model size of the demo zoo: its regime statistics.

    .venv/bin/python bench/zoo_probe.py [--optimizer adamw|sgd] [--lr LR] [--steps N]
        [--batch-size N] [--wd WD] [--images N] [--out DIR] [--zoo DIR]
        [--width W] [--layers L] [--mlp-ratio R] [--pretrain-lr LR]
        [--dare-seeds N] [--pairs N] [--random N] [--threads N] [--max-eval-samples N]

Fine-tunes the 8 tasks from a built zoo's pretrained CLIP and zero-shot heads (the cached
demo zoo unless --zoo), each with the recipe's own seed, in one worker process per core,
into a folder laid out as a zoo (its pretrained files linked, not copied), then prints
bench/zoo_report.py's regime table for it. With --width, --layers or --mlp-ratio (the
image tower's size) or --pretrain-lr it builds a whole zoo instead, pretraining included,
with the recipe's pretraining otherwise and the fine-tuning the flags give. A candidate for a new recipe is measured
here; the recipe itself is not changed. Regime statistics only: like the recipe, a probe
is judged by them, never by MAP's results. Asserts nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from map_common.argtypes import float_in, positive_int  # noqa: E402
from task_vectors import zoo as zoo_mod  # noqa: E402
from task_vectors.checkpoints import head_path, zeroshot_path  # noqa: E402
from zoo_report import report  # noqa: E402  (bench/ is this script's folder)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    recipe = zoo_mod.RECIPE["finetune"]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--optimizer", choices=zoo_mod.FINETUNE_OPTIMIZERS, default="adamw",
                   help="adamw (the recipe's) or sgd (momentum 0.9)")
    p.add_argument("--lr", type=float_in(0.0, low_open=True), default=recipe["lr"],
                   help=f"peak learning rate of the cosine schedule (recipe: {recipe['lr']})")
    p.add_argument("--steps", type=positive_int, default=recipe["steps"],
                   help=f"(recipe: {recipe['steps']})")
    p.add_argument("--batch-size", type=positive_int, default=recipe["batch_size"],
                   help=f"(recipe: {recipe['batch_size']})")
    p.add_argument("--wd", type=float_in(0.0), default=None,
                   help=f"weight decay (default: the recipe's {recipe['wd']} with adamw, "
                        "decoupled; 0 with sgd, where it is coupled to the gradient and "
                        "would pull every weight towards 0)")
    p.add_argument("--images", type=positive_int, default=recipe["images"],
                   help=f"training images per task (recipe: {recipe['images']})")
    p.add_argument("--out", help="keep the probe's zoo folder here (default: a temporary "
                   "folder, removed afterwards)")
    p.add_argument("--zoo", help="the built zoo whose pretrained CLIP and heads are "
                   "fine-tuned (default: the cached demo zoo, built if missing)")
    vision = zoo_mod.RECIPE["model_cfg"]["vision_cfg"]
    p.add_argument("--width", type=positive_int, default=None,
                   help=f"image tower width, a multiple of its head width "
                        f"{vision['head_width']} (recipe: {vision['width']}); builds a zoo")
    p.add_argument("--layers", type=positive_int, default=None,
                   help=f"image tower layers (recipe: {vision['layers']}); builds a zoo")
    p.add_argument("--mlp-ratio", type=float_in(0.0, low_open=True), default=None,
                   help=f"image tower MLP ratio (recipe: {vision['mlp_ratio']}); builds a zoo")
    pretrain = zoo_mod.RECIPE["pretrain"]
    p.add_argument("--pretrain-lr", type=float_in(0.0, low_open=True), default=None,
                   help=f"peak learning rate of pretraining (recipe: {pretrain['lr']}); a "
                        "wider tower may need a smaller one; builds a zoo")
    p.add_argument("--dare-seeds", type=positive_int, default=10)
    p.add_argument("--pairs", type=positive_int, default=28)
    p.add_argument("--random", type=positive_int, default=20)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--max-eval-samples", type=positive_int, default=None)
    args = p.parse_args(argv)
    if args.wd is None:
        args.wd = recipe["wd"] if args.optimizer == "adamw" else 0.0
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"argument --out: {args.out} is a file, not a folder")
    if args.zoo and zoo_mod.built_recipe(Path(args.zoo)) is None:
        p.error(f"argument --zoo: {args.zoo} holds no built demo zoo (no zoo.json)")
    if args.width is not None and args.width % vision["head_width"]:
        p.error(f"argument --width: {args.width} is not a multiple of the head width "
                f"{vision['head_width']}")
    if pretrains(args):
        if args.zoo:
            p.error("argument --zoo: a probe that pretrains (--width, --layers, --mlp-ratio, "
                    "--pretrain-lr) builds its own CLIP, not --zoo's")
        if args.out and Path(args.out).is_dir() and any(Path(args.out).iterdir()):
            p.error(f"argument --out: {args.out} is not empty (a probe that pretrains "
                    "builds a whole zoo there)")
    return args


def pretrains(args: argparse.Namespace) -> bool:
    """Whether the probe changes the image tower's size or its pretraining (and so
    pretrains its own CLIP)."""
    return any(v is not None for v in (args.width, args.layers, args.mlp_ratio,
                                       args.pretrain_lr))


def probe_recipe(args: argparse.Namespace) -> dict:
    """RECIPE with the probe's image tower size, pretraining rate and fine-tuning."""
    recipe = copy.deepcopy(zoo_mod.RECIPE)
    size = {"width": args.width, "layers": args.layers, "mlp_ratio": args.mlp_ratio}
    recipe["model_cfg"]["vision_cfg"].update({k: v for k, v in size.items() if v is not None})
    recipe["finetune"] = finetune_cfg(args)
    if args.pretrain_lr is not None:
        recipe["pretrain"]["lr"] = args.pretrain_lr
    return recipe


def finetune_cfg(args: argparse.Namespace) -> dict:
    return {"optimizer": args.optimizer, "images": args.images, "steps": args.steps,
            "batch_size": args.batch_size, "lr": args.lr, "wd": args.wd}


def link_pretrained(src: Path, dst: Path) -> None:
    """``dst`` laid out as a zoo that shares ``src``'s pretrained CLIP, zero-shot encoder and
    heads (symbolic links); its fine-tuned models are the probe's to write."""
    dst.mkdir(parents=True, exist_ok=True)
    tasks = zoo_mod.Zoo(src).tasks
    for rel in ["clip", zeroshot_path(src).name] + [head_path(src, t).name for t in tasks]:
        target = dst / rel
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        os.symlink((src / rel).resolve(), target)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = finetune_cfg(args)
    tmp = None if args.out else tempfile.mkdtemp(prefix="zoo-probe-")
    out = Path(args.out or tmp)
    finetuning = (f"{args.optimizer}, lr {args.lr:g} x {args.steps} steps, batch "
                  f"{args.batch_size}, wd {args.wd:g}")
    try:
        if pretrains(args):
            return build_and_report(out, probe_recipe(args), args, finetuning)
        src = Path(args.zoo) if args.zoo else zoo_mod.ensure_zoo().path
        link_pretrained(src, out)
        source = zoo_mod.Zoo(src)
        print(f"fine-tuning {len(source.tasks)} tasks from {src}: {json.dumps(cfg)}",
              flush=True)
        start = time.perf_counter()
        workers = min(len(source.tasks), len(os.sched_getaffinity(0)))
        tasks = zoo_mod._finetune_all(out, source.model_name, workers, verbose=True, cfg=cfg)
        print(f"fine-tuned in {time.perf_counter() - start:.0f} s", flush=True)
        summary = {**source.info, "tasks": tasks, "probe": {"source": str(src),
                                                            "finetune": cfg}}
        (out / "zoo.json").write_text(json.dumps(summary, indent=2))
        return report(out, None, args, label=f"probe ({finetuning})")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def build_and_report(out: Path, recipe: dict, args: argparse.Namespace,
                     finetuning: str) -> int:
    """A whole zoo of ``recipe`` in ``out`` (pretraining included), then its table."""
    vision = recipe["model_cfg"]["vision_cfg"]
    params = ", ".join(f"{k} {vision[k]:g}" for k in ("width", "layers", "mlp_ratio"))
    params += f", pretraining lr {recipe['pretrain']['lr']:g}"
    print(f"building a zoo with image tower {params} and fine-tuning {json.dumps(recipe['finetune'])}"
          f" into {out}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    summary = zoo_mod.build_zoo(out, verbose=True, recipe=recipe)
    print(f"built in {summary['build_seconds']:.0f} s (pretraining {summary['pretrain_seconds']:.0f} s)",
          flush=True)
    return report(out, summary["build_seconds"], args, label=f"probe ({finetuning}; {params})")


if __name__ == "__main__":
    sys.exit(main())
