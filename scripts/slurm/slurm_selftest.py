"""The three batch scripts under a real (private, single-node) SLURM, on the demo zoo.

    python scripts/slurm/slurm_selftest.py [--timeout SECONDS] [--keep]

Installs Debian's slurm-wlm and munge if missing (root), starts slurmctld + slurmd + munged
of its own (private_slurm.py), submits map_1gpu.sbatch, map_pairs_array.sbatch (2 array
elements) and map_ray_multinode.sbatch with the GPU, CPU and memory requests overridden on
the sbatch command line as a CPU-only one-node user would, waits, checks each job's state,
run directory and log, and stops every daemon it started. Ray runs on 127.0.0.1 only (head,
workers, driver): `ss` is polled during the run, and the run stops with one line if a
process of the test holds a connection with any other address.

Exit 0 when all pass, 1 when one fails, 3 when SLURM cannot be installed here.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from private_slurm import PrivateSlurm, Unavailable, ensure_packages, free_port  # noqa: E402

MARKER = "MAP_SLURM_SELFTEST"  # in the environment of every process the test starts
# --refine-rounds 0: the stores then hold exactly --point merges (a pair's default would add
# two refinement rounds of 5), which check_run counts
RUN_FLAGS = ["--point", "6", "--refine-rounds", "0", "--n-gen", "5", "--reevaluate", "1",
             "--max-eval-samples", "64", "--device", "cpu"]
# What a CPU-only, one-node user adds to sbatch for the scripts' GPU nodes.
OVERRIDES = ["--cpus-per-task=1", "--mem=2G", "--time=00:15:00"]


# ------------------------------------------------------------------ loopback watch
def address_host(address: str) -> str:
    """'[::ffff:127.0.0.1]:80' / '127.0.0.1%lo:80' / '[::1]:80' -> the bare IP."""
    host = address.rsplit(":", 1)[0].strip("[]").split("%")[0]
    return host.removeprefix("::ffff:")


def foreign_addresses(line: str) -> list[str]:
    """The addresses of an `ss` socket line that are neither loopback nor unspecified."""
    tokens = line.split()
    ends = [t for t in tokens if ":" in t and not t.startswith("users:")][:2]
    foreign = []
    for end in ends:
        host = address_host(end)
        if host == "*":
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            foreign.append(end)  # a name, not an address: not the loopback we asked for
            continue
        if not (ip.is_loopback or ip.is_unspecified):
            foreign.append(end)
    return foreign


def line_pids(line: str) -> list[int]:
    return [int(p) for p in re.findall(r"pid=(\d+)", line)]


def has_marker(pid: int, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


class LoopbackWatch(threading.Thread):
    """Polls `ss` for the sockets of this test's processes (marked in their environment)."""

    def __init__(self, marker: str, interval: float = 0.5):
        super().__init__(daemon=True)
        self.marker, self.interval = marker, interval
        self.polls = 0
        self.seen: set[str] = set()  # distinct "local peer" pairs of our processes
        self.violation: str | None = None
        self.error: str | None = None  # ss could not be run: the check did not happen
        self.stopped = threading.Event()

    def run(self) -> None:
        ours: dict[int, bool] = {}
        while not self.stopped.is_set() and self.violation is None:
            done = subprocess.run(["ss", "-Htunp", "state", "connected"], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                self.error = f"ss failed ({done.returncode}): {done.stderr.strip()[:200]}"
                return
            out = done.stdout
            self.polls += 1
            for line in out.splitlines():
                for p in line_pids(line):
                    if p not in ours:
                        ours[p] = has_marker(p, self.marker)
                pids = [p for p in line_pids(line) if ours[p]]
                if not pids:
                    continue
                self.seen.add(" ".join(t for t in line.split() if ":" in t)[:120])
                if foreign_addresses(line):
                    self.violation = (f"process {pids[0]} of the test holds a connection "
                                      f"off the loopback: {' '.join(line.split())}")
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


# ------------------------------------------------------------------ the jobs
@dataclass
class Job:
    script: str
    job_id: str
    checks: list = field(default_factory=list)  # (description, callable -> str | None)


@dataclass
class Result:
    failures: list[str]
    logs: dict[str, list[str]]  # log file -> its last lines
    seconds: float
    polls: int = 0
    connections: int = 0
    folder: str = ""


def last_lines(path: Path, n: int = 3) -> list[str]:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-n:]


def check_run(folder: Path, tasks: list[str], points: int) -> str | None:
    """None when the run directory holds a finished map run on these tasks."""
    results = folder / f"{'_'.join(tasks)}scaling_results.json"
    if not (folder / "run.json").exists() or not results.exists():
        return f"{folder}: no run.json or {results.name}"
    stored = json.loads(results.read_text())
    if len(stored) != points or any(set(e["models"]) != set(tasks) for e in stored.values()):
        return f"{results}: {len(stored)} points, expected {points} on {tasks}"
    if not (folder / f"{'_'.join(tasks)}pareto_front.json").exists():
        return f"{folder}: no pareto_front.json"
    return None


def job_env(base: dict[str, str], folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("SLURM_", "RAY_", "MAP_"))}
    env.update(MAP_PYTHON=sys.executable, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               **{MARKER: str(folder)}, **extra)
    return env


def submit_all(slurm: PrivateSlurm, folder: Path, zoo_dir: str, tasks: list[str]
               ) -> list[Job]:
    runs, logs = folder / "runs", folder / "logs"
    logs.mkdir()
    points = int(RUN_FLAGS[RUN_FLAGS.index("--point") + 1])
    demo = ["--demo", "--zoo-dir", zoo_dir, *RUN_FLAGS, "--results-path", str(runs)]
    base = os.environ
    jobs = []

    one = tasks[:2]
    jid = slurm.sbatch([*OVERRIDES, "--gpus=0", f"--output={logs}/%x-%j.out",
                        "scripts/slurm/map_1gpu.sbatch", *demo, "--method", "map",
                        "--zeroshot-merge-models", *one, "--exp-id", "one"],
                       env=job_env(base, folder), cwd=REPO)
    jobs.append(Job("map_1gpu.sbatch", jid, [
        ("run directory", lambda: check_run(runs / "one", one, points))]))

    # 2 elements of the array: pairs 0 and 1 of the zoo's tasks in order
    jid = slurm.sbatch([*OVERRIDES, "--gpus=0", "--array=0-1",
                        f"--output={logs}/%x-%A_%a.out", "scripts/slurm/map_pairs_array.sbatch",
                        *demo], env=job_env(base, folder, MAP_TASKS=" ".join(tasks)), cwd=REPO)
    pairs = [[tasks[0], tasks[1]], [tasks[0], tasks[2]]]
    jobs.append(Job("map_pairs_array.sbatch", jid, [
        (f"run directory pair_{a}_{b}",
         lambda a=a, b=b: check_run(runs / f"pair_{a}_{b}", [a, b], points))
        for a, b in pairs]))

    port = free_port()
    ray_env = job_env(base, folder, MAP_RAY_HEAD_IP="127.0.0.1", MAP_RAY_PORT=str(port),
                      MAP_RAY_TMPDIR=str(folder / "ray"), MAP_RAY_GPUS_PER_NODE="0",
                      MAP_RAY_TIMEOUT="300")
    jid = slurm.sbatch([*OVERRIDES, "--nodes=1", "--gpus-per-node=0",
                        f"--output={logs}/%x-%j.out", "scripts/slurm/map_ray_multinode.sbatch",
                        *demo, "--method", "map", "--zeroshot-merge-models", *one,
                        "--exp-id", "ray"], env=ray_env, cwd=REPO)

    def ray_run() -> str | None:
        problem = check_run(runs / "ray", one, points)
        if problem:
            return problem
        run = json.loads((runs / "ray" / "run.json").read_text())
        address, evaluation = run["arguments"]["ray_address"], run["evaluation"]
        if address != f"127.0.0.1:{port}":
            return f"run.json: ray_address {address}, expected 127.0.0.1:{port}"
        if evaluation.get("backend") != "ray" or evaluation.get("workers") != 1:
            return f"run.json: evaluation {evaluation.get('backend')} with " \
                   f"{evaluation.get('workers')} workers, expected ray with 1"
        return None
    jobs.append(Job("map_ray_multinode.sbatch", jid, [("run directory and run.json", ray_run)]))
    return jobs


def check_logs(script: str, logs: list[Path], tasks: list[str]) -> list[str]:
    problems = [f"{p.name}: no line with {w!r}" for p in logs
                for w in ("Run directory:", "Preference pick")
                if w not in p.read_text(errors="replace")]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    want = []
    if script == "map_pairs_array.sbatch":
        want += [f"array index 0: {tasks[0]} + {tasks[1]}",
                 f"array index 1: {tasks[0]} + {tasks[2]}"]
    if script == "map_ray_multinode.sbatch":
        want += ["Ray token authentication: on, a new token for this job",
                 "Ray head up at 127.0.0.1:", "Ray cluster up: 1 node(s), room for 1 worker(s)"]
    problems += [f"{script} log: no line with {w!r}" for w in want if w not in text]
    problems += [f"{script} log: {bad!r}" for bad in ("Traceback", "InvalidAuthToken")
                 if bad in text]
    return problems


def processes_with_marker(marker: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and int(p.name) != os.getpid()
            and has_marker(int(p.name), marker)]


def run_selftest(zoo_dir: str, tasks: list[str], *, timeout: float = 540, keep: bool = False,
                 log=print) -> Result:
    """Start the private SLURM, run the three scripts, check, stop. Raises Unavailable when
    SLURM cannot be installed here."""
    ensure_packages(log)
    start = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="map-slurm-", dir="/tmp"))
    marker = f"{MARKER}={folder}"
    watch = LoopbackWatch(marker)
    watch.start()
    failures: list[str] = []
    logs: dict[str, list[str]] = {}
    slurm = PrivateSlurm(folder, env={**os.environ, MARKER: str(folder)}, log=log)
    try:
        slurm.start()
        jobs = submit_all(slurm, folder, zoo_dir, tasks)
        log("submitted: " + ", ".join(f"{j.script} job {j.job_id}" for j in jobs))
        ids = [j.job_id for j in jobs]
        deadline = time.monotonic() + timeout
        while not slurm.finished(ids):
            if watch.violation:
                failures.append(f"STOPPED: {watch.violation}")
                log(failures[-1])
                break
            if time.monotonic() > deadline:
                failures.append(f"jobs not finished within {timeout:.0f} s")
                break
            time.sleep(2)
        if failures:
            slurm.cancel(ids)
        for job in jobs:
            for rec in slurm.job(job.job_id):
                state, code = rec.get("JobState"), rec.get("ExitCode")
                name = rec.get("JobId") if "ArrayTaskId" not in rec else \
                    f"{rec['ArrayJobId']}_{rec['ArrayTaskId']}"
                log(f"{job.script} job {name}: {state} exit {code} "
                    f"({rec.get('RunTime')}, node {rec.get('NodeList')})")
                if state != "COMPLETED" or code != "0:0":
                    failures.append(f"{job.script} job {name}: {state}, exit {code}")
            paths = sorted([*(folder / "logs").glob(f"*-{job.job_id}.out"),
                            *(folder / "logs").glob(f"*-{job.job_id}_*.out")])
            if not paths:
                failures.append(f"{job.script}: no job log")
                continue
            for p in paths:
                logs[p.name] = last_lines(p)
            failures += check_logs(job.script, paths, tasks)
            failures += [f"{job.script} {what}: {problem}" for what, check in job.checks
                         if (problem := check())]
        # Ray's processes end with the job (ray_cluster.sh stops its steps on exit)
        ray_left = [p for p in processes_with_marker(marker)
                    if p not in slurm.alive().values()
                    and str(folder / "ray").encode() in _cmdline(p)]
        if ray_left:
            failures.append(f"Ray processes left after the jobs: {ray_left}")
    finally:
        slurm.stop()
        watch.stop()
        if watch.violation and not any(f.startswith("STOPPED") for f in failures):
            failures.append(f"STOPPED: {watch.violation}")
        if watch.error:
            failures.append(f"loopback check not done: {watch.error}")
        elif not watch.seen:
            failures.append("ss showed no connection of the test's processes: the loopback "
                            "check saw nothing to check")
        left = processes_with_marker(marker)
        for pid in left:  # only what this test started
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if left:
            failures.append(f"processes of the test left after stopping the daemons: {left}")
    result = Result(failures, logs, time.monotonic() - start, watch.polls, len(watch.seen),
                    str(folder))
    if not failures and not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=540,
                   help="seconds the jobs may take, from submission (default 540)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = p.parse_args(argv)
    if a.timeout <= 0:
        p.error("--timeout must be positive")
    sys.path.insert(0, str(REPO))
    from task_vectors.zoo import default_root, ensure_zoo

    zoo = ensure_zoo(default_root())
    try:
        result = run_selftest(str(zoo.path.parent), zoo.tasks, timeout=a.timeout, keep=a.keep)
    except Unavailable as e:
        print(f"slurm selftest: cannot run here: {e}", file=sys.stderr)
        return 3
    for name, lines in result.logs.items():
        print(f"--- {name} (last lines)")
        print("\n".join(f"    {ln}" for ln in lines))
    print(f"loopback check: {result.polls} ss polls, {result.connections} distinct connections "
          f"of the test's processes seen"
          + ("" if result.failures else ", all on the loopback"))
    for f in result.failures:
        print(f"FAILED: {f}")
    verdict = "FAILED" if result.failures else "passed"
    kept = f"; files in {result.folder}" if result.failures or a.keep else ""
    print(f"slurm selftest {verdict}: 3 scripts, {result.seconds:.0f} s{kept}")
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
