"""AdaMerging's cost per step against one plain forward + backward of the encoder.

    nice -n 10 .venv/bin/python bench/adamerging_speed.py [--tasks 2 4 8] [--batch 2]
        [--steps 2] [--granularity layer] [--device cpu|cuda] [--threads 1]

A ViT-B-32 with random weights (open_clip, built from its config: nothing downloaded),
T random task vectors and a random 10-class head per task, random 224x224 images. For each
T, in a fresh process each (so the peak memory of one does not hide another's):

* plain: one forward + backward of the encoder (gradient of its weights) on the step's
  T x batch images, as fine-tuning the merged model on them would cost;
* ours (task_vectors.adamerging): merge once, then forward + backward per task, each weight
  tensor's gradient folded into the coefficients' as it arrives (one task's activations and
  no [P] gradient alive);
* joint: the original's pattern, every task's graph alive until one backward.

Seconds per step (mean of --steps after one warm-up) and the step's peak memory above what
was resident before it (CPU: VmHWM after resetting it through /proc/self/clear_refs, so
Linux only; CUDA: max_memory_allocated above memory_allocated), each also as a ratio to
plain. The weights themselves (theta_pre, the [T, P] task vectors) are loaded before the
measurement and are not counted. Random weights: only the cost matters.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PATTERNS = ("plain", "ours", "joint")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class _Peak:
    """Peak memory of a region above what was resident when it started (bytes)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.start = _rss_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self.bytes = _rss_kib("VmHWM") * 1024 - self.start


class _RandomFinetuned:
    """T fine-tuned state dicts made on the fly (theta_pre + small noise), one at a time."""

    def __init__(self, pre: dict, n: int):
        self.pre, self.n = pre, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        import torch

        for _ in range(self.n):
            yield {k: v + 1e-3 * torch.randn_like(v) if v.is_floating_point() else v
                   for k, v in self.pre.items()}


def measure(T: int, pattern: str, batch: int, steps: int, granularity: str,
            device_name: str) -> dict:
    """One (T, pattern) in this process: {"seconds", "peak_bytes", ...}."""
    import torch

    from task_vectors import adamerging as am
    from task_vectors.engine import MergeEngine
    from task_vectors.eval_data import EvalTensors
    from task_vectors.modeling import ClassificationHead, ImageEncoder

    torch.manual_seed(0)
    device = torch.device(device_name)
    encoder = ImageEncoder("ViT-B-32")  # random weights: no pretrained tag, no download
    size = encoder.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    width = encoder.model.visual.output_dim
    names = [f"task{i}" for i in range(T)]
    images = {d: torch.randint(0, 256, (batch * (steps + 1), 3, size, size),
                               dtype=torch.uint8) for d in names}
    mean, std = torch.tensor([0.481, 0.458, 0.408]), torch.tensor([0.269, 0.261, 0.276])
    heads = {d: ClassificationHead(True, torch.randn(10, width)) for d in names}
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    if pattern == "plain":
        encoder = encoder.to(device)
        head = heads[names[0]].to(device)
        x_all = [torch.cat([images[d][s * batch:(s + 1) * batch] for d in names]).to(device)
                 for s in range(steps + 1)]
        x_all = [(x.float() / 255 - mean.to(device).view(1, 3, 1, 1))
                 / std.to(device).view(1, 3, 1, 1) for x in x_all]

        def step(s: int) -> None:
            encoder.zero_grad(set_to_none=True)
            am.entropy(head(encoder(x_all[s]))).mean().backward()
    else:
        pre = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
        engine = MergeEngine(encoder, _RandomFinetuned(pre, T), heads,
                             {d: EvalTensors(images[d], torch.zeros(len(images[d]),
                                                                    dtype=torch.long),
                                             mean, std) for d in names},
                             task_names=names, device=device_name)
        del pre
        settings = am.AdaMergingSettings(granularity=granularity, batch_size=batch)
        objective = am.EntropyObjective(engine, names, settings)
        lam = am.initial_coefficients(T, len(objective.layout), settings, device)
        lam.requires_grad_(True)

        def step(s: int) -> None:
            lam.grad = None
            objective.gradient(lam, s, joint=pattern == "joint")

    # Memory of the first step (on the CPU a warm-up would leave its freed memory in the
    # allocator's hands and hide the peak); time of the steps after it.
    with _Peak(device) as peak:
        step(0)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for s in range(1, steps + 1):
        step(s)
    sync()
    seconds = (time.perf_counter() - wall) / steps
    cpu_seconds = (time.process_time() - cpu) / steps
    n_params = sum(p.numel() for p in encoder.parameters())
    return {"T": T, "pattern": pattern, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "peak_bytes": int(peak.bytes),
            "params": int(n_params), "batch": batch, "device": str(device),
            "threads": torch.get_num_threads()}


def _worker(args) -> None:
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = measure(args.worker_T, args.worker_pattern, args.batch, args.steps,
                  args.granularity, args.device)
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--batch", type=int, default=2,
                   help="images per task and step (the original: 16; small on a CPU)")
    p.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up")
    p.add_argument("--granularity", choices=("task", "layer"), default="layer")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (0: torch's default; 1 keeps CPU seconds comparable)")
    p.add_argument("--worker-T", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-pattern", choices=PATTERNS, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    for name in ("batch", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be positive")
    if any(t < 1 for t in args.tasks):
        p.error("--tasks must be positive")
    if args.worker_T is not None:
        return _worker(args)

    rows = []
    for T in args.tasks:
        for pattern in PATTERNS:
            cmd = [sys.executable, __file__, "--worker-T", str(T), "--worker-pattern", pattern,
                   "--batch", str(args.batch), "--steps", str(args.steps), "--granularity",
                   args.granularity, "--device", args.device, "--threads", str(args.threads)]
            # Every allocation of 64 KiB or more is its own mapping, returned to the system
            # when freed, so the resident set follows the live tensors.
            env = {**os.environ, "PYTHONWARNINGS": "ignore", "MALLOC_MMAP_THRESHOLD_": "65536"}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode != 0 or not line:
                sys.exit(f"T={T} {pattern} failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(line[0][len("RESULT "):]))
            r = rows[-1]
            print(f"  measured T={T} {pattern}: {r['seconds']:.2f} s wall, "
                  f"{r['cpu_seconds']:.2f} s CPU, "
                  f"{r['peak_bytes'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)

    first = rows[0]
    cuda = first["device"].startswith("cuda")
    key = "seconds" if cuda else "cpu_seconds"
    print(f"\nViT-B-32, random weights ({first['params'] / 1e6:.1f}M parameters), "
          f"{args.granularity}-wise coefficients, batch {args.batch} per task, "
          f"device {first['device']}, {first['threads']} threads, mean of {args.steps} steps "
          "after the first")
    print("time ratio: " + ("wall seconds (synchronised)" if cuda else
                            "process CPU seconds (wall time on a shared machine is mostly "
                            "waiting)"))
    print("peak: the first step's peak memory above what was resident before it (weights "
          "and task vectors not counted)")
    print(f"{'T':>2}  {'pattern':<34}{'wall s':>8}{'CPU s':>8}{'x plain':>9}"
          f"{'peak MiB':>10}{'x plain':>9}")
    label = {"plain": "plain fwd+bwd on the T*B images", "ours": "ours (per-task backward)",
             "joint": "original (all graphs at once)"}
    for T in args.tasks:
        by = {r["pattern"]: r for r in rows if r["T"] == T}
        base = by["plain"]
        for pattern in PATTERNS:
            r = by[pattern]
            print(f"{T:>2}  {label[pattern]:<34}{r['seconds']:>8.2f}{r['cpu_seconds']:>8.2f}"
                  f"{r[key] / base[key]:>9.2f}{r['peak_bytes'] / 2**20:>10.0f}"
                  f"{r['peak_bytes'] / max(1, base['peak_bytes']):>9.2f}")


if __name__ == "__main__":
    main()
