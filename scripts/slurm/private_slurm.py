"""A private single-node SLURM on this machine, for trying the batch scripts under a real
scheduler: its own slurm.conf, state, spool and log folders under one temporary folder, a
MUNGE key generated there and its own munged socket, non-default ports, every daemon
reachable at 127.0.0.1 only. Stopped by process id; nothing system-wide is started.

    with PrivateSlurm(folder) as slurm:
        job = slurm.sbatch(["--gpus=0", "script.sbatch", ...], env=...)
        slurm.wait([job], timeout=600)

Needs root and Debian's `slurm-wlm` and `munge` (ensure_packages installs them).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge", "iproute2")  # iproute2: ss, for the loopback check
PROGRAMS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged", "mungekey", "ss")
END_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
              "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


class Unavailable(RuntimeError):
    """SLURM or MUNGE is missing and cannot be installed here (an environment limit)."""


def ensure_packages(log=print) -> None:
    """Install slurm-wlm, munge (and ss) from Debian's packages when a program is missing."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise Unavailable(f"{', '.join(missing)} missing and not root to apt-get install "
                          f"{' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"{', '.join(missing)} missing and no apt-get")
    log(f"installing {' '.join(PACKAGES)} (missing: {', '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise Unavailable(f"{' '.join(cmd)} failed: {' '.join(tail)}")
    still = [p for p in PROGRAMS if shutil.which(p) is None]
    if still:
        raise Unavailable(f"installed {' '.join(PACKAGES)} but {', '.join(still)} missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_hardware() -> tuple[int, int]:
    """CPUs and memory (MB) as slurmd sees them."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    cpus = int(re.search(r"\bCPUs=(\d+)", out).group(1))
    memory = int(re.search(r"\bRealMemory=(\d+)", out).group(1))
    return cpus, memory


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class PrivateSlurm:
    """slurmctld + slurmd + munged under `folder`, for the submitting user (root)."""

    def __init__(self, folder: str | Path, *, env: dict[str, str] | None = None, log=print):
        self.folder = Path(folder)
        self.log = log
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.folder / "slurm.conf"
        self.socket = self.folder / "sock" / "munge.sock"
        # What the daemons and every client (sbatch, srun in the jobs) run with.
        self.env = {k: v for k, v in (env or os.environ).items() if not k.startswith("SLURM_")}
        self.env["SLURM_CONF"] = str(self.conf)
        self.pids: dict[str, int] = {}

    # ------------------------------------------------------------------ start and stop
    def __enter__(self) -> "PrivateSlurm":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        f = self.folder
        for sub in ("key", "sock", "state", "spool", "log", "run"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        # munged: key folder private, socket folder and its parents open to all (it checks)
        os.chmod(f / "key", 0o700)
        for d in (f, f / "sock"):
            os.chmod(d, 0o755)
        self._run(["mungekey", "--create", f"--keyfile={f / 'key' / 'munge.key'}"])
        self._run(["munged", f"--socket={self.socket}", f"--key-file={f / 'key' / 'munge.key'}",
                   f"--seed-file={f / 'key' / 'munged.seed'}",
                   f"--log-file={f / 'log' / 'munged.log'}",
                   f"--pid-file={f / 'run' / 'munged.pid'}"])
        self._note_pid("munged")
        self.conf.write_text(self.config())
        self._run(["slurmctld", "-f", str(self.conf)])
        self._note_pid("slurmctld")
        self._run(["slurmd", "-f", str(self.conf)])
        self._note_pid("slurmd")
        deadline = time.monotonic() + timeout
        while (state := self.node_state()) != "idle":
            if time.monotonic() > deadline:
                raise RuntimeError(f"private SLURM: node {self.host} is {state!r} after "
                                   f"{timeout:.0f} s; see {f / 'log'}")
            time.sleep(0.5)
        self.log(f"private SLURM up: slurmctld pid {self.pids['slurmctld']}, slurmd pid "
                 f"{self.pids['slurmd']}, munged pid {self.pids['munged']} ({f})")

    def config(self) -> str:
        cpus, memory = node_hardware()
        f = self.folder
        return "\n".join([
            "ClusterName=mapselftest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.socket}",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
            # no cgroups: processes tracked by parentage, no task containment
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/builtin",
            "ReturnToService=2",
            "MinJobAge=3600",  # keep finished jobs visible to scontrol
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} "
            "State=UNKNOWN",
            "PartitionName=selftest Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def stop(self, timeout: float = 20) -> None:
        """Stop the daemons this object started, by process id (slurmd first)."""
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.get(name)
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.get(name)
            while pid is not None and pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()

    def alive(self) -> dict[str, int]:
        return {name: pid for name, pid in self.pids.items() if pid_alive(pid)}

    # ------------------------------------------------------------------ jobs
    def sbatch(self, args: list[str], *, env: dict[str, str] | None = None,
               cwd: str | Path | None = None) -> str:
        """Submit with `env` (default: the daemons') as the job's environment; returns the
        job id."""
        env = {**(self.env if env is None else env), "SLURM_CONF": str(self.conf)}
        out = self._run(["sbatch", "--parsable", *args], env=env, cwd=cwd)
        return out.strip().split(";")[0]

    def job(self, job_id: str) -> list[dict[str, str]]:
        """scontrol's fields of the job (one dict per array element)."""
        out = self._run(["scontrol", "show", "job", "-o", job_id])
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line]

    def finished(self, job_ids: list[str]) -> bool:
        return all(rec.get("JobState") in END_STATES
                   for j in job_ids for rec in self.job(j))

    def cancel(self, job_ids: list[str]) -> None:
        subprocess.run(["scancel", *job_ids], env=self.env, capture_output=True)

    def node_state(self) -> str:
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=self.env,
                              capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else f"sinfo: {done.stderr.strip()}"

    # ------------------------------------------------------------------ helpers
    def _run(self, cmd: list[str], *, env: dict[str, str] | None = None,
             cwd: str | Path | None = None) -> str:
        done = subprocess.run(cmd, env=env or self.env, cwd=cwd, capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-500:]}")
        return done.stdout

    def _note_pid(self, name: str, timeout: float = 15) -> None:
        path = self.folder / "run" / f"{name}.pid"
        deadline = time.monotonic() + timeout
        while not (path.exists() and path.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} wrote no pid file; see {self.folder / 'log'}")
            time.sleep(0.1)
        self.pids[name] = int(path.read_text().split()[0])
