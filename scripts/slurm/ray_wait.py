"""Wait until a Ray cluster has N live nodes; print the head's address and the MAP workers.

    python scripts/slurm/ray_wait.py HOST:PORT N [--timeout SECONDS]

Prints "ADDRESS WORKERS": the head's host:port as Ray reports it (what the other nodes and
the driver should join) and the cluster's GPUs, or its CPUs when it has none. Token
authentication: the head's token must be in RAY_AUTH_TOKEN or the file at
RAY_AUTH_TOKEN_PATH (with RAY_AUTH_MODE=token). Exit 1 on time-out or refusal.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time


def wait_for_port(host: str, port: int, deadline: float) -> None:
    """ray.init blocks for minutes on a head that is not up yet; a plain socket does not."""
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"ray_wait: nothing listens at {host}:{port}")
            time.sleep(1)


def auth_note() -> str:
    mode = os.environ.get("RAY_AUTH_MODE", "(unset)")
    token = ("RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else
             "RAY_AUTH_TOKEN_PATH" if os.environ.get("RAY_AUTH_TOKEN_PATH") else "none given")
    return f"RAY_AUTH_MODE={mode}, token: {token}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("address")
    p.add_argument("nodes", type=int)
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    host, port = a.address.rsplit(":", 1)
    wait_for_port(host, int(port), deadline)

    # Ray leaves CUDA_VISIBLE_DEVICES alone on CPU-only tasks (and says no more about it).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    try:
        ray.init(address=a.address, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
    except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as e:
        # a head with token authentication refuses a process without its token this way
        sys.exit(f"ray_wait: cannot join the Ray head at {a.address} ({auth_note()}): "
                 f"{type(e).__name__}: {e}")
    while (alive := sum(n["Alive"] for n in ray.nodes())) < a.nodes:
        if time.monotonic() > deadline:
            sys.exit(f"ray_wait: {alive} of {a.nodes} nodes joined within {a.timeout:.0f} s")
        time.sleep(1)
    resources = ray.cluster_resources()
    workers = int(resources.get("GPU", 0)) or int(resources.get("CPU", 1))
    print(ray.get_runtime_context().gcs_address, workers)
    ray.shutdown()


if __name__ == "__main__":
    main()
