"""MergeEngine per-point cost, precision and loading memory on a real-size CLIP encoder.

    .venv/bin/python bench/engine_speed.py [--arch ViT-B-32] [--tasks 2] [--images 32]
                                           [--points 3] [--device cpu]

Builds a randomly initialised open_clip encoder (no download) in the task_vectors layout in
a temporary folder (zeroshot.pt, <Task>/finetuned.pt, head_<Task>.pt) with synthetic
datasets written by tests/fixtures_real.py, then prints:

* tool time per point / pure forward time per point (the engine's own merged encoder and
  heads over the same stored tensors: the tool's point minus the merge), in fp32 and bf16,
  and bf16 / fp32;
* the original per-point pattern (reload every checkpoint, sum state dicts,
  load_state_dict, rebuild the data loader) / tool;
* peak RSS while loading (in a fresh subprocess) above the RSS before loading (the floor),
  / (T+3) encoders.
Every timed row is measured in turns per point (tool fp32, pure fp32, tool bf16, pure bf16,
original) and reported as the median over the points.
* max |accuracy difference| between fp32 and bf16 on the demo zoo (8 tasks).

Random weights: only the costs are meaningful, never the accuracies of the big model.
Figures are measured, never asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: keep the report clean
logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about random weights
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # fixtures_real writes the synthetic datasets

import numpy as np  # noqa: E402
import torch  # noqa: E402

from task_vectors.engine import MergeEngine, peak_rss_bytes  # noqa: E402

# Datasets used as tasks, in order, with their class counts (fixtures_real.MAKERS).
DATASETS = {"MNIST": 10, "SVHN": 10, "EuroSAT": 10, "GTSRB": 43, "RESISC45": 45, "DTD": 47,
            "Cars": 196, "SUN397": 397}
GOALS = {"tool/pure": 1.05, "bf16/fp32": 0.55, "peak/expected": 1.2, "demo_points": 0.5}


# ---------------------------------------------------------------- fixture
def build_fixture(root: Path, arch: str, tasks: list[str], images: int) -> dict:
    """The task_vectors layout with random weights, and synthetic data for each task."""
    import fixtures_real

    from task_vectors.checkpoints import save_module
    from task_vectors.modeling import ClassificationHead, ImageEncoder

    save, data = root / "save", root / "data"
    torch.manual_seed(0)
    encoder = ImageEncoder(arch)  # random init: pretrained=None downloads nothing
    save_module(encoder, save / "zeroshot.pt")
    dim = encoder.model.visual.output_dim
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        pre = [p.detach().clone() for p in encoder.parameters()]
        for i, task in enumerate(tasks):
            for p, p0 in zip(encoder.parameters(), pre):
                p.copy_(p0 + 1e-3 * torch.randn(p.shape, generator=gen))
            save_module(encoder, save / task / "finetuned.pt")
            head = ClassificationHead(True, torch.randn(DATASETS[task], dim, generator=gen))
            save_module(head, save / f"head_{task}.pt")
            per_class = max(1, math.ceil(images / DATASETS[task]))
            fixtures_real.MAKERS[task](str(data), per_class, seed=i)
    del encoder, pre
    return {"save": str(save), "data": str(data)}


def engine_kwargs(fx: dict, arch: str, tasks: list[str], images: int, device: str) -> dict:
    save = Path(fx["save"])
    return dict(model_name=arch, pretrained=str(save / "zeroshot.pt"),
                finetuned={t: str(save / t / "finetuned.pt") for t in tasks},
                heads={t: str(save / f"head_{t}.pt") for t in tasks}, datasets=tasks,
                data_location=fx["data"], device=device, max_eval_samples=images,
                num_workers=0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------- measurements
def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def pure_forward(engine: MergeEngine) -> None:
    """What MergeEngine.evaluate does for one point, without the merge: the engine's own
    (already merged) encoder and heads over the same stored tensors, normalised the same
    way, under the same autocast, with the same argmax and loss."""
    import torch.nn.functional as F

    with torch.no_grad():
        for name, data in engine.eval_sets.items():
            head = engine.heads[name]
            correct = torch.zeros((), device=engine.device)
            loss = torch.zeros((), device=engine.device)
            for x, y in data.batches(engine.batch_size):
                with engine._autocast():
                    logits = head(engine.encoder(x))
                logits = logits.float()
                correct += (logits.argmax(dim=1) == y).sum()
                loss += F.cross_entropy(logits, y, reduction="sum")
            torch.stack([correct, loss]).cpu()


def interleaved(kwargs: dict, points: np.ndarray) -> dict:
    """Seconds per point of every row, measured in turns: for each point the tool in fp32,
    the pure forward in fp32, the same in bf16, then the original's pattern, so a change in
    the machine's load hits every row alike. Every row reports the median over the points."""
    engines = {prec: MergeEngine.from_checkpoints(**kwargs, precision=prec)
               for prec in ("fp32", "bf16")}
    device = str(engines["fp32"].device)
    for engine in engines.values():  # warm-up (allocates the theta buffer)
        engine.evaluate_at(points[0])
        pure_forward(engine)
    times: dict[str, list[float]] = {f"{k} {prec}": [] for prec in engines
                                     for k in ("tool", "pure")} | {"original": []}
    for c in points:
        for prec, engine in engines.items():
            times[f"tool {prec}"].append(timed(lambda: engine.evaluate_at(c), device))
            # the same model (theta(c) is live after the tool's point) and the same inputs
            times[f"pure {prec}"].append(timed(lambda: pure_forward(engine), device))
        times["original"].append(original_point(kwargs, c))
    out = {k: float(np.median(v)) for k, v in times.items()}
    for prec, engine in engines.items():
        stats = engine.stats()  # its merge median includes the warm-up's merge
        out[f"merge {prec}"] = stats["merge_seconds_median"]
        out[f"images_per_second {prec}"] = stats["images_per_second"]
        out[f"load {prec}"] = stats["load_seconds"]
    return out


def original_point(kwargs: dict, c: np.ndarray) -> float:
    """Seconds for one point the way the original code works: read every checkpoint from
    disk, sum state dicts, load_state_dict, rebuild the data loader from the image files."""
    from task_vectors.checkpoints import load_encoder, load_head, load_state_dict
    from task_vectors.datasets.registry import get_dataset

    class Preprocessed(torch.utils.data.Dataset):
        def __init__(self, split, preprocess, n):
            self.split, self.preprocess, self.n = split, preprocess, min(n, len(split))

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            image, label = self.split[i]
            return self.preprocess(image), label

    start = time.perf_counter()
    encoder = load_encoder(kwargs["pretrained"], kwargs["model_name"]).to(kwargs["device"])
    pre = {k: v.clone() for k, v in encoder.state_dict().items()}
    merged = {k: v.clone() for k, v in pre.items()}
    for ci, path in zip(c, kwargs["finetuned"].values()):
        ft = load_state_dict(path)
        for k, v in pre.items():
            if v.is_floating_point():
                merged[k] += float(ci) * (ft[k].to(v.device) - v)
        del ft
    encoder.load_state_dict(merged)
    encoder.eval()
    with torch.no_grad():
        for name in kwargs["datasets"]:
            head = load_head(kwargs["heads"][name]).to(kwargs["device"]).eval()
            split = get_dataset(name, kwargs["data_location"]).split("test")
            loader = torch.utils.data.DataLoader(
                Preprocessed(split, encoder.val_preprocess, kwargs["max_eval_samples"]),
                batch_size=128, num_workers=0)
            for x, y in loader:
                x, y = x.to(kwargs["device"]), y.to(kwargs["device"])
                (head(encoder(x)).argmax(1) == y).sum().item()
    sync(kwargs["device"])
    return time.perf_counter() - start


def rss_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def load_probe(kwargs: dict) -> dict:
    """Run in a fresh process: RSS before loading, peak RSS after from_checkpoints, and the
    size of one fp32 encoder."""
    import open_clip  # noqa: F401  (imports are part of the floor, not of loading)

    import task_vectors.checkpoints  # noqa: F401
    import task_vectors.datasets.standard  # noqa: F401

    floor = rss_now()
    engine = MergeEngine.from_checkpoints(**kwargs)
    peak = peak_rss_bytes()
    encoder_bytes = sum(p.numel() * 4 for p in engine.encoder.parameters())
    return {"floor": floor, "peak": peak, "encoder_bytes": encoder_bytes,
            "tasks": engine.n_tasks, "load_seconds": engine.load_seconds}


def load_memory(kwargs: dict, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--load-probe", json.dumps(kwargs),
           "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def demo_agreement(points: np.ndarray) -> tuple[float, int]:
    """Max |accuracy(fp32) - accuracy(bf16)| in points over the demo zoo's 8 tasks."""
    from task_vectors.zoo import default_root, ensure_zoo

    zoo = ensure_zoo(default_root(), verbose=False)
    root = zoo.path

    def build(precision: str) -> MergeEngine:
        return MergeEngine.from_checkpoints(
            model_name=zoo.model_name, pretrained=str(root / "zeroshot.pt"),
            finetuned={t: str(root / t / "finetuned.pt") for t in zoo.tasks},
            heads={t: str(root / f"head_{t}.pt") for t in zoo.tasks}, datasets=zoo.tasks,
            data_location="", batch_size=512, precision=precision)

    fp32, bf16 = build("fp32"), build("bf16")
    worst = 0.0
    for c in points:
        a, b = fp32.evaluate_at(c), bf16.evaluate_at(c)
        worst = max(worst, max(abs(a[d]["accuracy"] - b[d]["accuracy"]) * 100 for d in a))
    return worst, min(len(d.labels) for d in fp32.eval_sets.values())


# ---------------------------------------------------------------- report
def verdict(value: float, goal: float) -> str:
    return f"goal <= {goal:g}: {'met' if value <= goal else 'NOT met'}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--tasks", type=int, default=2, help=f"1..{len(DATASETS)}")
    p.add_argument("--images", type=int, default=32, help="evaluation images per task")
    p.add_argument("--points", type=int, default=3, help="timed points per precision")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: stable figures on a shared machine; "
                        "0: torch's default)")
    p.add_argument("--load-probe", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.load_probe:
        print(json.dumps(load_probe(json.loads(a.load_probe))))
        return
    if not 1 <= a.tasks <= len(DATASETS):
        p.error(f"--tasks must be 1..{len(DATASETS)}")
    tasks = list(DATASETS)[:a.tasks]
    rng = np.random.default_rng(0)
    points = rng.uniform(0.0, 1.0, (a.points, a.tasks))

    print(f"engine_speed: {a.arch}, random weights, {a.tasks} tasks x {a.images} images "
          f"(small counts: per-point figures are for {a.tasks * a.images} images), "
          f"device {a.device}, {torch.get_num_threads()} torch threads, "
          f"{a.points} timed points per precision")
    with tempfile.TemporaryDirectory(prefix="engine-speed-") as tmp:
        start = time.perf_counter()
        fx = build_fixture(Path(tmp), a.arch, tasks, a.images)
        print(f"fixture written in {time.perf_counter() - start:.1f} s "
              f"({sum(f.stat().st_size for f in Path(fx['save']).rglob('*.pt')) / 2**20:.0f} "
              "MiB of checkpoints)")
        kwargs = engine_kwargs(fx, a.arch, tasks, a.images, a.device)

        mem = load_memory(kwargs, torch.get_num_threads())
        with contextlib.redirect_stderr(io.StringIO()):  # progress bars of the loads
            r = interleaved(kwargs, points)

    print(f"\nper point (median of {a.points}, rows interleaved)"
          "   tool s    pure s  tool/pure   merge s  images/s")
    for prec in ("fp32", "bf16"):
        print(f"  {prec:<41} {r[f'tool {prec}']:8.3f}  {r[f'pure {prec}']:8.3f}  "
              f"{r[f'tool {prec}'] / r[f'pure {prec}']:9.3f}  {r[f'merge {prec}']:8.3f}  "
              f"{r[f'images_per_second {prec}']:8.1f}")
    for prec in ("fp32", "bf16"):
        ratio = r[f"tool {prec}"] / r[f"pure {prec}"]
        print(f"tool/pure {prec}: {ratio:.3f}  ({verdict(ratio, GOALS['tool/pure'])}); pure = "
              "the engine's own merged encoder and heads over the same stored tensors")
    ratio = r["tool bf16"] / r["tool fp32"]
    note = f" (CPU capability {torch.backends.cpu.get_cpu_capability()})" \
        if a.device == "cpu" else ""
    print(f"bf16/fp32 (tool per point): {ratio:.3f}  ({verdict(ratio, GOALS['bf16/fp32'])})"
          f"{note}")
    print(f"original per-point pattern: {r['original']:.3f} s per point (median); "
          f"original/tool(fp32): {r['original'] / r['tool fp32']:.1f}x")
    print("load seconds (fp32 engine): " + ", ".join(f"{k} {v:.2f}"
                                                     for k, v in r["load fp32"].items()))

    enc, floor, peak, T = mem["encoder_bytes"], mem["floor"], mem["peak"], mem["tasks"]
    above = peak - floor
    print(f"\nloading (fresh process): floor {floor / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB,"
          f" encoder {enc / 2**20:.0f} MiB; above the floor {above / 2**20:.0f} MiB = "
          f"{above / enc:.2f} encoders for T = {T}")
    print(f"(peak - floor) / ((T+3) encoders): {above / ((T + 3) * enc):.3f}  "
          f"({verdict(above / ((T + 3) * enc), GOALS['peak/expected'])})")

    demo_points = np.vstack([np.zeros(8), np.full(8, 0.3), np.eye(8)[0], np.eye(8)[5],
                             rng.uniform(0.0, 1.0, (2, 8))])
    with contextlib.redirect_stderr(io.StringIO()):  # progress bars of the 8-task loads
        worst, n = demo_agreement(demo_points)
    print(f"\ndemo zoo fp32 vs bf16, 8 tasks x {len(demo_points)} coefficient vectors: "
          f"max |d accuracy| {worst:.2f} points ({verdict(worst, GOALS['demo_points'])}; "
          f"one image of {n} is {100 / n:.2f} points)")


if __name__ == "__main__":
    main()
