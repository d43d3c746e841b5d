"""The three batch scripts under a real single-node SLURM (scripts/slurm/slurm_selftest.py;
`make slurm-test` runs the same), and the loopback check it relies on."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SLURM = Path(__file__).resolve().parent.parent / "scripts" / "slurm"
sys.path.insert(0, str(SLURM))
import private_slurm  # noqa: E402
import slurm_selftest  # noqa: E402

LINES = {  # `ss -Htunp state connected` lines, as ss writes them
    "gcs": 'tcp ESTAB 0 0 [::ffff:127.0.0.1]:58044 [::ffff:127.0.0.1]:46379 '
           'users:(("python",pid=9981,fd=16))',
    "lo2": 'tcp ESTAB 0 0 127.0.0.1%lo:40002 127.0.0.2:6379 users:(("ray::IDLE",pid=7,fd=3))',
    "v6": 'tcp ESTAB 0 0 [::1]:80 [::1]:5555 users:(("raylet",pid=8,fd=4))',
    "interface": 'tcp ESTAB 0 0 [::ffff:192.0.2.2]:58060 [::ffff:192.0.2.2]:46379 '
                 'users:(("python",pid=10004,fd=23))',
    "udp": 'udp ESTAB 0 0 10.1.2.3:5000 8.8.8.8:53 users:(("python",pid=5,fd=9))',
}


def test_loopback_check_flags_every_other_address():
    assert slurm_selftest.foreign_addresses(LINES["gcs"]) == []
    assert slurm_selftest.foreign_addresses(LINES["lo2"]) == []
    assert slurm_selftest.foreign_addresses(LINES["v6"]) == []
    assert slurm_selftest.foreign_addresses(LINES["interface"]) == [
        "[::ffff:192.0.2.2]:58060", "[::ffff:192.0.2.2]:46379"]
    assert slurm_selftest.foreign_addresses(LINES["udp"]) == ["10.1.2.3:5000", "8.8.8.8:53"]
    assert slurm_selftest.line_pids(LINES["interface"]) == [10004]


def test_loopback_check_knows_the_test_processes_by_their_environment():
    marker = "MAP_SLURM_SELFTEST=/tmp/x"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             env={**os.environ, "MAP_SLURM_SELFTEST": "/tmp/x"})
    try:
        # until the child has exec'd, /proc/<pid>/environ is still this process's: wait for it
        deadline = time.monotonic() + 20
        while not slurm_selftest.has_marker(child.pid, marker):
            assert time.monotonic() < deadline, "the child's environment never showed the marker"
            time.sleep(0.05)
        assert not slurm_selftest.has_marker(os.getpid(), marker)
    finally:
        child.kill()
        child.wait()


def test_selftest_refuses_a_bad_timeout(capsys):
    with pytest.raises(SystemExit) as e:
        slurm_selftest.main(["--timeout", "0"])
    assert e.value.code == 2 and "--timeout must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_three_scripts_pass_under_a_real_slurm(demo_zoo, zoo_root):
    try:
        private_slurm.ensure_packages(log=lambda *_: None)
    except private_slurm.Unavailable as e:
        pytest.skip(f"SLURM cannot be installed here (an environment limit): {e}")
    result = slurm_selftest.run_selftest(zoo_root, demo_zoo.tasks, timeout=540,
                                         log=lambda *_: None)
    report = "\n".join(result.failures) + f"\nfiles: {result.folder}"
    assert result.failures == [], report
    assert len(result.logs) == 4  # one job, two array elements, one Ray job
    assert result.polls > 0 and result.connections > 0  # ss saw the jobs' connections
    ray_log = next(lines for name, lines in result.logs.items() if name.startswith("map-ray"))
    assert ray_log[-1] == "Ray cluster stopped"
