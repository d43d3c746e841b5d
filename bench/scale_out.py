"""Scale-out on Ray: speed-up of 2 workers over 1, and Ray's overhead per merge (demo zoo).

    .venv/bin/python bench/scale_out.py [--pair LetterVal,DigitVal] [--grid 11] [--rounds 3]

A grid of --grid x --grid coefficient vectors of one pair (121 merges by default) is
evaluated by three evaluators, each process with one torch thread: LocalEvaluator
(in-process), and RayEvaluator with 1 worker and with 2 workers (one CPU each) on one
private local Ray of 3 CPUs. The three take turns, one pass each per round, so a change in
the machine's load hits all of them alike; the best pass of each counts. Start-up (building
a worker's engine) is timed apart. Reported per merge: wall ms, the driver's CPU ms
(for the Ray paths: dispatching, on the same cores as the workers) and, for the Ray paths,
the workers' own wall and thread CPU ms inside ``run_job`` (wall minus in-worker wall is
what Ray adds; in-worker wall above its CPU means the workers waited for a core); then the
speed-up of 2 workers over 1 and whether every path gave identical results. The figures
depend on what else the machine runs (the load average is printed). Asserts nothing about
time.

Then the same grid through the command line, as a user runs it: ``run_MAP.py --demo
--method grid --grid-points-per-axis G`` without Ray, with ``--workers 1`` and with
``--workers 2`` (each a fresh process; Ray's start and the workers' loading are outside
the evaluation time run.json reports): evaluation seconds, ms per merge, the speed-up of 2
workers over 1, the per-point overhead of Ray over the local path, and whether the three
wrote the same scaling results. ``--cli-only`` / ``--no-cli`` pick one part.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from common import demo_zoo, set_threads
from task_vectors.checkpoints import finetuned_path, head_path
from task_vectors.evaluators import EngineSpec, LocalEvaluator
from task_vectors.ray_evaluator import RayEvaluator, start_local_ray


def demo_spec(zoo, tasks) -> EngineSpec:
    return EngineSpec(model_name=zoo.model_name, pretrained=str(zoo.path / "zeroshot.pt"),
                      finetuned=tuple((t, str(finetuned_path(zoo.path, t))) for t in tasks),
                      heads=tuple((t, str(head_path(zoo.path, t))) for t in tasks),
                      datasets=tuple(tasks), data_location=str(zoo.path))


def worker_totals(evaluator) -> np.ndarray:
    """[jobs, wall s, CPU s] summed over a RayEvaluator's workers."""
    per_worker = evaluator.stats()["per_worker"]
    return np.array([[w["jobs"], w["busy_seconds"], w["cpu_seconds"]] for w in per_worker]
                    ).sum(axis=0)


def one_pass(evaluator, jobs, datasets) -> tuple[float, np.ndarray | None, dict, float]:
    """Wall seconds of one pass, the workers' [jobs, wall, CPU] spent in it, the results,
    and the CPU seconds of this (the driver's) process."""
    before = worker_totals(evaluator) if isinstance(evaluator, RayEvaluator) else None
    start, cpu = time.perf_counter(), time.process_time()
    results = dict(evaluator.evaluate(jobs, datasets))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    spent = worker_totals(evaluator) - before if before is not None else None
    return seconds, spent, results, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", default="LetterVal,DigitVal")
    p.add_argument("--grid", type=int, default=11)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cli-only", action="store_true", help="only the command-line part")
    p.add_argument("--no-cli", action="store_true", help="skip the command-line part")
    a = p.parse_args()
    if not a.cli_only:
        evaluator_paths(a)
    if not a.no_cli:
        cli_paths(a)


def cli_paths(a) -> None:
    """The grid through run_MAP.py: no Ray, --workers 1, --workers 2 (one process each)."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    tasks = a.pair.split(",")
    n = a.grid ** 2
    zoo = demo_zoo()
    print(f"\nrun_MAP.py --demo --method grid --grid-points-per-axis {a.grid} ({n} merges), "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="mapbench") as folder:
        env = {**os.environ, "RAY_TMPDIR": folder}
        for name, flags in (("local", []), ("--workers 1", ["--workers", "1"]),
                            ("--workers 2", ["--workers", "2"])):
            exp = name.strip("-").replace(" ", "")
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, str(repo / "run_MAP.py"), "--demo", "--zoo-dir",
                 str(zoo.path.parent), "--method", "grid", "--zeroshot-merge-models", *tasks,
                 "--grid-points-per-axis", str(a.grid), "--device", "cpu",
                 "--results-path", folder, "--exp-id", exp, *flags],
                cwd=repo, env=env, capture_output=True, text=True)
            total = time.perf_counter() - start
            if out.returncode:
                print(f"{name}: failed ({out.returncode}): {out.stderr.strip()[-500:]}")
                return
            run = json.loads((Path(folder) / exp / "run.json").read_text())
            results = json.loads((Path(folder) / exp /
                                  f"{'_'.join(tasks)}scaling_results.json").read_text())
            rows[name] = (run["timings"]["evaluation_seconds"], run["timings"]["load_seconds"],
                          total, results)
    reference = rows["local"][3]
    print(f"{'path':<14}{'process s':>10}{'load s':>8}{'grid s':>8}{'ms/merge':>10}"
          f"{'same results':>14}")
    for name, (seconds, load, total, results) in rows.items():
        print(f"{name:<14}{total:>10.1f}{load:>8.1f}{seconds:>8.2f}{1e3 * seconds / n:>10.2f}"
              f"{str(results == reference):>14}")
    local, one, two = (rows[k][0] for k in ("local", "--workers 1", "--workers 2"))
    print(f"speed-up, --workers 2 over --workers 1: {one / two:.2f}x; over local: "
          f"{local / two:.2f}x")
    print(f"Ray's overhead per merge (--workers 1 minus local): {1e3 * (one - local) / n:.2f} ms")


def evaluator_paths(a) -> None:
    """The evaluator path: LocalEvaluator vs RayEvaluator with 1 and 2 workers, in turns."""
    set_threads(1)
    tasks = a.pair.split(",")
    axis = np.linspace(0.0, 1.0, a.grid)
    jobs = [np.array([x, y]) for x in axis for y in axis]
    n = len(jobs)
    zoo = demo_zoo()
    spec = demo_spec(zoo, tasks)
    print(f"demo zoo: {zoo.path}")
    print(f"{n} merges of {' / '.join(tasks)}, evaluated on both tasks; one torch thread per "
          f"process; {a.rounds} rounds, best pass counts; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start")

    start_local_ray(num_cpus=3)  # both pools at once, so their passes can take turns
    paths: dict[str, dict] = {}
    start = time.perf_counter()
    paths["local"] = {"evaluator": LocalEvaluator(spec.build())}
    paths["local"]["startup"] = time.perf_counter() - start
    for workers in (1, 2):
        start = time.perf_counter()
        evaluator = RayEvaluator(spec, workers=workers)
        evaluator.worker_pids()  # wait until every engine is built
        paths[f"ray, {workers} worker{'s' * (workers > 1)}"] = {
            "evaluator": evaluator, "startup": time.perf_counter() - start}
    try:
        for path in paths.values():
            list(path["evaluator"].evaluate(jobs[:4], tasks))  # warm-up
            path["best"] = (float("inf"), None, None, None)
        for _ in range(a.rounds):
            for path in paths.values():
                result = one_pass(path["evaluator"], jobs, tasks)
                if result[0] < path["best"][0]:
                    path["best"] = result
    finally:
        for path in paths.values():
            path["evaluator"].close()
        import ray

        ray.shutdown()

    reference = paths["local"]["best"][2]
    print(f"\n{'path':<16}{'start-up s':>11}{'grid s':>9}{'wall ms/merge':>15}"
          f"{'driver CPU ms':>15}{'in-worker wall ms':>19}{'in-worker CPU ms':>18}"
          f"{'same results':>14}")
    for name, path in paths.items():
        seconds, spent, results, cpu = path["best"]
        inside = (f"{1e3 * spent[1] / spent[0]:>19.2f}{1e3 * spent[2] / spent[0]:>18.2f}"
                  if spent is not None else f"{'-':>19}{'-':>18}")
        print(f"{name:<16}{path['startup']:>11.2f}{seconds:>9.3f}{1e3 * seconds / n:>15.2f}"
              f"{1e3 * cpu / n:>15.2f}{inside}{str(results == reference):>14}")
    local_s = paths["local"]["best"][0]
    ray1, ray2 = paths["ray, 1 worker"]["best"], paths["ray, 2 workers"]["best"]
    print(f"\nspeed-up, 2 Ray workers over 1: {ray1[0] / ray2[0]:.2f}x   (aim >= 1.7x)")
    print(f"speed-up, 2 Ray workers over LocalEvaluator: {local_s / ray2[0]:.2f}x")
    print(f"Ray overhead per merge, 1 worker: wall minus in-worker wall "
          f"{1e3 * (ray1[0] - ray1[1][1]) / n:.2f} ms; wall minus LocalEvaluator's wall "
          f"{1e3 * (ray1[0] - local_s) / n:.2f} ms   (aim < 5 ms)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
