"""Per-point merge cost: MergeEngine.set_coefficients (one matrix-vector product into a
kept flat buffer, copied into the live model) against a fresh flat theta per point (the
engine before the kept buffer) and the naive way (sum task vectors in a dict,
load_state_dict).

    .venv/bin/python bench/merge_speed.py [--model ViT-B-32] [--tasks 4] [--repeats 5]

Prints seconds per merge for both and their ratio. Random weights: only the cost matters.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from task_vectors.engine import MergeEngine  # noqa: E402
from task_vectors.modeling import ImageEncoder  # noqa: E402


def naive_merge(encoder, pre: dict, taus: list[dict], c: np.ndarray) -> None:
    merged = {k: v.clone() for k, v in pre.items()}
    for ci, tau in zip(c, taus):
        for k, v in tau.items():
            merged[k] += float(ci) * v
    encoder.load_state_dict(merged)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    torch.manual_seed(0)
    encoder = ImageEncoder(a.model).to(a.device)
    pre = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    finetuned = [{k: v + 1e-3 * torch.randn_like(v) if v.is_floating_point() else v
                  for k, v in pre.items()} for _ in range(a.tasks)]
    taus = [{k: ft[k] - pre[k] for k in pre if pre[k].is_floating_point()} for ft in finetuned]
    engine = MergeEngine(encoder, finetuned, {}, {}, device=a.device)
    rng = np.random.default_rng(0)
    cs = rng.uniform(0, 1, size=(a.repeats + 1, a.tasks))

    def timed(fn) -> float:
        fn(cs[0])  # warm-up
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for c in cs[1:]:
            fn(c)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / a.repeats

    t_engine = timed(engine.set_coefficients)

    @torch.no_grad()
    def fresh_flat(c) -> None:
        theta = torch.addmv(engine.theta_pre, engine.tau.T,
                            torch.as_tensor(c, dtype=torch.float32, device=a.device))
        engine.set_theta(theta)

    t_fresh = timed(fresh_flat)
    t_naive = timed(lambda c: naive_merge(engine.encoder, pre, taus, c))
    n_params = sum(p.numel() for p in engine.encoder.parameters())
    print(f"model {a.model}, {n_params / 1e6:.1f}M parameters, {a.tasks} task vectors, "
          f"device {a.device}")
    print(f"MergeEngine.set_coefficients : {t_engine * 1e3:8.1f} ms per merge")
    print(f"fresh flat theta per point   : {t_fresh * 1e3:8.1f} ms per merge")
    print(f"naive dict sum + load_state_dict: {t_naive * 1e3:8.1f} ms per merge")
    print(f"speed-up: {t_naive / t_engine:.1f}x")


if __name__ == "__main__":
    main()
