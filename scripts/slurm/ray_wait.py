"""Wait until a Ray cluster has N live nodes; print how many MAP workers it holds.

    python scripts/slurm/ray_wait.py HOST:PORT N [--timeout SECONDS]

Workers: the cluster's GPUs, or its CPUs when it has none. Exit 1 on time-out.
"""
from __future__ import annotations

import argparse
import logging
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("address")
    p.add_argument("nodes", type=int)
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    host, port = a.address.rsplit(":", 1)
    wait_for_port(host, int(port), deadline)

    import ray

    ray.init(address=a.address, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    while (alive := sum(n["Alive"] for n in ray.nodes())) < a.nodes:
        if time.monotonic() > deadline:
            sys.exit(f"ray_wait: {alive} of {a.nodes} nodes joined within {a.timeout:.0f} s")
        time.sleep(1)
    resources = ray.cluster_resources()
    print(int(resources.get("GPU", 0)) or int(resources.get("CPU", 1)))
    ray.shutdown()


if __name__ == "__main__":
    main()
