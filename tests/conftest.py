"""Shared fixtures. The demo zoo is built once per machine (cached like a user's run)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import fixtures_real as a module


@pytest.fixture(scope="session")
def demo_zoo():
    """The cached demo zoo (built on first use). Its root is $MAP_ZOO_DIR or the user cache."""
    from task_vectors.zoo import default_root, ensure_zoo

    return ensure_zoo(default_root(), verbose=False)


@pytest.fixture(scope="session")
def zoo_root(demo_zoo) -> str:
    """--zoo-dir to pass to run_MAP.py so CLI runs reuse the session's zoo."""
    return str(demo_zoo.path.parent)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: the demo model's ops are tiny, and on a busy 2-core
    machine extra intra-op threads only spin (about 10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def run_cli():
    """Run run_MAP.main in-process (no interpreter start-up); returns the exit code.
    Use pytest's capsys to read what it printed."""
    import run_MAP

    return lambda *argv: run_MAP.main([str(a) for a in argv])


# Tests that mostly wait on other processes (Ray clusters, SLURM, killed and resumed runs):
# collected first, so that with pytest-xdist (`make test` runs two workers) their waits
# overlap the CPU-bound tests instead of queueing up at the end.
WAITING_MODULES = ("test_slurm_scripts.py", "test_slurm_real.py", "test_ray_cli.py",
                   "test_ray.py", "test_reliability.py")


def pytest_collection_modifyitems(config, items):
    first = {name: i for i, name in enumerate(WAITING_MODULES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: keeps the rest
